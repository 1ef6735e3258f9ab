import CSodium
import Gossip
import Store

/// An authenticated, encrypted session between two meshnode identities over any
/// reliable byte stream (direct TCP, an `ssh -W` tunnel, a SOCKS5-proxied connection).
///
/// Three framed messages (docs/PROTOCOL.md §8.2), SIGMA-style: each side proves
/// possession of its long-term Ed25519 key by signing a hash of the transcript, which
/// binds its identity to both fresh X25519 keys. The session keys come from
/// libsodium's `crypto_kx` over the ephemeral keys, so compromise of a long-term key
/// later does not reveal past sessions (forward secrecy).
///
/// ```
/// initiator                                    responder
///   hello(id_i, eph_i, ciphers, credential_i, expected_r) ─►
///                 ◄─ accept(id_r, eph_r, cipher, credential_r, sig_r)
///   confirm(sig_i) ─►
/// ```
///
/// This type is sans-IO: feed it the frames that arrive, send the frames it returns.
public struct SessionHandshake: ~Copyable {
    public enum Role: Sendable { case initiator, responder }

    /// What the handshake wants the caller to do next.
    public enum Step {
        /// Send this frame and wait for the next one.
        case send([UInt8])
        /// The session is up (after sending `finalFrame`, if any).
        case established(SecureChannel, peer: NodeID, peerCredential: [UInt8], finalFrame: [UInt8]?)
    }

    public static let magic: [UInt8] = Array("MNS1".utf8)
    public static let version: UInt8 = 1
    public static let maxCredentialBytes = 256
    /// hello = magic, version, initiator id, ephemeral key, ciphers, credential (blob16),
    /// expected id: 104 bytes plus the credential, at most 360 (PROTOCOL §8.2).
    public static let maxHelloBytes = 4 + 1 + 32 + 32 + 1 + 2 + maxCredentialBytes + 32
    /// accept = magic, version, responder id, ephemeral key, cipher, credential (blob16),
    /// signature: 136 bytes plus the credential, at most 392.
    public static let maxAcceptBytes = 4 + 1 + 32 + 32 + 1 + 2 + maxCredentialBytes + 64
    /// confirm = one signature, exactly.
    public static let confirmBytes = 64
    /// No handshake frame is larger than this.
    public static let maxHandshakeFrameBytes = max(maxHelloBytes, maxAcceptBytes)

    static let responderDomain = Array("meshnode/session/v1/responder\0".utf8)
    static let initiatorDomain = Array("meshnode/session/v1/initiator\0".utf8)

    private let role: Role
    private let signer: any Signer
    private let verifier: any SignatureVerifier
    private let credential: [UInt8]
    private let expectedPeer: NodeID?
    private let admit: @Sendable (NodeID, [UInt8]) -> Bool
    private let tunnelSuite: Bool
    private var ephemeral: EphemeralKeyPair  // var only for `useFixedEphemeralKey` (tests)
    private var transcript: [UInt8] = []
    private var state: State = .idle
    private var peerID: NodeID?
    private var peerCredential: [UInt8] = []
    private var peerEphemeral: Bytes32?
    private var cipher: CipherSuite = .chacha20poly1305

    private enum State { case idle, sentHello, sentAccept, done, failed }

    /// - Parameters:
    ///   - expectedPeer: the identity the initiator means to reach (nil when unknown,
    ///     e.g. dialling a seed address); a responder with another identity is refused.
    ///   - admit: the admission decision for the peer's identity and credential.
    ///   - tunnelSuite: initiator: offer `CipherSuite.sshTunnel` (only when this stream is an
    ///     SSH tunnel whose far end dials a loopback address); responder: accept it if offered
    ///     (only when the stream comes from a loopback address). See `CipherSuite.sshTunnel`.
    public init(role: Role, signer: any Signer, verifier: any SignatureVerifier, credential: [UInt8] = [],
                expectedPeer: NodeID? = nil, tunnelSuite: Bool = false,
                admit: @escaping @Sendable (NodeID, [UInt8]) -> Bool) {
        precondition(credential.count <= Self.maxCredentialBytes)
        Sodium.ensureInitialized()
        self.role = role
        self.signer = signer
        self.verifier = verifier
        self.credential = credential
        self.expectedPeer = expectedPeer
        self.admit = admit
        self.tunnelSuite = tunnelSuite
        self.ephemeral = EphemeralKeyPair()
    }

    /// Test seam, never used by the node: replaces the fresh ephemeral key with a fixed one
    /// before the first frame, so that a transcript is reproducible (docs/test-vectors).
    mutating func useFixedEphemeralKey(secretKey: [UInt8]) {
        precondition(state == .idle, "the ephemeral key is fixed before the handshake starts")
        ephemeral = EphemeralKeyPair(secretKey: secretKey)
    }

    /// The initiator's first frame.
    public mutating func start() -> [UInt8] {
        precondition(role == .initiator && state == .idle)
        var w = writeHeader()
        w.u8(offeredMask)
        w.blob16(credential)
        w.bytes32(expectedPeer?.key ?? .zero)
        transcript = w.bytes
        state = .sentHello
        return w.bytes
    }

