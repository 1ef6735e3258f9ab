import TestSupport
import Testing
@testable import Gossip
@testable import MeshSim
@testable import Sync

/// Tombstone compaction (docs/PROTOCOL.md §4.5) in the versions workload: every node runs the
/// real planner on its own skewed clock and every node applies the compactions through the real
/// Manifest, under partitions, crashes and loss; the checkers (`Simulator+Compaction.swift`)
/// hold the dependency rule, no resurrection, and convergence of what remains.
@Suite(.ownThread(.cpu)) struct CompactionSimulationTests: SimulationSuite {
    /// The versions scenario with a 4 s horizon (shorter than its 6 s partitions) and clocks
    /// within ± 1 s (node 1: 10 s behind), so that tombstones, not only puts, get compacted.
    func options(seed: UInt64) -> SimOptions {
        var o = SimOptions.defaults(for: .versions, seed: seed)
        o.nodes = 8; o.durationS = 35; o.clockSkewMs = 1_000; o.compactAfterMs = 4_000
        return o
    }

    @Test("Compacted tombstones and puts leave every node agreeing on what remains, with no resurrection (6 seeds)",
          arguments: 0..<2)
    func compactionUnderPartitionsConverges(group: Int) {
        var compactions = 0, puts = 0, tombstones = 0, deleted = 0
        for k in 0..<3 {
            let o = options(seed: UInt64(1 + group * 3 + k))
            let r = Simulator(options: o).run()
            if !r.ok { Issue.record("seed \(o.seed) failed: \(failures(r)) — reproduce: \(o.reproduceCommand)") }
            #expect(r.metrics.partitions >= 3)
            let m = r.metrics
            compactions += m.compactionsWritten; puts += m.putsCompacted; tombstones += m.tombstonesCompacted
            deleted += m.entriesDeletedByCompaction
        }
        // Compaction did happen, of both kinds, and was applied on other nodes than the writer.
        #expect(compactions > 10 && puts > 10 && tombstones > 5, "\(compactions) compactions, \(puts) puts, \(tombstones) tombstones")
        #expect(deleted > puts + tombstones)
    }

    @Test("With a horizon longer than every partition, no node brings a deleted version back")
    func horizonLongerThanPartitionsRevivesNothing() {
        for seed: UInt64 in [1, 2] {
            var o = options(seed: seed)
            o.clockSkewMs = 0; o.compactAfterMs = 15_000
            let r = Simulator(options: o).run()
            if !r.ok { Issue.record("seed \(o.seed) failed: \(failures(r)) — reproduce: \(o.reproduceCommand)") }
            #expect(r.metrics.tombstonesCompacted > 0)
            #expect(r.metrics.horizonRevivals == 0)
        }
    }

    /// Swarm testing with compaction in every seed: 30 seeds in 3 groups, every fault setting,
    /// the name space, the clock skew (up to an hour) and the horizon drawn from the seed.
    @Test("A swarm of 30 seeds with tombstone compaction passes every checker", arguments: 0..<3)
    func swarmWithCompactionPassesEveryChecker(group: Int) {
        var compactions = 0
        for k in 0..<10 {
            let seed = UInt64(40_000 + group * 10 + k)
            var o = SimOptions.defaults(for: .swarm, seed: seed)
            o.durationS = min(o.durationS, 30)
            o.nodes = min(o.nodes, 8)
            if o.names == 0 { o.names = 1 + Int(seed % 5); o.tombstoneFraction = 0.3; o.clockSkewMs = Double(seed % 3) * 1_000 }
            if o.compactAfterMs == 0 { o.compactAfterMs = [2_000, 5_000][Int(seed % 2)] }
            let r = Simulator(options: o).run()
            if !r.ok { Issue.record("seed \(o.seed) failed (\(o.summary)): \(failures(r)) — reproduce: \(o.reproduceCommand)") }
            compactions += r.metrics.compactionsWritten
        }
        #expect(compactions > 0)
    }

    /// The checkers are not vacuous: with compactions written without their dependencies (a
    /// test-only option), receivers drop tombstones while still holding the puts they delete,
    /// before the compactions of those puts arrive, and show those puts live again.
    @Test("Compactions without their dependencies are caught: the dependency rule and a resurrection")
    func compactionWithoutDependenciesIsCaught() {
        var rule = 0, resurrection = 0
        for seed: UInt64 in 1...4 {
            var o = options(seed: seed)
            o.compactionWithoutDependencies = true
            let r = Simulator(options: o).run()
            #expect(!r.safetyOK, "seed \(seed): no violation although compactions carry no dependencies")
            if r.safetyViolations.contains(where: { $0.contains("dependency rule:") }) { rule += 1 }
            if r.safetyViolations.contains(where: { $0.contains("resurrection:") }) { resurrection += 1 }
        }
        #expect(rule > 0 && resurrection > 0, "dependency rule broken in \(rule) seeds, resurrection in \(resurrection)")
    }

    @Test("The oracle of what remains voids puts at once and a tombstone only once its dependencies are held")
    func oracleOfWhatRemainsFollowsTheDependencyRule() {
        let a = SimCrypto.nodeID(seed: 1, index: 0), b = SimCrypto.nodeID(seed: 1, index: 1)
        let put = ManifestEntry(origin: b, sequence: 1, hlc: 100, contentID: ContentID(digest: .zero), sizeBytes: 1,
                                chunkSizeBytes: 4096, type: .model, createdAtMs: 0, name: "x")
        let rm = ManifestEntry(origin: a, sequence: 1, hlc: 101, payload: .tombstone(.init(scope: .name, name: "x", createdAtMs: 0)))
        let putGone = ManifestEntry(origin: b, sequence: 2, hlc: 102, payload: .compaction(.init(ranges: [1...1])))
        let rmGone = ManifestEntry(origin: a, sequence: 2, hlc: 103,
                                   payload: .compaction(.init(ranges: [1...1], dependencies: [EntryRef(origin: b, sequence: 2)])))
        // Without b's compaction the rm stays (and deletes the put); with it, both go.
        #expect(Simulator.withoutVoid([put, rm, rmGone]).map(\.ref) == [put.ref, rm.ref, rmGone.ref])
        #expect(Simulator.withoutVoid([put, rm, putGone, rmGone]).map(\.ref) == [putGone.ref, rmGone.ref])
        // And the Manifest agrees, whatever the order.
        for order in [[put, rm, rmGone, putGone], [rmGone, putGone, rm, put], [putGone, rm, put, rmGone]] {
            var m = Manifest()
            for e in order { _ = m.insert(e, maxForks: 1) }
            #expect(Set(m.allEntries.map(\.ref)) == [putGone.ref, rmGone.ref])
        }
    }
}
