import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Turns a live SQLite database into a sequence of consistent snapshot images in the chunk
/// store, at a cost that grows with the change (the design, its reasoning and its limits are in
/// the comment on `LiveSQLite`).
///
/// ```swift
/// let s = try LiveDatabaseSnapshotter(path: "/data/games.db", store: workerStore)
/// if let snap = try s.snapshot() { /* sign a manifest entry for snap.contentID */ }
/// ```
///
/// Each `snapshot()` stores the image's new chunks and its recipe (so the content is complete
/// and exportable), but creates **no manifest entry**: the caller signs one for the returned
/// content id. Blocking (it reads files and may wait for SQLite locks): call it from a worker
/// thread, never from the event loop. Give it a `Store` of its own (`Store.open(dataDir:)`), as a
/// `Store` is used from one thread at a time; calls to one snapshotter must not overlap (they
/// would be refused).
public final class LiveDatabaseSnapshotter: @unchecked Sendable {
    // @unchecked: every mutable field is touched only inside `snapshot()` and `close()`, and
    // `inUse` refuses a call that overlaps another.

    public struct Options: Sendable {
        /// When the frames of the current WAL generation exceed this, a cycle takes the write
        /// lock for a moment so that the WAL can be reset (`LiveSQLite`, "WAL growth"). Nil:
        /// never take the write lock (the WAL of a constantly written database then grows).
        public var walRestartThresholdBytes: UInt64?
        /// How long that write lock is waited for before the cycle goes on without it.
        public var writeLockWaitMs: Int32
        /// How long a read transaction waits for SQLite's locks (hot journal recovery, a
        /// rollback-journal writer).
        public var busyTimeoutMs: Int32
        /// Cycles tried when the WAL is reset under one, before `snapshot()` gives up.
        public var maxAttempts: Int
        /// The largest chunk of an image: images are cut at the smaller of this and the store's
        /// chunk size (`imageChunkSizeBytes`). A cycle re-sends every chunk that holds a changed
        /// page, and the pages a steady writer changes are spread over the file (page 1 and the
        /// b-tree roots, interior pages of each b-tree, the appended leaves at the end), so the
        /// bytes sent per cycle are about (chunks touched) x (chunk size): measured with 100 rows
        /// of 1 KB/s on a 1 GiB database, 6-9 chunks per 5 s cycle, 12-17.5 MiB with 2 MiB chunks
        /// (docs/PERFORMANCE.md, issue 10).
        public var maxImageChunkSizeBytes: UInt32

        public init(walRestartThresholdBytes: UInt64? = 16 << 20, writeLockWaitMs: Int32 = 1_000,
                    busyTimeoutMs: Int32 = 5_000, maxAttempts: Int = 4,
                    maxImageChunkSizeBytes: UInt32 = LiveSQLite.defaultMaxImageChunkSizeBytes) {
            self.walRestartThresholdBytes = walRestartThresholdBytes
            self.writeLockWaitMs = writeLockWaitMs
            self.busyTimeoutMs = busyTimeoutMs
            self.maxAttempts = maxAttempts
            self.maxImageChunkSizeBytes = maxImageChunkSizeBytes
        }
    }

    public enum JournalMode: String, Sendable { case wal, rollback }

    /// Why a snapshot read the whole database instead of only what changed.
    public enum FullReason: String, Sendable {
        case firstSnapshot = "first snapshot"
        /// Rollback-journal databases are always read whole (when they changed).
        case rollbackJournal = "rollback-journal database"
        case journalModeChanged = "journal mode changed"
        case fileReplaced = "database file replaced"
        case pageSizeChanged = "page size changed"
        case chunkSizeChanged = "image chunk size changed"
        case previousSnapshotMissing = "previous snapshot not complete in the store"
        case previousSnapshotDamaged = "previous snapshot damaged in the store"
        /// Same WAL salts, but the frame at our position is not the one we scanned.
        case walRewritten = "WAL rewritten at our position"
        /// The WAL changed while no reader of ours protected it (meshnode was not running).
        case walChangedWhileNotWatching = "WAL changed while not watching"
        case walResetDuringSnapshot = "WAL reset during the snapshot"
        case grownPagesNotInWAL = "new pages missing from the WAL"
    }

