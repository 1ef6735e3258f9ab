import TestSupport
import Testing
@testable import Gossip
@testable import MeshSim
@testable import Sync

/// The versions workload: puts and tombstones of a few names from every node, each with a
/// skewed wall clock, during partitions and crashes; the checkers compare every node's
/// `Sync.Catalog` view with an independent oracle of docs/PROTOCOL.md §4.4.
@Suite(.ownThread(.cpu)) struct VersionSimulationTests {
    /// After the heal, every live node shows the same current version of each concurrently
    /// written name, and lists both puts of every concurrent pair.
    func expectConcurrentPairsResolveTheSameEverywhere(_ sim: Simulator) {
        let live = sim.nodes.indices.filter { sim.nodes[$0].up }
        for (p, q) in sim.versionWork.concurrent {
            guard let name = sim.genuine[p]?.name else { continue }
            let holders = live.filter { sim.nodes[$0].gossip!.manifest.contains(p) && sim.nodes[$0].gossip!.manifest.contains(q) }
            var currents = Set<EntryRef?>()
            for i in holders {
                let listed = sim.nodes[i].catalog.versions(of: name, nowMs: sim.wallMs(i)).map(\.entry.ref)
                #expect(listed.contains(p) && listed.contains(q), "n\(i) does not list both concurrent puts of \(name)")
                currents.insert(sim.nodes[i].catalog.current(name, nowMs: sim.wallMs(i))?.entry.ref)
            }
            #expect(currents.count <= 1, "nodes disagree on the current version of \(name): \(currents)")
        }
    }

    @Test("Versions and tombstones written across partitions resolve to the same view on every node (8 seeds)",
          arguments: 0..<2)
    func versionsUnderPartitionsConverge(group: Int) {
        var puts = 0, conflicts = 0, deleted = 0, revived = 0, reviving = 0, severalOrigins = 0
        for k in 0..<4 {
            var o = SimOptions.defaults(for: .versions, seed: UInt64(1 + group * 4 + k))
            o.nodes = 8; o.durationS = 35
            let sim = Simulator(options: o)
            let r = sim.run()
            if !r.ok {
                let why = (r.safetyViolations.map { "safety: \($0)" } + r.livenessViolations.map { "liveness: \($0)" }).prefix(5)
                Issue.record("seed \(o.seed) failed: \(why.joined(separator: "; ")) — reproduce: \(o.reproduceCommand)")
            }
            #expect(r.metrics.partitions >= 3)
            expectConcurrentPairsResolveTheSameEverywhere(sim)
            let m = r.metrics
            puts += m.versionPuts; conflicts += m.concurrentPuts; deleted += m.namesDeletedAtEnd
            revived += m.namesRevivedAtEnd; reviving += m.revivingPuts; severalOrigins += m.namesWithSeveralOrigins
            #expect(m.nameTombstones > 0 && m.versionTombstones > 0, "seed \(o.seed) wrote no tombstone of some scope")
        }
        // The workload did what it is for: collisions from several origins, concurrent writers
        // across partitions, names deleted for good and names put again after a tombstone.
        #expect(puts > 100 && conflicts > 10 && severalOrigins > 0)
        #expect(deleted > 0, "no name ended deleted in 4 seeds")
        #expect(revived > 0 && reviving > 0)
    }

    /// Swarm testing with the versions workload in every seed: 30 seeds in 3 groups, every
    /// fault setting and the name space, tombstone share and clock skew (up to an hour) drawn
    /// from the seed.
    @Test("A swarm of 30 seeds with versions and tombstones passes every checker", arguments: 0..<3)
    func swarmWithVersionsPassesEveryChecker(group: Int) {
        for k in 0..<10 {
            let seed = UInt64(30_000 + group * 10 + k)
            var o = SimOptions.defaults(for: .swarm, seed: seed)
            o.durationS = min(o.durationS, 30)
            o.nodes = min(o.nodes, 8)
            if o.names == 0 { o.names = 1 + Int(seed % 5); o.clockSkewMs = 3_600_000; o.conflictFraction = 0.5 }
            let sim = Simulator(options: o)
            let r = sim.run()
            if !r.ok {
                let why = (r.safetyViolations.map { "safety: \($0)" } + r.livenessViolations.map { "liveness: \($0)" }).prefix(5)
                Issue.record("seed \(o.seed) failed (\(o.summary)): \(why.joined(separator: "; ")) — reproduce: \(o.reproduceCommand)")
            }
            expectConcurrentPairsResolveTheSameEverywhere(sim)
        }
    }

    /// A small run to tamper with afterwards.
    func settledRun(seed: UInt64) -> Simulator {
        var o = SimOptions.defaults(for: .versions, seed: seed)
        o.nodes = 4; o.durationS = 10; o.settleS = 20; o.partitions = [.symmetric]; o.crashesPerMin = 0
        let sim = Simulator(options: o)
        let r = sim.run()
        #expect(r.ok, "\(r.safetyViolations + r.livenessViolations)")
        return sim
    }

    @Test("The safety checker catches a node that still shows a name its entries delete")
    func safetyCheckerCatchesADeletedNameShownLive() throws {
        let sim = settledRun(seed: 7)
        #expect(sim.versionSafetyViolations().isEmpty)
        let name = try #require(sim.versionWork.names.first { sim.nodes[0].catalog.current($0, nowMs: sim.wallMs(0)) != nil })
        // n1 deletes the name, and n0's manifest takes the tombstone but its view never hears of it.
        let id = sim.nodes[1].id
        let highest = sim.nodes[1].gossip!.entries.map(\.hlc).max() ?? 0
        let t = ManifestEntry(origin: id, sequence: 10_000, hlc: highest + 1,
                              payload: .tombstone(.init(scope: .name, name: name, createdAtMs: 0))).signed(by: SimSigner(nodeID: id))
        sim.genuine[t.ref] = t
        sim.versionWork.refs.append(t.ref)
        _ = sim.nodes[0].gossip!.manifest.insert(t, maxForks: 1)
        #expect(sim.versionSafetyViolations().contains { $0.contains("n0 shows deleted name \(name) live") })
    }

    @Test("The liveness checker catches a node that does not list a losing concurrent version")
    func livenessCheckerCatchesAMissingLoser() throws {
        let sim = settledRun(seed: 8)
        #expect(sim.livenessViolations(limit: 5).isEmpty)
        let name = try #require(sim.versionWork.names.first { sim.nodes[0].catalog.current($0, nowMs: sim.wallMs(0)) != nil })
        // A put by n1 that loses to the current version (a smaller clock): only n1 holds it.
        let cur = try #require(sim.nodes[0].catalog.current(name, nowMs: sim.wallMs(0)))
        let id = sim.nodes[1].id
        let p = ManifestEntry(origin: id, sequence: 10_000, hlc: cur.entry.hlc - 1, contentID: ContentID(digest: .zero), sizeBytes: 1,
                              chunkSizeBytes: 4096, type: .model, createdAtMs: 0, name: name).signed(by: SimSigner(nodeID: id))
        sim.genuine[p.ref] = p
        sim.versionWork.refs.append(p.ref)
        _ = sim.nodes[1].gossip!.manifest.insert(p, maxForks: 1)
        sim.nodes[1].catalog.insert(p)
        let v = sim.livenessViolations(limit: 10)
        #expect(v.contains { $0.contains("n0 lists \(name)'s versions") && $0.contains("missing") })
        #expect(!v.contains { $0.contains("n1 lists") }, "n1 holds it and lists it: \(v)")
        #expect(sim.nodes[1].catalog.current(name, nowMs: sim.wallMs(1))?.entry.ref == cur.entry.ref, "the loser became current")
    }

    @Test("The oracle and the Catalog agree: the greater clock wins, a tombstone hides what it follows, a later put revives")
    func oracleAgreesWithCatalogOnAHandMadeHistory() {
        let a = SimCrypto.nodeID(seed: 1, index: 0), b = SimCrypto.nodeID(seed: 1, index: 1)
        func put(_ o: NodeID, _ s: UInt64, _ hlc: UInt64) -> ManifestEntry {
            ManifestEntry(origin: o, sequence: s, hlc: hlc, contentID: ContentID(digest: Bytes32(w0: hlc, w1: s, w2: 0, w3: 0)),
                          sizeBytes: 1, chunkSizeBytes: 4096, type: .model, createdAtMs: 0, name: "x")
        }
        func rm(_ o: NodeID, _ s: UInt64, _ hlc: UInt64, _ scope: ManifestEntry.Tombstone.Scope = .name) -> ManifestEntry {
            ManifestEntry(origin: o, sequence: s, hlc: hlc, payload: .tombstone(.init(scope: scope, name: "x", createdAtMs: 0)))
        }
        // Concurrent puts with one clock value (the origin's bytes break the tie), an rm after
        // both, a put after the rm, and a version rm of that put: then nothing is live.
        let histories: [([ManifestEntry], EntryRef?)] = [
            ([put(a, 1, 100), put(b, 1, 100)], EntryRef(origin: max(a, b), sequence: 1)),
            ([put(a, 1, 100), put(b, 1, 100), rm(a, 2, 101)], nil),
            ([put(a, 1, 100), put(b, 1, 100), rm(a, 2, 101), put(b, 2, 102)], EntryRef(origin: b, sequence: 2)),
            ([put(a, 1, 100), rm(a, 2, 101), put(b, 2, 102), rm(a, 3, 103, .version(EntryRef(origin: b, sequence: 2)))], nil),
            ([put(a, 1, 100), put(b, 1, 99), rm(b, 2, 100)], EntryRef(origin: a, sequence: 1)),
        ]
        for (entries, want) in histories {
            let x = VersionOracle(entries: entries, names: ["x"])
            #expect(x.views["x"]?.current?.ref == want)
            for order in [entries, entries.reversed()] {
                let c = Catalog(order)
                #expect(c.current("x", nowMs: 0)?.entry.ref == want)
                #expect(c.versions(of: "x", nowMs: 0).map(\.entry.ref) == x.views["x"]!.puts.map(\.ref))
            }
        }
    }
}
