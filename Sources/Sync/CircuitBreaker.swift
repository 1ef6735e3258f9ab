import Gossip

/// One peer's circuit breaker (Nygard, *Release It!*, 2nd ed., §5.2 "Circuit Breaker"): the
/// single place that decides whether this node sends transfer requests to a peer. Pure: time
/// comes in as `nowMs` (any monotonic milliseconds), outcomes are reported by the caller.
///
/// - **closed**: requests flow; `failureThreshold` consecutive failures (a request that failed
///   or timed out, a chunk that failed its hash) open it. A success resets the count.
/// - **open**: no request is sent, until `recoveryTimeoutMs` has passed since it opened.
/// - **half_open**: at most `halfOpenRequests` trial requests are in flight; that many
///   successes close it, any failure opens it again (and restarts the recovery time). A trial
///   that has had no answer reported for `trialTimeoutMs` frees its slot (a request the caller
///   dropped without reporting it must not hold the breaker half open for good).
///
/// Gossip membership is not affected: an open peer is still probed and still relays entries.
public struct CircuitBreaker: Sendable, Equatable {
    public struct Config: Sendable, Equatable {
        public var failureThreshold: Int
        public var recoveryTimeoutMs: Int64
        public var halfOpenRequests: Int
        /// How long a trial holds its half-open slot without an answer (above the transfer
        /// request timeout, 10 s from the source's latest progress, so a live trial keeps it).
        public var trialTimeoutMs: Int64

        public init(failureThreshold: Int = 5, recoveryTimeoutMs: Int64 = 60_000, halfOpenRequests: Int = 3,
                    trialTimeoutMs: Int64 = 30_000) {
            self.failureThreshold = max(1, failureThreshold)
            self.recoveryTimeoutMs = max(0, recoveryTimeoutMs)
            self.halfOpenRequests = max(1, halfOpenRequests)
            self.trialTimeoutMs = max(1, trialTimeoutMs)
        }
    }

    public enum State: String, Sendable, Equatable, CaseIterable {
        case closed, open
        case halfOpen = "half_open"
    }

    public let config: Config
    public private(set) var state: State = .closed
    /// Consecutive failures while closed.
    public private(set) var consecutiveFailures = 0
    /// When it last opened (`nowMs`), while open or half open.
    public private(set) var openedAtMs: Int64?
    /// Trial requests sent and not yet answered, and trials that succeeded, while half open.
    public var trialsInFlight: Int { trialStartsMs.count }
    public private(set) var trialSuccesses = 0
    /// When each trial in flight was admitted, oldest first.
    private var trialStartsMs: [Int64] = []
    /// Times it opened.
    public private(set) var opens: UInt64 = 0
    /// The reason of the failure that last opened it (for `peers` and logs).
    public private(set) var lastFailure: String?
    /// Whether the failures that opened it were all of the peer being unreachable (timeouts,
    /// failed dials), which fresh evidence of reachability cures (`recordReachable`).
    public private(set) var openedUnreachable = false
    private var failuresAllUnreachable = true

    public init(config: Config = Config()) { self.config = config }

    /// The state as of `nowMs`: an open breaker whose recovery time has passed reads as half open.
    public func state(nowMs: Int64) -> State {
        if state == .open, let t = openedAtMs, nowMs - t >= config.recoveryTimeoutMs { return .halfOpen }
        return state
    }

    /// Whether a request may be sent to the peer now (without sending one).
    public func allows(nowMs: Int64) -> Bool {
        switch state(nowMs: nowMs) {
        case .closed: true
        case .open: false
        case .halfOpen: trialStartsMs.count { nowMs - $0 < config.trialTimeoutMs } < config.halfOpenRequests
        }
    }

    /// A request is being sent: false if the breaker does not allow it (then send nothing).
    /// While half open it counts as one of the trials.
    public mutating func admit(nowMs: Int64) -> Bool {
        guard allows(nowMs: nowMs) else { return false }
        if state == .open {  // recovery time passed
            state = .halfOpen
            trialStartsMs = []
            trialSuccesses = 0
        }
        if state == .halfOpen {
            trialStartsMs.removeAll { nowMs - $0 >= config.trialTimeoutMs }
            trialStartsMs.append(nowMs)
        }
        return true
    }

    /// A request succeeded (a chunk arrived and verified).
    public mutating func recordSuccess(nowMs: Int64) {
        switch state {
        case .closed:
            consecutiveFailures = 0
        case .open:
            break  // a late answer to a request sent before it opened
        case .halfOpen:
            if !trialStartsMs.isEmpty { trialStartsMs.removeFirst() }
            trialSuccesses += 1
            if trialSuccesses >= config.halfOpenRequests { close() }
        }
    }

