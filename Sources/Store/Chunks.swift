import Foundation

extension Store {
    // MARK: - Chunks

    /// Where a chunk's file lives: `chunks/ab/<hex>`.
    public func chunkPath(_ hash: ChunkHash) -> String { chunkFiles.path(hash) }

    /// True when the store records the chunk as present (`chunks`, the one truth: see
    /// `ChunkJournal.swift`); false also when the database cannot be read.
    public func hasChunk(_ hash: ChunkHash) -> Bool { (try? isChunkRecorded(hash)) ?? false }

    /// Reads a recorded chunk and checks it against its hash; a mismatch is `.corrupt`.
    public func readChunk(_ hash: ChunkHash) throws(MeshError) -> [UInt8] {
        let path = chunkPath(hash)
        guard try isChunkRecorded(hash) else {
            throw MeshError(.unknownItem, "chunk \(hash) is not in this store", hint: "fetch it from a peer")
        }
        guard FS.exists(path) else {
            // Held by a folder file instead (ChunkBackings.swift): read there and verified.
            if let size = try recordedSize(hash) {
                var bytes: [UInt8]
                let buf = ScratchBuffer(count: size)
                if try readThroughBackings(hash, into: buf.base, expected: size) {
                    bytes = Array(UnsafeRawBufferPointer(start: buf.base, count: size))
                    return bytes
                }
            }
            throw MeshError(.corrupt, "chunk \(hash) is missing from the store (\(path))",
                            hint: "run `meshnode verify` to find every damaged item")
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
        do {
            return try chunkFiles.read(hash, into: base, capacity: dest.count, expected: expectedBytes, itemName: "an item served to a peer")
        } catch where error.code == .corrupt {
            // No (good) chunk file: a folder file that backs it, checked (a person may have
            // edited it; then that backing goes, and the caller's `forgetChunks` finds nothing
            // else) by the fingerprint of the bytes hashed at its put where known (ChunkFingerprints.swift).
            if try readThroughBackings(hash, into: base, expected: expectedBytes, fast: true) { return expectedBytes }
            throw error
        }
    }

    /// The recorded size of a chunk, nil when it is not recorded.
    func recordedSize(_ hash: ChunkHash) throws(MeshError) -> Int? {
        try sql { () throws(SQLiteError) in
            try db.scalarInt("SELECT size_bytes FROM chunks WHERE hash = ?", [.blob(hash.digest.bytes)]).map { Int($0) }
        }
    }

    /// Stores a chunk received from elsewhere: verified against `hash` first, then written
    /// crash-safely and recorded as present (see `writeChunks`).
    public func writeChunk(_ hash: ChunkHash, bytes: [UInt8], nowMs: Int64 = WallClock.nowMs()) throws(MeshError) {
        guard bytes.count <= Int(Chunking.maxChunkSizeBytes) else {
            throw MeshError(.invalidInput, "chunk \(hash) is \(bytes.count) bytes, over the limit", hint: "the sender is broken")
        }
        try writeChunks([(hash, bytes)], nowMs: nowMs)
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
    ///
    /// Only chunks the table already records are skipped (their files were checked when they
    /// were recorded). A file that is there but not recorded (left by a write that was killed
    /// before recording it) is not trusted: it is written again and replaced, and recorded.
    /// The order keeps the table's invariant (`ChunkJournal.swift`): journal, write + sync,
    /// name, directory sync, then record and end the journal rows in one transaction.
    private func stageAndStore(_ chunks: [(hash: ChunkHash, bytes: ArraySlice<UInt8>)], verify: Bool,
                               nowMs: Int64) throws(MeshError) -> [Bool] {
        guard !chunks.isEmpty else { return [] }
        var written = [(hash: ChunkHash, sizeBytes: Int)]()
        var seen = Set<ChunkHash>()
        var pending = [ChunkFiles.PendingChunk]()
        defer { chunkFiles.discard(&pending) }
        var dirs = Set<String>()
        let good = try AlignedChunks.forEach(chunks, verify: verify) { (i, raw, capacity) throws(MeshError) in
            let h = chunks[i].hash
            // Twice in one batch (endgame duplicates), or recorded already: nothing to write.
            guard seen.insert(h).inserted, try !isChunkRecorded(h) else { return }
            written.append((h, raw.count))
            pending.append(try chunkFiles.writeTemp(h, raw, paddedCapacity: capacity))
            dirs.insert(FS.dirname(of: chunkPath(h)))
        }
        guard !written.isEmpty else { return good }
        let writer = WriterStamp.current
        try beginChunkWrites(written.map(\.hash), writer: writer)
        try chunkFiles.commit(&pending)
        for d in dirs.sorted() { try FS.fsyncDirectory(d) }
        try recordChunks(written, writer: writer, nowMs: nowMs)
        return good
    }

    /// The chunks of `contentID` that the store does not record as present, in file order,
    /// without duplicates. Nil if the recipe itself is unknown.
    public func missingChunks(_ contentID: ContentID) throws(MeshError) -> [ChunkHash]? {
        guard let r = try recipe(contentID) else { return nil }
        let held = try recordedChunks(r)
        var seen = Set<ChunkHash>()
        var out = [ChunkHash]()
        for (i, c) in r.chunks.enumerated() where !held[i] && seen.insert(c).inserted { out.append(c) }
        return out
    }

    /// Per index of `recipe`, whether the store records that chunk as present: one indexed
    /// query, whatever the number of chunks (500 000 for a 1 TB item).
    public func recordedChunks(_ recipe: Recipe) throws(MeshError) -> [Bool] {
        var held = [Bool](repeating: false, count: recipe.chunks.count)
        try db.forEach("""
            SELECT rc.idx FROM recipe_chunks rc JOIN chunks c ON c.hash = rc.hash WHERE rc.content_id = ?
            """, [.blob(recipe.contentID.digest.bytes)]) { (s) throws(MeshError) in
            let i = Int(s.int(0))
            if i >= 0 && i < held.count { held[i] = true }
        }
        return held
    }

    /// True when the recipe is known and every chunk is recorded present: the one test of
    /// completeness, used by `ls`, `status`, holders, `have` announcements, the fetcher and
    /// `get` alike. By the table alone (no file system access: fast enough for listings); the
    /// table's invariant keeps it true to the files, and `verify` checks them.
    public func isComplete(_ contentID: ContentID) throws(MeshError) -> Bool {
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
}
