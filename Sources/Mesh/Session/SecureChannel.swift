import CSodium
import Gossip
import Store

/// The two directions of an established session: `seal` for frames going out,
/// `open` for frames coming in.
///
/// Each direction has its own 32-byte key and a 64-bit frame counter that starts
/// at 0; the 12-byte AEAD nonce is four zero bytes followed by the counter in
/// big-endian. A frame that fails authentication, arrives out of order, or is replayed
/// fails `open`, and the caller must drop the connection: a stream never recovers
/// from a lost or forged frame.
///
/// Each direction's key is replaced every `rekeyIntervalFrames` frames by a one-way
/// function of itself (PROTOCOL §8.3), so that no key protects more than 256 GiB: AES-GCM's
/// confidentiality bound weakens with the data encrypted under one key (about 350 GB keeps
/// the adversary's advantage under 2^-60), and a checkpoint stream can carry terabytes
/// through one session. It also means a key read from memory later does not open earlier
/// frames of the same session.
public final class SecureChannel: @unchecked Sendable {
    // @unchecked: owned and used by exactly one connection on one thread (the loop);
    // the keys live in guarded memory freed in deinit.
    public static let tagBytes = 16

    public let suite: CipherSuite
    private let txKey: GuardedBytes
    private let rxKey: GuardedBytes
    private var txCounter: UInt64 = 0
    private var rxCounter: UInt64 = 0
    /// How many times each key has been replaced (`counter / rekeyInterval` once in use).
    private var txEpoch: UInt64 = 0
    private var rxEpoch: UInt64 = 0
    /// The AES-256-GCM contexts (libcrypto, `AESGCM.swift`), for that suite only.
    private var txAES: AESGCM?
    private var rxAES: AESGCM?

    /// Frames per key in each direction: frame number `k × rekeyIntervalFrames` (k ≥ 1) is the
    /// first under the next key. At most 16 MiB a frame, that is at most 256 GiB per key.
    public static let rekeyIntervalFrames: UInt64 = 1 << 14
    /// `rekeyIntervalFrames`, smaller in tests.
    var rekeyInterval = SecureChannel.rekeyIntervalFrames
    static let rekeyMessage = Array("meshnode/session/v1/rekey".utf8)

    init(suite: CipherSuite, role: SessionHandshake.Role, ephemeral: borrowing EphemeralKeyPair,
         peerEphemeral: Bytes32) throws(SessionError) {
        self.suite = suite
        let rx = GuardedBytes(count: Int(crypto_kx_SESSIONKEYBYTES))
        let tx = GuardedBytes(count: Int(crypto_kx_SESSIONKEYBYTES))
        let peer = peerEphemeral.bytes
        let ok: Int32 = ephemeral.withKeys { pk, sk in
            rx.withMutableBytes { rxp in
                tx.withMutableBytes { txp in
                    switch role {
                    case .initiator:
                        crypto_kx_client_session_keys(rxp, txp, pk, sk, peer)
                    case .responder:
                        crypto_kx_server_session_keys(rxp, txp, pk, sk, peer)
                    }
                }
            }
        }
        guard ok == 0 else { throw .keyExchangeFailed }
        rxKey = rx
        txKey = tx
        if suite == .aes256gcm {
            guard let t = tx.withBytes({ AESGCM(key: $0, encrypting: true) }),
                  let r = rx.withBytes({ AESGCM(key: $0, encrypting: false) }) else { throw .keyExchangeFailed }
            txAES = t
            rxAES = r
        }
    }

    /// key ← BLAKE2b-256(key = key, message = "meshnode/session/v1/rekey"); the AES state is
    /// expanded again from the new key.
    private func ratchet(_ key: GuardedBytes, aes: AESGCM?) {
        let next = GuardedBytes(count: key.count)
        next.withMutableBytes { n in
            key.withBytes { k in
                _ = crypto_generichash(n, key.count, Self.rekeyMessage, UInt64(Self.rekeyMessage.count), k, key.count)
            }
        }
        key.withMutableBytes { k in next.withBytes { n in k.update(from: n, count: key.count) } }
        if let aes { key.withBytes { k in aes.rekey(k) } }
    }

