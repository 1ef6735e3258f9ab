import Sync
#if canImport(Glibc)
import Glibc
#endif

/// Writing items into watched folders, with their chunks then backed by the file written
/// (ChunkBackings.swift, docs/SYNC.md "Disk").
extension Store {
    /// Writes `entry`'s content to `root/relativePath` for a watched folder: parent
    /// directories are created (never through a symlink), the content is assembled in a temp
    /// file in the target's directory with every chunk re-hashed (chunks no chunk file holds
    /// are copied from the folder files that back them, the old file at the path included:
    /// `copy_file_range`, verified), `.db`/game files must pass `PRAGMA integrity_check`, the
    /// file is synced, given the version's creation time as its mtime, and renamed into
    /// place, so the path shows the old file or the complete new one, never a partial one.
    ///
    /// Then the new file backs the item's chunks and their chunk files go, so the item takes
    /// its size once. The steps keep every chunk a kept version needs in a chunk file or a
    /// backing at every instant (kill -9 anywhere):
    /// 1. the new file's backings are recorded *pending* (never read; they count as a source);
    /// 2. chunks that only the old file at the path holds, and that a kept version needs
    ///    (`policy`; nil: any recipe), are written to chunk files (journalled);
    /// 3. rename, directory sync;
    /// 4. one transaction: the old file's backings go, the pending ones come in force, the
    ///    old file's other chunks lose their record unless something else holds them;
    /// 5. the chunk files of chunks now backed are deleted.
    /// An open after a crash between 3 and 4 puts the pending backings in force (the file at
    /// the path is theirs); one before 3 deletes them.
    ///
    /// The path must still be as `replacing` says (nil: absent) just before the rename,
    /// else `.fileChanged` and nothing is replaced. With `adoptIdentical`, a file already
    /// there with the same content is kept as it is (`wrote` false; it then backs the chunks).
    /// Returns the stat of the file now at the path.
    public func materialise(_ entry: ManifestEntry, root: String, relativePath: String, replacing: FileStat?,
                            adoptIdentical: Bool, policy: KeepPolicy? = nil,
                            nowMs: Int64 = WallClock.nowMs()) throws(MeshError) -> (stat: FileStat, wrote: Bool) {
        let parts = relativePath.split(separator: "/", omittingEmptySubsequences: false)
        guard let base = parts.last.map(String.init), !base.isEmpty else {
            throw MeshError(.invalidInput, "'\(relativePath)' is not a file path", hint: "")
        }
        let dir = try FolderFS.makeDirectories(root: root, relativeDir: parts.dropLast().joined(separator: "/"))
        let target = dir + "/" + base
        if case .directory? = FolderFS.lstatEntry(target) {
            throw MeshError(.fileUnreadable, "\(target) is a directory, where \(entry.name) needs a file",
                            hint: "rename or remove the directory")
        }
        guard FolderFS.matches(target, replacing) else {
            throw MeshError(.fileChanged, "\(target) changed before it could be written", hint: "it is looked at again")
        }
        if adoptIdentical, let st = replacing, st.sizeBytes == entry.sizeBytes,
           (try? contentID(ofFile: target, chunkSizeBytes: entry.chunkSizeBytes)) == entry.contentID,
           FolderFS.matches(target, st) {
            if let recipe = try recipe(entry.contentID), recipe.contentID == entry.contentID {
                try? backWithFile(recipe, path: target, stat: st, policy: policy, nowMs: nowMs)
            }
            return (st, false)
        }
        guard let recipe = try recipe(entry.contentID), recipe.contentID == entry.contentID else {
            throw MeshError(.incomplete, "the content of \(entry.name) (\(entry.contentID.short)) is not here yet",
                            hint: "it is written once its chunks have arrived")
        }
        if let missing = try missingChunks(entry.contentID), !missing.isEmpty {
            throw MeshError(.incomplete, "\(missing.count) chunks of \(entry.name) (\(entry.contentID.short)) are missing",
                            hint: "it is written once they have arrived")
        }
        // Fetched straight into its staging file (FolderStaging.swift): only the chunks that
        // came from elsewhere are written there now.
        let stagingName = Self.stagingPath(dir: dir, base: base, contentID: entry.contentID)
        // O_DIRECT where the chunk size allows: every chunk, from a chunk file or from a folder
        // file that backs it, is then read, hashed in memory and written once. (copy_file_range
        // is only for the rest: on ext4 it copies through the page cache and the copy must be
        // read back to be checked, which measured twice as slow for a 1 GiB file: a 10 MiB
        // change in a 1 GiB file took 5.4 s with the staging file opened without O_DIRECT.)
        let aligned = recipe.chunkSizeBytes % 4096 == 0 && recipe.sizeBytes > 0
        var stagingFD: Int32 = -1
        var stagingDirect = false
        if target.hasPrefix("/") {
            if aligned {
                stagingFD = Glibc.open(stagingName, O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_DIRECT)
                stagingDirect = stagingFD >= 0
            }
            if stagingFD < 0 { stagingFD = Glibc.open(stagingName, O_RDWR | O_CLOEXEC | O_NOFOLLOW) }
        }
        let staged = stagingFD >= 0
        let tmpName = staged ? stagingName : "\(dir)/.\(base).meshnode-\(getpid())-\(FS.randomToken()).tmp"
        let out = staged ? (fd: stagingFD, named: true, direct: stagingDirect)
            : try openTemp(dir: dir, namedFallback: tmpName, tryDirect: aligned, readable: true)
        let inPlace = staged ? try stagedChunks(path: stagingName, fd: stagingFD, recipe: recipe) : []
        var named = out.named
        var crashed = false  // a simulated kill -9 (tests): nothing is cleaned up
        func step(_ s: String) throws(MeshError) {
            do throws(MeshError) { try testHooks.materialiseStep?(s) } catch {
                crashed = true
                throw error
            }
        }
        defer {
            _ = Glibc.close(out.fd)
            if named && !crashed && !staged { FS.unlink(tmpName) }  // a staging file stays for the next try
        }
        if staged, ftruncate(out.fd, off_t(recipe.sizeBytes)) != 0 { throw MeshError.posix(errno, "truncating", path: tmpName) }
        try writeAssembled(recipe, name: entry.name, fd: out.fd, direct: out.direct, path: tmpName, progress: nil, readable: true,
                           inPlace: inPlace)
        if entry.createdAtMs > 0 {
            let ms = entry.createdAtMs
            var times = [timespec(tv_sec: Int(ms / 1000), tv_nsec: Int(ms % 1000) * 1_000_000),
                         timespec(tv_sec: Int(ms / 1000), tv_nsec: Int(ms % 1000) * 1_000_000)]
            _ = futimens(out.fd, &times)
        }
        var st = stat()
        guard fstat(out.fd, &st) == 0 else { throw MeshError.posix(errno, "inspecting", path: tmpName) }
        guard fsync(out.fd) == 0 else { throw MeshError.posix(errno, "syncing", path: tmpName) }
        try nameAndCheck(fd: out.fd, tmpName: tmpName, named: &named, entry: entry)
        let newStat = FolderFS.fileStat(st)
        let backs = target.hasPrefix("/")  // backings name absolute paths only
        let writer = testHooks.materialiseWriter ?? WriterStamp.current
        var rows = [ChunkBacking]()
        if backs {
            rows = Self.firstOccurrences(recipe, path: target, stat: newStat)
            try insertPendingBackings(rows, writer: writer)
        }
        var inForce = false
        defer { if backs && !inForce && !crashed { dropPendingBackings(path: target, writer: writer) } }
        if backs { try keepOrphans(ofFileAt: target, except: Set(recipe.chunks), policy: policy, nowMs: nowMs) }
        guard FolderFS.matches(target, replacing) else {
            throw MeshError(.fileChanged, "\(target) changed while its new version was being written", hint: "it is looked at again")
        }
        try step("before-rename")
        try FS.rename(tmpName, target)
        named = false
        try FS.fsyncDirectory(dir)
        try step("renamed")
        if backs {
            try putBackingsInForce(path: target, writer: writer.description, chunks: rows.map { ($0.hash, $0.sizeBytes) }, nowMs: nowMs)
            inForce = true
            if staged { try clearStaging(stagingName) }
            try step("in-force")
            try releaseChunkFiles(rows.map(\.hash))
        }
        return (newStat, true)
    }

