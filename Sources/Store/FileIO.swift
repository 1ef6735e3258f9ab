import CSodium
#if canImport(Glibc)
import Glibc
#endif

/// An open POSIX file descriptor with a single owner; closed exactly once.
public struct POSIXFile: ~Copyable {
    public let fd: Int32
    public let path: String

    /// Opens `path`; errors become `MeshError` describing `what` was being done.
    public init(path: String, flags: Int32, mode: mode_t = 0o644, what: String) throws(MeshError) {
        let fd = Glibc.open(path, flags | O_CLOEXEC, mode)
        guard fd >= 0 else { throw MeshError.posix(errno, what, path: path) }
        self.fd = fd
        self.path = path
    }

    deinit { _ = Glibc.close(fd) }

    /// The file's size in bytes (fstat).
    public func sizeBytes() throws(MeshError) -> UInt64 {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw MeshError.posix(errno, "inspecting", path: path) }
        return UInt64(st.st_size)
    }

    /// Reads exactly `count` bytes at `offset`, or fewer only at end of file.
    public func pread(into buf: UnsafeMutableRawPointer, count: Int, offset: UInt64) throws(MeshError) -> Int {
        var done = 0
        while done < count {
            let n = Glibc.pread(fd, buf + done, count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw MeshError.posix(errno, "reading", path: path)
            }
            if n == 0 { break }
            done += n
        }
        return done
    }

    /// Writes all of `count` bytes at `offset`.
    public func pwrite(from buf: UnsafeRawPointer, count: Int, offset: UInt64) throws(MeshError) {
        var done = 0
        while done < count {
            let n = Glibc.pwrite(fd, buf + done, count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw MeshError.posix(errno, "writing", path: path)
            }
            done += n
        }
    }

    /// Writes all bytes at the current position.
    public func write(from buf: UnsafeRawPointer, count: Int) throws(MeshError) {
        var done = 0
        while done < count {
            let n = Glibc.write(fd, buf + done, count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw MeshError.posix(errno, "writing", path: path)
            }
            done += n
        }
    }

    public func fsync() throws(MeshError) {
        guard Glibc.fsync(fd) == 0 else { throw MeshError.posix(errno, "syncing", path: path) }
    }

    public func fdatasync() throws(MeshError) {
        guard Glibc.fdatasync(fd) == 0 else { throw MeshError.posix(errno, "syncing", path: path) }
    }
}

/// Small POSIX helpers for the store's crash-safe file handling.
public enum FS {
    public static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

