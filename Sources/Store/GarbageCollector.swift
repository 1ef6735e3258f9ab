import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What one garbage collection did (or, in a dry run, would do).
public struct GarbageReport: Sendable, Equatable {
    public var dryRun = false
    /// Contents some version names but no kept version references, whose recipes went.
    public var contentsReleased = 0
    /// Recipes deleted: the released contents' and those no entry names at all (a fetch that
    /// was cancelled, a snapshot whose version was never recorded).
    public var recipesDeleted = 0
    public var chunksDeleted = 0
    /// The bytes of the chunks deleted.
    public var bytesReclaimed: UInt64 = 0
    /// Recipes no kept version references that stayed: a fetch on request, a live-SQLite
    /// snapshotter's base.
    public var recipesPinned = 0
    /// Times the plan was made again because entries arrived while it was carried out.
    public var replans = 0
    /// Stopped before the end (the node is shutting down); the next run finishes the job.
    public var stopped = false
    public var durationMs = 0
    /// Chunks that lost their record because the folder file that backed them went or was
    /// replaced (ChunkBackings.swift; fetched again if still needed).
    public var backedChunksLost = 0
    /// Staging files of fetches no one will finish that were removed (FolderStaging.swift),
    /// and the contents whose chunks they backed (their holdings may have changed).
    public var stagingFilesRemoved = 0
    public var stagedContentsDropped: [ContentID] = []
    /// The contents whose recipes were deleted (or would be), sorted.
    public var deletedContents: [ContentID] = []

    public init() {}
}

/// What a garbage collection keeps, and how it runs.
public struct GarbageCollectionOptions: Sendable {
    /// The keep policy (`keep_versions`): the newest live versions of each name are kept.
    public var policy: KeepPolicy
    /// Contents kept besides those the policy keeps (a running node's keeper).
    public var alsoKeep: Set<ContentID>
    /// Contents let go of although kept (placement's drops and evictions, docs/SYNC.md
    /// "Dropping"): their recipes go unless pinned.
    public var release: Set<ContentID> = []
    /// Contents whose recipes stay although nothing keeps them (downloads in progress), read
    /// anew inside every transaction that deletes recipes.
    public var pins: ContentPins?
    public var dryRun: Bool
    /// Chunk files deleted per transaction at most (so that writers wait briefly).
    public var batchFiles: Int
    /// The moment retention expiries are judged at (default: now).
    public var nowMs: Int64?
    /// Checked between transactions: true stops early (what was done stays done).
    public var shouldStop: @Sendable () -> Bool
    /// Who journals the deletions (`chunk_writes.writer` is `gc ` + this stamp); tests pass a
    /// stamp of a dead process to simulate a kill.
    var stamp: WriterStamp = .current

    public init(policy: KeepPolicy = KeepPolicy(), alsoKeep: Set<ContentID> = [], pins: ContentPins? = nil,
                dryRun: Bool = false, batchFiles: Int = Store.gcBatchFiles, nowMs: Int64? = nil,
                shouldStop: @escaping @Sendable () -> Bool = { false }) {
        self.policy = policy
        self.alsoKeep = alsoKeep
        self.pins = pins
        self.dryRun = dryRun
        self.batchFiles = max(1, batchFiles)
        self.nowMs = nowMs
        self.shouldStop = shouldStop
    }
}

/// The moments of a collection that tests can stop at (`StoreTestHooks.gcStep`); throwing
/// there aborts the transaction that is open, as a kill at that moment would.
enum GarbageStep: Sendable, Equatable {
    /// The plan is made (kept set, candidate recipes); nothing deleted yet.
    case planned
    /// Inside a recipe transaction, after its deletes, before its commit.
    case deletingRecipes
    /// Inside an unrecording transaction, after its deletes, before its commit.
    case unrecording
    /// Between the unrecording and the unlinking transactions of a batch.
    case unrecorded
    /// Inside an unlinking transaction, after the unlinks, before its commit.
    case unlinking
}

