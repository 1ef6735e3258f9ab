import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A place in a watched folder's file where a chunk's bytes are, instead of a chunk file: so
/// that a materialised item does not take its size twice (docs/SYNC.md, "Disk").
///
/// A chunk is present (`chunks` has its row) when it has a chunk file *or* a backing. A person
/// may edit or delete the folder file at any time, so a backing is never trusted: every read
/// through one checks the bytes (`read(into:)`: BLAKE2b, or for bytes served to a peer, which
/// verifies them itself, the XXH3 fingerprint of the bytes hashed at the put, `ChunkFingerprints`). A mismatch drops that backing (counted in
/// `BackingCounters.mismatches`); a chunk left with no chunk file and no backing loses its row
/// too, so the store stops counting it and a running node fetches it again. A backing whose
/// file is gone or is another file now (its inode differs) is *stale*: skipped, and dropped
/// the same way (`BackingCounters.stale`).
///
/// Backings of a file that a materialise has not yet renamed into place are *pending* (their
/// `writer` is the materialiser's `WriterStamp`): never read from, but they count as a source
/// while that writer may run, so that nothing unrecords a chunk in the instant between the
/// rename and the transaction that puts them in force. An open settles those of dead writers:
/// in force if the file at the path is theirs (the rename happened), else deleted.
public struct ChunkBacking: Sendable, Hashable {
    public var hash: ChunkHash
    /// The absolute path of the folder file.
    public var path: String
    public var offsetBytes: UInt64
    public var sizeBytes: Int
    /// That file when the backing was recorded; its inode says which file the backing is about.
    public var fileStat: FileStat

    public init(hash: ChunkHash, path: String, offsetBytes: UInt64, sizeBytes: Int, fileStat: FileStat) {
        self.hash = hash
        self.path = path
        self.offsetBytes = offsetBytes
        self.sizeBytes = sizeBytes
        self.fileStat = fileStat
    }
}

/// Process-wide counts of what backings did (for `status` and `/metrics`).
public enum BackingCounters {
    /// Backings dropped because the bytes at their place no longer hash right (the file was edited).
    public static let mismatches = Atomic<UInt64>(0)
    /// Backings dropped because their file is gone or was replaced.
    public static let stale = Atomic<UInt64>(0)
    /// Chunks of a folder file that were copied from another folder file (no chunk file, no fetch).
    public static let chunksCopied = Atomic<UInt64>(0)
    /// Chunk files deleted because a folder file now backs them.
    public static let chunkFilesReleased = Atomic<UInt64>(0)
}

/// What reading through one backing found.
enum BackingRead { case ok, mismatch, stale, unreadable }

/// `copy_file_range(2)`, looked up at run time (Swift's Glibc module does not declare it).
private typealias CopyFileRange = @convention(c) (Int32, UnsafeMutablePointer<Int64>?, Int32, UnsafeMutablePointer<Int64>?, Int, UInt32) -> Int
nonisolated(unsafe) private let copyFileRangeFn: CopyFileRange? = {
    guard getenv("MESHNODE_NO_COPY_FILE_RANGE") == nil, let s = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "copy_file_range") else { return nil }
    return unsafeBitCast(s, to: CopyFileRange.self)
}()

extension ChunkBacking {
    /// Opens the backing's file read-only if it is still the file the backing is about.
    func open() -> (fd: Int32, result: BackingRead) {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else {
            let e = errno
            return (-1, e == ENOENT || e == ENOTDIR || e == ELOOP ? .stale : .unreadable)
        }
        var st = Glibc.stat()
        guard fstat(fd, &st) == 0 else {
            _ = Glibc.close(fd)
            return (-1, .unreadable)
        }
        guard (st.st_mode & S_IFMT) == S_IFREG, UInt64(st.st_ino) == fileStat.inode else {
            _ = Glibc.close(fd)
            return (-1, .stale)
        }
        return (fd, .ok)
    }

