import Testing
@testable import Gossip
@testable import Mesh
import Store

/// The push-to-2 codec (docs/PROTOCOL.md §9.5): `take` and `take_reply` round-trip, the decoder is
/// total over arbitrary bytes, the table's rules reject what they must, and a take's signature
/// binds it to one target and one item.
@Suite struct CustodyMessageTests {
    static let requester = NodeIdentity.fromSeed([UInt8](repeating: 0x11, count: 32))
    static let custodian = NodeIdentity.fromSeed([UInt8](repeating: 0x22, count: 32))
    static let other = NodeIdentity.fromSeed([UInt8](repeating: 0x33, count: 32))
    static let content = ContentID(digest: Bytes32(w0: 1, w1: 2, w2: 3, w3: 4))

    /// A version-2 put by the requester (its own item, as push-to-2 sends them).
    static func put(sequence: UInt64 = 3, name: String = "model-ü.pt") -> ManifestEntry {
        ManifestEntry(origin: requester.nodeID, sequence: sequence, hlc: 77 << 16, contentID: content, sizeBytes: 10_000,
                      chunkSizeBytes: 4096, type: .model, createdAtMs: 1_767_225_600_000, name: name).signed(by: requester)
    }

    static func take(_ entry: ManifestEntry = put(), for target: NodeID = custodian.nodeID, issuedMs: Int64 = 1_767_225_610_000,
                     requestID: UInt32 = 0x0102) -> CustodyMessage {
        CustodyMessage.take(requestID: requestID, target: target, entry: entry, issuedMs: issuedMs, signer: requester)
    }

    static func decodes(_ bytes: [UInt8]) -> Bool {
        do { _ = try CustodyMessage.decode(bytes); return true } catch { return false }
    }

    // MARK: - Round trips

    @Test func takesOfEveryKindOfEntryRoundTrip() throws {
        let v1 = ManifestEntry(format: 1, origin: Self.requester.nodeID, sequence: 4, contentID: Self.content, sizeBytes: 1,
                               chunkSizeBytes: 4096, type: .checkpoint, createdAtMs: 9, name: "legacy.pt").signed(by: Self.requester)
        // A tombstone is not a put: the codec carries it (the receiver answers status 4).
        let tombstone = ManifestEntry(origin: Self.requester.nodeID, sequence: 5, hlc: 78 << 16,
                                      payload: .tombstone(.init(scope: .name, name: "model-ü.pt", createdAtMs: 10))).signed(by: Self.requester)
        let longest = Self.put(name: String(repeating: "n", count: ManifestEntry.maxNameBytes))
        let msgs = [Self.take(), Self.take(v1), Self.take(tombstone), Self.take(longest),
                    Self.take(requestID: 0), Self.take(requestID: .max),
                    Self.take(issuedMs: 0), Self.take(issuedMs: -1), Self.take(issuedMs: .min), Self.take(issuedMs: .max)]
        for m in msgs {
            #expect(try CustodyMessage.decode(m.encoded) == m)
            guard case .take(_, _, _, let e, _) = m else { continue }
            // type ‖ request_id ‖ target ‖ issued_ms ‖ blob16 entry ‖ signature.
            #expect(m.encoded.count == 1 + 4 + 32 + 8 + 2 + e.encoded.count + 64)
            #expect(m.encoded[0] == 0x20)
        }
    }

    @Test func aTakeReplyOfEveryStatusRoundTrips() throws {
        for raw in UInt8(0)...5 {
            let status = try #require(CustodyMessage.TakeStatus(rawValue: raw))
            for id: UInt32 in [0, 0x0102, .max] {
                let m = CustodyMessage.takeReply(requestID: id, contentID: Self.content, status: status)
                #expect(m.encoded.count == 1 + 4 + 32 + 1)
                #expect(m.encoded.first == 0x21 && m.encoded.last == raw)
                #expect(try CustodyMessage.decode(m.encoded) == m)
            }
        }
    }

    // MARK: - The table's rules

    @Test func aStatusAbove5IsRejected() {
        let valid = CustodyMessage.takeReply(requestID: 9, contentID: Self.content, status: .stopping).encoded
        for s in UInt8(6)...255 {
            var m = valid
            m[m.count - 1] = s
            #expect(throws: DecodeError.invalid(field: "take_reply.status")) { try CustodyMessage.decode(m) }
        }
    }

    @Test func trailingBytesAfterEitherMessageAreRejected() {
        let take = Self.take().encoded
        let reply = CustodyMessage.takeReply(requestID: 9, contentID: Self.content, status: .accepted).encoded
        for valid in [take, reply] {
            for extra in [[0], [0x20], [0, 0, 0, 0, 0, 0, 0, 0]] as [[UInt8]] {
                #expect(throws: DecodeError.trailingBytes(extra.count)) { try CustodyMessage.decode(valid + extra) }
            }
        }
    }

