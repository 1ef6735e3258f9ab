// The `folders:` block: watched folders (docs/SYNC.md "Folders", README "Watched folders").
import Foundation
import Gossip
import Sync
import Yams

/// One watched folder (`folders[]`).
public struct FolderConfig: Equatable, Sendable {
    /// An absolute directory (stored without a trailing "/").
    public var path: String
    public var mode: FolderMode = .both
    /// The type of every version put; nil: guessed per file (`ItemType.guess`).
    public var type: ItemType?
    /// Item name = prefix + relative path. Default: the folder's base name + "/".
    public var prefix: String
    public var include: [String] = []
    public var exclude: [String] = []
    /// A live SQLite database is snapshotted at most this often while it changes.
    public var snapshotInterval: Duration = .seconds(60)
    /// A full rescan this often (the backstop behind the file system watcher).
    public var rescanInterval: Duration = .seconds(60)
    /// A change is acted on once the file has kept its size and mtime this long.
    public var settle: Duration = .milliseconds(300)

    public static let knownKeys = ["path", "mode", "type", "prefix", "include", "exclude", "snapshot_interval",
                                   "rescan_interval", "settle"]

    public init(path: String, prefix: String? = nil) {
        self.path = path
        self.prefix = prefix ?? (path as NSString).lastPathComponent + "/"
    }

    /// The planner's view of this folder. `excludedSubtrees`: relative directories never
    /// synced (the data dir when it lies inside the folder).
    public func spec(excludedSubtrees: [String] = []) -> FolderSpec {
        FolderSpec(mode: mode, type: type, prefix: prefix, include: include, exclude: exclude,
                   settleMs: Int64(settle.milliseconds), snapshotIntervalMs: Int64(snapshotInterval.milliseconds),
                   excludedSubtrees: excludedSubtrees)
    }
}

extension NodeConfig {
    /// `folders:` — a list of folder mappings, checked one by one and then against each other:
    /// two folders may not overlap (one inside the other) and their prefixes may not overlap
    /// (names under both would be written twice).
    static func parseFolders(_ node: Node, _ w: Walker) throws(MeshError) -> [FolderConfig] {
        var out: [FolderConfig] = []
        var nodes: [Node] = []
        for (i, n) in try w.list(node, "folders").enumerated() {
            out.append(try parseFolder(n, path: "folders[\(i)]", w))
            nodes.append(n)
        }
        let real = out.map { f -> String in
            guard let r = realpath(f.path, nil) else { return f.path }
            defer { free(r) }
            return String(cString: r)
        }
        for i in out.indices {
            for j in out.indices where j < i {
                let a = real[i], b = real[j]
                if a == b || a.hasPrefix(b == "/" ? "/" : b + "/") || b.hasPrefix(a == "/" ? "/" : a + "/") {
                    throw w.atLine(nodes[i], MeshError(.configInvalid, "folders[\(i)].path: \(out[i].path) overlaps folders[\(j)] (\(out[j].path))",
                                                   hint: "folders may not contain each other"))
                }
                let p = out[i].prefix, q = out[j].prefix
                if p == q {
                    throw w.atLine(nodes[i], MeshError(.configInvalid, "folders[\(i)].prefix: \"\(p)\" is also the prefix of folders[\(j)]",
                                                   hint: "give each folder its own prefix"))
                }
                if p.hasPrefix(q) || q.hasPrefix(p) {
                    throw w.atLine(nodes[i], MeshError(.configInvalid,
                                                   "folders[\(i)].prefix: \"\(p)\" overlaps the prefix \"\(q)\" of folders[\(j)]",
                                                   hint: "names under both would belong to two folders; use prefixes that do not start with each other"))
                }
            }
        }
        return out
    }

