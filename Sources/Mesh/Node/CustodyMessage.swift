import Gossip

/// Push-to-2 messages (docs/PROTOCOL.md §9.5), carried as the plaintext of sealed session frames
/// like the chunk exchange's. `take` asks the peer to take a copy of an item now; `take_reply`
/// answers it. The decoder is total: arbitrary bytes give a message or a `DecodeError`.
public enum CustodyMessage: Equatable, Sendable {
    /// "Take a copy of `entry`'s content now": signed by the requester over
    /// `CustodyMessage.signedBytes` (the target, the entry's origin, sequence and content id,
    /// and `issuedMs`), so that it cannot be replayed to another node or for another item.
    case take(requestID: UInt32, target: NodeID, issuedMs: Int64, entry: ManifestEntry, signature: Signature)
    case takeReply(requestID: UInt32, contentID: ContentID, status: TakeStatus)

    public enum Tag: UInt8 { case take = 0x20, takeReply = 0x21 }

    /// A `take_reply`'s status.
    public enum TakeStatus: UInt8, Sendable {
        /// Taken: the item is being fetched (a `complete` reply follows).
        case accepted = 0
        /// The item is held here complete and verified.
        case complete = 1
        /// Refused: over `max_disk_usage`, or the item does not fit under it.
        case full = 2
        /// Refused: this node receives nothing (`exclude_from_sync`).
        case excluded = 3
        /// Refused: the entry or the request's signature did not verify, or it is not a put.
        case invalid = 4
        /// Refused: this node is shutting down.
        case stopping = 5
    }

    /// The largest entry a `take` carries (an entry's body is at most 4 096 bytes, §4).
    public static let maxEntryBytes = 8192

    /// The bytes a `take`'s signature covers: `meshnode/take/v1` NUL, then the target's node id,
    /// the entry's origin (32 bytes each), its sequence (u64), its content id (32 bytes) and
    /// `issued_ms` (i64), big-endian.
    public static func signedBytes(target: NodeID, entry: ManifestEntry, issuedMs: Int64) -> [UInt8] {
        var w = ByteWriter(capacity: 128)
        w.raw(Array("meshnode/take/v1".utf8) + [0])
        w.bytes32(target.key)
        w.bytes32(entry.origin.key)
        w.u64(entry.sequence)
        w.bytes32((entry.put?.contentID ?? ContentID(digest: .zero)).digest)
        w.i64(issuedMs)
        return w.bytes
    }

    /// A signed `take` of `entry` for `target`.
    public static func take(requestID: UInt32, target: NodeID, entry: ManifestEntry, issuedMs: Int64,
                            signer: any Signer) -> CustodyMessage {
        .take(requestID: requestID, target: target, issuedMs: issuedMs, entry: entry,
              signature: signer.sign(signedBytes(target: target, entry: entry, issuedMs: issuedMs)))
    }

    public var encoded: [UInt8] {
        var w = ByteWriter(capacity: 256)
        switch self {
        case .take(let id, let target, let issued, let entry, let sig):
            w.u8(Tag.take.rawValue); w.u32(id); w.bytes32(target.key); w.i64(issued)
            w.blob16(entry.encoded); w.raw(sig.bytes)
        case .takeReply(let id, let c, let status):
            w.u8(Tag.takeReply.rawValue); w.u32(id); w.bytes32(c.digest); w.u8(status.rawValue)
        }
        return w.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws(DecodeError) -> CustodyMessage {
        var r = ByteReader(bytes)
        guard let tag = Tag(rawValue: try r.u8()) else { throw .invalid(field: "custody.type") }
        let id = try r.u32()
        let msg: CustodyMessage
        switch tag {
        case .take:
            let target = NodeID(key: try r.bytes32())
            let issued = try r.i64()
            let entryBytes = try r.blob16(field: "take.entry", limit: maxEntryBytes)
            let entry = try ManifestEntry.decode(entryBytes)
            guard let sig = Signature(bytes: try r.raw(64)) else { throw .invalid(field: "take.signature") }
            msg = .take(requestID: id, target: target, issuedMs: issued, entry: entry, signature: sig)
        case .takeReply:
            let c = ContentID(digest: try r.bytes32())
            guard let s = TakeStatus(rawValue: try r.u8()) else { throw .invalid(field: "take_reply.status") }
            msg = .takeReply(requestID: id, contentID: c, status: s)
        }
        try r.expectEnd()
        return msg
    }
}
