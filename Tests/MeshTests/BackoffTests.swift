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
