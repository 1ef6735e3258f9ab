import Dispatch
import Gossip
import Logging
import Store
import Synchronization

/// A `GarbageReport` as JSON: the `gc` control verb, `meshnode gc --json`, and `status`.
public struct GCReportJSON: Codable, Sendable, Equatable {
    public var dryRun: Bool
    public var contentsReleased: Int
    public var recipesDeleted: Int
    public var chunksDeleted: Int
    public var bytesReclaimed: UInt64
    public var recipesPinned: Int
    public var replans: Int
    public var stopped: Bool
    public var durationMs: Int
    /// Staging files of abandoned fetches removed (FolderStaging.swift).
    public var stagingFilesRemoved: Int

    public init(_ r: GarbageReport) {
        dryRun = r.dryRun
        contentsReleased = r.contentsReleased
        recipesDeleted = r.recipesDeleted
        chunksDeleted = r.chunksDeleted
        bytesReclaimed = r.bytesReclaimed
        recipesPinned = r.recipesPinned
        replans = r.replans
        stopped = r.stopped
        durationMs = r.durationMs
        stagingFilesRemoved = r.stagingFilesRemoved
    }

    enum CodingKeys: String, CodingKey {
        case replans, stopped
        case dryRun = "dry_run", contentsReleased = "contents_released", recipesDeleted = "recipes_deleted"
        case chunksDeleted = "chunks_deleted", bytesReclaimed = "bytes_reclaimed", recipesPinned = "recipes_pinned"
        case durationMs = "duration_ms", stagingFilesRemoved = "staging_files_removed"
    }
}

/// What `status` shows about a running node's garbage collection (`node.gc`).
public struct NodeGCStatus: Codable, Sendable, Equatable {
    /// Collections run since start (dry runs not counted), and those that failed.
    public var runs: UInt64
    public var failures: UInt64
    public var running: Bool
    /// Bytes (and chunks) of recorded chunks that no kept or pinned content references, as
    /// computed after the last collection or change of what the node keeps; nil before the first.
    public var reclaimableBytes: UInt64?
    public var reclaimableChunks: Int?
    public var lastRunMsAgo: Int64?
    public var nextRunInMs: Int64?
    /// The last collection's report.
    public var last: GCReportJSON?
    /// Totals over every collection since start.
    public var chunksDeleted: UInt64
    public var bytesReclaimed: UInt64

    enum CodingKeys: String, CodingKey {
        case runs, failures, running, last
        case reclaimableBytes = "reclaimable_bytes", reclaimableChunks = "reclaimable_chunks"
        case lastRunMsAgo = "last_run_ms_ago", nextRunInMs = "next_run_in_ms"
        case chunksDeleted = "chunks_deleted", bytesReclaimed = "bytes_reclaimed"
    }
}

/// The node's garbage collection (docs/SYNC.md, "Space reclaimed"; the order that makes it safe
/// against `kill -9` is on `Store.collectGarbage`). What is kept is the keeper's decision: the
/// newest `keep_versions` live versions of each name (the keeper's set, and the same policy
/// applied to the store's catalog, which may hold entries a concurrent `meshnode put` just
/// added), plus the downloads in progress.
///
/// Runs by itself: `debounce` after the keeper releases contents (never sooner than
/// `minInterval` after the previous run), `firstRunAfter` start, and at least every
/// `maxInterval`; and when asked (the `gc` control verb). The work runs on a thread of its own
/// with its own store handle, in bounded transactions, so the loop keeps serving; a shutdown
/// stops it between two transactions.
final class NodeCollector: @unchecked Sendable {
    // @unchecked: every field but `store`, `stop` and `queue` is touched on the loop thread
    // only; `store` only on `queue`; `stop` is atomic.
    static let debounce: Duration = .seconds(2)
    static let minInterval: Duration = .seconds(30)
    static let maxInterval: Duration = .seconds(600)
    static let firstRunAfter: Duration = .seconds(30)

    final class StopFlag: Sendable {
        let value = Atomic<Bool>(false)
    }

    typealias Reply = (Result<GarbageReport, MeshError>) -> Void