    /// Reads the chunk into `buf` (at least `sizeBytes` long) and checks its hash; with `fast`,
    /// by its fingerprint where one is known (`ChunkFingerprints`: bytes served to a peer, which
    /// verifies them itself). Thread-safe.
    func read(into buf: UnsafeMutableRawPointer, fast: Bool = false) -> BackingRead {
        let (fd, r) = open()
        guard fd >= 0 else { return r }
        defer { _ = Glibc.close(fd) }
        guard let got = try? readAt(fd: fd, path: path, into: buf, count: sizeBytes, offset: offsetBytes) else { return .unreadable }
        let bytes = UnsafeRawBufferPointer(start: buf, count: sizeBytes)
        guard got == sizeBytes, fast ? ChunkFingerprints.matches(hash, bytes) : Blake2b256.hash(bytes) == hash.digest else { return .mismatch }
        return .ok
    }

    /// Copies the chunk to `out` at `destOffset` and checks it there: `copy_file_range` (a
    /// reflink on file systems that share extents), then the copy is read back from `out`
    /// (`readable` must say whether it can be) and hashed. Falls back to read, hash, write.
    /// `buf` holds at least `sizeBytes` rounded up to 4096; with `direct` the write is padded.
    func copy(to out: Int32, at destOffset: UInt64, readable: Bool, direct: Bool, buf: UnsafeMutableRawPointer,
              outPath: String) throws(MeshError) -> BackingRead {
        let (fd, r) = open()
        guard fd >= 0 else { return r }
        defer { _ = Glibc.close(fd) }
        if readable, !direct, let cfr = copyFileRangeFn, sizeBytes > 0 {
            var src = Int64(offsetBytes)
            var dst = Int64(destOffset)
            var left = sizeBytes
            var failed = false
            while left > 0 {
                let n = cfr(fd, &src, out, &dst, left, 0)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 {
                    failed = true
                    break
                }
                left -= n
            }
            if !failed {
                guard let got = try? readAt(fd: out, path: outPath, into: buf, count: sizeBytes, offset: destOffset),
                      got == sizeBytes else { return .unreadable }
                return Blake2b256.hash(UnsafeRawBufferPointer(start: buf, count: sizeBytes)) == hash.digest ? .ok : .mismatch
            }
            // EXDEV, EINVAL, EOPNOTSUPP, a short file...: the plain copy below decides.
        }
        guard let got = try? readAt(fd: fd, path: path, into: buf, count: sizeBytes, offset: offsetBytes) else { return .unreadable }
        guard got == sizeBytes, Blake2b256.hash(UnsafeRawBufferPointer(start: buf, count: sizeBytes)) == hash.digest else { return .mismatch }
        try writeAt(fd: out, path: outPath, from: buf, count: direct ? (sizeBytes + 4095) & ~4095 : sizeBytes, offset: destOffset)
        return .ok
    }
}

extension Store {
    // MARK: - Reading backings

    static let backingColumns = "hash, path, offset, size_bytes, inode, file_size, mtime_ns"

    static func backing(_ s: Statement) -> ChunkBacking? {
        guard let d = Bytes32(bytes: s.blob(0)) else { return nil }
        return ChunkBacking(hash: ChunkHash(digest: d), path: s.text(1), offsetBytes: UInt64(bitPattern: s.int(2)), sizeBytes: Int(s.int(3)),
                            fileStat: FileStat(sizeBytes: UInt64(bitPattern: s.int(5)), mtimeNs: s.int(6), inode: UInt64(bitPattern: s.int(4))))
    }

    /// The backings in force of `hash`.
    public func backings(of hash: ChunkHash) throws(MeshError) -> [ChunkBacking] {
        var out = [ChunkBacking]()
        try db.forEach("SELECT \(Self.backingColumns) FROM chunk_backings WHERE hash = ? AND writer IS NULL",
                       [.blob(hash.digest.bytes)]) { (s) throws(MeshError) in
            if let b = Self.backing(s) { out.append(b) }
        }
        return out
    }

    /// The backings in force of the chunks of `contentID`, by hash (one indexed query).
    public func backings(forContent contentID: ContentID) throws(MeshError) -> [ChunkHash: [ChunkBacking]] {
        var out = [ChunkHash: [ChunkBacking]]()
        try db.forEach("""
            SELECT DISTINCT b.hash, b.path, b.offset, b.size_bytes, b.inode, b.file_size, b.mtime_ns
            FROM recipe_chunks rc JOIN chunk_backings b ON b.hash = rc.hash
            WHERE rc.content_id = ? AND b.writer IS NULL
            """, [.blob(contentID.digest.bytes)]) { (s) throws(MeshError) in
            if let b = Self.backing(s) { out[b.hash, default: []].append(b) }
        }
        return out
    }

