import Foundation
import Store
import TestSupport
import Testing

@Suite("Live SQLite snapshots")
struct LiveSQLiteTests {
    @Test("A database is recognised by its header, not its name, and anything else is refused clearly")
    func recognisedByHeader() throws {
        let f = try Fixture()
        let db = f.dir.sub("games.bin")
        try runWriter(["--db", db, "--init", "10"])
        let notDB = f.dir.sub("notes.db")
        _ = FileManager.default.createFile(atPath: notDB, contents: Data("hello, not a database".utf8))
        #expect(LiveSQLite.isDatabase(path: db))
        #expect(!LiveSQLite.isDatabase(path: notDB))
        #expect(!LiveSQLite.isDatabase(path: f.dir.sub("missing.db")))
        let e = meshError { _ = try LiveDatabaseSnapshotter(path: notDB, store: f.store) }
        #expect(e?.code == .invalidInput)
        #expect(e?.message.contains("not a SQLite database") == true)
        #expect(e?.hint?.isEmpty == false)
        #expect(meshError { _ = try LiveDatabaseSnapshotter(path: f.dir.sub("missing.db"), store: f.store) }?.code == .fileNotFound)
        #expect(meshError { _ = try LiveDatabaseSnapshotter(path: f.dir.path, store: f.store) }?.code == .fileUnreadable)
        #expect(try LiveDatabaseSnapshotter(path: db, store: f.store).snapshot() != nil)
    }

    @Test("A quiet WAL database gives a standalone image, nil while unchanged, and incremental cycles after a change")
    func quietDatabase() throws {
        let f = try Fixture(chunkSizeBytes: 16 * 1024)
        let path = f.dir.sub("g.db")
        try runWriter(["--db", path, "--init", "300"])
        let s = try LiveDatabaseSnapshotter(path: path, store: f.store)
        let first = try #require(try s.snapshot())
        #expect(first.counters.full && first.counters.fullReason == .firstSnapshot)
        #expect(first.journalMode == .wal)
        try expectValid(first, store: f.store, dir: f.dir, committedBefore: 300, label: "first")
        #expect(try f.store.recipe(first.contentID) == first.recipe)
        #expect(try f.store.isComplete(first.contentID))
        #expect(try f.store.items().isEmpty, "the snapshotter must not create manifest entries")

        #expect(try s.snapshot() == nil)
        let idle = try #require(s.lastCounters)
        #expect(!idle.full && idle.chunksTouched == 0 && idle.newChunkBytes == 0)

        let w = try Database(path: path, create: false)
        try w.exec("PRAGMA busy_timeout = 5000")
        try insertRow(w, id: 301)
        let second = try #require(try s.snapshot())
        #expect(!second.counters.full, "\(describe(second.counters))")
        #expect(second.counters.pagesChanged >= 1 && second.counters.chunksTouched < first.recipe.chunkCount)
        try expectValid(second, store: f.store, dir: f.dir, committedBefore: 301, label: "second")
        #expect(try s.snapshot() == nil)
    }

    @Test("Images are cut in chunks of at most 512 KiB on a 2 MiB store, and a change of that size makes one valid full read")
    func imageChunkSize() throws {
        let f = try Fixture(chunkSizeBytes: 2 << 20)
        let path = f.dir.sub("g.db")
        try runWriter(["--db", path, "--init", "3000"])
        let s = try LiveDatabaseSnapshotter(path: path, store: f.store)
        #expect(s.imageChunkSizeBytes == 512 * 1024)
        let first = try #require(try s.snapshot())
        #expect(first.chunkSizeBytes == 512 * 1024 && first.recipe.chunkCount > 4, "\(first.recipe.chunkCount) chunks")
        try expectValid(first, store: f.store, dir: f.dir, committedBefore: 3000, label: "first")
        // One row: only the chunks holding its pages are new, each at most 512 KiB.
        let w = try Database(path: path, create: false)
        try w.exec("PRAGMA busy_timeout = 5000")
        try insertRow(w, id: 3001)
        let second = try #require(try s.snapshot())
        #expect(!second.counters.full && second.chunkSizeBytes == 512 * 1024, "\(describe(second.counters))")
        #expect(second.counters.newChunkBytes <= UInt64(second.counters.chunksTouched) * 512 * 1024)
        #expect(second.counters.newChunkBytes < second.sizeBytes / 2, "\(describe(second.counters))")
        try expectValid(second, store: f.store, dir: f.dir, committedBefore: 3001, label: "second")
        s.close()

        // Another image chunk size on the same store (an upgrade, or another setting): one full read.
        try insertRow(w, id: 3002)
        let big = try LiveDatabaseSnapshotter(path: path, store: try Store.open(dataDir: f.dataDir),
                                              options: .init(maxImageChunkSizeBytes: 4 << 20))
        #expect(big.imageChunkSizeBytes == 2 << 20, "never above the store's chunk size")
        let third = try #require(try big.snapshot())
        #expect(third.counters.full && third.counters.fullReason == .chunkSizeChanged, "\(describe(third.counters))")
        #expect(third.chunkSizeBytes == 2 << 20)
        try expectValid(third, store: f.store, dir: f.dir, committedBefore: 3002, label: "third")

        // A store with smaller chunks keeps its own size.
        let g = try Fixture(chunkSizeBytes: 64 * 1024, label: "small")
        #expect(try LiveDatabaseSnapshotter(path: path, store: g.store).imageChunkSizeBytes == 64 * 1024)
    }

