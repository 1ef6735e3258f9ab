// Watching a folder tree with libuv's uv_fs_event (inotify on Linux).
import CLibUV

/// One `uv_fs_event_t` watching one directory (not recursive: libuv's recursive flag does
/// nothing on Linux). Loop-confined.
final class DirectoryWatch: LoopHandle, @unchecked Sendable {
    /// Called on the loop with the name of the entry that changed (nil: the directory itself),
    /// or with a negative libuv status when the watch failed.
    var onEvent: ((String?, Int32) -> Void)?

    var fsEvent: UnsafeMutablePointer<uv_fs_event_t> { raw.assumingMemoryBound(to: uv_fs_event_t.self) }

    init(loop: EventLoop, path: String) throws(MeshError) {
        super.init(loop: loop, size: MemoryLayout<uv_fs_event_t>.size)
        loop.assertInLoop("DirectoryWatch.init")
        var rc = uv_fs_event_init(loop.uv, fsEvent)
        guard rc == 0 else { throw MeshError.uv(rc, "uv_fs_event_init") }
        adopt()
        rc = uv_fs_event_start(fsEvent, { h, filename, _, status in
            guard let me: DirectoryWatch = LoopHandle.owner(UnsafeMutableRawPointer(h)) else { return }
            me.onEvent?(filename.map { String(cString: $0) }, status)
        }, path, 0)
        guard rc == 0 else {
            close()
            throw MeshError.uv(rc, "watching \(path)",
                               hint: rc == UV_ENOSPC.rawValue ? "the inotify watch limit is reached (raise fs.inotify.max_user_watches)" : nil)
        }
    }

    override func didClose() { onEvent = nil }
}

/// Watches every directory of one folder, each with its own `DirectoryWatch`, adding
/// watches as directories appear and dropping them as they go. At most `maxWatches`
/// directories are watched; beyond that (or when the kernel refuses more: inotify's
/// `max_user_watches`), changes in the others are seen by the periodic rescan, and
/// `fallback` says why. Loop-confined.
final class FolderWatcher: @unchecked Sendable {
    // @unchecked: loop-confined, like the handles it owns.
    let loop: EventLoop
    let root: String
    let maxWatches: Int
    /// A path (relative to the folder) that something happened to: a file, or a directory
    /// to look at as a whole.
    var onChange: ((String) -> Void)?
    /// Why some directories are not watched (nil when all are).
    private(set) var fallback: String?
    private var watches: [String: DirectoryWatch] = [:]
    /// Directories known but not watched (over the limit, or refused).
    private var unwatched: Set<String> = []

    init(loop: EventLoop, root: String, maxWatches: Int) {
        self.loop = loop
        self.root = root
        self.maxWatches = max(1, maxWatches)
    }

    var watchCount: Int { watches.count }

    /// Makes the watched set exactly `directories` (relative; "" is the folder), as a complete
    /// scan found them.
    func sync(_ directories: Set<String>) {
        for d in Array(watches.keys) where !directories.contains(d) { drop(d) }
        unwatched = unwatched.intersection(directories)
        add(directories.sorted { $0.count < $1.count })
    }

    /// Starts watching these directories (those not watched yet), shallowest first.
    func add<S: Sequence>(_ directories: S) where S.Element == String {
        for d in directories where watches[d] == nil {
            guard watches.count < maxWatches else {
                unwatched.insert(d)
                fallback = "more than \(maxWatches) directories: changes in \(unwatched.count) of them are seen at rescans only"
                continue
            }
            do {
                let w = try DirectoryWatch(loop: loop, path: d.isEmpty ? root : root + "/" + d)
                w.onEvent = { [unowned self] name, status in
                    if status < 0 {
                        self.onChange?(d)
                    } else if let name, !name.isEmpty {
                        self.onChange?(d.isEmpty ? name : d + "/" + name)
                    } else {
                        self.onChange?(d)
                    }
                }
                watches[d] = w
                unwatched.remove(d)
            } catch {
                if error.uvStatus == UV_ENOENT.rawValue || error.uvStatus == UV_ENOTDIR.rawValue { continue }  // gone already
                unwatched.insert(d)
                fallback = "\(error.message)\(error.hint.map { " (\($0))" } ?? ""): changes in \(unwatched.count) directories are seen at rescans only"
            }
        }
        if unwatched.isEmpty { fallback = nil }
    }

    /// Stops watching `directory` and everything below it (it is gone).
    func removeTree(_ directory: String) {
        for d in Array(watches.keys) where directory.isEmpty || d == directory || d.hasPrefix(directory + "/") { drop(d) }
        unwatched = unwatched.filter { !(directory.isEmpty || $0 == directory || $0.hasPrefix(directory + "/")) }
        if unwatched.isEmpty { fallback = nil }
    }

    func isWatched(_ directory: String) -> Bool { watches[directory] != nil }

    private func drop(_ d: String) {
        watches.removeValue(forKey: d)?.close()
    }

    func close() {
        for w in watches.values { w.close() }
        watches = [:]
        onChange = nil
    }
}