    /// The backings in force at `path` (any inode).
    public func backings(atPath path: String) throws(MeshError) -> [ChunkBacking] {
        var out = [ChunkBacking]()
        try db.forEach("SELECT \(Self.backingColumns) FROM chunk_backings WHERE path = ? AND writer IS NULL",
                       [.text(path)]) { (s) throws(MeshError) in
            if let b = Self.backing(s) { out.append(b) }
        }
        return out
    }

    /// Backings in force, and the bytes of the distinct chunks they back (for `status`).
    public func backingTotals() throws(MeshError) -> (rows: Int, chunks: Int, bytes: UInt64) {
        try sql { () throws(SQLiteError) in
            let rows = Int(try db.scalarInt("SELECT count(*) FROM chunk_backings WHERE writer IS NULL") ?? 0)
            let r = try db.query("""
                SELECT count(*), coalesce(sum(size_bytes), 0) FROM
                (SELECT hash, max(size_bytes) AS size_bytes FROM chunk_backings WHERE writer IS NULL GROUP BY hash)
                """)
            guard let row = r.first, case .int(let n) = row[0], case .int(let b) = row[1] else { return (rows, 0, 0) }
            return (rows, Int(n), UInt64(max(0, b)))
        }
    }

    /// Reads `hash` through its backings into `buf` (room for `expected` bytes), verifying the
    /// bytes. Backings that fail are dropped, and the chunk loses its record if nothing else
    /// holds it. True when a backing gave the right bytes.
    func readThroughBackings(_ hash: ChunkHash, into buf: UnsafeMutableRawPointer, expected: Int, fast: Bool = false) throws(MeshError) -> Bool {
        let rows = try backings(of: hash)
        guard !rows.isEmpty else { return false }
        var failed = [(ChunkBacking, BackingRead)]()
        var good = false
        for b in rows where b.sizeBytes == expected {
            let r = b.read(into: buf, fast: fast)
            if r == .ok {
                good = true
                break
            }
            failed.append((b, r))
        }
        try dropBackings(failed)
        return good
    }

    // MARK: - Dropping backings

    /// Drops backings that failed (`.mismatch`, `.stale`; `.unreadable` ones stay: the bytes may
    /// be fine once the disk is), counts them, and unrecords the chunks left with no source.
    /// Returns the chunks unrecorded.
    @discardableResult
    func dropBackings(_ failed: [(ChunkBacking, BackingRead)]) throws(MeshError) -> [ChunkHash] {
        let gone = failed.filter { $0.1 == .mismatch || $0.1 == .stale }
        guard !gone.isEmpty else { return [] }
        for (_, r) in gone {
            if r == .mismatch { BackingCounters.mismatches.wrappingAdd(1, ordering: .relaxed) } else { BackingCounters.stale.wrappingAdd(1, ordering: .relaxed) }
        }
        return try db.transaction { () throws(MeshError) -> [ChunkHash] in
            try sql { () throws(SQLiteError) in
                for (b, _) in gone {
                    try db.query("DELETE FROM chunk_backings WHERE hash = ? AND path = ? AND offset = ? AND inode = ?",
                                 [.blob(b.hash.digest.bytes), .text(b.path), .int(Int64(bitPattern: b.offsetBytes)), .int(Int64(bitPattern: b.fileStat.inode))])
                }
            }
            return try unrecordSourceless(Set(gone.map(\.0.hash)))
        }
    }

