import Foundation
import Store
import TestSupport
import Testing

@Suite("SQLite wrapper and schema")
struct SQLiteTests {
    @Test("Errors carry the SQLite code and message, and a failed transaction rolls back")
    func errorsAndTransactions() throws {
        let d = TestDir("sqlite")
        let db = try Database(path: d.sub("t.sqlite"))
        try db.exec("CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT NOT NULL)")
        do {
            try db.exec("SELEC nonsense")
            Issue.record("bad SQL ran")
        } catch {
            #expect(error.code == 1)  // SQLITE_ERROR
            #expect(error.message.contains("syntax error"))
        }
        try db.query("INSERT INTO t(k, v) VALUES(?, ?)", [.int(1), .text("one")])
        let failed = meshError {
            try db.transaction { () throws(MeshError) in
                do throws(SQLiteError) { try db.query("INSERT INTO t(k, v) VALUES(?, ?)", [.int(2), .text("two")]) } catch { throw error.meshError }
                do throws(SQLiteError) { try db.query("INSERT INTO t(k, v) VALUES(?, ?)", [.int(1), .text("dup")]) } catch { throw error.meshError }
            }
        }
        #expect(failed?.code == .databaseError)
        #expect(try db.scalarInt("SELECT count(*) FROM t") == 1)
        #expect(try db.query("SELECT v FROM t WHERE k = ?", [.int(1)]) == [[.text("one")]])
        #expect(try db.query("SELECT ?", [.blob([1, 2, 3])]) == [[.blob([1, 2, 3])]])
        #expect(try db.query("SELECT ?", [.null]) == [[.null]])
    }

    @Test("A new store is at the current schema version, in WAL mode with full sync")
    func freshStoreSettings() throws {
        let f = try Fixture()
        #expect(try f.store.schemaVersion() == Schema.currentVersion)
        let db = try Database(path: "\(f.dataDir)/manifest.sqlite")
        #expect(try db.query("PRAGMA journal_mode") == [[.text("wal")]])
        let tables = try db.query("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").compactMap {
            if case .text(let t) = $0.first { t } else { nil }
        }
        #expect(Set(tables).isSuperset(of: ["items", "recipes", "recipe_chunks", "chunks", "origins", "peers", "outbox", "forks"]))
        // Reopening does not migrate again or lose data.
        let file = f.dir.sub("x")
        try writePseudoRandomFile(file, size: 5, seed: 1)
        _ = try f.store.ingest(path: file, signer: f.identity)
        let again = try Store.open(dataDir: f.dataDir)
        #expect(try again.items().count == 1)
        #expect(try again.schemaVersion() == Schema.currentVersion)
    }
}
