import Gossip
import Store
import Sync

/// Dropping and eviction on a running node (docs/SYNC.md, "Placement", "Dropping"): at most
/// every `evictionIntervalNs` (from housekeeping) `Eviction.decide` picks the complete contents
/// to let go of: copies this node is not a target for once placement is met, and, over
/// `max_disk_usage`, the least wanted and oldest with enough better-ranked copies elsewhere.
/// They go through garbage collection (`GarbageCollectionOptions.release`), and the holder
/// records then say `dropped` (MeshNode+Holdings.swift).
///
/// A content a download pins is not chosen: one in progress, and one asked for by `meshnode get`
/// (pinned for `BlobService.requestedPinGrace` after it completed, so the export can finish);
/// the ask is also when it was last wanted.
/// An evicted content is not fetched again while this process runs (no thrashing around the
/// cap). Only with `placement:` or `max_disk_usage` configured; otherwise nothing is released.
struct EvictionState {
    var lastPassAt = Instant.zero
    /// What the last pass chose and its holders confirmed, with why and its size, until collected.
    var release: [ContentID: (reason: Eviction.Reason, bytes: UInt64)] = [:]
    /// Chosen, waiting for the holders to confirm (MeshNode+DropConfirmation.swift).
    var confirming: [ContentID: DropConfirmation] = [:]
    var confirmationsAsked: UInt64 = 0
    var confirmTimer: LoopTimer?
    /// Evicted for space since start: not fetched again.
    var evicted: Set<ContentID> = []
    var evictedCount: UInt64 = 0
    var evictedBytes: UInt64 = 0
    var droppedNotTarget: UInt64 = 0
    var droppedNotTargetBytes: UInt64 = 0
    var passes: UInt64 = 0
    /// When each content was last asked for here (`meshnode get` through the node).
    var requestedAt: [ContentID: Instant] = [:]
    /// When a peer last asked this node for each content's recipe (it was fetching it from here).
    var servedAt: [ContentID: Instant] = [:]
}

extension MeshNode {
    static let evictionIntervalNs: Int64 = 10_000_000_000
    /// How long an ask counts as "wanted" in the eviction order.
    static let evictionRequestMemoryNs: Int64 = 86_400_000_000_000

    /// `content` was asked for here: wanted now, and fetched again even if it was evicted.
    func evictionRequested(_ content: ContentID) {
        placementState.eviction.requestedAt[content] = Self.now()
        placementState.eviction.evicted.remove(content)
        placementState.eviction.release[content] = nil
    }

    /// The most contents `servedAt` remembers; past it the oldest half is forgotten.
    static let evictionServedMemoryMaxEntries = 100_000

    /// A peer asked for `content`'s recipe (it is fetching it from here): wanted, for the
    /// eviction order ("least wanted and oldest first"), but not pinned.
    func evictionServed(_ content: ContentID) {
        guard placementActive else { return }
        if placementState.eviction.servedAt.count >= Self.evictionServedMemoryMaxEntries {
            let keep = placementState.eviction.servedAt.sorted { $0.value > $1.value }.prefix(Self.evictionServedMemoryMaxEntries / 2)
            placementState.eviction.servedAt = Dictionary(uniqueKeysWithValues: keep.map { ($0.key, $0.value) })
        }
        placementState.eviction.servedAt[content] = Self.now()  // in place: no copy of the map per request
    }

    /// Housekeeping: a pass when the last is `evictionIntervalNs` ago.
    func evictionHousekeeping(now: Instant) {
        guard placementActive, !stopping, now - placementState.eviction.lastPassAt >= Self.evictionIntervalNs else { return }
        runEvictionPass()
    }

    /// How many bytes this node is over `max_disk_usage` (0: not over, or no cap).
    func bytesOverDiskCap() -> UInt64 {
        guard let pct = options.maxDiskUsagePercent, case .success(let d) = DiskSpace.of(store.dataDir), d.totalBytes > 0 else { return 0 }
        let cap = UInt64(Double(d.totalBytes) * Double(pct) / 100)
        return d.usedBytes > cap ? d.usedBytes - cap : 0
    }

