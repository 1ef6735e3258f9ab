// Stat-heavy walks of a watched folder, run on the folder's scan queue (never on the loop).
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Store
import Sync

/// Scans a folder (or part of it) with `lstat`, never following a link. Blocking: run on a
/// worker thread.
enum FolderScanner {
    /// The marker file (`FolderPaths.markerName`) a folder gets when it is first scanned. A
    /// later scan that does not find it changes nothing: an unmounted disk or an emptied
    /// directory must never look like "every file was deleted" (which would delete every
    /// name in the cluster).
    static let markerName = FolderPaths.markerName

    struct Output: Sendable {
        var scan = FolderScan()
        /// Directories found (relative; "" is the folder itself when it was scanned whole).
        var directories: [String] = []
        /// Stopped at the file limit: not authoritative, nothing is inferred absent.
        var truncated = false
        /// Problems found on the way (unreadable directories, undecodable names), one line each.
        var problems: [String] = []
        /// The folder itself is missing or its marker is.
        var blocked: String?
        var filesSeen = 0
    }

    struct Limits: Sendable {
        var maxFiles = 500_000
    }

    /// Scans all of the folder: every file, with the marker check and a sweep of temp files
    /// left by meshnode processes that no longer run.
    static func full(root: String, filter: FolderFilter, known: [String: FileStat], createMarker: Bool, limits: Limits) -> Output {
        var out = Output()
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: root, isDirectory: &isDir), isDir.boolValue else {
            out.blocked = "the folder \(root) does not exist (or is not a directory): nothing is synced until it is back"
            return out
        }
        let marker = root + "/" + markerName
        if !FS.exists(marker) {
            if createMarker {
                do { try FS.writeAtomically(marker, bytes: Array("meshnode watched folder: this file tells meshnode the folder is really there\n".utf8), mode: 0o644) } catch {
                    out.blocked = "cannot create \(marker): \(error.message)"
                    return out
                }
            } else {
                out.blocked = markerMissing(root)
                return out
            }
        }
        walk(root: root, subtree: "", filter: filter, known: known, limits: limits, sweepTemps: true, into: &out)
        if !out.truncated { out.scan.subtrees = [""] }
        return out
    }

    /// Looks at each of `paths`: a file's stat (with its header when it changed), absent, or
    /// a directory scanned whole (so that a directory moved in is seen at once).
    static func check(root: String, paths: [String], filter: FolderFilter, known: [String: FileStat], limits: Limits) -> Output {
        var out = Output()
        guard FS.exists(root + "/" + markerName) else {
            out.blocked = markerMissing(root)
            return out
        }
        for p in paths {
            if out.truncated { break }
            let abs = p.isEmpty ? root : root + "/" + p
            switch FolderFS.lstatEntry(abs) {
            case nil:
                if p.isEmpty {
                    out.blocked = "the folder \(root) disappeared: nothing is synced until it is back"
                    return out
                }
                out.scan.absent.append(p)
            case .directory?:
                if p.isEmpty { continue }  // the folder itself: its entries report their own changes
                if filter.ignoresDirectory(p) { continue }
                let before = out.truncated
                out.directories.append(p)
                walk(root: root, subtree: p, filter: filter, known: known, limits: limits, sweepTemps: false, into: &out)
                if !out.truncated && !before { out.scan.subtrees.append(p) }
            case .file(var o)?:
                if o.kind == .regular, known[p] != o.stat {
                    if o.stat.sizeBytes >= 16 { o.isSQLite = FolderFS.hasSQLiteHeader(abs) }
                    o.openForWriting = FolderFS.isOpenForWriting(abs, isDatabase: o.isSQLite)
                }
                out.scan.files[p] = o
                out.filesSeen += 1
            }
        }
        return out
    }

    private static func walk(root: String, subtree: String, filter: FolderFilter, known: [String: FileStat], limits: Limits,
                             sweepTemps: Bool, into out: inout Output) {
        var stack = [subtree]
        if subtree.isEmpty { out.directories.append("") }
        while let dir = stack.popLast() {
            let absDir = dir.isEmpty ? root : root + "/" + dir
            guard let d = opendir(absDir) else {
                if errno != ENOENT { out.problems.append("cannot read directory \(absDir): \(String(cString: strerror(errno)))") }
                continue
            }
            defer { closedir(d) }
            while let e = readdir(d) {
                let raw: [UInt8] = withUnsafePointer(to: e.pointee.d_name) {
                    $0.withMemoryRebound(to: UInt8.self, capacity: 256) { p in Array(UnsafeBufferPointer(start: p, count: strlen(UnsafeRawPointer(p).assumingMemoryBound(to: CChar.self)))) }
                }
                if raw == [0x2e] || raw == [0x2e, 0x2e] { continue }
                guard let name = String(validating: raw, as: UTF8.self) else {
                    out.problems.append("a name in \(absDir) is not valid UTF-8: not synced")
                    continue
                }
                let rel = dir.isEmpty ? name : dir + "/" + name
                let abs = absDir + "/" + name
                if dir.isEmpty && name == markerName { continue }
                switch FolderFS.lstatEntry(abs) {
                case nil:
                    continue  // gone since readdir
                case .directory?:
                    if filter.ignoresDirectory(rel) { continue }
                    out.directories.append(rel)
                    stack.append(rel)
                case .file(var o)?:
                    if sweepTemps, FolderPaths.isTemporaryOrSidecar(name), isStaleTemp(name) {
                        FS.unlink(abs)
                        continue
                    }
                    // Sidecars are never synced, but a -wal tells the planner its database changed.
                    if filter.ignores(rel) && !name.hasSuffix("-wal") { continue }
                    if out.filesSeen >= limits.maxFiles {
                        out.truncated = true
                        out.problems.append("more than \(limits.maxFiles) files: the rest of the folder is not synced (and nothing is taken as deleted)")
                        return
                    }
                    // The header is read for files that changed, and for databases with a -wal
                    // (a live one in WAL mode changes there, not in its main file).
                    if o.kind == .regular, o.stat.sizeBytes >= 16, known[rel] != o.stat || FS.exists(abs + "-wal") {
                        o.isSQLite = FolderFS.hasSQLiteHeader(abs)
                    }
                    if o.kind == .regular, known[rel] != o.stat { o.openForWriting = FolderFS.isOpenForWriting(abs, isDatabase: o.isSQLite) }
                    out.scan.files[rel] = o
                    out.filesSeen += 1
                }
            }
        }
    }

    static func markerMissing(_ root: String) -> String {
        let marker = root + "/" + markerName
        return "\(marker) is missing: nothing is synced, so that an unmounted or emptied folder does not delete every name"
            + " (if the folder was emptied on purpose, recreate it: touch \(marker))"
    }

    /// `.NAME.meshnode-PID-TOKEN.tmp` of a process that is not running any more.
    static func isStaleTemp(_ name: String) -> Bool {
        guard name.hasPrefix("."), name.hasSuffix(".tmp"), let r = name.range(of: ".meshnode-", options: .backwards) else { return false }
        let rest = name[r.upperBound...].dropLast(4)
        guard let dash = rest.firstIndex(of: "-"), let pid = Int32(rest[..<dash]), pid > 0 else { return false }
        if pid == getpid() { return false }
        return kill(pid, 0) != 0 && errno == ESRCH
    }
}
