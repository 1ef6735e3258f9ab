// One watched folder in a running node: its planner, watcher, scans and actions.
import Dispatch
import Foundation
import Logging
import Store
import Sync

/// Ties one folder's pure `FolderPlanner` to the world: watcher events and rescans become
/// `observe` calls, directives become worker jobs (or fetches), outcomes go back to the
/// planner. Loop-confined; scans run on `scanQueue`, actions on the `FolderWorker`.
final class FolderRuntime: @unchecked Sendable {
    // @unchecked: loop-confined; worker and scan completions come back through `loop.post`.
    unowned let service: FolderService
    let config: FolderConfig
    let root: String
    let filter: FolderFilter
    var planner: FolderPlanner
    let worker: FolderWorker
    let watcher: FolderWatcher
    private let scanQueue: DispatchQueue
    private let limits: FolderService.Limits
    private var wakeTimer: LoopTimer?
    private var rescanTimer: LoopTimer?
    private var checkTimer: LoopTimer?
    private var pendingChecks: Set<String> = []
    private var checkRunning = false
    private var fullScanRunning = false
    private var fullScanWanted = false
    /// Complete scans planned so far (the final snapshot waits for one that started after it).
    private var fullScansDone = 0
    /// The folder was never scanned: its first scan creates the marker file.
    private var createMarker: Bool
    private(set) var blocked: String?
    private(set) var lastScanMs: Int64?
    private var problems = ProblemLog()
    private(set) var reverted: UInt64 = 0
    private(set) var lastRevert: String?
    private(set) var counts = (puts: UInt64(0), tombstones: UInt64(0), materialised: UInt64(0), removed: UInt64(0))
    private var loop: EventLoop { service.node.loop }
    private var logger: Logger { service.node.logger }

    init(service: FolderService, config: FolderConfig, root: String, spec: FolderSpec, folderID: Int64, isNew: Bool,
         records: [String: FolderRecord], limits: FolderService.Limits) throws(MeshError) {
        self.service = service
        self.config = config
        self.root = root
        self.limits = limits
        filter = FolderFilter(spec)
        planner = FolderPlanner(spec: spec, records: records, isNew: isNew)
        createMarker = isNew
        let node = service.node
        worker = try FolderWorker(loop: node.loop, dataDir: node.store.dataDir, root: root, folderID: folderID,
                                  signer: node.identity, policy: node.keeper.policy, label: "meshnode.folder.\(folderID)")
        watcher = FolderWatcher(loop: node.loop, root: root, maxWatches: limits.maxWatchesPerFolder)
        scanQueue = DispatchQueue(label: "meshnode.folder-scan.\(folderID)", qos: .utility)
        wakeTimer = try LoopTimer(loop: node.loop)
        rescanTimer = try LoopTimer(loop: node.loop)
        checkTimer = try LoopTimer(loop: node.loop)
    }

    func start() {
        wakeTimer?.onFire = { [unowned self] in self.plan() }
        checkTimer?.onFire = { [unowned self] in self.runChecks() }
        rescanTimer?.onFire = { [unowned self] in self.fullScan() }
        rescanTimer?.start(after: config.rescanInterval, repeating: config.rescanInterval)
        watcher.onChange = { [unowned self] path in self.changed(path) }
        fullScan()
    }

    func close() {
        worker.close()
        watcher.close()
        for t in [wakeTimer, rescanTimer, checkTimer] { t?.close() }
        wakeTimer = nil
        rescanTimer = nil
        checkTimer = nil
    }

    // MARK: - Scans

    /// Something happened to `path`: look at it shortly (events are aggregated per path).
    private func changed(_ path: String) {
        if pendingChecks.count >= limits.maxPendingChecks {
            // An event storm: one full scan is cheaper than this many checks.
            pendingChecks = []
            fullScan()
            return
        }
        pendingChecks.insert(path)
        if checkTimer?.isActive == false { checkTimer?.start(after: limits.eventDebounce) }
    }

