import Sync
import Dispatch
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Progress callback for long operations: bytes done so far. Called from worker threads.
public typealias ProgressHandler = @Sendable (UInt64) -> Void

/// State shared by the hashing workers of one ingest/export/verify: the next chunk to
/// take, the first error, and per-chunk results written to disjoint slots.
final class WorkQueue: @unchecked Sendable {
    // @unchecked: `results` slots are written by exactly one worker each (the one that
    // took that index from `next`), and read only after all workers have joined.
    let next = Atomic<Int>(0)
    let bytesDone = Atomic<UInt64>(0)
    let failure = Mutex<MeshError?>(nil)
    /// Chunk hashes already taken care of by some worker of this operation.
    let claimed = Mutex<Set<ChunkHash>>([])
    let results: UnsafeMutableBufferPointer<Bytes32>
    let wrote: UnsafeMutableBufferPointer<Bool>
    let count: Int

    init(count: Int) {
        self.count = count
        results = .allocate(capacity: max(count, 1))
        results.initialize(repeating: .zero)
        wrote = .allocate(capacity: max(count, 1))
        wrote.initialize(repeating: false)
    }

    deinit {
        results.deallocate()
        wrote.deallocate()
    }

    /// The next index to work on, or nil when done or after a failure.
    func take() -> Int? {
        if failure.withLock({ $0 != nil }) { return nil }
        let i = next.wrappingAdd(1, ordering: .relaxed).oldValue
        return i < count ? i : nil
    }

    func fail(_ e: MeshError) {
        failure.withLock { if $0 == nil { $0 = e } }
    }

    func throwIfFailed() throws(MeshError) {
        if let e = failure.withLock({ $0 }) { throw e }
    }
}

/// A page-aligned scratch buffer owned by one worker.
struct ScratchBuffer: ~Copyable {
    let base: UnsafeMutableRawPointer
    let count: Int
    init(count: Int) {
        self.count = count
        base = .allocate(byteCount: max(count, 1), alignment: 4096)
    }
    deinit { base.deallocate() }
}

/// What `Store.ingest` did.
public struct IngestResult: Sendable {
    /// The signed entry (an existing one if the same content, name and type was already put).
    public var entry: ManifestEntry
    public var chunkCount: Int
    /// Chunks written now; the rest were already stored (dedup).
    public var newChunks: Int
    /// False when an identical entry already existed and was returned.
    public var isNewEntry: Bool

    public init(entry: ManifestEntry, chunkCount: Int, newChunks: Int, isNewEntry: Bool) {
        self.entry = entry
        self.chunkCount = chunkCount
        self.newChunks = newChunks
        self.isNewEntry = isNewEntry
    }
}

extension Store {
    /// New chunks are made durable in batches of about this many bytes per worker: one
    /// journal commit then covers the whole batch instead of one per chunk. Bounds the open
    /// temp files at `syncBatchBytes / chunk size + 1` per worker.
    public static let syncBatchBytes = 32 << 20
    /// ...and at most this many files (bounds open descriptors with small chunk sizes).
    public static let syncBatchFiles = 64

