import Gossip
import Store
import Sync

/// Placement on a running node (docs/SYNC.md, "Placement"): a kept content this node does not
/// hold is fetched only if this node is one of its targets, computed by `Placement` from the
/// replicated node facts of the alive members (and this node's own); and never while this node
/// is over `max_disk_usage`.
///
/// Without `placement:` and `max_disk_usage` every decision is "fetch", exactly as before.
/// A node that states no roles (or only the default `node`) is eligible for every type; an
/// alive member whose facts have not arrived yet counts as such a node with 1 GiB of disk.
/// Targets are evaluated again when a member becomes alive, suspect, dead or leaves, when a
/// node's facts arrive, when this node's disk cap flips, and every `placementRecheckIntervalNs`.
/// Dropping what this node is no longer a target for, and eviction over the cap, are in
/// MeshNode+Eviction.swift.
struct PlacementState {
    /// Kept contents not held and not fetched because this node is not a target.
    var notTarget: Set<ContentID> = []
    /// Kept contents not held and not fetched because this node is full.
    var skippedFull: Set<ContentID> = []
    /// Over `max_disk_usage` at the last check.
    var full = false
    var timer: LoopTimer?
    var lastPassAt = Instant.zero
    var passes: UInt64 = 0
    /// Drops and evictions (MeshNode+Eviction.swift).
    var eviction = EvictionState()
}

/// `status --json`'s `node.placement`.
public struct PlacementStatus: Codable, Sendable, Equatable {
    /// Whether `placement:` is configured (false: every node keeps every item).
    public var configured: Bool
    public var maxDiskUsagePercent: Int?
    /// Over `max_disk_usage`: no new replicas are accepted (also stated in node facts).
    public var full: Bool
    /// Kept items not fetched because this node is not one of their targets.
    public var notTarget: Int
    /// Kept items not fetched because this node is full.
    public var skippedFull: Int
    /// Times the targets of every kept item not held were evaluated again.
    public var reevaluations: UInt64
    /// Complete copies let go of for space (over `max_disk_usage`), and their bytes.
    public var evicted: UInt64 = 0
    public var evictedBytes: UInt64 = 0
    /// Complete copies let go of because placement was met and this node was not a target.
    public var droppedNotTarget: UInt64 = 0
    public var droppedNotTargetBytes: UInt64 = 0
    /// Chosen to be let go of, waiting for garbage collection.
    public var releasePending: Int = 0
    /// Kept items with fewer complete copies on alive durable eligible nodes than their
    /// `min_copies` (`Placement.underMinCopies`; the `meshnode_items_under_min_copies` gauge).
    public var underMinCopies: Int = 0
    /// Alive members whose `placement:` rules differ from this node's (by their stated hash),
    /// by name; while any is listed nothing is dropped or evicted here.
    public var policyMismatch: [String] = []
    /// This node's `policy_hash` (hex, PROTOCOL §4.7).
    public var policyHash: String = ""
    /// Copies chosen to be let go of, waiting for their holders to confirm they hold them.
    public var confirming: Int = 0

    enum CodingKeys: String, CodingKey {
        case configured, full, reevaluations, evicted
        case evictedBytes = "evicted_bytes", droppedNotTarget = "dropped_not_target"
        case droppedNotTargetBytes = "dropped_not_target_bytes", releasePending = "release_pending"
        case maxDiskUsagePercent = "max_disk_usage_percent", notTarget = "not_target", skippedFull = "skipped_full"
        case underMinCopies = "under_min_copies", policyMismatch = "policy_mismatch", policyHash = "policy_hash", confirming
    }
}

extension MeshNode {
    static let placementDebounceNs: Int64 = 500_000_000
    static let placementRecheckIntervalNs: Int64 = 60_000_000_000

    /// Whether placement can ever say anything but "fetch" here.
    var placementActive: Bool { options.placement != nil || options.maxDiskUsagePercent != nil }

