import ArgumentParser
import Foundation
import Store
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// `--data DIR`, shared by every verb.
struct DataOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The node's data directory.",
                                             discussion: "Defaults to $MESHNODE_DATA, then ~/.meshnode.",
                                             valueName: "DIR"))
    var data: String?

    /// The data dir to use: the flag, then $MESHNODE_DATA, then ~/.meshnode.
    var dataDir: String {
        if let data, !data.isEmpty { return data }
        if let env = ProcessInfo.processInfo.environment["MESHNODE_DATA"], !env.isEmpty { return env }
        let home = ProcessInfo.processInfo.environment["HOME"] ?? "/root"
        return "\(home)/.meshnode"
    }
}

/// Runs `body`; a `MeshError` is printed as its one line on stderr and becomes its exit status.
func runReportingErrors(_ body: () throws(MeshError) -> Void) throws {
    do throws(MeshError) {
        try body()
    } catch {
        FileHandleOut.stderr(error.line + "\n")
        throw ExitCode(error.code.exitStatus)
    }
}

enum FileHandleOut {
    static func stdout(_ s: String) { writeAll(1, s) }
    static func stderr(_ s: String) { writeAll(2, s) }

    private static func writeAll(_ fd: Int32, _ s: String) {
        var bytes = Array(s.utf8)
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeMutableBytes { write(fd, $0.baseAddress! + off, $0.count - off) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }
            off += n
        }
    }
}

/// Human-readable byte counts: 1.5 GiB, 20.0 MiB, 512 B.
func formatBytes(_ n: UInt64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
    var v = Double(n)
    var u = 0
    while v >= 1024 && u < units.count - 1 {
        v /= 1024
        u += 1
    }
    return u == 0 ? "\(n) B" : String(format: "%.1f %@", v, units[u])
}

/// Parses `2097152`, `64K`, `64KiB`, `2M`, `2MiB` into bytes (binary units).
func parseByteSize(_ text: String) -> UInt64? {
    let t = text.trimmingCharacters(in: .whitespaces).uppercased()
    let suffixes: [(String, UInt64)] = [("KIB", 1 << 10), ("MIB", 1 << 20), ("GIB", 1 << 30),
                                        ("K", 1 << 10), ("M", 1 << 20), ("G", 1 << 30), ("B", 1)]
    for (s, mult) in suffixes where t.hasSuffix(s) {
        guard let v = UInt64(t.dropLast(s.count).trimmingCharacters(in: .whitespaces)) else { return nil }
        return v.multipliedReportingOverflow(by: mult).overflow ? nil : v * mult
    }
    return UInt64(t)
}

/// A progress bar on stderr: only when stderr is a terminal and the operation has run for
/// a moment; redrawn at most 10 times a second. Thread-safe (workers report progress).
final class ProgressBar: Sendable {
    private struct State {
        var lastDraw = 0.0
        var drawn = false
    }
    private let state = Mutex(State())
    private let total: UInt64
    private let label: String
    private let start = WallClock.monotonicSeconds()
    private let enabled: Bool
    /// Seconds before the bar appears, so short operations stay quiet
    /// (`MESHNODE_PROGRESS_AFTER_MS` overrides it; tests use 0).
    static let quietSeconds: Double = {
        if let t = ProcessInfo.processInfo.environment["MESHNODE_PROGRESS_AFTER_MS"], let ms = Double(t), ms >= 0 {
            return ms / 1000
        }
        return 0.5
    }()

    init(label: String, total: UInt64) {
        self.label = label
        self.total = total
        let off = ProcessInfo.processInfo.environment["MESHNODE_NO_PROGRESS"].map { !$0.isEmpty && $0 != "0" } ?? false
        enabled = isatty(2) == 1 && !off
    }

    var handler: ProgressHandler? {
        guard enabled else { return nil }
        return { @Sendable [self] done in self.update(done) }
    }

    func update(_ done: UInt64) {
        let now = WallClock.monotonicSeconds()
        let elapsed = now - start
        guard elapsed >= Self.quietSeconds else { return }
        let line: String? = state.withLock { st in
            guard now - st.lastDraw >= 0.1 || done >= total else { return nil }
            st.lastDraw = now
            st.drawn = true
            let frac = total == 0 ? 1.0 : min(1.0, Double(done) / Double(total))
            let width = 24
            let filled = Int(frac * Double(width))
            let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
            let rate = Double(done) / max(elapsed, 0.001)
            let eta = rate > 0 ? Double(total - min(done, total)) / rate : 0
            return String(format: "\r\u{1b}[K%@ [%@] %3d%% %@/%@ %@/s ETA %ds", label, bar, Int(frac * 100),
                          formatBytes(done), formatBytes(total), formatBytes(UInt64(rate)), Int(eta.rounded()))
        }
        if let line { FileHandleOut.stderr(line) }
    }

    /// Clears the bar's line if it was drawn.
    func finish() {
        if state.withLock({ $0.drawn }) { FileHandleOut.stderr("\r\u{1b}[K") }
    }
}

/// Encodes a value as pretty JSON with sorted keys, plus a newline.
func jsonText<T: Encodable>(_ value: T) -> String {
    let enc = JSONEncoder()
    enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    guard let d = try? enc.encode(value) else { return "null\n" }
    return String(decoding: d, as: UTF8.self) + "\n"
}

/// The host name from gethostname(2), without a DNS lookup (which can hang on hosts with
/// broken resolvers); "meshnode" if it is empty.
func shortHostName() -> String {
    var buf = [CChar](repeating: 0, count: 256)
    guard gethostname(&buf, buf.count - 1) == 0 else { return "meshnode" }
    let name = String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    return name.isEmpty ? "meshnode" : name
}
