import CSQLite

/// An error reported by SQLite: the (extended) result code and its message.
public struct SQLiteError: Error, CustomStringConvertible, Sendable {
    public var code: Int32
    public var message: String
    public var sql: String?

    public var description: String { "SQLite error \(code): \(message)" + (sql.map { " (in: \($0.prefix(80)))" } ?? "") }

    /// True for SQLITE_FULL (disk full).
    public var isDiskFull: Bool { code & 0xff == SQLITE_FULL }

    /// The same failure as a user-facing `MeshError`.
    public var meshError: MeshError {
        if isDiskFull {
            return MeshError(.noSpace, "no space left on device while writing the manifest database",
                             hint: "free some space and run the command again")
        }
        if code & 0xff == SQLITE_BUSY {
            return MeshError(.databaseError, "the manifest database is locked by another process",
                             hint: "wait for the other meshnode command to finish and retry")
        }
        return MeshError(.databaseError, "manifest database: \(message) (SQLite code \(code))",
                         hint: "run `meshnode verify`; if it persists, restore the data dir from a backup")
    }
}

/// A SQLite value to bind or read.
public enum SQLValue: Sendable, Equatable {
    case null
    case int(Int64)
    case text(String)
    case blob([UInt8])
}

private let SQLITE_TRANSIENT = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

/// One SQLite connection with a cache of prepared statements. Not thread-safe: use it
/// from one thread at a time (SQLite is opened in multi-thread mode).
public final class Database {
    let handle: OpaquePointer
    private var cache: [String: Statement] = [:]
    public let path: String

    /// Opens (creating with `create`) the database at `path`.
    public init(path: String, readOnly: Bool = false, create: Bool = true, uri: Bool = false) throws(SQLiteError) {
        var db: OpaquePointer?
        var flags = readOnly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE
        if create && !readOnly { flags |= SQLITE_OPEN_CREATE }
        if uri { flags |= SQLITE_OPEN_URI }
        flags |= SQLITE_OPEN_NOMUTEX
        let rc = sqlite3_open_v2(path, &db, flags, nil)
        guard rc == SQLITE_OK, let db else {
            let msg = db.map { String(cString: sqlite3_errmsg($0)) } ?? "cannot open"
            if let db { sqlite3_close_v2(db) }
            throw SQLiteError(code: rc, message: msg, sql: nil)
        }
        sqlite3_extended_result_codes(db, 1)
        handle = db
        self.path = path
    }

    deinit {
        cache.removeAll()
        sqlite3_close_v2(handle)
    }

    func error(_ rc: Int32, sql: String?) -> SQLiteError {
        SQLiteError(code: rc, message: String(cString: sqlite3_errmsg(handle)), sql: sql)
    }

    /// Runs one or more statements without results.
    public func exec(_ sql: String) throws(SQLiteError) {
        var err: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(handle, sql, nil, nil, &err)
        if rc != SQLITE_OK {
            let msg = err.map { String(cString: $0) } ?? String(cString: sqlite3_errmsg(handle))
            sqlite3_free(err)
            throw SQLiteError(code: rc, message: msg, sql: sql)
        }
    }

    /// A cached prepared statement, reset and with bindings cleared.
    public func prepare(_ sql: String) throws(SQLiteError) -> Statement {
        if let s = cache[sql] {
            s.reset()
            return s
        }
        var stmt: OpaquePointer?
        let rc = sqlite3_prepare_v2(handle, sql, -1, &stmt, nil)
        guard rc == SQLITE_OK, let stmt else { throw error(rc, sql: sql) }
        let s = Statement(db: self, stmt: stmt, sql: sql)
        cache[sql] = s
        return s
    }

    /// Runs `sql` with `args`, returning every row.
    @discardableResult
    public func query(_ sql: String, _ args: [SQLValue] = []) throws(SQLiteError) -> [[SQLValue]] {
        let s = try prepare(sql)
        defer { s.reset() }
        try s.bind(args)
        var rows = [[SQLValue]]()
        while try s.step() { rows.append(s.row()) }
        return rows
    }

