import Gossip
import Store

/// Upload pacing by priority (issue 13): the per-peer limit toward each peer (`providers`,
/// hosts entries, `bandwidth.per_peer`) and the global limit shared among sessions by the
/// priority of the chunk each has ready (`uploadPacer`, a `PriorityPacer`).
extension BlobService {
    /// Waits for a turn of the global upload limit for `bytes` at `priority`, then runs `go`.
    func paceUpload(bytes: Int, priority: TransferPriority, _ go: @escaping () -> Void) {
        let ticket = nextPacerTicket
        nextPacerTicket += 1
        pacerWaiters[ticket] = go
        uploadPacer.submit(ticket, bytes: bytes, priority: priority)
        pumpPacer()
    }

    /// Runs the senders whose turn it is, and arms a timer for the next turn.
    func pumpPacer() {
        let (granted, wait) = uploadPacer.grant(nowNanoseconds: UInt64(max(0, MeshNode.now().nanoseconds)))
        for t in granted { pacerWaiters.removeValue(forKey: t)?() }
        if let wait, !pacerTimerArmed {
            pacerTimerArmed = true
            after(.nanoseconds(Int64(max(wait, 100_000)))) { [weak self] in
                guard let self else { return }
                self.pacerTimerArmed = false
                self.pumpPacer()
            }
        }
    }

    /// The per-peer upload limit toward `peer` when it differs from `bandwidth.per_peer`
    /// (PeerBandwidthLimits: its hosts entry, else a provider group), cached per peer.
    func perPeerLimit(_ peer: NodeID) -> Int64? {
        guard !config.peerLimits.isEmpty else { return nil }
        if let cached = peerLimitCache[peer] { return cached }
        let name = node.gossip.memberName(peer)
        let limit = config.peerLimits.perPeer(name: name, id: peer)?.bytesPerSecond
        if peerLimitCache.count > 4096 { peerLimitCache = [:] }
        if name != nil { peerLimitCache[peer] = .some(limit) }
        return limit
    }

    public func transfers() -> [TransferRow] {
        downloads.values.map { d in
            TransferRow(id: "\(d.contentID)", name: d.entry?.name ?? "", sizeBytes: d.recipe?.sizeBytes ?? d.entry?.sizeBytes ?? 0,
                        doneBytes: d.doneBytes, rateBytesPerSecond: d.rate, sources: d.scheduler?.sourceIDs.count ?? 0,
                        state: d.abandoned ? "abandoned" : !isActive(d) ? "queued" : d.recipe == nil ? "finding" : "fetching",
                        priority: d.priority.description)
        }.sorted { $0.id < $1.id }
    }
}