    /// The facts placement reads: every alive or suspect member's stated facts, and this node's own.
    func placementFacts() -> [NodeID: NodeFacts] {
        func normalized(_ f: NodeFacts) -> NodeFacts {
            var f = f
            if f.roles == [NodeConfig().role] { f.roles = [] }  // the default role: none stated
            return f
        }
        let me = identity.nodeID
        var out = [NodeID: NodeFacts]()
        for m in gossip.memberSnapshots() where !m.isSelf && (m.state == .alive || m.state == .suspect) {
            out[m.node] = normalized(holdings.facts(of: m.node).map { NodeFacts($0.facts) } ?? NodeFacts())
        }
        // Our own as the others see them (the stated disk total ranks us), with the live flags.
        var mine = holdings.facts(of: me).map { NodeFacts($0.facts) } ?? NodeFacts()
        mine.roles = options.facts.roles
        mine.ephemeral = options.facts.ephemeral
        mine.nfsGroup = options.facts.nfsGroup
        mine.excluded = options.facts.excluded
        mine.full = placementState.full
        out[me] = normalized(mine)
        return out
    }

    /// Whether to fetch `content` for replication; records a refusal for `status --json`.
    /// `sizeBytes`: the content's size, so that a content that does not fit under
    /// `max_disk_usage` (fetches under way counted) is not started (`Placement.fetchDecision`).
    func placementDecision(_ content: ContentID, types: Set<ItemType>, broadcast: Bool = false,
                           facts: [NodeID: NodeFacts]? = nil, sizeBytes: UInt64? = nil) -> Placement.FetchDecision {
        guard placementActive else { return .fetch }
        if placementState.eviction.evicted.contains(content) {  // evicted for space: not again
            placementState.notTarget.remove(content)
            placementState.skippedFull.insert(content)
            return .full
        }
        let d = Placement.fetchDecision(content, types: types, broadcast: broadcast, me: identity.nodeID,
                                        alive: facts ?? placementFacts(), policy: options.placement,
                                        sizeBytes: sizeBytes, roomBytes: sizeBytes == nil ? nil : roomUnderCapBytes())
        placementState.notTarget.remove(content)
        placementState.skippedFull.remove(content)
        switch d {
        case .fetch: break
        case .notTarget: placementState.notTarget.insert(content)
        case .full: placementState.skippedFull.insert(content)
        }
        return d
    }

    /// `placementDecision` for a content known only by id: the types of the versions the store has.
    func placementAdmits(_ content: ContentID) -> Bool {
        guard placementActive else { return true }
        let entry = (try? store.entry(contentID: content)) ?? nil
        let types: Set<ItemType> = entry.map { [$0.type] } ?? []
        return placementDecision(content, types: types, broadcast: entry?.isBroadcast ?? false, sizeBytes: entry?.sizeBytes) == .fetch
    }

    /// Something placement reads changed: evaluate every kept item not held again, soon.
    func placementInputsChanged() {
        guard placementActive, !stopping else { return }
        if placementState.timer == nil {
            placementState.timer = try? LoopTimer(loop: loop) { [unowned self] in self.reevaluatePlacement() }
        }
        guard let t = placementState.timer, !t.isActive else { return }
        t.start(after: .nanoseconds(Self.placementDebounceNs))
    }

    /// Fetches every kept item not held of which this node is now a target.
    func reevaluatePlacement() {
        guard placementActive, !stopping, let blobs else { return }
        placementState.lastPassAt = Self.now()
        placementState.passes += 1
        let facts = placementFacts()
        placementState.notTarget = []
        placementState.skippedFull = []
        var started = 0
        // The kept versions (in memory), not every stored put: with 10 000 items a pass that
        // decoded and looked up all of them on every member change dominated a node's CPU.
        var seen = Set<ContentID>()
        for e in keeper.keptEntries {
            guard let put = e.put, seen.insert(put.contentID).inserted else { continue }
            let c = put.contentID
            if blobs.isFetching(c) { continue }  // already a target and fetching: nothing to decide
            guard (try? store.isComplete(c)) != true else { continue }
            // (An origin that let its copy go and is a target again fetches it back like anyone.)
            guard placementDecision(c, types: [put.type], broadcast: e.isBroadcast, facts: facts, sizeBytes: put.sizeBytes) == .fetch else { continue }
            blobs.want(c, holders: Placement.fetchSources(hints: [e.origin], holders: holdings.holders(of: c), me: identity.nodeID),
                       reason: .replication, entry: e)
            started += 1
        }
        if started > 0 { logger.debug("placement: now a target", metadata: ["items": "\(started)"]) }
    }

