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
public final class SecureChannel: @unchecked Sendable {
    // @unchecked: owned and used by exactly one connection on one thread (the loop);
    // the keys live in guarded memory freed in deinit.
    public static let tagBytes = 16

    public let suite: CipherSuite
    private let txKey: GuardedBytes
    private let rxKey: GuardedBytes
    private var txCounter: UInt64 = 0
    private var rxCounter: UInt64 = 0
    private var txAES: UnsafeMutableRawPointer?
    private var rxAES: UnsafeMutableRawPointer?

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
            txAES = Self.expandAES(tx)
            rxAES = Self.expandAES(rx)
        }
    }

    deinit {
        for p in [txAES, rxAES] {
            if let p {
                sodium_memzero(p, crypto_aead_aes256gcm_statebytes())
                p.deallocate()
            }
        }
    }

    private static func expandAES(_ key: GuardedBytes) -> UnsafeMutableRawPointer {
        let state = UnsafeMutableRawPointer.allocate(byteCount: crypto_aead_aes256gcm_statebytes(), alignment: 16)
        key.withBytes { k in
            _ = crypto_aead_aes256gcm_beforenm(state.assumingMemoryBound(to: crypto_aead_aes256gcm_state.self), k)
        }
        return state
    }

    private static func nonce(_ counter: UInt64) -> [UInt8] {
        var n = [UInt8](repeating: 0, count: 12)
        for i in 0..<8 { n[4 + i] = UInt8(truncatingIfNeeded: counter >> UInt64(56 - 8 * i)) }
        return n
    }

    /// Encrypts one frame: ciphertext followed by the 16-byte tag.
    public func seal(_ plaintext: [UInt8]) throws(SessionError) -> [UInt8] {
        guard txCounter < UInt64.max else { throw .counterExhausted }
        let n = Self.nonce(txCounter)
        txCounter += 1
        var out = [UInt8](repeating: 0, count: plaintext.count + Self.tagBytes)
        var outLen: UInt64 = 0
        out.withUnsafeMutableBufferPointer { o in
            switch suite {
            case .aes256gcm:
                _ = crypto_aead_aes256gcm_encrypt_afternm(o.baseAddress!, &outLen, plaintext, UInt64(plaintext.count), nil, 0, nil, n,
                                                          txAES!.assumingMemoryBound(to: crypto_aead_aes256gcm_state.self))
            case .chacha20poly1305:
                txKey.withBytes { k in
                    _ = crypto_aead_chacha20poly1305_ietf_encrypt(o.baseAddress!, &outLen, plaintext, UInt64(plaintext.count), nil, 0, nil, n, k)
                }
            }
        }
        return out
    }

    /// Decrypts and authenticates the next frame from the peer.
    public func open(_ sealed: [UInt8]) throws(SessionError) -> [UInt8] {
        guard sealed.count >= Self.tagBytes else { throw .authenticationFailed }
        guard rxCounter < UInt64.max else { throw .counterExhausted }
        let n = Self.nonce(rxCounter)
        var out = [UInt8](repeating: 0, count: sealed.count - Self.tagBytes)
        var outLen: UInt64 = 0
        let rc: Int32 = out.withUnsafeMutableBufferPointer { o in
            switch suite {
            case .aes256gcm:
                crypto_aead_aes256gcm_decrypt_afternm(o.baseAddress, &outLen, nil, sealed, UInt64(sealed.count), nil, 0, n,
                                                      rxAES!.assumingMemoryBound(to: crypto_aead_aes256gcm_state.self))
            case .chacha20poly1305:
                rxKey.withBytes { k in
                    crypto_aead_chacha20poly1305_ietf_decrypt(o.baseAddress, &outLen, nil, sealed, UInt64(sealed.count), nil, 0, n, k)
                }
            }
        }
        guard rc == 0 else { throw .authenticationFailed }
        rxCounter += 1
        return out
    }
}
