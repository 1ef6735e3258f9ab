import Foundation
import Gossip
@testable import Mesh
import Store
import Testing

/// Test vectors of push-to-2 (§9.5): alice asks bob, with a signed `take`, to take a copy of her
/// put 2 of manifest-entries.json, and one `take_reply` of each status.
///
/// The signed bytes are built twice, by `CustodyMessage.signedBytes` and field by field from the
/// §9.5 text; they must agree, and the signature must verify by alice, before anything is written.
enum CustodyVectors {
    /// Fixed request inputs. The request id has two non-zero bytes so that a byte-order mistake
    /// shows; `issued_ms` is 10 s after the base time (after every entry of alice's log).
    static let requestID: UInt32 = 0x0102
    static let issuedMs: Int64 = VectorKeys.baseTimeMs + 10_000
    /// Which entry of manifest-entries.json the take carries: put 2 (`modèle-α.pt`), the put of
    /// alice's log that no tombstone deletes.
    static let entryIndex = 1

    /// §9.5's signed bytes, straight from the text: `"meshnode/take/v1" 0x00 ‖ target ‖
    /// entry.origin ‖ entry.sequence u64 ‖ entry.content_id ‖ issued_ms i64`.
    static func specSignedBytes(target: NodeID, origin: NodeID, sequence: UInt64, contentID: ContentID, issuedMs: Int64) -> [UInt8] {
        var w = ByteWriter()
        w.raw(Array("meshnode/take/v1".utf8)); w.u8(0)
        w.raw(target.key.bytes); w.raw(origin.key.bytes); w.u64(sequence); w.raw(contentID.digest.bytes); w.i64(issuedMs)
        return w.bytes
    }

    static func custody() throws -> VJ {
        let entry = try PrimitiveVectors.aliceEntries()[entryIndex]
        guard let put = entry.put else { throw DecodeError.invalid(field: "the vector entry is not a put") }
        let target = VectorKeys.bob.id
        let take = CustodyMessage.take(requestID: requestID, target: target, entry: entry, issuedMs: issuedMs,
                                       signer: VectorKeys.alice.identity)
        guard case .take(_, _, _, _, let signature) = take else { throw DecodeError.invalid(field: "not a take") }
        let signed = CustodyMessage.signedBytes(target: target, entry: entry, issuedMs: issuedMs)
        #expect(signed == specSignedBytes(target: target, origin: entry.origin, sequence: entry.sequence,
                                          contentID: put.contentID, issuedMs: issuedMs),
                "CustodyMessage.signedBytes is what §9.5 says")
        #expect(signed.count == 129)
        #expect(Ed25519Verifier().verify(signature, of: signed, by: VectorKeys.alice.id), "the take verifies by alice")
        let encoded = take.encoded
        #expect(try CustodyMessage.decode(encoded) == take, "the take decodes to what was encoded")

        var replies: [VJ] = []
        for raw in UInt8(0)...5 {
            let status = CustodyMessage.TakeStatus(rawValue: raw)!
            let reply = CustodyMessage.takeReply(requestID: requestID, contentID: put.contentID, status: status)
            let bytes = reply.encoded
            #expect(try CustodyMessage.decode(bytes) == reply, "take_reply \(status) decodes to what was encoded")
            replies.append(obj(
                ("name", .string("take_reply: \(status)")),
                ("type", .n(bytes[0])),
                ("fields", obj(("request_id", .n(requestID)), ("content_id", .hex(put.contentID.digest.bytes)),
                               ("status", .n(raw)))),
                ("status_name", .string("\(status)")),
                ("encoded", .hex(bytes))))
        }

        return obj(
            ("description", .string("""
                Push-to-2: alice (the requester, an item's origin) sends bob a take of her put 2 of \
                manifest-entries.json (entries[\(entryIndex)], modèle-α.pt), then one take_reply of each \
                status 0 to 5, all on the take's request id and naming the put's content id. encoded is the \
                plaintext of one sealed frame: the type byte, the u32 request id, then the body. The take's \
                signed_bytes are "meshnode/take/v1" NUL, bob's node id (the target), the entry's origin, its \
                sequence (u64), its content id and issued_ms (i64), big-endian (129 bytes); the signature is \
                alice's Ed25519 over them with her node key. The entry field is the entry's encoding exactly \
                as manifest-entries.json gives it.
                """)),
            ("spec", .string("docs/PROTOCOL.md section 9.5 (push-to-2: take and take_reply)")),
            ("take", obj(
                ("name", .string("take: alice asks bob to take a copy of modèle-α.pt")),
                ("type", .n(encoded[0])),
                ("signer", .string(VectorKeys.alice.name)),
                ("target_is", .string(VectorKeys.bob.name)),
                ("entry_is", .string("manifest-entries.json entries[\(entryIndex)]: alice's put \(entry.sequence), \(put.name)")),
                ("fields", obj(("request_id", .n(requestID)), ("target", .hex(target.key.bytes)), ("issued_ms", .n(issuedMs)),
                               ("entry", .hex(entry.encoded)))),
                ("signed_fields", obj(("entry_origin", .hex(entry.origin.key.bytes)), ("entry_sequence", .n(entry.sequence)),
                                      ("entry_content_id", .hex(put.contentID.digest.bytes)))),
                ("signed_bytes", .hex(signed)),
                ("signature", .hex(signature.bytes)),
                ("encoded", .hex(encoded)),
                ("encoded_bytes", .n(encoded.count)))),
            ("take_replies", .array(replies)))
    }
}
