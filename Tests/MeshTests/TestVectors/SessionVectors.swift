import CSodium
import Foundation
@testable import Gossip
@testable import Mesh
import Store
import Testing

/// Test vectors of the stream layer: a session handshake with fixed identity and ephemeral keys
/// for each AEAD suite, the derived keys, sealed frames in both directions, a rekeyed key (§8),
/// and the chunk-exchange messages carried in sealed frames (§9).
///
/// The keys and AEAD outputs are computed twice: by the session code (`SessionHandshake`,
/// `SecureChannel`) and directly from libsodium's primitives as §8.2–8.3 describe them; the two
/// must agree before anything is written to the file.
enum SessionVectors {
    static var aesAvailable: Bool {
        _ = sodium_init()
        return crypto_aead_aes256gcm_is_available() == 1
    }

    // MARK: - Independent primitives (straight from the spec text)

    static func x25519Public(_ sk: [UInt8]) -> [UInt8] {
        var pk = [UInt8](repeating: 0, count: 32)
        _ = crypto_scalarmult_base(&pk, sk)
        return pk
    }

    static func x25519(_ sk: [UInt8], _ pk: [UInt8]) -> [UInt8] {
        var q = [UInt8](repeating: 0, count: 32)
        _ = crypto_scalarmult(&q, sk, pk)
        return q
    }

