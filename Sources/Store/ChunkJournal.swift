import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What a pass over chunk files that the `chunks` table did not record did with them.
public struct ChunkSettlement: Sendable, Equatable {
    /// Files whose bytes matched their name: now recorded (no need to fetch them again).
    public var recorded = 0
    /// Files whose bytes did not match their name: deleted (fetched again when needed).
    public var removed = 0
    /// Files a process that still runs is writing right now: left to it.
    public var inFlight = 0

    public init() {}
}

/// The `chunks` table is the store's one truth about which chunks it holds: every reader
/// (completeness, `ls`, `status`, holders, `have` bitmaps, `get`, the fetch scheduler) asks it,
/// never the file system. Its invariant: a recorded chunk's file is present with the right
/// bytes. Writers keep it by making the file durable and naming it *before* the row commits.
///
/// The reverse can therefore happen: a process killed between naming a file and committing its
/// row leaves a chunk file that nothing records. To find those without listing 500 000 files at
/// every open, a writer first journals the hashes it is about to name (`chunk_writes`, tagged
/// with a `WriterStamp`), and deletes them in the same transaction that records the chunks.
/// Every open finishes the journalled writes of processes that are gone: a file that hashes
/// right is recorded, one that does not is deleted, an absent one is forgotten. That work is
/// bounded by the writes in flight when the process died (a few batches).
///
/// The journal is committed without waiting for the disk (`synchronous = NORMAL`): it must
/// survive the writer's death (kill -9), which that guarantees, but after a power loss a named,
/// unrecorded file may have no journal row. Such a file is harmless, never trusted (writers
/// dedup only against recorded chunks, and replace unrecorded files), rewritten when its chunk
/// is fetched again, and settled by `verify`. Stores older than the journal get one full sweep
/// at their first open (`unrecordedFilesSwept`).
///
/// A garbage collection journals the chunks it has unrecorded and is about to unlink, as
/// writer `gc <stamp>` (GarbageCollector.swift). Those rows are deletions, not writes: they
/// never make a chunk "being written", and an open finishes those of a dead collection by
/// unlinking the files still unrecorded and not being written.
extension Store {
    /// `node_state` key set once the one-time sweep of unrecorded chunk files has run.
    static let sweptKey = "unrecorded_chunk_files_swept"

    /// True when the `chunks` table records `hash` as present.
    public func isChunkRecorded(_ hash: ChunkHash) throws(MeshError) -> Bool {
        try sql { () throws(SQLiteError) in
            try db.scalarInt("SELECT 1 FROM chunks WHERE hash = ?", [.blob(hash.digest.bytes)]) != nil
        }
    }

    /// Journals that `writer` is about to give these chunk files their final names. Committed
    /// before the first name appears; durable against the writer's death, not power loss (see above).
    func beginChunkWrites(_ hashes: some Sequence<ChunkHash>, writer: WriterStamp) throws(MeshError) {
        let w = SQLValue.text(writer.description)
        try sql { () throws(SQLiteError) in try db.exec("PRAGMA synchronous = NORMAL") }
        defer { try? db.exec("PRAGMA synchronous = FULL") }
        try db.transaction { () throws(MeshError) in
            try sql { () throws(SQLiteError) in
                for h in hashes {
                    try db.query("INSERT OR IGNORE INTO chunk_writes(hash, writer) VALUES(?, ?)", [.blob(h.digest.bytes), w])
                }
            }
        }
    }

    /// Records chunks whose files are durable under their final names, and ends their journal
    /// rows, in one transaction. Must run inside `db.transaction` (see `recordChunks`).
    func insertChunkRows(_ chunks: [(hash: ChunkHash, sizeBytes: Int)], writer: WriterStamp?, nowMs: Int64) throws(MeshError) {
        try sql { () throws(SQLiteError) in
            for c in chunks {
                try db.query("INSERT OR IGNORE INTO chunks(hash, size_bytes, stored_at_ms) VALUES(?, ?, ?)",
                             [.blob(c.hash.digest.bytes), .int(Int64(c.sizeBytes)), .int(nowMs)])
                if let writer {
                    try db.query("DELETE FROM chunk_writes WHERE hash = ? AND writer = ?",
                                 [.blob(c.hash.digest.bytes), .text(writer.description)])
                }
            }
        }
    }

    /// `insertChunkRows` in its own transaction.
    func recordChunks(_ chunks: [(hash: ChunkHash, sizeBytes: Int)], writer: WriterStamp?, nowMs: Int64) throws(MeshError) {
        guard !chunks.isEmpty else { return }
        try db.transaction { () throws(MeshError) in try insertChunkRows(chunks, writer: writer, nowMs: nowMs) }
    }