    /// Makes the file at `path` (which holds `recipe` and is as `stat` says) back its chunks,
    /// as a materialise does after its rename: for a file found already in place.
    func backWithFile(_ recipe: Recipe, path: String, stat: FileStat, policy: KeepPolicy?, nowMs: Int64) throws(MeshError) {
        guard path.hasPrefix("/") else { return }
        let writer = WriterStamp.current
        let rows = Self.firstOccurrences(recipe, path: path, stat: stat)
        try insertPendingBackings(rows, writer: writer)
        guard FolderFS.matches(path, stat) else {
            dropPendingBackings(path: path, writer: writer)
            return
        }
        try putBackingsInForce(path: path, writer: writer.description, chunks: rows.map { ($0.hash, $0.sizeBytes) }, nowMs: nowMs)
        try releaseChunkFiles(rows.map(\.hash))
    }

    /// One backing per distinct chunk of `recipe`, at its first offset in the file at `path`.
    static func firstOccurrences(_ recipe: Recipe, path: String, stat: FileStat) -> [ChunkBacking] {
        var seen = Set<ChunkHash>()
        var out = [ChunkBacking]()
        for (i, h) in recipe.chunks.enumerated() where seen.insert(h).inserted {
            out.append(ChunkBacking(hash: h, path: path, offsetBytes: recipe.offset(ofChunk: i), sizeBytes: recipe.length(ofChunk: i), fileStat: stat))
        }
        return out
    }

