/// One item in the replicated manifest, as signed by its origin.
///
/// The entry is small and fixed in shape so that it fits a datagram and replicates
/// by gossip. It does not carry the chunk list: the chunk list (the "recipe") travels
/// with the blob and is verified against `contentID`, which is a hash over it.
///
/// `(origin, sequence)` is unique per origin: the origin numbers its entries 1, 2, 3, …
/// with no gaps. Two different entries with the same pair are a fork (evidence of a
/// misbehaving or cloned key). The exact byte layout is in docs/PROTOCOL.md.
public struct ManifestEntry: Hashable, Sendable {
    public static let formatVersion: UInt8 = 1
    /// The longest name, in UTF-8 bytes.
    public static let maxNameBytes = 255
    /// The chunk sizes a receiver accepts (docs/PROTOCOL.md §3): 4 KiB … 64 MiB. The one place
    /// these bounds live: the Store's `Chunking` (and so `meshnode init --chunk-size`) uses them.
    public static let minChunkSizeBytes: UInt32 = 4 * 1024
    public static let maxChunkSizeBytes: UInt32 = 64 * 1024 * 1024

    /// Whether `chunkSizeBytes` is one a receiver accepts.
    public static func acceptsChunkSize(_ chunkSizeBytes: UInt32) -> Bool {
        chunkSizeBytes >= minChunkSizeBytes && chunkSizeBytes <= maxChunkSizeBytes
    }

    /// What `decode` checks beyond the byte layout, for an entry that did not come through it
    /// (e.g. built in memory): nil when the entry is one a receiver accepts, else the field.
    public var invalidField: String? {
        if sequence == 0 { return "entry.sequence" }
        if !Self.acceptsChunkSize(chunkSizeBytes) { return "entry.chunkSize" }
        if name.utf8.count > Self.maxNameBytes { return "entry.name" }
        return nil
    }

    /// What the entry says about the item. Only `put` exists today; `delete` is
    /// reserved for retention and archive tiers.
    public enum Kind: UInt8, Sendable { case put = 1 }

    public var kind: Kind
    public var origin: NodeID
    public var sequence: UInt64
    public var contentID: ContentID
    public var sizeBytes: UInt64
    public var chunkSizeBytes: UInt32
    public var type: ItemType
    /// Milliseconds since the Unix epoch, by the origin's wall clock (informational).
    public var createdAtMs: Int64
    public var name: String
    public var signature: Signature

    public init(kind: Kind = .put, origin: NodeID, sequence: UInt64, contentID: ContentID, sizeBytes: UInt64,
                chunkSizeBytes: UInt32, type: ItemType, createdAtMs: Int64, name: String, signature: Signature = .zero) {
        self.kind = kind
        self.origin = origin
        self.sequence = sequence
        self.contentID = contentID
        self.sizeBytes = sizeBytes
        self.chunkSizeBytes = chunkSizeBytes
        self.type = type
        self.createdAtMs = createdAtMs
        self.name = name
        self.signature = signature
    }

    /// The number of chunks the item has: ceil(size / chunkSize).
    public var chunkCount: Int {
        guard chunkSizeBytes > 0 else { return 0 }
        return Int((sizeBytes + UInt64(chunkSizeBytes) - 1) / UInt64(chunkSizeBytes))
    }

    /// Everything but the signature, in wire order.
    public func encodeBody(into w: inout ByteWriter) {
        w.u8(Self.formatVersion)
        w.u8(kind.rawValue)
        w.bytes32(origin.key)
        w.u64(sequence)
        w.bytes32(contentID.digest)
        w.u64(sizeBytes)
        w.u32(chunkSizeBytes)
        w.u8(type.rawValue)
        w.i64(createdAtMs)
        w.string16(name)
    }

    /// The bytes the origin signs: the domain prefix, then the body.
    public var signedBytes: [UInt8] {
        var w = ByteWriter(capacity: 160)
        w.raw(SigningDomain.manifestEntry)
        encodeBody(into: &w)
        return w.bytes
    }

    /// Body then the 64-byte signature.
    public func encode(into w: inout ByteWriter) {
        encodeBody(into: &w)
        w.raw(signature.bytes)
    }

    public var encoded: [UInt8] {
        var w = ByteWriter(capacity: 200)
        encode(into: &w)
        return w.bytes
    }

    /// Decodes one entry from the reader's position. Checks shape only; call
    /// `verify(with:)` before trusting it.
    public static func decode(from r: inout ByteReader) throws(DecodeError) -> ManifestEntry {
        let version = try r.u8()
        guard version == formatVersion else { throw .unsupportedVersion(version) }
        guard let kind = Kind(rawValue: try r.u8()) else { throw .invalid(field: "entry.kind") }
        let origin = NodeID(key: try r.bytes32())
        let sequence = try r.u64()
        guard sequence > 0 else { throw .invalid(field: "entry.sequence") }
        let contentID = ContentID(digest: try r.bytes32())
        let size = try r.u64()
        let chunkSize = try r.u32()
        guard acceptsChunkSize(chunkSize) else { throw .invalid(field: "entry.chunkSize") }
        guard let type = ItemType(rawValue: try r.u8()) else { throw .invalid(field: "entry.type") }
        let created = try r.i64()
        let name = try r.string16(field: "entry.name", limit: maxNameBytes)
        guard let sig = Signature(bytes: try r.raw(64)) else { throw .invalid(field: "entry.signature") }
        return ManifestEntry(kind: kind, origin: origin, sequence: sequence, contentID: contentID, sizeBytes: size,
                             chunkSizeBytes: chunkSize, type: type, createdAtMs: created, name: name, signature: sig)
    }

    public static func decode(_ bytes: [UInt8]) throws(DecodeError) -> ManifestEntry {
        var r = ByteReader(bytes)
        let e = try decode(from: &r)
        try r.expectEnd()
        return e
    }

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