    @Test("Incremental images are byte-identical to a full read of the same state, through growth and shrinking")
    func incrementalEqualsFull() throws {
        let f = try Fixture(chunkSizeBytes: 8 * 1024)
        let path = f.dir.sub("g.db")
        try runWriter(["--db", path, "--init", "200"])
        let s = try LiveDatabaseSnapshotter(path: path, store: f.store, options: .init(walRestartThresholdBytes: 64 * 1024))
        _ = try #require(try s.snapshot())
        let w = try Database(path: path, create: false)
        try w.exec("PRAGMA busy_timeout = 5000")
        var id: Int64 = 200
        var incremental = 0
        for round in 0..<12 {
            for _ in 0..<(round % 3 == 2 ? 1 : 40) {
                id += 1
                try insertRow(w, id: id)
            }
            if round == 6 {
                // Shrink: delete most rows and VACUUM (in WAL mode, with our reader held).
                try w.exec("DELETE FROM games WHERE id % 5 != 0")
                try w.exec("VACUUM")
            }
            guard let snap = try s.snapshot() else { continue }
            if !snap.counters.full { incremental += 1 }
            // A fresh store and snapshotter read everything: same state, same bytes, same id.
            let g = try Fixture(chunkSizeBytes: 8 * 1024, label: "full")
            let fresh = try #require(try LiveDatabaseSnapshotter(path: path, store: g.store).snapshot())
            #expect(fresh.counters.full)
            #expect(fresh.contentID == snap.contentID, "round \(round): \(describe(snap.counters))")
        }
        #expect(incremental >= 10)
    }

    @Test("A WAL reset between two snapshots is followed from frame 1 of the new generation, without a full read")
    func resetBetweenSnapshots() throws {
        let f = try Fixture(chunkSizeBytes: 8 * 1024)
        let path = f.dir.sub("g.db")
        try runWriter(["--db", path, "--init", "200"])
        let s = try LiveDatabaseSnapshotter(path: path, store: f.store, options: .init(walRestartThresholdBytes: nil))
        let w = try Database(path: path, create: false)
        for id in Int64(201)...260 { try insertRow(w, id: id) }
        let first = try #require(try s.snapshot())
        // Our reader blocks the reset: the checkpoint copies everything, then reports busy.
        let blocked = try w.query("PRAGMA wal_checkpoint(TRUNCATE)")
        #expect(blocked.first?.first == .int(1), "\(blocked)")
        // The next cycle's reader starts on the fully copied WAL (read lock 0) and the old one ends...
        #expect(try s.snapshot() == nil)
        // ...so now nothing stops the reset.
        #expect(try w.query("PRAGMA wal_checkpoint(TRUNCATE)").first?.first == .int(0))
        #expect(fileSize(path + "-wal") == 0)
        for id in Int64(261)...300 { try insertRow(w, id: id) }
        let second = try #require(try s.snapshot())
        #expect(!second.counters.full, "\(describe(second.counters))")
        #expect(second.counters.walGeneration != first.counters.walGeneration)
        try expectValid(second, store: f.store, dir: f.dir, committedBefore: 300, label: "after the reset")
        let g = try Fixture(chunkSizeBytes: 8 * 1024, label: "full")
        #expect(try LiveDatabaseSnapshotter(path: path, store: g.store).snapshot()?.contentID == second.contentID)
    }

