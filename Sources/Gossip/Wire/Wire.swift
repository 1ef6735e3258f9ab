extension SigningDomain {
    /// Gossip envelopes (datagrams and stream frames), docs/PROTOCOL.md §5.
    public static let gossipMessage = Array("meshnode/gossip/v1\0".utf8)
}

/// A member's state as seen by one node.
public enum MemberState: UInt8, Sendable, CustomStringConvertible, CaseIterable {
    case alive = 1
    case suspect = 2
    case dead = 3
    case left = 4

    public var description: String {
        switch self {
        case .alive: "alive"
        case .suspect: "suspect"
        case .dead: "dead"
        case .left: "left"
        }
    }
}

/// One membership update as gossiped (piggybacked, or in a full member list).
public struct MemberUpdate: Hashable, Sendable {
    public static let maxNameBytes = 64
    public static let maxRoleBytes = 32
    public static let maxCredentialBytes = 256

    public var state: MemberState
    public var node: NodeID
    public var incarnation: UInt64
    // `alive` only:
    public var address: PeerAddress?
    public var streamOnly: Bool = false
    public var name: String = ""
    public var role: String = ""
    public var credential: [UInt8] = []
    // `suspect` and `dead` only: who accused.
    public var accuser: NodeID?

    public init(state: MemberState, node: NodeID, incarnation: UInt64, address: PeerAddress? = nil,
                streamOnly: Bool = false, name: String = "", role: String = "", credential: [UInt8] = [],
                accuser: NodeID? = nil) {
        self.state = state
        self.node = node
        self.incarnation = incarnation
        self.address = address
        self.streamOnly = streamOnly
        self.name = name
        self.role = role
        self.credential = credential
        self.accuser = accuser
    }

    func encode(into w: inout ByteWriter) {
        w.u8(state.rawValue)
        w.bytes32(node.key)
        w.u64(incarnation)
        switch state {
        case .alive:
            w.string16(address?.description ?? "")
            w.u8(streamOnly ? 1 : 0)
            w.string16(name)
            w.string16(role)
            w.blob16(credential)
        case .suspect, .dead:
            w.bytes32((accuser ?? node).key)
        case .left:
            break
        }
    }

    var encodedSize: Int {
        switch state {
        case .alive: 41 + 2 + (address?.description.utf8.count ?? 0) + 1 + 2 + name.utf8.count + 2 + role.utf8.count + 2 + credential.count
        case .suspect, .dead: 41 + 32
        case .left: 41
        }
    }

    static func decode(from r: inout ByteReader) throws(DecodeError) -> MemberUpdate {
        guard let state = MemberState(rawValue: try r.u8()) else { throw .invalid(field: "update.state") }
        let node = NodeID(key: try r.bytes32())
        let inc = try r.u64()
        var u = MemberUpdate(state: state, node: node, incarnation: inc)
        switch state {
        case .alive:
            let a = try r.string16(field: "update.address", limit: PeerAddress.maxTextBytes)
            guard let addr = PeerAddress(a) else { throw .invalid(field: "update.address") }
            u.address = addr
            let flags = try r.u8()
            guard flags & ~1 == 0 else { throw .invalid(field: "update.flags") }
            u.streamOnly = flags & 1 != 0
            u.name = try r.string16(field: "update.name", limit: maxNameBytes)
            u.role = try r.string16(field: "update.role", limit: maxRoleBytes)
            u.credential = try r.blob16(field: "update.credential", limit: maxCredentialBytes)
        case .suspect, .dead:
            u.accuser = NodeID(key: try r.bytes32())
        case .left:
            break
        }
        return u
    }
}

/// "I hold entry `sequence` of `origin`": the lazy advertisement of the HYBRID layer.
public struct EntryRef: Hashable, Sendable {
    public var origin: NodeID
    public var sequence: UInt64
    public init(origin: NodeID, sequence: UInt64) {
        self.origin = origin
        self.sequence = sequence
    }
}

/// A request for the entries `fromSequence...toSequence` of `origin`.
public struct PullRange: Hashable, Sendable {
    public var origin: NodeID
    public var fromSequence: UInt64
    public var toSequence: UInt64
}

/// The anti-entropy digest: folded bucket hashes of the per-origin contiguous-sequence
/// vector, plus a hash of the membership view.
public struct Digest: Hashable, Sendable {
    /// log2 of the number of buckets (0...7).
    public var bucketsLog2: UInt8
    public var bucketHashes: [UInt64]
    public var originCount: UInt32
    public var memberHash: UInt64
    public var memberCount: UInt32
}

