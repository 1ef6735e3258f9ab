// The file and store I/O of one watched folder, on a thread of its own.
import Dispatch
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Store
import Sync
import Synchronization

/// Runs one folder's actions (put, snapshot, tombstone, materialise, remove, record
/// writes) on a serial queue with its own `Store` handle (its own SQLite connection), so no
/// file is read or written and no fsync waited for on the loop. Results come back on the
/// loop through `loop.post`. Actions on one path run in the order asked; the planner asks
/// for at most one action per path at a time.
final class FolderWorker: @unchecked Sendable {
    // @unchecked: `store` is only touched on `queue`; the rest is immutable or atomic.
    let root: String
    let folderID: Int64
    let store: Store
    let signer: NodeIdentity
    let policy: KeepPolicy
    private let queue: DispatchQueue
    private let loop: EventLoop
    /// Set when the service closes: jobs not started yet are dropped.
    let closed = Atomic<Bool>(false)
    /// One live snapshotter per database path (FolderSnapshot.swift); touched only on `queue`.
    var snapshotters: [String: LiveDatabaseSnapshotter] = [:]

    init(loop: EventLoop, dataDir: String, root: String, folderID: Int64, signer: NodeIdentity, policy: KeepPolicy,
         label: String) throws(MeshError) {
        self.loop = loop
        self.root = root
        self.folderID = folderID
        self.signer = signer
        self.policy = policy
        store = try Store.open(dataDir: dataDir)
        queue = DispatchQueue(label: label, qos: .utility)
    }

    /// What an action did, for the loop.
    struct Result: Sendable {
        var outcome: FolderOutcome
        /// A new entry to announce (a put's new version, a tombstone).
        var announce: ManifestEntry?
        var error: MeshError?
        /// The materialise found the content already there (nothing written).
        var adopted = false
    }

    func absolute(_ path: String) -> String { root + "/" + path }

    /// Runs `job` on the queue and `done` with its result on the loop (unless closed).
    func run(_ job: @escaping @Sendable (FolderWorker) -> Result, done: @escaping @Sendable (Result) -> Void) {
        queue.async { [self] in
            guard !closed.load(ordering: .relaxed) else { return }
            let r = job(self)
            _ = loop.post { [self] in if !closed.load(ordering: .relaxed) { done(r) } }
        }
    }

    /// Record writes waiting for the next flush (one transaction for all of them: a first
    /// scan of 100 000 files must not cost 100 000 fsyncs).
    private let pendingRecords = Mutex<(changes: [(path: String, record: FolderRecord?)], flushQueued: Bool, markScanned: Bool)>(([], false, false))

    /// Persists a record (or drops it, nil) soon, in order with the actions queued after it.
    /// (The planner never asks for one while an action on that path runs.)
    func persist(_ path: String, _ record: FolderRecord?, onError: @escaping @Sendable (MeshError) -> Void) {
        enqueueFlush(onError: onError) { $0.changes.append((path, record)) }
    }

    /// Records, after every record write asked for so far, that the folder's first complete
    /// scan is in (see `Store.folderState`).
    func markScanned(onError: @escaping @Sendable (MeshError) -> Void) {
        enqueueFlush(onError: onError) { $0.markScanned = true }
    }

    private func enqueueFlush(onError: @escaping @Sendable (MeshError) -> Void,
                              _ change: (inout (changes: [(path: String, record: FolderRecord?)], flushQueued: Bool, markScanned: Bool)) -> Void) {
        let start = pendingRecords.withLock { p -> Bool in
            change(&p)
            defer { p.flushQueued = true }
            return !p.flushQueued
        }
        guard start else { return }
        queue.async { [self] in
            let (changes, mark) = pendingRecords.withLock { p in
                defer { p = ([], false, false) }
                return (p.changes, p.markScanned)
            }
            guard !closed.load(ordering: .relaxed) else { return }
            do throws(MeshError) {
                try store.applyFolderRecords(folder: folderID, changes, markScanned: mark)
            } catch {
                _ = loop.post { onError(error) }
            }
        }
    }

    // MARK: - Actions (on the queue)

    /// What is at `path` now, as an observation (nil: absent or not a file).
    func observe(_ path: String) -> FileObservation? {
        if case .file(var o)? = FolderFS.lstatEntry(absolute(path)) {
            if o.kind == .regular, o.stat.sizeBytes >= 16 { o.isSQLite = FolderFS.hasSQLiteHeader(absolute(path)) }
            if o.kind == .regular { o.openForWriting = FolderFS.isOpenForWriting(absolute(path), isDatabase: o.isSQLite) }
            return o
        }
        return nil
    }

    func changed(_ path: String) -> Result { Result(outcome: .changedMeanwhile(observe(path))) }

