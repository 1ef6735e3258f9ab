import CSodium
import Foundation
import Testing
@testable import Gossip
@testable import Mesh

/// A real Ed25519 signer straight from libsodium, for tests of the session layer.
private final class TestEd25519: Signer, SignatureVerifier, @unchecked Sendable {
    let nodeID: NodeID
    private var sk = [UInt8](repeating: 0, count: 64)
    init() {
        _ = sodium_init()
        var pk = [UInt8](repeating: 0, count: 32)
        crypto_sign_keypair(&pk, &sk)
        nodeID = NodeID(key: Bytes32(bytes: pk)!)
    }
    func sign(_ m: [UInt8]) -> Signature {
        var s = [UInt8](repeating: 0, count: 64)
        crypto_sign_detached(&s, nil, m, UInt64(m.count), sk)
        return Signature(bytes: s)!
    }
    func verify(_ s: Signature, of m: [UInt8], by k: NodeID) -> Bool {
        crypto_sign_verify_detached(s.bytes, m, UInt64(m.count), k.key.bytes) == 0
    }
}

private func establish(_ a: TestEd25519, _ b: TestEd25519, expected: NodeID? = nil,
                       offerTunnel: Bool = false, acceptTunnel: Bool = false,
                       admitByB: @escaping @Sendable (NodeID, [UInt8]) -> Bool = { _, _ in true })
    throws -> (SecureChannel, SecureChannel, NodeID, NodeID) {
    var i = SessionHandshake(role: .initiator, signer: a, verifier: a, credential: [1, 2, 3], expectedPeer: expected,
                             tunnelSuite: offerTunnel) { _, _ in true }
    var r = SessionHandshake(role: .responder, signer: b, verifier: b, tunnelSuite: acceptTunnel, admit: admitByB)
    let hello = i.start()
    guard case .send(let accept) = try r.receive(hello) else { Issue.record("responder did not answer"); throw SessionError.malformed("x") }
    guard case .established(let ic, let rPeer, _, let confirm?) = try i.receive(accept) else { throw SessionError.malformed("x") }
    guard case .established(let rc, let iPeer, let cred, nil) = try r.receive(confirm) else { throw SessionError.malformed("x") }
    #expect(cred == [1, 2, 3])
    return (ic, rc, rPeer, iPeer)
}