    /// Bytes this node may still take under `max_disk_usage`: the cap, less what the file
    /// system uses, less what the fetches under way will still write; nil without a cap.
    func roomUnderCapBytes() -> UInt64? {
        guard let pct = options.maxDiskUsagePercent, case .success(let d) = DiskSpace.of(store.dataDir), d.totalBytes > 0 else { return nil }
        let cap = UInt64(Double(d.totalBytes) * Double(pct) / 100)
        let committed = d.usedBytes + (blobs?.pendingBytes ?? 0)
        return cap > committed ? cap - committed : 0
    }

    /// Housekeeping: the disk cap, and now and then every target again.
    func placementHousekeeping(now: Instant) {
        guard placementActive, !stopping else { return }
        refreshDiskCap()
        evictionHousekeeping(now: now)
        if now - placementState.lastPassAt >= Self.placementRecheckIntervalNs { placementInputsChanged() }
    }

    /// Whether this node is over `max_disk_usage` now; a change is stated in its facts at once.
    func refreshDiskCap() {
        guard let pct = options.maxDiskUsagePercent else { return }
        guard case .success(let d) = DiskSpace.of(store.dataDir), d.totalBytes > 0 else { return }
        let full = Double(d.usedBytes) * 100 > Double(pct) * Double(d.totalBytes)
        guard full != placementState.full else { return }
        placementState.full = full
        logger.notice(full ? "over max_disk_usage: accepting no new replicas" : "under max_disk_usage again: accepting replicas",
                      metadata: ["used_bytes": "\(d.usedBytes)", "total_bytes": "\(d.totalBytes)", "max_disk_usage": "\(pct)%"])
        if holdings.facts(of: identity.nodeID) != nil { writeFactsIfChanged(now: Self.now(), force: true) }
        placementInputsChanged()
    }

    func placementStatus() -> PlacementStatus? {
        guard placementActive else { return nil }
        return PlacementStatus(configured: options.placement != nil, maxDiskUsagePercent: options.maxDiskUsagePercent,
                               full: placementState.full, notTarget: placementState.notTarget.count,
                               skippedFull: placementState.skippedFull.count, reevaluations: placementState.passes,
                               evicted: placementState.eviction.evictedCount, evictedBytes: placementState.eviction.evictedBytes,
                               droppedNotTarget: placementState.eviction.droppedNotTarget,
                               droppedNotTargetBytes: placementState.eviction.droppedNotTargetBytes,
                               releasePending: placementState.eviction.release.count,
                               underMinCopies: slowGauges().underMinCopies,
                               policyMismatch: policyMismatches().map { gossip.memberName($0) ?? $0.short },
                               policyHash: Hex.encode(placementPolicyHash),
                               confirming: placementState.eviction.confirming.count)
    }

    /// The kept contents under their `min_copies`, from the replicated holder records and the
    /// alive members' facts (docs/SYNC.md, "Placement").
    func itemsUnderMinCopies() -> [ContentID] {
        let kept = keeper.keptEntries.compactMap { e in e.put.map { Placement.Kept(contentID: $0.contentID, type: $0.type) } }
        guard !kept.isEmpty else { return [] }
        return Placement.underMinCopies(kept, holders: { [holdings] in holdings.holders(of: $0) }, alive: placementFacts(),
                                        policy: options.placement ?? PlacementPolicy())
    }

    func stopPlacement() {
        placementState.timer?.close()
        placementState.timer = nil
        placementState.eviction.confirmTimer?.close()
        placementState.eviction.confirmTimer = nil
    }
}