    /// Inside a transaction: of `hashes`, unrecords those with no chunk file, no backing in force
    /// whose file is still the one it is about, and no pending backing of a writer that may still
    /// run (stale backings found on the way are dropped). Returns those unrecorded.
    func unrecordSourceless(_ hashes: Set<ChunkHash>) throws(MeshError) -> [ChunkHash] {
        var out = [ChunkHash]()
        for h in hashes.sorted(by: { $0.description < $1.description }) {
            if FS.exists(chunkPath(h)) { continue }
            var live = false
            var stale = [ChunkBacking]()
            try db.forEach("SELECT \(Self.backingColumns), writer FROM chunk_backings WHERE hash = ?", [.blob(h.digest.bytes)]) { (s) throws(MeshError) in
                guard let b = Self.backing(s) else { return }
                if !s.isNull(7) {
                    if WriterStamp(s.text(7))?.mayBeRunning ?? false { live = true }
                    return
                }
                if case .file(let o)? = FolderFS.lstatEntry(b.path), o.kind == .regular, o.stat.inode == b.fileStat.inode { live = true } else { stale.append(b) }
            }
            try sql { () throws(SQLiteError) in
                for b in stale {
                    BackingCounters.stale.wrappingAdd(1, ordering: .relaxed)
                    try db.query("DELETE FROM chunk_backings WHERE hash = ? AND path = ? AND offset = ? AND inode = ? AND writer IS NULL",
                                 [.blob(b.hash.digest.bytes), .text(b.path), .int(Int64(bitPattern: b.offsetBytes)), .int(Int64(bitPattern: b.fileStat.inode))])
                }
                if !live {
                    try db.query("DELETE FROM chunks WHERE hash = ?", [.blob(h.digest.bytes)])
                    if db.changes > 0 { out.append(h) }
                }
            }
        }
        return out
    }

    /// Drops every backing in force whose file is gone or is another file now; re-reads those of
    /// files changed in place (size or mtime differ from when they were recorded) and drops the
    /// ones that no longer match. Unrecords the chunks that leaves with no source. Run by a
    /// collection; bounded by the folder files (and the bytes of those that changed).
    @discardableResult
    public func sweepStaleBackings() throws(MeshError) -> [ChunkHash] {
        var files = [String: Set<FileStat>]()
        try db.forEach("SELECT DISTINCT path, inode, file_size, mtime_ns FROM chunk_backings WHERE writer IS NULL") { (s) throws(MeshError) in
            files[s.text(0), default: []].insert(FileStat(sizeBytes: UInt64(bitPattern: s.int(2)), mtimeNs: s.int(3), inode: UInt64(bitPattern: s.int(1))))
        }
        var failed = [(ChunkBacking, BackingRead)]()
        for (p, stats) in files.sorted(by: { $0.key < $1.key }) {
            var current: FileStat?
            if case .file(let o)? = FolderFS.lstatEntry(p), o.kind == .regular { current = o.stat }
            for st in stats where st != current {
                var rows = [ChunkBacking]()
                try db.forEach("SELECT \(Self.backingColumns) FROM chunk_backings WHERE path = ? AND inode = ? AND file_size = ? AND mtime_ns = ? AND writer IS NULL",
                               [.text(p), .int(Int64(bitPattern: st.inode)), .int(Int64(bitPattern: st.sizeBytes)), .int(st.mtimeNs)]) { (s) throws(MeshError) in
                    if let b = Self.backing(s) { rows.append(b) }
                }
                guard let now = current, now.inode == st.inode else {
                    failed += rows.map { ($0, .stale) }
                    continue
                }
                // Changed in place: each backing is read again; those that still hold their chunk stay.
                var good = [ChunkBacking]()
                let buf = ScratchBuffer(count: ((rows.map(\.sizeBytes).max() ?? 0) + 4095) & ~4095)
                for b in rows {
                    let r = b.read(into: buf.base)
                    if r == .ok { good.append(b) } else { failed.append((b, r)) }
                }
                try restamp(good, as: now)
            }
        }
        return try dropBackings(failed)
    }

    /// Records that `rows` were checked against their file as it is now (`stat`).
    func restamp(_ rows: [ChunkBacking], as stat: FileStat) throws(MeshError) {
        guard !rows.isEmpty else { return }
        try db.transaction { () throws(MeshError) in
            try sql { () throws(SQLiteError) in
                for b in rows {
                    try db.query("""
                        UPDATE OR IGNORE chunk_backings SET file_size = ?, mtime_ns = ?
                        WHERE hash = ? AND path = ? AND offset = ? AND inode = ? AND writer IS NULL
                        """, [.int(Int64(bitPattern: stat.sizeBytes)), .int(stat.mtimeNs), .blob(b.hash.digest.bytes), .text(b.path),
                              .int(Int64(bitPattern: b.offsetBytes)), .int(Int64(bitPattern: b.fileStat.inode))])
                }
            }
        }
    }

