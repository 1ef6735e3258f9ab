// Token-bucket rate limiting for blob bandwidth: pure, time passed in.

/// A token bucket: `rateBytesPerSecond` tokens accrue continuously up to `burstBytes`.
///
/// Pure: the caller passes a monotonic `now` in nanoseconds (e.g. `EventLoop.monotonicNanoseconds`)
/// and schedules the returned wait itself (a loop `LoopTimer`). Two ways to use it:
/// - `tryTake`: all-or-nothing, never goes into debt;
/// - `reserve`: always takes (the balance may go negative) and returns how long to wait before
///   sending, so a sender can keep chunks of any size and still hold the average rate.
public struct TokenBucket: Sendable, Equatable {
    public let rateBytesPerSecond: Double
    public let burstBytes: Double
    /// Current balance (negative while in debt).
    public private(set) var tokens: Double
    private var lastNanoseconds: UInt64

    /// A full bucket. `burstBytes` defaults to 1/10 s of traffic (at least 64 KiB), which keeps
    /// the average within 1% over any window of 10 s or more.
    public init(rateBytesPerSecond: Int64, burstBytes: Int64? = nil, nowNanoseconds: UInt64) {
        precondition(rateBytesPerSecond > 0, "a token bucket needs a positive rate")
        self.rateBytesPerSecond = Double(rateBytesPerSecond)
        let burst = burstBytes ?? max(Int64(64 << 10), rateBytesPerSecond / 10)
        precondition(burst > 0)
        self.burstBytes = Double(burst)
        tokens = Double(burst)
        lastNanoseconds = nowNanoseconds
    }

    /// Adds the tokens accrued since the last call. Time never runs backwards here.
    public mutating func refill(nowNanoseconds now: UInt64) {
        guard now > lastNanoseconds else { return }
        let elapsed = Double(now - lastNanoseconds) / 1e9
        lastNanoseconds = now
        tokens = min(burstBytes, tokens + elapsed * rateBytesPerSecond)
    }

    /// Takes `bytes` if the bucket holds them now; otherwise takes nothing and returns false.
    public mutating func tryTake(_ bytes: Int, nowNanoseconds now: UInt64) -> Bool {
        refill(nowNanoseconds: now)
        guard tokens >= Double(bytes) else { return false }
        tokens -= Double(bytes)
        return true
    }

    /// Takes `bytes` (possibly into debt) and returns the nanoseconds to wait before sending them.
    public mutating func reserve(_ bytes: Int, nowNanoseconds now: UInt64) -> UInt64 {
        refill(nowNanoseconds: now)
        tokens -= Double(bytes)
        return waitNanoseconds
    }

    /// Nanoseconds until the balance is back to zero (0 when not in debt).
    public var waitNanoseconds: UInt64 {
        tokens >= 0 ? 0 : UInt64((-tokens / rateBytesPerSecond * 1e9).rounded(.up))
    }

    /// Nanoseconds until `bytes` could be taken with `tryTake` (0 if now).
    public func nanosecondsUntilAvailable(_ bytes: Int, nowNanoseconds now: UInt64) -> UInt64 {
        var copy = self
        copy.refill(nowNanoseconds: now)
        let missing = min(Double(bytes), burstBytes) - copy.tokens
        return missing <= 0 ? 0 : UInt64((missing / rateBytesPerSecond * 1e9).rounded(.up))
    }
}

/// A global limit plus one limit per peer, as set by the config's `bandwidth` block.
/// Pure; one instance per node, used on the loop thread.
public struct BandwidthLimiter<Peer: Hashable & Sendable>: Sendable {
    public var global: TokenBucket?
    public let perPeerBytesPerSecond: Int64?
    public let perPeerBurstBytes: Int64?
    private(set) var peers: [Peer: TokenBucket] = [:]
    /// Per-peer buckets kept at most; full (idle) ones are dropped first.
    public let maxTrackedPeers: Int

    public init(globalBytesPerSecond: Int64?, perPeerBytesPerSecond: Int64?, burstBytes: Int64? = nil,
                nowNanoseconds: UInt64, maxTrackedPeers: Int = 4096) {
        global = globalBytesPerSecond.map { TokenBucket(rateBytesPerSecond: $0, burstBytes: burstBytes, nowNanoseconds: nowNanoseconds) }
        self.perPeerBytesPerSecond = perPeerBytesPerSecond
        perPeerBurstBytes = burstBytes
        self.maxTrackedPeers = maxTrackedPeers
    }

    /// From the config.
    public init(_ config: BandwidthConfig, nowNanoseconds: UInt64) {
        self.init(globalBytesPerSecond: config.globalBytesPerSecond, perPeerBytesPerSecond: config.perPeerBytesPerSecond,
                  nowNanoseconds: nowNanoseconds)
    }

    /// True when neither limit is set.
    public var isUnlimited: Bool { global == nil && perPeerBytesPerSecond == nil }

    /// Accounts `bytes` to be sent to (or received from) `peer` and returns the nanoseconds to
    /// wait before doing so: the longer of the global and the peer's wait.
    public mutating func reserve(_ bytes: Int, peer: Peer, nowNanoseconds now: UInt64) -> UInt64 {
        var wait: UInt64 = 0
        if global != nil { wait = global!.reserve(bytes, nowNanoseconds: now) }
        if let rate = perPeerBytesPerSecond {
            var bucket = peers[peer] ?? TokenBucket(rateBytesPerSecond: rate, burstBytes: perPeerBurstBytes, nowNanoseconds: now)
            wait = max(wait, bucket.reserve(bytes, nowNanoseconds: now))
            if peers[peer] == nil && peers.count >= maxTrackedPeers { evictIdle(now: now) }
            peers[peer] = bucket
        }
        return wait
    }

    /// Like `reserve(_:peer:nowNanoseconds:)`, with `peer`'s own per-peer rate (a provider group's
    /// or a hosts entry's limit; nil: `perPeerBytesPerSecond`, and no per-peer limit when both are nil).
    public mutating func reserve(_ bytes: Int, peer: Peer, rateBytesPerSecond: Int64?, nowNanoseconds now: UInt64) -> UInt64 {
        var wait: UInt64 = 0
        if global != nil { wait = global!.reserve(bytes, nowNanoseconds: now) }
        guard let rate = rateBytesPerSecond ?? perPeerBytesPerSecond, rate > 0 else { return wait }
        var bucket = peers[peer].flatMap { $0.rateBytesPerSecond == Double(rate) ? $0 : nil }
            ?? TokenBucket(rateBytesPerSecond: rate, burstBytes: perPeerBurstBytes, nowNanoseconds: now)
        wait = max(wait, bucket.reserve(bytes, nowNanoseconds: now))
        if peers[peer] == nil && peers.count >= maxTrackedPeers { evictIdle(now: now) }
        peers[peer] = bucket
        return wait
    }

    /// Drops `peer`'s bucket (it left).
    public mutating func forget(_ peer: Peer) { peers[peer] = nil }

    private mutating func evictIdle(now: UInt64) {
        for (p, var b) in peers {
            b.refill(nowNanoseconds: now)
            if b.tokens >= b.burstBytes { peers[p] = nil }
        }
        if peers.count >= maxTrackedPeers, let any = peers.keys.first { peers[any] = nil }
    }
}
