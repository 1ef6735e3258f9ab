import Gossip
import Store

/// Chunk-exchange messages, carried as the plaintext of sealed session frames
/// (docs/PROTOCOL.md §9). Every decoder is total: arbitrary bytes give a message or a
/// `DecodeError`, never a trap.
public enum BlobMessage: Equatable, Sendable {
    /// Ask for an item's chunk list.
    case wantRecipe(requestID: UInt32, contentID: ContentID)
    /// An item's chunk list; the receiver recomputes the content id before using it.
    case recipe(requestID: UInt32, contentID: ContentID, sizeBytes: UInt64, chunkSizeBytes: UInt32, chunks: [ChunkHash])
    /// Ask which chunks of an item the peer holds.
    case wantHave(requestID: UInt32, contentID: ContentID)
    /// Which chunks of an item the peer holds: bit `i` of `bitmap` (LSB-first within
    /// each byte) is chunk `i`.
    case have(requestID: UInt32, contentID: ContentID, chunkCount: UInt32, bitmap: [UInt8])
    /// Ask for chunks by index; the peer answers with one `chunk` per index, in order, sharing
    /// its upload among requests by `priority` (PROTOCOL §9.1: an optional trailing byte,
    /// absent for `.normal`, so a NORMAL `get` encodes as before).
    case get(requestID: UInt32, contentID: ContentID, indices: [UInt32], priority: TransferPriority = .normal)
    /// One chunk's bytes. The receiver hashes `data` and compares with its recipe.
    case chunk(requestID: UInt32, index: UInt32, data: [UInt8])
    /// Part of a chunk too large for one `chunk` message: `data` is its bytes from `offset`
    /// (a multiple of `pieceBytes`), of `chunkBytes` in all (PROTOCOL §9.2).
    case chunkPiece(requestID: UInt32, index: UInt32, chunkBytes: UInt32, offset: UInt32, data: [UInt8])
    /// A request failed.
    case error(requestID: UInt32, code: BlobErrorCode, message: String)
    /// Stop sending what is left of a `get`.
    case cancel(requestID: UInt32)

    public static let maxIndicesPerGet = 64
    /// The largest chunk sent as one `chunk` message, and the size of every `chunk_piece` but
    /// a chunk's last: 8 MiB. A chunk of more bytes always travels as pieces.
    public static let maxChunkBytes = 8 << 20
    public static let pieceBytes = maxChunkBytes
    /// Chunk sizes a recipe may name (PROTOCOL §3): 4 KiB … 64 MiB.
    public static let chunkSizeRange = Int(Chunking.minChunkSizeBytes)...Int(Chunking.maxChunkSizeBytes)
    public static let maxRecipeChunks = (16 << 20) / 32 - 16
    public static let maxErrorMessageBytes = 200
    /// Bytes of a `chunk` message before the chunk: type, request id, index.
    public static let chunkHeaderBytes = 9
    /// Bytes of a `chunk_piece` message before its data: type, request id, index, chunk bytes, offset.
    public static let pieceHeaderBytes = 17

    public enum Tag: UInt8 {
        case wantRecipe = 0x10, recipe = 0x11, wantHave = 0x12, have = 0x13
        case get = 0x14, chunk = 0x15, error = 0x16, cancel = 0x17, chunkPiece = 0x18
    }

    /// Why a piece's header is impossible (nil: it is well formed): the chunk must be too large
    /// for a `chunk` message and within the chunk size limit, the offset a multiple of
    /// `pieceBytes` inside it, and the data exactly the rest of that piece.
    public static func pieceProblem(chunkBytes: Int, offset: Int, dataBytes: Int) -> DecodeError? {
        guard chunkBytes > maxChunkBytes, chunkBytes <= chunkSizeRange.upperBound else { return .invalid(field: "chunk_piece.chunkBytes") }
        guard offset % pieceBytes == 0, offset < chunkBytes else { return .invalid(field: "chunk_piece.offset") }
        guard dataBytes == min(pieceBytes, chunkBytes - offset) else { return .invalid(field: "chunk_piece.data") }
        return nil
    }

    /// How many `chunk_piece` messages carry a chunk of `chunkBytes` (0: it goes as one `chunk`).
    public static func pieceCount(chunkBytes: Int) -> Int {
        chunkBytes > maxChunkBytes ? (chunkBytes + pieceBytes - 1) / pieceBytes : 0
    }

    public func encode(into w: inout ByteWriter) {
        switch self {
        case .wantRecipe(let id, let c):
            w.u8(Tag.wantRecipe.rawValue); w.u32(id); w.bytes32(c.digest)
        case .recipe(let id, let c, let size, let cs, let chunks):
            w.u8(Tag.recipe.rawValue); w.u32(id); w.bytes32(c.digest); w.u64(size); w.u32(cs)
            w.u32(UInt32(chunks.count))
            for h in chunks { w.bytes32(h.digest) }
        case .wantHave(let id, let c):
            w.u8(Tag.wantHave.rawValue); w.u32(id); w.bytes32(c.digest)
        case .have(let id, let c, let n, let bitmap):
            w.u8(Tag.have.rawValue); w.u32(id); w.bytes32(c.digest); w.u32(n); w.raw(bitmap)
        case .get(let id, let c, let indices, let priority):
            w.u8(Tag.get.rawValue); w.u32(id); w.bytes32(c.digest); w.u16(UInt16(indices.count))
            for i in indices { w.u32(i) }
            if priority != .normal { w.u8(priority.rawValue) }
        case .chunk(let id, let index, let data):
            w.u8(Tag.chunk.rawValue); w.u32(id); w.u32(index); w.raw(data)
        case .chunkPiece(let id, let index, let total, let offset, let data):
            w.u8(Tag.chunkPiece.rawValue); w.u32(id); w.u32(index); w.u32(total); w.u32(offset); w.raw(data)
        case .error(let id, let code, let message):
            w.u8(Tag.error.rawValue); w.u32(id); w.u16(code.rawValue)
            w.string16(String(decoding: Array(message.utf8.prefix(Self.maxErrorMessageBytes)), as: UTF8.self))
        case .cancel(let id):
            w.u8(Tag.cancel.rawValue); w.u32(id)
        }
    }

