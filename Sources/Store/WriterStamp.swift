import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Names one process for the life of one boot: boot id, pid and the process's start time.
/// The chunk write journal tags each write with it, so that a later open can tell a write
/// whose process died (to be finished) from one still running in another process (to be
/// left alone). A pid alone is not enough: pids are reused, and a node started at boot
/// often gets the same pid after every reboot; the start time and boot id tell them apart.
struct WriterStamp: Sendable, Hashable, CustomStringConvertible {
    let bootID: String
    let pid: Int32
    /// Start time in clock ticks since boot (`/proc/<pid>/stat`, field 22); 0 where unknown.
    let startTicks: UInt64

    /// `<boot id> <pid> <start ticks>`, as stored in `chunk_writes.writer`.
    var description: String { "\(bootID) \(pid) \(startTicks)" }

    init(bootID: String, pid: Int32, startTicks: UInt64) {
        self.bootID = bootID
        self.pid = pid
        self.startTicks = startTicks
    }

    /// Parses `description`; nil for anything else.
    init?(_ text: String) {
        let parts = text.split(separator: " ")
        guard parts.count == 3, let pid = Int32(parts[1]), let ticks = UInt64(parts[2]) else { return nil }
        self.init(bootID: String(parts[0]), pid: pid, startTicks: ticks)
    }

    /// This process.
    static let current = WriterStamp(bootID: bootID, pid: getpid(), startTicks: startTicks(of: getpid()) ?? 0)

    /// This boot's id (`/proc/sys/kernel/random/boot_id`), or "-" where there is none.
    static let bootID: String = {
        guard let bytes = readProcFile("/proc/sys/kernel/random/boot_id") else { return "-" }
        let text = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return text.isEmpty || text.contains(" ") ? "-" : text
    }()

    /// The start time of process `pid`, nil if there is no such process or it is a zombie
    /// (killed but not yet reaped: it writes nothing more).
    static func startTicks(of pid: Int32) -> UInt64? {
        guard let bytes = readProcFile("/proc/\(pid)/stat") else { return nil }
        let text = String(decoding: bytes, as: UTF8.self)
        // `pid (comm) state ppid ...`: comm may hold spaces and parentheses; fields follow the last ')'.
        guard let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 19, fields[0] != "Z", fields[0] != "X" else { return nil }
        return UInt64(fields[19])
    }

    /// Whether the process this stamp names may still be running (and writing). Errs towards
    /// "alive": a write wrongly thought alive is only finished later, by another open.
    var mayBeRunning: Bool {
        if self == Self.current { return true }
        if bootID != Self.bootID { return false }  // written before the last reboot
        if let ticks = Self.startTicks(of: pid) { return startTicks == 0 || ticks == startTicks }
        if FS.exists("/proc/self/stat") { return false }  // /proc works, and there is no such process
        return kill(pid, 0) == 0 || errno == EPERM
    }

    /// A /proc file's text (its size reads as 0, so it is read to the end), at most 4 KiB.
    static func readProcFile(_ path: String) -> [UInt8]? {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { _ = Glibc.close(fd) }
        var out = [UInt8](repeating: 0, count: 4096)
        var done = 0
        while done < out.count {
            let n = out.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + done, $0.count - done) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { return nil }
            if n == 0 { break }
            done += n
        }
        return Array(out[0..<done])
    }
}