    /// After the file at `path` was read whole as `recipe` (a folder put of a local edit): its
    /// backings whose place now holds another chunk are dropped (the edit replaced those bytes),
    /// the others are restamped with `stat`. No file is read.
    public func refreshBackings(path: String, recipe: Recipe, stat: FileStat) throws(MeshError) {
        let rows = try backings(atPath: path).filter { $0.fileStat.inode == stat.inode }
        guard !rows.isEmpty else { return }
        var good = [ChunkBacking]()
        var failed = [(ChunkBacking, BackingRead)]()
        let cs = UInt64(recipe.chunkSizeBytes)
        for b in rows {
            let i = Int(b.offsetBytes / max(cs, 1))
            if b.offsetBytes % cs == 0, i < recipe.chunks.count, recipe.chunks[i] == b.hash, recipe.length(ofChunk: i) == b.sizeBytes {
                good.append(b)
            } else {
                failed.append((b, .mismatch))
            }
        }
        try restamp(good, as: stat)
        try dropBackings(failed)
    }

    /// Settles, at open, the pending backings of materialisers that are gone: in force when the
    /// file at their path is the one they describe (the rename happened; the older backings of that
    /// path go, and their chunks are recorded), else deleted.
    func settlePendingBackings() throws(MeshError) {
        var dead = [String: [ChunkBacking]]()
        try db.forEach("SELECT \(Self.backingColumns), writer FROM chunk_backings WHERE writer IS NOT NULL") { (s) throws(MeshError) in
            guard let b = Self.backing(s), !(WriterStamp(s.text(7))?.mayBeRunning ?? false) else { return }
            dead[s.text(7), default: []].append(b)
        }
        for (writer, rows) in dead.sorted(by: { $0.key < $1.key }) {
            var byPath = [String: [ChunkBacking]]()
            for b in rows { byPath[b.path, default: []].append(b) }
            for (path, rows) in byPath.sorted(by: { $0.key < $1.key }) {
                var current: UInt64?
                if case .file(let o)? = FolderFS.lstatEntry(path), o.kind == .regular { current = o.stat.inode }
                if let inode = current, rows.allSatisfy({ $0.fileStat.inode == inode }) {
                    try putBackingsInForce(path: path, writer: writer, chunks: rows.map { ($0.hash, $0.sizeBytes) }, nowMs: WallClock.nowMs())
                } else {
                    try sql { () throws(SQLiteError) in
                        try db.query("DELETE FROM chunk_backings WHERE path = ? AND writer = ?", [.text(path), .text(writer)])
                    }
                }
            }
        }
    }

    // MARK: - Writing backings

    /// Records `rows` (all of one file) as pending backings of `writer`, in one transaction.
    func insertPendingBackings(_ rows: [ChunkBacking], writer: WriterStamp) throws(MeshError) {
        guard !rows.isEmpty else { return }
        try db.transaction { () throws(MeshError) in
            try sql { () throws(SQLiteError) in
                for b in rows {
                    try db.query("""
                        INSERT OR REPLACE INTO chunk_backings(hash, path, offset, size_bytes, inode, file_size, mtime_ns, writer)
                        VALUES(?, ?, ?, ?, ?, ?, ?, ?)
                        """, [.blob(b.hash.digest.bytes), .text(b.path), .int(Int64(bitPattern: b.offsetBytes)), .int(Int64(b.sizeBytes)),
                              .int(Int64(bitPattern: b.fileStat.inode)), .int(Int64(bitPattern: b.fileStat.sizeBytes)), .int(b.fileStat.mtimeNs),
                              .text(writer.description)])
                }
            }
        }
    }

