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

    /// Whether the four-lane code gives the one-message code's digests, with every instruction
    /// set this CPU has (checked once; CBlake2b/blake2b_x4.c).
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

    /// Chunks larger than this are hashed one at a time: callers hold one buffer per lane, and
    /// four 64 MiB chunks per worker would be 256 MiB (at the default 2 MiB chunk, 8 MiB).
    public static let maxLaneChunkBytes = 4 << 20

    /// How many chunks of `chunkBytes` callers should gather to hash at once (`hash(many:)`):
    /// 4 where the CPU has AVX2 and the chunks are at most `maxLaneChunkBytes`, else 1.
    public static func lanes(forChunkBytes chunkBytes: Int) -> Int {
        fourLanesAgree && chunkBytes <= maxLaneChunkBytes ? 4 : 1
    }

    /// Hashes several buffers; digests come back in order. Buffers of one length are hashed
    /// four at a time where the CPU has AVX2 (each lane exactly `hash` of its buffer, at about
    /// twice one buffer's throughput); the rest one by one.
    public static func hash(many parts: [UnsafeRawBufferPointer]) -> [Bytes32] {
        guard parts.count > 1, fourLanesAgree else { return parts.map(hash) }
        var out = [Bytes32](repeating: .zero, count: parts.count)
        var byLength: [Int: [Int]] = [:]
        for (i, p) in parts.enumerated() { byLength[p.count, default: []].append(i) }
        for (_, indices) in byLength {
            var k = 0
            while k < indices.count {
                let group = Array(indices[k..<min(k + 4, indices.count)])
                k += 4
                if group.count == 1 {
                    out[group[0]] = hash(parts[group[0]])
                    continue
                }
                // A short group fills its idle lanes with its first buffer (the same cost as four).
                let lanes = group.map { parts[$0] } + Array(repeating: parts[group[0]], count: 4 - group.count)
                let digests = fourLaneDigests(lanes, level: meshnode_blake2b_x4_level())
                for (j, i) in group.enumerated() { out[i] = Bytes32(bytes: digests[j])! }
            }
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