    /// What one `snapshot()` call did (also for calls that found nothing new).
    public struct Counters: Sendable, Equatable {
        /// Bytes read from the database, its WAL and the store (previous chunks).
        public var bytesRead: UInt64 = 0
        /// Bytes hashed with BLAKE2b (previous chunks verified, rebuilt chunks).
        public var bytesHashed: UInt64 = 0
        /// Chunks rebuilt.
        public var chunksTouched = 0
        /// Rebuilt chunks whose hash differs from the previous snapshot's at that place.
        public var chunksChanged = 0
        /// Bytes of chunks this store did not have: what a peer holding the previous snapshot fetches.
        public var newChunkBytes: UInt64 = 0
        public var full = false
        public var fullReason: FullReason?
        /// Pages taken from WAL frames (or re-read after a checkpoint).
        public var pagesChanged = 0
        /// The WAL header's checkpoint sequence number (incremented by every WAL reset); nil
        /// in rollback-journal mode or without a valid WAL.
        public var walGeneration: UInt32?
        public var walFramesScanned = 0
        /// Frames of the current WAL generation up to its last commit (what SQLite has not reset).
        public var walFrames: UInt32 = 0
        /// Size of the -wal file.
        public var walBytes: UInt64 = 0
        /// The cycle took the write lock to let the WAL be reset (`walRestartThresholdBytes`).
        public var walWriteLocked = false
        /// Frames in the WAL and frames in the database file after that cycle's checkpoint.
        public var checkpoint: CheckpointFrames?
        /// The checkpoint under the write lock backfilled everything, so the WAL can be reset by
        /// the writer's next transaction.
        public var walRestartAssisted = false
        /// Cycles run (more than 1 when the WAL was reset under one).
        public var attempts = 0
        public var durationMs = 0
        public var journalMode: JournalMode?
    }

    /// What `sqlite3_wal_checkpoint_v2` reported.
    public struct CheckpointFrames: Sendable, Equatable {
        public var logFrames: Int32
        public var checkpointedFrames: Int32
    }

    /// One consistent image of the database, stored as chunks with its recipe.
    public struct Snapshot: Sendable {
        public var contentID: ContentID { recipe.contentID }
        public var sizeBytes: UInt64 { recipe.sizeBytes }
        public var chunkSizeBytes: UInt32 { recipe.chunkSizeBytes }
        public var recipe: Recipe
        public var journalMode: JournalMode
        public var counters: Counters
    }

    /// The chunk size of this snapshotter's images: the smaller of the store's chunk size and
    /// `options.maxImageChunkSizeBytes` (at least 4 KiB, the protocol's minimum). A recipe carries
    /// its own chunk size, so peers need nothing else; a change of it makes one full read.
    public var imageChunkSizeBytes: UInt32 {
        max(min(store.config.chunkSizeBytes, options.maxImageChunkSizeBytes), min(store.config.chunkSizeBytes, 4096))
    }

    /// The path given.
    public let path: String
    /// The path resolved (symlinks): the key of the recorded state.
    public let resolvedPath: String
    public let options: Options
    private let store: Store
    private var file: DatabaseFile?
    private var conns: ReaderConnections?
    private var state: LiveSnapshotState?
    private var previous: Recipe?
    /// A reader of ours has been held without a gap since the scan that confirmed `state.position`.
    private var continuity = false
    private let inUse = Atomic<Bool>(false)

    /// Counters of the last `snapshot()` call, including calls that returned nil or threw.
    public private(set) var lastCounters: Counters?

    /// The content id of the last snapshot taken (by this or an earlier snapshotter of this
    /// database on this store), if any.
    public var lastContentID: ContentID? { state?.contentID }