    /// Inside a transaction: records `rows` as backings in force (a folder put, whose file was
    /// just read whole and hashed).
    func insertBackingsInForce(_ rows: [ChunkBacking]) throws(MeshError) {
        try sql { () throws(SQLiteError) in
            for b in rows {
                try db.query("""
                    INSERT OR REPLACE INTO chunk_backings(hash, path, offset, size_bytes, inode, file_size, mtime_ns, writer)
                    VALUES(?, ?, ?, ?, ?, ?, ?, NULL)
                    """, [.blob(b.hash.digest.bytes), .text(b.path), .int(Int64(bitPattern: b.offsetBytes)), .int(Int64(b.sizeBytes)),
                          .int(Int64(bitPattern: b.fileStat.inode)), .int(Int64(bitPattern: b.fileStat.sizeBytes)), .int(b.fileStat.mtimeNs)])
            }
        }
    }

    /// Drops the pending backings of `writer` at `path` (a materialise that gave up).
    func dropPendingBackings(path: String, writer: WriterStamp) {
        _ = try? sql { () throws(SQLiteError) in
            try db.query("DELETE FROM chunk_backings WHERE path = ? AND writer = ?", [.text(path), .text(writer.description)])
        }
    }

    /// In one transaction: the backings in force at `path` (the file that was there) go, the
    /// pending ones of `writer` come in force, and `chunks` (bytes the new file holds) are
    /// recorded present. The chunks only the old file held lose their record unless something
    /// else holds them (a chunk file kept by `keepOrphans`). Returns those unrecorded.
    @discardableResult
    func putBackingsInForce(path: String, writer: String, chunks: [(hash: ChunkHash, sizeBytes: Int)],
                            nowMs: Int64) throws(MeshError) -> [ChunkHash] {
        try db.transaction { () throws(MeshError) -> [ChunkHash] in
            var orphans = Set<ChunkHash>()
            try db.forEach("SELECT hash FROM chunk_backings WHERE path = ? AND writer IS NULL", [.text(path)]) { (s) throws(MeshError) in
                if let d = Bytes32(bytes: s.blob(0)) { orphans.insert(ChunkHash(digest: d)) }
            }
            orphans.subtract(chunks.map(\.hash))
            try sql { () throws(SQLiteError) in
                try db.query("DELETE FROM chunk_backings WHERE path = ? AND writer IS NULL", [.text(path)])
                try db.query("UPDATE chunk_backings SET writer = NULL WHERE path = ? AND writer = ?", [.text(path), .text(writer)])
            }
            try insertChunkRows(chunks, writer: nil, nowMs: nowMs)
            return try unrecordSourceless(orphans)
        }
    }

    /// Deletes the chunk files of `hashes`, each only while a backing in force holds the chunk
    /// (checked under the write lock, so that no collection or drop interleaves).
    func releaseChunkFiles(_ hashes: [ChunkHash]) throws(MeshError) {
        guard !hashes.isEmpty else { return }
        try db.transaction { () throws(MeshError) in
            for h in hashes {
                let backed = try sql { () throws(SQLiteError) in
                    try db.scalarInt("SELECT 1 FROM chunk_backings WHERE hash = ? AND writer IS NULL LIMIT 1", [.blob(h.digest.bytes)]) != nil
                }
                if backed, Glibc.unlink(chunkPath(h)) == 0 { BackingCounters.chunkFilesReleased.wrappingAdd(1, ordering: .relaxed) }
            }
        }
    }

    /// Writes a chunk file for a recorded chunk that only a backing holds (before that backing
    /// goes), journalled like any chunk write (ChunkJournal.swift). `bytes` are verified.
    func storeChunkFile(_ hash: ChunkHash, _ bytes: UnsafeRawBufferPointer, nowMs: Int64) throws(MeshError) {
        guard Blake2b256.hash(bytes) == hash.digest else {
            throw MeshError(.corrupt, "chunk \(hash) does not match its hash", hint: "this is a bug")
        }
        let writer = WriterStamp.current
        var pending = [try chunkFiles.writeTemp(hash, bytes)]
        defer { chunkFiles.discard(&pending) }
        try beginChunkWrites([hash], writer: writer)
        try chunkFiles.commit(&pending)
        try FS.fsyncDirectory(FS.dirname(of: chunkPath(hash)))
        try recordChunks([(hash, bytes.count)], writer: writer, nowMs: nowMs)
    }
}
