import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The chunk tree of a data dir; safe to use from worker threads (immutable paths only).
struct ChunkFiles: Sendable {
    /// `MESHNODE_NO_TMPFILE=1` forces named temp files, as on file systems without
    /// O_TMPFILE (so that tests cover that path too).
    static let tmpfileDisabled: Bool = getenv("MESHNODE_NO_TMPFILE").map { String(cString: $0) == "1" } ?? false

    let chunksDir: String
    let tmpDir: String

    func path(_ hash: ChunkHash) -> String {
        let hex = hash.digest.hex
        return "\(chunksDir)/\(hex.prefix(2))/\(hex)"
    }

    /// A fresh temp path in `tmp/` for this process: `<pid>.<token>.<suffix>`.
    func tempPath(_ suffix: String) -> String {
        "\(tmpDir)/\(getpid()).\(FS.randomToken()).\(suffix)"
    }

    /// A chunk written to a temp file, not yet synced nor visible under its name.
    struct PendingChunk {
        let hash: ChunkHash
        let fd: Int32
        /// The named temp file, or "" for an unnamed O_TMPFILE inode (linked at commit).
        let tmp: String
        let final: String
    }

    /// Writes a chunk to a temp file without syncing it; `commit` makes it durable and gives it
    /// its final name. Callers skip chunks the store already records (dedup): a file under the
    /// final name that is not recorded is not trusted, and `commit` replaces it.
    ///
    /// The temp file is an unnamed `O_TMPFILE` inode in the chunk's own directory where the
    /// file system supports it (nothing to clean up after a crash: the kernel frees it), else
    /// a named file in `tmp/` (swept at open). With `paddedCapacity` (the bytes live in a
    /// 4096-aligned buffer at least that long) it is written with O_DIRECT: the length
    /// rounded up to 4096, then truncated to the exact size. That skips the page cache,
    /// which on this class of machine is several times slower than the disk. File systems
    /// without O_DIRECT (tmpfs) fall back to buffered writes.
    func writeTemp(_ hash: ChunkHash, _ bytes: UnsafeRawBufferPointer, paddedCapacity: Int? = nil) throws(MeshError) -> PendingChunk {
        let final = path(hash)
        let dir = FS.dirname(of: final)
        let padded = (bytes.count + 4095) & ~4095
        var useDirect = false
        if let cap = paddedCapacity, cap >= padded, let base = bytes.baseAddress,
           Int(bitPattern: base) % 4096 == 0, bytes.count > 0 {
            useDirect = true
        }
        var tmp = ""
        var fd: Int32 = -1
        var direct = false
        // 1. Unnamed temp inode, 2. named temp file; each with O_DIRECT first if usable.
        for named in ChunkFiles.tmpfileDisabled ? [true] : [false, true] {
            if named { tmp = tempPath("chunk") }
            for tryDirect in useDirect ? [true, false] : [false] {
                let flags = O_WRONLY | O_CLOEXEC | (tryDirect ? O_DIRECT : 0)
                fd = named ? Glibc.open(tmp, flags | O_CREAT | O_EXCL, 0o644) : Glibc.open(dir, flags | O_TMPFILE_, 0o644)
                if fd >= 0 {
                    direct = tryDirect
                    break
                }
                if errno == ENOENT && !named {
                    // The fan-out directory is missing (created lazily by older layouts).
                    try FS.mkdir(dir)
                    fd = Glibc.open(dir, flags | O_TMPFILE_, 0o644)
                    if fd >= 0 {
                        direct = tryDirect
                        break
                    }
                }
                let e = errno
                if e != EINVAL && e != EOPNOTSUPP && e != EISDIR && e != ENOTDIR {
                    throw MeshError.posix(e, "creating chunk in", path: named ? tmp : dir)
                }
            }
            if fd >= 0 { break }
        }
        guard fd >= 0 else { throw MeshError(.ioError, "cannot create a temp file in \(dir)", hint: "check the data dir's file system") }
        do throws(MeshError) {
            if let base = bytes.baseAddress {
                try writeAt(fd: fd, path: final, from: base, count: direct ? padded : bytes.count, offset: 0)
            }
            if direct && padded != bytes.count {
                guard ftruncate(fd, off_t(bytes.count)) == 0 else { throw MeshError.posix(errno, "truncating", path: final) }
            }
        } catch {
            _ = Glibc.close(fd)
            if !tmp.isEmpty { FS.unlink(tmp) }
            throw error
        }
        return PendingChunk(hash: hash, fd: fd, tmp: tmp, final: final)
    }