    /// Worker threads for ingest, export and verify: two per core (so that one can wait on
    /// the disk while the other hashes), at least 2 and at most 8. Each owns one chunk
    /// buffer, which bounds memory at `workerCount × chunk size`.
    /// `MESHNODE_WORKERS` (1...16) overrides it, for tuning.
    ///
    /// (See also `syncBatchBytes`.)
    public static let workerCount: Int = {
        if let text = getenv("MESHNODE_WORKERS").map({ String(cString: $0) }), let n = Int(text), (1...16).contains(n) {
            return n
        }
        return max(2, min(8, 2 * Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))))
    }()

    // MARK: - Ingest

    /// Ingests the file at `path` as a new item originated and signed by `signer`.
    ///
    /// Streams the file in constant memory (one chunk buffer per worker), hashes chunks on
    /// every core, writes each chunk the store does not record yet as temp + fdatasync +
    /// rename (journalled first, `ChunkJournal.swift`), fsyncs the touched chunk directories,
    /// and only then commits recipe, chunk presence and the signed entry (with the next local
    /// sequence number) in one SQLite transaction. A crash at any point leaves no visible
    /// item; chunk files already named are complete and correct, and the next open records
    /// them (from the journal). Chunks skipped because the store recorded them are checked again
    /// inside that transaction: one a concurrent `gc` deleted meanwhile is read again from the
    /// file and stored before the put commits (GarbageCollector.swift).
    ///
    /// Putting the content of the name's current version again returns that version's entry;
    /// anything else becomes the name's newest version (docs/PROTOCOL.md §4.4), stamped with
    /// the next clock and, per `policy`, its retention expiry.
    ///
    /// `beforeRecording` runs after every chunk is durable and before the entry is committed;
    /// if it throws, nothing is recorded (watched folders check there that the file did not
    /// change while it was read, so that no version is ever a mix of two states of a file).
    /// `broadcast` sets the put's broadcast flag (every eligible node is a target).
    ///
    /// With `backedByFile` (a watched folder's put; `path` absolute) no chunk file is written:
    /// the file is only read and hashed, and it backs the chunks it holds (ChunkBackings.swift,
    /// verified on every read), recorded in the same transaction as the version. A file edited
    /// in place before a peer fetched it loses that version (docs/SYNC.md "Limits").
    public func ingest(path: String, name: String? = nil, type: ItemType? = nil, broadcast: Bool = false, signer: any Signer,
                       policy: KeepPolicy = KeepPolicy(), backedByFile: Bool = false, nowMs: Int64 = WallClock.nowMs(),
                       progress: ProgressHandler? = nil,
                       beforeRecording: (() throws(MeshError) -> Void)? = nil) throws(MeshError) -> IngestResult {
        let itemName = name ?? FS.basename(of: path)
        try Self.validateName(itemName, what: "item name")
        let itemType = type ?? ItemType.guess(fromName: itemName)
        if FS.isDirectory(path) {
            throw MeshError(.fileUnreadable, "\(path) is a directory", hint: "put one file at a time")
        }
        let file: POSIXFile
        do { file = try POSIXFile(path: path, flags: O_RDONLY, what: "opening") } catch {
            if error.code == .fileNotFound {
                throw MeshError(.fileNotFound, "\(path) does not exist", hint: "check the path and try again")
            }
            if error.code == .fileUnreadable || error.code == .ioError {
                throw MeshError(.fileUnreadable, "cannot read \(path): \(error.message)", hint: "check the file's permissions")
            }
            throw error
        }
        var st = stat()
        guard fstat(file.fd, &st) == 0 else { throw MeshError.posix(errno, "inspecting", path: path) }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw MeshError(.fileUnreadable, "\(path) is not a regular file", hint: "put a regular file (not a pipe, device or socket)")
        }
        let size = UInt64(st.st_size)
        let chunkSize = config.chunkSizeBytes
        let n = Chunking.chunkCount(sizeBytes: size, chunkSizeBytes: chunkSize)
        let work = WorkQueue(count: n)
        let fd = file.fd
        let files = chunkFiles
        let workers = min(Self.workerCount, max(n, 1))
        posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL)
        let capacity = (Int(chunkSize) + 4095) & ~4095
        let batchBytes = Self.syncBatchBytes
        let backed = backedByFile && path.hasPrefix("/")
        let shared = SharedStore(self)
        let writer = WriterStamp.current
        @Sendable func commit(_ pending: inout [ChunkFiles.PendingChunk]) throws(MeshError) {
            try shared.commitJournalled(&pending, files: files, writer: writer)
        }
        runWorkers(workers) { _ in
            // Each worker reads up to `lanes` chunks and hashes them together (four BLAKE2b
            // lanes where the CPU has AVX2; Sodium.swift).
            let lanes = Blake2b256.lanes(forChunkBytes: capacity)
            let buf = ScratchBuffer(count: capacity * lanes)  // one chunk per lane, each `capacity` (4 KiB-aligned)
            // New chunks are synced and renamed in batches of about `syncBatchBytes` per worker.
            var pending = [ChunkFiles.PendingChunk]()
            var pendingBytes = 0
            defer { files.discard(&pending) }
            while true {
                var group = [Int]()
                while group.count < lanes, let i = work.take() { group.append(i) }
                if group.isEmpty { break }
                do throws(MeshError) {
                    var raws = [UnsafeRawBufferPointer]()
                    for (k, i) in group.enumerated() {
                        let len = Chunking.chunkLength(index: i, sizeBytes: size, chunkSizeBytes: chunkSize)
                        let got = try readAt(fd: fd, path: path, into: buf.base + k * capacity, count: len, offset: UInt64(i) * UInt64(chunkSize))
                        guard got == len else {
                            throw MeshError(.fileUnreadable, "\(path) shrank while it was being read",
                                            hint: "wait until the file is fully written, then put it again")
                        }
                        raws.append(UnsafeRawBufferPointer(start: buf.base + k * capacity, count: len))
                    }
                    let hashes = Blake2b256.hash(many: raws)
                    for (k, i) in group.enumerated() {
                        let raw = raws[k]
                        let h = ChunkHash(digest: hashes[k])
                        work.results[i] = h.digest
                        if backed { ChunkFingerprints.record(h, raw) }  // the file will back it: served checked by this
                        // A chunk repeated inside the file is written by the first worker to claim it,
                        // and one the store records already is not written again (dedup).
                        let claimed = work.claimed.withLock { $0.insert(h).inserted }
                        if !backed, claimed, try !shared.run({ (s) throws(MeshError) in try s.isChunkRecorded(h) }) {
                            work.wrote[i] = true
                            pending.append(try files.writeTemp(h, raw, paddedCapacity: capacity))
                            pendingBytes += raw.count
                            if pendingBytes >= batchBytes || pending.count >= Self.syncBatchFiles {
                                try commit(&pending)
                                pendingBytes = 0
                            }
                        }
                        let done = work.bytesDone.wrappingAdd(UInt64(raw.count), ordering: .relaxed).newValue
                        progress?(done)
                    }
                } catch {
                    work.fail(error)
                }
            }
            do throws(MeshError) {
                if work.failure.withLock({ $0 == nil }) { try commit(&pending) }
            } catch {
                work.fail(error)
            }
        }
        try work.throwIfFailed()
        guard try file.sizeBytes() == size else {
            throw MeshError(.fileUnreadable, "\(path) changed size while it was being read",
                            hint: "wait until the file is fully written, then put it again")
        }
        let chunks = (0..<n).map { ChunkHash(digest: work.results[$0]) }
        let recipe = Recipe(sizeBytes: size, chunkSizeBytes: chunkSize, chunks: chunks)
        // Make the renames durable before the manifest can point at them. Deduplicated chunks
        // count too: their file may be an orphan of an aborted ingest whose rename was never
        // synced. Syncing a clean directory is cheap.
        var dirs = Set<String>()
        for c in chunks where !backed { dirs.insert(FS.dirname(of: chunkPath(c))) }
        for d in dirs.sorted() { try FS.fsyncDirectory(d) }

        let newChunks = (0..<n).filter { work.wrote[$0] }.count
        var seen = Set<ChunkHash>()
        let rows = (0..<n).filter { seen.insert(chunks[$0]).inserted }.map { (hash: chunks[$0], sizeBytes: recipe.length(ofChunk: $0)) }
        let wrote = Set((0..<n).filter { work.wrote[$0] }.map { chunks[$0] })
        // Chunks this put found recorded and did not write: a concurrent gc may unrecord them
        // before the commit, so the final transaction checks them (GarbageCollector.swift).
        // (None when the file backs every chunk itself.)
        let relied = backed ? [] : rows.map(\.hash).filter { !wrote.contains($0) }
        let backingRows = backed ? Self.firstOccurrences(recipe, path: path, stat: FolderFS.fileStat(st)) : []
        var lost = [ChunkHash]()
        for _ in 0..<Self.maxRecordAttempts {
            try beforeRecording?()
            testHooks.beforeRecording?("ingest")
            let result = try db.transaction { () throws(MeshError) -> IngestResult? in
                lost = try unrecordedAmong(relied)
                guard lost.isEmpty else { return nil }
                try insertRecipeRows(recipe)
                try insertBackingsInForce(backingRows)
                try insertChunkRows(rows, writer: writer, nowMs: nowMs)
                let (entry, isNew) = try recordVersion(of: recipe, name: itemName, type: itemType, policy: policy,
                                                       flags: broadcast ? ManifestEntry.Put.broadcastFlag : 0,
                                                       signer: signer, nowMs: nowMs)
                return IngestResult(entry: entry, chunkCount: n, newChunks: newChunks, isNewEntry: isNew)
            }
            if let result { return result }
            try restoreChunks(lost, of: recipe, fd: fd, path: path, nowMs: nowMs)
        }
        throw MeshError(.databaseError, "\(lost.count) chunks of \(path) that the store held were deleted by a concurrent gc \(Self.maxRecordAttempts) times",
                        hint: "put the file again")
    }

    // MARK: - Export

    /// Writes the item's content to `path` (or into `path/<name>` if `path` is a directory).
    ///
    /// Every chunk is re-hashed while the file is reassembled (in parallel, with `pwrite`)
    /// into a temp file next to the target; the temp file is fsynced, `.db`/game items must
    /// pass `PRAGMA integrity_check`, and only then is it renamed into place. On any failure
    /// the temp file is removed and the target is untouched. Returns the path written.
    ///
    /// A recorded chunk whose file turns out missing, of the wrong size or with the wrong bytes
    /// is damage (`.corrupt`): its record is dropped, so that the store no longer counts it
    /// and the item shows incomplete until the chunk is fetched (or put) again.
    @discardableResult
    public func export(_ item: ItemInfo, to path: String, progress: ProgressHandler? = nil) throws(MeshError) -> String {
        let e = item.entry
        guard let recipe = try recipe(e.contentID) else {
            throw MeshError(.incomplete, "item \(e.name) (\(e.contentID.short)) is known but its content has not arrived yet",
                            hint: "wait for replication (a running node fetches it from peers), then try again")
        }
        guard recipe.contentID == e.contentID else {
            throw MeshError(.corrupt, "the stored chunk list of \(e.contentID.short) does not match its id",
                            hint: "the database is damaged; run `meshnode verify`")
        }
        // Complete by the one test every reader uses (the `chunks` table), or not exported.
        let missing = try missingChunks(e.contentID) ?? []
        if !missing.isEmpty {
            throw MeshError(.incomplete, "item \(e.name) (\(e.contentID.short)) is incomplete: \(missing.count) of \(recipe.chunkCount) chunks have not arrived yet",
                            hint: "wait for replication (a running node fetches them from peers), then try again")
        }
        var target = path
        if FS.isDirectory(path) {
            let base = FS.basename(of: e.name)
            target = path.hasSuffix("/") ? path + base : path + "/" + base
        }
        let dir = FS.dirname(of: target)
        guard FS.isDirectory(dir) else {
            throw MeshError(.fileNotFound, "directory \(dir) does not exist", hint: "create it first or choose another -o path")
        }
        // The file is assembled in an unnamed O_TMPFILE inode in the target's directory where
        // the file system allows (a killed `get` then leaves nothing behind), else in a named
        // hidden temp file there. It gets a name only once complete, synced and checked.
        let tmpName = "\(dir)/.\(FS.basename(of: target)).meshnode-\(getpid())-\(FS.randomToken()).tmp"
        let aligned = recipe.chunkSizeBytes % 4096 == 0 && recipe.sizeBytes > 0
        let out = try openTemp(dir: dir, namedFallback: tmpName, tryDirect: aligned)
        var named = out.named
        defer {
            _ = Glibc.close(out.fd)
            if named { FS.unlink(tmpName) }
        }
        try writeAssembled(recipe, name: e.name, fd: out.fd, direct: out.direct, path: target, progress: progress)
        try nameAndCheck(fd: out.fd, tmpName: tmpName, named: &named, entry: e)
        try FS.rename(tmpName, target)
        named = false
        try FS.fsyncDirectory(dir)
        return target
    }

    /// Gives an assembled temp file its hidden name `tmpName` if it has none yet, then checks a
    /// database's integrity there. SQLite resolves symlinks, so /proc/self/fd/N cannot be
    /// checked in place: the temp file is named first (left behind only if killed right here).
    func nameAndCheck(fd: Int32, tmpName: String, named: inout Bool, entry: ManifestEntry) throws(MeshError) {
        if !named {
            guard linkat(AT_FDCWD, "/proc/self/fd/\(fd)", AT_FDCWD, tmpName, AT_SYMLINK_FOLLOW) == 0 else {
                throw MeshError.posix(errno, "naming", path: tmpName)
            }
            named = true
        }
        if entry.type == .game || entry.name.lowercased().hasSuffix(".db") {
            try checkSQLiteIntegrity(tmpName, name: entry.name)
        }
    }

    /// Opens a temp file for writing in `dir`: unnamed (O_TMPFILE) if possible, else
    /// `namedFallback`; with O_DIRECT first when `tryDirect`.
    func openTemp(dir: String, namedFallback: String, tryDirect: Bool, readable: Bool = false) throws(MeshError) -> (fd: Int32, named: Bool, direct: Bool) {
        for named in ChunkFiles.tmpfileDisabled ? [true] : [false, true] {
            for direct in tryDirect ? [true, false] : [false] {
                let flags = (readable ? O_RDWR : O_WRONLY) | O_CLOEXEC | (direct ? O_DIRECT : 0)
                let fd = named ? Glibc.open(namedFallback, flags | O_CREAT | O_EXCL, 0o644) : Glibc.open(dir, flags | O_TMPFILE_, 0o644)
                if fd >= 0 { return (fd, named, direct) }
                let e = errno
                if e != EINVAL && e != EOPNOTSUPP && e != EISDIR && e != ENOTDIR {
                    throw MeshError.posix(e, "creating a file in", path: dir)
                }
            }
        }
        throw MeshError(.ioError, "cannot create a file in \(dir)", hint: "check the directory's file system")
    }

    /// Reassembles `recipe` into `fd`, re-hashing every chunk, in parallel with `pwrite`;
    /// then truncates to the exact size (O_DIRECT writes the last chunk padded) and fsyncs.
    /// A chunk without a good chunk file is copied from a folder file that backs it
    /// (ChunkBackings.swift: `copy_file_range` when `readable`, and verified); backings that
    /// fail are dropped. Chunks in `inPlace` are in `fd` already (a staging file) and skipped.
    /// Returns the chunks so copied.
    @discardableResult
    func writeAssembled(_ recipe: Recipe, name: String, fd outFD: Int32, direct: Bool, path tmp: String,
                        progress: ProgressHandler?, readable: Bool = false, inPlace: Set<ChunkHash> = []) throws(MeshError) -> Int {
        let backings = try backings(forContent: recipe.contentID)
        if recipe.sizeBytes > 0 {
            let rc = posix_fallocate(outFD, 0, off_t(recipe.sizeBytes))
            if rc != 0 && rc != EOPNOTSUPP && rc != EINVAL { throw MeshError.posix(rc, "allocating space for", path: tmp) }
        }
        let n = recipe.chunkCount
        let work = WorkQueue(count: n)
        let files = chunkFiles
        let fd = outFD
        let useDirect = direct
        let capacity = (Int(recipe.chunkSizeBytes) + 4095) & ~4095
        let workers = min(Self.workerCount, max(n, 1))
        // Damaged chunks are collected, not fatal at once, so that one export finds them all.
        let damaged = Mutex<[(index: Int, error: MeshError)]>([])
        let failedBackings = Mutex<[(ChunkBacking, BackingRead)]>([])
        let copied = Atomic<Int>(0)
        runWorkers(workers) { _ in
            let buf = ScratchBuffer(count: capacity)
            while let i = work.take() {
                do throws(MeshError) {
                    let hash = recipe.chunks[i]
                    let len = recipe.length(ofChunk: i)
                    if inPlace.contains(hash) {  // written there already, verified (FolderStaging.swift)
                        progress?(work.bytesDone.wrappingAdd(UInt64(len), ordering: .relaxed).newValue)
                        continue
                    }
                    var fileError: MeshError?
                    do throws(MeshError) {
                        let got = try files.read(hash, into: buf.base, capacity: capacity, expected: len, itemName: name)
                        if got != len || Blake2b256.hash(UnsafeRawBufferPointer(start: buf.base, count: got)) != hash.digest {
                            fileError = MeshError(.corrupt, "chunk \(hash) of \(name) is corrupt on disk")
                        }
                    } catch {
                        guard error.code == .corrupt else { throw error }
                        fileError = error
                    }
                    if let e = fileError {
                        // No good chunk file: a folder file that holds the chunk, if any.
                        var ok = false
                        for b in backings[hash] ?? [] where b.sizeBytes == len {
                            let r = try b.copy(to: fd, at: recipe.offset(ofChunk: i), readable: readable, direct: useDirect,
                                               buf: buf.base, outPath: tmp)
                            if r == .ok {
                                ok = true
                                break
                            }
                            failedBackings.withLock { $0.append((b, r)) }
                        }
                        guard ok else {
                            let why = backings[hash] == nil ? e
                                : MeshError(.corrupt, "chunk \(hash) of \(name) has no chunk file, and the folder files that held it changed")
                            damaged.withLock { $0.append((i, why)) }
                            continue
                        }
                        copied.wrappingAdd(1, ordering: .relaxed)
                    } else {
                        let writeLen = useDirect ? (len + 4095) & ~4095 : len
                        try writeAt(fd: fd, path: tmp, from: buf.base, count: writeLen, offset: recipe.offset(ofChunk: i))
                    }
                    let done = work.bytesDone.wrappingAdd(UInt64(len), ordering: .relaxed).newValue
                    progress?(done)
                } catch {
                    work.fail(error)
                }
            }
        }
        try work.throwIfFailed()
        try dropBackings(failedBackings.withLock { $0 })
        let copiedChunks = copied.load(ordering: .relaxed)
        BackingCounters.chunksCopied.wrappingAdd(UInt64(copiedChunks), ordering: .relaxed)
        let bad = damaged.withLock { $0 }.sorted { $0.index < $1.index }
        if let first = bad.first {
            let hashes = Array(Set(bad.map { recipe.chunks[$0.index] }))
            try forgetChunks(hashes)
            let more = hashes.count > 1 ? " (and \(hashes.count - 1) more damaged chunk\(hashes.count > 2 ? "s" : ""))" : ""
            throw MeshError(.corrupt, "\(first.error.message)\(more); the store no longer counts \(hashes.count == 1 ? "it" : "them") as present",
                            hint: "a running node fetches \(hashes.count == 1 ? "it" : "them") again from peers when `meshnode get` asks (or put the item again from the original file)")
        }
        if direct, ftruncate(outFD, off_t(recipe.sizeBytes)) != 0 { throw MeshError.posix(errno, "truncating", path: tmp) }
        guard fsync(outFD) == 0 else { throw MeshError.posix(errno, "syncing", path: tmp) }
        return copiedChunks
    }

    /// Runs `PRAGMA integrity_check` on a finished, not yet visible SQLite file.
    func checkSQLiteIntegrity(_ path: String, name: String) throws(MeshError) {
        var uriPath = ""
        for c in path.unicodeScalars {
            switch c {
            case "%": uriPath += "%25"
            case "?": uriPath += "%3f"
            case "#": uriPath += "%23"
            default: uriPath.unicodeScalars.append(c)
            }
        }
        let result: String
        do {
            let check = try Database(path: "file:\(uriPath)?immutable=1", readOnly: true, create: false, uri: true)
            let rows = try check.query("PRAGMA integrity_check")
            result = rows.compactMap { if case .text(let t) = $0.first { t } else { nil } }.prefix(3).joined(separator: "; ")
        } catch {
            throw MeshError(.corrupt, "\(name) is not a valid SQLite database (\(error.message))",
                            hint: "the item's content is damaged at its origin; nothing was written")
        }
        guard result == "ok" else {
            throw MeshError(.corrupt, "\(name) fails PRAGMA integrity_check: \(result.prefix(200))",
                            hint: "the item's content is damaged at its origin; nothing was written")
        }
    }
}

