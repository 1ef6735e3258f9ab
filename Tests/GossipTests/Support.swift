import Testing
@testable import Gossip

/// A fast fake signature for tests: a keyed hash under the signer's id (not secure;
/// it only models verification outcomes).
struct FakeSigner: Signer {
    let nodeID: NodeID
    func sign(_ message: [UInt8]) -> Signature { FakeCrypto.sign(message, key: nodeID.key) }
}

struct FakeVerifier: SignatureVerifier {
    func verify(_ signature: Signature, of message: [UInt8], by signer: NodeID) -> Bool {
        signature == FakeCrypto.sign(message, key: signer.key)
    }
}

enum FakeCrypto {
    static func sign(_ m: [UInt8], key: Bytes32) -> Signature {
        var h = key.w0 ^ key.w1 ^ UInt64(m.count)
        for b in m { h = SplitMix64.mix(h ^ UInt64(b)) }
        return Signature(r: Bytes32(w0: h, w1: key.w2, w2: 0, w3: 0), s: .zero)
    }
}

func nodeID(_ i: Int) -> NodeID {
    let a = SplitMix64.mix(UInt64(i) &+ 12345)
    return NodeID(key: Bytes32(w0: a, w1: SplitMix64.mix(a), w2: SplitMix64.mix(a ^ 7), w3: UInt64(i)))
}

func address(_ i: Int) -> PeerAddress { PeerAddress(host: "10.0.0.\(i)", port: 7946) }

func makeNode(_ i: Int, trust: TrustPolicy = .allowAll, config: GossipConfig = GossipConfig(),
              restore: GossipDurableState = GossipDurableState(), at addr: PeerAddress? = nil) -> GossipNode {
    var c = config
    c.name = "n\(i)"
    return GossipNode(config: c, signer: FakeSigner(nodeID: nodeID(i)), verifier: FakeVerifier(), trust: trust,
                      address: addr ?? address(i), seed: UInt64(i), restore: restore)
}

func entry(origin i: Int, seq: UInt64, name: String = "x.npz") -> ManifestEntry {
    ManifestEntry(origin: nodeID(i), sequence: seq, contentID: ContentID(digest: Bytes32(w0: UInt64(i), w1: seq, w2: 3, w3: 4)),
                  sizeBytes: 100, chunkSizeBytes: 4096, type: .npz, createdAtMs: 1, name: name).signed(by: FakeSigner(nodeID: nodeID(i)))
}

/// What a directive list contains, for readable expectations.
extension Array where Element == Directive {
    var sends: [(to: PeerAddress, bytes: [UInt8], via: Transport)] {
        compactMap { if case let .send(to, b, v) = $0 { (to, b, v) } else { nil } }
    }

    /// Decoded messages sent (with destination).
    var messages: [(to: PeerAddress, message: Message, via: Transport)] {
        sends.compactMap { s in
            guard case let .success(e) = Envelope.decode(s.bytes, verifier: FakeVerifier()) else { return nil }
            return (s.to, e.message, s.via)
        }
    }

    var rejections: [RejectReason] { compactMap { if case let .rejected(r, _) = $0 { r } else { nil } } }
    var transitions: [MemberTransition] { compactMap { if case let .membershipChanged(t) = $0 { t } else { nil } } }
    var persistedIncarnations: [UInt64] { compactMap { if case let .persistIncarnation(v) = $0 { v } else { nil } } }
    var persistedEntries: [ManifestEntry] { compactMap { if case let .persistEntry(e) = $0 { e } else { nil } } }
    var forks: [(ManifestEntry, ManifestEntry)] { compactMap { if case let .forkDetected(a, b) = $0 { (a, b) } else { nil } } }
    func timer(_ id: TimerID) -> Instant? {
        compactMap { if case let .setTimer(t, at) = $0, t == id { at } else { nil } }.last
    }
}

/// A tiny in-memory network for driving several nodes by hand: every send is queued
/// and delivered (in order) when `settle` runs, with a fixed latency.
struct Net {
    var nodes: [Int: GossipNode] = [:]
    var queue: [(from: Int, to: PeerAddress, bytes: [UInt8], via: Transport, at: Instant)] = []
    var timers: [Int: [TimerID: Instant]] = [:]
    var now = Instant.milliseconds(1000)
    var latencyMs: Int64 = 5
    var blocked: Set<Int> = []
    var log: [Int: [Directive]] = [:]
    /// Nodes that listen somewhere else than `address(i)` (e.g. restarted on a new address).
    var moved: [Int: PeerAddress] = [:]

    mutating func add(_ i: Int, _ n: GossipNode) { nodes[i] = n }

    /// Where node `i` listens now.
    func addressOf(_ i: Int) -> PeerAddress { moved[i] ?? address(i) }

    mutating func handle(_ i: Int, _ ds: [Directive]) {
        log[i, default: []] += ds
        for d in ds {
            switch d {
            case let .send(to, b, v): queue.append((i, to, b, v, now.advanced(byMs: latencyMs)))
            case let .setTimer(t, at): timers[i, default: [:]][t] = at
            case let .cancelTimer(t): timers[i]?[t] = nil
            default: break
            }
        }
    }

    func index(of a: PeerAddress) -> Int? { nodes.keys.first { addressOf($0) == a } }

    /// Delivers queued messages and fires due timers until `now + ms`.
    mutating func run(ms: Int64) {
        let end = now.advanced(byMs: ms)
        while true {
            let nextMsg = queue.indices.min { queue[$0].at < queue[$1].at }
            var nextTimer: (Int, TimerID, Instant)? = nil
            for (i, ts) in timers.sorted(by: { $0.key < $1.key }) {
                for (t, at) in ts.sorted(by: { $0.key.rawValue < $1.key.rawValue }) where nextTimer == nil || at < nextTimer!.2 { nextTimer = (i, t, at) }
            }
            let tm = nextMsg.map { queue[$0].at } ?? .distantFuture
            let tt = nextTimer?.2 ?? .distantFuture
            if min(tm, tt) > end { break }
            if tm <= tt, let k = nextMsg {
                let m = queue.remove(at: k)
                now = max(now, m.at)
                guard let j = index(of: m.to), !blocked.contains(j), !blocked.contains(m.from) else { continue }
                let src = addressOf(m.from)
                let ds = m.via == .datagram ? nodes[j]!.onDatagram(m.bytes, from: src, now: now) : nodes[j]!.onFrame(m.bytes, from: src, now: now)
                handle(j, ds)
            } else if let (i, t, at) = nextTimer {
                now = max(now, at)
                timers[i]![t] = nil
                if blocked.contains(i) { continue }
                handle(i, nodes[i]!.onTimer(t, now: now))
            }
        }
        now = end
    }

    /// Starts nodes 0..<n, all joining through node 0.
    static func cluster(_ n: Int, config: GossipConfig = GossipConfig()) -> Net {
        var net = Net()
        for i in 0..<n { net.add(i, makeNode(i, config: config)) }
        for i in 0..<n { net.handle(i, net.nodes[i]!.start(seeds: [address(0)], now: net.now)) }
        return net
    }
}
