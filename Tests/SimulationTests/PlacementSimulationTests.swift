import TestSupport
import Testing
@testable import Gossip
@testable import MeshSim
@testable import Sync

/// The placement model (`placement`, `broadcast`): contents with types and sizes over nodes of
/// mixed roles, disks and caps, holders crashing with their disk; every decision made by the
/// node's own `Placement` and `Eviction` over the kind-4 and kind-5 entries gossiped by the real
/// `GossipNode`; the checkers read the ground truth.
@Suite(.ownThread(.cpu)) struct PlacementSimulationTests: SimulationSuite {
    @Test("Placement with mixed roles, crashing holders and disks filling up passes every checker (6 seeds)", arguments: 0..<2)
    func placementPassesEveryChecker(group: Int) {
        var m = PlacementMetrics()
        for k in 0..<3 {
            var o = SimOptions.defaults(for: .placement, seed: UInt64(1 + group * 3 + k))
            o.durationS = 40
            let (_, r) = run(o)
            if !r.ok { Issue.record("seed \(o.seed) failed: \(failures(r)) — reproduce: \(o.reproduceCommand)") }
            let p = r.metrics.placement
            m.puts += p.puts; m.fetchesCompleted += p.fetchesCompleted; m.evicted += p.evicted
            m.droppedNotTarget += p.droppedNotTarget; m.restored += p.restored; m.holdingEntries += p.holdingEntries
            m.factsEntries += p.factsEntries
        }
        // The workload did what it is for: replicas fetched, copies dropped and evicted, holders
        // replaced after crashes, holdings and facts gossiped as entries.
        #expect(m.puts > 100 && m.fetchesCompleted > 100, "\(m)")
        #expect(m.evicted > 0 && m.droppedNotTarget > 0, "\(m)")
        #expect(m.restored > 0 && m.holdingEntries > 0 && m.factsEntries > 0, "\(m)")
    }

    @Test("Broadcast puts reach every node that can take them, and receivers serve one another (4 seeds)")
    func broadcastReachesEveryEligibleNode() {
        var fromOthers = 0, completed = 0
        for seed in UInt64(1)...4 {
            var o = SimOptions.defaults(for: .broadcast, seed: seed)
            o.durationS = 30
            let (_, r) = run(o)
            if !r.ok { Issue.record("seed \(o.seed) failed: \(failures(r)) — reproduce: \(o.reproduceCommand)") }
            fromOthers += r.metrics.placement.fetchesFromOthers
            completed += r.metrics.placement.fetchesCompleted
        }
        #expect(completed > 50)
        #expect(fromOthers * 5 > completed, "only \(fromOthers) of \(completed) fetches were served by a node other than the origin")
    }

    /// Swarm testing: scenario, policy, cluster size, crash rate and fill rate drawn from the seed.
    @Test("A swarm of 30 placement and broadcast seeds passes every checker", arguments: 0..<3)
    func placementSwarmPassesEveryChecker(group: Int) {
        for k in 0..<10 {
            let seed = UInt64(40_000 + group * 10 + k)
            var r = SplitMix64(seed: seed)
            var o = SimOptions.defaults(for: r.below(3) == 0 ? .broadcast : .placement, seed: seed)
            o.placementPolicy = PlacementPolicyChoice.allCases[r.below(3)]
            o.nodes = 4 + r.below(5)
            o.durationS = 20
            o.settleS = 40
            o.crashesPerMin = [0, 2, 4][r.below(3)]
            o.diskFillsPerMin = [0, 4, 10][r.below(3)]
            o.broadcastFraction = [0, 0.3, 1][r.below(3)]
            let res = Simulator(options: o).run()
            if !res.ok { Issue.record("seed \(seed) failed (\(o.summary)): \(failures(res)) — reproduce: \(o.reproduceCommand)") }
        }
    }

    /// Crashed holders stay down for longer than the bound: only another node can restore.
    func restoreRun(seed: UInt64, bug: PlacementBug) -> SimResult {
        var o = SimOptions.defaults(for: .placement, seed: seed)
        o.placementPolicy = .tight
        o.durationS = 30; o.crashesPerMin = 6; o.downS = 40
        o.placementBug = bug
        return run(o).1
    }

    @Test("The restore checker catches nodes that never evaluate targets again after a holder dies")
    func restoreCheckerCatchesNoReevaluation() {
        let ok = restoreRun(seed: 5, bug: .none)
        #expect(ok.ok, "\(failures(ok))")
        let r = restoreRun(seed: 5, bug: .noReevaluation)
        #expect(r.livenessViolations.contains { $0.contains("placement restore bound") }, "\(r.livenessViolations.prefix(3))")
    }

    @Test("The restore checker catches an origin that never fetches its own put again, as the running node did before it re-fetched its own puts")
    func restoreCheckerCatchesAnOriginThatNeverRefetches() {
        let ok = restoreRun(seed: 6, bug: .none)
        #expect(ok.ok, "\(failures(ok))")
        let r = restoreRun(seed: 6, bug: .originNeverRefetches)
        #expect(r.livenessViolations.contains { $0.contains("placement restore bound") && $0.contains("its origin") },
                "\(r.livenessViolations.prefix(3))")
    }

    @Test("The exclusion checker catches a node that forgets its own exclude_from_sync")
    func exclusionCheckerCatchesAForgottenExclusion() {
        var o = SimOptions.defaults(for: .placement, seed: 4)
        o.durationS = 20
        o.placementBug = .forgetExcluded
        let sim = Simulator(options: o)
        sim.placementWork.disks[3].excluded = true
        sim.placementWork.disks[3].roles = []
        let r = sim.run()
        #expect(r.safetyViolations.contains { $0.contains("n3 is excluded from sync but fetches") }, "\(r.safetyViolations.prefix(3))")
    }

    @Test("The cap checker catches fetches decided by the full flag alone, as the running node did before it passed sizes and room")
    func capCheckerCatchesFetchesThatOvershootTheCap() {
        var o = SimOptions.defaults(for: .placement, seed: 5)
        o.durationS = 30
        o.placementBug = .ignoreRoom
        let r = run(o).1
        #expect(r.safetyViolations.contains { $0.contains("over its max_disk_usage") }, "\(r.safetyViolations.prefix(3))")
    }

    @Test("The last-copy checker catches eviction handed holder records that name every alive node")
    func lastCopyCheckerCatchesTrustInEveryHolder() {
        var o = SimOptions.defaults(for: .placement, seed: 6)
        o.durationS = 20
        o.placementPolicy = .tight
        o.placementBug = .trustEveryHolder
        let r = run(o).1
        #expect(r.safetyViolations.contains { $0.contains("last complete copy") }, "\(r.safetyViolations.prefix(3))")
    }

    @Test("The broadcast checker catches decisions that ignore the broadcast flag")
    func broadcastCheckerCatchesAnIgnoredFlag() {
        var o = SimOptions.defaults(for: .broadcast, seed: 2)
        o.durationS = 30
        o.placementPolicy = .tight
        o.broadcastFraction = 1
        #expect(run(o).1.ok)
        o.placementBug = .ignoreBroadcastFlag
        let r = run(o).1
        #expect(r.livenessViolations.contains { $0.hasPrefix("broadcast:") }, "\(r.livenessViolations.prefix(3))")
    }

    @Test("One seed gives the same placement run, event for event")
    func placementRunsAreDeterministic() {
        var o = SimOptions.defaults(for: .placement, seed: 9)
        o.durationS = 20
        let a = run(o).1, b = run(o).1
        #expect(a.traceDigest == b.traceDigest && a.events == b.events)
        #expect(a.metrics.placement.fetchesCompleted == b.metrics.placement.fetchesCompleted)
    }
}
