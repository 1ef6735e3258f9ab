import CBlake2b
import CSodium

/// libsodium setup and the BLAKE2b-256 hash used for chunks and content ids.
public enum Sodium {
    private static let initialized: Bool = sodium_init() >= 0

    /// Initialises libsodium once (thread-safe; later calls are free). Traps if the
    /// library cannot initialise, since nothing cryptographic would be safe then.
    public static func ensureInitialized() {
        precondition(initialized, "libsodium failed to initialise")
    }
}

/// BLAKE2b with a 32-byte digest, no key: the chunk hash and the content id (PROTOCOL §3).
///
/// Computed by `meshnode_blake2b` (Sources/CBlake2b, RFC 7693 in plain C), which ran about
/// 2.1x faster than libsodium's `crypto_generichash` on the hosts measured
/// (docs/PERFORMANCE.md, "BLAKE2b"). Before its first use it is checked against libsodium on
/// inputs of every block-boundary length; if it ever disagreed (a miscompilation), libsodium
/// is used instead, so a wrong digest is never produced.
public enum Blake2b256 {
    public static let digestBytes = 32

    /// Which implementation hashes: "meshnode" (the C code) or "libsodium" (the fallback).
    public static var implementation: String { ownAgrees ? "meshnode" : "libsodium" }

    /// Whether the C implementation gives libsodium's digests (checked once).
    static let ownAgrees: Bool = {
        Sodium.ensureInitialized()
        var input = [UInt8](repeating: 0, count: 1 << 12)
        for i in input.indices { input[i] = UInt8(truncatingIfNeeded: i &* 131 &+ (i >> 8) &* 7 &+ 1) }
        let lengths = [0, 1, 3, 63, 64, 65, 127, 128, 129, 255, 256, 257, 1000, 1024, 4095, 4096]
        return input.withUnsafeBytes { all in
            lengths.allSatisfy { n in
                let raw = UnsafeRawBufferPointer(rebasing: all[0..<n])
                return ownDigest(raw) == sodiumDigest(raw)
            }
        }
    }()

    /// Hashes raw memory in one call.
    public static func hash(_ bytes: UnsafeRawBufferPointer) -> Bytes32 {
        Bytes32(bytes: ownAgrees ? ownDigest(bytes) : sodiumDigest(bytes))!
    }

    public static func hash(_ bytes: [UInt8]) -> Bytes32 {
        bytes.withUnsafeBytes { hash($0) }
    }

    static func ownDigest(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        out.withUnsafeMutableBufferPointer { o in _ = meshnode_blake2b(o.baseAddress!, 32, bytes.baseAddress, bytes.count) }
        return out
    }

    static func sodiumDigest(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        out.withUnsafeMutableBufferPointer { o in
            _ = crypto_generichash(o.baseAddress!, 32, bytes.baseAddress?.assumingMemoryBound(to: UInt8.self),
                                   UInt64(bytes.count), nil, 0)
        }
        return out
    }
}
