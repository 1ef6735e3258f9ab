import Foundation
@testable import Gossip
import Store
import Testing

/// Test vectors of the gossip layer: signed envelopes of every message type (§5) and the
/// anti-entropy digest and vector with the hashes behind them (§7.4, §6.6).
enum GossipVectors {
    // MARK: - Describing messages field by field

    static func record(_ u: MemberUpdate) -> VJ {
        var f: [(String, VJ)] = [("state", .string(u.state.description)), ("state_code", .n(u.state.rawValue)),
                                 ("node", .hex(u.node.key.bytes)), ("incarnation", .n(u.incarnation))]
        switch u.state {
        case .alive:
            f += [("address", .string(u.address?.description ?? "")), ("flags", .n(u.streamOnly ? 1 : 0)),
                  ("name", .string(u.name)), ("role", .string(u.role)), ("credential", .hex(u.credential))]
        case .suspect, .dead:
            f += [("accuser", .hex((u.accuser ?? u.node).key.bytes))]
        case .left:
            break
        }
        return .object(f)
    }

    static func refs(_ a: [EntryRef]) -> VJ {
        .array(a.map { obj(("origin", .hex($0.origin.key.bytes)), ("sequence", .n($0.sequence))) })
    }

    static func payloadFields(_ m: Message) -> VJ {
        switch m {
        case let .ping(seq, target, updates, adverts):
            obj(("seq", .n(seq)), ("target", .hex(target.key.bytes)), ("updates", .array(updates.map(record))), ("adverts", refs(adverts)))
        case let .ack(seq, updates, adverts):
            obj(("seq", .n(seq)), ("updates", .array(updates.map(record))), ("adverts", refs(adverts)))
        case let .pingReq(seq, target, address, updates):
            obj(("seq", .n(seq)), ("target", .hex(target.key.bytes)), ("address", .string(address.description)),
                ("updates", .array(updates.map(record))))
        case let .nack(seq):
            obj(("seq", .n(seq)))
        case let .join(updates):
            obj(("updates", .array(updates.map(record))))
        case let .memberSync(wantReply, updates):
            obj(("flags", .n(wantReply ? 1 : 0)), ("updates", .array(updates.map(record))))
        case let .entries(treePush, entries):
            obj(("flags", .n(treePush ? 1 : 0)), ("entries", .array(entries.map { .hex($0.encoded) })))
        case let .digest(d):
            obj(("buckets_log2", .n(d.bucketsLog2)), ("bucket_hashes", .array(d.bucketHashes.map(VJ.u64hex))),
                ("origin_count", .n(d.originCount)), ("member_hash", .u64hex(d.memberHash)), ("member_count", .n(d.memberCount)))
        case let .vector(v):
            obj(("flags", .n(v.wantReply ? 1 : 0)), ("buckets_log2", .n(v.bucketsLog2)), ("buckets", .array(v.buckets.map(VJ.n))),
                ("pairs", refs(v.pairs)))
        case let .pull(ranges):
            obj(("ranges", .array(ranges.map {
                obj(("origin", .hex($0.origin.key.bytes)), ("from", .n($0.fromSequence)), ("to", .n($0.toSequence)))
            })))
        }
    }

    static let typeNames: [UInt8: String] = [1: "ping", 2: "ack", 3: "ping-req", 4: "nack", 5: "join", 6: "member-sync",
                                             7: "entries", 8: "digest", 9: "vector", 10: "pull"]

