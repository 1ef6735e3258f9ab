import CSodium
import Gossip
import Store

/// Secret bytes in libsodium's guarded heap (guard pages, canary, no swap), wiped
/// and freed when the owner goes away.
final class GuardedBytes: @unchecked Sendable {
    // @unchecked: written only through withMutableBytes, by its single owner (key setup,
    // a session's rekey on the loop thread).
    let count: Int
    private let pointer: UnsafeMutableRawPointer

    init(count: Int) {
        Sodium.ensureInitialized()
        guard let p = sodium_malloc(count) else { fatalError("sodium_malloc(\(count)) failed: out of memory") }
        self.count = count
        pointer = p
    }

    deinit { sodium_free(pointer) }

    func withBytes<R>(_ body: (UnsafePointer<UInt8>) -> R) -> R {
        body(UnsafePointer(pointer.assumingMemoryBound(to: UInt8.self)))
    }

    func withMutableBytes<R>(_ body: (UnsafeMutablePointer<UInt8>) -> R) -> R {
        body(pointer.assumingMemoryBound(to: UInt8.self))
    }
}

/// A fresh X25519 keypair for one session; the secret half never leaves guarded memory.
struct EphemeralKeyPair: ~Copyable {
    let publicKey: Bytes32
    private let secret: GuardedBytes

    init() {
        Sodium.ensureInitialized()
        let sk = GuardedBytes(count: Int(crypto_kx_SECRETKEYBYTES))
        var pk = [UInt8](repeating: 0, count: Int(crypto_kx_PUBLICKEYBYTES))
        _ = sk.withMutableBytes { crypto_kx_keypair(&pk, $0) }
        publicKey = Bytes32(bytes: pk)!
        secret = sk
    }

    /// A fixed keypair from a 32-byte X25519 secret key: only for reproducible test vectors
    /// (`SessionHandshake.useFixedEphemeralKey`).
    init(secretKey: [UInt8]) {
        precondition(secretKey.count == Int(crypto_kx_SECRETKEYBYTES))
        Sodium.ensureInitialized()
        let sk = GuardedBytes(count: secretKey.count)
        sk.withMutableBytes { $0.update(from: secretKey, count: secretKey.count) }
        var pk = [UInt8](repeating: 0, count: Int(crypto_kx_PUBLICKEYBYTES))
        _ = sk.withBytes { crypto_scalarmult_base(&pk, $0) }
        publicKey = Bytes32(bytes: pk)!
        secret = sk
    }

    func withKeys<R>(_ body: (UnsafePointer<UInt8>, UnsafePointer<UInt8>) -> R) -> R {
        let pk = publicKey.bytes
        return pk.withUnsafeBufferPointer { p in secret.withBytes { s in body(p.baseAddress!, s) } }
    }
}
