import Gossip

/// HYBRID push-to-2 of content (docs/SYNC.md, "Spot nodes"): the durable neighbours an origin
/// asks, with a signed `take` (docs/PROTOCOL.md §9.5), to take a copy of a new item at once.
///
/// A custodian keeps its copy like any other: the drop rule (`Placement.mayDrop`) lets it go
/// only once `min_copies` durable holders rank above it and every target holds the item, so
/// a custodian the item's roles would not want keeps it exactly until placement is met among
/// the wanted nodes.
public enum Custody {
    /// The custodians to ask for `content`, best first, at most `count`: alive durable members
    /// other than `me` that are not excluded, not full and not in `avoid` (an open breaker, a
    /// refusal, an ask that failed). Placement's targets for the type come first (every alive
    /// node is one without `placement:`), then the others, since a spot node's data must
    /// reach a durable disk even when no durable node's role wants it. Within each group: the
    /// lowest RTT (unknown last), then the most free disk, then by node id. `targetsOnly`: only
    /// placement's targets (a durable origin's offer: no copy where no role wants it).
    public static func custodians(_ content: ContentID, type: ItemType, me: NodeID, alive: [NodeID: NodeFacts],
                                  rttNs: [NodeID: Int64], policy: PlacementPolicy?, avoid: Set<NodeID>,
                                  count: Int, targetsOnly: Bool = false) -> [NodeID] {
        guard count > 0 else { return [] }
        let targets = Set(Placement.targets(content, type: type, alive: alive, policy: policy ?? PlacementPolicy()))
        let pool = alive.filter { id, f in
            id != me && f.durable && !f.excluded && !f.full && !avoid.contains(id) && (!targetsOnly || targets.contains(id))
        }
        func key(_ id: NodeID) -> (Int, Int64, UInt64) {
            (targets.contains(id) ? 0 : 1, rttNs[id] ?? Int64.max, UInt64.max - (pool[id]?.diskFreeBytes ?? 0))
        }
        return pool.keys.sorted { a, b in
            let ka = key(a), kb = key(b)
            if ka != kb { return ka < kb }
            return a < b
        }.prefix(count).map { $0 }
    }
}

/// What an origin knows about its own items' safety (docs/SYNC.md, "Spot nodes"): the pure
/// core of the durable outbox and of push-to-2.
///
/// An item a node originates is **at risk** until a durable node other than its origin holds it
/// complete, as a custodian's `take` reply or a holder record (PROTOCOL §4.6) says. On a durable
/// origin nothing is at risk (its own copy is on a durable disk): its items are offered once to
/// up to `pushCopies` of placement's targets, and not tracked. On an ephemeral origin each item is tracked
/// until it is safe (or no longer kept: a newer version superseded it past `keep_versions`, a
/// delete, its retention): `pushCopies` custodians are asked at once, and whenever an ask
/// fails (refused, no answer within `acceptTimeoutNs`, the custodian no longer alive, no
/// complete copy within `completeTimeoutNs` plus the item's size at `assumedBytesPerSecond`)
/// the next best custodian is asked, until one holds it.
///
/// Events in (`originated`, `replied`, `holderSeen`, `released`, `tick`), with `now` passed in;
/// directives out. The shell persists `tracked` in its outbox table and restores it at start.
public struct SafetyTracker: Sendable {
    public struct Config: Sendable, Equatable {
        /// Custodians asked at once per item (`push_copies`; 0 turns push-to-2 off).
        public var pushCopies = 2
        /// An ask with no reply (accepted or not) for this long has failed.
        public var acceptTimeoutNs: Int64 = 10_000_000_000
        /// An accepted ask with no complete copy after this long, plus the item's size at
        /// `assumedBytesPerSecond`, has failed (the custodian may still finish it).
        public var completeTimeoutNs: Int64 = 60_000_000_000
        public var assumedBytesPerSecond: UInt64 = 1 << 20
        /// At most this many asks outstanding per item (failed ones are not counted).
        public var maxOutstandingPerItem = 4
        public init() {}
    }