    /// One envelope, signed by `signer`, described and checked: it must decode (signature
    /// included) to exactly the envelope that was encoded.
    static func envelope(_ what: String, _ signer: VectorKeys.Named, incarnation: UInt64, counter: UInt64, _ m: Message) -> VJ {
        let env = Envelope(sender: signer.id, incarnation: incarnation, counter: counter, message: m)
        let bytes = env.encode(signer: signer.identity)
        switch Envelope.decode(bytes, verifier: Ed25519Verifier()) {
        case .success(let back): #expect(back == env, "\(what): the envelope decodes to what was encoded")
        case .failure(let e): Issue.record("\(what): the encoded envelope does not decode: \(e)")
        }
        let sigStart = bytes.count - 64
        var payload = ByteWriter()
        Wire.encodePayload(m, into: &payload)
        return obj(
            ("name", .string(what)),
            ("signer", .string(signer.name)),
            ("type", .n(m.typeCode)),
            ("type_name", .string(typeNames[m.typeCode]!)),
            ("sender", .hex(signer.id.key.bytes)),
            ("incarnation", .n(incarnation)),
            ("counter", .n(counter)),
            ("payload", payloadFields(m)),
            ("payload_bytes", .hex(payload.bytes)),
            ("signed_bytes", .hex(SigningDomain.gossipMessage + bytes[0..<sigStart])),
            ("signature", .hex(bytes[sigStart...])),
            ("encoded", .hex(bytes)),
            ("encoded_bytes", .n(bytes.count)))
    }

    // MARK: - §5 envelopes

    static func aliceAlive(credential: [UInt8] = [], streamOnly: Bool = false) -> MemberUpdate {
        MemberUpdate(state: .alive, node: VectorKeys.alice.id, incarnation: 3, address: PeerAddress("10.0.0.1:7946"),
                     streamOnly: streamOnly, name: "gpu-a", role: "selfplay", credential: credential)
    }

    static func envelopes() throws -> VJ {
        let alice = VectorKeys.alice, bob = VectorKeys.bob
        let entries = try PrimitiveVectors.aliceEntries()
        let cert = PrimitiveVectors.aliceCertificate().encoded
        let rows: [VJ] = [
            envelope("ping from alice to bob with one alive update and one advert", alice, incarnation: 3, counter: 1,
                     .ping(seq: 1, target: bob.id, updates: [aliceAlive()], adverts: [EntryRef(origin: alice.id, sequence: 2)])),
            envelope("ack from bob with a suspect and a left record, no adverts", bob, incarnation: 5, counter: 1,
                     .ack(seq: 1, updates: [MemberUpdate(state: .suspect, node: VectorKeys.carol, incarnation: 5, accuser: bob.id),
                                            MemberUpdate(state: .left, node: VectorKeys.dave, incarnation: 2)], adverts: [])),
            envelope("ping-req from alice: probe carol at an IPv6 address", alice, incarnation: 3, counter: 2,
                     .pingReq(seq: 2, target: VectorKeys.carol, address: PeerAddress("[fd00::3]:7946")!, updates: [])),
            envelope("nack from bob", bob, incarnation: 5, counter: 2, .nack(seq: 2)),
            envelope("join from alice: stream-only, with its certificate (certificates.json) as credential", alice,
                     incarnation: 3, counter: 3, .join(updates: [aliceAlive(credential: cert, streamOnly: true)])),
            envelope("member-sync from bob, want reply: an alive and a dead record", bob, incarnation: 5, counter: 3,
                     .memberSync(wantReply: true, updates: [
                        MemberUpdate(state: .alive, node: bob.id, incarnation: 5, address: PeerAddress("10.0.0.2:7946"), name: "gpu-b"),
                        MemberUpdate(state: .dead, node: VectorKeys.carol, incarnation: 6, accuser: alice.id)])),
            envelope("entries from alice, tree push: the first four entries of manifest-entries.json", alice, incarnation: 3, counter: 4,
                     .entries(treePush: true, entries: Array(entries.prefix(4)))),
            envelope("pull from bob: alice's sequences 1 to 2", bob, incarnation: 5, counter: 4,
                     .pull([PullRange(origin: alice.id, fromSequence: 1, toSequence: 2)])),
        ]
        return obj(
            ("description", .string("""
                Signed gossip envelopes, one per message type except digest and vector (those are in \
                anti-entropy.json). payload gives the fields in wire order (member records: state, node, \
                incarnation, then address, flags, name, role, credential for alive, or accuser for \
                suspect and dead; entries are the encodings of manifest-entries.json); payload_bytes is \
                their encoding; signed_bytes is "meshnode/gossip/v1" NUL then the envelope up to the \
                signature; encoded is the whole envelope (52-byte header, payload, signature), exactly \
                one UDP datagram or one gossip stream message.
                """)),
            ("spec", .string("docs/PROTOCOL.md section 5 (gossip datagrams), 5.4 (payloads), 5.5 (member records)")),
            ("envelopes", .array(rows)))
    }

