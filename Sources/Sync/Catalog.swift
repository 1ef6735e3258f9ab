import Gossip

/// Every name's history, built from the entries a node holds: the pure view behind `ls`,
/// `get NAME`, `get NAME@N`, retention and what a node keeps (docs/SYNC.md, "Views of a
/// name"; the rules are docs/PROTOCOL.md §4.4).
///
/// Two nodes that hold the same entries compute the same catalog, whatever order the
/// entries arrived in: every rule here depends only on the entries and on `nowMs`.
public struct Catalog: Sendable {
    /// One name's entries, kept sorted by order key.
    public struct History: Sendable {
        public internal(set) var puts: [ManifestEntry] = []
        public internal(set) var tombstones: [ManifestEntry] = []
        /// The greatest order key of a name-scope tombstone, if any.
        public internal(set) var nameDeletedBefore: OrderKey?
        /// Puts deleted one by one (version-scope tombstones), by (origin, sequence).
        public internal(set) var deletedVersions: Set<EntryRef> = []
    }

    public private(set) var histories: [String: History] = [:]

    /// Removes an entry that its origin compacted (docs/PROTOCOL.md §4.5). A name left with
    /// no entry disappears. Version numbers are over the puts still held, so they close up.
    public mutating func remove(_ e: ManifestEntry) {
        guard seen.remove(e.ref) != nil, var h = histories[e.name] else { return }
        switch e.payload {
        case .put: h.puts.removeAll { $0.ref == e.ref }
        case .tombstone(let t):
            h.tombstones.removeAll { $0.ref == e.ref }
            switch t.scope {
            case .name: h.nameDeletedBefore = h.tombstones.filter { $0.tombstone?.scope == .name }.map(\.orderKey).max()
            case .version(let r):
                if !h.tombstones.contains(where: { $0.tombstone?.scope == .version(r) }) { h.deletedVersions.remove(r) }
            }
        case .compaction, .holding, .nodeFacts, .unknown: return
        }
        histories[e.name] = h.puts.isEmpty && h.tombstones.isEmpty ? nil : h
    }
    /// Entries already folded in (so replays and duplicates change nothing).
    private var seen: Set<EntryRef> = []

    public init() {}

    public init<S: Sequence>(_ entries: S) where S.Element == ManifestEntry {
        for e in entries { insert(e) }
    }

    /// Folds one entry in. Entries that are not about a name (compactions, unknown kinds) are
    /// ignored. Idempotent.
    public mutating func insert(_ e: ManifestEntry) {
        guard e.put != nil || e.tombstone != nil, seen.insert(e.ref).inserted else { return }
        var h = histories[e.name] ?? History()
        switch e.payload {
        case .put:
            let k = e.orderKey
            let i = h.puts.partitioningIndex { $0.orderKey > k }
            h.puts.insert(e, at: i)
        case .tombstone(let t):
            let k = e.orderKey
            let i = h.tombstones.partitioningIndex { $0.orderKey > k }
            h.tombstones.insert(e, at: i)
            switch t.scope {
            case .name: if h.nameDeletedBefore.map({ k > $0 }) ?? true { h.nameDeletedBefore = k }
            case .version(let r): h.deletedVersions.insert(r)
            }
        case .compaction, .holding, .nodeFacts, .unknown:
            return
        }
        histories[e.name] = h
    }

    // MARK: - Versions

    /// What became of one version.
    public enum VersionState: String, Sendable, Equatable {
        case live
        /// Removed by a tombstone (`rm`).
        case deleted
        /// Past its retention (`expires_ms`).
        case expired
    }

    /// One version of a name, numbered 1, 2, 3 … in order-key order over every put the
    /// name ever had (deleted ones included), so `NAME@N` is the same version everywhere.
    public struct Version: Sendable, Equatable {
        public var number: Int
        public var entry: ManifestEntry
        public var state: VersionState
        /// The name's current version: the live one with the greatest order key.
        public var isCurrent: Bool
    }

    /// The state of a put at `nowMs`.
    public func state(of e: ManifestEntry, in h: History, nowMs: Int64) -> VersionState {
        if h.deletedVersions.contains(e.ref) { return .deleted }
        if let cut = h.nameDeletedBefore, e.orderKey < cut { return .deleted }
        if let p = e.put, p.expiresAtMs != 0, nowMs >= p.expiresAtMs { return .expired }
        return .live
    }

    /// Every version of `name`, oldest first; empty for an unknown name.
    public func versions(of name: String, nowMs: Int64) -> [Version] {
        guard let h = histories[name] else { return [] }
        var out = [Version]()
        out.reserveCapacity(h.puts.count)
        var current: Int? = nil
        for (i, e) in h.puts.enumerated() {
            let st = state(of: e, in: h, nowMs: nowMs)
            if st == .live { current = i }
            out.append(Version(number: i + 1, entry: e, state: st, isCurrent: false))
        }
        if let c = current { out[c].isCurrent = true }
        return out
    }

    /// The current version of `name`, or nil when it has none (never put, deleted, expired).
    public func current(_ name: String, nowMs: Int64) -> Version? {
        guard let h = histories[name] else { return nil }
        for i in h.puts.indices.reversed() {
            let e = h.puts[i]
            if state(of: e, in: h, nowMs: nowMs) == .live {
                return Version(number: i + 1, entry: e, state: .live, isCurrent: true)
            }
        }
        return nil
    }

    /// Version `number` (1-based) of `name`, whatever its state.
    public func version(_ name: String, number: Int, nowMs: Int64) -> Version? {
        let all = versions(of: name, nowMs: nowMs)
        guard number >= 1, number <= all.count else { return nil }
        return all[number - 1]
    }

    /// Names that have a current version, sorted.
    public func liveNames(nowMs: Int64) -> [String] {
        histories.keys.filter { current($0, nowMs: nowMs) != nil }.sorted()
    }

    /// Every name ever seen (live or not), sorted.
    public var allNames: [String] { histories.keys.sorted() }

    /// The current version of every live name, by name.
    public func currentVersions(nowMs: Int64) -> [String: Version] {
        var out = [String: Version]()
        for n in histories.keys { if let v = current(n, nowMs: nowMs) { out[n] = v } }
        return out
    }

    /// The next moment (ms since the epoch) after `nowMs` at which some live version
    /// expires, if any: when a node should look again.
    public func nextExpiry(after nowMs: Int64) -> Int64? {
        var best: Int64? = nil
        for h in histories.values {
            for e in h.puts {
                guard let p = e.put, p.expiresAtMs > nowMs, state(of: e, in: h, nowMs: nowMs) == .live else { continue }
                if best.map({ p.expiresAtMs < $0 }) ?? true { best = p.expiresAtMs }
            }
        }
        return best
    }
}

extension Array {
    /// The first index whose element satisfies `belongsInSecondPartition`, for an array
    /// partitioned by it (binary search).
    func partitioningIndex(where belongsInSecondPartition: (Element) -> Bool) -> Int {
        var lo = 0, hi = count
        while lo < hi {
            let mid = (lo + hi) / 2
            if belongsInSecondPartition(self[mid]) { hi = mid } else { lo = mid + 1 }
        }
        return lo
    }
}