    /// One item at risk.
    public struct Item: Sendable, Equatable {
        public var content: ContentID
        public var type: ItemType
        public var sizeBytes: UInt64
        /// Wall-clock ms when it became at risk (`status`'s age of the oldest); survives restarts.
        public var enqueuedMs: Int64
        /// Asks outstanding: when sent, and whether the custodian accepted.
        public var asked: [NodeID: Ask] = [:]
        /// Custodians whose ask failed; not asked again unless every candidate has failed.
        public var failed: Set<NodeID> = []

        public init(content: ContentID, type: ItemType, sizeBytes: UInt64, enqueuedMs: Int64) {
            self.content = content
            self.type = type
            self.sizeBytes = sizeBytes
            self.enqueuedMs = enqueuedMs
        }
    }

    public struct Ask: Sendable, Equatable {
        public var at: Instant
        public var accepted: Bool
    }

    /// What a custodian answered (PROTOCOL §9.5 `take_reply`).
    public enum Reply: Sendable, Equatable {
        /// It is fetching the item.
        case accepted
        /// It holds the item complete and verified.
        case complete
        /// It will not take it (full, excluded, the entry did not verify).
        case refused
    }

    public enum Directive: Sendable, Equatable {
        /// Send a signed `take` of `content` to `custodian`.
        case ask(ContentID, custodian: NodeID)
        /// `content` is safe (held complete by `by`, a durable node), or no longer kept (`by`
        /// nil): remove it from the outbox.
        case safe(ContentID, by: NodeID?)
    }

    /// The members as the custodian choice sees them.
    public struct View: Sendable {
        public var me: NodeID
        public var alive: [NodeID: NodeFacts]
        public var rttNs: [NodeID: Int64]
        public var policy: PlacementPolicy?
        /// Peers not to ask now (their circuit breaker is open).
        public var avoid: Set<NodeID>

        public init(me: NodeID, alive: [NodeID: NodeFacts], rttNs: [NodeID: Int64] = [:], policy: PlacementPolicy? = nil,
                    avoid: Set<NodeID> = []) {
            self.me = me
            self.alive = alive
            self.rttNs = rttNs
            self.policy = policy
            self.avoid = avoid
        }

        /// A durable member other than this node: one whose complete copy makes an item safe.
        public func isDurable(_ n: NodeID) -> Bool { n != me && alive[n]?.durable == true }
    }

    public let config: Config
    /// The items at risk, by content.
    public private(set) var tracked: [ContentID: Item] = [:]

    public init(config: Config = Config()) { self.config = config }

    /// Items restored from the outbox after a restart (their asks are sent again at the next tick).
    public init(config: Config = Config(), restoring items: [Item]) {
        self.config = config
        for var i in items {
            i.asked = [:]
            i.failed = []
            tracked[i.content] = i
        }
    }

    public var atRiskBytes: UInt64 { tracked.values.reduce(0) { $0 + $1.sizeBytes } }
    public var oldestEnqueuedMs: Int64? { tracked.values.map(\.enqueuedMs).min() }

    /// This node put `content` (a `put`, a folder's snapshot). `durableHere`: this node is
    /// durable (not ephemeral). `heldBy`: durable nodes already known to hold it complete (the
    /// same bytes put before elsewhere).
    public mutating func originated(_ content: ContentID, type: ItemType, sizeBytes: UInt64, durableHere: Bool,
                                    nowMs: Int64, now: Instant, view: View, heldBy: Set<NodeID> = []) -> [Directive] {
        let holders = heldBy.filter { view.isDurable($0) }
        if durableHere || !holders.isEmpty {
            // Offered once, not tracked, and only to placement's targets: a copy beyond the
            // origin's own durable one (or one that already exists) is placement's business, and
            // no node gets a copy its role does not want.
            let want = max(0, config.pushCopies - holders.count)
            return Custody.custodians(content, type: type, me: view.me, alive: view.alive, rttNs: view.rttNs,
                                      policy: view.policy, avoid: view.avoid.union(holders), count: want, targetsOnly: true)
                .map { .ask(content, custodian: $0) }
        }
        if tracked[content] != nil { return [] }
        tracked[content] = Item(content: content, type: type, sizeBytes: sizeBytes, enqueuedMs: nowMs)
        return askMore(content, now: now, view: view, forgive: false)
    }

