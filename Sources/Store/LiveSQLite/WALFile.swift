#if canImport(Glibc)
import Glibc
#endif

/// SQLite's WAL checksum: two 32-bit sums over 32-bit words (fileformat2 §4.2), chained
/// from the header through every frame.
struct WALChecksum: Hashable, Sendable {
    var s0: UInt32
    var s1: UInt32

    static let zero = WALChecksum(s0: 0, s1: 0)

    /// Continues the checksum over `count` bytes (a multiple of 8), reading the words
    /// big-endian when `bigEndian` (magic 0x377f0683), else little-endian.
    func adding(_ p: UnsafeRawPointer, count: Int, bigEndian: Bool) -> WALChecksum {
        precondition(count % 8 == 0)
        var s0 = self.s0
        var s1 = self.s1
        var i = 0
        if bigEndian {
            while i < count {
                s0 = s0 &+ UInt32(bigEndian: p.loadUnaligned(fromByteOffset: i, as: UInt32.self)) &+ s1
                s1 = s1 &+ UInt32(bigEndian: p.loadUnaligned(fromByteOffset: i + 4, as: UInt32.self)) &+ s0
                i += 8
            }
        } else {
            while i < count {
                s0 = s0 &+ UInt32(littleEndian: p.loadUnaligned(fromByteOffset: i, as: UInt32.self)) &+ s1
                s1 = s1 &+ UInt32(littleEndian: p.loadUnaligned(fromByteOffset: i + 4, as: UInt32.self)) &+ s0
                i += 8
            }
        }
        return WALChecksum(s0: s0, s1: s1)
    }
}

