import Gossip

/// What a node announces about itself for placement (docs/SYNC.md, "Placement"); built from
/// its node-facts entry (docs/PROTOCOL.md §4.7) by `Holdings`.
public struct NodeFacts: Hashable, Sendable {
    public var roles: [String]
    public var ephemeral: Bool
    /// Nodes with the same non-empty group share storage (NFS): one copy serves them all.
    public var nfsGroup: String
    /// The node receives nothing (`exclude_from_sync`); it may still put.
    public var excluded: Bool
    public var diskTotalBytes: UInt64
    public var diskFreeBytes: UInt64
    public var diskUsedBytes: UInt64 = 0
    /// Over `max_disk_usage`: it accepts no new replicas.
    public var full: Bool

    public init(roles: [String] = [], ephemeral: Bool = false, nfsGroup: String = "", excluded: Bool = false,
                diskTotalBytes: UInt64 = 0, diskFreeBytes: UInt64 = 0, full: Bool = false) {
        self.roles = roles
        self.ephemeral = ephemeral
        self.nfsGroup = nfsGroup
        self.excluded = excluded
        self.diskTotalBytes = diskTotalBytes
        self.diskFreeBytes = diskFreeBytes
        self.full = full
    }

    public var durable: Bool { !ephemeral }
}

/// One type's placement rule (`placement.TYPE`).
public struct PlacementRule: Hashable, Sendable {
    /// Roles whose nodes may hold the type; empty: every role.
    public var roles: [String]
    public var minCopies: Int
    /// nil: every eligible node (`copies: all`, or no `max_copies`).
    public var maxCopies: Int?

    public init(roles: [String] = [], minCopies: Int = 1, maxCopies: Int? = nil) {
        self.roles = roles
        self.minCopies = max(1, minCopies)
        self.maxCopies = maxCopies.map { max(1, $0) }
    }

    /// Whether a node stating `nodeRoles` may hold the type: the rule names no role, the node
    /// states none (it is eligible for every type), or they share one.
    public func admitsRoles(_ nodeRoles: [String]) -> Bool {
        roles.isEmpty || nodeRoles.isEmpty || nodeRoles.contains { roles.contains($0) }
    }
}

/// The placement rules by type. A type without a rule goes to every node, as before placement.
public struct PlacementPolicy: Hashable, Sendable {
    public var rules: [ItemType: PlacementRule]

    public init(rules: [ItemType: PlacementRule] = [:]) { self.rules = rules }

    /// The seeds' defaults: models to every selfplay and training node; games to training and
    /// storage nodes, at least 2 copies; NPZ to training nodes; checkpoints to training nodes, at least 2.
    public static let seedDefaults = PlacementPolicy(rules: [
        .model: PlacementRule(roles: ["selfplay", "training"]),
        .game: PlacementRule(roles: ["training", "storage"], minCopies: 2),
        .npz: PlacementRule(roles: ["training"]),
        .checkpoint: PlacementRule(roles: ["training"], minCopies: 2),
    ])

    public func rule(for type: ItemType) -> PlacementRule { rules[type] ?? PlacementRule() }

    /// The bytes a node hashes to state its policy in its node facts (docs/PROTOCOL.md §4.7,
    /// `policy_hash`): the ASCII prefix `meshnode/placement/v1` and a NUL, u8 rule count, then
    /// per rule in ascending type code: u8 type, u8 role count, the roles sorted bytewise and
    /// without repeats as str16, u16 `min_copies`, u16 `max_copies` (0: every eligible node).
    /// No `placement:` hashes as the empty policy (rule count 0). Equal policies give equal
    /// bytes, however the rules were written.
    public var canonicalBytes: [UInt8] {
        var w = ByteWriter()
        w.raw(Array("meshnode/placement/v1".utf8) + [0])
        let ordered = rules.sorted { $0.key.rawValue < $1.key.rawValue }
        w.u8(UInt8(min(ordered.count, 255)))
        for (type, rule) in ordered.prefix(255) {
            w.u8(type.rawValue)
            let roles = Array(Set(rule.roles)).sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
            w.u8(UInt8(min(roles.count, 255)))
            for r in roles.prefix(255) { w.string16(r) }
            w.u16(UInt16(clamping: rule.minCopies))
            w.u16(UInt16(clamping: rule.maxCopies ?? 0))
        }
        return w.bytes
    }
}

/// Deterministic placement: every node computes the same answer from the same facts.
public enum Placement {
    /// The rank of `node` for `content` (docs/SYNC.md): statically eligible nodes first, then
    /// by weighted rendezvous score. Independent of who is alive or full, so that the drop rule
    /// can never let two nodes rely on each other.
    public struct Rank: Comparable, Hashable, Sendable {
        public var eligible: Bool
        public var score: Double
        public var node: NodeID

