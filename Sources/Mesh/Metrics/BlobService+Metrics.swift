// What the chunk exchange tells metrics and health checks.
import Gossip

extension BlobService {
    /// A chunk request failed, or a chunk was refused on arrival (`meshnode_p2p_request_errors_total`).
    func countRequestError(_ reason: P2PRequestError) {
        counters.requestErrors[reason.rawValue, default: 0] += 1
    }

    /// Items being fetched (holding a slot) that made no progress for `seconds`.
    func stalledDownloads(olderThanSeconds seconds: Double, now: Instant) -> Int {
        let limit = Int64(seconds * 1e9)
        return downloads.values.filter { isActive($0) && now - $0.lastProgress > limit }.count
    }

    /// Items given up on (every recipe refused), and items waiting for a slot.
    var abandonedDownloads: Int { abandonedCount }
    var queuedDownloads: Int { waiting.count }
    var activeDownloads: Int { activeCount }
}
