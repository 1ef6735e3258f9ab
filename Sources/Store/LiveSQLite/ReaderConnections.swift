import CSQLite

/// The snapshotter's two connections to a watched database, and the read transaction one
/// of them holds between cycles.
///
/// Both are opened read-write (a read-only connection cannot roll back a hot journal nor
/// checkpoint) but with `PRAGMA query_only = 1`: nothing is ever written through them. The
/// write lock of the WAL restart (see `LiveSQLite`) lifts `query_only` on one connection for
/// the length of an empty `BEGIN IMMEDIATE ... ROLLBACK`.
final class ReaderConnections {
    let path: String
    private let conns: [Database]
    /// The connection holding our long read transaction, if any.
    private(set) var held: Int?
    /// Connections with a transaction open (read or write).
    private var open: Set<Int> = []
    private var writeLocked: Int?
    let busyTimeoutMs: Int32
    /// A transaction could not be ended: the connections must be dropped (a reader left open
    /// would hold back every checkpoint).
    private(set) var broken = false

    init(path: String, busyTimeoutMs: Int32) throws(MeshError) {
        self.path = path
        self.busyTimeoutMs = busyTimeoutMs
        var c = [Database]()
        for _ in 0..<2 {
            do throws(SQLiteError) {
                let db = try Database(path: path, readOnly: false, create: false)
                sqlite3_busy_timeout(db.handle, busyTimeoutMs)
                try db.exec("PRAGMA query_only = 1")
                c.append(db)
            } catch {
                throw ReaderConnections.error(error, path: path, doing: "opening")
            }
        }
        conns = c
    }

    /// The connection that is not holding the long read transaction.
    var spare: Int { held == 0 ? 1 : 0 }

    /// BEGINs a read transaction on connection `i` and makes SQLite actually start it (a
    /// deferred BEGIN takes its snapshot at the first read).
    func beginRead(_ i: Int) throws(MeshError) {
        do throws(SQLiteError) {
            try conns[i].exec("BEGIN DEFERRED")
            open.insert(i)
            _ = try conns[i].scalarInt("SELECT count(*) FROM sqlite_master")
        } catch {
            end(i)
            throw Self.error(error, path: path, doing: "starting a read transaction on")
        }
    }

    /// Takes the database's write lock on connection `i` (an empty write transaction), waiting
    /// at most `waitMs`. False when another writer holds it that long. Also a read transaction.
    func beginWriteLock(_ i: Int, waitMs: Int32) throws(MeshError) -> Bool {
        let db = conns[i]
        do throws(SQLiteError) {
            try db.exec("PRAGMA query_only = 0")
            sqlite3_busy_timeout(db.handle, waitMs)
            defer { sqlite3_busy_timeout(db.handle, busyTimeoutMs) }
            do throws(SQLiteError) {
                try db.exec("BEGIN IMMEDIATE")
            } catch where error.code & 0xff == SQLITE_BUSY {
                try db.exec("PRAGMA query_only = 1")
                return false
            }
            open.insert(i)
            writeLocked = i
            _ = try db.scalarInt("SELECT count(*) FROM sqlite_master")
            return true
        } catch {
            end(i)
            throw Self.error(error, path: path, doing: "locking")
        }
    }

    /// Ends whatever transaction connection `i` has (a write lock is rolled back: it wrote
    /// nothing). Never throws: a connection that cannot end its transaction is useless, and the
    /// snapshotter then drops both connections.
    @discardableResult
    func end(_ i: Int) -> Bool {
        var ok = true
        if open.contains(i) {
            let sql = writeLocked == i ? "ROLLBACK" : "COMMIT"
            do throws(SQLiteError) { try conns[i].exec(sql) } catch {
                do throws(SQLiteError) { try conns[i].exec("ROLLBACK") } catch { ok = false }
            }
            open.remove(i)
        }
        if writeLocked == i {
            writeLocked = nil
            do throws(SQLiteError) { try conns[i].exec("PRAGMA query_only = 1") } catch { ok = false }
        }
        if held == i { held = nil }
        if !ok { broken = true }
        return ok
    }

    /// From now on connection `i`'s read transaction is the one held between cycles.
    func hold(_ i: Int) {
        precondition(open.contains(i))
        held = i
    }

    /// Ends the held read transaction, if any.
    func releaseHeld() {
        if let h = held { end(h) }
    }

    /// A PASSIVE checkpoint on connection `i` (which must have no transaction): frames in the
    /// WAL and frames now in the database file (`sqlite3_wal_checkpoint_v2`).
    func checkpointPassive(_ i: Int) -> LiveDatabaseSnapshotter.CheckpointFrames? {
        precondition(!open.contains(i))
        var log: Int32 = -1
        var done: Int32 = -1
        let rc = sqlite3_wal_checkpoint_v2(conns[i].handle, nil, SQLITE_CHECKPOINT_PASSIVE, &log, &done)
        guard rc == SQLITE_OK else { return nil }
        return LiveDatabaseSnapshotter.CheckpointFrames(logFrames: log, checkpointedFrames: done)
    }

    /// Ends every transaction (the connections close when released).
    func endAll() {
        for i in 0..<conns.count { end(i) }
    }

    static func error(_ e: SQLiteError, path: String, doing: String) -> MeshError {
        switch e.code & 0xff {
        case SQLITE_BUSY, SQLITE_LOCKED:
            return MeshError(.databaseError, "\(path) stayed locked by another process while \(doing) it",
                             hint: "a writer holds it (or a hot journal is being recovered); the next snapshot retries")
        case SQLITE_NOTADB, SQLITE_CORRUPT:
            return MeshError(.invalidInput, "\(path) is not a usable SQLite database (\(e.message))",
                             hint: "check the file; snapshots resume once it opens as a database")
        case SQLITE_CANTOPEN, SQLITE_PERM, SQLITE_READONLY, SQLITE_AUTH:
            return MeshError(.fileUnreadable, "cannot open \(path) as a database (\(e.message), SQLite code \(e.code))",
                             hint: "meshnode needs read and write permission on the database and its directory (for -wal and -shm)")
        default:
            return MeshError(.databaseError, "\(doing) \(path) failed: \(e.message) (SQLite code \(e.code))",
                             hint: "check the database with `sqlite3 \(path) 'PRAGMA integrity_check'`")
        }
    }
}
