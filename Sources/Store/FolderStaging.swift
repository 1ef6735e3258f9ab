import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A folder file fetched straight into place (docs/SYNC.md "Disk"): the chunks of an item a
/// receive or both folder will show at `relativePath` are verified in memory and written at
/// their offsets into the hidden temp file `.NAME.meshnode-fetch-ID.tmp` next to the target,
/// instead of into chunk files. The materialise then only fills the chunks that came from
/// elsewhere, syncs and renames it (`Store.materialise`), so the item crosses the disk once.
///
/// While the fetch runs, the temp file backs the chunks written into it (ChunkBackings.swift:
/// verified on every read), so a peer can fetch them from here mid-fetch. Those bytes are not
/// synced chunk by chunk: the `node_state` row `staging PATH` names the process writing the
/// file, and an open after that process died re-reads every backing of the file (dropping the
/// ones whose bytes did not survive, so their chunks are fetched again), syncs it, and drops
/// the row (`Store.settleStagingFiles`). The file is synced as soon as the item is complete.
///
/// Thread-safe: writers of one item share one `FolderStaging`; the file is opened once, by
/// the first write, and closed when the last reference goes.
public final class FolderStaging: @unchecked Sendable {
    // @unchecked: `fd`, `directFD` and `fileInode` are set once, under `lock`; the rest is immutable.
    public let root: String
    public let relativePath: String
    /// The temp file's absolute path.
    public let path: String
    /// `relativePath`'s directory part ("" at the root).
    let relativeDir: String
    public let recipe: Recipe
    /// Every offset of each distinct chunk of `recipe`.
    let offsets: [ChunkHash: [UInt64]]
    private let lock = NSLock()
    private var fd: Int32 = -1
    /// The same file opened with O_DIRECT (-1 where the file system refuses it, e.g. tmpfs):
    /// whole-block chunks are written through it, so the receiver does not copy every byte
    /// into the page cache (that copy, and the inode lock both workers then queue on, cost
    /// as much CPU as all the hashing of a 1 GiB folder transfer), and the final sync is short.
    private var directFD: Int32 = -1
    private var fileInode: UInt64 = 0

    /// Nil when `relativePath` names no file or `root` is not absolute (backings name absolute paths).
    public init?(root: String, relativePath: String, recipe: Recipe) {
        let parts = relativePath.split(separator: "/", omittingEmptySubsequences: false)
        guard root.hasPrefix("/"), let base = parts.last, !base.isEmpty, recipe.sizeBytes > 0 else { return nil }
        self.root = root
        self.relativePath = relativePath
        self.recipe = recipe
        relativeDir = parts.dropLast().joined(separator: "/")
        let dir = parts.count > 1 ? root + "/" + relativeDir : root
        path = Store.stagingPath(dir: dir, base: String(base), contentID: recipe.contentID)
        var o = [ChunkHash: [UInt64]]()
        for (i, h) in recipe.chunks.enumerated() { o[h, default: []].append(recipe.offset(ofChunk: i)) }
        offsets = o
    }

    deinit {
        if fd >= 0 { _ = Glibc.close(fd) }
        if directFD >= 0 { _ = Glibc.close(directFD) }
    }

    /// The open temp file (created, with its directories, on first use), its inode, and its
    /// O_DIRECT descriptor (-1 if none).
    func open(_ store: Store) throws(MeshError) -> (fd: Int32, inode: UInt64, direct: Int32) {
        lock.lock()
        defer { lock.unlock() }
        if fd >= 0 { return (fd, fileInode, directFD) }
        let dir = try FolderFS.makeDirectories(root: root, relativeDir: relativeDir)
        guard FS.dirname(of: path) == dir else {
            throw MeshError(.fileUnreadable, "\(path) is not in \(dir)", hint: "this is a bug")
        }
        // Named before the file exists: a writer killed from here on leaves the row to settle.
        try store.markStaging(path)
        let f = Glibc.open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o644)
        guard f >= 0 else { throw MeshError.posix(errno, "creating", path: path) }
        var st = stat()
        guard fstat(f, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
            _ = Glibc.close(f)
            throw MeshError(.fileUnreadable, "\(path) is not a regular file", hint: "remove it")
        }
        if UInt64(st.st_size) < recipe.sizeBytes {
            let rc = posix_fallocate(f, 0, off_t(recipe.sizeBytes))
            if rc != 0 && rc != EOPNOTSUPP && rc != EINVAL {
                _ = Glibc.close(f)
                throw MeshError.posix(rc, "allocating space for", path: path)
            }
        }
        fd = f
        fileInode = UInt64(st.st_ino)
        directFD = recipe.chunkSizeBytes % 4096 == 0 ? Glibc.open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW | O_DIRECT) : -1
        return (fd, fileInode, directFD)
    }
}

extension Store {
    static let stagingKeyPrefix = "staging "
    /// What names a staging file, between the target's base name and the content id (`stagingPath`).
    static let stagingMarker = ".meshnode-fetch-"
    /// Hex digits of the content id in a staging file's name.
    static let stagingIDDigits = 24