        public static func < (a: Rank, b: Rank) -> Bool {
            if a.eligible != b.eligible { return !a.eligible }
            if a.score != b.score { return a.score < b.score }
            return a.node < b.node
        }
    }

    /// `-w / ln(u)` with `u` in (0, 1) from a mix of the content id and the node id, and `w` the
    /// node's capacity in GiB (at least 1): weighted rendezvous hashing.
    public static func score(_ content: ContentID, _ node: NodeID, weightBytes: UInt64) -> Double {
        let d = content.digest, k = node.key
        let h = SplitMix64.mix(d.w0 ^ SplitMix64.mix(d.w1 ^ SplitMix64.mix(k.w0 ^ SplitMix64.mix(k.w1 ^ SplitMix64.mix(k.w2 ^ k.w3)))))
        let u = (Double(h >> 11) + 0.5) / Double(1 << 53)
        let w = max(1.0, Double(weightBytes) / Double(1 << 30))
        return -w / naturalLogarithm(u)
    }

    public static func rank(_ content: ContentID, type: ItemType, node: NodeID, facts: NodeFacts, policy: PlacementPolicy) -> Rank {
        let rule = policy.rule(for: type)
        return Rank(eligible: !facts.excluded && rule.admitsRoles(facts.roles),
                    score: score(content, node, weightBytes: facts.diskTotalBytes), node: node)
    }

    /// The nodes that should hold `content`, best first: alive, statically eligible, not full;
    /// one per NFS group; at most `max_copies`, unless `broadcast` (a put with the broadcast
    /// flag, `meshnode put --broadcast`): then every such node. `alive` includes this node.
    ///
    /// Ephemeral nodes never count toward `min_copies`: when the first `max_copies` hold fewer
    /// than `min_copies` durable nodes, the next durable ones by rank are targets too, until
    /// there are `min_copies` of them (or no more). (meshsim's `placement` scenario found that
    /// without this a content whose best-ranked nodes are ephemeral never reached `min_copies`
    /// durable copies, and was lost when its origin went away.)
    public static func targets(_ content: ContentID, type: ItemType, broadcast: Bool = false, alive: [NodeID: NodeFacts],
                               policy: PlacementPolicy) -> [NodeID] {
        let rule = policy.rule(for: type)
        var ranked = alive.map { (id, f) in (rank(content, type: type, node: id, facts: f, policy: policy), f) }
            .filter { $0.0.eligible && !$0.1.full }
        ranked.sort { $0.0 > $1.0 }
        var out = [NodeID]()
        var durable = 0
        var groups = Set<String>()
        for (r, f) in ranked {
            let room = broadcast || rule.maxCopies.map { out.count < $0 } ?? true
            if !room && (durable >= rule.minCopies || !f.durable) {
                if durable >= rule.minCopies { break }
                continue
            }
            if !f.nfsGroup.isEmpty, !groups.insert(f.nfsGroup).inserted { continue }
            out.append(r.node)
            if f.durable { durable += 1 }
        }
        return out
    }

    /// What a node does about a content it keeps (by version history) but does not hold.
    public enum FetchDecision: Equatable, Sendable {
        case fetch
        /// Placement is configured and this node is not among the content's targets.
        case notTarget
        /// This node is over its `max_disk_usage`: it accepts no new replicas.
        case full
    }

    /// Whether `me` fetches `content`, referenced by versions of `types` (docs/SYNC.md,
    /// "Placement"): never while `me` is full; with no policy (`placement:` not configured),
    /// or no known type, always, as before placement; else when `me` is a target for one of
    /// the types among `alive` (which includes `me`); `broadcast` when a put of it carries the
    /// broadcast flag (every eligible node is a target). `sizeBytes` and `roomBytes` (how far
    /// below its `max_disk_usage` `me` is, less what its fetches under way will add): when both
    /// are given, a content that does not fit is `.full` too, so that fetches started while not
    /// full, together, never take the node over its cap (meshsim's `placement` scenario found
    /// that checking `full` alone lets concurrent fetches overshoot it).
    public static func fetchDecision(_ content: ContentID, types: Set<ItemType>, broadcast: Bool = false, me: NodeID,
                                     alive: [NodeID: NodeFacts], policy: PlacementPolicy?,
                                     sizeBytes: UInt64? = nil, roomBytes: UInt64? = nil) -> FetchDecision {
        if alive[me]?.full == true { return .full }
        if let sizeBytes, let roomBytes, sizeBytes > roomBytes { return .full }
        guard let policy, !types.isEmpty else { return .fetch }
        for t in types.sorted(by: { $0.rawValue < $1.rawValue })
        where targets(content, type: t, broadcast: broadcast, alive: alive, policy: policy).contains(me) { return .fetch }
        return .notTarget
    }

