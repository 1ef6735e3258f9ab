import TestSupport
import Testing
@testable import Gossip
@testable import MeshSim

/// Runs one simulation and turns a failed checker into a test failure that names the
/// seed and the command that reproduces the run.
@discardableResult
func check(_ o: SimOptions, sourceLocation: SourceLocation = #_sourceLocation) -> SimResult {
    let r = Simulator(options: o).run()
    if !r.ok {
        let why = (r.safetyViolations.map { "safety: \($0)" } + r.livenessViolations.map { "liveness: \($0)" }).prefix(5)
        Issue.record("seed \(o.seed) failed (\(o.summary)): \(why.joined(separator: "; ")) — reproduce: \(o.reproduceCommand)",
                     sourceLocation: sourceLocation)
    }
    return r
}

@Suite(.ownThread(.cpu)) struct SimulationTests {
    @Test(arguments: 1...4 as ClosedRange<UInt64>)
    func spreadDeliversEveryItemToEveryNode(seed: UInt64) {
        var o = SimOptions.defaults(for: .spread, seed: seed)
        o.nodes = 10; o.durationS = 15
        let r = check(o)
        #expect(r.deliveries == r.metrics.items * 9)
        #expect(r.metrics.falseDeaths == 0)
    }

    @Test(arguments: 1...4 as ClosedRange<UInt64>)
    func partitionHealConvergesAfterTheFinalHeal(seed: UInt64) {
        var o = SimOptions.defaults(for: .partitionHeal, seed: seed)
        o.nodes = 10; o.durationS = 40; o.itemsPerS = 5
        let r = check(o)
        #expect(r.metrics.partitions >= 3)
        #expect(r.itemsConvergenceAfterHealMs != nil)
    }

    @Test(arguments: 1...3 as ClosedRange<UInt64>)
    func churnWithCrashesJoinsLeavesAndVanishingNodesStaysSafeAndConverges(seed: UInt64) {
        var o = SimOptions.defaults(for: .churn, seed: seed)
        o.nodes = 10; o.durationS = 60
        let r = check(o)
        #expect(r.nodesEver >= 10)
    }

    /// Crashed nodes come back on a new host and port, some before anyone noticed they were
    /// gone, some long after they were declared dead: every view follows them to their new
    /// address (the liveness checker compares each member's address with where it listens),
    /// and nothing is lost. 12 seeds in 3 groups (the swarm below moves restarted nodes in
    /// about half of its seeds too).
    @Test(arguments: 0..<3)
    func nodesRestartedOnNewAddressesAreAliveAtTheirNewAddressInEveryView(group: Int) {
        for k in 0..<4 {
            var o = SimOptions.defaults(for: .relocate, seed: UInt64(500 + group * 4 + k))
            o.nodes = 8; o.durationS = 40
            let r = check(o)
            #expect(r.metrics.relocations > 0, "seed \(o.seed) moved no node")
        }
    }

    /// Swarm testing: every fault setting drawn from the seed; 200 seeds in 8 parallel groups.
    @Test(arguments: 0..<8)
    func swarmOfTwoHundredSeedsPassesBothCheckers(group: Int) {
        for k in 0..<25 {
            var o = SimOptions.defaults(for: .swarm, seed: UInt64(10_000 + group * 25 + k))
            o.durationS = min(o.durationS, 30)
            o.nodes = min(o.nodes, 8)
            check(o)
        }
    }

    @Test func sameSeedGivesTheSameRunEventForEvent() {
        var o = SimOptions.defaults(for: .swarm, seed: 77)
        o.nemesis = true; o.loss = 0.05; o.duplicate = 0.05; o.partitions = [.symmetric]
        let a = Simulator(options: o).run(), b = Simulator(options: o).run()
        #expect(a.events > 1000)
        #expect(a.events == b.events && a.traceDigest == b.traceDigest)
        #expect(a.metrics.messages == b.metrics.messages)
        #expect(a.metrics.bytes == b.metrics.bytes)
        #expect(a.metrics.rejected == b.metrics.rejected)
        #expect(a.latencyP50Ms == b.latencyP50Ms && a.latencyMaxMs == b.latencyMaxMs)
        #expect(a.convergenceAfterHealMs == b.convergenceAfterHealMs)
        var c = o
        c.seed = 78
        let other = Simulator(options: c).run()
        #expect(other.metrics.bytes != a.metrics.bytes)
        #expect(other.traceDigest != a.traceDigest)
    }

    /// The nemesis cycles through its kinds of injection (the k-th is kind k mod count), so
    /// every seed sees every reason; with a random kind per injection, seed 15 (and seed 3 once
    /// the simulator drew its random numbers differently) never sent a `malformed` one, and most
    /// seeds never an `oversized` one. (Seeds 1-40 all pass.)
    @Test(arguments: [UInt64(3), 15, 1, 40])
    func nemesisInputIsRejectedForEveryReasonAndNothingForgedIsAccepted(seed: UInt64) {
        var o = SimOptions.defaults(for: .partitionHeal, seed: seed)
        o.nodes = 8; o.durationS = 40; o.duplicate = 0.05
        let r = check(o)
        #expect(r.metrics.nemesisMessages > 0)
        for reason in ["malformed", "oversized", "bad_signature", "untrusted_key", "untrusted_origin", "bad_entry_signature", "replayed"] {
            #expect((r.metrics.rejected[reason] ?? 0) > 0, "seed \(seed): no \(reason) rejection")
        }
    }

    @Test func safetyCheckerCatchesAForgedEntry() {
        var o = SimOptions.defaults(for: .spread, seed: 5)
        o.nodes = 4; o.durationS = 5; o.settleS = 5
        let sim = Simulator(options: o)
        _ = sim.run()
        #expect(sim.safetyViolations().isEmpty)
        let forged = ManifestEntry(origin: sim.nodes[1].id, sequence: 999, contentID: ContentID(digest: .zero), sizeBytes: 1,
                                   chunkSizeBytes: 4096, type: .other, createdAtMs: 0, name: "forged")
        _ = sim.nodes[0].gossip!.manifest.insert(forged, maxForks: 1)
        #expect(sim.safetyViolations().contains { $0.contains("forged") })
    }

    @Test func livenessCheckerCatchesAMissingItem() {
        var o = SimOptions.defaults(for: .spread, seed: 6)
        o.nodes = 4; o.durationS = 5; o.settleS = 5
        let sim = Simulator(options: o)
        _ = sim.run()
        #expect(sim.livenessViolations(limit: 5).isEmpty)
        let extra = ManifestEntry(origin: sim.nodes[1].id, sequence: 500, contentID: ContentID(digest: .zero), sizeBytes: 1,
                                  chunkSizeBytes: 4096, type: .other, createdAtMs: 0, name: "only-here").signed(by: SimSigner(nodeID: sim.nodes[1].id))
        sim.genuine[EntryRef(origin: extra.origin, sequence: 500)] = extra
        _ = sim.nodes[1].gossip!.manifest.insert(extra, maxForks: 1)
        #expect(!sim.livenessViolations(limit: 5).isEmpty)
    }

    @Test func detectionScenarioMarksACrashedNodeDeadEverywhere() {
        var o = SimOptions.defaults(for: .detect, seed: 9)
        o.nodes = 30; o.durationS = 60
        let r = check(o)
        #expect(r.detectionMs.count == 1)
        #expect(r.metrics.falseDeaths == 0)
    }

    @Test func jsonHasEveryContractKey() {
        var o = SimOptions.defaults(for: .spread, seed: 2)
        o.nodes = 4; o.durationS = 4; o.settleS = 5
        let j = Simulator(options: o).run().json
        for k in ["seed", "nodes", "items", "messages", "bytes", "messages_per_item", "latency_ms", "p50", "p99", "max",
                  "convergence_after_heal_ms", "false_suspicions", "false_deaths", "safety_ok", "liveness_ok", "wall_s"] {
            #expect(j.contains("\"\(k)\":"), "missing \(k)")
        }
        #expect(j.hasPrefix("{") && j.hasSuffix("}"))
    }

    /// Peers behind an SSH/SOCKS5 tunnel: no datagram passes to or from them, yet they
    /// probe, are probed, receive and originate items like everyone else.
    @Test(arguments: 1...2 as ClosedRange<UInt64>)
    func tunnelOnlyPeersTakeFullPartWithoutASingleDatagram(seed: UInt64) {
        var o = SimOptions.defaults(for: .partitionHeal, seed: seed)
        o.nodes = 10; o.durationS = 30; o.streamOnlyNodes = 3; o.itemsPerS = 5
        let r = check(o)
        #expect(r.metrics.datagramsToTunnelOnly == 0)
        #expect(r.metrics.falseDeaths == 0)
    }
}
