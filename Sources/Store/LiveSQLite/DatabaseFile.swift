import CSQLite
#if canImport(Glibc)
import Glibc
#endif

/// A file opened read-only through SQLite's default VFS.
///
/// Why not `open(2)`: POSIX advisory locks belong to the process, and closing *any* descriptor
/// of a file drops all of them (https://www.sqlite.org/howtocorrupt.html §2.2). A plain
/// `close` of our own descriptor on a database would silently drop the SHARED lock of every
/// SQLite connection of this process to it (ours and any other), letting another process
/// checkpoint and delete the WAL under them: measured here as "database disk image is
/// malformed". SQLite's unix VFS shares one record per inode among all its files and, when a
/// file is closed while locks are held, keeps its descriptor open until they are released.
/// `xRead` is `pread` (zero-filling past the end of the file, as SQLite reads pages), so it may
/// be called from several threads at once.
final class VFSFile: @unchecked Sendable {
    // @unchecked: after `init` only `xRead` and `xFileSize` are called (pread/fstat on one
    // descriptor), until `deinit`.
    let path: String
    private let file: UnsafeMutablePointer<sqlite3_file>
    private let name: UnsafeMutablePointer<CChar>

    init(path: String) throws(MeshError) {
        guard let vfs = sqlite3_vfs_find(nil) else {
            throw MeshError(.internalError, "SQLite has no default VFS", hint: "this is a bug")
        }
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(Int(vfs.pointee.szOsFile), MemoryLayout<sqlite3_file>.size),
                                                   alignment: 16)
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: max(Int(vfs.pointee.szOsFile), MemoryLayout<sqlite3_file>.size))
        file = raw.bindMemory(to: sqlite3_file.self, capacity: 1)
        name = strdup(path)
        self.path = path
        var outFlags: Int32 = 0
        let rc = vfs.pointee.xOpen(vfs, name, file, SQLITE_OPEN_READONLY | SQLITE_OPEN_MAIN_DB, &outFlags)
        guard rc == SQLITE_OK, file.pointee.pMethods != nil else {
            let e = errno
            file.deallocate()
            free(name)
            if access(path, F_OK) != 0 { throw MeshError(.fileNotFound, "\(path) does not exist", hint: "check the path of the database") }
            if access(path, R_OK) != 0 { throw LiveDatabaseSnapshotter.openError(EACCES, path: path) }
            throw MeshError.posix(e == 0 ? EIO : e, "opening", path: path)
        }
    }

    deinit {
        _ = file.pointee.pMethods.pointee.xClose(file)
        file.deallocate()
        free(name)
    }

    /// Reads `count` bytes at `offset`; bytes past the end of the file read as zeros.
    func read(into buf: UnsafeMutableRawPointer, count: Int, offset: UInt64) throws(MeshError) {
        guard count > 0 else { return }
        let rc = file.pointee.pMethods.pointee.xRead(file, buf, Int32(count), sqlite3_int64(offset))
        guard rc == SQLITE_OK || rc == SQLITE_IOERR | (2 << 8) else {  // SQLITE_IOERR_SHORT_READ
            throw MeshError(.ioError, "reading \(path) failed (SQLite code \(rc))", hint: "check the disk")
        }
    }

    func sizeBytes() throws(MeshError) -> UInt64 {
        var size: sqlite3_int64 = 0
        let rc = file.pointee.pMethods.pointee.xFileSize(file, &size)
        guard rc == SQLITE_OK else { throw MeshError(.ioError, "inspecting \(path) failed (SQLite code \(rc))", hint: "check the disk") }
        return UInt64(size)
    }
}

/// The database file, read through `VFSFile`, with the identity (device, inode) it had when
/// opened.
final class DatabaseFile: Sendable {
    let path: String
    let file: VFSFile
    let device: UInt64
    let inode: UInt64

    init(path: String) throws(MeshError) {
        let before = try Self.identity(path)
        file = try VFSFile(path: path)
        guard try Self.identity(path) == before else {
            throw MeshError(.databaseError, "\(path) was replaced while it was being opened", hint: "the next snapshot retries")
        }
        self.path = path
        device = before.device
        inode = before.inode
    }

    private static func identity(_ path: String) throws(MeshError) -> (device: UInt64, inode: UInt64) {
        var st = stat()
        guard stat(path, &st) == 0 else { throw MeshError.posix(errno, "inspecting", path: path) }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw MeshError(.fileUnreadable, "\(path) is not a regular file", hint: "watch a SQLite database file")
        }
        return (UInt64(st.st_dev), UInt64(st.st_ino))
    }

    /// True while `path` still names the file we opened (not replaced by a rename or delete).
    var isStillAtPath: Bool {
        var st = stat()
        return stat(path, &st) == 0 && UInt64(st.st_dev) == device && UInt64(st.st_ino) == inode
    }

    /// Size (of the open file) and modification time (ns since the epoch, of the path, which
    /// the caller has checked still names it).
    func sizeAndMtime() throws(MeshError) -> (size: UInt64, mtimeNs: Int64) {
        var st = stat()
        guard stat(path, &st) == 0 else { throw MeshError.posix(errno, "inspecting", path: path) }
        return (try file.sizeBytes(), Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec))
    }

    func read(into buf: UnsafeMutableRawPointer, count: Int, offset: UInt64) throws(MeshError) {
        try file.read(into: buf, count: count, offset: offset)
    }

    func readHeader() throws(MeshError) -> DatabaseHeader {
        var b = [UInt8](repeating: 0, count: LiveSQLite.headerBytes)
        let r: Result<Void, MeshError> = b.withUnsafeMutableBytes { raw in
            Result { () throws(MeshError) in try read(into: raw.baseAddress!, count: raw.count, offset: 0) }
        }
        try r.get()
        guard let h = DatabaseHeader(b) else {
            throw MeshError(.invalidInput, "\(path) is no longer a SQLite database (its header is gone or damaged)",
                            hint: "check what rewrote the file; snapshots resume once it is a database again")
        }
        return h
    }
}