    func fullScan() {
        guard !fullScanRunning else {
            fullScanWanted = true
            return
        }
        fullScanRunning = true
        fullScanWanted = false
        let (root, filter, known, marker) = (root, filter, planner.recordedStats, createMarker)
        let scanLimits = FolderScanner.Limits(maxFiles: limits.maxFilesPerFolder)
        scanQueue.async { [self] in
            let out = FolderScanner.full(root: root, filter: filter, known: known, createMarker: marker, limits: scanLimits)
            _ = loop.post { [self] in
                guard !worker.closed.load(ordering: .relaxed) else { return }
                fullScanRunning = false
                scanned(out, full: true)
                fullScansDone += 1
                if fullScanWanted { fullScan() }
            }
        }
    }

    private func runChecks() {
        guard !checkRunning, !pendingChecks.isEmpty else { return }
        checkRunning = true
        var batch: [String] = []
        while batch.count < limits.checkBatch, let p = pendingChecks.popFirst() { batch.append(p) }
        var known: [String: FileStat] = [:]
        for p in batch { if let r = planner.records[p] { known[p] = r.stat } }
        let (root, filter, paths, stats) = (root, filter, batch, known)
        let scanLimits = FolderScanner.Limits(maxFiles: limits.maxFilesPerFolder)
        scanQueue.async { [self] in
            let out = FolderScanner.check(root: root, paths: paths, filter: filter, known: stats, limits: scanLimits)
            _ = loop.post { [self] in
                guard !worker.closed.load(ordering: .relaxed) else { return }
                checkRunning = false
                scanned(out, full: false)
                if !pendingChecks.isEmpty { runChecks() }
            }
        }
    }

    private func scanned(_ out: FolderScanner.Output, full: Bool) {
        let now = WallClock.nowMs()
        if let b = out.blocked {
            if blocked != b {
                logger.error("watched folder not synced", metadata: ["folder": "\(root)", "why": "\(b)"])
                problems.add(b, atMs: now)
            }
            blocked = b
            return
        }
        if blocked != nil { logger.notice("watched folder is back", metadata: ["folder": "\(root)"]) }
        blocked = nil
        createMarker = false
        for p in out.problems { note(p, path: nil) }
        let firstScan = full && !planner.ready && out.scan.subtrees.contains("")
        planner.observe(out.scan, nowMs: now)
        let before = Set(out.directories.filter { watcher.isWatched($0) })
        if full {
            lastScanMs = now
            watcher.sync(Set(out.directories))
        } else {
            watcher.add(out.directories)
            for p in out.scan.absent { watcher.removeTree(p) }
        }
        // Directories watched only now may have changed between their scan and their watch:
        // look at them once more (after a complete scan, by repeating it once).
        let fresh = out.directories.filter { watcher.isWatched($0) && !before.contains($0) }
        if full {
            if !fresh.isEmpty { fullScanWanted = true }
        } else {
            for d in fresh { changed(d) }
        }
        if firstScan {
            // The records the first scan makes (files left in place in a new receive folder) go
            // first; only then is the folder no longer new.
            plan()
            worker.markScanned { [self] e in note("could not record the first scan: \(e.message)", path: nil) }
            return
        }
        plan()
    }

    // MARK: - The final snapshot

    /// A stopping node's last look (SIGTERM): every local change is put at once (no settle
    /// time, no snapshot interval; `FolderPlanner.urgent`), after a full scan; `done` is called
    /// once that scan was planned and nothing is in flight, or after `timeout`. A folder that
    /// only receives has nothing to put and is done at once.
    func finalSnapshot(timeout: Duration, done: @escaping () -> Void) {
        guard config.mode != .receive, wakeTimer != nil, let t = try? LoopTimer(loop: loop) else { return done() }
        planner.urgent()
        let scansBefore = fullScansDone
        fullScan()
        let giveUpAt = MeshNode.now().advanced(byNanoseconds: MeshNode.nanos(timeout))
        t.onFire = { [unowned self, t] in
            let quiet = fullScansDone > scansBefore && !fullScanRunning && !checkRunning && pendingChecks.isEmpty
                && planner.isQuiet
            if quiet || MeshNode.now() >= giveUpAt || wakeTimer == nil {
                t.close()
                done()
            } else {
                t.start(after: .milliseconds(20))
            }
        }
        t.start(after: .milliseconds(20))
    }

    // MARK: - Planning and actions

    func plan() {
        guard wakeTimer != nil else { return }
        let store = service.node.store
        let directives = planner.plan(catalog: service.node.keeper.catalog, nowMs: WallClock.nowMs(), limit: limits.planBatch) {
            (try? store.isComplete($0)) == true
        }
        for d in directives { execute(d) }
    }