    func put(_ path: String, name: String, type: ItemType, expect: FileStat) -> Result {
        let file = absolute(path)
        guard FolderFS.regularStat(file) == expect else { return changed(path) }
        do throws(MeshError) {
            // Read and hashed only: the file backs its chunks (no chunk file is written first).
            let r = try store.ingest(path: file, name: name, type: type, signer: signer, policy: policy, backedByFile: true,
                                     beforeRecording: { () throws(MeshError) in
                guard FolderFS.regularStat(file) == expect else {
                    throw MeshError(.fileChanged, "\(file) changed while it was being read", hint: "it is put once it settles again")
                }
            })
            // A file this folder materialised and a person then edited (a `both` folder): its
            // backings whose bytes the edit replaced go now, not at their next read.
            if let recipe = try? store.recipe(r.entry.contentID) { try? store.refreshBackings(path: file, recipe: recipe, stat: expect) }
            return recordPut(path, r, expect: expect)
        } catch where error.code == .fileChanged || error.code == .fileNotFound {
            return changed(path)
        } catch {
            return Result(outcome: .failed, error: error)
        }
    }

    func recordPut(_ path: String, _ r: IngestResult, expect: FileStat) -> Result {
        let rec = FolderRecord(stat: expect, contentID: r.entry.contentID, entry: r.entry.ref, source: .put, updatedMs: WallClock.nowMs())
        do throws(MeshError) { try store.setFolderRecord(folder: folderID, path: path, rec) } catch {
            // The version exists; only the record is missing: the next look finds the same content and records it.
            return Result(outcome: .failed, announce: r.isNewEntry ? r.entry : nil, error: error)
        }
        return Result(outcome: .recorded(rec), announce: r.isNewEntry ? r.entry : nil)
    }

    func snapshot(_ path: String, name: String, type: ItemType, expect: FileStat, settled: Bool) -> Result {
        do throws(MeshError) {
            switch try snapshotDatabase(path: absolute(path), name: name, type: type, expect: expect, settled: settled) {
            case .version(let r): return recordPut(path, r, expect: expect)
            case .deferred(let why): return Result(outcome: .deferred, error: MeshError(.init("folder.live_database"), why))
            }
        } catch where error.code == .fileChanged || error.code == .fileNotFound {
            return changed(path)
        } catch {
            return Result(outcome: .failed, error: error)
        }
    }

    func tombstone(_ path: String, name: String, content: ContentID) -> Result {
        do throws(MeshError) {
            // Never delete a version that arrived from elsewhere since the decision.
            let cur = try store.currentVersion(of: name)
            var entry: ManifestEntry?
            if cur?.entry.contentID == content { entry = try store.delete(name, signer: signer) }
            try store.removeFolderRecord(folder: folderID, path: path)
            return Result(outcome: .forgotten, announce: entry)
        } catch {
            return Result(outcome: .failed, error: error)
        }
    }

    func materialise(_ path: String, entry: ManifestEntry, replacing: FileStat?, reason: FolderChange) -> Result {
        do throws(MeshError) {
            let adopt = reason == .revertAdded || reason == .revertChanged
            let (stat, wrote) = try store.materialise(entry, root: root, relativePath: path, replacing: replacing, adoptIdentical: adopt,
                                                      policy: policy)
            let rec = FolderRecord(stat: stat, contentID: entry.contentID, entry: entry.ref, source: .materialised, updatedMs: WallClock.nowMs())
            try store.setFolderRecord(folder: folderID, path: path, rec)
            return Result(outcome: .recorded(rec), adopted: !wrote)
        } catch where error.code == .fileChanged {
            return changed(path)
        } catch {
            return Result(outcome: .failed, error: error)
        }
    }

    func remove(_ path: String, expect: FileStat) -> Result {
        let file = absolute(path)
        guard FolderFS.matches(file, expect) else { return changed(path) }
        do throws(MeshError) {
            // Chunks only this file holds that a kept version needs go to chunk files first.
            try store.removeFolderFile(file, policy: policy) { () throws(MeshError) in
                guard Glibc.unlink(file) == 0 || errno == ENOENT else { throw MeshError.posix(errno, "removing", path: file) }
            }
            let dir = FS.dirname(of: file)
            try? FS.fsyncDirectory(dir)
            // Directories emptied by the removal go too (up to, not including, the folder).
            var d = dir
            while d.count > root.count, d.hasPrefix(root + "/"), rmdir(d) == 0 { d = FS.dirname(of: d) }
            try store.removeFolderRecord(folder: folderID, path: path)
            return Result(outcome: .forgotten)
        } catch {
            return Result(outcome: .failed, error: error)
        }
    }

    func close() {
        closed.store(true, ordering: .relaxed)
        queue.async { [self] in closeSnapshotters() }  // ends our read transactions on the watched databases
    }
}