    unowned let node: MeshNode
    private let store: Store
    private let queue = DispatchQueue(label: "meshnode.gc", qos: .utility)
    private let stop = StopFlag()
    private var timer: LoopTimer?
    private var refreshTimer: LoopTimer?
    private var nextRunAt: Instant
    private var lastRunAt: Instant?
    private var running = false
    private var releasedWhileRunning = false
    /// Asked-for collections waiting for the running one (each runs after it).
    private var queued: [(dryRun: Bool, reply: Reply)] = []
    private var closed = false
    /// Who asked for the collection running now, if anyone.
    private var runningReply: Reply?
    private(set) var runs: UInt64 = 0
    private(set) var failures: UInt64 = 0
    private var chunksDeleted: UInt64 = 0
    private var bytesReclaimed: UInt64 = 0
    private var lastReport: GarbageReport?
    private var reclaimable: Reclaimable?

    init(node: MeshNode) throws(MeshError) {
        self.node = node
        store = try Store.open(dataDir: node.store.dataDir)
        nextRunAt = MeshNode.now() + Self.firstRunAfter
        timer = try LoopTimer(loop: node.loop) { [unowned self] in self.timerFired() }
        refreshTimer = try LoopTimer(loop: node.loop) { [unowned self] in self.refreshReclaimable() }
        arm()
        refreshTimer?.start(after: .seconds(1))
    }

    /// Stops the collection in progress after its current transaction and waits for it.
    func close() {
        guard !closed else { return }
        closed = true
        stop.value.store(true, ordering: .relaxed)
        timer?.close()
        timer = nil
        refreshTimer?.close()
        refreshTimer = nil
        queue.sync {}
        runningReply?(.failure(MeshError(.closed, "the node is shutting down")))
        runningReply = nil
        for q in queued { q.reply(.failure(MeshError(.closed, "the node is shutting down"))) }
        queued = []
    }

    /// The keeper released contents: collect soon (debounced, and not sooner than
    /// `minInterval` after the last run), and refresh the reclaimable bytes.
    func released() {
        guard !closed else { return }
        if running { releasedWhileRunning = true }
        let now = MeshNode.now()
        var soonest = now + Self.debounce
        if let last = lastRunAt, last + Self.minInterval > soonest { soonest = last + Self.minInterval }
        if soonest < nextRunAt {
            nextRunAt = soonest
            arm()
        }
        refreshTimer?.start(after: Self.debounce)
    }

    /// A collection asked for (the `gc` control verb): runs now, or after the one running.
    func request(dryRun: Bool, reply: @escaping Reply) {
        guard !closed else { return reply(.failure(MeshError(.closed, "the node is shutting down"))) }
        if running {
            queued.append((dryRun, reply))
        } else {
            run(dryRun: dryRun, reply: reply)
        }
    }

    func status() -> NodeGCStatus {
        let now = MeshNode.now()
        return NodeGCStatus(runs: runs, failures: failures, running: running, reclaimableBytes: reclaimable?.bytes,
                            reclaimableChunks: reclaimable?.chunks, lastRunMsAgo: lastRunAt.map { (now - $0) / 1_000_000 },
                            nextRunInMs: running ? nil : max(0, (nextRunAt - now) / 1_000_000),
                            last: lastReport.map(GCReportJSON.init), chunksDeleted: chunksDeleted, bytesReclaimed: bytesReclaimed)
    }

    private func arm() {
        timer?.start(after: .nanoseconds(max(0, nextRunAt - MeshNode.now())))
    }

    private func timerFired() {
        guard !closed, !running else { return }
        run(dryRun: false, reply: nil)
    }

    /// What the keeper keeps now, the policy, and the pins, for a run on the worker.
    private func inputs(dryRun: Bool) -> GarbageCollectionOptions {
        let stop = self.stop
        var o = GarbageCollectionOptions(policy: node.keeper.policy, alsoKeep: node.keeper.keptContents,
                                         pins: node.blobs?.downloadPins, dryRun: dryRun,
                                         shouldStop: { stop.value.load(ordering: .relaxed) })
        o.release = node.evictionReleaseSet  // placement's drops and evictions (MeshNode+Eviction.swift)
        return o
    }