/// # Garbage collection (docs/SYNC.md, "Space reclaimed")
///
/// A node keeps the content of the versions its keep policy keeps; everything else in the
/// store is garbage: recipes of contents no kept version references (a content named by
/// several versions or names is kept if any kept version references it), and then the chunks
/// no remaining recipe references. Recipes stay while they are *pinned*: a download in
/// progress (`GarbageCollectionOptions.pins`), and the last snapshot of every live SQLite
/// database (its `node_state` row, written with the snapshot's recipe: the snapshotter's base,
/// and the content of a snapshot whose version is not recorded yet).
///
/// ## The order, and why `kill -9` at any moment loses no needed chunk
///
/// The store's invariant (`ChunkJournal.swift`) is that a recorded chunk's file is there with
/// the right bytes; every reader and every writer's dedup trusts it. GC keeps it at every
/// instant, so there is nothing to repair after a crash but unrecorded files:
///
/// 1. **Recipes**, in transactions of at most `gcRecipeRowsPerTransaction` chunk-list rows.
///    Each first checks that no entry arrived since the plan (`items` only grows, so its
///    count tells; if one did, the kept set is computed again), reads the pins, and deletes
///    the rows of the candidates that are not pinned. No file is touched: a crash leaves
///    recipes deleted or not, and chunks recorded either way.
/// 2. **Chunks**, in batches of at most `batchFiles`, each in two transactions:
///    - *unrecord*: deletes the `chunks` row of every candidate that no recipe references
///      (checked in the statement, so a recipe committed meanwhile keeps its chunks) and
///      journals it in `chunk_writes` as `gc <stamp>`. From the commit on, no reader counts
///      the chunk and no writer dedups against it; its file is an unrecorded file, which
///      nothing trusts.
///    - *unlink*: holding the write lock, deletes the file of each such chunk that is still
///      unrecorded and that no live writer has journalled, then ends the journal rows.
///      A writer journals a chunk (a write transaction, so it waits for this one) before it
///      names its file, and ends the journal row only in the transaction that records it:
///      so a file being written is never unlinked, and a file unlinked here was named by no
///      one who will record it. (Settling an unrecorded file, at open or in `verify`, records
///      it only after checking under the write lock that the file it hashed is still there.)
///
///    A crash before the unrecord commit changes nothing. After it, the chunks are
///    unrecorded and journalled by a dead `gc` writer; the next open (of any command) deletes
///    the files that are still unrecorded and not being written (`finishInterruptedCollections`).
///    `verify` also settles stray unrecorded files, and treats a recorded chunk that has no
///    file and that no recipe references (a store damaged some other way) as garbage, not damage.
///
/// ## Writers that dedup against a chunk GC then deletes
///
/// A `put` (another process), a live snapshot or a fetch may find a chunk recorded, skip
/// writing it, and later commit a recipe that references it, after GC has unrecorded it.
/// Each fixes that inside its own final transaction, which holds the write lock so no GC
/// transaction can interleave: it re-checks that every chunk it relied on without writing is
/// still recorded (`unrecordedAmong`), and if one is not, commits nothing, stores the chunk
/// again (ingest re-reads it from the file, the snapshotter retries its cycle and reads its
/// database; a fetch learns from the record that the chunk is missing and fetches it again)
/// and tries again. Chunks a writer wrote itself are journalled by it, so GC never unlinks them.
///
/// ## Bounds
///
/// Every transaction is bounded (`batchFiles` unlinks, `gcRecipeRowsPerTransaction` rows, except
/// that one recipe is always deleted whole); between transactions writers proceed, and
/// `shouldStop` is checked. Planning reads the catalog and the recipe list once per plan.
extension Store {
    /// `MESHNODE_GC_BATCH_FILES` (1...1000) overrides the batch size, for tests.
    public static let gcBatchFiles: Int = {
        if let t = getenv("MESHNODE_GC_BATCH_FILES").map({ String(cString: $0) }), let n = Int(t), (1...1000).contains(n) {
            return n
        }
        return 1000
    }()
    /// Chunk-list rows deleted per recipe transaction (a recipe bigger than that goes alone).
    static let gcRecipeRowsPerTransaction = 100_000
    /// Plans made again, at most, when entries keep arriving.
    static let gcMaxReplans = 8