    /// Feeds one received handshake frame.
    public mutating func receive(_ frame: [UInt8]) throws(SessionError) -> Step {
        // Each message has an exact maximum (PROTOCOL §8.2); a frame over it is refused before
        // it is parsed at all.
        let limit: (name: String, bytes: Int)
        switch (role, state) {
        case (.responder, .idle): limit = ("hello", Self.maxHelloBytes)
        case (.initiator, .sentHello): limit = ("accept", Self.maxAcceptBytes)
        default: limit = ("confirm", Self.confirmBytes)
        }
        guard frame.count <= limit.bytes else {
            state = .failed
            throw .malformed("\(limit.name) of \(frame.count) bytes, over its \(limit.bytes)-byte maximum")
        }
        do {
            switch (role, state) {
            case (.responder, .idle): return try onHello(frame)
            case (.initiator, .sentHello): return try onAccept(frame)
            case (.responder, .sentAccept): return try onConfirm(frame)
            default:
                state = .failed
                throw SessionError.protocolViolation("unexpected handshake frame")
            }
        } catch let e as SessionError {
            state = .failed
            throw e
        } catch {
            state = .failed
            throw .malformed("\(error)")
        }
    }

    /// The `ciphers` mask of this side's hello.
    private var offeredMask: UInt8 {
        CipherSuite.locallySupportedMask | (tunnelSuite ? CipherSuite.sshTunnel.rawValue : 0)
    }

    /// Writes what `readHeader` reads: the start of this side's hello or accept.
    private func writeHeader() -> ByteWriter {
        var w = ByteWriter(capacity: Self.maxHandshakeFrameBytes)
        w.raw(Self.magic)
        w.u8(Self.version)
        w.bytes32(signer.nodeID.key)
        w.bytes32(ephemeral.publicKey)
        return w
    }

    /// magic, version, the sender's identity and its ephemeral key: the start of hello and accept.
    private static func readHeader(_ r: inout ByteReader) throws -> (NodeID, Bytes32) {
        guard try r.raw(4) == magic else { throw SessionError.malformed("bad magic") }
        let v = try r.u8()
        guard v == version else { throw SessionError.unsupportedVersion(v) }
        return (NodeID(key: try r.bytes32()), try r.bytes32())
    }

    private mutating func onHello(_ frame: [UInt8]) throws -> Step {
        var r = ByteReader(frame)
        let (peer, peerEph) = try Self.readHeader(&r)
        let theirCiphers = try r.u8()
        let cred = try r.blob16(field: "credential", limit: Self.maxCredentialBytes)
        let expected = try r.bytes32()
        try r.expectEnd()
        guard expected == .zero || expected == signer.nodeID.key else {
            throw SessionError.wrongPeer(expected: NodeID(key: expected), actual: signer.nodeID)
        }
        guard admit(peer, cred) else { throw SessionError.notAdmitted(peer) }
        guard let suite = CipherSuite.choose(theirMask: theirCiphers, allowTunnel: tunnelSuite) else { throw SessionError.noCommonCipher }
        cipher = suite
        peerID = peer
        peerCredential = cred
        peerEphemeral = peerEph
        transcript = frame

        var w = writeHeader()
        w.u8(suite.rawValue)
        w.blob16(credential)
        transcript += w.bytes
        let sig = signer.sign(Self.responderDomain + Blake2b256.hash(transcript).bytes)
        w.raw(sig.bytes)
        transcript = frame + w.bytes
        state = .sentAccept
        return .send(w.bytes)
    }

    private mutating func onAccept(_ frame: [UInt8]) throws -> Step {
        var r = ByteReader(frame)
        let (peer, peerEph) = try Self.readHeader(&r)
        // Only a suite this side offered: a responder cannot talk us out of encryption.
        guard let suite = CipherSuite(rawValue: try r.u8()), offeredMask & suite.rawValue != 0 else {
            throw SessionError.noCommonCipher
        }
        let cred = try r.blob16(field: "credential", limit: Self.maxCredentialBytes)
        let signedPart = Array(frame[0..<r.offset])
        guard let sig = Signature(bytes: try r.raw(64)) else { throw SessionError.malformed("signature") }
        try r.expectEnd()
        if let expectedPeer, expectedPeer != peer { throw SessionError.wrongPeer(expected: expectedPeer, actual: peer) }
        guard verifier.verify(sig, of: Self.responderDomain + Blake2b256.hash(transcript + signedPart).bytes, by: peer) else {
            throw SessionError.badSignature(peer)
        }
        guard admit(peer, cred) else { throw SessionError.notAdmitted(peer) }
        transcript += frame
        let confirm = signer.sign(Self.initiatorDomain + Blake2b256.hash(transcript).bytes).bytes
        let channel = try SecureChannel(suite: suite, role: .initiator, ephemeral: ephemeral, peerEphemeral: peerEph)
        state = .done
        return .established(channel, peer: peer, peerCredential: cred, finalFrame: confirm)
    }

