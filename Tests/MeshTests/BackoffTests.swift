import Gossip
import Testing
@testable import Mesh

@Suite struct BackoffTests {
    @Test func delaysDoubleWithJitterUpToTheMaximumAndResetAfterSuccess() {
        var b = Backoff(initial: .milliseconds(100), maximum: .seconds(2))
        var rng = SplitMix64(seed: 3)
        let delays = (0..<10).map { _ in b.nextDelay(using: &rng) }
        let expectedCaps: [Int64] = [100, 200, 400, 800, 1600, 2000, 2000, 2000, 2000, 2000]
        for (d, cap) in zip(delays, expectedCaps) {
            #expect(d >= .milliseconds(cap / 2) && d <= .milliseconds(cap), "\(d) not in [\(cap / 2), \(cap)] ms")
        }
        #expect(b.failures == 10)
        b.reset()
        let first = b.nextDelay(using: &rng)
        #expect(first <= .milliseconds(100))
        // Thousands of failures never overflow.
        for _ in 0..<5000 { _ = b.nextDelay(using: &rng) }
        #expect(b.nextDelay(using: &rng) <= .seconds(2))
    }

    @Test func theSameSeedGivesTheSameSchedule() {
        var a = Backoff(), b = Backoff()
        var r1 = SplitMix64(seed: 42), r2 = SplitMix64(seed: 42)
        #expect((0..<20).map { _ in a.nextDelay(using: &r1) } == (0..<20).map { _ in b.nextDelay(using: &r2) })
    }
}

@Suite("Download wait queue")
struct WaitQueueTests {
    func c(_ i: UInt64) -> ContentID { ContentID(digest: Bytes32(w0: i, w1: 0, w2: 0, w3: 0)) }

    @Test("Items leave in arrival order; a removed and re-added item waits at its new place")
    func firstComeFirstServed() {
        var q = WaitQueue()
        for i in 1...5 { q.append(c(UInt64(i))) }
        q.append(c(3))  // already waiting: no-op
        #expect(q.count == 5)
        q.remove(c(2))
        q.remove(c(4))
        q.append(c(2))
        #expect(!q.contains(c(4)) && q.contains(c(2)))
        var out = [ContentID]()
        while let f = q.first { #expect(f == q.removeFirst()); out.append(f) }
        #expect(out == [c(1), c(3), c(5), c(2)])
        #expect(q.isEmpty)
    }

    @Test("Membership stays cheap and exact over many items")
    func manyItems() {
        var q = WaitQueue()
        for i in 0..<20_000 { q.append(c(UInt64(i))) }
        for i in stride(from: 0, to: 20_000, by: 2) { q.remove(c(UInt64(i))) }
        #expect(q.count == 10_000)
        for _ in 0..<5_000 { q.removeFirst() }
        #expect(q.first == c(10_001))
        #expect(q.count == 5_000)
    }
}