    /// The temp file an item fetched for `dir/base` is written into (hidden, `.tmp`: no folder
    /// scan looks at it, and it is named by content so that a restart finds it again).
    public static func stagingPath(dir: String, base: String, contentID: ContentID) -> String {
        "\(dir)/.\(base)\(stagingMarker)\(contentID.digest.hex.prefix(stagingIDDigits)).tmp"
    }

    /// Every `staging PATH` row: the staging file's path and the stamp of the process writing it.
    func stagingWriters() throws(MeshError) -> [String: String] {
        var out = [String: String]()
        try db.forEach("SELECT key, value FROM node_state WHERE key LIKE 'staging /%'") { (s) throws(MeshError) in
            out[String(s.text(0).dropFirst(Self.stagingKeyPrefix.count))] = s.text(1)
        }
        return out
    }

    /// Records that this process writes the staging file at `path` (see `FolderStaging`).
    func markStaging(_ path: String) throws(MeshError) {
        try sql { () throws(SQLiteError) in
            _ = try db.query("INSERT OR REPLACE INTO node_state(key, value) VALUES(?, ?)",
                             [.text(Self.stagingKeyPrefix + path), .text(WriterStamp.current.description)])
        }
    }

    /// Verifies `chunks` against their hashes and writes the good ones at every offset of
    /// `staging`'s recipe that holds them; then, in one transaction, the temp file backs them
    /// and they are recorded present. No sync per chunk; the file is synced once the item is
    /// complete (before any peer is told so). Per chunk, whether it was good.
    ///
    /// Each chunk is copied once into a 4096-aligned buffer, hashed there (in groups of four:
    /// `AlignedChunks`), and written from there with O_DIRECT when its length is whole blocks
    /// (all but a short last chunk), as chunk files are (`Store.writeChunksKeepingGood`).
    public func writeStaged(_ chunks: [(hash: ChunkHash, bytes: ArraySlice<UInt8>)], into staging: FolderStaging,
                            nowMs: Int64 = WallClock.nowMs()) throws(MeshError) -> [Bool] {
        guard !chunks.isEmpty else { return [] }
        let (fd, _, directFD) = try staging.open(self)
        var rows = [(hash: ChunkHash, offset: UInt64, sizeBytes: Int)]()
        var seen = Set<ChunkHash>()
        let good = try AlignedChunks.forEach(chunks, eligible: { staging.offsets[chunks[$0].hash] != nil }) { (i, raw, _) throws(MeshError) in
            let h = chunks[i].hash
            let offs = staging.offsets[h]!
            ChunkFingerprints.record(h, raw)  // served from this file to other receivers
            for o in offs {
                if directFD >= 0, raw.count % 4096 == 0, o % 4096 == 0,
                   (try? writeAt(fd: directFD, path: staging.path, from: raw.baseAddress!, count: raw.count, offset: o)) != nil {
                    continue
                }
                try writeAt(fd: fd, path: staging.path, from: raw.baseAddress!, count: raw.count, offset: o)
            }
            if seen.insert(h).inserted { rows.append((h, offs[0], raw.count)) }
        }
        guard !rows.isEmpty else { return good }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw MeshError.posix(errno, "inspecting", path: staging.path) }
        let fs = FolderFS.fileStat(st)
        try db.transaction { () throws(MeshError) in
            try insertBackingsInForce(rows.map {
                ChunkBacking(hash: $0.hash, path: staging.path, offsetBytes: $0.offset, sizeBytes: $0.sizeBytes, fileStat: fs)
            })
            try insertChunkRows(rows.map { ($0.hash, $0.sizeBytes) }, writer: nil, nowMs: nowMs)
        }
        if try isComplete(staging.recipe.contentID) {
            guard fsync(fd) == 0 else { throw MeshError.posix(errno, "syncing", path: staging.path) }
        }
        return good
    }

    /// The chunks of `recipe` that the staging file at `path` (as `fd`) already holds: those
    /// it backs (written there verified, and re-read after a crash).
    func stagedChunks(path: String, fd: Int32, recipe: Recipe) throws(MeshError) -> Set<ChunkHash> {
        var st = stat()
        guard fstat(fd, &st) == 0 else { return [] }
        let inode = UInt64(st.st_ino)
        var out = Set<ChunkHash>()
        var firstOffset = [ChunkHash: (UInt64, Int)]()
        for (i, h) in recipe.chunks.enumerated() where firstOffset[h] == nil { firstOffset[h] = (recipe.offset(ofChunk: i), recipe.length(ofChunk: i)) }
        for b in try backings(atPath: path) where b.fileStat.inode == inode {
            if let (o, n) = firstOffset[b.hash], o == b.offsetBytes, n == b.sizeBytes { out.insert(b.hash) }
        }
        return out
    }

    /// After the staging file at `path` was renamed into place (its chunks now backed there) or
    /// given up: its backings and its row go.
    func clearStaging(_ path: String) throws(MeshError) {
        try db.transaction { () throws(MeshError) in try clearStagingRows(path) }
    }

    /// Inside a transaction: the backings and the row of the staging file at `path` go, and the
    /// chunks they backed are unrecorded unless something else holds them.
    private func clearStagingRows(_ path: String) throws(MeshError) {
        let hashes = try backings(atPath: path).map(\.hash)
        try sql { () throws(SQLiteError) in
            try db.query("DELETE FROM chunk_backings WHERE path = ? AND writer IS NULL", [.text(path)])
            try db.query("DELETE FROM node_state WHERE key = ?", [.text(Self.stagingKeyPrefix + path)])
        }
        _ = try unrecordSourceless(Set(hashes))
    }

    /// The hex prefix of the content a staging file is named by (`stagingPath`), nil for a
    /// path that is not a staging file's.
    static func stagingContentPrefix(ofPath path: String) -> Substring? {
        let base = path.split(separator: "/").last ?? ""
        guard base.hasPrefix("."), base.hasSuffix(".tmp"), let r = base.range(of: stagingMarker, options: .backwards) else { return nil }
        let hex = base[r.upperBound...].dropLast(4)
        guard hex.count == stagingIDDigits, hex.allSatisfy(\.isHexDigit) else { return nil }
        return hex
    }

    /// Removes the staging files no fetch will finish (docs/SYNC.md "Disk"): those of a content
    /// that is no name's current version (it was superseded, deleted or expired while it was
    /// fetched, or before a restart resumed it) and that no download in progress pins, unless
    /// another process that may still run writes it. Each goes in one transaction (pins read
    /// inside it): the file is unlinked, its backings and row dropped, and the chunks they
    /// backed unrecorded unless held elsewhere. Returns the paths removed and the contents
    /// (of the recipes whose prefix they name) that may have lost chunks.
    func sweepAbandonedStaging(current: Set<ContentID>, pins: ContentPins?) throws(MeshError) -> (paths: [String], contents: Set<ContentID>) {
        let writers = try stagingWriters()
        var paths = Set(writers.keys)
        try db.forEach("SELECT DISTINCT path FROM chunk_backings WHERE writer IS NULL AND path LIKE ?",
                       [.text("%" + Self.stagingMarker + "%.tmp")]) { (s) throws(MeshError) in
            paths.insert(s.text(0))
        }
        let me = WriterStamp.current.description
        let wanted = Set(current.map { $0.digest.hex.prefix(Self.stagingIDDigits) })
        var byPrefix = [Substring: ContentID]()
        for r in try recipeList() { byPrefix[r.id.digest.hex.prefix(Self.stagingIDDigits)] = r.id }
        var removed = [String]()
        var touched = Set<ContentID>()
        for path in paths.sorted() {
            guard let prefix = Self.stagingContentPrefix(ofPath: path), !wanted.contains(prefix) else { continue }
            if let w = writers[path], w != me, WriterStamp(w)?.mayBeRunning ?? false { continue }
            let gone = try db.transaction { () throws(MeshError) -> Bool in
                if let pins, pins.contents.contains(where: { $0.digest.hex.prefix(Self.stagingIDDigits) == prefix }) { return false }
                if Glibc.unlink(path) != 0 && errno != ENOENT { throw MeshError.posix(errno, "removing", path: path) }
                try clearStagingRows(path)
                return true
            }
            guard gone else { continue }
            removed.append(path)
            if let c = byPrefix[prefix] { touched.insert(c) }
        }
        return (removed, touched)
    }

    /// At open: the staging files of writers that are gone (killed, or before a reboot) are
    /// re-read, every backing of theirs checked (those whose bytes are wrong or gone are
    /// dropped, and their chunks unrecorded unless something else holds them), synced, and
    /// their rows dropped. Bounded by the bytes those files back.
    func settleStagingFiles() throws(MeshError) {
        let dead = try stagingWriters().filter { !(WriterStamp($0.value)?.mayBeRunning ?? false) }.keys
        for path in dead.sorted() {
            let rows = try backings(atPath: path)
            var failed = [(ChunkBacking, BackingRead)]()
            let buf = ScratchBuffer(count: ((rows.map(\.sizeBytes).max() ?? 0) + 4095) & ~4095)
            for b in rows {
                let r = b.read(into: buf.base)
                if r != .ok { failed.append((b, r == .unreadable ? .mismatch : r)) }
            }
            let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
            if fd >= 0 {
                _ = fsync(fd)
                _ = Glibc.close(fd)
            }
            try dropBackings(failed)
            // Nothing of it survived (or nothing was written yet): it holds only allocated space.
            if rows.count == failed.count { _ = Glibc.unlink(path) }
            try sql { () throws(SQLiteError) in
                try db.query("DELETE FROM node_state WHERE key = ?", [.text(Self.stagingKeyPrefix + path)])
            }
        }
    }
}
