import Gossip
import Testing
@testable import Mesh

@Suite struct TokenBucketTests {
    let second: UInt64 = 1_000_000_000

    @Test func a50MBPerSecondLimitHoldsWithin10PercentOverASimulated20SecondWindow() {
        let rate: Int64 = 50_000_000
        var bucket = TokenBucket(rateBytesPerSecond: rate, nowNanoseconds: 0)
        var rng = SplitMix64(seed: 42)
        var now: UInt64 = 0
        var sent = 0
        var perSecond = [Int](repeating: 0, count: 20)
        // A greedy sender with chunk sizes from 1 KiB to 1 MiB that sends as soon as allowed.
        while true {
            let chunk = Int.random(in: 1024...(1 << 20), using: &rng)
            let wait = bucket.reserve(chunk, nowNanoseconds: now)
            now += wait
            guard now < 20 * second else { break }
            sent += chunk
            perSecond[Int(now / second)] += chunk
            now += UInt64.random(in: 0...20_000, using: &rng)  // per-send overhead
        }
        let average = Double(sent) / 20
        #expect(abs(average - Double(rate)) / Double(rate) < 0.10, "average \(average) B/s")
        #expect(abs(average - Double(rate)) / Double(rate) < 0.02, "average \(average) B/s")
        // And no single second exceeds the rate by more than the burst plus one chunk.
        for (i, b) in perSecond.enumerated() { #expect(b <= Int(rate) + Int(rate / 10) + (1 << 20), "second \(i): \(b)") }
    }

    @Test func anIdleBucketRefillsOnlyUpToItsBurst() {
        var b = TokenBucket(rateBytesPerSecond: 1000, burstBytes: 500, nowNanoseconds: 0)
        var ok = b.tryTake(500, nowNanoseconds: 0)
        #expect(ok)
        ok = b.tryTake(1, nowNanoseconds: 0)
        #expect(!ok)
        ok = b.tryTake(250, nowNanoseconds: second / 4)
        #expect(ok)
        // After an hour idle, still only the burst.
        ok = b.tryTake(500, nowNanoseconds: 3600 * second)
        #expect(ok)
        ok = b.tryTake(10, nowNanoseconds: 3600 * second)
        #expect(!ok)
        #expect(b.nanosecondsUntilAvailable(100, nowNanoseconds: 3600 * second) == second / 10)
    }

    @Test func reservingIntoDebtReturnsTheWaitThatRepaysIt() {
        var b = TokenBucket(rateBytesPerSecond: 1_000_000, burstBytes: 100_000, nowNanoseconds: 0)
        var w = b.reserve(100_000, nowNanoseconds: 0)
        #expect(w == 0)
        w = b.reserve(500_000, nowNanoseconds: 0)
        #expect(w == second / 2)
        w = b.reserve(0, nowNanoseconds: second / 2)
        #expect(w == 0)
        w = b.reserve(0, nowNanoseconds: second / 4)  // time going backwards is ignored
        #expect(w == 0)
    }

    @Test func theGlobalLimitCapsSeveralPeersAndThePerPeerLimitCapsOne() {
        var lim = BandwidthLimiter<Int>(globalBytesPerSecond: 50_000_000, perPeerBytesPerSecond: 20_000_000, nowNanoseconds: 0)
        // Three peers sending greedily: the total is held by the global limit.
        var next = [UInt64](repeating: 0, count: 3)
        var sent = [Int](repeating: 0, count: 3)
        let chunk = 256 << 10
        while true {
            let p = next.indices.min(by: { next[$0] < next[$1] })!
            let now = next[p]
            guard now < 20 * second else { break }
            let wait = lim.reserve(chunk, peer: p, nowNanoseconds: now)
            next[p] = now + wait + 1000
            if now + wait < 20 * second { sent[p] += chunk }
        }
        let total = Double(sent.reduce(0, +)) / 20
        #expect(abs(total - 50e6) / 50e6 < 0.10, "total \(total)")
        for s in sent { #expect(Double(s) / 20 <= 20e6 * 1.10) }
        // One peer alone gets its own limit, not the global one.
        var one = BandwidthLimiter<Int>(globalBytesPerSecond: 50_000_000, perPeerBytesPerSecond: 20_000_000, nowNanoseconds: 0)
        var now: UInt64 = 0
        var bytes = 0
        while now < 20 * second {
            now += one.reserve(chunk, peer: 7, nowNanoseconds: now)
            if now < 20 * second { bytes += chunk }
        }
        #expect(abs(Double(bytes) / 20 - 20e6) / 20e6 < 0.10)
        #expect(BandwidthLimiter<Int>(BandwidthConfig(), nowNanoseconds: 0).isUnlimited)
    }

    @Test func peerBucketsAreBounded() {
        var lim = BandwidthLimiter<Int>(globalBytesPerSecond: nil, perPeerBytesPerSecond: 1000, nowNanoseconds: 0, maxTrackedPeers: 10)
        for p in 0..<100 { _ = lim.reserve(10, peer: p, nowNanoseconds: UInt64(p) * second) }
        #expect(lim.peers.count <= 10)
    }
}