    private static func parseFolder(_ node: Node, path: String, _ w: Walker) throws(MeshError) -> FolderConfig {
        var dir: String?
        var c = FolderConfig(path: "/", prefix: "")
        var prefix: String?
        for (k, v) in try w.mapping(node, path: path) {
            let p = "\(path).\(k)"
            switch k {
            case "path":
                var s = try w.string(v, p)
                while s.count > 1 && s.hasSuffix("/") { s.removeLast() }
                guard s.hasPrefix("/") else {
                    throw w.at(v, Validate.fail(p, "an absolute directory path (starting with /)", got: s))
                }
                guard s != "/" else { throw w.at(v, MeshError(.configInvalid, "\(p): the root directory cannot be a watched folder")) }
                var isDir: ObjCBool = false
                guard FileManager.default.fileExists(atPath: s, isDirectory: &isDir), isDir.boolValue else {
                    throw w.atLine(v, MeshError(.configInvalid, "\(p): \(s) is not an existing directory",
                                            hint: "create it first (mkdir -p \(s))"))
                }
                dir = s
            case "mode":
                let s = try w.string(v, p)
                guard let m = FolderMode(rawValue: s) else { throw w.at(v, Validate.fail(p, "send, receive or both", got: s)) }
                c.mode = m
            case "type":
                let s = try w.string(v, p)
                guard let t = ItemType(name: s) else {
                    throw w.at(v, Validate.fail(p, "a type: " + ItemType.allCases.map(\.description).joined(separator: ", "), got: s))
                }
                c.type = t
            case "prefix":
                // An explicit empty prefix (`prefix: ""`) is allowed: names are the relative paths.
                let s: String
                if case .scalar(let sc) = v, sc.string.isEmpty { s = "" } else { s = try w.string(v, p) }
                if let why = prefixProblem(s) { throw w.at(v, MeshError(.configInvalid, "\(p): \"\(s)\" \(why)")) }
                prefix = s
            case "include", "exclude":
                let globs = try w.list(v, p).enumerated().map { (i, n) throws(MeshError) -> String in
                    let g = try w.string(n, "\(p)[\(i)]")
                    if let why = Glob.problem(in: g) { throw w.at(n, MeshError(.configInvalid, "\(p)[\(i)]: the glob \"\(g)\" \(why)")) }
                    return g
                }
                if k == "include" { c.include = globs } else { c.exclude = globs }
            case "snapshot_interval", "rescan_interval", "settle":
                let d = try w.located(v) { () throws(MeshError) in try Validate.interval(w.string(v, p), path: p) }
                let (lo, hi): (Duration, Duration) = k == "settle" ? (.milliseconds(10), .seconds(600)) : (.seconds(1), .seconds(86_400))
                guard d >= lo, d <= hi else {
                    throw w.at(v, Validate.fail(p, "a duration from \(DurationText.format(lo)) to \(DurationText.format(hi))", got: try w.string(v, p)))
                }
                if k == "settle" { c.settle = d } else if k == "rescan_interval" { c.rescanInterval = d } else { c.snapshotInterval = d }
            default:
                throw w.unknownKey(v, p, known: FolderConfig.knownKeys)
            }
        }
        guard let dir else { throw w.atLine(node, MeshError(.configInvalid, "\(path).path: missing", hint: "each folder needs path: /an/absolute/directory")) }
        c.path = dir
        c.prefix = prefix ?? (dir as NSString).lastPathComponent + "/"
        if prefix == nil, let why = prefixProblem(c.prefix) {
            throw w.atLine(node, MeshError(.configInvalid, "\(path).prefix: the default prefix \"\(c.prefix)\" \(why)", hint: "set prefix explicitly"))
        }
        return c
    }

    /// Why `prefix` cannot be a folder's name prefix, or nil.
    static func prefixProblem(_ prefix: String) -> String? {
        if prefix.isEmpty { return nil }
        guard prefix.hasSuffix("/") else { return "must end in \"/\" (or be empty)" }
        guard prefix.utf8.count <= 200 else { return "is longer than 200 bytes" }
        if let why = FolderPaths.problem(relativePath: String(prefix.dropLast())) { return "is not a plain relative path: \(why)" }
        return nil
    }
}

extension Walker {
    /// Like `at`, but also when the error has a hint: the line is appended to it.
    func atLine(_ node: Node, _ e: MeshError) -> MeshError {
        guard let hint = e.hint, let m = node.mark else { return at(node, e) }
        var e = e
        e.hint = "\(hint); line \(m.line) of \(source)"
        return e
    }
}