    private func execute(_ d: FolderDirective) {
        switch d {
        case .check(let paths):
            pendingChecks.formUnion(paths)
            runChecks()
        case .put(let p, let name, let type, let expect):
            worker.run({ $0.put(p, name: name, type: type, expect: expect) }) { [self] r in finished(p, r, .put) }
        case .snapshot(let p, let name, let type, let expect, let settled):
            worker.run({ $0.snapshot(p, name: name, type: type, expect: expect, settled: settled) }) { [self] r in finished(p, r, .put) }
        case .tombstone(let p, let name, let content):
            worker.run({ $0.tombstone(p, name: name, content: content) }) { [self] r in finished(p, r, .tombstone) }
        case .materialise(let p, let entry, let replacing, let reason):
            worker.run({ $0.materialise(p, entry: entry, replacing: replacing, reason: reason) }) { [self] r in finished(p, r, .write(reason)) }
        case .remove(let p, let expect, let reason):
            worker.run({ $0.remove(p, expect: expect) }) { [self] r in finished(p, r, .remove(reason)) }
        case .fetch(let p, let entry):
            service.fetch(entry, destination: (root, p))
        case .record(let p, let r):
            worker.persist(p, r) { [self] e in note("could not record \(p): \(e.message)", path: p) }
        case .forget(let p):
            worker.persist(p, nil) { [self] e in note("could not forget \(p): \(e.message)", path: p) }
        case .report(let p, let problem):
            note(problem.message, path: p)
        case .wakeAt(let ms):
            wakeTimer?.start(after: .milliseconds(max(0, ms - WallClock.nowMs())))
        }
    }

    enum Action { case put, tombstone, write(FolderChange), remove(FolderChange) }

    private func finished(_ p: String, _ r: FolderWorker.Result, _ action: Action) {
        if let e = r.announce { service.node.announce(e) }
        if let e = r.error {
            if case .deferred = r.outcome { note(e.message, path: p) } else { note("\(p): \(e.description)", path: p) }
        }
        switch (action, r.outcome) {
        case (.put, .recorded):
            if r.announce != nil {
                counts.puts += 1
                logger.debug("folder put", metadata: ["folder": "\(root)", "path": "\(p)"])
            }
        case (.tombstone, .forgotten):
            if r.announce != nil { counts.tombstones += 1 }
        case (.write(let why), .recorded):
            if !r.adopted { counts.materialised += 1 }
            if why.isRevert && !r.adopted { revert(p, why) }
        case (.remove(let why), .forgotten):
            counts.removed += 1
            if why.isRevert { revert(p, why) }
        default:
            break
        }
        planner.completed(p, r.outcome, nowMs: WallClock.nowMs())
        service.schedulePlan()
    }

    private func revert(_ p: String, _ why: FolderChange) {
        reverted += 1
        let what: String
        switch why {
        case .revertChanged: what = "changed locally: replaced by the cluster's version"
        case .revertDeleted: what = "deleted locally: restored"
        default: what = "not written by this folder: replaced or removed"
        }
        lastRevert = "\(p) (\(what))"
        logger.warning("local edit in a receive folder reverted", metadata: ["folder": "\(root)", "path": "\(p)", "what": "\(what)"])
    }

    private func note(_ text: String, path: String?) {
        logger.warning("watched folder", metadata: ["folder": "\(root)", "problem": "\(text)"])
        problems.add(text, atMs: WallClock.nowMs())
    }

    // MARK: - Status

    func row() -> FolderRow {
        let pending = planner.pending
        let files = planner.files
        return FolderRow(path: root, mode: config.mode.rawValue, prefix: config.prefix, type: config.type?.description,
                         files: files.count, bytes: files.bytes, settling: pending.settling, queuedPuts: pending.puts,
                         fetchesWaiting: pending.fetches, materialising: pending.materialisations, removing: pending.removals,
                         lastScanMs: lastScanMs, watchedDirectories: watcher.watchCount, watchFallback: watcher.fallback,
                         blocked: blocked, localEditsReverted: reverted, lastRevert: lastRevert, puts: counts.puts,
                         tombstones: counts.tombstones, materialised: counts.materialised, removed: counts.removed,
                         errors: problems.rendered)
    }
}
