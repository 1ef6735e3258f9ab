import Gossip

/// Progress `have`s (docs/PROTOCOL.md §9.1): while this node fetches an item, the peers fetching
/// the same item (they asked it for the item's recipe or holdings) are told its bitmap, as an
/// unsolicited `have` (request id 0), at most every `progressHaveInterval` and only when it
/// verified chunks since. Without this a receiver's view of the others' progress is the last
/// `want_have` answer, up to three discovery intervals (6 s) old, and the receivers of a
/// broadcast ask the origin for chunks their neighbours already hold.
extension BlobService {
    static let progressHaveIntervalNs: Int64 = 1_000_000_000
    /// A peer that has not asked about an item for this long is no longer told.
    static let interestMemoryNs: Int64 = 30_000_000_000
    /// Peers told per item per round, and items remembered.
    static let maxInterestedPeers = 32
    static let maxInterestedItems = 4096

    func noteInterest(_ c: ContentID, _ peer: NodeID) {
        guard downloads[c] != nil else { return }  // only a node still fetching has news to tell
        if interested[c] == nil && interested.count >= Self.maxInterestedItems { return }
        var peers = interested[c] ?? [:]
        if peers[peer] == nil && peers.count >= Self.maxInterestedPeers { return }
        peers[peer] = MeshNode.now()
        interested[c] = peers
    }

    func tellProgress(now: Instant) {
        for (c, peers) in interested {
            guard let d = downloads[c], let s = d.scheduler, let r = d.recipe, !s.isComplete else {
                interested[c] = nil
                continue
            }
            let fresh = peers.filter { now - $0.value < Self.interestMemoryNs }
            interested[c] = fresh.isEmpty ? nil : fresh
            let verified = s.chunkCount - s.missingCount
            guard !fresh.isEmpty, verified > d.haveToldCount, now - d.haveToldAt >= Self.progressHaveIntervalNs else { continue }
            d.haveToldCount = verified
            d.haveToldAt = now
            let bitmap = ChunkBitmap.make(count: r.chunks.count) { s.holds($0) }
            for p in fresh.keys.sorted() where p != node.identity.nodeID {
                _ = sendRequest(.have(requestID: 0, contentID: c, chunkCount: UInt32(r.chunks.count), bitmap: bitmap), to: p)
            }
        }
    }
}