    /// Checks that `path` is a SQLite database (by its header, whatever its name) and loads
    /// what an earlier snapshotter of it recorded in `store`. Opens nothing yet.
    public init(path: String, store: Store, options: Options = Options()) throws(MeshError) {
        guard FS.exists(path) else {
            throw MeshError(.fileNotFound, "\(path) does not exist", hint: "check the path of the database")
        }
        guard FS.regularFileSize(path) != nil else {
            throw MeshError(.fileUnreadable, "\(path) is not a regular file", hint: "watch a SQLite database file")
        }
        _ = try VFSFile(path: path)  // readable? (not `open(2)`: see `VFSFile`)
        guard LiveSQLite.isDatabase(path: path) else {
            throw MeshError(.invalidInput, "\(path) is not a SQLite database (it does not start with \"SQLite format 3\")",
                            hint: "only SQLite databases are snapshotted live; put other files with `meshnode put`")
        }
        guard let resolved = realpath(path, nil) else { throw MeshError.posix(errno, "resolving", path: path) }
        resolvedPath = String(cString: resolved)
        free(resolved)
        self.path = path
        self.store = store
        self.options = options
        state = try store.liveSnapshotState(path: resolvedPath)
    }

    static func openError(_ e: Int32, path: String) -> MeshError {
        if e == EACCES || e == EPERM {
            return MeshError(.fileUnreadable, "permission denied reading \(path)", hint: "check the database's permissions and owner")
        }
        return MeshError.posix(e, "opening", path: path)
    }

    /// Ends our read transaction and closes our connections (the next `snapshot()` reopens
    /// them, with a full read unless the WAL proves nothing was missed).
    public func close() {
        conns?.endAll()
        conns = nil
        file = nil
        continuity = false
    }

    /// Takes a consistent snapshot, storing its new chunks and recipe. Nil when the content
    /// is the same as the last snapshot's. See `LiveSQLite` for how.
    public func snapshot() throws(MeshError) -> Snapshot? {
        guard !inUse.exchange(true, ordering: .acquiring) else {
            throw MeshError(.internalError, "snapshot() of \(path) was called while another call was running",
                            hint: "call one snapshotter from one thread at a time")
        }
        defer { inUse.store(false, ordering: .releasing) }
        let started = WallClock.monotonicSeconds()
        var counters = Counters()
        var force: FullReason?
        defer {
            counters.durationMs = Int((WallClock.monotonicSeconds() - started) * 1000)
            lastCounters = counters
        }
        let attempts = max(1, options.maxAttempts)
        for attempt in 1...attempts {
            counters.attempts = attempt
            switch try cycle(attempt: attempt, force: force, counters: &counters) {
            case .done(var snap):
                snap?.counters = counters
                snap?.counters.durationMs = Int((WallClock.monotonicSeconds() - started) * 1000)
                return snap
            case .retry(let reason):
                force = force ?? reason
            }
        }
        throw MeshError(.databaseError, "the snapshot of \(path) was retried \(attempts) times in a row (its WAL was reset, or a gc deleted chunks it reused)",
                        hint: "something checkpoints it constantly, or gc runs constantly; the next snapshot tries again")
    }

    private enum CycleOutcome {
        case done(Snapshot?)
        case retry(FullReason?)
    }

    /// Opens our descriptor and connections if needed; reopens both when the path now names
    /// another file (then nothing is continuous any more).
    private func openIfNeeded() throws(MeshError) -> (DatabaseFile, ReaderConnections) {
        if let f = file, let c = conns, !c.broken, f.isStillAtPath { return (f, c) }
        close()
        let f = try DatabaseFile(path: resolvedPath)
        let c = try ReaderConnections(path: resolvedPath, busyTimeoutMs: options.busyTimeoutMs)
        guard f.isStillAtPath else {
            throw MeshError(.databaseError, "\(path) was replaced while it was being opened", hint: "the next snapshot retries")
        }
        file = f
        conns = c
        return (f, c)
    }

