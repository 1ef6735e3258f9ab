import CSodium
#if canImport(Glibc)
import Glibc
#endif

/// Raw Ed25519 (RFC 8032, pure) through libsodium: THE sign/verify primitives of meshnode.
public enum Ed25519 {
    public static let publicKeyBytes = 32
    public static let secretKeyBytes = 64
    public static let signatureBytes = 64

    /// Signs `message` with a 64-byte libsodium secret key (seed || public key).
    public static func sign(_ message: [UInt8], secretKey: UnsafePointer<UInt8>) -> Signature {
        Sodium.ensureInitialized()
        var sig = [UInt8](repeating: 0, count: 64)
        message.withUnsafeBufferPointer { m in
            sig.withUnsafeMutableBufferPointer { s in
                _ = crypto_sign_detached(s.baseAddress!, nil, m.baseAddress, UInt64(m.count), secretKey)
            }
        }
        return Signature(bytes: sig)!
    }

    /// True if `signature` is `signer`'s valid signature over `message`.
    public static func verify(_ signature: Signature, of message: [UInt8], by signer: NodeID) -> Bool {
        Sodium.ensureInitialized()
        let sig = signature.bytes
        let pk = signer.key.bytes
        return message.withUnsafeBufferPointer { m in
            crypto_sign_verify_detached(sig, m.baseAddress, UInt64(m.count), pk) == 0
        }
    }
}

/// The `SignatureVerifier` every state machine receives in production.
public struct Ed25519Verifier: SignatureVerifier {
    public init() { Sodium.ensureInitialized() }
    public func verify(_ signature: Signature, of message: [UInt8], by signer: NodeID) -> Bool {
        Ed25519.verify(signature, of: message, by: signer)
    }
}

/// This node's Ed25519 keypair. The secret key lives in libsodium guarded memory
/// (`sodium_malloc`: guard pages, canary, excluded from core dumps where supported),
/// read-only once loaded, and wiped and freed in `deinit`.
///
/// On disk (`identity.key`, mode 0600) it is the 64-byte libsodium secret key: the
/// 32-byte seed followed by the 32-byte public key. Loading re-derives the public key
/// from the seed and refuses a file whose halves disagree.
public final class NodeIdentity: Signer, @unchecked Sendable {
    // @unchecked: the key memory is written once in init, then made read-only; signing
    // only reads it, so concurrent use is safe.
    private let secretKey: UnsafeMutablePointer<UInt8>
    public let nodeID: NodeID

    /// The identity file name inside a data dir.
    public static let fileName = "identity.key"

    private init(secretKey: UnsafeMutablePointer<UInt8>, nodeID: NodeID) {
        self.secretKey = secretKey
        self.nodeID = nodeID
    }

    deinit { sodium_free(secretKey) }

    private static func allocateKey() -> UnsafeMutablePointer<UInt8> {
        Sodium.ensureInitialized()
        guard let p = sodium_malloc(Ed25519.secretKeyBytes) else {
            fatalError("sodium_malloc failed: out of memory or locked-memory limit")
        }
        return p.assumingMemoryBound(to: UInt8.self)
    }

    /// A fresh random keypair (not saved).
    public static func generate() -> NodeIdentity {
        let sk = allocateKey()
        var pk = [UInt8](repeating: 0, count: 32)
        _ = crypto_sign_keypair(&pk, sk)
        sodium_mprotect_readonly(sk)
        return NodeIdentity(secretKey: sk, nodeID: NodeID(key: Bytes32(bytes: pk)!))
    }

    /// A keypair derived from a 32-byte seed (deterministic; for tests and simulations).
    public static func fromSeed(_ seed: [UInt8]) -> NodeIdentity {
        precondition(seed.count == 32, "an Ed25519 seed is 32 bytes")
        let sk = allocateKey()
        var pk = [UInt8](repeating: 0, count: 32)
        _ = crypto_sign_seed_keypair(&pk, sk, seed)
        sodium_mprotect_readonly(sk)
        return NodeIdentity(secretKey: sk, nodeID: NodeID(key: Bytes32(bytes: pk)!))
    }

    /// Loads `identity.key` from `dataDir`, reading the secret straight into guarded memory.
    public static func load(dataDir: String) throws(MeshError) -> NodeIdentity {
        let path = "\(dataDir)/\(fileName)"
        guard FS.exists(path) else {
            throw MeshError(.notInitialized, "no node identity at \(path)",
                            hint: "run `meshnode init --data \(dataDir)` first")
        }
        return try load(keyFile: path)
    }

    /// Loads a key file in the `identity.key` format from any path (authority keys use this too).
    public static func load(keyFile path: String) throws(MeshError) -> NodeIdentity {
        guard FS.exists(path) else {
            throw MeshError(.fileNotFound, "no key file at \(path)", hint: "check the path")
        }
        let h = try POSIXFile(path: path, flags: O_RDONLY, what: "opening identity")
        let size = try h.sizeBytes()
        guard size == UInt64(Ed25519.secretKeyBytes) else {
            throw MeshError(.corrupt, "identity file \(path) is \(size) bytes, expected 64",
                            hint: "restore identity.key from a backup; a new key means a new node id")
        }
        let sk = allocateKey()
        let n: Int
        do throws(MeshError) { n = try h.pread(into: sk, count: Ed25519.secretKeyBytes, offset: 0) } catch {
            sodium_free(sk)
            throw error
        }
        // Re-derive the public key from the seed half, in guarded scratch memory.
        var pk = [UInt8](repeating: 0, count: 32)
        _ = crypto_sign_ed25519_sk_to_pk(&pk, sk)
        var seedPK = [UInt8](repeating: 0, count: 32)
        let scratch = allocateKey()  // 64 bytes: the seed, then the re-derived secret key
        let scratch2 = allocateKey()
        _ = crypto_sign_ed25519_sk_to_seed(scratch, sk)
        _ = crypto_sign_seed_keypair(&seedPK, scratch2, scratch)
        sodium_free(scratch)
        sodium_free(scratch2)
        guard n == Ed25519.secretKeyBytes, seedPK == pk else {
            sodium_free(sk)
            throw MeshError(.corrupt, "identity file \(path) is damaged (public key does not match the seed)",
                            hint: "restore identity.key from a backup; a new key means a new node id")
        }
        sodium_mprotect_readonly(sk)
        return NodeIdentity(secretKey: sk, nodeID: NodeID(key: Bytes32(bytes: pk)!))
    }

    /// Writes this identity to `dataDir/identity.key` atomically with mode 0600.
    /// Refuses (`.alreadyInitialized`) if the file exists; never overwrites a key.
    public func save(dataDir: String) throws(MeshError) {
        let path = "\(dataDir)/\(Self.fileName)"
        if FS.exists(path) {
            throw MeshError(.alreadyInitialized, "\(path) already holds a node identity",
                            hint: "refusing to overwrite it; use another --data dir for a new node")
        }
        try save(keyFile: path)
    }

    /// Writes the key to `path` atomically with mode 0600; never overwrites an existing file.
    public func save(keyFile path: String) throws(MeshError) {
        if FS.exists(path) {
            throw MeshError(.alreadyInitialized, "\(path) already exists",
                            hint: "refusing to overwrite a key; choose another path")
        }
        try FS.writeAtomically(path, bytes: UnsafeRawBufferPointer(start: secretKey, count: Ed25519.secretKeyBytes),
                               mode: 0o600, noReplace: true)
    }

    public func sign(_ message: [UInt8]) -> Signature {
        Ed25519.sign(message, secretKey: UnsafePointer(secretKey))
    }
}
