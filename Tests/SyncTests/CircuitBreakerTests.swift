import Gossip
import Testing
@testable import Sync

@Suite("Circuit breakers: closed, open, half open, per peer")
struct CircuitBreakerTests {
    let config = CircuitBreaker.Config(failureThreshold: 5, recoveryTimeoutMs: 60_000, halfOpenRequests: 3)

    @Test("Five failures in a row open it; a success in between starts the count again")
    func opensAfterTheThresholdOfConsecutiveFailures() {
        var b = CircuitBreaker(config: config)
        for _ in 0..<4 { let opened = b.recordFailure("timeout", nowMs: 0); #expect(!opened) }
        b.recordSuccess(nowMs: 1)
        for _ in 0..<4 { let opened = b.recordFailure("timeout", nowMs: 2); #expect(!opened) }
        #expect(b.state == .closed && b.allows(nowMs: 2))
        let opened = b.recordFailure("corrupt_chunk", nowMs: 3)
        #expect(opened)
        #expect(b.state == .open && b.opens == 1 && b.lastFailure == "corrupt_chunk")
    }

    @Test("While open nothing is admitted; after the recovery time three trials are, and no fourth")
    func openAdmitsNothingUntilRecoveryThenThreeTrials() {
        var b = CircuitBreaker(config: config)
        for _ in 0..<5 { b.recordFailure("timeout", nowMs: 1000) }
        let early = b.admit(nowMs: 1000), late = b.admit(nowMs: 60_999)
        #expect(!early && !late)
        #expect(b.state(nowMs: 60_999) == .open && b.state(nowMs: 61_000) == .halfOpen)
        #expect(b.recoversAtMs == 61_000)
        for _ in 0..<3 { let ok = b.admit(nowMs: 61_000); #expect(ok) }
        let fourth = b.admit(nowMs: 61_001)
        #expect(!fourth, "a fourth trial while three are in flight")
        b.recordWithdrawn()
        let again = b.admit(nowMs: 61_002)
        #expect(again, "a withdrawn trial frees its slot")
    }

    @Test("A trial whose answer is never reported frees its slot after the trial timeout, so a half-open breaker cannot stay blocked for good")
    func unansweredTrialsExpire() {
        var b = CircuitBreaker(config: config)
        for _ in 0..<5 { b.recordFailure("timeout", nowMs: 0) }
        for _ in 0..<3 { let ok = b.admit(nowMs: 60_000); #expect(ok) }
        #expect(!b.allows(nowMs: 60_000 + config.trialTimeoutMs - 1), "the trials still hold their slots")
        #expect(b.allows(nowMs: 60_000 + config.trialTimeoutMs), "dropped without a report: the slots are free again")
        let ok = b.admit(nowMs: 60_000 + config.trialTimeoutMs)
        #expect(ok && b.trialsInFlight == 1 && b.state == .halfOpen)
        // Three successes still close it.
        for _ in 0..<2 { _ = b.admit(nowMs: 90_001) }
        for _ in 0..<3 { b.recordSuccess(nowMs: 90_002) }
        #expect(b.state == .closed)
    }

    @Test("Three successful trials close it; one failed trial opens it again for a full recovery time")
    func halfOpenClosesOnSuccessesAndReopensOnAFailure() {
        var b = CircuitBreaker(config: config)
        for _ in 0..<5 { b.recordFailure("timeout", nowMs: 0) }
        for _ in 0..<3 { _ = b.admit(nowMs: 60_000) }
        b.recordSuccess(nowMs: 60_010)
        b.recordSuccess(nowMs: 60_020)
        #expect(b.state == .halfOpen)
        b.recordSuccess(nowMs: 60_030)
        #expect(b.state == .closed && b.consecutiveFailures == 0)

        for _ in 0..<5 { b.recordFailure("timeout", nowMs: 100_000) }
        _ = b.admit(nowMs: 160_000)
        let reopened = b.recordFailure("corrupt_chunk", nowMs: 160_500)
        #expect(reopened, "a failed trial opens it at once")
        #expect(b.state == .open && b.opens == 3 && b.recoversAtMs == 220_500)
    }

    @Test("A session coming up lets trials through early only if unreachability opened it")
    func reachabilityCuresOnlyUnreachability() {
        var unreachable = CircuitBreaker(config: config)
        for _ in 0..<5 { unreachable.recordFailure("timeout", unreachable: true, nowMs: 0) }
        unreachable.recordReachable(nowMs: 5000)
        let trial = unreachable.admit(nowMs: 5000)
        #expect(trial && unreachable.state == .halfOpen)

        var faulty = CircuitBreaker(config: config)
        for i in 0..<5 { faulty.recordFailure(i == 2 ? "corrupt_chunk" : "timeout", unreachable: i != 2, nowMs: 0) }
        faulty.recordReachable(nowMs: 5000)
        let faultyTrial = faulty.admit(nowMs: 5000)
        #expect(faulty.state(nowMs: 5000) == .open && !faultyTrial, "a corrupt chunk waits out the recovery time")
    }

    @Test("Per peer: a failing peer is blocked, the others are not, and reset closes one")
    func registryBlocksOnlyTheFailingPeerAndResetClosesIt() {
        var r = CircuitBreakers(config: config)
        for _ in 0..<5 { r.recordFailure(nid(1), "timeout", nowMs: 0) }
        r.recordFailure(nid(2), "timeout", nowMs: 0)
        #expect(r.blocked(nowMs: 10) == [nid(1)])
        let other = r.admit(nid(3), nowMs: 10)
        #expect(other && r.allows(nid(2), nowMs: 10))
        #expect(r.counts(nowMs: 10)[.open] == 1 && r.nextRecoveryMs == 60_000)
        let reset1 = r.reset(nid(1)), reset3 = r.reset(nid(3))
        #expect(reset1)
        #expect(!reset3, "never failed: nothing to reset")
        #expect(r.blocked(nowMs: 10).isEmpty && r[nid(1)].state == .closed && r[nid(1)].opens == 1)
        r.recordSuccess(nid(2), nowMs: 11)
        #expect(r.byPeer[nid(2)] == nil, "a peer that recovered without ever opening is forgotten")
    }

    @Test("A half-open peer's trials are bounded however many admits race, over many random histories", arguments: 0..<20)
    func trialsNeverExceedTheLimit(seed: UInt64) {
        var g = SplitMix64(seed: seed)
        var b = CircuitBreaker(config: CircuitBreaker.Config(failureThreshold: 2, recoveryTimeoutMs: 100, halfOpenRequests: 3))
        var now: Int64 = 0, outstanding = 0
        for _ in 0..<2000 {
            now += Int64(g.next() % 20)
            switch g.next() % 4 {
            case 0: if b.admit(nowMs: now) { outstanding += 1 }
            case 1: if outstanding > 0 { outstanding -= 1; b.recordSuccess(nowMs: now) }
            case 2: if outstanding > 0 { outstanding -= 1; if b.recordFailure("timeout", nowMs: now) { outstanding = 0 } }
            default: if outstanding > 0 { outstanding -= 1; b.recordWithdrawn() }
            }
            if b.state == .halfOpen { #expect(b.trialsInFlight <= 3) }
            if b.state(nowMs: now) == .open { #expect(!b.allows(nowMs: now)) }
        }
    }
}