    private func cycle(attempt: Int, force: FullReason?, counters: inout Counters) throws(MeshError) -> CycleOutcome {
        let (file, conns) = try openIfNeeded()
        let spare = conns.spare
        var writeLocked = false
        if attempt == 1, force == nil, continuity, let limit = options.walRestartThresholdBytes, let st = state,
           st.mode == .wal, let pos = st.position,
           UInt64(pos.frame) * UInt64(WALHeader.frameHeaderSize + Int(st.pageSize)) >= limit,
           let h = try WALFile(databasePath: resolvedPath)?.readHeader(), pos.sameGeneration(as: h) {
            // (Not when the WAL was reset since: its new generation starts small.)
            writeLocked = try conns.beginWriteLock(spare, waitMs: options.writeLockWaitMs)
            counters.walWriteLocked = writeLocked
        }
        if !writeLocked { try conns.beginRead(spare) }
        // The new reader is ended unless it became the held one; a cycle that ended the held
        // reader and then failed has lost continuity.
        var releasedHeld = false
        var succeeded = false
        defer {
            if conns.held != spare { conns.end(spare) }
            if releasedHeld && !succeeded { continuity = false }
        }
        let header = try file.readHeader()
        counters.bytesRead += UInt64(LiveSQLite.headerBytes)
        if !header.isWAL {
            counters.journalMode = .rollback
            if conns.held != nil {
                conns.releaseHeld()
                releasedHeld = true
            }
            let out = try rollbackCycle(header: header, file: file, force: force, counters: &counters)
            succeeded = true
            continuity = false
            return out
        }
        counters.journalMode = .wal
        var full = force
        if full == nil { full = try incrementalBlocker(header: header, file: file) }

        guard let wal = try WALFile(databasePath: resolvedPath) else {
            // In WAL mode with our connection open SQLite keeps a -wal; without one the database
            // file alone is the state.
            return try finishWAL(header: header, file: file, conns: conns, wal: nil, walHeader: nil, scan: nil, full: full,
                                 spare: spare, writeLocked: writeLocked, releasedHeld: &releasedHeld,
                                 succeeded: &succeeded, counters: &counters)
        }
        let walHeader = try wal.readHeader()
        counters.bytesRead += UInt64(WALHeader.size)
        counters.walBytes = wal.sizeBytes()
        counters.walGeneration = walHeader?.checkpointSequence
        if let h = walHeader, h.pageSize != header.pageSize {
            throw MeshError(.corrupt, "\(path)-wal has page size \(h.pageSize) but the database has \(header.pageSize)",
                            hint: "SQLite cannot use that WAL either; check the database with `PRAGMA integrity_check`")
        }
        var start = walHeader.map { WALPosition(salt1: $0.salt1, salt2: $0.salt2, frame: 0, checksum: $0.checksum) }
        if full == nil, let st = state {
            switch (st.position, walHeader) {
            case (let pos?, let h?) where pos.sameGeneration(as: h):
                // Same generation: continue after our position if it is still the frame we scanned.
                counters.bytesRead += UInt64(WALHeader.frameHeaderSize)
                if try wal.confirms(pos, header: h) { start = pos } else { full = .walRewritten }
            default:
                // A new generation (or no valid WAL): it starts from our previous image only if a
                // reader of ours was held all along.
                if !continuity { full = .walChangedWhileNotWatching }
            }
        }
        var scan: WALScan?
        if let h = walHeader, let s = start {
            scan = try wal.scan(header: h, after: s)
            counters.walFramesScanned += scan!.framesScanned
            counters.walFrames = scan!.end.frame
            counters.bytesRead += scan!.bytesRead
        }
        return try finishWAL(header: header, file: file, conns: conns, wal: wal, walHeader: walHeader, scan: scan, full: full,
                             spare: spare, writeLocked: writeLocked, releasedHeld: &releasedHeld,
                             succeeded: &succeeded, counters: &counters)
    }