    /// Decides what to release now and has it collected.
    func runEvictionPass() {
        guard placementActive, !stopping else { return }
        placementState.eviction.lastPassAt = Self.now()
        placementState.eviction.passes += 1
        let me = identity.nodeID
        let pinned = blobs?.downloadPins.contents ?? []
        let now = Self.now()
        placementState.eviction.requestedAt = placementState.eviction.requestedAt.filter { now - $0.value < Self.evictionRequestMemoryNs }
        placementState.eviction.servedAt = placementState.eviction.servedAt.filter { now - $0.value < Self.evictionRequestMemoryNs }
        var byContent = [ContentID: Eviction.Held]()
        for item in (try? store.items()) ?? [] where item.isComplete && item.entry.put != nil {
            let c = item.contentID
            let asked = placementState.eviction.requestedAt[c]
            if pinned.contains(c) { continue }
            var h = byContent[c] ?? Eviction.Held(contentID: c, type: item.entry.type, sizeBytes: item.entry.sizeBytes,
                                                   kept: keeper.isKept(c), lastWantedMs: item.receivedAtMs)
            if item.entry.origin == me { h.originatedHere = true }
            if item.entry.isBroadcast { h.broadcast = true }
            h.lastWantedMs = max(h.lastWantedMs, item.receivedAtMs)
            if let asked { h.lastWantedMs = max(h.lastWantedMs, WallClock.nowMs() - (now - asked) / 1_000_000) }
            if let served = placementState.eviction.servedAt[c] {
                h.lastWantedMs = max(h.lastWantedMs, WallClock.nowMs() - (now - served) / 1_000_000)
            }
            byContent[c] = h
        }
        guard !byContent.isEmpty else { return }
        // Rules that differ between nodes could have two holders each rank the other above
        // itself: let nothing go until they agree (MeshNode+PolicyAgreement.swift).
        guard policyMismatches().isEmpty else {
            policyAgreement.suspendedPasses += 1
            return
        }
        let facts = placementFacts()
        let over = bytesOverDiskCap()
        var holders = [ContentID: Set<NodeID>]()
        for c in byContent.keys { holders[c] = holdings.holders(of: c) }
        // Folder backings are looked up only for what would go; a backed one is kept and the
        // choice made again (bounded: each round marks at least one more).
        var decision = Eviction.Decision()
        for _ in 0...byContent.count {
            decision = Eviction.decide(me: me, held: Array(byContent.values), policy: options.placement, alive: facts,
                                       holders: holders, overCapBytes: over)
            let backed = decision.contents.filter { ((try? store.backings(forContent: $0)) ?? [:]).isEmpty == false }
            if backed.isEmpty { break }
            for c in backed { byContent[c]?.folderBacked = true }
        }
        var chosen = [ContentID: (reason: Eviction.Reason, bytes: UInt64)]()
        for (c, r) in decision.release { chosen[c] = (r, byContent[c]?.sizeBytes ?? 0) }
        // Only what the holders confirm right now goes (MeshNode+DropConfirmation.swift).
        let confirmed = confirmedForRelease(chosen, types: byContent.mapValues(\.type), holders: holders, facts: facts)
        let fresh = confirmed.keys.filter { placementState.eviction.release[$0] == nil }
        placementState.eviction.release = confirmed
        guard !fresh.isEmpty else { return }
        logger.info("placement: releasing copies", metadata: [
            "not_target": "\(decision.release.filter { $0.1 == Eviction.Reason.notTarget }.count)",
            "evicted": "\(decision.release.filter { $0.1 == Eviction.Reason.evicted }.count)", "over_cap_bytes": "\(over)"])
        for c in fresh { blobs?.unwant(c) }
        collector?.released()
    }

    /// What garbage collection lets go of although kept.
    var evictionReleaseSet: Set<ContentID> { Set(placementState.eviction.release.keys) }

    /// A collection deleted these contents: count those released here.
    func evictionCollected(_ deleted: [ContentID]) {
        for c in deleted {
            guard let r = placementState.eviction.release.removeValue(forKey: c) else { continue }
            switch r.reason {
            case .notTarget:
                placementState.eviction.droppedNotTarget += 1
                placementState.eviction.droppedNotTargetBytes += r.bytes
            case .evicted:
                placementState.eviction.evicted.insert(c)
                placementState.eviction.evictedCount += 1
                placementState.eviction.evictedBytes += r.bytes
            }
        }
    }
}