    // MARK: - §7.4 anti-entropy

    /// An origin and the sequences of it a node holds.
    typealias Holding = (NodeID, [UInt64])

    static let aOrigins: [Holding] = [
        (VectorKeys.alice.id, [1, 2]), (VectorKeys.bob.id, [1, 2, 3]), (VectorKeys.carol, [1]),
        (VectorKeys.dave, [2, 3]), (VectorKeys.synthetic(0x11), [1, 2, 4]), (VectorKeys.synthetic(0x20), [1]),
        (VectorKeys.synthetic(0x55), [1, 2, 3, 4, 5]), (VectorKeys.synthetic(0x80), [1]), (VectorKeys.synthetic(0x81), [1, 2]),
    ]
    /// B holds more of bob and dave, less of 0x55…, the rest alike.
    static let bOrigins: [Holding] = [
        (VectorKeys.alice.id, [1, 2]), (VectorKeys.bob.id, [1, 2, 3, 4]), (VectorKeys.carol, [1]),
        (VectorKeys.dave, [1, 2, 3]), (VectorKeys.synthetic(0x11), [1, 2, 4]), (VectorKeys.synthetic(0x20), [1]),
        (VectorKeys.synthetic(0x55), [1, 2, 3]), (VectorKeys.synthetic(0x80), [1]), (VectorKeys.synthetic(0x81), [1, 2]),
    ]

    /// A manifest holding exactly these sequences. The hashes depend only on (origin, sequence),
    /// so the entries need no content or signature.
    static func manifest(_ holdings: [Holding]) -> Manifest {
        var m = Manifest()
        for (o, seqs) in holdings {
            for s in seqs {
                let e = ManifestEntry(origin: o, sequence: s, contentID: ContentID(digest: .zero), sizeBytes: 0,
                                      chunkSizeBytes: 4096, type: .other, createdAtMs: 0, name: "x")
                _ = m.insert(e, maxForks: 16)
            }
        }
        return m
    }

    static func manifestView(_ holdings: [Holding], _ m: Manifest, log2 b: Int) -> VJ {
        let origins: [VJ] = holdings.map { o, seqs in
            let mc = m.maxContiguous(o)
            return obj(("origin", .hex(o.key.bytes)), ("holds", .array(seqs.map(VJ.n))), ("max_contiguous", .n(mc)),
                       ("bucket_of_128", .n(Manifest.bucket(o, log2: Manifest.maxBucketsLog2))),
                       ("pair_hash", .u64hex(Manifest.pairHash(o, mc))))
        }
        let all = m.digestHashes(log2: Manifest.maxBucketsLog2)
        let nonEmpty: [VJ] = all.enumerated().filter { $0.element != 0 }.map { obj(("bucket", .n($0.offset)), ("hash", .u64hex($0.element))) }
        return obj(("origins", .array(origins)),
                   ("bucket_hashes_128_non_zero", .array(nonEmpty)),
                   ("folded_buckets_log2", .n(b)),
                   ("folded_bucket_hashes", .array(m.digestHashes(log2: b).map(VJ.u64hex))))
    }