    private mutating func onConfirm(_ frame: [UInt8]) throws -> Step {
        guard let sig = Signature(bytes: frame), let peer = peerID, let peerEph = peerEphemeral else {
            throw SessionError.malformed("confirm frame")
        }
        guard verifier.verify(sig, of: Self.initiatorDomain + Blake2b256.hash(transcript).bytes, by: peer) else {
            throw SessionError.badSignature(peer)
        }
        let channel = try SecureChannel(suite: cipher, role: .responder, ephemeral: ephemeral, peerEphemeral: peerEph)
        state = .done
        return .established(channel, peer: peer, peerCredential: peerCredential, finalFrame: nil)
    }
}

/// Why a session could not be set up or a frame was refused; each case is a counted reason.
public enum SessionError: Error, Equatable, Sendable, CustomStringConvertible {
    case malformed(String)
    case unsupportedVersion(UInt8)
    case protocolViolation(String)
    case wrongPeer(expected: NodeID, actual: NodeID)
    case notAdmitted(NodeID)
    case badSignature(NodeID)
    case noCommonCipher
    case keyExchangeFailed
    case authenticationFailed
    case counterExhausted

    /// The name it is counted under (docs/PROTOCOL.md Appendix B).
    public var counter: RejectCounter {
        switch self {
        case .malformed: .malformed
        case .unsupportedVersion: .unsupportedVersion
        case .protocolViolation: .protocolViolation
        case .wrongPeer: .wrongPeer
        case .notAdmitted: .untrustedKey
        case .badSignature: .badSignature
        case .noCommonCipher: .noCommonCipher
        case .keyExchangeFailed: .keyExchangeFailed
        case .authenticationFailed: .frameAuthenticationFailed
        case .counterExhausted: .counterExhausted
        }
    }

    /// A stable, metric-friendly name: `counter`'s.
    public var reason: String { counter.rawValue }

    public var description: String {
        switch self {
        case .malformed(let what): "malformed session frame (\(what))"
        case .unsupportedVersion(let v): "peer speaks session version \(v); this node speaks \(SessionHandshake.version)"
        case .protocolViolation(let what): "session protocol violation: \(what)"
        case .wrongPeer(let e, let a): "expected peer \(e.short) but reached \(a.short)"
        case .notAdmitted(let n): "peer \(n.short) is not trusted by this cluster"
        case .badSignature(let n): "peer \(n.short) failed to prove its identity"
        case .noCommonCipher: "no cipher suite in common"
        case .keyExchangeFailed: "key exchange failed (weak ephemeral key)"
        case .authenticationFailed: "a frame failed authentication"
        case .counterExhausted: "session frame counter exhausted; reconnect"
        }
    }
}

/// How the frames of a session are protected after the handshake (PROTOCOL §8.3).
///
/// AES-256-GCM is preferred where both ends have AES-NI (it runs several times faster
/// there); ChaCha20-Poly1305 (IETF) is the universal fallback.
///
/// `sshTunnel` sends frames without a second layer of encryption. It exists because an
/// `ssh -W` tunnel already encrypts and authenticates every byte between the two hosts,
/// and on a 2-core GPU host the second AEAD pass on each end costs as much CPU as ssh's
/// own. It is chosen only when all of these hold, so it never leaves a network hop
/// unprotected:
/// - the initiator reached the responder through its own `ssh -W` child whose target is a
///   loopback address (so the only hop outside SSH is the responder host's loopback, which
///   no one but root on that host can read or inject into), and offered it;
/// - the responder sees the TCP connection come from a loopback address, and accepts it;
/// - neither side is configured with `session_encryption: always`.
///
/// The handshake stays fully authenticated (both signatures cover the offered mask and the
/// chosen suite), chunks are still verified against their BLAKE2b hashes, and gossip
/// messages are still signed.
public enum CipherSuite: UInt8, Sendable, CustomStringConvertible {
    case chacha20poly1305 = 0x01
    case aes256gcm = 0x02
    case sshTunnel = 0x04

    static var locallySupportedMask: UInt8 {
        Sodium.ensureInitialized()
        return crypto_aead_aes256gcm_is_available() == 1 ? 0x03 : 0x01
    }

    static func choose(theirMask: UInt8, allowTunnel: Bool) -> CipherSuite? {
        if allowTunnel, theirMask & CipherSuite.sshTunnel.rawValue != 0 { return .sshTunnel }
        let common = theirMask & locallySupportedMask
        if common & CipherSuite.aes256gcm.rawValue != 0 { return .aes256gcm }
        if common & CipherSuite.chacha20poly1305.rawValue != 0 { return .chacha20poly1305 }
        return nil
    }

    /// As shown in `status` and `peers --json`.
    public var description: String {
        switch self {
        case .chacha20poly1305: "chacha20-poly1305"
        case .aes256gcm: "aes-256-gcm"
        case .sshTunnel: "ssh-tunnel"
        }
    }
}