@Suite struct SecureSessionTests {
    @Test func bothSidesLearnEachOthersIdentityAndExchangeFramesBothWays() throws {
        let a = TestEd25519(), b = TestEd25519()
        let (ia, rb, seenByA, seenByB) = try establish(a, b, expected: b.nodeID)
        #expect(seenByA == b.nodeID)
        #expect(seenByB == a.nodeID)
        for n in [0, 1, 100, 70_000] {
            let m = (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 7) }
            #expect(try rb.open(ia.seal(m)) == m)
            #expect(try ia.open(rb.seal(m)) == m)
        }
    }

    @Test func aTamperedReplayedOrReorderedFrameFailsAuthentication() throws {
        let (ia, rb, _, _) = try establish(TestEd25519(), TestEd25519())
        var f = try ia.seal([1, 2, 3, 4])
        f[1] ^= 0x40
        #expect(throws: SessionError.authenticationFailed) { try rb.open(f) }
        let (ia2, rb2, _, _) = try establish(TestEd25519(), TestEd25519())
        let f0 = try ia2.seal([0]), f1 = try ia2.seal([1])
        #expect(throws: SessionError.authenticationFailed) { try rb2.open(f1) }
        #expect(try rb2.open(f0) == [0])
        #expect(throws: SessionError.authenticationFailed) { try rb2.open(f0) }
        #expect(try rb2.open(f1) == [1])
    }

    @Test func theInitiatorRefusesAResponderWithAnotherIdentity() throws {
        let a = TestEd25519(), b = TestEd25519(), c = TestEd25519()
        #expect(throws: SessionError.self) { _ = try establish(a, b, expected: c.nodeID) }
    }

    @Test func theResponderRefusesAnUntrustedInitiator() throws {
        let a = TestEd25519(), b = TestEd25519()
        #expect(throws: SessionError.notAdmitted(a.nodeID)) { _ = try establish(a, b) { _, _ in false } }
    }

    @Test func aConfirmationSignedByAnotherKeyIsRefused() throws {
        let a = TestEd25519(), b = TestEd25519(), mallory = TestEd25519()
        var i = SessionHandshake(role: .initiator, signer: a, verifier: a) { _, _ in true }
        var r = SessionHandshake(role: .responder, signer: b, verifier: b) { _, _ in true }
        guard case .send(let accept) = try r.receive(i.start()) else { Issue.record("no accept"); return }
        guard case .established(_, _, _, _?) = try i.receive(accept) else { Issue.record("no confirm"); return }
        let forged = mallory.sign([0]).bytes
        #expect(throws: SessionError.badSignature(a.nodeID)) { _ = try r.receive(forged) }
    }

    @Test func garbageHandshakeFramesAreRejectedWithoutCrashing() {
        var seed: UInt64 = 7
        let b = TestEd25519()
        for n in 0..<400 {
            var r = SessionHandshake(role: .responder, signer: b, verifier: b) { _, _ in true }
            var junk = [UInt8]()
            for _ in 0..<(n % 180) { seed = seed &* 6364136223846793005 &+ 1; junk.append(UInt8(seed >> 56)) }
            if n % 3 == 0 { junk = SessionHandshake.magic + [1] + junk }
            _ = try? r.receive(junk)
        }
        let a = TestEd25519()
        var i = SessionHandshake(role: .initiator, signer: a, verifier: a) { _, _ in true }
        let hello = i.start()
        for cut in 0..<hello.count {
            var r = SessionHandshake(role: .responder, signer: b, verifier: b) { _, _ in true }
            #expect(throws: SessionError.self) { _ = try r.receive(Array(hello[..<cut])) }
        }
    }

    @Test func sealingAndOpeningInPlaceRoundTripsAtEverySizeWithoutMovingTheMessage() throws {
        let (ia, rb, _, _) = try establish(TestEd25519(), TestEd25519())
        #expect(ia.suite != .sshTunnel)
        for n in [1, 15, 16, 17, 4096, 300_007] {
            let m = (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ 1) }
            let frame = OutgoingFrame(message: m)
            let before = frame.message.baseAddress
            try ia.seal(frame: frame)
            #expect(frame.message.baseAddress == before)
            #expect(frame.messageCount == n + SecureChannel.tagBytes)
            frame.writeLengthPrefix()
            let wire = Array(frame.bytes)
            #expect(Array(wire[0..<4]) == FrameDecoder.header(length: n + SecureChannel.tagBytes))
            var payload = Array(wire[4...])
            // Really encrypted (a message shorter than 16 bytes may match by chance: 1 in 256 at n = 1).
            #expect(n < 16 || payload[0..<min(n, 32)] != m[0..<min(n, 32)])
            let opened = try rb.open(inPlace: &payload)
            #expect(opened == n)
            #expect(Array(payload[0..<opened]) == m)
        }
    }

    @Test func theTunnelSuiteIsChosenOnlyWhenTheInitiatorOffersItAndTheResponderAcceptsIt() throws {
        let a = TestEd25519(), b = TestEd25519()
        let (ia, rb, _, _) = try establish(a, b, offerTunnel: true, acceptTunnel: true)
        #expect(ia.suite == .sshTunnel && rb.suite == .sshTunnel)
        // Frames pass unchanged: ssh protects them.
        let m: [UInt8] = [0x15, 1, 2, 3]
        #expect(try ia.seal(m) == m)
        #expect(try rb.open(m) == m)
        for (offer, accept) in [(true, false), (false, true), (false, false)] {
            let (i2, r2, _, _) = try establish(a, b, offerTunnel: offer, acceptTunnel: accept)
            #expect(i2.suite != .sshTunnel && r2.suite == i2.suite, "offer \(offer), accept \(accept)")
        }
    }

    @Test func anInitiatorThatDidNotOfferTheTunnelSuiteRefusesAnAcceptThatPicksIt() throws {
        let a = TestEd25519(), b = TestEd25519()
        var i = SessionHandshake(role: .initiator, signer: a, verifier: a) { _, _ in true }
        var r = SessionHandshake(role: .responder, signer: b, verifier: b, tunnelSuite: true) { _, _ in true }
        var hello = i.start()
        hello[4 + 1 + 32 + 32] |= CipherSuite.sshTunnel.rawValue  // the ciphers byte, tampered in transit
        guard case .send(let accept) = try r.receive(hello) else { Issue.record("no accept"); return }
        #expect(throws: SessionError.noCommonCipher) { _ = try i.receive(accept) }
    }

    @Test func loopbackHostsAreRecognisedAndOthersAreNot() {
        for h in ["127.0.0.1", "127.88.3.1", "::1", "::ffff:127.0.0.1", "localhost", "LOCALHOST"] {
            #expect(Endpoint.isLoopback(host: h), "\(h)")
        }
        for h in ["10.0.0.1", "128.0.0.1", "::2", "::ffff:10.0.0.1", "gpu-3", "0.0.0.0", "", "127.0.0", "fe80::1"] {
            #expect(!Endpoint.isLoopback(host: h), "\(h)")
        }
    }

    @Test func bothDirectionsMoveToTheNextKeyEveryRekeyIntervalAndStayInStep() throws {
        for _ in 0..<2 {  // AES-256-GCM where available; the loop repeats with fresh keys
            let (ia, rb, _, _) = try establish(TestEd25519(), TestEd25519())
            ia.rekeyInterval = 4
            rb.rekeyInterval = 4
            for k in 0..<19 {
                let m = [UInt8(k), 7, 7]
                #expect(try rb.open(ia.seal(m)) == m, "frame \(k) a→b")
                #expect(try ia.open(rb.seal(m)) == m, "frame \(k) b→a")
            }
        }
        // A receiver that does not move to the next key at frame 4 cannot open it: the key
        // really changes.
        let (ia, rb, _, _) = try establish(TestEd25519(), TestEd25519())
        ia.rekeyInterval = 4
        rb.rekeyInterval = 8
        for k in 0..<4 { _ = try rb.open(ia.seal([UInt8(k)])) }
        #expect(throws: SessionError.authenticationFailed) { try rb.open(ia.seal([4])) }
        #expect(SecureChannel.rekeyIntervalFrames * 16 << 20 <= 256 << 30)
    }
}