    /// Where a fetch of `content` looks first (swarm-style): the peers gossip named (`hints`:
    /// the origin, the relayer) and every node the replicated holder records (§4.6) say holds
    /// it complete, so that receivers of a broadcast serve one another, not only the origin.
    /// Without `me`, each once, hints first.
    public static func fetchSources(hints: [NodeID], holders: Set<NodeID>, me: NodeID) -> [NodeID] {
        var seen = Set<NodeID>([me])
        return (hints + holders.sorted()).filter { seen.insert($0).inserted }
    }

    /// Whether `me` may drop its copy of `content` (docs/SYNC.md, "Dropping"): not a target (or
    /// evicting for space), at least `min_copies` other alive durable holders ranked above it
    /// that the type's rule admits (so a custodian whose role does not want the item, holding it
    /// after a push-to-2 `take`, keeps it until placement is met among the wanted nodes, even if
    /// other such custodians rank above it), and, unless evicting, every target holding it.
    public static func mayDrop(_ content: ContentID, type: ItemType, me: NodeID, alive: [NodeID: NodeFacts],
                               holders: Set<NodeID>, policy: PlacementPolicy, evicting: Bool) -> Bool {
        guard let myFacts = alive[me] else { return false }
        let rule = policy.rule(for: type)
        let tgts = targets(content, type: type, alive: alive, policy: policy)
        if !evicting && tgts.contains(me) { return false }
        let mine = rank(content, type: type, node: me, facts: myFacts, policy: policy)
        var above = 0
        var groupsCounted = Set<String>()
        for h in holders where h != me {
            guard let f = alive[h], f.durable else { continue }
            let r = rank(content, type: type, node: h, facts: f, policy: policy)
            guard r.eligible, r > mine else { continue }
            if !f.nfsGroup.isEmpty, !groupsCounted.insert(f.nfsGroup).inserted { continue }
            above += 1
        }
        guard above >= rule.minCopies else { return false }
        if evicting { return true }
        return tgts.allSatisfy { t in t == me || holders.contains(t) || sharesGroup(t, with: holders, alive: alive) }
    }

    static func sharesGroup(_ t: NodeID, with holders: Set<NodeID>, alive: [NodeID: NodeFacts]) -> Bool {
        guard let g = alive[t]?.nfsGroup, !g.isEmpty else { return false }
        return holders.contains { alive[$0]?.nfsGroup == g }
    }

    /// One kept content as `underMinCopies` reads it.
    public struct Kept: Hashable, Sendable {
        public var contentID: ContentID
        public var type: ItemType
        public init(contentID: ContentID, type: ItemType) {
            self.contentID = contentID
            self.type = type
        }
    }

    /// The kept contents with fewer complete copies than their rule's `min_copies` on alive,
    /// durable, statically eligible nodes (one per NFS group): the `meshnode_items_under_min_copies`
    /// gauge and `status --json`'s `node.placement.under_min_copies`. A content kept under
    /// several types counts once, under its first. Without `placement:` the default rule
    /// applies (every node eligible, `min_copies` 1): a content no alive durable node holds.
    public static func underMinCopies(_ kept: [Kept], holders: (ContentID) -> Set<NodeID>,
                                      alive: [NodeID: NodeFacts], policy: PlacementPolicy) -> [ContentID] {
        var seen = Set<ContentID>()
        var out = [ContentID]()
        for k in kept where seen.insert(k.contentID).inserted {
            let rule = policy.rule(for: k.type)
            var n = 0
            var groups = Set<String>()
            for h in holders(k.contentID) {
                guard let f = alive[h], f.durable,
                      rank(k.contentID, type: k.type, node: h, facts: f, policy: policy).eligible else { continue }
                if !f.nfsGroup.isEmpty, !groups.insert(f.nfsGroup).inserted { continue }
                n += 1
            }
            if n < rule.minCopies { out.append(k.contentID) }
        }
        return out.sorted()
    }

    /// Complete copies that count toward `min_copies`: alive durable holders, one per NFS group.
    public static func countedCopies(holders: Set<NodeID>, alive: [NodeID: NodeFacts]) -> Int {
        var n = 0
        var groups = Set<String>()
        for h in holders {
            guard let f = alive[h], f.durable else { continue }
            if !f.nfsGroup.isEmpty, !groups.insert(f.nfsGroup).inserted { continue }
            n += 1
        }
        return n
    }
}

#if canImport(Glibc)
import Glibc
@inline(__always) func naturalLogarithm(_ x: Double) -> Double { Glibc.log(x) }
#elseif canImport(Darwin)
import Darwin
@inline(__always) func naturalLogarithm(_ x: Double) -> Double { Darwin.log(x) }
#endif
