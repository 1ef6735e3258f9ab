import Gossip

/// Which relative paths a folder syncs, and which names may become files at all.
///
/// Names come from peers, so turning a name into a path is a security boundary: a name that
/// could leave the folder (an absolute path, a `..` component), or that is not a plain
/// relative path, is refused and reported, never written.
public struct FolderFilter: Sendable {
    public let include: [Glob]
    public let exclude: [Glob]
    public let excludedSubtrees: [String]

    /// Patterns that are not valid globs are dropped (the config parser refuses them first).
    public init(include: [String] = [], exclude: [String] = [], excludedSubtrees: [String] = []) {
        self.include = include.compactMap(Glob.init)
        self.exclude = exclude.compactMap(Glob.init)
        self.excludedSubtrees = excludedSubtrees
    }

    public init(_ spec: FolderSpec) {
        self.init(include: spec.include, exclude: spec.exclude, excludedSubtrees: spec.excludedSubtrees)
    }

    /// Whether the file at `path` is outside what the folder syncs: our own and other tools'
    /// temp files, SQLite sidecars, an excluded subtree, a file (or a parent directory) matching
    /// `exclude`, or a file matching no `include`. A glob without "/" matches the base name
    /// (for `exclude`, also any parent directory's name); with "/", the relative path
    /// (for `exclude`, also any parent directory's path).
    public func ignores(_ path: String) -> Bool {
        let parts = path.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard let base = parts.last else { return true }
        if FolderPaths.isTemporaryOrSidecar(base) || path == FolderPaths.markerName { return true }
        for s in excludedSubtrees where path == s || path.hasPrefix(s + "/") { return true }
        if !exclude.isEmpty {
            var prefix = ""
            for (i, part) in parts.enumerated() {
                prefix = i == 0 ? part : prefix + "/" + part
                for g in exclude {
                    if g.pattern.contains("/") ? g.matches(prefix, pathname: true) : g.matches(part, pathname: false) { return true }
                }
            }
        }
        if !include.isEmpty {
            return !include.contains { g in g.pattern.contains("/") ? g.matches(path, pathname: true) : g.matches(base, pathname: false) }
        }
        return false
    }

    /// Whether a directory is never descended into (an excluded subtree, or excluded by a pattern).
    public func ignoresDirectory(_ path: String) -> Bool {
        for s in excludedSubtrees where path == s || path.hasPrefix(s + "/") { return true }
        let parts = path.split(separator: "/").map(String.init)
        var prefix = ""
        for (i, part) in parts.enumerated() {
            prefix = i == 0 ? part : prefix + "/" + part
            for g in exclude {
                if g.pattern.contains("/") ? g.matches(prefix, pathname: true) : g.matches(part, pathname: false) { return true }
            }
        }
        return false
    }
}

public enum FolderPaths {
    /// Longest item name (docs/PROTOCOL.md §4.1).
    public static let maxNameBytes = 255

    /// The marker file at the top of every watched folder (never synced): a folder without
    /// it is taken as not there (an unmounted disk), not as emptied.
    public static let markerName = ".meshnode-folder"

    /// Hidden temp files (`.*.tmp`, which includes meshnode's own `.NAME.meshnode-PID-TOKEN.tmp`),
    /// `*.meshnode-tmp`, editor and office lock files (`~*`), and SQLite sidecars
    /// (`*-wal`, `*-shm`, `*-journal`): never put, never written.
    public static func isTemporaryOrSidecar(_ base: String) -> Bool {
        if base.hasPrefix(".") && base.hasSuffix(".tmp") { return true }
        if base.hasSuffix(".meshnode-tmp") || base.hasPrefix("~") { return true }
        return base.hasSuffix("-wal") || base.hasSuffix("-shm") || base.hasSuffix("-journal")
    }

    /// The relative path a name maps to in a folder with `prefix`, or nil when the name is
    /// not under the prefix (or is the prefix itself).
    public static func relativePath(ofName name: String, prefix: String) -> String? {
        guard name.hasPrefix(prefix), name.utf8.count > prefix.utf8.count else { return nil }
        return String(name.dropFirst(prefix.count))
    }

    /// Why `path` (relative to a folder) cannot be a file of it, or nil when it can: it must
    /// be a plain relative path: no leading "/", no empty, "." or ".." component, no NUL or
    /// other control character, components of at most 255 bytes.
    public static func problem(relativePath path: String) -> String? {
        if path.isEmpty { return "the path is empty" }
        if path.hasPrefix("/") { return "it is an absolute path" }
        if path.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f }) {
            return "it contains NUL or control characters"
        }
        for c in path.split(separator: "/", omittingEmptySubsequences: false) {
            if c.isEmpty { return "it has an empty path component (\"//\" or a trailing \"/\")" }
            if c == "." || c == ".." { return "it has a \"\(c)\" component, which would leave the folder" }
            if c.utf8.count > 255 { return "a path component is longer than 255 bytes" }
        }
        return nil
    }

    /// Why `name` cannot be an item name, or nil (the Store's rules: 1...255 bytes, no control
    /// characters).
    public static func problem(name: String) -> String? {
        if name.isEmpty || name.utf8.count > maxNameBytes { return "the name must be 1...\(maxNameBytes) bytes of UTF-8" }
        if name.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f }) { return "the name contains control characters" }
        return nil
    }
}
