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

    /// Whether the four-lane code gives the one-message code's digests, on both instruction
    /// sets this CPU has (checked once; CBlake2b/blake2b_x4.c).
    static let fourLanesAgree: Bool = {
        guard ownAgrees, meshnode_blake2b_x4_available() != 0 else { return false }
        var input = [UInt8](repeating: 0, count: 4 * 4096)
        for i in input.indices { input[i] = UInt8(truncatingIfNeeded: i &* 197 &+ (i >> 7) &* 3 &+ 5) }
        let lengths = [0, 1, 127, 128, 129, 1000, 4096]
        return input.withUnsafeBytes { all in
            (1...Int(meshnode_blake2b_x4_level())).allSatisfy { level in
                lengths.allSatisfy { n in
                    let parts = (0..<4).map { k in UnsafeRawBufferPointer(rebasing: all[(k * 4096)..<(k * 4096 + n)]) }
                    return fourLaneDigests(parts, level: Int32(level)) == parts.map(ownDigest)
                }
            }
        }
    }()

    /// How many buffers of one size `hash(equalLength:)` hashes at once here (4, or 1 without AVX2).
    public static var lanes: Int { fourLanesAgree ? 4 : 1 }

    /// Hashes buffers that all have the same length: four at a time where the CPU has AVX2
    /// (each lane exactly `hash` of its buffer, at about 2.5 times one buffer's throughput),
    /// else one by one. Digests come back in order.
    public static func hash(equalLength parts: [UnsafeRawBufferPointer]) -> [Bytes32] {
        guard parts.count > 1, fourLanesAgree, parts.allSatisfy({ $0.count == parts[0].count }) else { return parts.map(hash) }
        var out = [Bytes32]()
        out.reserveCapacity(parts.count)
        var i = 0
        while i < parts.count {
            let group = Array(parts[i..<min(i + 4, parts.count)])
            if group.count == 1 {
                out.append(hash(group[0]))
            } else {
                // A short group fills its idle lanes with its first buffer (the same cost as four).
                let lanes = group + Array(repeating: group[0], count: 4 - group.count)
                let digests = fourLaneDigests(lanes, level: meshnode_blake2b_x4_level())
                out += digests.prefix(group.count).map { Bytes32(bytes: $0)! }
            }
            i += 4
        }
        return out
    }

    static func fourLaneDigests(_ parts: [UnsafeRawBufferPointer], level: Int32) -> [[UInt8]] {
        var digests = [UInt8](repeating: 0, count: 4 * 32)
        var placeholder: UInt8 = 0
        let rc = withUnsafeMutablePointer(to: &placeholder) { empty in
            digests.withUnsafeMutableBufferPointer { d in
                var outs: [UnsafeMutablePointer<UInt8>?] = (0..<4).map { d.baseAddress! + 32 * $0 }
                var ins: [UnsafePointer<UInt8>?] = parts.map { $0.baseAddress.map { UnsafePointer($0.assumingMemoryBound(to: UInt8.self)) } ?? UnsafePointer(empty) }
                return outs.withUnsafeMutableBufferPointer { op in
                    ins.withUnsafeMutableBufferPointer { ip in meshnode_blake2b_x4_at(level, op.baseAddress, 32, ip.baseAddress, parts[0].count) }
                }
            }
        }
        precondition(rc == 0, "meshnode_blake2b_x4_at(\(level)) refused its input")
        return (0..<4).map { Array(digests[(32 * $0)..<(32 * $0 + 32)]) }
    }

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
