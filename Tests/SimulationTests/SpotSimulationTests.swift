import TestSupport
import Testing
@testable import Gossip
@testable import MeshSim

/// The spot model (`spot`, `spot-swarm`): ephemeral nodes producing items and terminated with
/// and without notice, durable nodes crashing and filling up, every node running the product's
/// `SafetyTracker` and `Custody` over the real `GossipNode`'s membership; the checkers read the
/// ground truth.
@Suite(.ownThread(.cpu)) struct SpotSimulationTests: SimulationSuite {
    /// 30 seeds of `spot` (the defaults, 40 s of faults) and 30 of `spot-swarm` (every setting drawn from the seed).
    @Test("A sweep of 60 spot and spot-swarm seeds passes every checker, and the workload does what it is for", arguments: 0..<3)
    func spotSweepPassesEveryChecker(group: Int) {
        var m = SpotMetrics()
        var bound: Int64 = 0
        for k in 0..<20 {
            let swarm = k % 2 == 1
            var o = SimOptions.defaults(for: swarm ? .spotSwarm : .spot, seed: UInt64(1 + group * 20 + k))
            o.durationS = min(o.durationS, 40)
            let (sim, r) = run(o)
            if !r.ok { Issue.record("seed \(o.seed) failed: \(failures(r)) — reproduce: \(o.reproduceCommand)") }
            let s = sim.spotWork.metrics
            m.items += s.items; m.sigterms += s.sigterms; m.kills += s.kills; m.returns += s.returns
            m.refusals += s.refusals; m.durableCrashes += s.durableCrashes; m.lostNoNotice += s.lostNoNotice
            m.durableItems += s.durableItems; m.safe += s.safe
            m.maxLostDataAgeMs = max(m.maxLostDataAgeMs, s.maxLostDataAgeMs)
            m.asks += s.asks; m.fetchesCompleted += s.fetchesCompleted; m.boundExcused += s.boundExcused
            bound = max(bound, sim.spotPushBoundNs + Simulator.spotCadenceNs)
        }
        // Terminations of each kind, hosts coming back with their outbox, durable crashes and
        // refusals all happened; kill -9 did lose recent items (so the bound is not vacuous),
        // never writes older than cadence + push bound (but on pushes disturbed by durable faults).
        #expect(m.items > 5_000 && m.durableItems > 100 && m.safe > 5_000, "\(m.fields)")
        #expect(m.sigterms > 5 && m.kills > 5 && m.returns > 0, "\(m.fields)")
        #expect(m.refusals > 0 && m.durableCrashes > 5, "\(m.fields)")
        #expect(m.lostNoNotice > 0, "\(m.fields)")
        #expect(m.maxLostDataAgeMs * 1_000_000 < bound, "\(m.fields)")
    }

    func bugRun(_ bug: SpotBug, seed: UInt64, tweak: (inout SimOptions) -> Void = { _ in }) -> SimResult {
        var o = SimOptions.defaults(for: .spot, seed: seed)
        o.durationS = 40
        o.settleS = 30
        tweak(&o)
        o.spotBug = bug
        return run(o).1
    }

    @Test("The loss checkers catch a node that takes every member for durable (an ephemeral holder counted safe)")
    func lossCheckersCatchAnEphemeralHolderCountedSafe() {
        let r = bugRun(.ephemeralHolderSafe, seed: 3)
        #expect(r.safetyViolations.contains { $0.hasPrefix("spot no-notice:") }, "\(r.safetyViolations.prefix(3))")
        #expect(r.safetyViolations.contains { $0.hasPrefix("spot notice:") }, "\(r.safetyViolations.prefix(3))")
        #expect(r.safetyViolations.contains { $0.hasPrefix("spot safe claim:") && $0.contains("is ephemeral") })
    }

    @Test("The liveness and notice checkers catch a shell that never replaces a failed ask")
    func checkersCatchNeverRetrying() {
        let r = bugRun(.neverRetry, seed: 1)
        #expect(r.livenessViolations.contains { $0.hasPrefix("spot liveness:") }, "\(r.livenessViolations.prefix(3))")
        #expect(r.safetyViolations.contains { $0.hasPrefix("spot notice:") }, "\(r.safetyViolations.prefix(3))")
    }

    @Test("The notice checker catches a SIGTERM that exits without waiting for the final snapshot to be safe")
    func noticeCheckerCatchesNoWaitAtSigterm() {
        let ok = bugRun(.none, seed: 2) { $0.noticeFraction = 1 }
        #expect(ok.ok, "\(failures(ok))")
        let r = bugRun(.noWaitAtSigterm, seed: 2) { $0.noticeFraction = 1 }
        #expect(r.safetyViolations.contains { $0.hasPrefix("spot notice:") && $0.contains("final snapshot") }, "\(r.safetyViolations.prefix(3))")
    }

    @Test("The liveness checker catches a host that comes back after kill -9 without its outbox")
    func livenessCheckerCatchesAForgottenOutbox() {
        let tweak: (inout SimOptions) -> Void = { $0.noticeFraction = 0; $0.returnFraction = 1; $0.spotKillsPerMin = 20 }
        let ok = bugRun(.none, seed: 4, tweak: tweak)
        #expect(ok.ok, "\(failures(ok))")
        let r = bugRun(.forgetOutbox, seed: 4, tweak: tweak)
        #expect(r.livenessViolations.contains { $0.contains("its origin does not track it") }, "\(r.livenessViolations.prefix(3))")
    }

    @Test("The notice checker catches a shutdown that keeps two custodians and a 10 s accept timeout with a 10 s deadline")
    func noticeCheckerCatchesAPlainShutdown() {
        // spot-swarm seed 1114: 5 durable nodes, a 10 s deadline; n21's two first custodians
        // (n0, n3) crashed unnoticed just before its SIGTERM, while n2 stayed up throughout.
        let o = SimOptions.defaults(for: .spotSwarm, seed: 1114)
        #expect(o.shutdownDeadlineS == 10 && o.durableNodes == 5)
        let ok = run(o).1
        #expect(ok.ok, "\(failures(ok))")
        var bug = o
        bug.spotBug = .plainShutdown
        let r = run(bug).1
        #expect(r.safetyViolations.contains { $0.hasPrefix("spot notice:") && $0.contains("put by n21") }, "\(r.safetyViolations.prefix(3))")
    }

    @Test("One seed gives the same spot run, event for event")
    func spotRunsAreDeterministic() {
        var o = SimOptions.defaults(for: .spotSwarm, seed: 9)
        o.durationS = 30
        let (sa, a) = run(o), (sb, b) = run(o)
        #expect(a.traceDigest == b.traceDigest && a.events == b.events)
        #expect(sa.spotWork.metrics.asks == sb.spotWork.metrics.asks && sa.spotWork.metrics.safe == sb.spotWork.metrics.safe)
    }
}