    /// The `chunk_writes.writer` of a collection by the process `stamp` names.
    static func gcWriter(_ stamp: WriterStamp) -> String { "gc " + stamp.description }

    /// The stamp of a collection's journal row, nil for a row of an ordinary writer.
    static func gcStamp(ofWriter w: String) -> WriterStamp? {
        guard w.hasPrefix("gc ") else { return nil }
        // A row this version cannot read counts as a dead collection's (no boot id is "?").
        return WriterStamp(String(w.dropFirst(3))) ?? WriterStamp(bootID: "?", pid: 0, startTicks: 0)
    }

    /// Deletes what no kept version needs: the recipes of contents not kept (nor pinned), then
    /// the chunks no remaining recipe references. See the comment above for the order.
    public func collectGarbage(_ o: GarbageCollectionOptions) throws(MeshError) -> GarbageReport {
        let started = WallClock.monotonicSeconds()
        var report = GarbageReport()
        report.dryRun = o.dryRun
        let nowMs = o.nowMs ?? WallClock.nowMs()
        var deleted = Set<ContentID>()
        var pinned = Set<ContentID>()
        var current = Set<ContentID>()
        planning: while true {
            let entries = try entryCount()
            let catalog = try catalog()
            current = Set(catalog.currentVersions(nowMs: nowMs).values.map(\.entry.contentID))
            let kept = catalog.keptContents(policy: o.policy, nowMs: nowMs).union(o.alsoKeep).subtracting(o.release)
            let named = catalog.allContents
            let recipes = try recipeList()
            let candidates = recipes.filter { !kept.contains($0.id) }
            try testHooks.gcStep?(.planned)
            if o.dryRun {
                let pins = try pinnedContents(o.pins)
                let doomed = candidates.filter { !pins.contains($0.id) }
                report.recipesPinned = candidates.count - doomed.count
                report.recipesDeleted = doomed.count
                report.contentsReleased = doomed.filter { named.contains($0.id) }.count
                report.deletedContents = doomed.map(\.id).sorted()
                let doomedIDs = Set(doomed.map(\.id))
                let total = try chunksReferencedByNone(of: Set(recipes.map(\.id)).subtracting(doomedIDs))
                report.chunksDeleted = total.chunks
                report.bytesReclaimed = total.bytes
                report.durationMs = Int((WallClock.monotonicSeconds() - started) * 1000)
                return report
            }
            var batch = [ContentID]()
            var rows = 0
            var batches = [[ContentID]]()
            for c in candidates {
                if !batch.isEmpty && rows + c.chunkCount > Self.gcRecipeRowsPerTransaction {
                    batches.append(batch)
                    batch = []
                    rows = 0
                }
                batch.append(c.id)
                rows += c.chunkCount
            }
            if !batch.isEmpty { batches.append(batch) }
            pinned = []
            for b in batches {
                if o.shouldStop() {
                    report.stopped = true
                    break planning
                }
                let done = try db.transaction { () throws(MeshError) -> Set<ContentID>? in
                    guard try entryCount() == entries else { return nil }
                    let pins = try pinnedContents(o.pins)
                    var gone = Set<ContentID>()
                    for c in b {
                        if pins.contains(c) {
                            pinned.insert(c)
                            continue
                        }
                        try deleteRecipeRows(c)
                        gone.insert(c)
                    }
                    try testHooks.gcStep?(.deletingRecipes)
                    return gone
                }
                guard let done else {
                    report.replans += 1
                    guard report.replans <= Self.gcMaxReplans else {
                        throw MeshError(.databaseError, "entries kept arriving while gc was deleting recipes (\(report.replans) plans in a row)",
                                        hint: "run `meshnode gc` again when the store is quieter")
                    }
                    continue planning
                }
                deleted.formUnion(done)
                for c in done where named.contains(c) { report.contentsReleased += 1 }
            }
            break
        }
        report.recipesDeleted = deleted.count
        report.recipesPinned = pinned.count
        report.deletedContents = deleted.sorted()
        if !report.stopped {
            var after: ChunkHash? = nil
            while true {
                if o.shouldStop() {
                    report.stopped = true
                    break
                }
                let page = try unreferencedChunks(after: after, limit: o.batchFiles)
                guard let last = page.last else { break }
                after = last.hash
                let gone = try unrecordChunks(page, stamp: o.stamp)
                try testHooks.gcStep?(.unrecorded)
                try unlinkUnrecorded(gone.map(\.hash), writer: Self.gcWriter(o.stamp))
                report.chunksDeleted += gone.count
                report.bytesReclaimed += gone.reduce(0) { $0 + UInt64($1.sizeBytes) }
            }
            // Backings whose folder file went or was replaced go too (ChunkBackings.swift).
            if !report.stopped { report.backedChunksLost = try sweepStaleBackings().count }
            // Staging files of fetches superseded, deleted or expired before they were materialised.
            if !report.stopped && !o.shouldStop() {
                let s = try sweepAbandonedStaging(current: current, pins: o.pins)
                report.stagingFilesRemoved = s.paths.count
                report.stagedContentsDropped = s.contents.sorted()
            }
        }
        report.durationMs = Int((WallClock.monotonicSeconds() - started) * 1000)
        return report
    }

