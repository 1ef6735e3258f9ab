import Gossip

/// What an origin compacts out of its own log (docs/PROTOCOL.md §4.5): a pure decision.
///
/// Only an entry's origin may void it, so every node decides for its own log alone, from the
/// entries it holds and its own clock; receivers then apply the signed result the same way
/// everywhere. An entry of this node's log is compactable once it has been dead for longer
/// than `horizonMs` (config `compact_after`):
/// - a **put** that is deleted (by a tombstone whose clock time is past the horizon) or expired
///   (its `expires_ms` past the horizon) — it can never be current again;
/// - a **tombstone** past the horizon that no longer deletes anything this node holds (every
///   put it covered is gone: compacted by its own origin). Receivers drop it only once they
///   hold the logs of those origins up to the compactions this node had seen (the
///   entry's dependencies), so a lagging relay cannot bring a deleted put back;
/// - this node's **previous compaction entry**, which the new one restates.
///
/// A compaction is cumulative: its ranges and dependencies include the previous one's. It is
/// written only when it voids something new, so an idle node writes nothing.
///
/// The horizon is the price: a node that was cut off for longer than it, and wrote a name
/// before another node deleted it, may bring that version back when it returns (the same
/// trade as Cassandra's `gc_grace_seconds` or Consul's tombstone TTL). Nothing is lost that way.
public enum Compactor {
    /// What the planner looks at.
    public struct Inputs: Sendable {
        public var own: NodeID
        /// Every entry of this node's own log that it still holds.
        public var ownEntries: [ManifestEntry]
        /// This node's catalog (every name's puts and tombstones it holds, all origins).
        public var catalog: Catalog
        /// This node's latest compaction, if any, and its sequence.
        public var current: (ManifestEntry.Compaction, sequence: UInt64)?
        /// Other origins' latest compaction sequences, as this node holds them.
        public var compactionSequences: [NodeID: UInt64]
        public var nowMs: Int64
        public var horizonMs: Int64
        /// Contents this node holds complete (only those of `deadLatestPuts` matter): a dead put
        /// that is this node's latest statement about such a content is restated before it goes
        /// (§4.6). Others go as they are: with the put gone the log says "not held", the truth.
        public var holds: Set<ContentID> = []

        public init(own: NodeID, ownEntries: [ManifestEntry], catalog: Catalog,
                    current: (ManifestEntry.Compaction, sequence: UInt64)?, compactionSequences: [NodeID: UInt64],
                    nowMs: Int64, horizonMs: Int64) {
            self.own = own
            self.ownEntries = ownEntries
            self.catalog = catalog
            self.current = current
            self.compactionSequences = compactionSequences
            self.nowMs = nowMs
            self.horizonMs = horizonMs
        }
    }

    /// The next compaction to write, or nil when nothing new is compactable.
    public static func plan(_ i: Inputs) -> ManifestEntry.Compaction? {
        let cutoffMs = i.nowMs - max(0, i.horizonMs)
        let previous = i.current?.0 ?? ManifestEntry.Compaction(ranges: [])
        let own = OwnStatements(i.ownEntries)
        var puts = [UInt64]()
        var tombstones = [UInt64]()
        for e in i.ownEntries where !previous.contains(e.sequence) && e.sequence != i.current?.sequence {
            switch e.payload {
            case .put(let p):
                // A put that is this node's latest statement about a content it holds (§4.6) waits
                // for a restatement (`restatements`): voiding it would unsay that this node holds it.
                if isDeadPastHorizon(e, i, cutoffMs: cutoffMs),
                   own.latest[p.contentID] != e.sequence || !i.holds.contains(p.contentID) {
                    puts.append(e.sequence)
                }
            case .tombstone(let t):
                guard clockMs(e) <= cutoffMs else { continue }
                let h = i.catalog.histories[e.name]
                let covers: Bool
                switch t.scope {
                case .name: covers = h?.puts.contains { $0.orderKey < e.orderKey } ?? false
                case .version(let r): covers = h?.puts.contains { $0.ref == r } ?? false
                }
                if !covers { tombstones.append(e.sequence) }
            case .compaction, .holding, .nodeFacts, .unknown:
                continue
            }
        }
        let superseded = supersededRecords(own, voided: Set(puts), previous: previous)
        guard !puts.isEmpty || !tombstones.isEmpty || !superseded.isEmpty else { return nil }

        // Dependencies: the previous ones, raised to what this node holds now, plus (for new
        // tombstones) every other origin's compaction seen here — conservative, since which
        // origins' puts a tombstone covered is no longer known once they are gone.
        var deps = [NodeID: UInt64]()
        for d in previous.dependencies { deps[d.origin] = max(deps[d.origin] ?? 0, d.sequence) }
        if !tombstones.isEmpty {
            var withNew = deps
            for (o, s) in i.compactionSequences where o != i.own && s > 0 { withNew[o] = max(withNew[o] ?? 0, s) }
            if withNew.count <= ManifestEntry.Compaction.maxDependencies { deps = withNew } else { tombstones = [] }
        }
        guard !puts.isEmpty || !tombstones.isEmpty || !superseded.isEmpty else { return nil }

        var ranges = previous.ranges
        if let s = i.current?.sequence { ranges = RangeSet.adding(s, to: ranges) }
        var added = 0
        // Ascending, stopping at the first that does not fit: what stays is a suffix, so a
        // superseded record is never voided while an earlier statement it overrides stays.
        for s in (puts + tombstones + superseded).sorted() {
            let next = RangeSet.adding(s, to: ranges)
            guard next.count <= ManifestEntry.Compaction.maxRanges else { break }
            ranges = next
            added += 1
        }
        guard added > 0 else { return nil }
        let dependencies = deps.map { EntryRef(origin: $0.key, sequence: $0.value) }
            .sorted { $0.origin.key.bytes.lexicographicallyPrecedes($1.origin.key.bytes) }
        return ManifestEntry.Compaction(ranges: ranges, dependencies: dependencies)
    }