    /// Makes pending chunks durable (fdatasync each; after the first, the journal commit
    /// usually covers the rest, which is why chunks are committed in batches), then gives
    /// each its final name (link of the unnamed inode, or rename of the named temp file).
    /// A file already under that name is replaced atomically: it is one the store does not
    /// record (left by an interrupted write, perhaps damaged), or a copy another writer just
    /// named, with the same verified bytes. Either way a reader sees a whole file, old or new.
    /// Empties `batch`; on failure, removes what is left.
    func commit(_ batch: inout [PendingChunk]) throws(MeshError) {
        defer { discard(&batch) }
        for p in batch {
            guard fdatasync(p.fd) == 0 else { throw MeshError.posix(errno, "syncing", path: p.final) }
        }
        for p in batch {
            if p.tmp.isEmpty {
                var e = link(p.fd, as: p.final)
                if e == EEXIST {
                    // link(2) never replaces: name the inode in tmp/ (swept at open if killed
                    // right here), then rename it over the old file.
                    let tmp = tempPath("chunk")
                    e = link(p.fd, as: tmp)
                    if e == 0 {
                        do { try FS.rename(tmp, p.final) } catch {
                            FS.unlink(tmp)
                            throw error
                        }
                    }
                }
                if e != 0 { throw MeshError.posix(e, "naming chunk", path: p.final) }
            } else {
                try FS.mkdir(FS.dirname(of: p.final))
                try FS.rename(p.tmp, p.final)  // the deferred unlink of tmp then finds nothing
            }
        }
    }

    /// Gives the unnamed inode `fd` the name `path`: 0, or the errno (EEXIST if taken).
    private func link(_ fd: Int32, as path: String) -> Int32 {
        if linkat(fd, "", AT_FDCWD, path, AT_EMPTY_PATH) == 0 { return 0 }
        if errno == EEXIST { return EEXIST }
        // AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH; /proc/self/fd works for everyone.
        if linkat(AT_FDCWD, "/proc/self/fd/\(fd)", AT_FDCWD, path, AT_SYMLINK_FOLLOW) == 0 { return 0 }
        return errno
    }

    /// Removes pending chunks without making them visible.
    func discard(_ batch: inout [PendingChunk]) {
        for p in batch {
            _ = Glibc.close(p.fd)
            if !p.tmp.isEmpty { FS.unlink(p.tmp) }
        }
        batch.removeAll()
    }

    /// Reads a chunk file whole into `buf` (4096-aligned, `capacity` bytes), with O_DIRECT
    /// where the file system allows it. Returns the bytes read; a file whose size is not
    /// `expected` is `.corrupt`. Thread-safe.
    func read(_ hash: ChunkHash, into buf: UnsafeMutableRawPointer, capacity: Int, expected: Int,
              itemName: String) throws(MeshError) -> Int {
        let p = path(hash)
        var fd = Glibc.open(p, O_RDONLY | O_CLOEXEC | O_DIRECT)
        var direct = true
        if fd < 0 && errno == EINVAL {
            fd = Glibc.open(p, O_RDONLY | O_CLOEXEC)
            direct = false
        }
        guard fd >= 0 else {
            if errno == ENOENT {
                throw MeshError(.corrupt, "chunk \(hash) of \(itemName) is missing from the store",
                                hint: "run `meshnode verify` to find every damaged item")
            }
            throw MeshError.posix(errno, "reading chunk", path: p)
        }
        defer { _ = Glibc.close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw MeshError.posix(errno, "inspecting", path: p) }
        guard Int(st.st_size) == expected, expected <= capacity else {
            throw MeshError(.corrupt, "chunk \(hash) of \(itemName) has the wrong size on disk",
                            hint: "run `meshnode verify` to find every damaged item")
        }
        var want = direct ? min(capacity, (expected + 4095) & ~4095) : expected
        var done = 0
        while done < want {
            let n = Glibc.pread(fd, buf + done, want - done, off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EINVAL && direct {
                    // Some file systems accept O_DIRECT at open but not this read, and a short
                    // read leaves the next offset unaligned: go on buffered.
                    direct = false
                    _ = fcntl(fd, F_SETFL, 0)
                    want = expected
                    continue
                }
                throw MeshError.posix(errno, "reading chunk", path: p)
            }
            if n == 0 { break }
            done += n
            // Past the end of the data the next O_DIRECT read would be unaligned: stop here.
            if done >= expected { break }
        }
        guard done >= expected else {
            throw MeshError(.corrupt, "chunk \(hash) of \(itemName) ended after \(done) of \(expected) bytes",
                            hint: "run `meshnode verify` to find every damaged item")
        }
        return expected
    }
}