    /// Unrecords the chunks of `page` that no recipe references, journalling each as garbage of
    /// `stamp`'s collection, in one transaction. Returns those unrecorded.
    func unrecordChunks(_ page: [(hash: ChunkHash, sizeBytes: Int)], stamp: WriterStamp) throws(MeshError) -> [(hash: ChunkHash, sizeBytes: Int)] {
        let writer = SQLValue.text(Self.gcWriter(stamp))
        return try db.transaction { () throws(MeshError) -> [(hash: ChunkHash, sizeBytes: Int)] in
            var out = [(hash: ChunkHash, sizeBytes: Int)]()
            try sql { () throws(SQLiteError) in
                for c in page {
                    let h = SQLValue.blob(c.hash.digest.bytes)
                    try db.query("DELETE FROM chunks WHERE hash = ? AND NOT EXISTS (SELECT 1 FROM recipe_chunks WHERE hash = ?)", [h, h])
                    guard db.changes > 0 else { continue }
                    try db.query("DELETE FROM chunk_backings WHERE hash = ?", [h])
                    try db.query("INSERT OR IGNORE INTO chunk_writes(hash, writer) VALUES(?, ?)", [h, writer])
                    out.append(c)
                }
            }
            try testHooks.gcStep?(.unrecording)
            return out
        }
    }

    /// Holding the write lock: deletes the file of each of `hashes` that is still unrecorded and
    /// that no live writer has journalled, and ends the journal rows `writer` holds for them.
    func unlinkUnrecorded(_ hashes: [ChunkHash], writer: String) throws(MeshError) {
        guard !hashes.isEmpty else { return }
        try db.transaction { () throws(MeshError) in
            let busy = try chunksBeingWritten()
            for h in hashes {
                if !busy.contains(h), try !isChunkRecorded(h) { FS.unlink(chunkPath(h)) }
                try sql { () throws(SQLiteError) in
                    try db.query("DELETE FROM chunk_writes WHERE hash = ? AND writer = ?", [.blob(h.digest.bytes), .text(writer)])
                }
            }
            try testHooks.gcStep?(.unlinking)
        }
    }

    /// Finishes the chunk deletions of collections whose process is gone (run at every open,
    /// from `finishInterruptedChunkWrites`), in batches of `gcBatchFiles`.
    func finishInterruptedCollections(_ rows: [(hash: ChunkHash, writer: String)]) throws(MeshError) {
        var byWriter = [String: [ChunkHash]]()
        for r in rows { byWriter[r.writer, default: []].append(r.hash) }
        for (writer, hashes) in byWriter.sorted(by: { $0.key < $1.key }) {
            var i = 0
            while i < hashes.count {
                let end = min(hashes.count, i + Self.gcBatchFiles)
                try unlinkUnrecorded(Array(hashes[i..<end]), writer: writer)
                i = end
            }
        }
    }