/// A store used by worker threads one at a time, while the thread that owns it waits for them.
final class SharedStore: @unchecked Sendable {
    // @unchecked: every use of `store` holds `lock`, and its owner does not touch it meanwhile.
    private let store: Store
    private let lock = NSLock()

    init(_ store: Store) { self.store = store }

    func run<T>(_ body: (Store) throws(MeshError) -> T) throws(MeshError) -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body(store)
    }

    /// Journals a batch of chunk files (`chunk_writes`, ChunkJournal.swift), then makes them
    /// durable and names them; a worker's step in ingest and in snapshot images alike.
    func commitJournalled(_ pending: inout [ChunkFiles.PendingChunk], files: ChunkFiles, writer: WriterStamp) throws(MeshError) {
        guard !pending.isEmpty else { return }
        let hashes = pending.map(\.hash)
        try run { (s) throws(MeshError) in try s.beginChunkWrites(hashes, writer: writer) }
        try files.commit(&pending)
    }
}

/// `pread` of exactly `count` bytes (fewer only at end of file), for worker threads.
func readAt(fd: Int32, path: String, into buf: UnsafeMutableRawPointer, count: Int, offset: UInt64) throws(MeshError) -> Int {
    var done = 0
    while done < count {
        let n = pread(fd, buf + done, count - done, off_t(offset) + off_t(done))
        if n < 0 {
            if errno == EINTR { continue }
            throw MeshError.posix(errno, "reading", path: path)
        }
        if n == 0 { break }
        done += n
    }
    return done
}

/// `pwrite` of all `count` bytes, for worker threads.
func writeAt(fd: Int32, path: String, from buf: UnsafeRawPointer, count: Int, offset: UInt64) throws(MeshError) {
    var done = 0
    while done < count {
        let n = pwrite(fd, buf + done, count - done, off_t(offset) + off_t(done))
        if n < 0 {
            if errno == EINTR { continue }
            throw MeshError.posix(errno, "writing", path: path)
        }
        done += n
    }
}

/// Runs `body(0..<count)` on `count` dedicated threads and waits for all of them. Unlike
/// `concurrentPerform`, the threads exist even beyond the core count, so a worker blocked
/// on the disk does not keep another from hashing.
func runWorkers(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
    if count <= 1 {
        body(0)
        return
    }
    let group = DispatchGroup()
    for i in 0..<count {
        group.enter()
        let t = Thread {
            body(i)
            group.leave()
        }
        t.stackSize = 1 << 20
        t.start()
    }
    group.wait()
}
