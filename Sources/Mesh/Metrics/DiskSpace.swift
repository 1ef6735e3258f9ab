import Store
#if canImport(Glibc)
import Glibc
#endif

/// Size and free space of the file system holding a path (`statvfs`).
public struct DiskSpace: Sendable, Equatable {
    public var totalBytes: UInt64
    /// Space an unprivileged process may still use (`f_bavail`), which is what a full disk
    /// means to the node (root's reserve is not counted).
    public var freeBytes: UInt64
    /// Space in use by anyone (`f_blocks − f_bfree`); with root's reserve, used + free < total.
    public var usedBytes: UInt64

    public init(totalBytes: UInt64, freeBytes: UInt64, usedBytes: UInt64 = 0) {
        self.totalBytes = totalBytes
        self.freeBytes = freeBytes
        self.usedBytes = usedBytes
    }

    /// Free space as a fraction of the total, 0...1 (1 for an empty or unknown total).
    public var freeFraction: Double { totalBytes == 0 ? 1 : Double(freeBytes) / Double(totalBytes) }

    /// The file system of `path`; nil if `statvfs` fails (the errno is in `error`).
    public static func of(_ path: String) -> Result<DiskSpace, MeshError> {
        var s = statvfs()
        guard statvfs(path, &s) == 0 else {
            let e = errno
            return .failure(MeshError(.ioError, "statvfs \(path) failed: \(String(cString: strerror(e)))"))
        }
        let unit = UInt64(s.f_frsize != 0 ? s.f_frsize : s.f_bsize)
        let used = s.f_blocks >= s.f_bfree ? UInt64(s.f_blocks - s.f_bfree) * unit : 0
        return .success(DiskSpace(totalBytes: UInt64(s.f_blocks) * unit, freeBytes: UInt64(s.f_bavail) * unit, usedBytes: used))
    }
}
