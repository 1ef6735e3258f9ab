import Gossip

/// Who holds what, and what each node says about itself, built from the entries a node
/// holds (docs/PROTOCOL.md §4.6, §4.7): the pure view behind `ls --json` `holders`, `peers`,
/// and (next) placement.
///
/// **Holders.** Every statement a node N makes about a content C lives in N's own log: a put
/// by N of C says "held" (its origin stores what it puts); a holding entry lists C as held or
/// dropped. N holds C complete when its statement about C with the greatest sequence says
/// held. **Facts.** N's node-facts entry with the greatest sequence is in effect.
///
/// Every rule depends only on (origin, sequence), so two nodes that hold the same entries
/// build the same view, whatever order they arrived in; removing a compacted entry falls back
/// to the statements that remain.
public struct Holdings: Sendable {
    /// Per node and content: every statement still held, by sequence (true: held).
    private var statements: [NodeID: [ContentID: [UInt64: Bool]]] = [:]
    /// The current holders of each content (derived from `statements`).
    private var holdersOf: [ContentID: Set<NodeID>] = [:]
    /// Per node: its node-facts entries still held, by sequence.
    private var factsOf: [NodeID: [UInt64: FactsRecord]] = [:]
    private var seen: Set<EntryRef> = []

    /// A node's facts as stated, with where and when.
    public struct FactsRecord: Sendable, Equatable {
        public var facts: ManifestEntry.NodeFacts
        public var sequence: UInt64
        /// The entry's hybrid logical clock (its wall-clock part: `hlc >> 16` ms).
        public var hlc: UInt64
    }

    public init() {}

    public init<S: Sequence>(_ entries: S) where S.Element == ManifestEntry {
        for e in entries { insert(e) }
    }

    /// The (content, held) statements an entry makes; empty for entries that make none.
    public static func statements(of e: ManifestEntry) -> [(ContentID, Bool)] {
        switch e.payload {
        case .put(let p): [(p.contentID, true)]
        case .holding(let h): h.held.map { ($0, true) } + h.dropped.map { ($0, false) }
        default: []
        }
    }

    /// Folds one entry in (any kind: only puts, holding and node-facts entries matter). Idempotent.
    public mutating func insert(_ e: ManifestEntry) {
        if let f = e.nodeFacts {
            guard seen.insert(e.ref).inserted else { return }
            factsOf[e.origin, default: [:]][e.sequence] = FactsRecord(facts: f, sequence: e.sequence, hlc: e.hlc)
            return
        }
        let st = Self.statements(of: e)
        guard !st.isEmpty, seen.insert(e.ref).inserted else { return }
        for (c, held) in st {
            statements[e.origin, default: [:]][c, default: [:]][e.sequence] = held
            settle(e.origin, c)
        }
    }

    /// Takes out an entry its origin compacted (docs/PROTOCOL.md §4.5).
    public mutating func remove(_ e: ManifestEntry) {
        guard seen.remove(e.ref) != nil else { return }
        if e.nodeFacts != nil {
            factsOf[e.origin]?[e.sequence] = nil
            if factsOf[e.origin]?.isEmpty == true { factsOf[e.origin] = nil }
            return
        }
        for (c, _) in Self.statements(of: e) {
            statements[e.origin]?[c]?[e.sequence] = nil
            if statements[e.origin]?[c]?.isEmpty == true { statements[e.origin]?[c] = nil }
            settle(e.origin, c)
        }
        if statements[e.origin]?.isEmpty == true { statements[e.origin] = nil }
    }

    private mutating func settle(_ n: NodeID, _ c: ContentID) {
        if latest(n, c)?.held == true {
            holdersOf[c, default: []].insert(n)
        } else {
            holdersOf[c]?.remove(n)
            if holdersOf[c]?.isEmpty == true { holdersOf[c] = nil }
        }
    }

    /// N's statement about C with the greatest sequence, if any.
    public func latest(_ n: NodeID, _ c: ContentID) -> (sequence: UInt64, held: Bool)? {
        guard let s = statements[n]?[c], let top = s.keys.max() else { return nil }
        return (top, s[top]!)
    }

    /// The nodes whose latest statement says they hold `c` complete.
    public func holders(of c: ContentID) -> Set<NodeID> { holdersOf[c] ?? [] }

    /// Every content with at least one holder, with its holders.
    public var allHolders: [ContentID: Set<NodeID>] { holdersOf }

    /// The contents `n` says it holds complete.
    public func held(by n: NodeID) -> Set<ContentID> {
        Set((statements[n] ?? [:]).compactMap { (c, s) in s.keys.max().flatMap { s[$0]! ? c : nil } })
    }

    /// Every content `n` has made a statement about (held or dropped).
    public func mentioned(by n: NodeID) -> Set<ContentID> { Set((statements[n] ?? [:]).keys) }

    /// `n`'s facts in effect (its node-facts entry with the greatest sequence), if any.
    public func facts(of n: NodeID) -> FactsRecord? {
        guard let f = factsOf[n], let top = f.keys.max() else { return nil }
        return f[top]
    }

    /// Every node's facts in effect.
    public var allFacts: [NodeID: FactsRecord] { factsOf.compactMapValues { f in f.keys.max().flatMap { f[$0] } } }
}

extension NodeFacts {
    /// Placement's facts from a node's stated ones.
    public init(_ f: ManifestEntry.NodeFacts) {
        self.init(roles: f.roles, ephemeral: f.ephemeral, nfsGroup: f.nfsGroup, excluded: f.excluded,
                  diskTotalBytes: f.diskTotalBytes, diskFreeBytes: f.diskFreeBytes, full: f.full)
        diskUsedBytes = f.diskUsedBytes
    }
}