    @Test("A database file replaced under its name is read whole from the new file, and a deleted one is a clear error")
    func replacedAndDeleted() throws {
        let f = try Fixture(chunkSizeBytes: 16 * 1024)
        let path = f.dir.sub("g.db")
        try runWriter(["--db", path, "--init", "100"])
        let s = try LiveDatabaseSnapshotter(path: path, store: f.store)
        _ = try #require(try s.snapshot())
        let other = f.dir.sub("other.db")
        try runWriter(["--db", other, "--init", "150"])
        #expect(rename(other, path) == 0)
        let snap = try #require(try s.snapshot())
        #expect(snap.counters.full && snap.counters.fullReason == .fileReplaced, "\(describe(snap.counters))")
        try expectValid(snap, store: f.store, dir: f.dir, committedBefore: 150, label: "replaced")
        #expect(try s.snapshot() == nil)
        #expect(unlink(path) == 0)
        let e = meshError { _ = try s.snapshot() }
        #expect(e?.code == .fileNotFound, "\(String(describing: e))")
    }

    @Test("A damaged chunk of the previous snapshot makes a full read, not a damaged image")
    func damagedPreviousChunk() throws {
        let f = try Fixture(chunkSizeBytes: 16 * 1024)
        let path = f.dir.sub("g.db")
        try runWriter(["--db", path, "--init", "100"])
        let s = try LiveDatabaseSnapshotter(path: path, store: f.store)
        let first = try #require(try s.snapshot())
        flipByte(f.store.chunkPath(first.recipe.chunks[0]), at: 50)
        let w = try Database(path: path, create: false)
        try insertRow(w, id: 101)
        let second = try #require(try s.snapshot())
        #expect(second.counters.full && second.counters.fullReason == .previousSnapshotDamaged, "\(describe(second.counters))")
        #expect(second.counters.attempts == 2)
        try expectValid(second, store: f.store, dir: f.dir, committedBefore: 101, label: "after damage")
    }
}

@Suite("Live SQLite snapshots under a writer", .ownThread(timeLimit: .minutes(3)))
struct LiveSQLiteWriterTests {
    @Test("Snapshots of a 64 MiB database taken while a Python writer inserts hold every committed row and read only what changed")
    func liveWriterOnLargeDatabase() throws {
        let f = try Fixture(chunkSizeBytes: 256 * 1024)
        let path = f.dir.sub("games.db")
        try runWriter(["--db", path, "--init", "52000"])
        let size = fileSize(path)
        #expect(size >= 64 << 20)
        let writer = try PythonWriter(["--db", path, "--rate", "150", "--duration", "22"])
        defer { writer.stop() }
        let observer = try Observer(path)
        // A low restart threshold, so that the write-lock checkpoint and the WAL reset it allows
        // happen several times in this run.
        let s = try LiveDatabaseSnapshotter(path: path, store: f.store, options: .init(walRestartThresholdBytes: 1 << 20))
        var snaps = 0, incremental = 0, assisted = 0, maxWALFrames: UInt32 = 0
        var generations = Set<UInt32>()
        var taken = [(snap: LiveDatabaseSnapshotter.Snapshot, committedBefore: Int64)]()
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            Thread.sleep(forTimeInterval: 0.8)
            let before = try observer.committed()
            guard let snap = try s.snapshot() else { continue }
            let c = snap.counters
            snaps += 1
            taken.append((snap, before))
            if let g = c.walGeneration { generations.insert(g) }
            if c.walRestartAssisted { assisted += 1 }
            if snaps > 1 { maxWALFrames = max(maxWALFrames, c.walFrames) }
            if snaps == 1 {
                #expect(c.full && c.fullReason == .firstSnapshot)
            } else {
                #expect(!c.full, "cycle \(snaps): \(describe(c))")
                incremental += c.full ? 0 : 1
                #expect(c.bytesRead <= size / 4, "cycle \(snaps) read too much: \(describe(c))")
                #expect(c.newChunkBytes <= size / 8, "cycle \(snaps): \(describe(c))")
            }
        }
        writer.stop()
        #expect(writer.stderr.isEmpty, "\(writer.stderr)")
        #expect(snaps >= 10)
        #expect(incremental == snaps - 1)
        #expect(assisted >= 1, "the WAL never reached the restart threshold")
        #expect(generations.count >= 2, "the WAL was never reset: \(generations)")
        // The WAL generation stays near the threshold (without the write lock it grows all run).
        #expect(UInt64(maxWALFrames) * 4120 <= 8 << 20, "the WAL grew to \(maxWALFrames) frames")
        // One more snapshot once the writer stopped holds every row.
        let last = try observer.committed()
        if let snap = try s.snapshot() { taken.append((snap, last)) }
        // Exported and checked now, so that exporting does not slow the cycles: chunks are immutable.
        for (k, t) in taken.enumerated() where k == 0 || k % 5 == 0 || k == taken.count - 1 {
            try expectValid(t.snap, store: f.store, dir: f.dir, committedBefore: t.committedBefore, label: "snapshot \(k + 1)")
        }
        for t in taken { #expect(try f.store.isComplete(t.snap.contentID)) }
    }

