import Gossip
import Logging
import Sync

/// Per-peer circuit breakers on the transfer path (docs/RUNTIME.md, "Circuit breakers";
/// the state machine is `Sync.CircuitBreaker`). A peer whose chunk requests keep failing
/// (timeouts, internal errors, dial failures), or whose chunks fail their hash, is not asked
/// for anything (recipe, holdings, chunks) while its breaker is open; after the recovery time
/// a few trial chunk requests decide whether it closes. Gossip with the peer goes on.
///
/// A session that a middlebox resets is not a failure here: the path model hands requests
/// over to a successor connection, and only the requests that then time out count.
extension BlobService {
    var breakerNowMs: Int64 { MeshNode.now().nanoseconds / 1_000_000 }

    /// Whether a recipe or holdings question may go to `peer` (not while its breaker is open).
    func breakerAllowsQuestions(_ peer: NodeID) -> Bool {
        breakers[peer].state(nowMs: breakerNowMs) != .open
    }

    /// A request to `peer` failed for `reason`: counts toward opening its breaker.
    func breakerFailure(_ peer: NodeID, _ reason: String, unreachable: Bool = false) {
        let now = breakerNowMs
        let wasHalfOpen = breakers[peer].state(nowMs: now) == .halfOpen
        guard breakers.recordFailure(peer, reason, unreachable: unreachable, nowMs: now) else { return }
        let b = breakers[peer]
        let name = node.gossip.memberName(peer) ?? peer.short
        logger.warning("circuit open for \(name): \(wasHalfOpen ? "a trial request failed" : "\(b.config.failureThreshold) transfer failures in a row") (\(reason)); no transfer requests to it for \(b.config.recoveryTimeoutMs / 1000) s, then \(b.config.halfOpenRequests) trials (`meshnode breaker reset \(name)` closes it now)",
                       metadata: ["peer": "\(name)", "peer_id": "\(peer)", "reason": "\(reason)", "opens": "\(b.opens)"])
    }

    /// A chunk from `peer` verified.
    func breakerSuccess(_ peer: NodeID) {
        let before = breakers[peer].state
        breakers.recordSuccess(peer, nowMs: breakerNowMs)
        if before == .halfOpen, breakers[peer].state == .closed {
            let name = node.gossip.memberName(peer) ?? peer.short
            logger.notice("circuit closed for \(name): the trial requests succeeded", metadata: ["peer": "\(name)"])
        }
    }

    /// `meshnode breaker reset PEER`.
    @discardableResult
    public func resetBreaker(_ peer: NodeID) -> Bool {
        let changed = breakers.reset(peer)
        if changed { for d in downloads.values { pump(d) } }
        return changed
    }

    /// Every peer's breaker as `peers --json` and `status --json` show it.
    public func breakerRows() -> [NodeID: BreakerRow] {
        let now = breakerNowMs
        return breakers.byPeer.mapValues { BreakerRow($0, nowMs: now) }
    }

    /// How many peers' breakers are open (recovery not yet due) now.
    public var openBreakers: Int { breakers.counts(nowMs: breakerNowMs)[.open] ?? 0 }
}

/// One peer's breaker in `peers --json` (`breaker`) and `status --json` (`breakers`).
public struct BreakerRow: Codable, Sendable, Equatable {
    public var state: String
    public var consecutiveFailures: Int
    public var opens: UInt64
    public var lastFailure: String?
    /// Seconds until trials are let through (open only).
    public var recoversInSeconds: Double?

    init(_ b: CircuitBreaker, nowMs: Int64) {
        state = b.state(nowMs: nowMs).rawValue
        consecutiveFailures = b.consecutiveFailures
        opens = b.opens
        lastFailure = b.lastFailure
        recoversInSeconds = b.recoversAtMs.flatMap { at in at > nowMs ? Double(at - nowMs) / 1000 : nil }
    }

    enum CodingKeys: String, CodingKey {
        case state, opens
        case consecutiveFailures = "consecutive_failures", lastFailure = "last_failure", recoversInSeconds = "recovers_in_s"
    }
}