    /// A request failed: timed out, failed, or delivered a chunk that did not match its hash.
    /// `unreachable`: the failure says the peer could not be reached or did not answer (a
    /// timeout, a failed dial), not that it answered wrongly. Returns true when this failure
    /// opened the breaker.
    @discardableResult
    public mutating func recordFailure(_ reason: String, unreachable: Bool = false, nowMs: Int64) -> Bool {
        switch state {
        case .closed:
            if consecutiveFailures == 0 { failuresAllUnreachable = true }
            consecutiveFailures += 1
            failuresAllUnreachable = failuresAllUnreachable && unreachable
            guard consecutiveFailures >= config.failureThreshold else { return false }
        case .open:
            return false
        case .halfOpen:
            failuresAllUnreachable = unreachable
        }
        openedUnreachable = failuresAllUnreachable
        state = .open
        openedAtMs = nowMs
        opens += 1
        lastFailure = reason
        trialStartsMs = []
        trialSuccesses = 0
        consecutiveFailures = 0
        return true
    }

    /// Fresh evidence the peer is reachable (a session with it was just established, e.g. it
    /// restarted): a breaker opened only by unreachability lets its trials through now instead
    /// of after the recovery time. One opened by wrong answers (corrupt chunks) waits it out.
    public mutating func recordReachable(nowMs: Int64) {
        guard state == .open, openedUnreachable, let t = openedAtMs, nowMs - t < config.recoveryTimeoutMs else { return }
        openedAtMs = nowMs - config.recoveryTimeoutMs
    }

    /// A trial request was withdrawn without an answer (cancelled, the item completed): it
    /// no longer holds a half-open slot.
    public mutating func recordWithdrawn() {
        if state == .halfOpen, !trialStartsMs.isEmpty { trialStartsMs.removeFirst() }
    }

    /// `meshnode breaker reset PEER`: closed, the failure count cleared.
    public mutating func close() {
        state = .closed
        consecutiveFailures = 0
        openedAtMs = nil
        trialStartsMs = []
        trialSuccesses = 0
    }

    /// When an open breaker lets trials through (for a timer), or nil.
    public var recoversAtMs: Int64? {
        guard state == .open, let t = openedAtMs else { return nil }
        return t + config.recoveryTimeoutMs
    }
}

/// Every peer's breaker, created closed on first use.
public struct CircuitBreakers: Sendable {
    public let config: CircuitBreaker.Config
    public private(set) var byPeer: [NodeID: CircuitBreaker] = [:]

    public init(config: CircuitBreaker.Config = .init()) { self.config = config }

    public subscript(peer: NodeID) -> CircuitBreaker { byPeer[peer] ?? CircuitBreaker(config: config) }

    public func allows(_ peer: NodeID, nowMs: Int64) -> Bool { byPeer[peer]?.allows(nowMs: nowMs) ?? true }

    /// The peers no request may go to now: open, or half open with every trial slot taken.
    public func blocked(nowMs: Int64) -> Set<NodeID> {
        Set(byPeer.filter { !$0.value.allows(nowMs: nowMs) }.keys)
    }

    public mutating func admit(_ peer: NodeID, nowMs: Int64) -> Bool {
        guard byPeer[peer] != nil else { return true }  // never failed: closed
        return byPeer[peer]!.admit(nowMs: nowMs)
    }

    public mutating func recordSuccess(_ peer: NodeID, nowMs: Int64) {
        guard byPeer[peer] != nil else { return }
        byPeer[peer]!.recordSuccess(nowMs: nowMs)
        if byPeer[peer]!.state == .closed, byPeer[peer]!.consecutiveFailures == 0, byPeer[peer]!.opens == 0 {
            byPeer[peer] = nil  // back to the default: nothing to remember
        }
    }

    /// Returns true when this failure opened the peer's breaker.
    @discardableResult
    public mutating func recordFailure(_ peer: NodeID, _ reason: String, unreachable: Bool = false, nowMs: Int64) -> Bool {
        var b = byPeer[peer] ?? CircuitBreaker(config: config)
        let opened = b.recordFailure(reason, unreachable: unreachable, nowMs: nowMs)
        byPeer[peer] = b
        return opened
    }

    public mutating func recordWithdrawn(_ peer: NodeID) { byPeer[peer]?.recordWithdrawn() }

    public mutating func recordReachable(_ peer: NodeID, nowMs: Int64) { byPeer[peer]?.recordReachable(nowMs: nowMs) }

    /// Closes one peer's breaker; false if it was closed already.
    @discardableResult
    public mutating func reset(_ peer: NodeID) -> Bool {
        guard let b = byPeer[peer], b.state != .closed || b.consecutiveFailures > 0 else { return false }
        byPeer[peer]!.close()
        return true
    }

    /// How many peers are open or half open as of `nowMs`, by state.
    public func counts(nowMs: Int64) -> [CircuitBreaker.State: Int] {
        var out: [CircuitBreaker.State: Int] = [.closed: 0, .open: 0, .halfOpen: 0]
        for b in byPeer.values { out[b.state(nowMs: nowMs), default: 0] += 1 }
        return out
    }

    /// The earliest time an open breaker lets trials through, for a timer.
    public var nextRecoveryMs: Int64? { byPeer.values.compactMap(\.recoversAtMs).min() }
}