    @Test("WAL resets by the writer's TRUNCATE and RESTART checkpoints and by its pauses lose no committed row")
    func writerCheckpointsAndPauses() throws {
        let f = try Fixture(chunkSizeBytes: 64 * 1024)
        let path = f.dir.sub("games.db")
        try runWriter(["--db", path, "--init", "2000"])
        let writer = try PythonWriter([
            "--db", path, "--rate", "120", "--duration", "18", "--checkpoint-every", "1.3",
            "--checkpoint-modes", "TRUNCATE,RESTART,PASSIVE", "--pause-every", "5", "--pause-for", "2.5",
        ])
        defer { writer.stop() }
        let observer = try Observer(path)
        // Never take the write lock here: only the writer resets the WAL.
        let s = try LiveDatabaseSnapshotter(path: path, store: f.store, options: .init(walRestartThresholdBytes: nil))
        var snaps = 0
        var generations = Set<UInt32>()
        var fullReasons = [LiveDatabaseSnapshotter.FullReason]()
        let deadline = Date().addingTimeInterval(17)
        while Date() < deadline {
            Thread.sleep(forTimeInterval: 0.35)
            let before = try observer.committed()
            guard let snap = try s.snapshot() else { continue }
            snaps += 1
            if let g = snap.counters.walGeneration { generations.insert(g) }
            if let r = snap.counters.fullReason { fullReasons.append(r) }
            try expectValid(snap, store: f.store, dir: f.dir, committedBefore: before, label: "cycle \(snaps)")
        }
        writer.stop()
        let ckpts = writer.lines.filter { $0.hasPrefix("checkpoint") }
        #expect(snaps >= 10)
        #expect(generations.count >= 3, "WAL generations seen: \(generations); writer: \(ckpts)")
        // Resets are followed incrementally; only the first snapshot reads everything (and a
        // cycle during which the WAL was reset under it, which is retried as a full read).
        #expect(fullReasons.first == .firstSnapshot)
        #expect(fullReasons.dropFirst().allSatisfy { $0 == .walResetDuringSnapshot }, "\(fullReasons)")
        #expect(fullReasons.count <= 1 + snaps / 4, "\(fullReasons)")
    }