    private func run(dryRun: Bool, reply: Reply?) {
        running = true
        releasedWhileRunning = false
        runningReply = reply
        let options = inputs(dryRun: dryRun)
        queue.async { [weak self] in
            guard let self else { return }
            let result = Result { () throws(MeshError) in try self.store.collectGarbage(options) }
            let after = try? self.store.reclaimable(policy: options.policy, alsoKeep: options.alsoKeep,
                                                    pinned: options.pins?.contents ?? [])
            self.node.loop.post { [weak self] in self?.finished(result, reclaimable: after, dryRun: dryRun) }
        }
    }

    private func finished(_ result: Result<GarbageReport, MeshError>, reclaimable after: Reclaimable?, dryRun: Bool) {
        let reply = runningReply
        runningReply = nil
        guard !closed else {
            reply?(.failure(MeshError(.closed, "the node is shutting down")))
            return
        }
        running = false
        if let after { reclaimable = after }
        switch result {
        case .success(let r):
            if !dryRun {
                runs += 1
                lastRunAt = MeshNode.now()
                lastReport = r
                chunksDeleted += UInt64(r.chunksDeleted)
                bytesReclaimed += r.bytesReclaimed
                node.blobs?.forgetCollected(r.deletedContents)
                node.evictionCollected(r.deletedContents)
                node.holdingsMayHaveChanged(r.deletedContents + r.stagedContentsDropped)
                let meta: Logger.Metadata = [
                    "contents": "\(r.contentsReleased)", "recipes": "\(r.recipesDeleted)", "chunks": "\(r.chunksDeleted)",
                    "bytes": "\(r.bytesReclaimed)", "ms": "\(r.durationMs)"]
                if r.recipesDeleted + r.chunksDeleted > 0 {
                    node.logger.info("garbage collected", metadata: meta)
                } else {
                    node.logger.debug("garbage collection found nothing to delete", metadata: meta)
                }
            }
        case .failure(let e):
            if !dryRun {
                failures += 1
                lastRunAt = MeshNode.now()
            }
            node.logger.error("garbage collection failed: \(e)")
        }
        reply?(result)
        if !dryRun {
            let now = MeshNode.now()
            nextRunAt = now + (releasedWhileRunning || (try? result.get())?.stopped == true ? Self.minInterval : Self.maxInterval)
            arm()
        }
        if !queued.isEmpty {
            let next = queued.removeFirst()
            run(dryRun: next.dryRun, reply: next.reply)
        }
    }

    /// Recomputes the reclaimable bytes on the worker (after the keeper released contents).
    private func refreshReclaimable() {
        guard !closed, !running else { return }
        let o = inputs(dryRun: true)
        queue.async { [weak self] in
            guard let self else { return }
            let r = try? self.store.reclaimable(policy: o.policy, alsoKeep: o.alsoKeep, pinned: o.pins?.contents ?? [])
            self.node.loop.post { [weak self] in
                guard let self, !self.closed, let r else { return }
                self.reclaimable = r
            }
        }
    }
}

extension MeshNode {
    /// Applies what an entry or a re-evaluation changed about what this node keeps: fetches
    /// what it now wants, stops fetching what it released, and has that collected.
    func applyKeeperChange(_ change: Keeper.Change) {
        let facts = placementActive && !change.wanted.isEmpty ? placementFacts() : nil
        for w in change.wanted where w.origin != identity.nodeID
            && placementDecision(w.contentID, types: [w.type], facts: facts, sizeBytes: w.sizeBytes) == .fetch {
            blobs?.want(w.contentID, holders: [w.origin], reason: .replication, entry: w)
        }
        guard !change.released.isEmpty else { return }
        for c in change.released { blobs?.unwant(c) }
        spotReleased(change.released)
        collector?.released()
    }

    /// The `gc` control verb: collects now (or reports what would go, with `dry_run`).
    func controlGC(_ req: ControlRequest, respond: @escaping (ControlResponse) -> Void) {
        let dryRun = req.args["dry_run"]?.boolValue ?? false
        guard let collector else { return respond(.failure(MeshError(.closed, "the node is shutting down"))) }
        collector.request(dryRun: dryRun) { result in
            switch result {
            case .success(let r):
                do { respond(.success(try JSONValue(encoding: GCReportJSON(r)))) } catch {
                    respond(.failure(MeshError(.init("internal"), "\(error)")))
                }
            case .failure(let e):
                respond(.failure(e))
            }
        }
    }
}