    /// Drops the records of chunks whose files were found missing or damaged, so that the
    /// store stops counting them (their items become incomplete, and a running node fetches
    /// them again). Their files, if any, are removed first: a writer never touches the file of
    /// a recorded chunk, so none can be replacing it meanwhile.
    public func forgetChunks(_ hashes: [ChunkHash]) throws(MeshError) {
        guard !hashes.isEmpty else { return }
        for h in hashes { FS.unlink(chunkPath(h)) }
        try db.transaction { () throws(MeshError) in
            try sql { () throws(SQLiteError) in
                for h in hashes {
                    try db.query("DELETE FROM chunks WHERE hash = ?", [.blob(h.digest.bytes)])
                    try db.query("DELETE FROM chunk_backings WHERE hash = ? AND writer IS NULL", [.blob(h.digest.bytes)])
                }
            }
        }
    }

    /// Hashes with a journal row of a process that may still be writing them (a collection's
    /// rows, `gc <stamp>`, are deletions, not writes: GarbageCollector.swift).
    func chunksBeingWritten() throws(MeshError) -> Set<ChunkHash> {
        var out = Set<ChunkHash>()
        try db.forEach("SELECT hash, writer FROM chunk_writes") { (s) throws(MeshError) in
            guard let d = Bytes32(bytes: s.blob(0)) else { return }
            let w = s.text(1)
            if Self.gcStamp(ofWriter: w) == nil, WriterStamp(w)?.mayBeRunning ?? false { out.insert(ChunkHash(digest: d)) }
        }
        return out
    }

    /// What `settleUnrecordedFile` found.
    enum FileSettlement { case recorded, removed, inFlight, absent, alreadyRecorded }

