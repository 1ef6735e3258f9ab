/// One fact in the replicated manifest, as signed by its origin: a version of a name
/// (`put`), a deletion (`tombstone`), a compaction of the origin's own log, a holder record
/// (`holding`), the origin's node facts (`nodeFacts`), or a kind this code does not know yet.
///
/// The entry is small so that it fits a datagram and replicates by gossip. A put does not
/// carry the chunk list: the chunk list (the "recipe") travels with the blob and is
/// verified against `contentID`, which is a hash over it.
///
/// `(origin, sequence)` is unique per origin: the origin numbers its entries 1, 2, 3, …
/// with no gaps, whatever their kind. Two different entries with the same pair are a fork
/// (evidence of a misbehaving or cloned key). Entries of one name are ordered by
/// `orderKey` = (hybrid logical clock, origin, sequence), the same on every node.
///
/// Two encodings exist (docs/PROTOCOL.md §4): version 1 (puts only, no clock; still
/// accepted and relayed byte for byte) and version 2, which this node writes. Kinds a
/// version-2 decoder does not know are kept and relayed verbatim (`Payload.unknown`), so
/// new kinds never break replication with older nodes.
public struct ManifestEntry: Hashable, Sendable {
    /// The encoding this node writes.
    public static let currentFormat: UInt8 = 2
    /// The longest name, in UTF-8 bytes.
    public static let maxNameBytes = 255
    /// The longest version-2 body, in bytes.
    public static let maxBodyBytes = 4096
    /// The chunk sizes a receiver accepts (docs/PROTOCOL.md §3): 4 KiB … 64 MiB. The one place
    /// these bounds live: the Store's `Chunking` (and so `meshnode init --chunk-size`) uses them.
    public static let minChunkSizeBytes: UInt32 = 4 * 1024
    public static let maxChunkSizeBytes: UInt32 = 64 * 1024 * 1024
    public static let chunkSizeRange: ClosedRange<UInt32> = minChunkSizeBytes...maxChunkSizeBytes

    /// Whether `chunkSizeBytes` is one a receiver accepts.
    public static func acceptsChunkSize(_ chunkSizeBytes: UInt32) -> Bool { chunkSizeRange.contains(chunkSizeBytes) }

    /// What `decode` checks beyond the byte layout, for an entry that did not come through it
    /// (e.g. built in memory): nil when the entry is one a receiver accepts, else the field.
    public var invalidField: String? {
        if sequence == 0 { return "entry.sequence" }
        if name.utf8.count > Self.maxNameBytes { return "entry.name" }
        if let p = put, !Self.acceptsChunkSize(p.chunkSizeBytes) { return "entry.chunkSize" }
        if format >= 2, put != nil || tombstone != nil, name.isEmpty { return "entry.name" }
        if let c = compaction { return c.invalidField(sequence: sequence, origin: origin) }
        if let h = holding { return h.invalidField }
        if let f = nodeFacts { return f.invalidField }
        return nil
    }

    /// What the entry says. The raw value is the `kind` byte on the wire.
    public enum Kind: UInt8, Sendable {
        case put = 1
        case tombstone = 2
        case compaction = 3
        case holding = 4
        case nodeFacts = 5
    }

    /// A version of a name: this content, under this name.
    public struct Put: Hashable, Sendable {
        public var contentID: ContentID
        public var sizeBytes: UInt64
        public var chunkSizeBytes: UInt32
        public var type: ItemType
        /// Bit 0: broadcast (every eligible node is a target, docs/SYNC.md "Broadcast"); other bits must be 0.
        public var flags: UInt8
        /// Milliseconds since the Unix epoch, by the origin's wall clock (informational).
        public var createdAtMs: Int64
        /// When the version expires by retention (ms since the epoch), or 0 for never.
        public var expiresAtMs: Int64
        public var name: String

        public static let broadcastFlag: UInt8 = 1

        public init(contentID: ContentID, sizeBytes: UInt64, chunkSizeBytes: UInt32, type: ItemType, flags: UInt8 = 0,
                    createdAtMs: Int64, expiresAtMs: Int64 = 0, name: String) {
            self.contentID = contentID
            self.sizeBytes = sizeBytes
            self.chunkSizeBytes = chunkSizeBytes
            self.type = type
            self.flags = flags
            self.createdAtMs = createdAtMs
            self.expiresAtMs = expiresAtMs
            self.name = name
        }
    }

