/// How a file is cut into chunks and named (docs/PROTOCOL.md §3).
public enum Chunking {
    /// 2 MiB: the default chunk size of a new store.
    public static let defaultChunkSizeBytes: UInt32 = 2 * 1024 * 1024
    /// The smallest chunk size a store accepts (4 KiB): the protocol's bound (§3).
    public static let minChunkSizeBytes: UInt32 = ManifestEntry.minChunkSizeBytes
    /// The largest chunk size a store accepts (64 MiB); bounds every buffer. The protocol's bound (§3).
    public static let maxChunkSizeBytes: UInt32 = ManifestEntry.maxChunkSizeBytes
    /// Domain prefix of the content id hash: ASCII then one NUL byte.
    public static let contentIDDomain: [UInt8] = Array("meshnode/content/v1\0".utf8)

    /// ceil(size / chunkSize); 0 for an empty file.
    public static func chunkCount(sizeBytes: UInt64, chunkSizeBytes: UInt32) -> Int {
        precondition(chunkSizeBytes > 0)
        return Int((sizeBytes + UInt64(chunkSizeBytes) - 1) / UInt64(chunkSizeBytes))
    }

    /// The byte length of chunk `index` (the last one may be shorter).
    public static func chunkLength(index: Int, sizeBytes: UInt64, chunkSizeBytes: UInt32) -> Int {
        let start = UInt64(index) * UInt64(chunkSizeBytes)
        return Int(min(UInt64(chunkSizeBytes), sizeBytes - start))
    }

    /// The content id: BLAKE2b-256 over the domain prefix, `u64` size, `u32` chunk size,
    /// then the 32-byte chunk hashes in file order.
    public static func contentID(sizeBytes: UInt64, chunkSizeBytes: UInt32, chunks: [ChunkHash]) -> ContentID {
        var w = ByteWriter(capacity: contentIDDomain.count + 12 + chunks.count * 32)
        w.raw(contentIDDomain)
        w.u64(sizeBytes)
        w.u32(chunkSizeBytes)
        for c in chunks { w.bytes32(c.digest) }
        return ContentID(digest: Blake2b256.hash(w.bytes))
    }
}

/// A file's chunk list: everything needed to rebuild it from chunks, and to check
/// that the list really belongs to its content id.
public struct Recipe: Hashable, Sendable {
    public var contentID: ContentID
    public var sizeBytes: UInt64
    public var chunkSizeBytes: UInt32
    public var chunks: [ChunkHash]

    /// Builds a recipe and computes its content id.
    public init(sizeBytes: UInt64, chunkSizeBytes: UInt32, chunks: [ChunkHash]) {
        self.sizeBytes = sizeBytes
        self.chunkSizeBytes = chunkSizeBytes
        self.chunks = chunks
        self.contentID = Chunking.contentID(sizeBytes: sizeBytes, chunkSizeBytes: chunkSizeBytes, chunks: chunks)
    }

    /// A recipe received from elsewhere: accepted only if its shape is consistent and it
    /// recomputes `contentID`.
    public init(verifying contentID: ContentID, sizeBytes: UInt64, chunkSizeBytes: UInt32,
                chunks: [ChunkHash]) throws(MeshError) {
        guard chunkSizeBytes >= Chunking.minChunkSizeBytes, chunkSizeBytes <= Chunking.maxChunkSizeBytes else {
            throw MeshError(.corrupt, "recipe for \(contentID.short) has chunk size \(chunkSizeBytes) out of range",
                            hint: "the sender is broken or malicious; fetch the recipe from another peer")
        }
        guard chunks.count == Chunking.chunkCount(sizeBytes: sizeBytes, chunkSizeBytes: chunkSizeBytes) else {
            throw MeshError(.corrupt, "recipe for \(contentID.short) lists \(chunks.count) chunks for \(sizeBytes) bytes",
                            hint: "the sender is broken or malicious; fetch the recipe from another peer")
        }
        let r = Recipe(sizeBytes: sizeBytes, chunkSizeBytes: chunkSizeBytes, chunks: chunks)
        guard r.contentID == contentID else {
            throw MeshError(.corrupt, "recipe does not hash to content id \(contentID.short)",
                            hint: "the sender is broken or malicious; fetch the recipe from another peer")
        }
        self = r
    }

    public var chunkCount: Int { chunks.count }

    /// Byte offset of chunk `index` in the file.
    public func offset(ofChunk index: Int) -> UInt64 { UInt64(index) * UInt64(chunkSizeBytes) }

    public func length(ofChunk index: Int) -> Int {
        Chunking.chunkLength(index: index, sizeBytes: sizeBytes, chunkSizeBytes: chunkSizeBytes)
    }

    /// The chunk hashes concatenated (32 bytes each), as stored and sent.
    public var packedChunks: [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(chunks.count * 32)
        for c in chunks { out.append(contentsOf: c.digest.bytes) }
        return out
    }

    /// Splits concatenated 32-byte hashes; nil if the length is not a multiple of 32.
    public static func unpack(_ packed: [UInt8]) -> [ChunkHash]? {
        guard packed.count % 32 == 0 else { return nil }
        var out = [ChunkHash]()
        out.reserveCapacity(packed.count / 32)
        packed.withUnsafeBytes { raw in
            var i = 0
            while i < raw.count {
                out.append(ChunkHash(digest: Bytes32(raw: UnsafeRawBufferPointer(rebasing: raw[i..<i + 32]))))
                i += 32
            }
        }
        return out
    }
}