    @Test("A rollback-journal database is read whole under a read lock when it changed, and not at all when it did not")
    func rollbackJournalDatabase() throws {
        let f = try Fixture(chunkSizeBytes: 64 * 1024)
        let path = f.dir.sub("games.db")
        try runWriter(["--db", path, "--mode", "delete", "--init", "1500"])
        // Few commits (a reader waits for each), 100 rows a second.
        let writer = try PythonWriter(["--db", path, "--mode", "delete", "--rate", "100", "--batch", "10", "--duration", "8"])
        defer { writer.stop() }
        let observer = try Observer(path)
        let s = try LiveDatabaseSnapshotter(path: path, store: f.store)
        var snaps = 0
        let deadline = Date().addingTimeInterval(7)
        while Date() < deadline {
            Thread.sleep(forTimeInterval: 0.5)
            let before = try observer.committed()
            guard let snap = try s.snapshot() else { continue }
            snaps += 1
            #expect(snap.journalMode == .rollback)
            #expect(snap.counters.full && (snap.counters.fullReason == .rollbackJournal || snaps == 1))
            #expect(snap.counters.bytesRead >= snap.sizeBytes)
            try expectValid(snap, store: f.store, dir: f.dir, committedBefore: before, label: "cycle \(snaps)")
        }
        _ = writer.wait(seconds: 10)
        #expect(snaps >= 3)
        let last = try observer.committed()
        if let snap = try s.snapshot() {
            try expectValid(snap, store: f.store, dir: f.dir, committedBefore: last, label: "final")
        }
        #expect(try s.snapshot() == nil)
        let idle = try #require(s.lastCounters)
        #expect(idle.bytesRead < 4096, "an unchanged rollback database should cost a header read: \(describe(idle))")
    }

    @Test("A new snapshotter on the same store continues where the last one stopped and writes only changed chunks")
    func continuityAcrossRestarts() throws {
        let f = try Fixture(chunkSizeBytes: 64 * 1024)
        let path = f.dir.sub("games.db")
        try runWriter(["--db", path, "--init", "12000"])
        // Like a selfplay process that keeps its connection: the WAL is not deleted between runs.
        let keepOpen = try Observer(path)
        _ = try keepOpen.committed()
        var first: LiveDatabaseSnapshotter? = try LiveDatabaseSnapshotter(path: path, store: f.store)
        let base = try #require(try first!.snapshot())
        // Short runs: fewer frames than SQLite's autocheckpoint (1000), so the writer alone
        // does not reset the WAL.
        try runWriter(["--db", path, "--rate", "100", "--duration", "0.5"])
        _ = try first!.snapshot()
        first = nil  // as if meshnode was killed: nothing is closed cleanly beyond SQLite's own

        // 1. Writes while no snapshotter runs, same WAL generation: continue incrementally.
        try runWriter(["--db", path, "--rate", "100", "--duration", "0.5"])
        let store2 = try Store.open(dataDir: f.dataDir)
        let second = try LiveDatabaseSnapshotter(path: path, store: store2)
        #expect(second.lastContentID != nil)
        let a = try #require(try second.snapshot())
        #expect(!a.counters.full, "\(describe(a.counters))")
        #expect(a.counters.newChunkBytes <= UInt64(a.counters.chunksTouched) * 64 * 1024)
        try expectValid(a, store: store2, dir: f.dir, committedBefore: try keepOpen.committed(), label: "after restart")
        second.close()

        // 2. The WAL reset while nobody watched: a full read, which still stores only what changed.
        try runWriter(["--db", path, "--rate", "200", "--duration", "0.5", "--checkpoint-every", "0.2",
                       "--checkpoint-modes", "TRUNCATE"])
        try runWriter(["--db", path, "--rate", "200", "--duration", "0.5"])
        let third = try LiveDatabaseSnapshotter(path: path, store: try Store.open(dataDir: f.dataDir))
        let b = try #require(try third.snapshot())
        #expect(b.counters.full && b.counters.fullReason == .walChangedWhileNotWatching, "\(describe(b.counters))")
        #expect(b.counters.newChunkBytes < b.sizeBytes / 4, "a full read rewrote unchanged chunks: \(describe(b.counters))")
        #expect(b.counters.chunksChanged < base.recipe.chunkCount / 2)
        try expectValid(b, store: f.store, dir: f.dir, committedBefore: try keepOpen.committed(), label: "after reset")
        let c = try third.snapshot()
        #expect(c == nil)
    }