/// Exact `(origin, max contiguous sequence)` pairs for some buckets.
public struct VectorMessage: Hashable, Sendable {
    public var wantReply: Bool
    public var bucketsLog2: UInt8
    public var buckets: [UInt16]
    public var pairs: [EntryRef]
}

/// The body of a gossip envelope.
public enum Message: Hashable, Sendable {
    /// Direct probe of `target`.
    case ping(seq: UInt32, target: NodeID, updates: [MemberUpdate], adverts: [EntryRef])
    /// Answer to a ping (or, from an intermediary, to a ping-req).
    case ack(seq: UInt32, updates: [MemberUpdate], adverts: [EntryRef])
    /// "Probe `target` at `address` for me."
    case pingReq(seq: UInt32, target: NodeID, address: PeerAddress, updates: [MemberUpdate])
    /// Lifeguard: the intermediary did not hear from the target in time.
    case nack(seq: UInt32)
    /// "Admit me": the sender's own `alive` record is among `updates`.
    case join(updates: [MemberUpdate])
    /// A full member list (join answer, or push-pull when membership hashes differ).
    case memberSync(wantReply: Bool, updates: [MemberUpdate])
    /// Manifest entries. `treePush`: forward along the broadcast tree of each entry's origin.
    case entries(treePush: Bool, entries: [ManifestEntry])
    case digest(Digest)
    case vector(VectorMessage)
    case pull([PullRange])

    public var typeCode: UInt8 {
        switch self {
        case .ping: 1
        case .ack: 2
        case .pingReq: 3
        case .nack: 4
        case .join: 5
        case .memberSync: 6
        case .entries: 7
        case .digest: 8
        case .vector: 9
        case .pull: 10
        }
    }
}

/// The signed envelope around every datagram and stream frame.
///
/// ```
/// magic "MN" (0x4D 0x4E) | version u8 = 1 | type u8 | sender bytes32 | incarnation u64
/// | counter u64 | payload … | signature sig64
/// ```
/// The signature is Ed25519 by `sender` over `"meshnode/gossip/v1\0"` followed by every
/// byte of the envelope before the signature.
public struct Envelope: Hashable, Sendable {
    public static let magic: (UInt8, UInt8) = (0x4D, 0x4E)
    public static let version: UInt8 = 1
    /// Bytes before the payload.
    public static let headerBytes = 2 + 1 + 1 + 32 + 8 + 8
    /// Header plus signature: what every message costs beyond its payload.
    public static let overheadBytes = headerBytes + 64

    public var sender: NodeID
    public var incarnation: UInt64
    public var counter: UInt64
    public var message: Message

    public init(sender: NodeID, incarnation: UInt64, counter: UInt64, message: Message) {
        self.sender = sender
        self.incarnation = incarnation
        self.counter = counter
        self.message = message
    }

    /// Encodes and signs.
    public func encode(signer: any Signer) -> [UInt8] {
        var w = ByteWriter(capacity: 256)
        w.raw(SigningDomain.gossipMessage)
        w.u8(Self.magic.0); w.u8(Self.magic.1)
        w.u8(Self.version)
        w.u8(message.typeCode)
        w.bytes32(sender.key)
        w.u64(incarnation)
        w.u64(counter)
        Wire.encodePayload(message, into: &w)
        let sig = signer.sign(w.bytes)
        var out = Array(w.bytes.dropFirst(SigningDomain.gossipMessage.count))
        out.append(contentsOf: sig.bytes)
        return out
    }

    /// Decodes and checks the signature. Total over arbitrary bytes.
    public static func decode(_ bytes: [UInt8], verifier: any SignatureVerifier) -> Result<Envelope, WireError> {
        switch decodeUnverified(bytes) {
        case .failure(let e): return .failure(e)
        case .success(let env):
            return verifySignature(bytes, sender: env.sender, verifier: verifier) ? .success(env) : .failure(.badSignature)
        }
    }

    /// Decodes header and payload without checking the signature (decoding is cheap and
    /// total; verification is the expensive step, so a receiver may first drop what it
    /// would refuse anyway). Never act on the result before `verifySignature`.
    public static func decodeUnverified(_ bytes: [UInt8]) -> Result<Envelope, WireError> {
        guard bytes.count >= overheadBytes else { return .failure(.malformed("shorter than an envelope")) }
        guard bytes[0] == magic.0, bytes[1] == magic.1 else { return .failure(.malformed("bad magic")) }
        guard bytes[2] == version else { return .failure(.unsupportedVersion(bytes[2])) }
        var r = ByteReader(bytes, offset: 4)
        guard let sender = try? NodeID(key: r.bytes32()), let inc = try? r.u64(), let counter = try? r.u64() else {
            return .failure(.malformed("header"))
        }
        do {
            let m = try Wire.decodePayload(type: bytes[3], Array(bytes[headerBytes..<(bytes.count - 64)]))
            return .success(Envelope(sender: sender, incarnation: inc, counter: counter, message: m))
        } catch {
            return .failure(.malformed("\(error)"))
        }
    }

