#if canImport(Glibc)
import Glibc
#endif

/// The first step of storing a batch of received chunks, shared by chunk files
/// (`Store.writeChunksKeepingGood`) and folder staging files (`Store.writeStaged`): each chunk is copied
/// into a 4 KiB-aligned buffer (what O_DIRECT writes need) and the copies are hashed in
/// groups of up to four (BLAKE2b's four lanes where the CPU has AVX2 and the chunks are at
/// most `Blake2b256.maxLaneChunkBytes`; Sodium.swift).
enum AlignedChunks {
    /// Calls `body(index, bytes, capacity)` for every chunk of `chunks`, in order, that
    /// `eligible` admits, is at most `Chunking.maxChunkSizeBytes` long and (with `verify`)
    /// hashes to its name. `bytes` is the aligned copy, valid during the call; `capacity` is
    /// its buffer's size (a multiple of 4096). Returns, per chunk, whether `body` ran for it.
    static func forEach(_ chunks: [(hash: ChunkHash, bytes: ArraySlice<UInt8>)], verify: Bool = true,
                        eligible: (Int) -> Bool = { _ in true },
                        _ body: (_ index: Int, _ bytes: UnsafeRawBufferPointer, _ capacity: Int) throws(MeshError) -> Void) throws(MeshError) -> [Bool] {
        guard let largest = chunks.map(\.bytes.count).max() else { return [] }
        let capacity = max((min(largest, Int(Chunking.maxChunkSizeBytes)) + 4095) & ~4095, 4096)
        let lanes = min(Blake2b256.lanes(forChunkBytes: capacity), chunks.count)
        let buffers = (0..<lanes).map { _ in UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 4096) }
        defer { for b in buffers { b.deallocate() } }
        var good = [Bool](repeating: false, count: chunks.count)
        var next = 0
        while next < chunks.count {
            var group = [(index: Int, raw: UnsafeRawBufferPointer)]()
            while group.count < lanes, next < chunks.count {
                let i = next
                next += 1
                let c = chunks[i]
                guard c.bytes.count <= Int(Chunking.maxChunkSizeBytes), eligible(i) else { continue }
                let buffer = buffers[group.count]
                c.bytes.withUnsafeBytes { src in
                    if let base = src.baseAddress { buffer.copyMemory(from: base, byteCount: src.count) }
                }
                group.append((i, UnsafeRawBufferPointer(start: buffer, count: c.bytes.count)))
            }
            let digests = verify ? Blake2b256.hash(many: group.map(\.raw)) : []
            for (k, g) in group.enumerated() where !verify || digests[k] == chunks[g.index].hash.digest {
                good[g.index] = true
                try body(g.index, g.raw, capacity)
            }
        }
        return good
    }
}