    /// A deletion: every version of `name` ordered before this tombstone, or one version.
    public struct Tombstone: Hashable, Sendable {
        public enum Scope: Hashable, Sendable {
            /// Every version of the name whose order key is below the tombstone's.
            case name
            /// Exactly the put at this (origin, sequence), whatever its order.
            case version(EntryRef)
        }
        public var scope: Scope
        public var name: String
        /// Milliseconds since the Unix epoch, by the origin's wall clock (informational).
        public var createdAtMs: Int64

        public init(scope: Scope, name: String, createdAtMs: Int64) {
            self.scope = scope
            self.name = name
            self.createdAtMs = createdAtMs
        }
    }

    /// Log compaction (docs/PROTOCOL.md §4.5): sequences of the origin's own log that are void
    /// (deleted puts and tombstones past the compaction horizon, superseded compaction entries).
    /// Cumulative: the origin's latest compaction entry restates everything compacted so far.
    public struct Compaction: Hashable, Sendable {
        public static let maxRanges = 64
        public static let maxDependencies = 72
        /// Ascending, disjoint, each within 1 ..< the entry's own sequence.
        public var ranges: [ClosedRange<UInt64>]
        /// Tombstones in `ranges` stop counting only once the receiver holds each of these
        /// origins' logs up to the sequence given (their own compactions of the puts those
        /// tombstones deleted), so that a lagging relay can never bring a deleted put back.
        public var dependencies: [EntryRef]

        public init(ranges: [ClosedRange<UInt64>], dependencies: [EntryRef] = []) {
            self.ranges = ranges
            self.dependencies = dependencies
        }

        public func contains(_ sequence: UInt64) -> Bool {
            var lo = 0, hi = ranges.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if ranges[mid].upperBound < sequence { lo = mid + 1 } else { hi = mid }
            }
            return lo < ranges.count && ranges[lo].contains(sequence)
        }

        /// The rule of docs/PROTOCOL.md §4.5 this compaction breaks (as the entry at `sequence` of
        /// `origin`), or nil. The decoder enforces the same rules.
        public func invalidField(sequence: UInt64, origin: NodeID) -> String? {
            if ranges.count > Self.maxRanges { return "compaction.ranges" }
            if dependencies.count > Self.maxDependencies { return "compaction.dependencies" }
            var last: UInt64 = 0
            for r in ranges {
                guard r.lowerBound > last, r.upperBound < sequence else { return "compaction.range" }
                last = r.upperBound
            }
            for d in dependencies where d.sequence == 0 || d.origin == origin { return "compaction.dependency" }
            return nil
        }

