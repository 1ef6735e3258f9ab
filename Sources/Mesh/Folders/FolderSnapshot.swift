// The one seam between watched folders and live SQLite snapshots.
import Store
import Sync

extension FolderWorker {
    /// What `snapshotDatabase` did.
    enum SnapshotOutcome: Sendable {
        /// A version of the database (new, or the name's current one when nothing changed).
        case version(IngestResult)
        /// Nothing done yet; why (reported; the planner tries again at the next change or
        /// `snapshot_interval`).
        case deferred(String)
    }

    /// Snapshots the live SQLite database at `path` as a version of `name` (on the worker's
    /// queue; `expect` is the stat the planner decided on, `settled` whether the file had
    /// stopped changing).
    ///
    /// This is the only place that decides how a database is copied: always through SQLite
    /// itself (`LiveDatabaseSnapshotter`, a consistent image while writers go on, at a cost that
    /// grows with the change; docs/SYNC.md), never as a raw copy, so `settled` does not matter.
    /// One snapshotter per database is kept for the worker's life: it holds the read
    /// transaction that lets the next snapshot read only the pages that changed.
    func snapshotDatabase(path: String, name: String, type: ItemType, expect: FileStat, settled: Bool) throws(MeshError) -> SnapshotOutcome {
        let snapshotter: LiveDatabaseSnapshotter
        if let s = snapshotters[path] {
            snapshotter = s
        } else {
            snapshotter = try LiveDatabaseSnapshotter(path: path, store: store)
            snapshotters[path] = snapshotter
        }
        let content: ContentID
        var chunks = 0, newChunks = 0
        do {
            if let snap = try snapshotter.snapshot() {
                content = snap.contentID
                chunks = snap.recipe.chunks.count
                newChunks = snap.counters.chunksChanged
            } else if let last = snapshotter.lastContentID {
                content = last  // unchanged since the last snapshot (which may not be recorded yet, after a crash)
            } else {
                return .deferred("live database \(path): nothing to snapshot yet")
            }
        } catch {
            // A replaced or deleted file, a broken connection: start afresh next time.
            snapshotter.close()
            snapshotters[path] = nil
            throw error
        }
        let (entry, isNew) = try store.recordVersion(of: content, name: name, type: type, policy: policy, signer: signer)
        return .version(IngestResult(entry: entry, chunkCount: chunks, newChunks: newChunks, isNewEntry: isNew))
    }

    /// Ends the read transactions of every database this worker snapshots (the folder closes).
    func closeSnapshotters() {
        for s in snapshotters.values { s.close() }
        snapshotters = [:]
    }
}
