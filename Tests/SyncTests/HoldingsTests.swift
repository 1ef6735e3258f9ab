import Gossip
import Testing
@testable import Sync

func holding(_ origin: Int, _ seq: UInt64, held: [Int] = [], dropped: [Int] = [], hlc: UInt64 = 1 << 16) -> ManifestEntry {
    ManifestEntry(origin: nid(origin), sequence: seq, hlc: hlc,
                  payload: .holding(.init(held: held.map(cid), dropped: dropped.map(cid))))
}

func facts(_ origin: Int, _ seq: UInt64, roles: [String], usedBytes: UInt64 = 0) -> ManifestEntry {
    ManifestEntry(origin: nid(origin), sequence: seq, hlc: seq << 16,
                  payload: .nodeFacts(.init(roles: roles, diskTotalBytes: 100 << 30, diskUsedBytes: usedBytes,
                                            diskFreeBytes: (100 << 30) - usedBytes)))
}

/// Who holds what, from holder records and puts (docs/PROTOCOL.md §4.6, §4.7).
@Suite("Holdings: holders and node facts from each node's own log")
struct HoldingsTests {
    @Test("A put's origin holds its content; others hold it once they say so; a later drop removes them")
    func statementsByLatestSequence() {
        var h = Holdings()
        h.insert(putEntry(1, 1, hlc: 10, content: 7))
        #expect(h.holders(of: cid(7)) == [nid(1)])
        h.insert(holding(2, 1, held: [7]))
        h.insert(holding(3, 4, held: [7, 8]))
        #expect(h.holders(of: cid(7)) == [nid(1), nid(2), nid(3)])
        h.insert(holding(3, 9, dropped: [7]))
        #expect(h.holders(of: cid(7)) == [nid(1), nid(2)])
        #expect(h.holders(of: cid(8)) == [nid(3)])
        h.insert(holding(1, 2, dropped: [7]))
        #expect(h.holders(of: cid(7)) == [nid(2)], "the origin's later drop overrides its put")
        h.insert(putEntry(1, 3, hlc: 30, name: "again", content: 7))
        #expect(h.holders(of: cid(7)) == [nid(1), nid(2)], "putting it again holds it again")
        #expect(h.held(by: nid(3)) == [cid(8)])
        #expect(h.mentioned(by: nid(3)) == [cid(7), cid(8)])
    }

    @Test("Node facts in effect are the origin's latest; tombstones, compactions and unknown kinds change nothing")
    func factsAreTheLatest() {
        var h = Holdings()
        h.insert(facts(1, 5, roles: ["training"]))
        h.insert(facts(1, 2, roles: ["selfplay"]))
        h.insert(tombstone(1, 3, hlc: 3 << 16))
        h.insert(ManifestEntry(origin: nid(1), sequence: 4, hlc: 4 << 16, payload: .unknown(kind: 99, body: [1])))
        #expect(h.facts(of: nid(1))?.facts.roles == ["training"])
        #expect(h.facts(of: nid(1))?.sequence == 5)
        #expect(h.facts(of: nid(2)) == nil)
        #expect(h.allFacts.count == 1)
        #expect(h.allHolders.isEmpty)
        #expect(NodeFacts(h.facts(of: nid(1))!.facts).roles == ["training"], "placement's facts from the stated ones")
    }