    /// Checks the trailing signature: Ed25519 by `sender` over the domain prefix and
    /// every byte before the signature.
    public static func verifySignature(_ bytes: [UInt8], sender: NodeID, verifier: any SignatureVerifier) -> Bool {
        guard bytes.count >= overheadBytes else { return false }
        let sigStart = bytes.count - 64
        guard let sig = Signature(bytes: Array(bytes[sigStart...])) else { return false }
        var signed = SigningDomain.gossipMessage
        signed.reserveCapacity(signed.count + sigStart)
        signed.append(contentsOf: bytes[0..<sigStart])
        return verifier.verify(sig, of: signed, by: sender)
    }
}

/// Why an envelope could not be decoded.
public enum WireError: Error, Hashable, Sendable {
    case malformed(String)
    case unsupportedVersion(UInt8)
    case badSignature
}

/// Payload codecs (docs/PROTOCOL.md §5.3).
public enum Wire {
    public static let maxUpdatesPerMessage = 4096
    public static let maxAdvertsPerMessage = 64
    public static let maxEntriesPerMessage = 4096
    public static let maxPullRanges = 256
    public static let maxVectorPairs = 8192
    public static let maxBucketsLog2: UInt8 = 7

    static func encodeUpdates(_ u: [MemberUpdate], into w: inout ByteWriter) {
        w.u16(UInt16(u.count))
        for x in u { x.encode(into: &w) }
    }

    static func decodeUpdates(from r: inout ByteReader) throws(DecodeError) -> [MemberUpdate] {
        let n = Int(try r.u16())
        guard n <= maxUpdatesPerMessage else { throw .tooLong(field: "updates", length: n, limit: maxUpdatesPerMessage) }
        var out = [MemberUpdate]()
        out.reserveCapacity(min(n, 64))
        for _ in 0..<n { out.append(try MemberUpdate.decode(from: &r)) }
        return out
    }

    static func encodeAdverts(_ a: [EntryRef], into w: inout ByteWriter) {
        w.u8(UInt8(a.count))
        for x in a {
            w.bytes32(x.origin.key)
            w.u64(x.sequence)
        }
    }

    static func decodeAdverts(from r: inout ByteReader) throws(DecodeError) -> [EntryRef] {
        let n = Int(try r.u8())
        guard n <= maxAdvertsPerMessage else { throw .tooLong(field: "adverts", length: n, limit: maxAdvertsPerMessage) }
        var out = [EntryRef]()
        out.reserveCapacity(n)
        for _ in 0..<n {
            let o = NodeID(key: try r.bytes32())
            let s = try r.u64()
            guard s > 0 else { throw .invalid(field: "advert.sequence") }
            out.append(EntryRef(origin: o, sequence: s))
        }
        return out
    }

    public static func encodePayload(_ m: Message, into w: inout ByteWriter) {
        switch m {
        case let .ping(seq, target, updates, adverts):
            w.u32(seq); w.bytes32(target.key)
            encodeUpdates(updates, into: &w); encodeAdverts(adverts, into: &w)
        case let .ack(seq, updates, adverts):
            w.u32(seq)
            encodeUpdates(updates, into: &w); encodeAdverts(adverts, into: &w)
        case let .pingReq(seq, target, address, updates):
            w.u32(seq); w.bytes32(target.key); w.string16(address.description)
            encodeUpdates(updates, into: &w)
        case let .nack(seq):
            w.u32(seq)
        case let .join(updates):
            encodeUpdates(updates, into: &w)
        case let .memberSync(wantReply, updates):
            w.u8(wantReply ? 1 : 0)
            encodeUpdates(updates, into: &w)
        case let .entries(treePush, entries):
            w.u8(treePush ? 1 : 0)
            w.u16(UInt16(entries.count))
            for e in entries { e.encode(into: &w) }
        case let .digest(d):
            w.u8(d.bucketsLog2)
            for h in d.bucketHashes { w.u64(h) }
            w.u32(d.originCount)
            w.u64(d.memberHash)
            w.u32(d.memberCount)
        case let .vector(v):
            w.u8(v.wantReply ? 1 : 0)
            w.u8(v.bucketsLog2)
            w.u16(UInt16(v.buckets.count))
            for b in v.buckets { w.u16(b) }
            w.u32(UInt32(v.pairs.count))
            for p in v.pairs { w.bytes32(p.origin.key); w.u64(p.sequence) }
        case let .pull(ranges):
            w.u16(UInt16(ranges.count))
            for p in ranges { w.bytes32(p.origin.key); w.u64(p.fromSequence); w.u64(p.toSequence) }
        }
    }

