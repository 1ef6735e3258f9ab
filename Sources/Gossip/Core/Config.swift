#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Every knob of the gossip core, with its unit in its name. Defaults are production
/// defaults; the values that must scale with the cluster size do so through the
/// helpers at the bottom (`suspicionTimeouts`, `retransmitLimit`).
public struct GossipConfig: Sendable {
    /// This node's human name and role, shown in `meshnode peers` (≤ 64 and ≤ 32 bytes).
    public var name: String = ""
    public var role: String = ""
    /// Credential presented in this node's `alive` announcements (≤ 256 bytes; an
    /// authority certificate in issue 4, empty with `trusted_keys`).
    public var credential: [UInt8] = []
    /// Tell peers that this node can only be reached over a stream (TCP through a tunnel).
    public var advertiseStreamOnly: Bool = false
    /// Peers that this node must reach over a stream (e.g. an SSH or SOCKS5 tunnel):
    /// every message to these addresses is sent `.stream`, whatever its size.
    public var streamOnlyPeers: Set<PeerAddress> = []

    // SWIM / Lifeguard
    /// One protocol period: one member is probed per period (scaled by local health).
    public var probeIntervalMs: Int64 = 800
    /// How long to wait for a direct ack before asking `indirectChecks` others (scaled by local health).
    public var probeTimeoutMs: Int64 = 400
    /// k: members asked to probe indirectly.
    public var indirectChecks: Int = 3
    /// α: the minimum suspicion timeout is α · max(1, log10(n)) · probeInterval.
    public var suspicionMinMultiplier: Double = 1.5
    /// β: the maximum suspicion timeout is β · minimum.
    public var suspicionMaxMultiplier: Double = 6
    /// K: independent confirmations after which the suspicion timeout is at its minimum.
    public var suspicionConfirmations: Int = 3
    /// Upper bound of the local health multiplier (Lifeguard's S).
    public var maxLocalHealth: Int = 8
    /// λ: each membership update is piggybacked λ · ceil(log10(n + 1)) times.
    public var retransmitMultiplier: Int = 4
    /// Dead members and seeds are re-probed one at a time at this interval, so a
    /// partitioned cluster merges again by itself.
    public var retryIntervalMs: Int64 = 4000
    /// Dead and left members are forgotten after this long (seeds stay on the retry list forever).
    public var deadRetentionMs: Int64 = 3_600_000
    /// Join messages to seeds are repeated at this interval until some member is alive.
    public var joinRetryIntervalMs: Int64 = 2000
    /// Full member lists are exchanged at most this often (they are sent only when the
    /// membership hashes in two digests differ); below 250 members the gap is
    /// 20 ms × members, at least 1 s.
    public var memberSyncMinIntervalMs: Int64 = 5000

    // Replication
    /// Anti-entropy: a digest to one random member at this interval.
    public var antiEntropyIntervalMs: Int64 = 30_000
    /// The broadcast tree's fan-out (a new local entry goes to this many neighbours at once).
    public var pushFanout: Int = 2
    /// Recent entry ids advertised on probe traffic: how many per message and how many times each.
    public var advertsPerMessage: Int = 8
    public var advertRetransmitMultiplier: Int = 3
    /// A gap revealed by a tree push is pulled only if still open this much later (the
    /// missing entry may be a few jittered hops behind).
    public var gapPullDelayMs: Int64 = 500
    /// A pull for the same missing entry is not repeated sooner than this.
    public var pullRetryMs: Int64 = 1000

    // Limits
    /// The largest datagram sent or accepted, signature included.
    public var maxDatagramBytes: Int = 1200
    /// The largest stream frame (one envelope over TCP) sent or accepted.
    public var maxFrameBytes: Int = 1 << 20
    /// Members beyond this are not admitted (reported as `tooManyMembers`).
    public var maxMembers: Int = 4096
    /// At most this many entries are sent in answer to one vector or pull.
    public var maxRepairEntries: Int = 2048
    /// Pending indirect probes performed for others.
    public var maxPendingIndirectProbes: Int = 64
    /// Pending pulls of missing entries.
    public var maxPendingPulls: Int = 512
    /// Fork evidence pairs kept.
    public var maxForkEvidence: Int = 256
    /// Replay window: messages up to this many counter values behind the newest are accepted once.
    public var replayWindow: Int = 64

    public init() {}

    /// The retransmit limit for piggybacked membership updates in a cluster of `n`.
    public func retransmitLimit(members n: Int) -> Int {
        retransmitMultiplier * max(1, Int((log10(Double(n + 1))).rounded(.up)))
    }

    public func advertRetransmitLimit(members n: Int) -> Int {
        advertRetransmitMultiplier * max(1, Int((log10(Double(n + 1))).rounded(.up)))
    }

    /// Lifeguard's suspicion timeouts (ms) for a cluster of `n`: (min, max).
    public func suspicionTimeoutsMs(members n: Int) -> (min: Int64, max: Int64) {
        let scale = max(1.0, log10(Double(max(n, 1))))
        let lo = suspicionMinMultiplier * scale * Double(probeIntervalMs)
        return (Int64(lo), Int64(lo * suspicionMaxMultiplier))
    }

    /// Lifeguard §IV-B: timeout = max(min, max − (max − min) · log(C + 1) / log(K + 1)).
    public func suspicionTimeoutMs(members n: Int, confirmations c: Int) -> Int64 {
        let (lo, hi) = suspicionTimeoutsMs(members: n)
        let k = max(1, min(suspicionConfirmations, n - 2))
        let frac = log(Double(c + 1)) / log(Double(k + 1))
        let t = Double(hi) - Double(hi - lo) * frac
        return max(lo, Int64(t))
    }
}