    /// Bytes `seal` appends after the message: the AEAD tag, or nothing for `sshTunnel`.
    public var trailerBytes: Int { suite == .sshTunnel ? 0 : Self.tagBytes }

    /// Runs `body` with the 12-byte nonce for `counter`: four zero bytes, then the counter
    /// in big-endian.
    private static func withNonce<R>(_ counter: UInt64, _ body: (UnsafePointer<UInt8>) -> R) -> R {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 12) { buf in
            buf.initialize(repeating: 0)
            for i in 0..<8 { buf[4 + i] = UInt8(truncatingIfNeeded: counter >> UInt64(56 - 8 * i)) }
            return body(UnsafePointer(buf.baseAddress!))
        }
    }

    /// Seals one outgoing message in place: encrypts `frame.message` where it lies and
    /// appends the tag (into the frame's reserved trailer space). No copy is made.
    public func seal(frame: OutgoingFrame) throws(SessionError) {
        var sealed = true
        guard suite != .sshTunnel else { return }
        guard txCounter < UInt64.max else { throw .counterExhausted }
        let counter = txCounter
        txCounter += 1
        while txEpoch < counter / rekeyInterval {
            ratchet(txKey, aes: txAES)
            txEpoch += 1
        }
        let m = frame.message
        let n = m.count
        let base = m.baseAddress!.assumingMemoryBound(to: UInt8.self)
        frame.appendTrailer { (tagArea: UnsafeMutableRawBufferPointer) -> Int in
            let tag = tagArea.baseAddress!.assumingMemoryBound(to: UInt8.self)
            Self.withNonce(counter) { nonce in
                switch suite {
                case .aes256gcm:
                    sealed = txAES!.seal(base, count: n, tag: tag, nonce: nonce)
                case .chacha20poly1305:
                    txKey.withBytes { k in
                        _ = crypto_aead_chacha20poly1305_ietf_encrypt_detached(base, tag, nil, base, UInt64(n), nil, 0, nil, nonce, k)
                    }
                case .sshTunnel:
                    break
                }
            }
            return Self.tagBytes
        }
        guard sealed else { throw .keyExchangeFailed }  // libcrypto refused (out of memory): the session ends
    }

    /// Opens the payload of the next frame from the peer in place: on return
    /// `frame[0..<n]` is the plaintext, where `n` is the returned count. No copy is made.
    public func open(inPlace frame: inout [UInt8]) throws(SessionError) -> Int {
        if suite == .sshTunnel { return frame.count }
        guard frame.count >= Self.tagBytes else { throw .authenticationFailed }
        guard rxCounter < UInt64.max else { throw .counterExhausted }
        let n = frame.count - Self.tagBytes
        let counter = rxCounter
        while rxEpoch < counter / rekeyInterval {
            ratchet(rxKey, aes: rxAES)
            rxEpoch += 1
        }
        let rc: Int32 = frame.withUnsafeMutableBufferPointer { f in
            let c = f.baseAddress!
            return Self.withNonce(counter) { nonce in
                switch suite {
                case .aes256gcm:
                    rxAES!.open(c, count: n, tag: c + n, nonce: nonce) ? 0 : -1
                case .chacha20poly1305:
                    rxKey.withBytes { k in
                        crypto_aead_chacha20poly1305_ietf_decrypt_detached(c, nil, c, UInt64(n), c + n, nil, 0, nonce, k)
                    }
                case .sshTunnel:
                    0
                }
            }
        }
        guard rc == 0 else { throw .authenticationFailed }
        rxCounter += 1
        return n
    }

    /// Encrypts one message: the frame payload (ciphertext and tag, without the length
    /// prefix). Convenience over `seal(frame:)`; copies.
    public func seal(_ plaintext: [UInt8]) throws(SessionError) -> [UInt8] {
        let frame = OutgoingFrame(message: plaintext)
        try seal(frame: frame)
        return Array(UnsafeRawBufferPointer(rebasing: frame.bytes[OutgoingFrame.headroomBytes...]))
    }

    /// Decrypts and authenticates the next frame payload from the peer. Convenience over
    /// `open(inPlace:)`; copies.
    public func open(_ sealed: [UInt8]) throws(SessionError) -> [UInt8] {
        var f = sealed
        let n = try open(inPlace: &f)
        f.removeSubrange(n...)
        return f
    }
}