    @Test func otherTypeBytesAndEntriesThatDoNotDecodeAreRejected() {
        for t: UInt8 in [0x00, 0x01, 0x1f, 0x22, 0xff] {
            var m = CustodyMessage.takeReply(requestID: 9, contentID: Self.content, status: .accepted).encoded
            m[0] = t
            #expect(throws: DecodeError.invalid(field: "custody.type")) { try CustodyMessage.decode(m) }
        }
        // The entry blob's first byte is the entry's version: 3 is no version of §4.
        var m = Self.take().encoded
        m[1 + 4 + 32 + 8 + 2] = 3
        #expect(throws: DecodeError.unsupportedVersion(3)) { try CustodyMessage.decode(m) }
        // An entry blob over 8 192 bytes is refused by its length, before anything is read.
        var w = ByteWriter()
        w.u8(0x20); w.u32(1); w.bytes32(Self.custodian.nodeID.key); w.i64(0)
        w.u16(UInt16(CustodyMessage.maxEntryBytes + 1))
        w.raw([UInt8](repeating: 2, count: CustodyMessage.maxEntryBytes + 1 + 64))
        #expect(throws: DecodeError.tooLong(field: "take.entry", length: CustodyMessage.maxEntryBytes + 1,
                                            limit: CustodyMessage.maxEntryBytes)) { try CustodyMessage.decode(w.bytes) }
    }

    // MARK: - Totality

    /// Every prefix of a valid message is short (a `DecodeError`); every extension has trailing
    /// bytes; single-byte mutations and seeded random bytes give a message or a `DecodeError`,
    /// never a trap.
    @Test(.timeLimit(.minutes(1))) func truncatedExtendedMutatedAndRandomBytesNeverTrapTheDecoder() {
        var rng = SplitMix64(seed: 0x7a6b_2026)
        let valid = [Self.take().encoded,
                     CustodyMessage.takeReply(requestID: 9, contentID: Self.content, status: .complete).encoded]
        for base in valid {
            for cut in 0..<base.count {
                #expect(throws: DecodeError.self) { try CustodyMessage.decode(Array(base[..<cut])) }
            }
            for n in 1...40 {
                let extra = (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                #expect(throws: DecodeError.trailingBytes(n)) { try CustodyMessage.decode(base + extra) }
            }
        }
        var decoded = 0, rejected = 0
        for round in 0..<4000 {
            let base = valid[round % 2]
            var m = base
            for _ in 0...rng.below(3) { m[rng.below(m.count)] = UInt8(truncatingIfNeeded: rng.next()) }
            if Self.decodes(m) { decoded += 1 } else { rejected += 1 }
            // Random bodies behind each type byte, of lengths around both messages' sizes.
            let tag: UInt8 = [0x20, 0x21, UInt8(truncatingIfNeeded: rng.next())][rng.below(3)]
            let junk = [tag] + (0..<rng.below(base.count + 64)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            if Self.decodes(junk) { decoded += 1 } else { rejected += 1 }
        }
        #expect(decoded + rejected == 8000)
        // Mutations of request ids, targets, issued_ms, content ids and signatures still decode.
        #expect(decoded > 0 && rejected > 0)
    }

    // MARK: - The signature binds the target and the item

    @Test func aTakeSignedForThisNodeVerifiesByTheRequester() throws {
        guard case .take(_, let target, let issued, let entry, let sig) = try CustodyMessage.decode(Self.take().encoded) else {
            Issue.record("not a take"); return
        }
        let me = Self.custodian.nodeID
        #expect(target == me)
        #expect(Ed25519Verifier().verify(sig, of: CustodyMessage.signedBytes(target: me, entry: entry, issuedMs: issued),
                                         by: Self.requester.nodeID))
        // Only by the requester: the session's peer must be the one that signed.
        #expect(!Ed25519Verifier().verify(sig, of: CustodyMessage.signedBytes(target: me, entry: entry, issuedMs: issued),
                                          by: Self.other.nodeID))
    }

    @Test func aTakeSignedForAnotherTargetDoesNotVerifyForThisNode() throws {
        let me = Self.custodian.nodeID
        let forOther = Self.take(for: Self.other.nodeID)
        // As received: the target field names the other node, and the bytes this node would
        // sign-check (with its own id) do not verify.
        guard case .take(_, let target, let issued, let entry, let sig) = try CustodyMessage.decode(forOther.encoded) else {
            Issue.record("not a take"); return
        }
        #expect(target != me)
        let verifier = Ed25519Verifier()
        #expect(!verifier.verify(sig, of: CustodyMessage.signedBytes(target: me, entry: entry, issuedMs: issued), by: Self.requester.nodeID))
        // Replayed with the target field rewritten to this node: it decodes, names this node,
        // and still does not verify.
        var replayed = forOther.encoded
        replayed.replaceSubrange(5..<37, with: me.key.bytes)
        guard case .take(_, let t2, let i2, let e2, let s2) = try CustodyMessage.decode(replayed) else {
            Issue.record("not a take"); return
        }
        #expect(t2 == me)
        #expect(!verifier.verify(s2, of: CustodyMessage.signedBytes(target: t2, entry: e2, issuedMs: i2), by: Self.requester.nodeID))
    }

    @Test func aTakeSignatureDoesNotCoverAnotherItemOrIssueTime() throws {
        let me = Self.custodian.nodeID
        guard case .take(_, _, let issued, let entry, let sig) = Self.take() else { Issue.record("not a take"); return }
        let v = Ed25519Verifier()
        let otherSequence = Self.put(sequence: 4)
        var otherContent = Self.put()
        otherContent.payload = .put(.init(contentID: ContentID(digest: Bytes32(w0: 9, w1: 9, w2: 9, w3: 9)), sizeBytes: 10_000,
                                          chunkSizeBytes: 4096, type: .model, createdAtMs: 1_767_225_600_000, name: "model-ü.pt"))
        #expect(!v.verify(sig, of: CustodyMessage.signedBytes(target: me, entry: otherSequence, issuedMs: issued), by: Self.requester.nodeID))
        #expect(!v.verify(sig, of: CustodyMessage.signedBytes(target: me, entry: otherContent, issuedMs: issued), by: Self.requester.nodeID))
        #expect(!v.verify(sig, of: CustodyMessage.signedBytes(target: me, entry: entry, issuedMs: issued + 1), by: Self.requester.nodeID))
    }
}