    static func blake2b(_ m: [UInt8], bytes: Int, key: [UInt8] = []) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: bytes)
        _ = crypto_generichash(&out, bytes, m, UInt64(m.count), key.isEmpty ? nil : key, key.count)
        return out
    }

    static func nonce(_ counter: UInt64) -> [UInt8] {
        [0, 0, 0, 0] + (0..<8).map { UInt8(truncatingIfNeeded: counter >> UInt64(56 - 8 * $0)) }
    }

    static func seal(_ suite: CipherSuite, key: [UInt8], counter: UInt64, _ m: [UInt8]) -> [UInt8] {
        var c = [UInt8](repeating: 0, count: m.count + 16)
        var clen: UInt64 = 0
        let n = nonce(counter)
        switch suite {
        case .aes256gcm: _ = crypto_aead_aes256gcm_encrypt(&c, &clen, m, UInt64(m.count), nil, 0, nil, n, key)
        case .chacha20poly1305: _ = crypto_aead_chacha20poly1305_ietf_encrypt(&c, &clen, m, UInt64(m.count), nil, 0, nil, n, key)
        case .sshTunnel: return m
        }
        return c
    }

    static let rekeyMessage = Array("meshnode/session/v1/rekey".utf8)
    static func rekey(_ key: [UInt8]) -> [UInt8] { blake2b(rekeyMessage, bytes: 32, key: key) }

    static func wire(_ frame: [UInt8]) -> VJ {
        var w = ByteWriter()
        w.u32(UInt32(frame.count))
        w.raw(frame)
        return .hex(w.bytes)
    }

    // MARK: - Keys

    struct Keys {
        let initiatorEphPublic: [UInt8], responderEphPublic: [UInt8], shared: [UInt8], kxInput: [UInt8], kx: [UInt8]
        var initiatorRx: [UInt8] { Array(kx[0..<32]) }
        var initiatorTx: [UInt8] { Array(kx[32..<64]) }
    }

    static func keys() -> Keys {
        let ipk = x25519Public(VectorKeys.initiatorEphemeralSecret), rpk = x25519Public(VectorKeys.responderEphemeralSecret)
        let shared = x25519(VectorKeys.initiatorEphemeralSecret, rpk)
        #expect(shared == x25519(VectorKeys.responderEphemeralSecret, ipk))
        let input = shared + ipk + rpk
        let k = Keys(initiatorEphPublic: ipk, responderEphPublic: rpk, shared: shared, kxInput: input, kx: blake2b(input, bytes: 64))
        // libsodium's crypto_kx gives the same split, from both ends.
        var rx = [UInt8](repeating: 0, count: 32), tx = rx
        _ = crypto_kx_client_session_keys(&rx, &tx, ipk, VectorKeys.initiatorEphemeralSecret, rpk)
        #expect(rx == k.initiatorRx && tx == k.initiatorTx, "crypto_kx client keys are BLAKE2b-512(q || client_pk || server_pk)")
        _ = crypto_kx_server_session_keys(&rx, &tx, rpk, VectorKeys.responderEphemeralSecret, ipk)
        #expect(rx == k.initiatorTx && tx == k.initiatorRx, "the server's rx is the client's tx")
        return k
    }

    // MARK: - Handshakes

    /// What one handshake produced.
    struct Transcript {
        let hello: [UInt8], accept: [UInt8], confirm: [UInt8]
        let initiator: SecureChannel, responder: SecureChannel
    }

    static let responderAdmits: @Sendable (NodeID, [UInt8]) -> Bool = { id, cred in
        let p = AdmissionPolicy(authorities: [VectorKeys.authority.id])
        if case .admittedByCertificate = p.decide(node: id, credential: cred, nowWallMs: VectorKeys.baseTimeMs,
                                                  verifier: Ed25519Verifier()) { return true }
        return false
    }

    /// The handshake the code runs (both sides), with the fixed ephemeral keys. On a host with
    /// AES-GCM, hello offers 0x03 and the responder picks 0x02.
    static func codeHandshake() throws -> Transcript {
        let cert = PrimitiveVectors.aliceCertificate().encoded
        var i = SessionHandshake(role: .initiator, signer: VectorKeys.alice.identity, verifier: Ed25519Verifier(),
                                 credential: cert, expectedPeer: VectorKeys.bob.id) { id, _ in id == VectorKeys.bob.id }
        i.useFixedEphemeralKey(secretKey: VectorKeys.initiatorEphemeralSecret)
        var r = SessionHandshake(role: .responder, signer: VectorKeys.bob.identity, verifier: Ed25519Verifier(),
                                 admit: responderAdmits)
        r.useFixedEphemeralKey(secretKey: VectorKeys.responderEphemeralSecret)
        let hello = i.start()
        guard case .send(let accept) = try r.receive(hello),
              case .established(let ic, let seenByI, _, let confirm?) = try i.receive(accept),
              case .established(let rc, let seenByR, let cred, nil) = try r.receive(confirm) else {
            throw SessionError.protocolViolation("the vector handshake did not complete")
        }
        #expect(seenByI == VectorKeys.bob.id && seenByR == VectorKeys.alice.id && cred == cert)
        return Transcript(hello: hello, accept: accept, confirm: confirm, initiator: ic, responder: rc)
    }

    /// The handshake of an initiator without AES-GCM: the same hello with `ciphers` = 0x01, which
    /// the code's responder answers with ChaCha20-Poly1305. The confirm is signed here as §8.2
    /// says (the code's responder checks it); the initiator's channel is the code's.
    static func chachaHandshake(codeHello: [UInt8]) throws -> Transcript {
        var hello = codeHello
        hello[69] = CipherSuite.chacha20poly1305.rawValue
        var r = SessionHandshake(role: .responder, signer: VectorKeys.bob.identity, verifier: Ed25519Verifier(),
                                 admit: responderAdmits)
        r.useFixedEphemeralKey(secretKey: VectorKeys.responderEphemeralSecret)
        guard case .send(let accept) = try r.receive(hello) else { throw SessionError.protocolViolation("no accept") }
        let confirm = VectorKeys.alice.identity.sign(SessionHandshake.initiatorDomain + blake2b(hello + accept, bytes: 32)).bytes
        guard case .established(let rc, _, _, nil) = try r.receive(confirm) else { throw SessionError.protocolViolation("no session") }
        let ic = try SecureChannel(suite: .chacha20poly1305, role: .initiator,
                                   ephemeral: EphemeralKeyPair(secretKey: VectorKeys.initiatorEphemeralSecret),
                                   peerEphemeral: Bytes32(bytes: x25519Public(VectorKeys.responderEphemeralSecret))!)
        return Transcript(hello: hello, accept: accept, confirm: confirm, initiator: ic, responder: rc)
    }

    static func handshakeFrames(_ t: Transcript) throws -> [(String, VJ)] {
        var r = ByteReader(t.hello)
        let hMagic = try r.raw(4), hVersion = try r.u8(), hID = try r.raw(32), hEph = try r.raw(32), ciphers = try r.u8()
        let hCred = try r.blob16(field: "credential", limit: 256), expected = try r.raw(32)
        try r.expectEnd()
        r = ByteReader(t.accept)
        let aMagic = try r.raw(4), aVersion = try r.u8(), aID = try r.raw(32), aEph = try r.raw(32), cipher = try r.u8()
        let aCred = try r.blob16(field: "credential", limit: 256)
        let signedPart = Array(t.accept[0..<r.offset])
        let aSig = try r.raw(64)
        try r.expectEnd()
        let responderHash = blake2b(t.hello + signedPart, bytes: 32)
        let responderSigned = SessionHandshake.responderDomain + responderHash
        let initiatorHash = blake2b(t.hello + t.accept, bytes: 32)
        let initiatorSigned = SessionHandshake.initiatorDomain + initiatorHash
        let v = Ed25519Verifier()
        #expect(v.verify(Signature(bytes: aSig)!, of: responderSigned, by: VectorKeys.bob.id))
        #expect(v.verify(Signature(bytes: t.confirm)!, of: initiatorSigned, by: VectorKeys.alice.id))
        return [
            ("hello", obj(
                ("fields", obj(("magic", .hex(hMagic)), ("version", .n(hVersion)), ("initiator_id", .hex(hID)),
                               ("initiator_eph", .hex(hEph)), ("ciphers", .n(ciphers)), ("credential", .hex(hCred)),
                               ("expected_id", .hex(expected)))),
                ("credential_is", .string("alice's certificate, certificates.json encoded")),
                ("bytes", .hex(t.hello)), ("wire", wire(t.hello)))),
            ("accept", obj(
                ("fields", obj(("magic", .hex(aMagic)), ("version", .n(aVersion)), ("responder_id", .hex(aID)),
                               ("responder_eph", .hex(aEph)), ("cipher", .n(cipher)), ("credential", .hex(aCred)))),
                ("signed_part", .hex(signedPart)),
                ("responder_transcript_hash", .hex(responderHash)),
                ("responder_signed_bytes", .hex(responderSigned)),
                ("signature", .hex(aSig)),
                ("bytes", .hex(t.accept)), ("wire", wire(t.accept)))),
            ("confirm", obj(
                ("initiator_transcript_hash", .hex(initiatorHash)),
                ("initiator_signed_bytes", .hex(initiatorSigned)),
                ("bytes", .hex(t.confirm)), ("wire", wire(t.confirm)))),
        ]
    }

    // MARK: - Sealed frames

    /// The plaintexts of the first two frames in each direction, and of the rekeyed frame:
    /// chunk-exchange messages of chunk-exchange.json and a gossip message of gossip-envelopes.json.
    static func plaintexts() throws -> (toResponder: [(String, [UInt8])], toInitiator: [(String, [UInt8])], rekeyed: (String, [UInt8])) {
        let m = chunkExchangeMessages()
        func blob(_ i: Int) -> (String, [UInt8]) { ("chunk-exchange.json: \(m[i].0)", m[i].1.encoded) }
        let ping = Envelope(sender: VectorKeys.alice.id, incarnation: 3, counter: 1,
                            message: .ping(seq: 1, target: VectorKeys.bob.id, updates: [GossipVectors.aliceAlive()],
                                           adverts: [EntryRef(origin: VectorKeys.alice.id, sequence: 2)]))
        let gossip = ("0x01 (gossip) then gossip-envelopes.json: the ping envelope",
                      [PeerSession.MessageType.gossip.rawValue] + ping.encode(signer: VectorKeys.alice.identity))
        return ([blob(0), gossip], [blob(1), blob(4)], blob(8))
    }

    static func frame(_ direction: String, keyName: String, key: [UInt8], counter: UInt64, _ p: (String, [UInt8]),
                      sealed: [UInt8]) -> VJ {
        obj(("direction", .string(direction)), ("counter", .n(counter)), ("key", .string(keyName)), ("key_bytes", .hex(key)),
            ("nonce", .hex(nonce(counter))), ("plaintext_is", .string(p.0)), ("plaintext", .hex(p.1)),
            ("sealed", .hex(sealed)), ("wire", wire(sealed)))
    }

    static func session(_ t: Transcript, suite: CipherSuite, keys k: Keys) throws -> VJ {
        #expect(t.initiator.suite == suite && t.responder.suite == suite)
        let p = try plaintexts()
        var frames: [VJ] = []
        for (n, m) in p.toResponder.enumerated() {
            let s = try t.initiator.seal(m.1)
            #expect(s == seal(suite, key: k.initiatorTx, counter: UInt64(n), m.1), "initiator frame \(n) is AEAD(initiator tx, nonce(\(n)), plaintext)")
            #expect(try t.responder.open(s) == m.1)
            frames.append(frame("initiator to responder", keyName: "initiator_tx, key 0", key: k.initiatorTx, counter: UInt64(n), m, sealed: s))
        }
        for (n, m) in p.toInitiator.enumerated() {
            let s = try t.responder.seal(m.1)
            #expect(s == seal(suite, key: k.initiatorRx, counter: UInt64(n), m.1), "responder frame \(n) is AEAD(responder tx, nonce(\(n)), plaintext)")
            #expect(try t.initiator.open(s) == m.1)
            frames.append(frame("responder to initiator", keyName: "responder_tx, key 0", key: k.initiatorRx, counter: UInt64(n), m, sealed: s))
        }
        // Frames 2 … 16383 are keepalive-sized empty messages; frame 16384 is the first under key 1.
        let first = UInt64(p.toResponder.count)
        for c in first..<SecureChannel.rekeyIntervalFrames {
            #expect(try t.responder.open(t.initiator.seal([])) == [], "filler frame \(c)")
        }
        let m = p.rekeyed
        let key1 = rekey(k.initiatorTx)
        let s = try t.initiator.seal(m.1)
        #expect(s == seal(suite, key: key1, counter: SecureChannel.rekeyIntervalFrames, m.1), "frame 16384 is sealed under key 1")
        #expect(try t.responder.open(s) == m.1)
        return obj(
            ("suite", .string(suite.description)),
            ("suite_code", .n(suite.rawValue)),
            ("handshake", .object(try handshakeFrames(t))),
            ("frames", .array(frames)),
            ("rekeyed_frame", frame("initiator to responder", keyName: "initiator_tx, key 1", key: key1,
                                    counter: SecureChannel.rekeyIntervalFrames, m, sealed: s)),
            ("rekeyed_frame_note", .string("frames 2 to 16383 from the initiator (sealed under key 0, contents irrelevant) come before it")))
    }

    static func sessions() throws -> VJ {
        let k = keys()
        let aes = try codeHandshake()
        #expect(aes.hello[69] == 0x03 && aes.accept[69] == CipherSuite.aes256gcm.rawValue)
        let chacha = try chachaHandshake(codeHello: aes.hello)
        let identity = { (n: VectorKeys.Named, sk: [UInt8], pk: [UInt8]) -> VJ in
            obj(("identity", .string(n.name)), ("id", .hex(n.id.key.bytes)), ("ephemeral_secret", .hex(sk)), ("ephemeral_public", .hex(pk)))
        }
        return obj(
            ("description", .string("""
                A session between alice (initiator) and bob (responder) with fixed ephemeral X25519 keys \
                (RFC 7748 section 6.1's Alice and Bob), for both AEAD suites: the three handshake frames \
                (bytes is the frame payload, wire adds the u32 length prefix), the transcript hashes and \
                signed bytes, the crypto_kx session keys, the first two sealed frames in each direction \
                (nonce = 4 zero bytes then the u64 frame counter; sealed = ciphertext then 16-byte tag, no \
                additional data) and frame 16384, the first under rekeyed key 1. The AES-256-GCM session \
                is what two meshnode hosts with AES-GCM negotiate (hello offers 0x03); the \
                ChaCha20-Poly1305 session is the same hello with ciphers = 0x01 (an initiator without \
                AES-GCM). Both reuse the same ephemeral keys, so they share the session keys: keys do not \
                depend on the suite. (A real node never reuses an ephemeral key.) bob admits alice by \
                the certificate in her hello; alice expects bob.
                """)),
            ("spec", .string("docs/PROTOCOL.md section 8.1 (framing), 8.2 (handshake), 8.3 (sealed frames, rekeying)")),
            ("initiator", identity(VectorKeys.alice, VectorKeys.initiatorEphemeralSecret, k.initiatorEphPublic)),
            ("responder", identity(VectorKeys.bob, VectorKeys.responderEphemeralSecret, k.responderEphPublic)),
            ("key_exchange", obj(
                ("x25519_shared", .hex(k.shared)),
                ("blake2b_512_input", .hex(k.kxInput)),
                ("blake2b_512", .hex(k.kx)),
                ("initiator_rx", .hex(k.initiatorRx)), ("initiator_tx", .hex(k.initiatorTx)),
                ("responder_rx", .hex(k.initiatorTx)), ("responder_tx", .hex(k.initiatorRx)))),
            ("rekey", obj(
                ("message", .hex(rekeyMessage)),
                ("initiator_tx_key_1", .hex(rekey(k.initiatorTx))),
                ("responder_tx_key_1", .hex(rekey(k.initiatorRx))))),
            ("sessions", .array([try session(aes, suite: .aes256gcm, keys: k), try session(chacha, suite: .chacha20poly1305, keys: k)])))
    }

    // MARK: - §9 chunk exchange

    static func blobFields(_ m: BlobMessage) -> VJ {
        switch m {
        case let .wantRecipe(id, c), let .wantHave(id, c):
            obj(("request_id", .n(id)), ("content_id", .hex(c.digest.bytes)))
        case let .recipe(id, c, size, cs, chunks):
            obj(("request_id", .n(id)), ("content_id", .hex(c.digest.bytes)), ("size", .n(size)), ("chunk_size", .n(cs)),
                ("count", .n(chunks.count)), ("hashes", .array(chunks.map { .hex($0.digest.bytes) })))
        case let .have(id, c, n, bitmap):
            obj(("request_id", .n(id)), ("content_id", .hex(c.digest.bytes)), ("count", .n(n)), ("bitmap", .hex(bitmap)))
        case let .get(id, c, indices, priority) where priority == .normal:
            obj(("request_id", .n(id)), ("content_id", .hex(c.digest.bytes)), ("indices", .array(indices.map(VJ.n))))
        case let .get(id, c, indices, priority):
            obj(("request_id", .n(id)), ("content_id", .hex(c.digest.bytes)), ("indices", .array(indices.map(VJ.n))),
                ("priority", .n(priority.rawValue)))
        case let .chunk(id, index, data):
            obj(("request_id", .n(id)), ("index", .n(index)), ("data", .hex(data)))
        case let .error(id, code, message):
            obj(("request_id", .n(id)), ("code", .n(code.rawValue)), ("message", .string(message)))
        case let .cancel(id):
            obj(("request_id", .n(id)))
        case let .chunkPiece(id, index, total, offset, data):
            obj(("request_id", .n(id)), ("index", .n(index)), ("chunk_bytes", .n(total)), ("offset", .n(offset)), ("data", .hex(data)))
        }
    }

    static func chunkExchangeMessages() -> [(String, BlobMessage)] {
        let r = PrimitiveVectors.recipe(of: .pattern, chunkSize: 4096)
        let data = PrimitiveVectors.SampleFile.pattern.data
        let c = r.contentID
        return [
            ("want_recipe", .wantRecipe(requestID: 1, contentID: c)),
            ("recipe", .recipe(requestID: 1, contentID: c, sizeBytes: r.sizeBytes, chunkSizeBytes: r.chunkSizeBytes, chunks: r.chunks)),
            ("want_have", .wantHave(requestID: 2, contentID: c)),
            ("have: chunks 0 and 2 held", .have(requestID: 2, contentID: c, chunkCount: 3, bitmap: ChunkBitmap.make(count: 3) { $0 != 1 })),
            ("have, unsolicited (request id 0): the item is complete",
             .have(requestID: 0, contentID: c, chunkCount: 3, bitmap: ChunkBitmap.make(count: 3) { _ in true })),
            ("get chunks 2 and 0", .get(requestID: 3, contentID: c, indices: [2, 0])),
            ("chunk 2 (the short last chunk, 1808 bytes)", .chunk(requestID: 3, index: 2, data: Array(data[8192...]))),
            ("error: not held", .error(requestID: 4, code: .notHeld, message: "chunk 1 is not held here")),
            ("cancel", .cancel(requestID: 3)),
            ("chunk_piece: the last 16 bytes of a chunk of 8 MiB + 16 bytes (a 16 MiB-chunk store's short last chunk would look alike)",
             .chunkPiece(requestID: 5, index: 0, chunkBytes: 8_388_624, offset: 8_388_608, data: Array(data[0..<16]))),
            ("get chunk 1 at priority critical (the optional priority byte; absent means normal)",
             .get(requestID: 6, contentID: c, indices: [1], priority: .critical)),
        ]
    }

    static func chunkExchange() throws -> VJ {
        var rows: [VJ] = []
        for (what, m) in chunkExchangeMessages() {
            let bytes = m.encoded
            #expect(try BlobMessage.decode(bytes) == m, "\(what) decodes to what was encoded")
            rows.append(obj(("name", .string(what)), ("type", .n(bytes[0])), ("fields", blobFields(m)), ("encoded", .hex(bytes))))
        }
        return obj(
            ("description", .string("""
                Chunk-exchange messages for the item pattern-10000 of content-ids.json (chunk size 4096, \
                3 chunks). encoded is the plaintext of one sealed frame: the type byte, the u32 request id, \
                then the body. A have bitmap is LSB-first: bit i of byte i/8 is chunk i. The chunk message's \
                data hashes (BLAKE2b-256) to the recipe's hash at its index.
                """)),
            ("spec", .string("docs/PROTOCOL.md section 9.1 (messages)")),
            ("messages", .array(rows)))
    }
}
