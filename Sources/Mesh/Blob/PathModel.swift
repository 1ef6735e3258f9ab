/// What a node has learned about one path to a peer (direct, SSH, SOCKS5): how long
/// its connections tend to live and how fast it moves bytes.
///
/// Middleboxes on rented GPU hosts reset TCP connections after 4–8 s. A connection
/// that is given more work than it can finish before that dies with the work half
/// done. So a sender asks the model how much a connection of a given age may still
/// take (`workBudgetBytes`), and opens the next connection early (`shouldOpenSuccessor`)
/// so that the stream of chunks never stalls while a new session is set up.
///
/// Lifetimes are only learned from connections that ended abnormally (PROTOCOL §8.4: a
/// reset, an end without `close`, an idle timeout, a tunnel exiting), never from a clean
/// close, which was one side's choice: a peer that opens a session per request and closes
/// each cleanly says nothing about the path. The *typical* lifetime is a low quantile
/// (the 20th percentile) of the last `window` observations, because it is the short
/// lives that lose work.
///
/// A connection also dies when the peer itself does (a spot host vanishing, a crash, a
/// restart), and that says nothing about the path. So a lifetime stays *pending* until the
/// peer is known to have stayed up: the next session with it is established (a path that
/// resets lets you straight back in). If a connection attempt fails first, or the failure
/// detector suspects the peer, the death is blamed on the peer and the lifetime is dropped.
/// Without this, one crash of a peer taught a 1–2 s "lifetime", and every later transfer
/// from it was cut into sub-second connections.
public struct PathModel: Sendable, Equatable {
    public static let window = 16
    /// Fraction of the typical lifetime a connection is planned to be used for.
    public static let safetyFraction = 0.6
    /// Age, as a fraction of the typical lifetime, at which the successor is opened.
    public static let successorFraction = 0.45

    public private(set) var lifetimes: [Double] = []
    /// Lifetimes of connections that were reset, not yet known to be the path's doing.
    public private(set) var pendingLifetimes: [Double] = []
    public private(set) var throughputBytesPerSecond: Double
    public private(set) var resets = 0

    public init(initialThroughputBytesPerSecond: Double = 50_000_000) {
        throughputBytesPerSecond = initialThroughputBytesPerSecond
    }

    /// The 20th-percentile lifetime of reset connections, in seconds; nil while none was seen.
    public var typicalLifetimeSeconds: Double? {
        guard !lifetimes.isEmpty else { return nil }
        let sorted = lifetimes.sorted()
        return sorted[Int(Double(sorted.count - 1) * 0.2)]
    }

    /// A connection on this path ended after `lifetime` seconds; `byReset` says it ended
    /// abnormally (anything but a clean close or a close of our own). Such an end is held
    /// pending until `onSessionEstablished` (the path's doing) or `onPeerUnreachable` (the peer's).
    public mutating func onConnectionEnded(afterSeconds lifetime: Double, byReset: Bool) {
        guard byReset, lifetime > 0 else { return }
        resets += 1
        pendingLifetimes.append(lifetime)
        if pendingLifetimes.count > Self.window { pendingLifetimes.removeFirst(pendingLifetimes.count - Self.window) }
    }

    /// A new session with the peer was established: it was up all along, so the pending resets
    /// were the path's.
    public mutating func onSessionEstablished() {
        guard !pendingLifetimes.isEmpty else { return }
        lifetimes += pendingLifetimes
        pendingLifetimes = []
        if lifetimes.count > Self.window { lifetimes.removeFirst(lifetimes.count - Self.window) }
    }

    /// A connection attempt to the peer failed, or the peer is suspected: the pending resets
    /// were the peer going away, not the path.
    public mutating func onPeerUnreachable() {
        pendingLifetimes = []
    }

    public mutating func onTransferred(bytes: Int, seconds: Double) {
        guard bytes > 0, seconds > 0 else { return }
        throughputBytesPerSecond = throughputBytesPerSecond * 0.8 + Double(bytes) / seconds * 0.2
    }

    /// How many more bytes a connection `ageSeconds` old should be asked to carry.
    /// `nil` means no limit is known (no resets seen on this path).
    public func workBudgetBytes(ageSeconds: Double) -> Int? {
        guard let life = typicalLifetimeSeconds else { return nil }
        let left = life * Self.safetyFraction - ageSeconds
        return left > 0 ? Int(left * throughputBytesPerSecond) : 0
    }

    /// Whether to open the next connection now, so it is ready when this one retires.
    public func shouldOpenSuccessor(ageSeconds: Double) -> Bool {
        guard let life = typicalLifetimeSeconds else { return false }
        return ageSeconds >= life * Self.successorFraction
    }
}
