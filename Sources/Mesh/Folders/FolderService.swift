// Watched folders in a running node (docs/SYNC.md "Folders", README "Watched folders").
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Logging
import Store
import Sync

/// Every watched folder of one node. Loop-confined, owned by `MeshNode` (`node.folders`).
public final class FolderService: @unchecked Sendable {
    // @unchecked: loop-confined, like the node that owns it.
    public struct Limits: Sendable {
        /// Directories watched per folder (one inotify watch each); the rest are rescanned only.
        public var maxWatchesPerFolder = 8192
        /// Files per folder; a scan stops there (and then infers no deletion).
        public var maxFilesPerFolder = 500_000
        /// Paths decided per planning round (the rest in the next round, on the next loop turn).
        public var planBatch = 2000
        /// Paths stat'ed per check job.
        public var checkBatch = 4096
        /// Events are aggregated per path for this long before the paths are looked at.
        public var eventDebounce: Duration = .milliseconds(20)
        /// More paths waiting to be looked at than this: one full scan instead.
        public var maxPendingChecks = 100_000
        public init() {}
    }

    unowned let node: MeshNode
    let limits: Limits
    private(set) var folders: [FolderRuntime] = []
    private var fetchWaiting: Set<ContentID> = []
    private var planTimer: LoopTimer?
    private var closed = false

    /// Opens each folder's state. Throws for a folder that cannot work here (inside the data
    /// dir, or its state cannot be read).
    init(node: MeshNode, configs: [FolderConfig], limits: Limits = Limits()) throws(MeshError) {
        self.node = node
        self.limits = limits
        planTimer = try LoopTimer(loop: node.loop)
        planTimer?.onFire = { [unowned self] in for f in self.folders { f.plan() } }
        let data = Self.realPath(node.store.dataDir)
        do throws(MeshError) {
            for c in configs {
                let root = Self.realPath(c.path)
                if root == data || root.hasPrefix(data + "/") {
                    throw MeshError(.configInvalid, "folder \(c.path) is inside the node's data dir \(node.store.dataDir)",
                                    hint: "watch a directory outside the data dir")
                }
                // The data dir inside a folder is never synced.
                var excluded: [String] = []
                if data.hasPrefix(root + "/") { excluded.append(String(data.dropFirst(root.count + 1))) }
                let (id, isNew) = try node.store.folderState(path: root, prefix: c.prefix)
                let records = try node.store.folderRecords(folder: id)
                let rt = try FolderRuntime(service: self, config: c, root: root, spec: c.spec(excludedSubtrees: excluded),
                                           folderID: id, isNew: isNew, records: records, limits: limits)
                folders.append(rt)
                node.logger.info("watching folder", metadata: ["path": "\(root)", "mode": "\(c.mode.rawValue)", "prefix": "\(c.prefix)",
                                                               "files_recorded": "\(records.count)"])
            }
        } catch {
            close()
            throw error
        }
    }

    /// Starts every folder's first scan (and its watcher and rescans).
    func start() {
        for f in folders { f.start() }
    }

    static func realPath(_ p: String) -> String {
        guard let r = realpath(p, nil) else { return p }
        defer { free(r) }
        return String(cString: r)
    }

    // MARK: - Inputs from the node

    /// An entry about `name` was stored (or announced): folders whose prefix covers it look again.
    func nameChanged(_ name: String) {
        guard !closed else { return }
        for f in folders { f.planner.namesChanged([name]) }
        schedulePlan()
    }

    /// Plans every folder on the next loop turn (coalescing many changes into one round).
    func schedulePlan() {
        guard !closed, let t = planTimer, !t.isActive else { return }
        t.start(after: .zero)
    }

    /// Wants `entry`'s content and tells the folders when it is complete; its chunks are
    /// written straight into `destination`'s staging file (FolderStaging.swift).
    func fetch(_ entry: ManifestEntry, destination: (root: String, relativePath: String)? = nil) {
        guard !closed, let blobs = node.blobs else { return }
        let id = entry.contentID
        blobs.want(id, holders: [entry.origin], reason: .request, entry: entry, destination: destination)
        guard fetchWaiting.insert(id).inserted else { return }
        blobs.whenComplete(id) { [weak self] error in
            guard let self, !self.closed else { return }
            self.fetchWaiting.remove(id)
            if error == nil {
                for f in self.folders { f.planner.fetched(id) }
                self.schedulePlan()
            }
        }
    }

    /// Every send folder's final snapshot (`FolderRuntime.finalSnapshot`), then `done`.
    func finalSnapshot(timeout: Duration, done: @escaping () -> Void) {
        guard !closed, !folders.isEmpty else { return done() }
        var left = folders.count
        for f in folders {
            f.finalSnapshot(timeout: timeout) {
                left -= 1
                if left == 0 { done() }
            }
        }
    }

    // MARK: - Status

    public func rows() -> [FolderRow] { folders.map { $0.row() } }

    func close() {
        guard !closed else { return }
        closed = true
        for f in folders { f.close() }
        planTimer?.close()
        planTimer = nil
    }
}