    /// Brings one chunk file that the table may not record into agreement with it: recorded if
    /// its bytes match its name, deleted if not. Left alone when it is recorded already or a
    /// live process journalled a write of it (`busy`, re-checked before anything is deleted).
    func settleUnrecordedFile(_ hash: ChunkHash, busy: Set<ChunkHash>, nowMs: Int64) throws(MeshError) -> FileSettlement {
        if try isChunkRecorded(hash) { return .alreadyRecorded }
        if busy.contains(hash) { return .inFlight }
        let path = chunkPath(hash)
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == ENOENT { return .absent }
            throw MeshError.posix(errno, "opening", path: path)
        }
        defer { _ = Glibc.close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw MeshError.posix(errno, "inspecting", path: path) }
        var good = false
        if (st.st_mode & S_IFMT) == S_IFREG, st.st_size <= off_t(Chunking.maxChunkSizeBytes) {
            var bytes = [UInt8](repeating: 0, count: Int(st.st_size))
            let got: Result<Int, MeshError> = bytes.withUnsafeMutableBytes { raw in
                guard let base = raw.baseAddress else { return .success(0) }
                return Result { () throws(MeshError) in try readAt(fd: fd, path: path, into: base, count: raw.count, offset: 0) }
            }
            good = try got.get() == bytes.count && Blake2b256.hash(bytes) == hash.digest
        }
        if good {
            // Recorded only if the file checked is still there, looked at under the write lock: a
            // collection unlinks unrecorded files only while it holds it (GarbageCollector.swift).
            testHooks.beforeRecording?("settle")
            let recorded = try db.transaction { () throws(MeshError) -> Bool in
                var now = stat()
                guard stat(path, &now) == 0, now.st_ino == st.st_ino, now.st_dev == st.st_dev else { return false }
                try insertChunkRows([(hash, Int(st.st_size))], writer: nil, nowMs: nowMs)
                return true
            }
            return recorded ? .recorded : .absent
        }
        // Delete only the file that was checked, and only if no live writer has journalled the
        // chunk since (its write would replace this file by rename).
        if try chunksBeingWritten().contains(hash) { return .inFlight }
        var now = stat()
        guard stat(path, &now) == 0, now.st_ino == st.st_ino, now.st_dev == st.st_dev else { return .absent }
        FS.unlink(path)
        return .removed
    }

    /// Finishes the journalled chunk writes of processes that are gone (run at every open):
    /// bounded by what was in flight when they died.
    @discardableResult
    func finishInterruptedChunkWrites(nowMs: Int64 = WallClock.nowMs()) throws(MeshError) -> ChunkSettlement {
        var rows = [(hash: ChunkHash, writer: String, running: Bool)]()
        var collections = [(hash: ChunkHash, writer: String)]()
        try db.forEach("SELECT hash, writer FROM chunk_writes") { (s) throws(MeshError) in
            guard let d = Bytes32(bytes: s.blob(0)) else { return }
            let w = s.text(1)
            if let gc = Self.gcStamp(ofWriter: w) {
                // A collection's deletions: those of a dead one are finished (GarbageCollector.swift).
                if !gc.mayBeRunning { collections.append((ChunkHash(digest: d), w)) }
                return
            }
            rows.append((ChunkHash(digest: d), w, WriterStamp(w)?.mayBeRunning ?? false))
        }
        if !collections.isEmpty { try finishInterruptedCollections(collections) }
        var result = ChunkSettlement()
        guard rows.contains(where: { !$0.running }) else { return result }
        let busy = Set(rows.filter(\.running).map(\.hash))
        var done = Set<ChunkHash>()
        for r in rows where !r.running {
            if done.insert(r.hash).inserted {
                switch try settleUnrecordedFile(r.hash, busy: busy, nowMs: nowMs) {
                case .recorded: result.recorded += 1
                case .removed: result.removed += 1
                case .inFlight: result.inFlight += 1
                case .absent, .alreadyRecorded: break
                }
            }
            try sql { () throws(SQLiteError) in
                try db.query("DELETE FROM chunk_writes WHERE hash = ? AND writer = ?", [.blob(r.hash.digest.bytes), .text(r.writer)])
            }
        }
        return result
    }

    /// True once this store has had its one-time sweep for unrecorded chunk files.
    func unrecordedFilesSwept() throws(MeshError) -> Bool {
        try sql { () throws(SQLiteError) in
            try db.scalarInt("SELECT 1 FROM node_state WHERE key = ?", [.text(Self.sweptKey)]) != nil
        }
    }

    /// The recorded chunks whose hash starts with byte `prefix` (one fan-out directory), by a
    /// range scan of the primary key.
    func recordedChunks(withPrefix prefix: UInt8) throws(MeshError) -> [ChunkHash: Int] {
        var out = [ChunkHash: Int]()
        let sql = prefix == 0xff ? "SELECT hash, size_bytes FROM chunks WHERE hash >= ?"
                                 : "SELECT hash, size_bytes FROM chunks WHERE hash >= ? AND hash < ?"
        let args: [SQLValue] = prefix == 0xff ? [.blob([prefix])] : [.blob([prefix]), .blob([prefix + 1])]
        try db.forEach(sql, args) { (s) throws(MeshError) in
            if let d = Bytes32(bytes: s.blob(0)) { out[ChunkHash(digest: d)] = Int(s.int(1)) }
        }
        return out
    }

    /// Chunk file names in fan-out directory `prefix` (64 hex digits; anything else is ignored).
    func chunkFileNames(withPrefix prefix: UInt8) -> [(name: String, hash: ChunkHash)] {
        FS.list("\(chunksDir)/\(Hex.encode([prefix]))").compactMap { name in
            guard name.utf8.count == 64, let h = ChunkHash(hex: name), h.description == name,
                  UInt8(truncatingIfNeeded: h.digest.w0 >> 56) == prefix else { return nil }
            return (name, h)
        }.sorted { $0.name < $1.name }
    }

    /// Once per store (those written before the journal existed): lists every fan-out directory
    /// and settles the files the table does not record. Hashes only those.
    func sweepUnrecordedChunkFiles(nowMs: Int64 = WallClock.nowMs()) throws(MeshError) -> ChunkSettlement {
        var result = ChunkSettlement()
        let busy = try chunksBeingWritten()
        for p in 0..<256 {
            let prefix = UInt8(p)
            // The records first, then the names: a chunk recorded in between is settled as
            // "already recorded", never mistaken for one without a file.
            let recorded = try recordedChunks(withPrefix: prefix)
            for f in chunkFileNames(withPrefix: prefix) where recorded[f.hash] == nil {
                switch try settleUnrecordedFile(f.hash, busy: busy, nowMs: nowMs) {
                case .recorded: result.recorded += 1
                case .removed: result.removed += 1
                case .inFlight: result.inFlight += 1
                case .absent, .alreadyRecorded: break
                }
            }
        }
        try sql { () throws(SQLiteError) in
            try db.query("INSERT OR IGNORE INTO node_state(key, value) VALUES(?, 1)", [.text(Self.sweptKey)])
        }
        return result
    }

    /// Run at open: the journal always, the full sweep once.
    func settleChunkFilesAtOpen() throws(MeshError) {
        try settlePendingBackings()
        try settleStagingFiles()
        try finishInterruptedChunkWrites()
        if !(try unrecordedFilesSwept()) { _ = try sweepUnrecordedChunkFiles() }
    }
}
