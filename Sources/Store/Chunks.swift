import Foundation

extension Store {
    // MARK: - Chunks

    /// Where a chunk's file lives: `chunks/ab/<hex>`.
    public func chunkPath(_ hash: ChunkHash) -> String { chunkFiles.path(hash) }

    /// True if the chunk's file is present (its bytes are checked by `verify`/`readChunk`).
    public func hasChunk(_ hash: ChunkHash) -> Bool { FS.regularFileSize(chunkPath(hash)) != nil }

    /// Reads a chunk and checks it against its hash; a mismatch is `.corrupt`.
    public func readChunk(_ hash: ChunkHash) throws(MeshError) -> [UInt8] {
        let path = chunkPath(hash)
        guard FS.exists(path) else {
            throw MeshError(.unknownItem, "chunk \(hash) is not in this store", hint: "fetch it from a peer")
        }
        let bytes = try FS.readSmallFile(path, limitBytes: Int(Chunking.maxChunkSizeBytes))
        guard Blake2b256.hash(bytes) == hash.digest else {
            throw MeshError(.corrupt, "chunk \(hash) is corrupt on disk (\(path))",
                            hint: "run `meshnode verify` to find every damaged item")
        }
        return bytes
    }

    /// Reads a stored chunk for a peer straight into `dest` and returns its size, which must
    /// be `expectedBytes` (else `.corrupt`). Not re-hashed: the receiver verifies every chunk
    /// anyway (PROTOCOL §9.2; a damaged chunk file costs this node a strike with that peer,
    /// and `meshnode verify` finds it). Everything that exports or trusts the bytes itself
    /// uses `readChunk`. When `dest` is 4096-aligned and has room for `expectedBytes` rounded up to
    /// 4096, the file is read with O_DIRECT: no copy out of the page cache, which cost a
    /// sixth of a serving node's CPU. Thread-safe.
    public func readChunkForPeer(_ hash: ChunkHash, expectedBytes: Int, into dest: UnsafeMutableRawBufferPointer) throws(MeshError) -> Int {
        guard expectedBytes <= dest.count, let base = dest.baseAddress else {
            throw MeshError(.invalidInput, "no room for a \(expectedBytes)-byte chunk", hint: "this is a bug")
        }
        return try chunkFiles.read(hash, into: base, capacity: dest.count, expected: expectedBytes, itemName: "an item served to a peer")
    }

    /// Stores a chunk received from elsewhere: verified against `hash` first, then written
    /// crash-safely (temp, fsync, rename, directory fsync) and recorded as present.
    public func writeChunk(_ hash: ChunkHash, bytes: [UInt8], nowMs: Int64 = WallClock.nowMs()) throws(MeshError) {
        guard bytes.count <= Int(Chunking.maxChunkSizeBytes) else {
            throw MeshError(.invalidInput, "chunk \(hash) is \(bytes.count) bytes, over the limit", hint: "the sender is broken")
        }
        guard Blake2b256.hash(bytes) == hash.digest else {
            throw MeshError(.corrupt, "received chunk does not match its hash \(hash)",
                            hint: "the sender is broken or malicious; fetch it from another peer")
        }
        let wrote = try withBytes(bytes) { (raw) throws(MeshError) -> Bool in
            try chunkFiles.store(hash, raw)
        }
        if wrote { try FS.fsyncDirectory(FS.dirname(of: chunkPath(hash))) }
        try sql { () throws(SQLiteError) in
            try db.query("INSERT OR IGNORE INTO chunks(hash, size_bytes, stored_at_ms) VALUES(?, ?, ?)",
                         [.blob(hash.digest.bytes), .int(Int64(bytes.count)), .int(nowMs)])
        }
    }

    /// Stores several chunks received from elsewhere: each is verified against its hash,
    /// written to a temp file, then all are synced in one batch, named, their directories
    /// synced once, and their presence recorded in one transaction. Much cheaper per chunk
    /// than `writeChunk` when a transfer delivers many. On a bad chunk nothing is stored.
    public func writeChunks(_ chunks: [(hash: ChunkHash, bytes: [UInt8])], nowMs: Int64 = WallClock.nowMs()) throws(MeshError) {
        for c in chunks {
            guard c.bytes.count <= Int(Chunking.maxChunkSizeBytes), Blake2b256.hash(c.bytes) == c.hash.digest else {
                throw MeshError(.corrupt, "received chunk does not match its hash \(c.hash)",
                                hint: "the sender is broken or malicious; fetch it from another peer")
            }
        }
        _ = try stageAndStore(chunks.map { ($0.hash, $0.bytes[...]) }, verify: false, nowMs: nowMs)
    }