    /// Contents of own puts that are dead past the horizon, still this node's latest statement
    /// about their content, and held (`Inputs.holds`): the shell restates each as held in a
    /// holding entry (§4.6), after which the put is compacted like any other.
    public static func restatements(_ i: Inputs) -> [ContentID] { deadLatestPuts(i).filter { i.holds.contains($0) } }

    /// Contents of own puts that are dead past the horizon and still this node's latest statement
    /// about their content, whether held or not (the shell asks its store which it holds).
    public static func deadLatestPuts(_ i: Inputs) -> [ContentID] {
        let cutoffMs = i.nowMs - max(0, i.horizonMs)
        let previous = i.current?.0 ?? ManifestEntry.Compaction(ranges: [])
        let own = OwnStatements(i.ownEntries)
        var out = Set<ContentID>()
        for e in i.ownEntries where !previous.contains(e.sequence) {
            if let p = e.put, own.latest[p.contentID] == e.sequence, isDeadPastHorizon(e, i, cutoffMs: cutoffMs) { out.insert(p.contentID) }
        }
        return out.sorted()
    }

    static func isDeadPastHorizon(_ e: ManifestEntry, _ i: Inputs, cutoffMs: Int64) -> Bool {
        guard let h = i.catalog.histories[e.name] else { return false }
        return deadSince(e, in: h, catalog: i.catalog, nowMs: i.nowMs).map { $0 <= cutoffMs } ?? false
    }

    /// This node's own statements about contents (puts and holding entries), by content.
    struct OwnStatements {
        /// Every statement's sequence, ascending, and the greatest.
        var sequences: [ContentID: [UInt64]] = [:]
        var latest: [ContentID: UInt64] = [:]
        var holdings: [ManifestEntry] = []
        var facts: [UInt64] = []

        init(_ entries: [ManifestEntry]) {
            for e in entries.sorted(by: { $0.sequence < $1.sequence }) {
                if e.holding != nil { holdings.append(e) }
                if e.nodeFacts != nil { facts.append(e.sequence) }
                for (c, _) in Holdings.statements(of: e) {
                    sequences[c, default: []].append(e.sequence)
                    latest[c] = e.sequence
                }
            }
        }
    }

    /// Holding and node-facts entries that say nothing any more (no horizon: they never matter
    /// again): a node-facts entry below the latest; a holding entry each of whose contents is
    /// restated by a later own entry, or is a `dropped` with no earlier statement left to
    /// override. `voided` are the puts this round voids.
    static func supersededRecords(_ own: OwnStatements, voided: Set<UInt64>, previous: ManifestEntry.Compaction) -> [UInt64] {
        var out = Set<UInt64>()
        if let top = own.facts.last { for s in own.facts where s < top && !previous.contains(s) { out.insert(s) } }
        var gone = voided
        for e in own.holdings where !previous.contains(e.sequence) {
            let s = e.sequence
            let redundant = Holdings.statements(of: e).allSatisfy { (c, held) in
                if (own.latest[c] ?? 0) > s { return true }
                guard !held else { return false }
                return (own.sequences[c] ?? []).allSatisfy { $0 >= s || gone.contains($0) || previous.contains($0) }
            }
            if redundant {
                out.insert(s)
                gone.insert(s)
            }
        }
        return out.sorted()
    }

    /// Since when (clock ms) the put `e` has been dead: the clock time of the earliest
    /// tombstone that deletes it, or its expiry; nil while it is live.
    static func deadSince(_ e: ManifestEntry, in h: Catalog.History, catalog: Catalog, nowMs: Int64) -> Int64? {
        var best: Int64? = nil
        func take(_ t: Int64) { if best.map({ t < $0 }) ?? true { best = t } }
        for t in h.tombstones {
            guard let ts = t.tombstone else { continue }
            switch ts.scope {
            case .name: if e.orderKey < t.orderKey { take(clockMs(t)) }
            case .version(let r): if r == e.ref { take(clockMs(t)) }
            }
        }
        if let p = e.put, p.expiresAtMs != 0, p.expiresAtMs <= nowMs { take(p.expiresAtMs) }
        return best
    }

    /// The wall-clock part of an entry's hybrid logical clock (docs/PROTOCOL.md §4.2).
    static func clockMs(_ e: ManifestEntry) -> Int64 { Int64(e.hlc >> 16) }
}

/// Ascending, disjoint, non-adjacent closed ranges of sequences.
enum RangeSet {
    static func adding(_ s: UInt64, to ranges: [ClosedRange<UInt64>]) -> [ClosedRange<UInt64>] {
        var r = ranges
        // First range whose upper bound + 1 >= s.
        var lo = 0, hi = r.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if r[mid].upperBound &+ 1 < s { lo = mid + 1 } else { hi = mid }
        }
        if lo < r.count, r[lo].contains(s) { return r }
        let joinsLeft = lo < r.count && r[lo].upperBound &+ 1 == s
        let joinsRight = lo < r.count ? (r[lo].lowerBound == s &+ 1) : false
        if joinsLeft {
            var merged = r[lo].lowerBound...s
            if lo + 1 < r.count, r[lo + 1].lowerBound == s &+ 1 {
                merged = merged.lowerBound...r[lo + 1].upperBound
                r.remove(at: lo + 1)
            }
            r[lo] = merged
        } else if joinsRight {
            r[lo] = s...r[lo].upperBound
        } else {
            r.insert(s...s, at: lo)
        }
        return r
    }
}