    /// The rest of a WAL-mode cycle, once the frames are scanned.
    private func finishWAL(header: DatabaseHeader, file: DatabaseFile, conns: ReaderConnections, wal: WALFile?,
                           walHeader: WALHeader?, scan: WALScan?, full: FullReason?, spare: Int, writeLocked: Bool,
                           releasedHeld: inout Bool, succeeded: inout Bool, counters: inout Counters) throws(MeshError) -> CycleOutcome {
        var source: ImagePlan.OverlaySource = .databaseFile
        if let wal, let h = walHeader { source = .wal(wal, h) }
        if writeLocked, let old = conns.held {
            // No commit is possible: `scan` reached the WAL's last frame. Let a checkpoint copy
            // everything, take a new reader (read lock 0 when it did), then let writers go: their
            // next transaction resets the WAL.
            conns.end(old)
            releasedHeld = true
            let ck = conns.checkpointPassive(old)
            counters.checkpoint = ck
            try conns.beginRead(old)
            conns.hold(old)
            conns.end(spare)
            if let ck, ck.logFrames > 0, ck.logFrames == ck.checkpointedFrames, UInt32(ck.logFrames) == scan?.end.frame {
                // The database file now holds the state at the last frame, and cannot change
                // while our new reader lives (LiveSQLite, 3.): read changed pages from it.
                source = .databaseFile
                counters.walRestartAssisted = true
            }
        }
        func handOff() {
            if !writeLocked {
                conns.releaseHeld()
                releasedHeld = true
                conns.hold(spare)
            }
        }
        if full == nil, !(scan?.foundCommit ?? false) {
            // Nothing committed since the previous snapshot.
            handOff()
            continuity = true
            succeeded = true
            if var st = state, st.position != scan?.end {
                st.position = scan?.end
                _ = try store.recordLiveSnapshot(recipe: nil, chunks: [], state: st, path: resolvedPath)
                state = st
            }
            return .done(nil)
        }
        let pageSize = header.pageSize
        let pages: UInt32
        if let s = scan, s.foundCommit {
            pages = s.databasePages
        } else {
            pages = try databaseFilePages(header: header, file: file)
        }
        let overlay = (scan?.pages ?? [:]).filter { $0.key <= pages }
        var full = full
        if full == nil, let st = state, pages > st.pages {
            // Every page past the previous image must have been written since (SQLite writes
            // each page it allocates, except the lock-byte page); if one is not, do not guess.
            let lockPage = DatabaseHeader.lockBytePage(pageSize: header.pageSize)
            if ((st.pages + 1)...pages).contains(where: { overlay[$0] == nil && $0 != lockPage }) {
                // After a complete checkpoint the database file is the whole state: read it now.
                guard case .databaseFile = source else { return .retry(.grownPagesNotInWAL) }
                full = .grownPagesNotInWAL
            }
        }
        // A full read lays the frames over the database file; after a complete checkpoint the
        // file alone is the state.
        var laid = overlay
        if full != nil, case .databaseFile = source { laid = [:] }
        let plan = ImagePlan(sizeBytes: UInt64(pages) * UInt64(pageSize), chunkSizeBytes: imageChunkSizeBytes,
                             pageSize: pageSize, base: full == nil ? .previous(previous!) : .databaseFile,
                             overlay: laid, overlaySource: source, previous: previous)
        let image: AssembledImage
        switch try store.assembleImage(plan, database: file, itemName: FS.basename(of: path)) {
        case .built(let img): image = img
        case .previousDamaged: return .retry(.previousSnapshotDamaged)
        case .walChanged: return .retry(full ?? (releasedHeld ? .walResetDuringSnapshot : nil))
        }
        counters.bytesRead += image.bytesRead
        counters.bytesHashed += image.bytesHashed
        if case .wal(let w, let h) = source {
            // No frame we read can have been overwritten unless the header changed (LiveSQLite, 4.).
            let now = try w.readHeader()
            counters.bytesRead += UInt64(WALHeader.size)
            if now?.raw != h.raw { return .retry(full ?? (releasedHeld ? .walResetDuringSnapshot : nil)) }
        }
        let newState = LiveSnapshotState(
            mode: .wal, device: file.device, inode: file.inode, contentID: image.recipe.contentID,
            sizeBytes: image.recipe.sizeBytes, chunkSizeBytes: image.recipe.chunkSizeBytes, pageSize: UInt32(pageSize),
            position: scan?.end, changeCounter: 0, fileSizeBytes: 0, mtimeNs: 0)
        let unchanged = state?.contentID == image.recipe.contentID
        guard try store.recordLiveSnapshot(recipe: unchanged ? nil : image.recipe, chunks: image.touched, relied: image.relied,
                                           state: newState, path: resolvedPath) else {
            // A gc unrecorded chunks this image reused: build it again (they are written then).
            return .retry(full)
        }
        handOff()
        state = newState
        previous = image.recipe
        continuity = true
        succeeded = true
        counters.full = full != nil
        counters.fullReason = full
        counters.pagesChanged = overlay.count
        counters.chunksTouched = image.touched.count
        counters.chunksChanged = image.chunksChanged
        counters.newChunkBytes += image.newChunkBytes
        return .done(unchanged ? nil : Snapshot(recipe: image.recipe, journalMode: .wal, counters: counters))
    }

