import Foundation
import TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `scripts/sqlite-writer.py` (stdlib sqlite3): a writer like a selfplay process.
let folderWriterScript: String = {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { url.deleteLastPathComponent() }
    return url.appendingPathComponent("scripts/sqlite-writer.py").path
}()

/// What a read-only look at a snapshot database says: integrity, row count, highest id, and
/// rows whose payload is not the writer's (they must be 0). Opened read-only by URI, so the
/// look itself creates no file beside it.
struct DatabaseLook {
    var ok: Bool
    var count: Int
    var maxID: Int
    var bad: Int
    var detail: String

    static let sql = "printf('%012d', id) || substr(replace(hex(zeroblob(1024)), '0', char(65 + id % 26)), 1, 1024 - 12)"

    static func of(_ path: String) -> DatabaseLook? {
        let py = """
        import sqlite3, sys
        db = sqlite3.connect('file:' + sys.argv[1] + '?mode=ro', uri=True)
        ic = db.execute('PRAGMA integrity_check').fetchone()[0]
        n, m = db.execute('SELECT count(*), coalesce(max(id), 0) FROM games').fetchone()
        bad = db.execute("SELECT count(*) FROM games WHERE payload != \(sql)").fetchone()[0]
        print(ic, n, m, bad)
        """
        guard let r = try? Subprocess.run(["/usr/bin/python3", "-c", py, path]), r.status == 0 else { return nil }
        let f = r.stdout.split(separator: " ").map(String.init)
        guard f.count == 4, let n = Int(f[1]), let m = Int(f[2].trimmingCharacters(in: .whitespacesAndNewlines)),
              let b = Int(f[3].trimmingCharacters(in: .whitespacesAndNewlines)) else { return nil }
        return DatabaseLook(ok: f[0] == "ok", count: n, maxID: m, bad: b, detail: r.stdout)
    }
}

/// A live SQLite database in a send folder, written by another process all along.
@Suite(.serialized, .ownThread()) struct LiveDatabaseFolderTests {
    @Test(.ownThread(timeLimit: .minutes(4)))
    func aDatabaseWrittenLiveOnAArrivesOnBNeverCorruptAndWithEveryRowCommittedBeforeTheLastSnapshot() throws {
        let p = try FolderPair(optionsA: ", snapshot_interval: 2s")
        let db = p.send + "/selfplay/games.db"
        try FileManager.default.createDirectory(atPath: p.send + "/selfplay", withIntermediateDirectories: true)
        let initR = try Subprocess.run(["/usr/bin/python3", folderWriterScript, "--db", db, "--init", "200"])
        #expect(initR.status == 0, "\(initR)")
        let writer = try Subprocess.spawn(["/usr/bin/python3", folderWriterScript, "--db", db, "--rate", "50",
                                             "--duration", "30", "--report", "1"])
        defer { writer.kill(SIGKILL) }
        let copy = p.recv + "/selfplay/games.db"
        // While the writer runs: every version that appears on B is a whole database whose rows
        // are exactly 1…max (a committed prefix), never a torn copy.
        var looks = 0, lastMax = 0
        let deadline = Date().addingTimeInterval(34)
        while Date() < deadline, writer.poll() == nil {
            if FileManager.default.fileExists(atPath: copy), let l = DatabaseLook.of(copy) {
                looks += 1
                #expect(l.ok && l.bad == 0 && l.count == l.maxID, "a torn or corrupt snapshot on B: \(l.detail)")
                #expect(l.maxID >= lastMax, "B's copy went back in time")
                lastMax = l.maxID
            }
            usleep(500_000)
        }
        #expect(writer.wait(timeoutSeconds: 20) == 0)
        let out = writer.result.stdout
        let lastCommitted = out.split(separator: "\n").compactMap { $0.hasPrefix("done ") ? Int($0.dropFirst(5)) : nil }.last ?? -1
        #expect(lastCommitted > 200, "\(out.suffix(300))")
        #expect(looks >= 5, "B's copy was looked at \(looks) times while the writer ran")
        #expect(lastMax > 200, "B never showed a snapshot taken while the writer ran")
        // After the last commit, the next snapshot (2 s) brings every row.
        let t0 = Date()
        try eventually(30, "B holds every committed row\n\(p.logs)") {
            guard let l = DatabaseLook.of(copy) else { return false }
            return l.ok && l.bad == 0 && l.count == lastCommitted && l.maxID == lastCommitted
        }
        print("live database: \(looks) looks on B while writing; every row on B \(String(format: "%.1f", Date().timeIntervalSince(t0))) s after the writer stopped")
        // No sidecar file leaked into B's folder (the image is a standalone rollback-journal database).
        #expect(!FileManager.default.fileExists(atPath: copy + "-wal"))
        let versions = try Meshnode.run(["ls", "--versions", "data/selfplay/games.db", "--data", p.b.dataDir, "--json"])
        let rows = (try? parseJSON(versions.stdout)) as? [[String: Any]] ?? []
        #expect(rows.count >= 3, "the database was snapshotted \(rows.count) times")
    }
}