    /// Runs `sql` and calls `body` for each row, without materialising them all.
    public func forEach(_ sql: String, _ args: [SQLValue] = [],
                        _ body: (Statement) throws(MeshError) -> Void) throws(MeshError) {
        do {
            let s = try prepare(sql)
            defer { s.reset() }
            try s.bind(args)
            while try s.step() { try body(s) }
        } catch let e as SQLiteError {
            throw e.meshError
        } catch let e as MeshError {
            throw e
        } catch {
            throw MeshError(.internalError, "\(error)", hint: "")
        }
    }

    /// Runs `sql` and returns the first column of the first row as an integer.
    public func scalarInt(_ sql: String, _ args: [SQLValue] = []) throws(SQLiteError) -> Int64? {
        let s = try prepare(sql)
        defer { s.reset() }
        try s.bind(args)
        guard try s.step() else { return nil }
        return s.isNull(0) ? nil : s.int(0)
    }

    /// Runs `body` in a `BEGIN IMMEDIATE` transaction: committed if it returns, rolled back if it throws.
    public func transaction<T>(_ body: () throws(MeshError) -> T) throws(MeshError) -> T {
        do { try exec("BEGIN IMMEDIATE") } catch { throw error.meshError }
        do throws(MeshError) {
            let v = try body()
            do { try exec("COMMIT") } catch { throw error.meshError }
            return v
        } catch {
            try? exec("ROLLBACK")
            throw error
        }
    }

    public var changes: Int { Int(sqlite3_changes(handle)) }
    public var lastInsertRowID: Int64 { sqlite3_last_insert_rowid(handle) }
}

/// A prepared statement owned by its `Database` cache.
public final class Statement {
    unowned let db: Database
    let stmt: OpaquePointer
    let sql: String

    init(db: Database, stmt: OpaquePointer, sql: String) {
        self.db = db
        self.stmt = stmt
        self.sql = sql
    }

    deinit { sqlite3_finalize(stmt) }

    func reset() {
        sqlite3_reset(stmt)
        sqlite3_clear_bindings(stmt)
    }

    public func bind(_ args: [SQLValue]) throws(SQLiteError) {
        for (i, v) in args.enumerated() {
            let idx = Int32(i + 1)
            let rc: Int32
            switch v {
            case .null: rc = sqlite3_bind_null(stmt, idx)
            case .int(let n): rc = sqlite3_bind_int64(stmt, idx, n)
            case .text(let s): rc = sqlite3_bind_text(stmt, idx, s, -1, SQLITE_TRANSIENT)
            case .blob(let b):
                rc = b.withUnsafeBytes { raw in
                    sqlite3_bind_blob(stmt, idx, raw.baseAddress ?? UnsafeRawPointer(bitPattern: 1), Int32(raw.count), SQLITE_TRANSIENT)
                }
            }
            guard rc == SQLITE_OK else { throw db.error(rc, sql: sql) }
        }
    }

    /// Advances; true if a row is available, false when done.
    public func step() throws(SQLiteError) -> Bool {
        let rc = sqlite3_step(stmt)
        switch rc {
        case SQLITE_ROW: return true
        case SQLITE_DONE: return false
        default: throw db.error(rc, sql: sql)
        }
    }

    public var columnCount: Int { Int(sqlite3_column_count(stmt)) }
    public func isNull(_ i: Int) -> Bool { sqlite3_column_type(stmt, Int32(i)) == SQLITE_NULL }
    public func int(_ i: Int) -> Int64 { sqlite3_column_int64(stmt, Int32(i)) }
    public func text(_ i: Int) -> String {
        guard let p = sqlite3_column_text(stmt, Int32(i)) else { return "" }
        return String(cString: p)
    }
    public func blob(_ i: Int) -> [UInt8] {
        let n = Int(sqlite3_column_bytes(stmt, Int32(i)))
        guard n > 0, let p = sqlite3_column_blob(stmt, Int32(i)) else { return [] }
        return Array(UnsafeRawBufferPointer(start: p, count: n))
    }

    public func row() -> [SQLValue] {
        (0..<columnCount).map { i in
            switch sqlite3_column_type(stmt, Int32(i)) {
            case SQLITE_INTEGER: .int(int(i))
            case SQLITE_TEXT: .text(text(i))
            case SQLITE_BLOB: .blob(blob(i))
            default: .null
            }
        }
    }
}