/// BLAKE2b-256 straight from libsodium, independent of the code under test.
private func blake2b256(_ m: [UInt8]) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: 32)
    crypto_generichash(&out, 32, m, UInt64(m.count), nil, 0)
    return out
}

/// docs/PROTOCOL.md, for checks that the text states what the code does.
private func protocolText() throws -> String {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    return try String(contentsOf: root.appendingPathComponent("docs/PROTOCOL.md"), encoding: .utf8)
}

@Suite struct HandshakeWireTests {
    /// PROTOCOL §8.2: hello is 104 bytes plus the credential (≤ 256), accept 136 plus it, confirm
    /// 64. The text used to say 334 for a hello that is really 360 bytes.
    @Test func handshakeMessagesAreTheSizesTheSpecStatesAndNoLargerOneIsAccepted() throws {
        let a = TestEd25519(), b = TestEd25519()
        let credential = [UInt8](repeating: 0xa5, count: SessionHandshake.maxCredentialBytes)
        var i = SessionHandshake(role: .initiator, signer: a, verifier: a, credential: credential) { _, _ in true }
        var r = SessionHandshake(role: .responder, signer: b, verifier: b, credential: credential) { _, _ in true }
        let hello = i.start()
        #expect(hello.count == 360 && SessionHandshake.maxHelloBytes == 360)
        guard case .send(let accept) = try r.receive(hello) else { Issue.record("no accept"); return }
        #expect(accept.count == 392 && SessionHandshake.maxAcceptBytes == 392)
        guard case .established(_, _, _, let confirm?) = try i.receive(accept) else { Issue.record("no confirm"); return }
        #expect(confirm.count == 64 && SessionHandshake.confirmBytes == 64)
        guard case .established = try r.receive(confirm) else { Issue.record("not established"); return }
        #expect(SessionHandshake.maxHandshakeFrameBytes <= PeerSession.maxHandshakeFrameBytes)

        // One byte more than the maximum is refused by its size, before it is parsed.
        var r2 = SessionHandshake(role: .responder, signer: b, verifier: b) { _, _ in true }
        #expect(throws: SessionError.malformed("hello of 361 bytes, over its 360-byte maximum")) { _ = try r2.receive(hello + [0]) }
        var i2 = SessionHandshake(role: .initiator, signer: a, verifier: a) { _, _ in true }
        _ = i2.start()
        #expect(throws: SessionError.malformed("accept of 393 bytes, over its 392-byte maximum")) { _ = try i2.receive(accept + [0]) }
        var i3 = SessionHandshake(role: .initiator, signer: a, verifier: a, credential: credential) { _, _ in true }
        var r3 = SessionHandshake(role: .responder, signer: b, verifier: b) { _, _ in true }
        guard case .send(let accept3) = try r3.receive(i3.start()), case .established(_, _, _, let confirm3?) = try i3.receive(accept3) else {
            Issue.record("no confirm"); return
        }
        #expect(throws: SessionError.malformed("confirm of 65 bytes, over its 64-byte maximum")) { _ = try r3.receive(confirm3 + [0]) }

        // The specification says the same.
        let text = try protocolText()
        #expect(text.contains("at most **360** bytes"))
        #expect(text.contains("at most **392** bytes"))
        #expect(text.contains("exactly **64** bytes"))
        #expect(text.contains("`blob16` is a `u16` byte length"))
    }

