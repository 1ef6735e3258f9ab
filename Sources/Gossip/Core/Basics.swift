/// A point on a monotonic clock, in nanoseconds from an arbitrary origin chosen by the
/// shell (libuv's `uv_hrtime`, or the simulator's virtual clock). The protocol core
/// never reads a clock: every input carries `now`.
public struct Instant: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var nanoseconds: Int64

    public init(nanoseconds: Int64) { self.nanoseconds = nanoseconds }
    public static func milliseconds(_ ms: Int64) -> Instant { Instant(nanoseconds: ms &* 1_000_000) }

    public static let zero = Instant(nanoseconds: 0)
    /// A time later than any real deadline; used for "never".
    public static let distantFuture = Instant(nanoseconds: .max / 2)

    public var milliseconds: Int64 { nanoseconds / 1_000_000 }

    public func advanced(byMs ms: Int64) -> Instant { Instant(nanoseconds: nanoseconds &+ ms &* 1_000_000) }
    public func advanced(byNanoseconds ns: Int64) -> Instant { Instant(nanoseconds: nanoseconds &+ ns) }

    /// Adds a `Swift.Duration` (whole nanoseconds; sub-nanosecond parts are dropped).
    public static func + (lhs: Instant, rhs: Swift.Duration) -> Instant {
        let (s, atto) = rhs.components
        return Instant(nanoseconds: lhs.nanoseconds &+ s &* 1_000_000_000 &+ atto / 1_000_000_000)
    }

    /// The elapsed time from `rhs` to `lhs`, in nanoseconds (negative if `lhs` is earlier).
    public static func - (lhs: Instant, rhs: Instant) -> Int64 { lhs.nanoseconds &- rhs.nanoseconds }

    public static func < (a: Instant, b: Instant) -> Bool { a.nanoseconds < b.nanoseconds }

    public var description: String { "\(Double(nanoseconds) / 1e9)s" }
}

/// Where a peer listens: a host (name, IPv4 or IPv6 literal) and a port.
/// Printed and parsed as `HOST:PORT`, with IPv6 literals in brackets: `[::1]:7946`.
public struct PeerAddress: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// Longest accepted host, in UTF-8 bytes (a DNS name is at most 253).
    public static let maxHostBytes = 253
    /// Longest printed form: host, brackets, colon, five digits.
    public static let maxTextBytes = maxHostBytes + 8

    public var host: String
    public var port: UInt16

    public init(host: String, port: UInt16) {
        self.host = host
        self.port = port
    }

    /// Parses `HOST:PORT` or `[IPV6]:PORT`; nil on anything else (empty host, bad port,
    /// unbracketed IPv6, over-long host).
    public init?(_ text: String) {
        let u = Array(text.utf8)
        guard u.count <= Self.maxTextBytes, let colon = u.lastIndex(of: UInt8(ascii: ":")) else { return nil }
        var hostBytes = Array(u[..<colon])
        let portBytes = u[(colon + 1)...]
        guard !portBytes.isEmpty, portBytes.count <= 5, portBytes.allSatisfy({ $0 >= 48 && $0 <= 57 }),
              let p = UInt16(String(decoding: portBytes, as: UTF8.self)) else { return nil }
        if hostBytes.first == UInt8(ascii: "[") {
            guard hostBytes.count > 2, hostBytes.last == UInt8(ascii: "]") else { return nil }
            hostBytes = Array(hostBytes[1..<(hostBytes.count - 1)])
            guard hostBytes.contains(UInt8(ascii: ":")) else { return nil }
        } else if hostBytes.contains(UInt8(ascii: ":")) || hostBytes.contains(UInt8(ascii: "]")) {
            return nil
        }
        guard !hostBytes.isEmpty, hostBytes.count <= Self.maxHostBytes,
              !hostBytes.contains(where: { $0 <= 32 || $0 == 127 }) else { return nil }
        host = String(decoding: hostBytes, as: UTF8.self)
        port = p
    }

    public var description: String {
        host.utf8.contains(UInt8(ascii: ":")) ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    public static func < (a: PeerAddress, b: PeerAddress) -> Bool { (a.host, a.port) < (b.host, b.port) }
}

/// A small, fast, seedable generator (SplitMix64). The shell seeds it (from the OS in
/// the node, from the run seed in the simulator); the protocol never uses global randomness.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    public var state: UInt64
    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in `0..<n` (n > 0), by Lemire's multiply-shift (bias < n/2^64, irrelevant here).
    public mutating func below(_ n: Int) -> Int {
        precondition(n > 0)
        return Int(next().multipliedFullWidth(by: UInt64(n)).high)
    }

    /// Uniform in [0, 1).
    public mutating func unit() -> Double { Double(next() >> 11) * 0x1p-53 }

    /// A stateless 64-bit mix, used for bucket hashes and tree placement.
    @inline(__always)
    public static func mix(_ x: UInt64) -> UInt64 {
        var z = x &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Decides who may join: given a node id and the opaque credential it presents in its
/// `alive` announcements (≤ 256 bytes, possibly empty), admit it or say why not.
///
/// The node builds it from `AdmissionPolicy` (`trusted_keys`, certificates signed by an
/// `authority_keys` entry, revocations; docs/PROTOCOL.md §10). The closure must be pure and
/// cheap enough to run once per new member (results are not cached here). A refusal is
/// counted and reported under its reason (`RejectReason(refusal)`).
public struct TrustPolicy: Sendable {
    /// nil: admitted; otherwise why not.
    public let refusal: @Sendable (NodeID, [UInt8]) -> AdmissionPolicy.Rejection?

    public init(refusal: @escaping @Sendable (NodeID, [UInt8]) -> AdmissionPolicy.Rejection?) { self.refusal = refusal }

    /// A yes/no policy; a "no" is reported as `untrustedKey`.
    public init(_ admits: @escaping @Sendable (NodeID, [UInt8]) -> Bool) {
        refusal = { id, credential in admits(id, credential) ? nil : .untrusted }
    }

    public func admits(_ node: NodeID, _ credential: [UInt8]) -> Bool { refusal(node, credential) == nil }

    /// Admits everyone: only for tests and the simulator's honest-cluster runs.
    public static let allowAll = TrustPolicy { _, _ in true }

    /// Admits exactly these node ids, whatever credential they show.
    public static func keys(_ ids: Set<NodeID>) -> TrustPolicy { TrustPolicy { id, _ in ids.contains(id) } }
}
