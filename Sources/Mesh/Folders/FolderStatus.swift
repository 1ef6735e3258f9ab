import Foundation

/// One watched folder as `meshnode folders` (and `status`) show it.
public struct FolderRow: Codable, Sendable, Equatable {
    public var path: String
    public var mode: String
    public var prefix: String
    /// The folder's type, when it has one.
    public var type: String?
    /// Files present and synced by this folder, and their bytes.
    public var files: Int
    public var bytes: UInt64
    /// Local changes waiting to settle (or to be reverted, in a receive folder).
    public var settling: Int
    /// Puts, snapshots and tombstones queued or running.
    public var queuedPuts: Int
    /// Names whose content is being fetched before it can be written here.
    public var fetchesWaiting: Int
    public var materialising: Int
    public var removing: Int
    /// When the last complete scan ended (ms since the epoch), if any yet.
    public var lastScanMs: Int64?
    public var watchedDirectories: Int
    /// Why some directories are seen by rescans only (watch limits), if so.
    public var watchFallback: String?
    /// Why the folder is not synced at all right now (missing, marker missing), if so.
    public var blocked: String?
    public var localEditsReverted: UInt64
    /// The last local edit reverted: "PATH (REASON)".
    public var lastRevert: String?
    public var puts: UInt64
    public var tombstones: UInt64
    public var materialised: UInt64
    public var removed: UInt64
    /// The last problems, oldest first, one line each (at most 10).
    public var errors: [String]

    enum CodingKeys: String, CodingKey {
        case path, mode, prefix, type, files, bytes, settling, materialising, removing, blocked, puts, tombstones, materialised, removed, errors
        case queuedPuts = "queued_puts", fetchesWaiting = "fetches_waiting", lastScanMs = "last_scan_ms"
        case watchedDirectories = "watched_directories", watchFallback = "watch_fallback"
        case localEditsReverted = "local_edits_reverted", lastRevert = "last_revert"
    }

    /// One line for `meshnode status`.
    public var summary: String {
        var s = "\(path) (\(mode), prefix \"\(prefix)\"): \(files) files"
        var pending: [String] = []
        if settling > 0 { pending.append("\(settling) settling") }
        if queuedPuts > 0 { pending.append("\(queuedPuts) puts") }
        if fetchesWaiting > 0 { pending.append("\(fetchesWaiting) fetching") }
        if materialising > 0 { pending.append("\(materialising) writing") }
        if removing > 0 { pending.append("\(removing) removing") }
        s += pending.isEmpty ? ", in sync" : ", " + pending.joined(separator: ", ")
        if localEditsReverted > 0 { s += ", \(localEditsReverted) local edits reverted (last: \(lastRevert ?? "?"))" }
        if let blocked { s += "; NOT SYNCED: \(blocked)" }
        if !errors.isEmpty { s += "; \(errors.count) recent problems" }
        return s
    }
}

/// The last few problems of a folder, one line each; a repeat of the last one is counted,
/// not added again.
struct ProblemLog {
    static let capacity = 10
    private(set) var lines: [(text: String, count: Int, atMs: Int64)] = []

    mutating func add(_ text: String, atMs: Int64) {
        let one = String(text.map { $0 == "\n" || $0 == "\r" ? " " : $0 }.prefix(400))
        if let last = lines.last, last.text == one {
            lines[lines.count - 1].count += 1
            lines[lines.count - 1].atMs = atMs
            return
        }
        lines.append((one, 1, atMs))
        if lines.count > Self.capacity { lines.removeFirst(lines.count - Self.capacity) }
    }

    var rendered: [String] {
        let f = DateFormatter()
        f.dateFormat = "yyyy-MM-dd HH:mm:ss"
        f.timeZone = TimeZone(identifier: "UTC")
        return lines.map { l in
            "\(f.string(from: Date(timeIntervalSince1970: Double(l.atMs) / 1000)))Z \(l.text)" + (l.count > 1 ? " (×\(l.count))" : "")
        }
    }
}