        /// The sequences compacted (for tests and status).
        public var count: UInt64 { ranges.reduce(0) { $0 + ($1.upperBound - $1.lowerBound + 1) } }
    }

    public enum Payload: Hashable, Sendable {
        case put(Put)
        case tombstone(Tombstone)
        case compaction(Compaction)
        /// Contents the origin holds complete, or dropped (docs/PROTOCOL.md §4.6).
        case holding(Holding)
        /// What the origin says about itself: roles, disk, ephemeral, NFS group (§4.7).
        case nodeFacts(NodeFacts)
        /// A version-2 kind this code does not know: kept and relayed, never interpreted.
        case unknown(kind: UInt8, body: [UInt8])
    }

    /// The encoding the entry was made in (1 or 2); re-encoding reproduces it byte for byte.
    public var format: UInt8
    public var origin: NodeID
    public var sequence: UInt64
    /// Hybrid logical clock: ms since the Unix epoch << 16 | a counter. For version-1
    /// entries, derived from `created_ms` (they carry no clock).
    public var hlc: UInt64
    public var payload: Payload
    public var signature: Signature

    public init(format: UInt8 = ManifestEntry.currentFormat, origin: NodeID, sequence: UInt64, hlc: UInt64,
                payload: Payload, signature: Signature = .zero) {
        self.format = format
        self.origin = origin
        self.sequence = sequence
        self.hlc = hlc
        self.payload = payload
        self.signature = signature
    }

    /// A put (version 2 unless `format` says 1, in which case `hlc` is derived from `createdAtMs`).
    public init(format: UInt8 = ManifestEntry.currentFormat, origin: NodeID, sequence: UInt64, hlc: UInt64? = nil,
                contentID: ContentID, sizeBytes: UInt64, chunkSizeBytes: UInt32, type: ItemType, flags: UInt8 = 0,
                createdAtMs: Int64, expiresAtMs: Int64 = 0, name: String, signature: Signature = .zero) {
        let put = Put(contentID: contentID, sizeBytes: sizeBytes, chunkSizeBytes: chunkSizeBytes, type: type, flags: flags,
                      createdAtMs: createdAtMs, expiresAtMs: expiresAtMs, name: name)
        self.init(format: format, origin: origin, sequence: sequence,
                  hlc: format == 1 ? HybridLogicalClock.fromWallClock(ms: createdAtMs) : (hlc ?? HybridLogicalClock.fromWallClock(ms: createdAtMs)),
                  payload: .put(put), signature: signature)
    }

    // MARK: - Views

    /// The kind byte on the wire.
    public var kindCode: UInt8 {
        switch payload {
        case .put: Kind.put.rawValue
        case .tombstone: Kind.tombstone.rawValue
        case .compaction: Kind.compaction.rawValue
        case .holding: Kind.holding.rawValue
        case .nodeFacts: Kind.nodeFacts.rawValue
        case .unknown(let k, _): k
        }
    }

    /// The known kind, or nil for a kind this code does not interpret.
    public var kind: Kind? { Kind(rawValue: kindCode) }

    public var put: Put? { if case .put(let p) = payload { p } else { nil } }
    /// A put with the broadcast flag: every eligible node is a target (docs/SYNC.md, "Broadcast").
    public var isBroadcast: Bool { (put?.flags ?? 0) & Put.broadcastFlag != 0 }
    public var tombstone: Tombstone? { if case .tombstone(let t) = payload { t } else { nil } }
    public var compaction: Compaction? { if case .compaction(let c) = payload { c } else { nil } }
    public var holding: Holding? { if case .holding(let h) = payload { h } else { nil } }
    public var nodeFacts: NodeFacts? { if case .nodeFacts(let f) = payload { f } else { nil } }

    public var ref: EntryRef { EntryRef(origin: origin, sequence: sequence) }

    /// The name the entry is about (puts and tombstones), or "" for unknown kinds.
    public var name: String {
        get {
            switch payload {
            case .put(let p): p.name
            case .tombstone(let t): t.name
            case .compaction, .holding, .nodeFacts, .unknown: ""
            }
        }
        set {
            switch payload {
            case .put(var p): p.name = newValue; payload = .put(p)
            case .tombstone(var t): t.name = newValue; payload = .tombstone(t)
            case .compaction, .holding, .nodeFacts, .unknown: break
            }
        }
    }

    /// The total order of entries about one name: clock, then origin bytes, then sequence.
    public var orderKey: OrderKey { OrderKey(hlc: hlc, origin: origin, sequence: sequence) }

    // Convenience accessors for puts. A non-put has a zero content id and size; callers
    // that may see other kinds check `put` first.
    // Setting one on a non-put changes nothing.
    public var contentID: ContentID {
        get { put?.contentID ?? ContentID(digest: .zero) }
        set { if case .put(var p) = payload { p.contentID = newValue; payload = .put(p) } }
    }
    public var sizeBytes: UInt64 {
        get { put?.sizeBytes ?? 0 }
        set { if case .put(var p) = payload { p.sizeBytes = newValue; payload = .put(p) } }
    }
    public var chunkSizeBytes: UInt32 {
        get { put?.chunkSizeBytes ?? 0 }
        set { if case .put(var p) = payload { p.chunkSizeBytes = newValue; payload = .put(p) } }
    }
    public var type: ItemType { put?.type ?? .other }
    public var createdAtMs: Int64 {
        switch payload {
        case .put(let p): p.createdAtMs
        case .tombstone(let t): t.createdAtMs
        case .compaction, .holding, .nodeFacts, .unknown: Int64(hlc >> 16)
        }
    }

    /// The number of chunks a put has: ceil(size / chunkSize).
    public var chunkCount: Int {
        guard let p = put, p.chunkSizeBytes > 0 else { return 0 }
        return Int((p.sizeBytes + UInt64(p.chunkSizeBytes) - 1) / UInt64(p.chunkSizeBytes))
    }

    // MARK: - Encoding

    static func signingDomain(format: UInt8) -> [UInt8] {
        format == 1 ? SigningDomain.manifestEntry : SigningDomain.manifestEntryV2
    }

    /// Everything but the signature, in wire order.
    public func encodeBody(into w: inout ByteWriter) {
        if format == 1 {
            // Version 1: puts only (the constructor and decoder guarantee it).
            let p = put!
            w.u8(1)
            w.u8(Kind.put.rawValue)
            w.bytes32(origin.key)
            w.u64(sequence)
            w.bytes32(p.contentID.digest)
            w.u64(p.sizeBytes)
            w.u32(p.chunkSizeBytes)
            w.u8(p.type.rawValue)
            w.i64(p.createdAtMs)
            w.string16(p.name)
            return
        }
        w.u8(format)
        w.u8(kindCode)
        w.bytes32(origin.key)
        w.u64(sequence)
        w.u64(hlc)
        var b = ByteWriter(capacity: 320)
        switch payload {
        case .put(let p):
            b.bytes32(p.contentID.digest)
            b.u64(p.sizeBytes)
            b.u32(p.chunkSizeBytes)
            b.u8(p.type.rawValue)
            b.u8(p.flags)
            b.i64(p.createdAtMs)
            b.i64(p.expiresAtMs)
            b.string16(p.name)
        case .tombstone(let t):
            switch t.scope {
            case .name:
                b.u8(1)
            case .version(let r):
                b.u8(2)
                b.bytes32(r.origin.key)
                b.u64(r.sequence)
            }
            b.i64(t.createdAtMs)
            b.string16(t.name)
        case .compaction(let c):
            b.u16(UInt16(c.ranges.count))
            for r in c.ranges { b.u64(r.lowerBound); b.u64(r.upperBound) }
            b.u16(UInt16(c.dependencies.count))
            for d in c.dependencies { b.bytes32(d.origin.key); b.u64(d.sequence) }
        case .holding(let h):
            h.encode(into: &b)
        case .nodeFacts(let f):
            f.encode(into: &b)
        case .unknown(_, let body):
            b.raw(body)
        }
        w.blob16(b.bytes)
    }

    /// The bytes the origin signs: the domain prefix of the entry's format, then the body.
    public var signedBytes: [UInt8] {
        var w = ByteWriter(capacity: 384)
        w.raw(Self.signingDomain(format: format))
        encodeBody(into: &w)
        return w.bytes
    }

    /// Body then the 64-byte signature.
    public func encode(into w: inout ByteWriter) {
        encodeBody(into: &w)
        w.raw(signature.bytes)
    }

    public var encoded: [UInt8] {
        var w = ByteWriter(capacity: 400)
        encode(into: &w)
        return w.bytes
    }

    // MARK: - Decoding

    /// Decodes one entry from the reader's position. Checks shape only (every length,
    /// range and enum); call `verify(with:)` before trusting it.
    public static func decode(from r: inout ByteReader) throws(DecodeError) -> ManifestEntry {
        let version = try r.u8()
        switch version {
        case 1: return try decodeV1(from: &r)
        case 2: return try decodeV2(from: &r)
        default: throw .unsupportedVersion(version)
        }
    }

    static func decodeV1(from r: inout ByteReader) throws(DecodeError) -> ManifestEntry {
        guard try r.u8() == Kind.put.rawValue else { throw .invalid(field: "entry.kind") }
        let origin = NodeID(key: try r.bytes32())
        let sequence = try r.u64()
        guard sequence > 0 else { throw .invalid(field: "entry.sequence") }
        let contentID = ContentID(digest: try r.bytes32())
        let size = try r.u64()
        let chunkSize = try r.u32()
        guard chunkSizeRange.contains(chunkSize) else { throw .invalid(field: "entry.chunkSize") }
        guard let type = ItemType(rawValue: try r.u8()) else { throw .invalid(field: "entry.type") }
        let created = try r.i64()
        let name = try r.string16(field: "entry.name", limit: maxNameBytes)
        guard let sig = Signature(bytes: try r.raw(64)) else { throw .invalid(field: "entry.signature") }
        return ManifestEntry(format: 1, origin: origin, sequence: sequence, contentID: contentID, sizeBytes: size,
                             chunkSizeBytes: chunkSize, type: type, createdAtMs: created, name: name, signature: sig)
    }

    static func decodeV2(from r: inout ByteReader) throws(DecodeError) -> ManifestEntry {
        let kind = try r.u8()
        guard kind != 0 else { throw .invalid(field: "entry.kind") }
        let origin = NodeID(key: try r.bytes32())
        let sequence = try r.u64()
        guard sequence > 0 else { throw .invalid(field: "entry.sequence") }
        let hlc = try r.u64()
        let body = try r.blob16(field: "entry.body", limit: maxBodyBytes)
        guard let sig = Signature(bytes: try r.raw(64)) else { throw .invalid(field: "entry.signature") }
        var b = ByteReader(body)
        let payload: Payload
        switch Kind(rawValue: kind) {
        case .put:
            let contentID = ContentID(digest: try b.bytes32())
            let size = try b.u64()
            let chunkSize = try b.u32()
            guard chunkSizeRange.contains(chunkSize) else { throw .invalid(field: "entry.chunkSize") }
            guard let type = ItemType(rawValue: try b.u8()) else { throw .invalid(field: "entry.type") }
            let flags = try b.u8()
            guard flags & ~Put.broadcastFlag == 0 else { throw .invalid(field: "entry.flags") }
            let created = try b.i64()
            let expires = try b.i64()
            guard expires >= 0 else { throw .invalid(field: "entry.expires") }
            let name = try b.string16(field: "entry.name", limit: maxNameBytes)
            guard !name.isEmpty else { throw .invalid(field: "entry.name") }
            payload = .put(Put(contentID: contentID, sizeBytes: size, chunkSizeBytes: chunkSize, type: type, flags: flags,
                               createdAtMs: created, expiresAtMs: expires, name: name))
        case .tombstone:
            let scope: Tombstone.Scope
            switch try b.u8() {
            case 1: scope = .name
            case 2:
                let o = NodeID(key: try b.bytes32())
                let s = try b.u64()
                guard s > 0 else { throw .invalid(field: "tombstone.sequence") }
                scope = .version(EntryRef(origin: o, sequence: s))
            default: throw .invalid(field: "tombstone.scope")
            }
            let created = try b.i64()
            let name = try b.string16(field: "tombstone.name", limit: maxNameBytes)
            guard !name.isEmpty else { throw .invalid(field: "tombstone.name") }
            payload = .tombstone(Tombstone(scope: scope, name: name, createdAtMs: created))
        case .compaction:
            let n = Int(try b.u16())
            guard n <= Compaction.maxRanges else { throw .tooLong(field: "compaction.ranges", length: n, limit: Compaction.maxRanges) }
            var ranges = [ClosedRange<UInt64>]()
            var last: UInt64 = 0
            for _ in 0..<n {
                let lo = try b.u64(), hi = try b.u64()
                guard lo > last, lo <= hi, hi < sequence else { throw .invalid(field: "compaction.range") }
                ranges.append(lo...hi)
                last = hi
            }
            let m = Int(try b.u16())
            guard m <= Compaction.maxDependencies else {
                throw .tooLong(field: "compaction.dependencies", length: m, limit: Compaction.maxDependencies)
            }
            var deps = [EntryRef]()
            for _ in 0..<m {
                let o = NodeID(key: try b.bytes32())
                let s = try b.u64()
                guard s > 0, o != origin else { throw .invalid(field: "compaction.dependency") }
                deps.append(EntryRef(origin: o, sequence: s))
            }
            payload = .compaction(Compaction(ranges: ranges, dependencies: deps))
        case .holding:
            payload = .holding(try Holding.decode(from: &b))
        case .nodeFacts:
            payload = .nodeFacts(try NodeFacts.decode(from: &b))
        case nil:
            payload = .unknown(kind: kind, body: body)
        }
        if case .unknown = payload {} else { try b.expectEnd() }
        return ManifestEntry(format: 2, origin: origin, sequence: sequence, hlc: hlc, payload: payload, signature: sig)
    }

    public static func decode(_ bytes: [UInt8]) throws(DecodeError) -> ManifestEntry {
        var r = ByteReader(bytes)
        let e = try decode(from: &r)
        try r.expectEnd()
        return e
    }

    // MARK: - Signing

    /// Returns the entry with its signature filled in by `signer` (who must be its origin).
    public func signed(by signer: any Signer) -> ManifestEntry {
        precondition(signer.nodeID == origin, "only the origin signs its entries")
        var e = self
        e.signature = signer.sign(signedBytes)
        return e
    }

    public func verify(with verifier: any SignatureVerifier) -> Bool {
        verifier.verify(signature, of: signedBytes, by: origin)
    }
}

/// The total order of entries about one name (docs/PROTOCOL.md §4.3): hybrid logical clock,
/// then the origin's 32 bytes, then the sequence. No two distinct entries compare equal.
public struct OrderKey: Hashable, Comparable, Sendable {
    public var hlc: UInt64
    public var origin: NodeID
    public var sequence: UInt64

    public init(hlc: UInt64, origin: NodeID, sequence: UInt64) {
        self.hlc = hlc
        self.origin = origin
        self.sequence = sequence
    }

    public static func < (a: OrderKey, b: OrderKey) -> Bool {
        if a.hlc != b.hlc { return a.hlc < b.hlc }
        if a.origin != b.origin { return a.origin < b.origin }
        return a.sequence < b.sequence
    }
}