    @Test("Every arrival order, with duplicates, builds the same view")
    func anyArrivalOrder() {
        let entries = [
            putEntry(1, 1, hlc: 10, content: 7), holding(1, 2, dropped: [7]), putEntry(1, 3, hlc: 30, name: "b", content: 8),
            holding(2, 1, held: [7, 8]), holding(2, 2, dropped: [8]), holding(2, 3, held: [8, 9]), facts(2, 4, roles: ["a"]),
            facts(2, 5, roles: ["b"]), holding(3, 1, held: [9]), holding(3, 2, dropped: [9]), facts(3, 3, roles: ["c"]),
        ]
        let reference = Holdings(entries)
        #expect(reference.holders(of: cid(7)) == [nid(2)])
        #expect(reference.holders(of: cid(8)) == [nid(1), nid(2)])
        #expect(reference.holders(of: cid(9)) == [nid(2)])
        var rng = SplitMix64(seed: 42)
        for _ in 0..<50 {
            var order = entries + entries.prefix(3)
            for i in order.indices.reversed() { order.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
            let h = Holdings(order)
            #expect(h.allHolders == reference.allHolders)
            #expect(h.allFacts == reference.allFacts)
        }
    }

    @Test("Removing a compacted entry falls back to the statements that remain")
    func removeFallsBack() {
        var h = Holdings([holding(2, 1, held: [7]), holding(2, 2, dropped: [7]), facts(2, 3, roles: ["x"]), facts(2, 4, roles: ["y"])])
        #expect(h.holders(of: cid(7)) == [])
        h.remove(holding(2, 2, dropped: [7]))
        #expect(h.holders(of: cid(7)) == [nid(2)])
        h.remove(holding(2, 1, held: [7]))
        #expect(h.holders(of: cid(7)) == [] && h.mentioned(by: nid(2)).isEmpty)
        h.remove(facts(2, 4, roles: ["y"]))
        #expect(h.facts(of: nid(2))?.facts.roles == ["x"])
        h.insert(holding(2, 1, held: [7]))
        #expect(h.holders(of: cid(7)) == [nid(2)], "a removed entry may come back (it was not void after all)")
    }
}

/// Compacting superseded holder records and node facts (docs/PROTOCOL.md §4.6, §4.7).
@Suite("Compactor: superseded holder records and node facts")
struct HoldingCompactionTests {
    static func inputs(_ entries: [ManifestEntry], nowMs: Int64 = 1_000_000,
                       current: (ManifestEntry.Compaction, sequence: UInt64)? = nil, holds: Set<ContentID> = []) -> Compactor.Inputs {
        var i = Compactor.Inputs(own: nid(1), ownEntries: entries.filter { $0.origin == nid(1) }, catalog: Catalog(entries),
                                 current: current, compactionSequences: [:], nowMs: nowMs, horizonMs: CompactorTests.horizonMs)
        i.holds = holds
        return i
    }

    @Test("A record all of whose contents are restated later goes at once; one still saying something stays")
    func supersededHoldingsGo() {
        let es = [holding(1, 1, held: [7, 8]), holding(1, 2, held: [9]), holding(1, 3, dropped: [7]), holding(1, 4, held: [8])]
        let c = Compactor.plan(Self.inputs(es))
        #expect(c?.ranges == [1...1, 3...3],
                "1 is restated by 3 and 4; 3's drop of 7 overrides only 1, which goes with it; 2 and 4 still say 9 and 8 are held")
        let after = es.filter { ![1, 3].contains($0.sequence) }
        #expect(Compactor.plan(Self.inputs(after, current: (c!, 5))) == nil, "nothing new: no compaction")
    }

    @Test("A drop that overrides a live statement stays, and superseded node facts go")
    func dropsThatMatterStay() {
        let es = [putEntry(1, 1, hlc: 10, content: 7), holding(1, 2, dropped: [7]), facts(1, 3, roles: ["a"]),
                  facts(1, 4, roles: ["b"]), facts(1, 5, roles: ["c"])]
        let c = Compactor.plan(Self.inputs(es))
        #expect(c?.ranges == [3...4], "the put is live, so its drop must stay; facts 3 and 4 are superseded by 5")
        #expect(Compactor.plan(Self.inputs(Array(es.prefix(3)))) == nil, "an idle node writes nothing")
    }

    @Test("A dead put that is its node's latest statement about a content it still holds is restated first, then compacted")
    func deadPutIsRestatedFirst() {
        let t0 = CompactorTests.t0
        let es = [putEntry(1, 1, hlc: CompactorTests.hlc(t0), content: 7), tombstone(2, 1, hlc: CompactorTests.hlc(t0 + 1000))]
        let later = t0 + 30 * CompactorTests.dayMs
        #expect(Compactor.plan(Self.inputs(es, nowMs: later, holds: [cid(7)])) == nil, "voiding the put would unsay that node 1 holds 7")
        #expect(Compactor.deadLatestPuts(Self.inputs(es, nowMs: later)) == [cid(7)])
        #expect(Compactor.restatements(Self.inputs(es, nowMs: later, holds: [cid(7)])) == [cid(7)])
        #expect(Compactor.restatements(Self.inputs(es, nowMs: later)) == [], "not held: nothing to restate")
        #expect(Compactor.plan(Self.inputs(es, nowMs: later))?.ranges == [1...1], "not held: with the put gone the log says so")
        let restated = es + [holding(1, 2, held: [7])]
        #expect(Compactor.restatements(Self.inputs(restated, nowMs: later, holds: [cid(7)])) == [])
        #expect(Compactor.plan(Self.inputs(restated, nowMs: later, holds: [cid(7)]))?.ranges == [1...1])
        #expect(Holdings(restated.filter { $0.sequence != 1 || $0.origin != nid(1) }).holders(of: cid(7)) == [nid(1)],
                "after the compaction node 1 still holds 7")
        #expect(Compactor.deadLatestPuts(Self.inputs(es, nowMs: t0 + CompactorTests.dayMs)) == [], "nothing before the horizon")
    }
}