    public static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    /// Size of a regular file, or nil if it does not exist / is not a regular file.
    public static func regularFileSize(_ path: String) -> UInt64? {
        var st = stat()
        guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return nil }
        return UInt64(st.st_size)
    }

    /// Creates a directory if missing (not its parents).
    public static func mkdir(_ path: String, mode: mode_t = 0o755) throws(MeshError) {
        if Glibc.mkdir(path, mode) != 0 && errno != EEXIST {
            throw MeshError.posix(errno, "creating directory", path: path)
        }
    }

    /// Creates a directory and its missing parents.
    public static func mkdirs(_ path: String, mode: mode_t = 0o755) throws(MeshError) {
        if isDirectory(path) { return }
        let parent = dirname(of: path)
        if parent != path && !parent.isEmpty && !isDirectory(parent) { try mkdirs(parent, mode: mode) }
        try mkdir(path, mode: mode)
    }

    /// fsyncs a directory so that renames and creations in it are durable.
    public static func fsyncDirectory(_ path: String) throws(MeshError) {
        let fd = Glibc.open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw MeshError.posix(errno, "opening directory", path: path) }
        defer { _ = Glibc.close(fd) }
        guard Glibc.fsync(fd) == 0 else { throw MeshError.posix(errno, "syncing directory", path: path) }
    }

    public static func rename(_ from: String, _ to: String) throws(MeshError) {
        guard Glibc.rename(from, to) == 0 else { throw MeshError.posix(errno, "renaming into", path: to) }
    }

    public static func unlink(_ path: String) { _ = Glibc.unlink(path) }

    /// Names in a directory, without `.` and `..`; empty if it cannot be read.
    public static func list(_ path: String) -> [String] {
        guard let d = opendir(path) else { return [] }
        defer { closedir(d) }
        var out = [String]()
        while let e = readdir(d) {
            let name = withUnsafePointer(to: e.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." { out.append(name) }
        }
        return out
    }

    public static func dirname(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        if slash == path.startIndex { return "/" }
        return String(path[..<slash])
    }

    public static func basename(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return path }
        return String(path[path.index(after: slash)...])
    }

    /// A random hex token for temp file names.
    public static func randomToken() -> String {
        var b = [UInt8](repeating: 0, count: 8)
        randombytes_buf(&b, 8)
        return Hex.encode(b)
    }

    /// Writes `bytes` to `path` atomically: a temp file in the same directory, fsync,
    /// then rename (or, with `noReplace`, link + unlink, which fails if `path` exists),
    /// then fsync of the directory. A crash leaves either the old state or the new file.
    public static func writeAtomically(_ path: String, bytes: UnsafeRawBufferPointer, mode: mode_t,
                                       noReplace: Bool = false) throws(MeshError) {
        let dir = dirname(of: path)
        let tmp = "\(dir)/.\(basename(of: path)).tmp-\(randomToken())"
        do throws(MeshError) {
            let h = try POSIXFile(path: tmp, flags: O_WRONLY | O_CREAT | O_EXCL, mode: mode, what: "creating")
            guard fchmod(h.fd, mode) == 0 else { throw MeshError.posix(errno, "setting mode of", path: tmp) }
            if let base = bytes.baseAddress { try h.write(from: base, count: bytes.count) }
            try h.fsync()
            if noReplace {
                guard link(tmp, path) == 0 else {
                    if errno == EEXIST {
                        throw MeshError(.alreadyInitialized, "\(path) already exists", hint: "refusing to overwrite it")
                    }
                    throw MeshError.posix(errno, "creating", path: path)
                }
                unlink(tmp)
            } else {
                try rename(tmp, path)
            }
            try fsyncDirectory(dir)
        } catch {
            unlink(tmp)
            throw error
        }
    }

    public static func writeAtomically(_ path: String, bytes: [UInt8], mode: mode_t, noReplace: Bool = false) throws(MeshError) {
        try withBytes(bytes) { (raw) throws(MeshError) in
            try writeAtomically(path, bytes: raw, mode: mode, noReplace: noReplace)
        }
    }

    /// Reads a whole small file (bounded by `limitBytes`).
    public static func readSmallFile(_ path: String, limitBytes: Int = 1 << 20) throws(MeshError) -> [UInt8] {
        let h = try POSIXFile(path: path, flags: O_RDONLY, what: "opening")
        let size = try h.sizeBytes()
        guard size <= UInt64(limitBytes) else {
            throw MeshError(.corrupt, "\(path) is \(size) bytes, more than the \(limitBytes) expected",
                            hint: "the file is damaged; restore it or re-create it")
        }
        var out = [UInt8](repeating: 0, count: Int(size))
        let r: Result<Int, MeshError> = out.withUnsafeMutableBytes { raw in
            guard let base = raw.baseAddress else { return .success(0) }
            return Result { () throws(MeshError) in try h.pread(into: base, count: raw.count, offset: 0) }
        }
        let n = try r.get()
        return Array(out[0..<n])
    }
}

/// `withUnsafeBytes` for bodies with typed `MeshError` throws.
func withBytes<T>(_ a: [UInt8], _ body: (UnsafeRawBufferPointer) throws(MeshError) -> T) throws(MeshError) -> T {
    let r: Result<T, MeshError> = a.withUnsafeBytes { raw in Result { () throws(MeshError) in try body(raw) } }
    return try r.get()
}

/// Linux `O_DIRECT` (not exported to Swift by Glibc without _GNU_SOURCE); its value is per architecture.
#if arch(arm64) || arch(arm)
let O_DIRECT: Int32 = 0o200000
#else
let O_DIRECT: Int32 = 0o40000
#endif

/// Linux `O_TMPFILE` (`__O_TMPFILE | O_DIRECTORY`), per architecture.
#if arch(arm64) || arch(arm)
let O_TMPFILE_: Int32 = 0o20000000 | 0o40000
#else
let O_TMPFILE_: Int32 = 0o20000000 | 0o200000
#endif

/// Linux `AT_EMPTY_PATH` (not exported to Swift without _GNU_SOURCE).
let AT_EMPTY_PATH: Int32 = 0x1000
