import Sync
#if canImport(Glibc)
import Glibc
#endif

extension MeshError.Code {
    /// A file in a watched folder was not as expected when an action came to it (it changed
    /// meanwhile); the action was not done.
    public static let fileChanged = Self("fileChanged")
}

/// Files in watched folders: what a path is, without following links.
public enum FolderFS {
    /// What is at `path` (not following a final symlink): nil when nothing is, or a directory
    /// (reported as `.directory`).
    public enum Entry: Equatable, Sendable {
        case file(FileObservation)
        case directory(inode: UInt64)
    }

    public static func lstatEntry(_ path: String) -> Entry? {
        var st = stat()
        guard lstat(path, &st) == 0 else { return nil }
        let fmt = st.st_mode & S_IFMT
        if fmt == S_IFDIR { return .directory(inode: UInt64(st.st_ino)) }
        let kind: FileObservation.Kind = fmt == S_IFREG ? .regular : fmt == S_IFLNK ? .symlink : .other
        return .file(FileObservation(kind: kind, stat: fileStat(st)))
    }

    public static func fileStat(_ st: stat) -> FileStat {
        FileStat(sizeBytes: UInt64(max(0, st.st_size)),
                 mtimeNs: Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec), inode: UInt64(st.st_ino))
    }

    /// The regular file's stat at `path` (not following links), nil for anything else.
    public static func regularStat(_ path: String) -> FileStat? {
        if case .file(let o)? = lstatEntry(path), o.kind == .regular { return o.stat }
        return nil
    }

    /// Whether some process has the regular file at `path` open for writing (or mapped
    /// writable): true, false, or nil when it cannot tell (the file is not ours and we lack
    /// CAP_LEASE, the file system has no leases, as NFS and FUSE, or it is not a regular file).
    /// Linux grants a read lease (`fcntl(F_SETLEASE, F_RDLCK)`) only when no one has it open
    /// for writing, and refuses with EAGAIN otherwise; a granted lease is dropped at once.
    ///
    /// While the lease is held (a few microseconds) an `open` for writing by another process
    /// waits for its release, and an `O_NONBLOCK` one fails with EWOULDBLOCK; the kernel tells
    /// us of such an open with SIGIO, which the first call sets to ignored (process-wide).
    ///
    /// Never for a SQLite database (`isDatabase`: the caller's `hasSQLiteHeader`) or a sidecar
    /// (`-wal`, `-shm`, `-journal`, temp files): it opens and closes a descriptor, and closing
    /// any descriptor of a file drops every POSIX lock this process holds on it (a live
    /// snapshotter's read lock, SQLite's own locks), so those are answered nil before anything
    /// is opened. Databases are snapshotted through SQLite and need no settle anyway.
    public static func isOpenForWriting(_ path: String, isDatabase: Bool) -> Bool? {
        if isDatabase || FolderPaths.isTemporaryOrSidecar(FS.basename(of: path)) { return nil }
        _ = ignoreLeaseBreaks
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return nil }
        guard fcntl(fd, fSetLease, Int32(F_RDLCK)) == 0 else { return errno == EAGAIN ? true : nil }
        _ = fcntl(fd, fSetLease, Int32(F_UNLCK))
        return false
    }

    /// F_SETLEASE (F_LINUX_SPECIFIC_BASE + 0; Glibc exports it only under _GNU_SOURCE).
    static let fSetLease: Int32 = 1024
    private static let ignoreLeaseBreaks: Void = { signal(SIGIO, SIG_IGN) }()

    /// The first 16 bytes of every SQLite 3 database file.
    public static let sqliteHeader: [UInt8] = Array("SQLite format 3\0".utf8)

    /// Whether the regular file (not a symlink) at `path` starts with the SQLite header (false
    /// when unreadable). Read through SQLite's own file layer, never `open`/`close`: closing any
    /// descriptor of a database drops every POSIX lock this process holds on it, including the
    /// read lock of a live snapshotter (`LiveSQLite.isDatabase`).
    public static func hasSQLiteHeader(_ path: String) -> Bool {
        var st = stat()
        guard lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return false }
        return LiveSQLite.isDatabase(path: path)
    }

    /// Creates the directories of `relativeDir` under `root` as needed, refusing any
    /// component that exists but is not a real directory (a symlink could point anywhere:
    /// a name chosen by a peer must never lead out of the folder). Returns the absolute path.
    public static func makeDirectories(root: String, relativeDir: String) throws(MeshError) -> String {
        var path = root
        guard !relativeDir.isEmpty else { return path }
        for c in relativeDir.split(separator: "/") {
            path += "/" + c
            switch lstatEntry(path) {
            case .directory?: continue
            case .file(let o)?:
                throw MeshError(.fileUnreadable, "\(path) is \(o.kind == .symlink ? "a symbolic link" : "a file"), not a directory",
                                hint: "a name in the cluster needs a directory there; rename or remove that entry")
            case nil:
                if mkdir(path, 0o755) != 0 && errno != EEXIST { throw MeshError.posix(errno, "creating directory", path: path) }
                if case .directory? = lstatEntry(path) { continue }
                throw MeshError(.fileUnreadable, "\(path) is not a directory", hint: "rename or remove that entry")
            }
        }
        return path
    }

    /// Whether `path` is as `expected` says: absent (nil), or a regular file with that stat.
    public static func matches(_ path: String, _ expected: FileStat?) -> Bool {
        switch lstatEntry(path) {
        case nil: return expected == nil
        case .directory?: return false
        case .file(let o)?: return o.kind == .regular && o.stat == expected
        }
    }
}

extension Store {
    /// The current version of one name (reads only that name's entries, unlike `catalog()`).
    public func currentVersion(of name: String, nowMs: Int64 = WallClock.nowMs()) throws(MeshError) -> Catalog.Version? {
        var history = Catalog()
        try db.forEach("SELECT encoded FROM items WHERE name = ?", [.text(name)]) { (s) throws(MeshError) in
            history.insert(try decodeItem(s.blob(0), receivedAtMs: 0))
        }
        return history.current(name, nowMs: nowMs)
    }

    /// The content id `path` would have if put with `chunkSizeBytes` (reads the whole file).
    public func contentID(ofFile path: String, chunkSizeBytes: UInt32) throws(MeshError) -> ContentID {
        let file = try POSIXFile(path: path, flags: O_RDONLY | O_NOFOLLOW, what: "reading")
        let size = try file.sizeBytes()
        let n = Chunking.chunkCount(sizeBytes: size, chunkSizeBytes: chunkSizeBytes)
        let buf = ScratchBuffer(count: Int(chunkSizeBytes))
        var chunks = [ChunkHash]()
        chunks.reserveCapacity(n)
        for i in 0..<n {
            let len = Chunking.chunkLength(index: i, sizeBytes: size, chunkSizeBytes: chunkSizeBytes)
            guard try file.pread(into: buf.base, count: len, offset: UInt64(i) * UInt64(chunkSizeBytes)) == len else {
                throw MeshError(.fileChanged, "\(path) shrank while it was being read", hint: "it is read again once it settles")
            }
            chunks.append(ChunkHash(digest: Blake2b256.hash(UnsafeRawBufferPointer(start: buf.base, count: len))))
        }
        return Chunking.contentID(sizeBytes: size, chunkSizeBytes: chunkSizeBytes, chunks: chunks)
    }
}
