import Gossip

/// What this node keeps: the catalog of names plus the local keep policy, as one pure
/// value the shell feeds entries into (docs/SYNC.md, "What a node keeps").
///
/// Placement will narrow `isKept` further (which nodes keep what at all); today a node
/// keeps the newest `keep_versions` live versions of every name.
public struct Keeper: Sendable {
    public private(set) var catalog = Catalog()
    public var policy: KeepPolicy
    /// How many kept versions reference each content (a content may back several names).
    private var keptRefs: [ContentID: Int] = [:]
    /// The kept versions of each name, as last computed.
    private var keptByName: [String: [EntryRef: ContentID]] = [:]

    /// What an entry changed about what this node keeps.
    public struct Change: Sendable, Equatable {
        /// Puts whose content this node should now hold (fetch what is missing).
        public var wanted: [ManifestEntry] = []
        /// Contents no kept version references any more: stop fetching them; GC reclaims them.
        public var released: [ContentID] = []
        public var isEmpty: Bool { wanted.isEmpty && released.isEmpty }
    }

    public init(policy: KeepPolicy = KeepPolicy(), entries: [ManifestEntry] = [], nowMs: Int64) {
        self.policy = policy
        for e in entries { catalog.insert(e) }
        for n in catalog.allNames { _ = recompute(n, nowMs: nowMs) }
    }

    /// Folds in one entry (any kind, any arrival order; duplicates change nothing).
    public mutating func insert(_ e: ManifestEntry, nowMs: Int64) -> Change {
        guard e.kind != nil else { return Change() }
        catalog.insert(e)
        return recompute(e.name, nowMs: nowMs)
    }

    /// Re-evaluates every name at `nowMs` (retention expiries, a changed policy).
    public mutating func refresh(nowMs: Int64) -> Change {
        var out = Change()
        for n in catalog.allNames {
            let c = recompute(n, nowMs: nowMs)
            out.wanted += c.wanted
            out.released += c.released
        }
        return out
    }

    /// Whether some kept version references `content`.
    public func isKept(_ content: ContentID) -> Bool { (keptRefs[content] ?? 0) > 0 }

    /// Every content some kept version references.
    public var keptContents: Set<ContentID> { Set(keptRefs.keys) }

    /// The kept versions of every name (for resuming downloads at start).
    public var keptEntries: [ManifestEntry] {
        var out = [ManifestEntry]()
        for n in keptByName.keys.sorted() {
            for ref in keptByName[n]!.keys.sorted(by: { ($0.origin, $0.sequence) < ($1.origin, $1.sequence) }) {
                if let v = catalog.histories[n]?.puts.first(where: { $0.ref == ref }) { out.append(v) }
            }
        }
        return out
    }

    private mutating func recompute(_ name: String, nowMs: Int64) -> Change {
        let now = catalog.keptVersions(of: name, policy: policy, nowMs: nowMs)
        var fresh = [EntryRef: ContentID]()
        for v in now { fresh[v.entry.ref] = v.entry.contentID }
        let old = keptByName[name] ?? [:]
        guard fresh != old else { return Change() }
        var change = Change()
        for v in now where old[v.entry.ref] == nil {
            keptRefs[v.entry.contentID, default: 0] += 1
            change.wanted.append(v.entry)
        }
        for (ref, c) in old where fresh[ref] == nil {
            let n = (keptRefs[c] ?? 1) - 1
            if n <= 0 { keptRefs[c] = nil; change.released.append(c) } else { keptRefs[c] = n }
        }
        keptByName[name] = fresh.isEmpty ? nil : fresh
        change.released.sort()
        return change
    }
}