    static func antiEntropy() throws -> VJ {
        let alice = VectorKeys.alice, bob = VectorKeys.bob
        let a = manifest(aOrigins), bm = manifest(bOrigins)
        let b = a.preferredBucketsLog2
        #expect(b == 2, "nine origins: four buckets")
        // alice's membership view for member_hash (§6.6): c = 1 alive or suspect, 3 dead, 4 left.
        let view: [(NodeID, MemberState, String)] = [
            (alice.id, .alive, "self"), (bob.id, .alive, ""), (VectorKeys.carol, .suspect, ""),
            (VectorKeys.dave, .dead, ""), (VectorKeys.synthetic(0x11), .left, ""),
        ]
        var memberHash: UInt64 = 0
        let members: [VJ] = view.map { n, st, note in
            let term = GossipNode.memberHashTerm(n, st)
            memberHash ^= term
            let c: UInt64 = st == .suspect ? 1 : UInt64(st.rawValue)
            return obj(("node", .hex(n.key.bytes)), ("state", .string(note.isEmpty ? st.description : "\(st.description) (\(note))")),
                       ("c", .n(c)), ("term", .u64hex(term)))
        }
        let digest = Digest(bucketsLog2: UInt8(b), bucketHashes: a.digestHashes(log2: b), originCount: UInt32(a.originCount),
                            memberHash: memberHash, memberCount: UInt32(view.count))
        // B compares at A's resolution and answers with its pairs for the buckets that differ.
        let mine = bm.digestHashes(log2: b)
        let diff = (0..<mine.count).filter { mine[$0] != digest.bucketHashes[$0] }.map(UInt16.init)
        #expect(diff == [0, 1, 3])
        let set = Set(diff.map(Int.init))
        let bVector = VectorMessage(wantReply: true, bucketsLog2: UInt8(b), buckets: diff, pairs: bm.vector(log2: b, buckets: set))
        let aSends = a.entriesMissing(from: bVector.pairs, log2: b, buckets: set, limit: 2048)
        let aVector = VectorMessage(wantReply: false, bucketsLog2: UInt8(b), buckets: diff, pairs: a.vector(log2: b, buckets: set))
        let bSends = bm.entriesMissing(from: aVector.pairs, log2: b, buckets: set, limit: 2048)
        func sent(_ es: [ManifestEntry]) -> VJ { refs(es.map { EntryRef(origin: $0.origin, sequence: $0.sequence) }) }
        let mixInputs: [UInt64] = [0, 1, 0x0123_4567_89ab_cdef, .max]
        return obj(
            ("description", .string("""
                Anti-entropy: the mix function, pair hashes H(origin, max contiguous sequence), the 128 \
                buckets (top 7 bits of an origin id) and their XOR folding, member_hash, and the exchange \
                of a digest and two vectors between alice (A) and bob (B). A and B hold the sequences \
                listed; B finds buckets 0, 1 and 3 different and sends its pairs for the origins in them \
                (sorted by origin id, byte order); A answers with every entry it holds above B's max \
                contiguous sequences (so also 1111…'s entry 4, which B holds above a gap: a vector \
                cannot say so) and its own pairs; B sends what A lacks the same way. Hashes (u64) are 16 hex digits, big-endian. The envelopes \
                are signed as in gossip-envelopes.json.
                """)),
            ("spec", .string("docs/PROTOCOL.md section 7.4 (anti-entropy), 6.6 (member_hash), 5.4 (digest and vector payloads)")),
            ("mix", .array(mixInputs.map { obj(("x", .u64hex($0)), ("mix", .u64hex(SplitMix64.mix($0)))) })),
            ("a", manifestView(aOrigins, a, log2: b)),
            ("a_members", obj(("members", .array(members)), ("member_hash", .u64hex(memberHash)),
                              ("member_count", .n(view.count)))),
            ("b", manifestView(bOrigins, bm, log2: b)),
            ("mismatching_buckets", .array(diff.map(VJ.n))),
            ("digest", envelope("digest from alice to bob", alice, incarnation: 3, counter: 10, .digest(digest))),
            ("vector_from_b", envelope("vector from bob, want reply", bob, incarnation: 5, counter: 10, .vector(bVector))),
            ("entries_a_sends_b", sent(aSends)),
            ("vector_from_a", envelope("vector from alice, the reply", alice, incarnation: 3, counter: 11, .vector(aVector))),
            ("entries_b_sends_a", sent(bSends)))
    }
}