    /// Before the file at `path` is replaced or deleted: of the chunks its backings hold (but
    /// `except`), those nothing else holds (no chunk file, no other file's backing) and that a
    /// kept version needs are written to chunk files, read from the file and verified. Returns
    /// the rest of those nothing else holds: they lose their record once the file goes.
    @discardableResult
    func keepOrphans(ofFileAt path: String, except: Set<ChunkHash>, policy: KeepPolicy?, nowMs: Int64) throws(MeshError) -> Set<ChunkHash> {
        let old = try backings(atPath: path).filter { !except.contains($0.hash) }
        guard !old.isEmpty else { return [] }
        var alone = [ChunkHash: ChunkBacking]()
        for b in old where alone[b.hash] == nil && !FS.exists(chunkPath(b.hash)) {
            let elsewhere = try backings(of: b.hash).contains { $0.path != path }
            if !elsewhere { alone[b.hash] = b }
        }
        guard !alone.isEmpty else { return [] }
        let needed = try chunksNeeded(Set(alone.keys), policy: policy, nowMs: nowMs)
        var orphans = Set(alone.keys)
        let largest = alone.values.map(\.sizeBytes).max() ?? 0
        let buf = ScratchBuffer(count: (largest + 4095) & ~4095)
        for h in needed.sorted(by: { $0.description < $1.description }) {
            guard let b = alone[h], b.read(into: buf.base) == .ok else { continue }  // edited meanwhile: lost with the file
            try storeChunkFile(h, UnsafeRawBufferPointer(start: buf.base, count: b.sizeBytes), nowMs: nowMs)
            orphans.remove(h)
        }
        return orphans
    }

    /// Of `hashes`, those some kept version needs: the chunks of the contents of the newest
    /// live versions of their names per `policy` (nil: of any stored recipe).
    func chunksNeeded(_ hashes: Set<ChunkHash>, policy: KeepPolicy?, nowMs: Int64) throws(MeshError) -> Set<ChunkHash> {
        var contents = [ChunkHash: Set<ContentID>]()
        for h in hashes {
            try db.forEach("SELECT DISTINCT content_id FROM recipe_chunks WHERE hash = ?", [.blob(h.digest.bytes)]) { (s) throws(MeshError) in
                if let d = Bytes32(bytes: s.blob(0)) { contents[h, default: []].insert(ContentID(digest: d)) }
            }
        }
        guard let policy else { return Set(contents.keys) }
        var names = Set<String>()
        for c in Set(contents.values.flatMap { $0 }) {
            try db.forEach("SELECT DISTINCT name FROM items WHERE content_id = ?", [.blob(c.digest.bytes)]) { (s) throws(MeshError) in
                names.insert(s.text(0))
            }
        }
        var history = Catalog()
        for n in names {
            try db.forEach("SELECT encoded FROM items WHERE name = ?", [.text(n)]) { (s) throws(MeshError) in
                history.insert(try decodeItem(s.blob(0), receivedAtMs: 0))
            }
        }
        var kept = Set<ContentID>()
        for n in names { for v in history.keptVersions(of: n, policy: policy, nowMs: nowMs) { kept.insert(v.entry.contentID) } }
        return Set(contents.filter { !$0.value.isDisjoint(with: kept) }.keys)
    }

    /// Removes the folder file at `path` with `remove`, first keeping (in chunk files) the
    /// chunks only it holds that a kept version needs; its backings then go, and chunks left
    /// with no source lose their record.
    public func removeFolderFile(_ path: String, policy: KeepPolicy?, nowMs: Int64 = WallClock.nowMs(),
                                 remove: () throws(MeshError) -> Void) throws(MeshError) {
        let orphans = try keepOrphans(ofFileAt: path, except: [], policy: policy, nowMs: nowMs)
        try remove()
        try db.transaction { () throws(MeshError) in
            try sql { () throws(SQLiteError) in
                try db.query("DELETE FROM chunk_backings WHERE path = ? AND writer IS NULL", [.text(path)])
            }
            _ = try unrecordSourceless(orphans)
        }
    }
}