    @Test("Frames of a transaction that never commits are in no snapshot, even when its writer is killed")
    func killedWALWriter() throws {
        let f = try Fixture(chunkSizeBytes: 64 * 1024)
        let path = f.dir.sub("games.db")
        try runWriter(["--db", path, "--init", "1000"])
        let observer = try Observer(path)
        _ = try observer.committed()
        let s = try LiveDatabaseSnapshotter(path: path, store: f.store)
        _ = try #require(try s.snapshot())
        // Transactions of 4000 rows (4 MB: more than SQLite's page cache, so they spill frames
        // into the WAL before their commit).
        let writer = try PythonWriter(["--db", path, "--rate", "8000", "--batch", "4000", "--duration", "30"])
        var taken = [LiveDatabaseSnapshotter.Snapshot]()
        let killAt = Date().addingTimeInterval(2.5)
        while Date() < killAt {
            Thread.sleep(forTimeInterval: 0.2)
            if let snap = try s.snapshot() { taken.append(snap) }
        }
        kill(writer.process.processIdentifier, SIGKILL)
        writer.process.waitUntilExit()
        let committed = try observer.committed()
        if let snap = try s.snapshot() { taken.append(snap) }
        #expect(taken.count >= 2)
        for (k, snap) in taken.enumerated() {
            let out = f.dir.sub("k\(k).db")
            try exportSnapshot(snap.recipe, store: f.store, to: out)
            let c = try checkImage(out, upTo: committed)
            #expect(c.integrity == "ok" && c.badPayloads == 0, "\(c)")
            #expect(c.maxID <= committed, "snapshot \(k) holds rows of a transaction that never committed: \(c)")
            #expect(c.maxID % 4000 == 1000 % 4000, "snapshot \(k) ends inside a transaction: \(c)")
            if k == taken.count - 1 { #expect(c.maxID == committed, "\(c)") }
        }
    }

    @Test("A rollback-journal writer killed mid-transaction leaves a hot journal that SQLite rolls back before the snapshot reads")
    func hotJournal() throws {
        let f = try Fixture(chunkSizeBytes: 64 * 1024)
        let path = f.dir.sub("games.db")
        try runWriter(["--db", path, "--mode", "delete", "--init", "1000"])
        // Kill it while a transaction has written into its journal (the journal is hot). On a
        // busy machine the kill can land just after a commit: try again, a few times.
        for _ in 0..<6 {
            let writer = try PythonWriter(["--db", path, "--mode", "delete", "--rate", "8000", "--batch", "4000", "--duration", "30"])
            let deadline = Date().addingTimeInterval(20)
            while Date() < deadline && fileSize(path + "-journal") <= 0 { Thread.sleep(forTimeInterval: 0.001) }
            kill(writer.process.processIdentifier, SIGKILL)
            writer.process.waitUntilExit()
            if fileSize(path + "-journal") > 0 { break }
        }
        #expect(fileSize(path + "-journal") > 0, "the writer left no hot journal")
        let s = try LiveDatabaseSnapshotter(path: path, store: f.store)
        let snap = try #require(try s.snapshot())
        // (What is left of the journal, if anything, is no longer hot: SQLite rolled it back, or
        // found it was killed before it wrote the database file.)
        let observer = try Observer(path)
        let committed = try observer.committed()
        let out = f.dir.sub("hot.db")
        try exportSnapshot(snap.recipe, store: f.store, to: out)
        let c = try checkImage(out, upTo: committed)
        #expect(c.integrity == "ok" && c.badPayloads == 0 && c.maxID == committed && c.rowsUpTo == committed, "\(c)")
    }
}

/// Drives `scripts/bench-sqlite-snapshot.py`: snapshots the database the script prepared (and
/// keeps writing to) every `MESHNODE_BENCH_SQLITE_INTERVAL` seconds for
/// `MESHNODE_BENCH_SQLITE_DURATION` seconds, printing one `LIVESQLITE_BENCH {json}` line per
/// cycle. Asserts nothing about speed.
@Suite("Live SQLite snapshot benchmark", .ownThread(timeLimit: .minutes(30)),
       .enabled(if: ProcessInfo.processInfo.environment["MESHNODE_BENCH_SQLITE_DB"] != nil))
struct LiveSQLiteBenchmark {
    @Test("Per-cycle cost of snapshotting a database under a steady writer")
    func cycles() throws {
        let env = ProcessInfo.processInfo.environment
        let path = try #require(env["MESHNODE_BENCH_SQLITE_DB"])
        let dataDir = try #require(env["MESHNODE_BENCH_SQLITE_STORE"])
        let interval = Double(env["MESHNODE_BENCH_SQLITE_INTERVAL"] ?? "5") ?? 5
        let duration = Double(env["MESHNODE_BENCH_SQLITE_DURATION"] ?? "60") ?? 60
        let chunk = UInt32(env["MESHNODE_BENCH_SQLITE_CHUNK_BYTES"] ?? "") ?? Chunking.defaultChunkSizeBytes
        let imageChunk = UInt32(env["MESHNODE_BENCH_SQLITE_IMAGE_CHUNK_BYTES"] ?? "") ?? LiveSQLite.defaultMaxImageChunkSizeBytes
        let (store, _) = try Store.initialize(dataDir: dataDir, name: "bench", chunkSizeBytes: chunk)
        let observer = try Observer(path)
        let s = try LiveDatabaseSnapshotter(path: path, store: store, options: .init(maxImageChunkSizeBytes: imageChunk))
        let end = Date().addingTimeInterval(duration)
        var cycle = 0
        var next = Date()
        while cycle == 0 || Date() < end {
            Thread.sleep(until: next)
            next = next.addingTimeInterval(interval)
            let before = try observer.committed()
            let snap = try s.snapshot()
            let c = try #require(s.lastCounters)
            let line: [String: Any] = [
                "cycle": cycle, "db_bytes": fileSize(path), "wal_bytes": c.walBytes, "image_bytes": snap?.sizeBytes ?? 0,
                "bytes_read": c.bytesRead, "bytes_hashed": c.bytesHashed, "new_chunk_bytes": c.newChunkBytes,
                "chunks_touched": c.chunksTouched, "chunks_changed": c.chunksChanged, "pages_changed": c.pagesChanged,
                "wal_frames_scanned": c.walFramesScanned, "wal_frames": c.walFrames, "full": c.full,
                "full_reason": c.fullReason?.rawValue ?? "", "wal_generation": c.walGeneration.map { Int($0) } ?? -1,
                "assisted": c.walRestartAssisted, "write_locked": c.walWriteLocked,
                "checkpoint": c.checkpoint.map { "\($0.checkpointedFrames)/\($0.logFrames)" } ?? "", "attempts": c.attempts, "duration_ms": c.durationMs,
                "changed": snap != nil, "rows_committed_before": before, "image_chunk_bytes": s.imageChunkSizeBytes,
            ]
            let json = try JSONSerialization.data(withJSONObject: line, options: [.sortedKeys])
            print("LIVESQLITE_BENCH " + String(decoding: json, as: UTF8.self))
            cycle += 1
        }
    }
}

/// Needs about 4 GiB of disk and a minute: run with `MESHNODE_BIG_TESTS=1`.
@Suite("Live SQLite snapshots of databases over 1 GiB", .ownThread(timeLimit: .minutes(10)),
       .enabled(if: ProcessInfo.processInfo.environment["MESHNODE_BIG_TESTS"] != nil))
struct LiveSQLiteBigTests {
    @Test("A database growing past 1 GiB stays incremental: the lock-byte page, in no WAL frame, is zeros in every image")
    func growingPastTheLockBytePage() throws {
        let f = try Fixture(chunkSizeBytes: Chunking.defaultChunkSizeBytes)
        let path = f.dir.sub("big.db")
        try runWriter(["--db", path, "--init", "10"])
        let w = try Database(path: path, create: false)
        try w.exec("CREATE TABLE big(x BLOB)")
        // (A blob is at most 1e9 bytes.)
        try w.exec("WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 4) INSERT INTO big SELECT zeroblob(255 * 1024 * 1024) FROM c")
        try w.exec("PRAGMA wal_checkpoint(TRUNCATE)")
        #expect(fileSize(path) < 1 << 30)
        let s = try LiveDatabaseSnapshotter(path: path, store: f.store)
        let first = try #require(try s.snapshot())
        #expect(first.sizeBytes < 1 << 30)
        try w.exec("INSERT INTO big VALUES(zeroblob(16 * 1024 * 1024))")
        for id in Int64(11)...20 { try insertRow(w, id: id) }
        let second = try #require(try s.snapshot())
        #expect(second.sizeBytes > 1 << 30)
        #expect(!second.counters.full, "\(describe(second.counters))")
        let g = try Fixture(chunkSizeBytes: Chunking.defaultChunkSizeBytes, label: "full")
        let fresh = try #require(try LiveDatabaseSnapshotter(path: path, store: g.store).snapshot())
        #expect(fresh.contentID == second.contentID)
    }
}
