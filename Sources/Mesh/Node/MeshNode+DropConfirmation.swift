import Gossip
import Store
import Sync

/// Before this node lets a copy go (dropping or evicting, MeshNode+Eviction.swift), the holders
/// that make it safe are asked, now, whether they hold the content complete (a `want_have`,
/// PROTOCOL §9). The holder records are replicated facts and may be stale: a holder that
/// crashed with its disk less than a failure-detection time ago is still alive and still a
/// holder by its records (found by meshsim's placement scenario, where it cost last copies).
/// Only when at least `min_copies` other alive durable nodes answered "complete" within
/// `dropConfirmTimeoutNs` is the copy released; otherwise the next pass asks again.
struct DropConfirmation {
    var reason: Eviction.Reason
    var bytes: UInt64
    /// Complete answers needed: the type's `min_copies` (1 without `placement:`).
    var needed: Int
    var confirmed: Set<NodeID> = []
    var askedAt: Instant
}

extension MeshNode {
    static let dropConfirmTimeoutNs: Int64 = 10_000_000_000

    /// Of the contents `Eviction.decide` chose, those whose holders confirmed in time (ready
    /// to release now); asks the holders of the others.
    func confirmedForRelease(_ chosen: [ContentID: (reason: Eviction.Reason, bytes: UInt64)], types: [ContentID: ItemType],
                             holders: [ContentID: Set<NodeID>], facts: [NodeID: NodeFacts]) -> [ContentID: (reason: Eviction.Reason, bytes: UInt64)] {
        let now = Self.now()
        let me = identity.nodeID
        var ready = [ContentID: (reason: Eviction.Reason, bytes: UInt64)]()
        var pending = [ContentID: DropConfirmation]()
        for (c, r) in chosen {
            if let already = placementState.eviction.release[c] {  // confirmed earlier, waiting for collection
                ready[c] = already
                continue
            }
            if let conf = placementState.eviction.confirming[c] {
                if conf.confirmed.count >= conf.needed {
                    ready[c] = r
                    continue
                }
                if now - conf.askedAt < Self.dropConfirmTimeoutNs {
                    pending[c] = conf
                    continue
                }
            }
            let ask = (holders[c] ?? []).filter { $0 != me && facts[$0]?.durable == true }.sorted()
            let needed = (options.placement ?? PlacementPolicy()).rule(for: types[c] ?? .other).minCopies
            guard ask.count >= needed else { continue }  // cannot be confirmed: keep it
            pending[c] = DropConfirmation(reason: r.reason, bytes: r.bytes, needed: needed, askedAt: now)
            blobs?.askHolding(c, of: ask)
            placementState.eviction.confirmationsAsked += 1
        }
        placementState.eviction.confirming = pending  // a content no longer chosen is forgotten
        return ready
    }

    /// `peer` said it holds `content` complete (a `have` answer or announcement).
    func holdingConfirmed(_ content: ContentID, by peer: NodeID) {
        guard var conf = placementState.eviction.confirming[content], peer != identity.nodeID else { return }
        let before = conf.confirmed.count
        conf.confirmed.insert(peer)
        placementState.eviction.confirming[content] = conf
        // Enough answers: release soon (one pass for a burst of answers) rather than at the next 10 s pass.
        guard before < conf.needed, conf.confirmed.count >= conf.needed else { return }
        if placementState.eviction.confirmTimer == nil {
            placementState.eviction.confirmTimer = try? LoopTimer(loop: loop) { [unowned self] in self.runEvictionPass() }
        }
        if let t = placementState.eviction.confirmTimer, !t.isActive { t.start(after: .milliseconds(200)) }
    }
}