    /// Like `writeChunks`, but a bad chunk does not spoil the batch: each chunk is hashed once,
    /// the good ones are stored (one sync for all), and the result says which were good.
    public func writeChunksKeepingGood(_ chunks: [(hash: ChunkHash, bytes: ArraySlice<UInt8>)], nowMs: Int64 = WallClock.nowMs()) throws(MeshError) -> [Bool] {
        try stageAndStore(chunks, verify: true, nowMs: nowMs)
    }

    /// Writes chunks durably and records them; with `verify`, skips (and reports false for)
    /// those whose bytes do not match their hash. Each chunk is copied once, into one
    /// 4096-aligned staging buffer, hashed there (while it is in cache) and written from
    /// there, bypassing the page cache (O_DIRECT): copying into the cache cost a fifth of a
    /// receiving node's CPU. One sync round covers the batch.
    private func stageAndStore(_ chunks: [(hash: ChunkHash, bytes: ArraySlice<UInt8>)], verify: Bool,
                               nowMs: Int64) throws(MeshError) -> [Bool] {
        guard !chunks.isEmpty else { return [] }
        var good = [Bool]()
        var kept = [(hash: ChunkHash, sizeBytes: Int)]()
        var pending = [ChunkFiles.PendingChunk]()
        defer { chunkFiles.discard(&pending) }
        var dirs = Set<String>()
        let largest = chunks.map(\.bytes.count).max()!
        let capacity = (min(largest, Int(Chunking.maxChunkSizeBytes)) + 4095) & ~4095
        let staging = UnsafeMutableRawPointer.allocate(byteCount: max(capacity, 4096), alignment: 4096)
        defer { staging.deallocate() }
        for c in chunks {
            guard c.bytes.count <= Int(Chunking.maxChunkSizeBytes) else {
                good.append(false)
                continue
            }
            c.bytes.withUnsafeBytes { src in
                if let base = src.baseAddress { staging.copyMemory(from: base, byteCount: src.count) }
            }
            let raw = UnsafeRawBufferPointer(start: staging, count: c.bytes.count)
            guard !verify || Blake2b256.hash(raw) == c.hash.digest else {
                good.append(false)
                continue
            }
            good.append(true)
            kept.append((c.hash, c.bytes.count))
            let p = try chunkFiles.writeTemp(c.hash, raw, paddedCapacity: capacity)
            if let p { pending.append(p) }
            dirs.insert(FS.dirname(of: chunkPath(c.hash)))
        }
        guard !kept.isEmpty else { return good }
        try chunkFiles.commit(&pending)
        for d in dirs.sorted() { try FS.fsyncDirectory(d) }
        try db.transaction { () throws(MeshError) in
            try sql { () throws(SQLiteError) in
                for c in kept {
                    try db.query("INSERT OR IGNORE INTO chunks(hash, size_bytes, stored_at_ms) VALUES(?, ?, ?)",
                                 [.blob(c.hash.digest.bytes), .int(Int64(c.sizeBytes)), .int(nowMs)])
                }
            }
        }
        return good
    }

    /// The chunks of `contentID` that are not on disk, in file order, without duplicates.
    /// Nil if the recipe itself is unknown.
    public func missingChunks(_ contentID: ContentID) throws(MeshError) -> [ChunkHash]? {
        guard let r = try recipe(contentID) else { return nil }
        var seen = Set<ChunkHash>()
        var out = [ChunkHash]()
        for c in r.chunks where !seen.contains(c) {
            seen.insert(c)
            if !hasChunk(c) { out.append(c) }
        }
        return out
    }

    /// True when the recipe is known and every chunk is recorded present, by the manifest
    /// alone (no file system access: fast enough for listings). `verify` checks the disk.
    public func isRecordedComplete(_ contentID: ContentID) throws(MeshError) -> Bool {
        try sql { () throws(SQLiteError) -> Bool in
            let id = SQLValue.blob(contentID.digest.bytes)
            guard try db.scalarInt("SELECT 1 FROM recipes WHERE content_id = ?", [id]) != nil else { return false }
            let missing = try db.scalarInt("""
                SELECT count(*) FROM recipe_chunks rc
                WHERE rc.content_id = ? AND NOT EXISTS (SELECT 1 FROM chunks c WHERE c.hash = rc.hash)
                """, [id]) ?? 0
            return missing == 0
        }
    }

    /// True when the recipe is known and every chunk file is on disk (checks the file system).
    public func isComplete(_ contentID: ContentID) throws(MeshError) -> Bool {
        guard let missing = try missingChunks(contentID) else { return false }
        return missing.isEmpty
    }

}
