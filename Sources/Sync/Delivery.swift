import Gossip

/// Where a broadcast item (a put with the broadcast flag, `meshnode put --broadcast`) stands on
/// each node (docs/SYNC.md, "Broadcast"), from replicated state only: the holder records and
/// node facts (docs/PROTOCOL.md §4.6, §4.7) that every node holding the same entries has, so
/// every node gives the same answer, running or not.
///
/// A node is **delivered** when its latest statement says it holds the content complete;
/// otherwise **skipped** with the first reason that applies: it is excluded from sync, over
/// its `max_disk_usage`, or of no role the type's placement rule admits; otherwise **pending**
/// (eligible, not there yet). The nodes considered are those that stated facts, and holders.
public enum Delivery {
    public enum SkipReason: String, Sendable, Hashable, CaseIterable {
        case excluded
        case full
        /// Of no role the type's placement rule admits.
        case notEligible = "not_eligible"
    }

    public struct Report: Equatable, Sendable {
        public var delivered: [NodeID] = []
        public var skipped: [(node: NodeID, reason: SkipReason)] = []
        public var pending: [NodeID] = []

        public static func == (a: Report, b: Report) -> Bool {
            a.delivered == b.delivered && a.pending == b.pending
                && a.skipped.map(\.node) == b.skipped.map(\.node) && a.skipped.map(\.reason) == b.skipped.map(\.reason)
        }
    }

    /// The delivery of `content` (of `type`) over `facts` (each node's stated facts) and
    /// `holders` (complete holders by the holder records); each list sorted by node id.
    /// `policy` nil: no role restriction is known.
    public static func report(type: ItemType, facts: [NodeID: NodeFacts], holders: Set<NodeID>,
                              policy: PlacementPolicy?) -> Report {
        let rule = policy?.rule(for: type) ?? PlacementRule()
        var r = Report()
        for n in Set(facts.keys).union(holders).sorted() {
            if holders.contains(n) { r.delivered.append(n); continue }
            guard let f = facts[n] else { r.pending.append(n); continue }
            if f.excluded {
                r.skipped.append((n, .excluded))
            } else if f.full {
                r.skipped.append((n, .full))
            } else if !rule.admitsRoles(f.roles) {
                r.skipped.append((n, .notEligible))
            } else {
                r.pending.append(n)
            }
        }
        return r
    }
}