    public static func decodePayload(type: UInt8, _ bytes: [UInt8]) throws(DecodeError) -> Message {
        var r = ByteReader(bytes)
        let m: Message
        switch type {
        case 1:
            let seq = try r.u32()
            let target = NodeID(key: try r.bytes32())
            m = .ping(seq: seq, target: target, updates: try decodeUpdates(from: &r), adverts: try decodeAdverts(from: &r))
        case 2:
            let seq = try r.u32()
            m = .ack(seq: seq, updates: try decodeUpdates(from: &r), adverts: try decodeAdverts(from: &r))
        case 3:
            let seq = try r.u32()
            let target = NodeID(key: try r.bytes32())
            guard let a = PeerAddress(try r.string16(field: "pingReq.address", limit: PeerAddress.maxTextBytes)) else {
                throw .invalid(field: "pingReq.address")
            }
            m = .pingReq(seq: seq, target: target, address: a, updates: try decodeUpdates(from: &r))
        case 4:
            m = .nack(seq: try r.u32())
        case 5:
            m = .join(updates: try decodeUpdates(from: &r))
        case 6:
            let f = try r.u8()
            guard f <= 1 else { throw .invalid(field: "memberSync.flags") }
            m = .memberSync(wantReply: f == 1, updates: try decodeUpdates(from: &r))
        case 7:
            let f = try r.u8()
            guard f <= 1 else { throw .invalid(field: "entries.flags") }
            let n = Int(try r.u16())
            guard n <= maxEntriesPerMessage else { throw .tooLong(field: "entries", length: n, limit: maxEntriesPerMessage) }
            var es = [ManifestEntry]()
            es.reserveCapacity(min(n, 64))
            for _ in 0..<n { es.append(try ManifestEntry.decode(from: &r)) }
            m = .entries(treePush: f == 1, entries: es)
        case 8:
            let bl = try r.u8()
            guard bl <= maxBucketsLog2 else { throw .invalid(field: "digest.bucketsLog2") }
            var hs = [UInt64]()
            hs.reserveCapacity(1 << bl)
            for _ in 0..<(1 << Int(bl)) { hs.append(try r.u64()) }
            let oc = try r.u32()
            let mh = try r.u64()
            let mc = try r.u32()
            m = .digest(Digest(bucketsLog2: bl, bucketHashes: hs, originCount: oc, memberHash: mh, memberCount: mc))
        case 9:
            let f = try r.u8()
            guard f <= 1 else { throw .invalid(field: "vector.flags") }
            let bl = try r.u8()
            guard bl <= maxBucketsLog2 else { throw .invalid(field: "vector.bucketsLog2") }
            let nb = Int(try r.u16())
            guard nb <= 1 << Int(bl) else { throw .tooLong(field: "vector.buckets", length: nb, limit: 1 << Int(bl)) }
            var bs = [UInt16]()
            for _ in 0..<nb {
                let b = try r.u16()
                guard Int(b) < 1 << Int(bl) else { throw .invalid(field: "vector.bucket") }
                bs.append(b)
            }
            let np = Int(try r.u32())
            guard np <= maxVectorPairs else { throw .tooLong(field: "vector.pairs", length: np, limit: maxVectorPairs) }
            var ps = [EntryRef]()
            ps.reserveCapacity(min(np, 256))
            for _ in 0..<np { ps.append(EntryRef(origin: NodeID(key: try r.bytes32()), sequence: try r.u64())) }
            m = .vector(VectorMessage(wantReply: f == 1, bucketsLog2: bl, buckets: bs, pairs: ps))
        case 10:
            let n = Int(try r.u16())
            guard n <= maxPullRanges else { throw .tooLong(field: "pull", length: n, limit: maxPullRanges) }
            var ps = [PullRange]()
            for _ in 0..<n {
                let o = NodeID(key: try r.bytes32())
                let a = try r.u64(), b = try r.u64()
                guard a >= 1, b >= a else { throw .invalid(field: "pull.range") }
                ps.append(PullRange(origin: o, fromSequence: a, toSequence: b))
            }
            m = .pull(ps)
        default:
            throw .invalid(field: "type")
        }
        try r.expectEnd()
        return m
    }
}