    // MARK: - Reading what to delete

    /// Entries stored (puts, tombstones, unknown kinds): rows are only ever added.
    func entryCount() throws(MeshError) -> Int {
        try sql { () throws(SQLiteError) in Int(try db.scalarInt("SELECT count(*) FROM items") ?? 0) }
    }

    /// Every stored recipe, with its chunk count.
    func recipeList() throws(MeshError) -> [(id: ContentID, chunkCount: Int)] {
        var out = [(id: ContentID, chunkCount: Int)]()
        try db.forEach("SELECT content_id, chunk_count FROM recipes ORDER BY content_id") { (s) throws(MeshError) in
            if let d = Bytes32(bytes: s.blob(0)) { out.append((ContentID(digest: d), Int(s.int(1)))) }
        }
        return out
    }

    /// True when the store has a recipe row for `contentID` (one indexed lookup; the chunk list
    /// is not read).
    public func hasRecipe(_ contentID: ContentID) -> Bool {
        (try? sql { () throws(SQLiteError) in
            try db.scalarInt("SELECT 1 FROM recipes WHERE content_id = ?", [.blob(contentID.digest.bytes)]) != nil
        }) ?? false
    }

    func deleteRecipeRows(_ c: ContentID) throws(MeshError) {
        let id = SQLValue.blob(c.digest.bytes)
        try sql { () throws(SQLiteError) in
            try db.query("DELETE FROM recipe_chunks WHERE content_id = ?", [id])
            try db.query("DELETE FROM recipes WHERE content_id = ?", [id])
        }
    }

    /// Up to `limit` recorded chunks that no recipe references, in hash order after `after`.
    func unreferencedChunks(after: ChunkHash?, limit: Int) throws(MeshError) -> [(hash: ChunkHash, sizeBytes: Int)] {
        var out = [(hash: ChunkHash, sizeBytes: Int)]()
        try db.forEach("""
            SELECT c.hash, c.size_bytes FROM chunks c
            WHERE c.hash > ? AND NOT EXISTS (SELECT 1 FROM recipe_chunks rc WHERE rc.hash = c.hash)
            ORDER BY c.hash LIMIT ?
            """, [.blob(after?.digest.bytes ?? []), .int(Int64(limit))]) { (s) throws(MeshError) in
            if let d = Bytes32(bytes: s.blob(0)) { out.append((ChunkHash(digest: d), Int(s.int(1)))) }
        }
        return out
    }

    /// The contents whose recipes stay although nothing keeps them: `pins` and the last
    /// snapshot of every live SQLite database.
    func pinnedContents(_ pins: ContentPins?) throws(MeshError) -> Set<ContentID> {
        var out = pins?.contents ?? []
        out.formUnion(try liveSnapshotBases())
        return out
    }

    /// The content of the last snapshot of every database a live snapshotter has recorded.
    func liveSnapshotBases() throws(MeshError) -> Set<ContentID> {
        var out = Set<ContentID>()
        let prefix = LiveSnapshotState.key(path: "")
        let end = String(prefix.dropLast()) + String(UnicodeScalar(UInt8(ascii: ":") + 1))
        try db.forEach("SELECT value FROM node_state WHERE key >= ? AND key < ?", [.text(prefix), .text(end)]) { (s) throws(MeshError) in
            if let st = LiveSnapshotState(decoding: s.blob(0)) { out.insert(st.contentID) }
        }
        return out
    }
}

extension Store {
    /// True when some recipe lists `hash` (one indexed lookup).
    func isChunkReferenced(_ hash: ChunkHash) throws(MeshError) -> Bool {
        try sql { () throws(SQLiteError) in
            try db.scalarInt("SELECT 1 FROM recipe_chunks WHERE hash = ? LIMIT 1", [.blob(hash.digest.bytes)]) != nil
        }
    }
}