    /// A rollback-journal database: unchanged if its change counter, size and mtime are,
    /// else read whole under our read transaction (SHARED lock: no writer can change it).
    private func rollbackCycle(header: DatabaseHeader, file: DatabaseFile, force: FullReason?,
                               counters: inout Counters) throws(MeshError) -> CycleOutcome {
        let (size, mtime) = try file.sizeAndMtime()
        if force == nil, let st = state, st.mode == .rollback, st.device == file.device, st.inode == file.inode,
           st.changeCounter == header.changeCounter, st.fileSizeBytes == size, st.mtimeNs == mtime {
            return .done(nil)
        }
        let pages = try databaseFilePages(header: header, file: file)
        if let st = state, previous?.contentID != st.contentID { previous = try store.recipe(st.contentID) }  // (for chunksChanged)
        let plan = ImagePlan(sizeBytes: UInt64(pages) * UInt64(header.pageSize), chunkSizeBytes: imageChunkSizeBytes,
                             pageSize: header.pageSize, base: .databaseFile, overlay: [:], overlaySource: .databaseFile,
                             previous: previous)
        guard case .built(let image) = try store.assembleImage(plan, database: file, itemName: FS.basename(of: path)) else {
            throw MeshError(.internalError, "a full read of \(path) reported a WAL change", hint: "this is a bug")
        }
        counters.bytesRead += image.bytesRead
        counters.bytesHashed += image.bytesHashed
        let newState = LiveSnapshotState(
            mode: .rollback, device: file.device, inode: file.inode, contentID: image.recipe.contentID,
            sizeBytes: image.recipe.sizeBytes, chunkSizeBytes: image.recipe.chunkSizeBytes,
            pageSize: UInt32(header.pageSize), position: nil, changeCounter: header.changeCounter,
            fileSizeBytes: size, mtimeNs: mtime)
        let unchanged = state?.contentID == image.recipe.contentID
        guard try store.recordLiveSnapshot(recipe: unchanged ? nil : image.recipe, chunks: image.touched, relied: image.relied,
                                           state: newState, path: resolvedPath) else {
            return .retry(force)  // a gc unrecorded chunks this image reused: read it again
        }
        state = newState
        previous = image.recipe
        counters.full = true
        counters.fullReason = force ?? .rollbackJournal
        counters.chunksTouched = image.touched.count
        counters.chunksChanged = image.chunksChanged
        counters.newChunkBytes += image.newChunkBytes
        return .done(unchanged ? nil : Snapshot(recipe: image.recipe, journalMode: .rollback, counters: counters))
    }

    /// The database size SQLite uses when the WAL has no commit: the in-header size when valid
    /// and within the file, else the file's whole pages.
    private func databaseFilePages(header: DatabaseHeader, file: DatabaseFile) throws(MeshError) -> UInt32 {
        let filePages = try file.sizeAndMtime().size / UInt64(header.pageSize)
        if let h = header.validInHeaderPages, UInt64(h) <= filePages { return h }
        guard filePages <= UInt64(UInt32.max) else {
            throw MeshError(.invalidInput, "\(path) has more pages than SQLite allows", hint: "check the file")
        }
        return UInt32(filePages)
    }

    /// Why this cycle cannot build on the previous snapshot, or nil if it can.
    private func incrementalBlocker(header: DatabaseHeader, file: DatabaseFile) throws(MeshError) -> FullReason? {
        guard let st = state else { return .firstSnapshot }
        if st.mode != .wal { return .journalModeChanged }
        if st.device != file.device || st.inode != file.inode { return .fileReplaced }
        if Int(st.pageSize) != header.pageSize { return .pageSizeChanged }
        if st.chunkSizeBytes != imageChunkSizeBytes { return .chunkSizeChanged }
        if previous?.contentID != st.contentID {
            previous = try store.recipe(st.contentID)
            guard previous?.contentID == st.contentID else {
                previous = nil
                return .previousSnapshotMissing
            }
        }
        // Untouched chunks are referenced as they are: each must still be in the store.
        for c in previous!.chunks where !store.hasChunk(c) { return .previousSnapshotMissing }
        return nil
    }
}