    /// A custodian answered a `take` of `content`.
    public mutating func replied(_ content: ContentID, from custodian: NodeID, _ reply: Reply, now: Instant,
                                 view: View) -> [Directive] {
        guard var item = tracked[content] else { return [] }
        switch reply {
        case .accepted:
            if item.asked[custodian] != nil { item.asked[custodian]?.accepted = true }
            tracked[content] = item
            return []
        case .complete:
            return holderSeen(content, custodian, now: now, view: view)
        case .refused:
            item.asked[custodian] = nil
            item.failed.insert(custodian)
            tracked[content] = item
            return askMore(content, now: now, view: view, forgive: false)
        }
    }

    /// `node` holds `content` complete (a holder record, a `take` reply). Safe if `node` is durable.
    public mutating func holderSeen(_ content: ContentID, _ node: NodeID, now: Instant, view: View) -> [Directive] {
        guard tracked[content] != nil, view.isDurable(node) else { return [] }
        tracked[content] = nil
        return [.safe(content, by: node)]
    }

    /// This node no longer keeps `content` (superseded past `keep_versions`, deleted, expired):
    /// nothing is left to make safe.
    public mutating func released(_ content: ContentID) -> [Directive] {
        guard tracked.removeValue(forKey: content) != nil else { return [] }
        return [.safe(content, by: nil)]
    }

    /// Asks that failed (no reply in time, no complete copy in time, the custodian gone) give
    /// way to the next custodians. `holders`: the durable holders known now (holder records),
    /// for items whose safety was stated before they were tracked.
    public mutating func tick(now: Instant, view: View, holders: (ContentID) -> Set<NodeID> = { _ in [] }) -> [Directive] {
        var out = [Directive]()
        for c in tracked.keys.sorted() {
            guard var item = tracked[c] else { continue }
            if let h = holders(c).filter({ view.isDurable($0) }).min() {
                tracked[c] = nil
                out.append(.safe(c, by: h))
                continue
            }
            let completeBy = config.completeTimeoutNs + Int64(min(item.sizeBytes / max(1, config.assumedBytesPerSecond), 1 << 32)) * 1_000_000_000
            for (n, a) in item.asked {
                let late = now - a.at >= (a.accepted ? completeBy : config.acceptTimeoutNs)
                if late || view.alive[n] == nil {
                    item.asked[n] = nil
                    item.failed.insert(n)
                }
            }
            tracked[c] = item
            out += askMore(c, now: now, view: view, forgive: true)
        }
        return out
    }

    /// Asks new custodians of `content` until `pushCopies` are outstanding (at most
    /// `maxOutstandingPerItem`, failed ones not counted); when every candidate has failed, the
    /// failures are forgiven and the best are asked again, but only at a tick (`forgive`): a
    /// refusal forgiven at once had the origin ask the one custodian left again at once, and
    /// that one refuse again, one round trip after another until its facts said full (meshsim's
    /// `spot` scenario: a third of all refusals).
    mutating func askMore(_ content: ContentID, now: Instant, view: View, forgive: Bool) -> [Directive] {
        guard var item = tracked[content], config.pushCopies > 0 else { return [] }
        let want = min(config.pushCopies, config.maxOutstandingPerItem) - item.asked.count
        guard want > 0 else { return [] }
        var picked = Custody.custodians(content, type: item.type, me: view.me, alive: view.alive, rttNs: view.rttNs,
                                        policy: view.policy, avoid: view.avoid.union(item.failed).union(item.asked.keys),
                                        count: want)
        if forgive && picked.isEmpty && item.asked.isEmpty && !item.failed.isEmpty {
            item.failed = []
            picked = Custody.custodians(content, type: item.type, me: view.me, alive: view.alive, rttNs: view.rttNs,
                                        policy: view.policy, avoid: view.avoid, count: want)
        }
        for p in picked { item.asked[p] = Ask(at: now, accepted: false) }
        tracked[content] = item
        return picked.map { .ask(content, custodian: $0) }
    }
}
