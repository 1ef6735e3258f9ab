import Gossip

/// Which complete contents a node lets go of (docs/SYNC.md, "Placement", "Dropping"): copies it
/// is no longer a target for once placement is met, and, over `max_disk_usage`, the least
/// wanted and oldest contents that enough better-ranked durable nodes hold. Pure: the shell
/// passes what its store holds, the policy, the alive members' facts and the holder records.
///
/// Never released: a content no other alive durable node holds complete (the last copy), one
/// with fewer than `min_copies` such holders ranked above this node (`Placement.mayDrop`), one
/// this node originated whose placement is not met yet (a target still lacks it), and one a
/// folder file backs here (folder files are user data).
public enum Eviction {
    /// One content this node holds complete.
    public struct Held: Hashable, Sendable {
        public var contentID: ContentID
        public var type: ItemType
        public var sizeBytes: UInt64
        /// This node put it.
        public var originatedHere: Bool
        /// A folder file on this node backs it.
        public var folderBacked: Bool
        /// Some version this node keeps references it (false: wanted by no name here).
        public var kept: Bool
        /// The last time it was wanted here (ms since the epoch; the newest entry naming it).
        public var lastWantedMs: Int64
        /// A put of it carries the broadcast flag: every eligible node is a target. Never
        /// dropped for not being a target (only evicted for space).
        public var broadcast = false

        public init(contentID: ContentID, type: ItemType, sizeBytes: UInt64, originatedHere: Bool = false,
                    folderBacked: Bool = false, kept: Bool = true, lastWantedMs: Int64 = 0) {
            self.contentID = contentID
            self.type = type
            self.sizeBytes = sizeBytes
            self.originatedHere = originatedHere
            self.folderBacked = folderBacked
            self.kept = kept
            self.lastWantedMs = lastWantedMs
        }
    }

    public enum Reason: String, Sendable, Hashable {
        /// Placement is met and this node is not a target.
        case notTarget = "not_target"
        /// This node is over `max_disk_usage`.
        case evicted
    }

    public struct Decision: Equatable, Sendable {
        /// What to release, in the order chosen, with why.
        public var release: [(ContentID, Reason)] = []
        public var notTargetBytes: UInt64 = 0
        public var evictedBytes: UInt64 = 0

        public init() {}

        public var contents: [ContentID] { release.map(\.0) }

        public static func == (a: Decision, b: Decision) -> Bool {
            a.release.map(\.0) == b.release.map(\.0) && a.release.map(\.1) == b.release.map(\.1)
                && a.notTargetBytes == b.notTargetBytes && a.evictedBytes == b.evictedBytes
        }
    }

    /// - Parameters:
    ///   - policy: `placement:`; nil: not configured (nothing is dropped for not being a target,
    ///     and eviction uses the default rule: every node, `min_copies` 1).
    ///   - alive: the alive members' facts, this node's included.
    ///   - holders: the complete holders of each content by the holder records.
    ///   - overCapBytes: how far this node is over `max_disk_usage` (0: not over).
    public static func decide(me: NodeID, held: [Held], policy: PlacementPolicy?, alive: [NodeID: NodeFacts],
                              holders: [ContentID: Set<NodeID>], overCapBytes: UInt64) -> Decision {
        var out = Decision()
        guard var myFacts = alive[me] else { return out }
        // Being full (over the cap, or out of room) means accepting no new replica, not giving
        // up the ones held: this node's targets are judged as if it were not full, and space is
        // freed by eviction below. (meshsim's `placement` scenario found that otherwise a full
        // node drops every copy it is not then a target for, is a target again once under its
        // cap, fetches them again, and so on.)
        myFacts.full = false
        var alive = alive
        alive[me] = myFacts
        let p = policy ?? PlacementPolicy()
        var seen = Set<ContentID>()
        let items = held.sorted { $0.contentID < $1.contentID }.filter { seen.insert($0.contentID).inserted }
        var released = Set<ContentID>()
        func safe(_ h: Held, evicting: Bool) -> Bool {
            guard !h.folderBacked else { return false }
            let hs = holders[h.contentID] ?? []
            guard Placement.mayDrop(h.contentID, type: h.type, me: me, alive: alive, holders: hs,
                                    policy: p, evicting: evicting) else { return false }
            if h.originatedHere && !placementMet(h, holders: hs, alive: alive, policy: p, me: me) { return false }
            return true
        }
        if policy != nil {
            for h in items where !h.broadcast && safe(h, evicting: false) {
                out.release.append((h.contentID, .notTarget))
                out.notTargetBytes += h.sizeBytes
                released.insert(h.contentID)
            }
        }
        var need = overCapBytes > out.notTargetBytes ? overCapBytes - out.notTargetBytes : 0
        guard need > 0 else { return out }
        let order = items.filter { !released.contains($0.contentID) }.sorted { a, b in
            if a.kept != b.kept { return !a.kept }
            if a.lastWantedMs != b.lastWantedMs { return a.lastWantedMs < b.lastWantedMs }
            return a.contentID < b.contentID
        }
        for h in order where need > 0 && safe(h, evicting: true) {
            out.release.append((h.contentID, .evicted))
            out.evictedBytes += h.sizeBytes
            need = h.sizeBytes >= need ? 0 : need - h.sizeBytes
        }
        return out
    }

    /// Every target other than `me` holds it (or shares storage with a holder), and at least
    /// `min_copies` other alive durable nodes hold it.
    static func placementMet(_ h: Held, holders: Set<NodeID>, alive: [NodeID: NodeFacts], policy: PlacementPolicy,
                             me: NodeID) -> Bool {
        let others = holders.subtracting([me])
        guard Placement.countedCopies(holders: others, alive: alive) >= policy.rule(for: h.type).minCopies else { return false }
        return Placement.targets(h.contentID, type: h.type, broadcast: h.broadcast, alive: alive, policy: policy).allSatisfy { t in
            t == me || others.contains(t) || Placement.sharesGroup(t, with: others, alive: alive)
        }
    }
}
