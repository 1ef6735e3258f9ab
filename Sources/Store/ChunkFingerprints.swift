import CXXHash
import Gossip
import Synchronization

/// Fast fingerprints of chunks whose bytes this process hashed: for each chunk hash (BLAKE2b,
/// PROTOCOL §3), the XXH3-64 of those same bytes.
///
/// A chunk served to a peer from a folder file (ChunkBackings.swift) must be checked, since a
/// person may have edited the file since: otherwise this node would go on serving, and stating
/// it holds, bytes that are no longer the chunk. The check is against *edits*, not against an
/// adversary: the receiver verifies every chunk against its BLAKE2b hash anyway (PROTOCOL §9.2),
/// and chunk files are served without any re-hash at all. So where a fingerprint is known, the
/// bytes read are compared by XXH3-64 (≈ 20 GB/s) instead of BLAKE2b (≈ 1.3 GB/s, ≈ 0.75 CPU-s
/// per GiB served): an edit goes unnoticed with probability 2^-64. Everything that keeps or
/// exports the bytes itself (`readChunk`, `verify`, chunk files written from a backing, the
/// settle after a crash) still re-hashes with BLAKE2b.
///
/// Filled where the bytes are hashed anyway: a folder put's ingest (the file that then backs
/// its chunks) and a folder fetch's staging writes. Process-local and bounded: at most
/// `maxEntries` (≈ 1 TiB of 2 MiB chunks, ≈ 25 MiB of memory); when full it starts over, and a
/// chunk without a fingerprint is checked with BLAKE2b as before.
public enum ChunkFingerprints {
    public static let maxEntries = 1 << 19

    private static let table = Mutex<[ChunkHash: UInt64]>([:])

    /// XXH3-64 of `bytes`.
    public static func fingerprint(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        XXH3_64bits(bytes.baseAddress, bytes.count)
    }

    /// Remembers the fingerprint of `bytes`, which hash to `hash` (the caller just checked or computed that).
    static func record(_ hash: ChunkHash, _ bytes: UnsafeRawBufferPointer) {
        let f = fingerprint(bytes)
        table.withLock { t in
            if t.count >= maxEntries, t[hash] == nil { t.removeAll(keepingCapacity: true) }
            t[hash] = f
        }
    }

    /// Whether `bytes` are the chunk `hash`: by its fingerprint when one is known, else by BLAKE2b.
    static func matches(_ hash: ChunkHash, _ bytes: UnsafeRawBufferPointer) -> Bool {
        if let f = table.withLock({ $0[hash] }) {
            checkedByFingerprint.wrappingAdd(1, ordering: .relaxed)
            return fingerprint(bytes) == f
        }
        return Blake2b256.hash(bytes) == hash.digest
    }

    /// Reads checked by a fingerprint rather than by BLAKE2b, since the process started.
    public static let checkedByFingerprint = Atomic<UInt64>(0)

    /// Whether a fingerprint of `hash` is known.
    static func has(_ hash: ChunkHash) -> Bool { table.withLock { $0[hash] != nil } }

    /// Forgets the fingerprint of `hash` (tests: a chunk put by another process).
    static func forget(_ hash: ChunkHash) { _ = table.withLock { $0.removeValue(forKey: hash) } }
}
