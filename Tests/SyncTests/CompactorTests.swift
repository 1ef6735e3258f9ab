import Gossip
import Testing
@testable import Sync

/// What an origin compacts out of its own log (docs/PROTOCOL.md §4.5).
@Suite("Compactor: an origin's own dead entries, past the horizon")
struct CompactorTests {
    static let dayMs: Int64 = 86_400_000
    static let horizonMs = 7 * dayMs
    static let t0: Int64 = 1_767_225_600_000

    static func hlc(_ ms: Int64, _ c: UInt64 = 0) -> UInt64 { UInt64(ms) << 16 | c }

    static func inputs(_ entries: [ManifestEntry], own: Int = 1, nowMs: Int64,
                       current: (ManifestEntry.Compaction, sequence: UInt64)? = nil,
                       others: [NodeID: UInt64] = [:]) -> Compactor.Inputs {
        Compactor.Inputs(own: nid(own), ownEntries: entries.filter { $0.origin == nid(own) }, catalog: Catalog(entries),
                         current: current, compactionSequences: others, nowMs: nowMs, horizonMs: horizonMs)
    }

    @Test("Nothing is compacted before the horizon, nor anything live, and an idle node writes nothing")
    func nothingEarlyNothingLive() {
        let es = [putEntry(1, 1, hlc: Self.hlc(Self.t0)), tombstone(1, 2, hlc: Self.hlc(Self.t0 + 1000)),
                  putEntry(1, 3, hlc: Self.hlc(Self.t0 + 2000), name: "other.pt")]
        #expect(Compactor.plan(Self.inputs(es, nowMs: Self.t0 + Self.horizonMs)) == nil, "the put was deleted less than 7 days ago")
        let later = Self.t0 + 30 * Self.dayMs
        let c = Compactor.plan(Self.inputs(es, nowMs: later))
        #expect(c?.ranges == [1...1], "the deleted put goes; the tombstone still deletes it here; other.pt is live")
    }

    @Test("A tombstone goes once every put it deleted is gone, depending on the compactions seen")
    func tombstoneAfterItsPuts() {
        // Node 2's put, deleted by node 1's tombstone; node 2 compacted it (its compaction is seq 2).
        let t = tombstone(1, 1, hlc: Self.hlc(Self.t0 + 1000))
        let later = Self.t0 + 30 * Self.dayMs
        #expect(Compactor.plan(Self.inputs([putEntry(2, 1, hlc: Self.hlc(Self.t0)), t], nowMs: later)) == nil,
                "node 2's put is still held here: the tombstone still deletes it")
        let c = Compactor.plan(Self.inputs([t], nowMs: later, others: [nid(2): 2, nid(3): 5]))
        #expect(c?.ranges == [1...1])
        #expect(Set(c?.dependencies ?? []) == [EntryRef(origin: nid(2), sequence: 2), EntryRef(origin: nid(3), sequence: 5)])
    }

    @Test("Expired puts go a horizon after they expire")
    func expiredPuts() {
        let p = putEntry(1, 1, hlc: Self.hlc(Self.t0), expires: Self.t0 + Self.dayMs)
        #expect(Compactor.plan(Self.inputs([p], nowMs: Self.t0 + 5 * Self.dayMs)) == nil)
        #expect(Compactor.plan(Self.inputs([p], nowMs: Self.t0 + 9 * Self.dayMs))?.ranges == [1...1])
    }

    @Test("A new compaction restates the previous one, voids it, and keeps its dependencies")
    func cumulative() {
        let later = Self.t0 + 30 * Self.dayMs
        let prev = ManifestEntry.Compaction(ranges: [1...1], dependencies: [EntryRef(origin: nid(2), sequence: 4)])
        let es = [putEntry(1, 3, hlc: Self.hlc(Self.t0)), tombstone(1, 4, hlc: Self.hlc(Self.t0 + 5)),
                  putEntry(1, 5, hlc: Self.hlc(Self.t0 + 9), name: "live.pt")]
        let c = Compactor.plan(Self.inputs(es, nowMs: later, current: (prev, 2), others: [nid(2): 9]))
        #expect(c?.ranges == [1...3], "1 (kept), 2 (the previous compaction) and 3 (the deleted put); the tombstone waits for it")
        #expect(c?.dependencies == [EntryRef(origin: nid(2), sequence: 4)], "a round with no tombstone keeps the dependencies as they were")
        // With nothing new, the previous compaction is not restated again.
        #expect(Compactor.plan(Self.inputs([putEntry(1, 5, hlc: Self.hlc(Self.t0 + 9), name: "live.pt")], nowMs: later,
                                           current: (ManifestEntry.Compaction(ranges: [1...3]), 4))) == nil)
    }

    @Test("Ranges never exceed 64, and what was compacted once stays compacted")
    func rangeLimit() {
        // 100 deleted puts of distinct names, each followed by a live put: 100 separate ranges.
        var es = [ManifestEntry]()
        var seq: UInt64 = 1
        for i in 0..<100 {
            es.append(putEntry(1, seq, hlc: Self.hlc(Self.t0 + Int64(i) * 10), name: "n\(i)")); seq += 1
            es.append(putEntry(1, seq, hlc: Self.hlc(Self.t0 + Int64(i) * 10 + 1), name: "live\(i)")); seq += 1
            es.append(tombstone(2, UInt64(i + 1), hlc: Self.hlc(Self.t0 + Int64(i) * 10 + 2), name: "n\(i)"))
        }
        let c = Compactor.plan(Self.inputs(es, nowMs: Self.t0 + 30 * Self.dayMs))
        #expect(c?.ranges.count == 64)
        #expect(c?.ranges.first == 1...1 && c?.ranges.last == 127...127, "the oldest first")
    }

    @Test("Adding a sequence to a range set merges neighbours", arguments: [
        ([], 5, [5...5]), ([1...2], 3, [1...3]), ([4...6], 3, [3...6]), ([1...2, 4...5], 3, [1...5]),
        ([1...2, 6...7], 4, [1...2, 4...4, 6...7]), ([1...9], 4, [1...9]), ([3...3], 1, [1...1, 3...3]),
    ] as [([ClosedRange<UInt64>], UInt64, [ClosedRange<UInt64>])])
    func rangeSet(_ start: [ClosedRange<UInt64>], _ s: UInt64, _ want: [ClosedRange<UInt64>]) {
        #expect(RangeSet.adding(s, to: start) == want)
    }
}
