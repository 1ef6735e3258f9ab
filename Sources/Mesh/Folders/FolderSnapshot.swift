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
    /// This is the only place that decides how a database is copied. Until the snapshot
    /// engine (`LiveDatabaseSnapshotter` in `Sources/Store/LiveSQLite/`, a consistent copy
    /// through SQLite itself) is wired here, the fallback ingests the raw file only when
    /// that is safe: no `-wal` beside it (so every committed page is in the main file) and
    /// its size and mtime settled (no writer is busy with it); otherwise it defers.
    func snapshotDatabase(path: String, name: String, type: ItemType, expect: FileStat, settled: Bool) throws(MeshError) -> SnapshotOutcome {
        if FS.exists(path + "-wal") {
            return .deferred("live database \(path) (a -wal file is beside it): snapshot engine not wired yet")
        }
        guard settled else {
            return .deferred("live database \(path) is still being written: snapshot engine not wired yet; it is put once it settles")
        }
        guard FolderFS.regularStat(path) == expect else {
            throw MeshError(.fileChanged, "\(path) changed before it could be read", hint: "it is looked at again")
        }
        let r = try store.ingest(path: path, name: name, type: type, signer: signer, policy: policy,
                                             beforeRecording: { () throws(MeshError) in
            guard FolderFS.regularStat(path) == expect, !FS.exists(path + "-wal") else {
                throw MeshError(.fileChanged, "\(path) changed while it was being read", hint: "it is put once it settles again")
            }
        })
        return .version(r)
    }
}