/// Big-endian u32 at `offset` of raw memory.
@inline(__always) func loadBE32(_ p: UnsafeRawPointer, _ offset: Int) -> UInt32 {
    UInt32(bigEndian: p.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
}

/// The 32-byte WAL header (fileformat2 §4.1), validated as SQLite's recovery does.
struct WALHeader: Equatable, Sendable {
    static let size = 32
    static let frameHeaderSize = 24
    static let formatVersion: UInt32 = 3_007_000

    /// The 32 bytes as read: a header re-read later is compared byte for byte.
    var raw: [UInt8]
    var bigEndianChecksums: Bool
    var pageSize: Int
    /// Checkpoint sequence number: incremented by every WAL reset.
    var checkpointSequence: UInt32
    var salt1: UInt32
    var salt2: UInt32
    /// The header's own checksum: the seed of frame 1's.
    var checksum: WALChecksum

    var frameSize: Int { Self.frameHeaderSize + pageSize }

    /// Byte offset of frame `n` (1-based).
    func offset(ofFrame n: UInt32) -> UInt64 { UInt64(Self.size) + UInt64(n - 1) * UInt64(frameSize) }

    /// Nil unless the magic, version, page size and header checksum are all valid.
    init?(_ b: [UInt8]) {
        guard b.count >= Self.size else { return nil }
        let ok: WALHeader? = b.withUnsafeBytes { raw -> WALHeader? in
            let p = raw.baseAddress!
            let magic = loadBE32(p, 0)
            guard magic == 0x377f_0682 || magic == 0x377f_0683, loadBE32(p, 4) == Self.formatVersion else { return nil }
            let big = magic & 1 == 1
            let ps = Int(loadBE32(p, 8))
            guard ps >= 512, ps <= 65536, ps & (ps - 1) == 0 else { return nil }
            let c = WALChecksum.zero.adding(p, count: 24, bigEndian: big)
            guard c.s0 == loadBE32(p, 24), c.s1 == loadBE32(p, 28) else { return nil }
            return WALHeader(raw: Array(b[0..<Self.size]), bigEndianChecksums: big, pageSize: ps,
                             checkpointSequence: loadBE32(p, 12), salt1: loadBE32(p, 16), salt2: loadBE32(p, 20), checksum: c)
        }
        guard let ok else { return nil }
        self = ok
    }

    private init(raw: [UInt8], bigEndianChecksums: Bool, pageSize: Int, checkpointSequence: UInt32, salt1: UInt32,
                 salt2: UInt32, checksum: WALChecksum) {
        self.raw = raw
        self.bigEndianChecksums = bigEndianChecksums
        self.pageSize = pageSize
        self.checkpointSequence = checkpointSequence
        self.salt1 = salt1
        self.salt2 = salt2
        self.checksum = checksum
    }
}

/// Where a scan stopped: the last commit frame taken into an image, and the chain's
/// checksum after it. Frame 0 means "just the header" (checksum = the header's).
struct WALPosition: Hashable, Sendable {
    var salt1: UInt32
    var salt2: UInt32
    var frame: UInt32
    var checksum: WALChecksum

    func sameGeneration(as h: WALHeader) -> Bool { salt1 == h.salt1 && salt2 == h.salt2 }
}

/// What a scan of WAL frames found.
struct WALScan {
    var header: WALHeader
    /// The position the scan started after.
    var start: WALPosition
    /// The last valid commit frame found (== start.frame when none was).
    var end: WALPosition
    /// Database size in pages after `end` (0 when no commit frame was found).
    var databasePages: UInt32
    /// Page number → its latest frame in (start.frame, end.frame].
    var pages: [UInt32: UInt32]
    var framesScanned: Int
    var bytesRead: UInt64

    var foundCommit: Bool { end.frame > start.frame }
}

/// Our own read-only descriptor on a database's `-wal` file.
final class WALFile: Sendable {
    let path: String
    let fd: Int32

    /// Opens `<db>-wal`; nil when it does not exist.
    init?(databasePath: String) throws(MeshError) {
        let p = databasePath + "-wal"
        let fd = open(p, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT { return nil }
            throw MeshError.posix(errno, "opening", path: p)
        }
        path = p
        self.fd = fd
    }

    deinit { close(fd) }

    func sizeBytes() -> UInt64 {
        var st = stat()
        return fstat(fd, &st) == 0 ? UInt64(st.st_size) : 0
    }

    /// The header; nil when the file is shorter than a header or the header is not valid
    /// (SQLite then treats the WAL as empty).
    func readHeader() throws(MeshError) -> WALHeader? {
        var b = [UInt8](repeating: 0, count: WALHeader.size)
        let r: Result<Int, MeshError> = b.withUnsafeMutableBytes { raw in
            Result { () throws(MeshError) in try readAt(fd: fd, path: path, into: raw.baseAddress!, count: raw.count, offset: 0) }
        }
        guard try r.get() == WALHeader.size else { return nil }
        return WALHeader(b)
    }

    /// True if frame `position.frame` is still the commit frame we scanned: same salts and
    /// the same cumulative checksum (a frame of another generation or chain differs).
    func confirms(_ position: WALPosition, header: WALHeader) throws(MeshError) -> Bool {
        guard position.sameGeneration(as: header) else { return false }
        if position.frame == 0 { return position.checksum == header.checksum }
        var b = [UInt8](repeating: 0, count: WALHeader.frameHeaderSize)
        let off = header.offset(ofFrame: position.frame)
        let r: Result<Int, MeshError> = b.withUnsafeMutableBytes { raw in
            Result { () throws(MeshError) in try readAt(fd: fd, path: path, into: raw.baseAddress!, count: raw.count, offset: off) }
        }
        guard try r.get() == b.count else { return false }
        return b.withUnsafeBytes { raw in
            let p = raw.baseAddress!
            return loadBE32(p, 4) != 0 && loadBE32(p, 8) == header.salt1 && loadBE32(p, 12) == header.salt2
                && loadBE32(p, 16) == position.checksum.s0 && loadBE32(p, 20) == position.checksum.s1
        }
    }

    /// Reads frames after `start` in batches, validating salts and the checksum chain as
    /// SQLite's recovery does, until the first invalid frame or the end of the file. Pages
    /// of frames after the last valid commit frame are not part of the result.
    func scan(header: WALHeader, after start: WALPosition, batchBytes: Int = 1 << 20) throws(MeshError) -> WALScan {
        let frameSize = header.frameSize
        let perBatch = max(1, batchBytes / frameSize)
        let buf = ScratchBuffer(count: perBatch * frameSize)
        var result = WALScan(header: header, start: start, end: start, databasePages: 0, pages: [:], framesScanned: 0, bytesRead: 0)
        var pending = [(page: UInt32, frame: UInt32)]()
        var chain = start.checksum
        var next = start.frame + 1
        let big = header.bigEndianChecksums
        scanning: while true {
            let want = perBatch * frameSize
            let got = try readAt(fd: fd, path: path, into: buf.base, count: want, offset: header.offset(ofFrame: next))
            result.bytesRead += UInt64(got)
            let frames = got / frameSize
            if frames == 0 { break }
            for k in 0..<frames {
                let f = UnsafeRawPointer(buf.base + k * frameSize)
                let page = loadBE32(f, 0)
                guard page != 0, loadBE32(f, 8) == header.salt1, loadBE32(f, 12) == header.salt2 else { break scanning }
                let c = chain.adding(f, count: 8, bigEndian: big).adding(f + WALHeader.frameHeaderSize, count: header.pageSize, bigEndian: big)
                guard c.s0 == loadBE32(f, 16), c.s1 == loadBE32(f, 20) else { break scanning }
                chain = c
                result.framesScanned += 1
                pending.append((page, next))
                let commitPages = loadBE32(f, 4)
                if commitPages != 0 {
                    for p in pending { result.pages[p.page] = p.frame }
                    pending.removeAll(keepingCapacity: true)
                    result.end = WALPosition(salt1: header.salt1, salt2: header.salt2, frame: next, checksum: c)
                    result.databasePages = commitPages
                }
                if next == UInt32.max { break scanning }
                next += 1
            }
            if frames < perBatch { break }
        }
        return result
    }
}