    /// PROTOCOL §8.2: the transcript is the frame payloads without their u32 length prefixes;
    /// the responder signs domain ‖ BLAKE2b-256(hello ‖ accept without its signature), the
    /// initiator domain ‖ BLAKE2b-256(hello ‖ accept). Checked here with libsodium alone.
    @Test func theHandshakeSignaturesCoverThePayloadsWithoutTheirLengthPrefixes() throws {
        let a = TestEd25519(), b = TestEd25519()
        var i = SessionHandshake(role: .initiator, signer: a, verifier: a, credential: [1, 2, 3]) { _, _ in true }
        var r = SessionHandshake(role: .responder, signer: b, verifier: b) { _, _ in true }
        let hello = i.start()
        guard case .send(let accept) = try r.receive(hello) else { Issue.record("no accept"); return }
        guard case .established(_, _, _, let confirm?) = try i.receive(accept) else { Issue.record("no confirm"); return }
        let responderDomain = Array("meshnode/session/v1/responder\0".utf8)
        let initiatorDomain = Array("meshnode/session/v1/initiator\0".utf8)
        #expect(responderDomain.count == 30 && initiatorDomain.count == 30)
        let unsigned = Array(accept.dropLast(64))
        let signature = Array(accept.suffix(64))
        let signedByResponder = responderDomain + blake2b256(hello + unsigned)
        #expect(signedByResponder.count == 62)
        #expect(crypto_sign_verify_detached(signature, signedByResponder, 62, b.nodeID.key.bytes) == 0)
        let signedByInitiator = initiatorDomain + blake2b256(hello + accept)
        #expect(crypto_sign_verify_detached(confirm, signedByInitiator, 62, a.nodeID.key.bytes) == 0)
        // With the length prefixes in the transcript the signatures would not verify.
        let prefixed = responderDomain + blake2b256(FrameDecoder.header(length: hello.count) + hello + FrameDecoder.header(length: accept.count) + unsigned)
        #expect(crypto_sign_verify_detached(signature, prefixed, 62, b.nodeID.key.bytes) != 0)
    }
}

@Suite struct OutgoingFrameTests {
    @Test func aPageAlignedFramePutsTheChosenMessageByteOnAPageBoundaryAndKeepsItsRoom() {
        for k in [0, 9, 13, 4095, 5000] {
            let f = OutgoingFrame(messageCapacity: k + 8192, pageAlignedAt: k)
            f.appendInPlace(maxBytes: k) { _ in k }
            #expect(Int(bitPattern: f.message.baseAddress! + k) % 4096 == 0, "k = \(k)")
            #expect(f.spareCapacity == 8192)
        }
    }

    @Test func theLengthPrefixCountsEverythingAfterTheHeadroom() {
        let f = OutgoingFrame(messageCapacity: 9)
        f.append(0x15)
        f.appendU32(0x0102_0304)
        f.append([9, 9, 9, 9])
        f.writeLengthPrefix()
        #expect(Array(f.bytes) == [0, 0, 0, 9, 0x15, 1, 2, 3, 4, 9, 9, 9, 9])
        #expect(f.messageCount == 9)
    }
}
