import Gossip

/// What this node keeps: the catalog of names plus the local keep policy, as one pure
/// value the shell feeds entries into (docs/SYNC.md, "What a node keeps").
///
/// Placement will narrow `isKept` further (which nodes keep what at all); today a node
/// keeps the newest `keep_versions` live versions of every name, and, while none of those is
/// complete here yet, also the newest older live version it holds complete: a newer version
/// announced but not yet fetched (its origin may vanish before anyone copies it) never costs
/// the node its last complete copy of the name.
public struct Keeper: Sendable {
    public private(set) var catalog = Catalog()
    public var policy: KeepPolicy
    /// How many kept versions reference each content (a content may back several names).
    private var keptRefs: [ContentID: Int] = [:]
    /// The kept versions of each name, as last computed.
    private var keptByName: [String: [EntryRef: ContentID]] = [:]
    /// Names kept only through a fallback (an older complete version), by the kept contents
    /// they wait for: when one of those completes, the fallback may go.
    private var waitingFor: [ContentID: Set<String>] = [:]
    /// Whether this node holds a content complete (the shell's store; pure for the simulator).
    public typealias Completeness = (ContentID) -> Bool

    /// What an entry changed about what this node keeps.
    public struct Change: Sendable, Equatable {
        /// Puts whose content this node should now hold (fetch what is missing).
        public var wanted: [ManifestEntry] = []
        /// Contents no kept version references any more: stop fetching them; GC reclaims them.
        public var released: [ContentID] = []
        public var isEmpty: Bool { wanted.isEmpty && released.isEmpty }
    }

    public init(policy: KeepPolicy = KeepPolicy(), entries: [ManifestEntry] = [], nowMs: Int64,
                isComplete: Completeness = { _ in true }) {
        self.policy = policy
        for e in entries { catalog.insert(e) }
        for n in catalog.allNames { _ = recompute(n, nowMs: nowMs, isComplete: isComplete) }
    }

    /// Folds in one entry (any kind, any arrival order; duplicates change nothing).
    public mutating func insert(_ e: ManifestEntry, nowMs: Int64, isComplete: Completeness = { _ in true }) -> Change {
        guard e.put != nil || e.tombstone != nil else { return Change() }
        catalog.insert(e)
        return recompute(e.name, nowMs: nowMs, isComplete: isComplete)
    }

    /// Takes out an entry its origin compacted (docs/PROTOCOL.md §4.5).
    public mutating func remove(_ e: ManifestEntry, nowMs: Int64, isComplete: Completeness = { _ in true }) -> Change {
        guard e.put != nil || e.tombstone != nil else { return Change() }
        catalog.remove(e)
        return recompute(e.name, nowMs: nowMs, isComplete: isComplete)
    }

    /// Re-evaluates every name at `nowMs` (retention expiries, a changed policy).
    public mutating func refresh(nowMs: Int64, isComplete: Completeness = { _ in true }) -> Change {
        var out = Change()
        for n in catalog.allNames {
            let c = recompute(n, nowMs: nowMs, isComplete: isComplete)
            out.wanted += c.wanted
            out.released += c.released
        }
        return out
    }

    /// `content` is now complete here: names that kept an older version only because none of
    /// their newer kept ones was complete may let it go.
    public mutating func completed(_ content: ContentID, nowMs: Int64, isComplete: Completeness) -> Change {
        guard let names = waitingFor.removeValue(forKey: content) else { return Change() }
        var out = Change()
        for n in names.sorted() {
            let c = recompute(n, nowMs: nowMs, isComplete: isComplete)
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

    private mutating func recompute(_ name: String, nowMs: Int64, isComplete: Completeness) -> Change {
        var now = catalog.keptVersions(of: name, policy: policy, nowMs: nowMs)
        for (c, var names) in waitingFor where names.contains(name) {
            names.remove(name)
            waitingFor[c] = names.isEmpty ? nil : names
        }
        if !now.isEmpty, !now.contains(where: { isComplete($0.entry.contentID) }) {
            // None of the kept versions is here yet: hold on to the newest older one that is.
            let oldest = now.last!.number
            let older = catalog.versions(of: name, nowMs: nowMs).filter { $0.state == .live && $0.number < oldest }
            if let fallback = older.last(where: { isComplete($0.entry.contentID) }) {
                now.append(fallback)
                for v in now.dropLast() { waitingFor[v.entry.contentID, default: []].insert(name) }
            }
        }
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