    public var encoded: [UInt8] {
        var w = ByteWriter(capacity: 64)
        encode(into: &w)
        return w.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws(DecodeError) -> BlobMessage {
        var r = ByteReader(bytes)
        guard let tag = Tag(rawValue: try r.u8()) else { throw .invalid(field: "blob.type") }
        let id = try r.u32()
        let msg: BlobMessage
        switch tag {
        case .wantRecipe:
            msg = .wantRecipe(requestID: id, contentID: ContentID(digest: try r.bytes32()))
        case .recipe:
            let c = ContentID(digest: try r.bytes32())
            let size = try r.u64()
            let cs = try r.u32()
            guard chunkSizeRange.contains(Int(cs)) else { throw .invalid(field: "recipe.chunkSize") }
            let n = Int(try r.u32())
            guard n <= maxRecipeChunks else { throw .tooLong(field: "recipe.chunks", length: n, limit: maxRecipeChunks) }
            guard r.remaining == n * 32 else { throw .invalid(field: "recipe.chunks") }
            var chunks = [ChunkHash]()
            chunks.reserveCapacity(n)
            for _ in 0..<n { chunks.append(ChunkHash(digest: try r.bytes32())) }
            msg = .recipe(requestID: id, contentID: c, sizeBytes: size, chunkSizeBytes: cs, chunks: chunks)
        case .wantHave:
            msg = .wantHave(requestID: id, contentID: ContentID(digest: try r.bytes32()))
        case .have:
            let c = ContentID(digest: try r.bytes32())
            let n = try r.u32()
            guard n <= maxRecipeChunks else { throw .tooLong(field: "have.count", length: Int(n), limit: maxRecipeChunks) }
            let bitmapBytes = (Int(n) + 7) / 8
            let bitmap = try r.raw(bitmapBytes)
            msg = .have(requestID: id, contentID: c, chunkCount: n, bitmap: bitmap)
        case .get:
            let c = ContentID(digest: try r.bytes32())
            let n = Int(try r.u16())
            guard n > 0, n <= maxIndicesPerGet else { throw .tooLong(field: "get.indices", length: n, limit: maxIndicesPerGet) }
            var idx = [UInt32]()
            for _ in 0..<n { idx.append(try r.u32()) }
            var priority = TransferPriority.normal
            if r.remaining > 0 {
                guard let p = TransferPriority(rawValue: try r.u8()) else { throw .invalid(field: "get.priority") }
                priority = p
            }
            msg = .get(requestID: id, contentID: c, indices: idx, priority: priority)
        case .chunk:
            let index = try r.u32()
            guard r.remaining <= maxChunkBytes else { throw .tooLong(field: "chunk.data", length: r.remaining, limit: maxChunkBytes) }
            msg = .chunk(requestID: id, index: index, data: try r.raw(r.remaining))
        case .chunkPiece:
            let index = try r.u32()
            let total = try r.u32()
            let offset = try r.u32()
            if let problem = pieceProblem(chunkBytes: Int(total), offset: Int(offset), dataBytes: r.remaining) { throw problem }
            msg = .chunkPiece(requestID: id, index: index, chunkBytes: total, offset: offset, data: try r.raw(r.remaining))
        case .error:
            guard let code = BlobErrorCode(rawValue: try r.u16()) else { throw .invalid(field: "error.code") }
            msg = .error(requestID: id, code: code, message: try r.string16(field: "error.message", limit: maxErrorMessageBytes))
        case .cancel:
            msg = .cancel(requestID: id)
        }
        try r.expectEnd()
        return msg
    }
}

/// Why a peer could not serve a request.
public enum BlobErrorCode: UInt16, Sendable {
    /// The peer does not know the item.
    case unknownItem = 1
    /// The peer does not hold (all of) the requested chunks; ask again later or elsewhere.
    case notHeld = 2
    /// The peer is at its transfer limit; back off.
    case busy = 3
    /// The request was malformed (index out of range, too many indices).
    case badRequest = 4
    /// The peer failed to read its own store.
    case internalError = 5
}

/// Bit helpers for `have` bitmaps (LSB-first within each byte).
public enum ChunkBitmap {
    public static func make(count: Int, has: (Int) -> Bool) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: (count + 7) / 8)
        for i in 0..<count where has(i) { out[i >> 3] |= 1 << UInt8(i & 7) }
        return out
    }

    public static func contains(_ bitmap: [UInt8], _ i: Int) -> Bool {
        let byte = i >> 3
        return byte < bitmap.count && bitmap[byte] & (1 << UInt8(i & 7)) != 0
    }
}
