import Foundation
@testable import Store
import TestSupport
import Testing

/// A store with versions, for garbage collection tests (64 KiB chunks).
struct GCFixture {
    let f: Fixture
    var store: Store { f.store }
    var dataDir: String { f.dataDir }
    /// The file each put was made from, by content id.
    var files: [ContentID: String] = [:]

    init() throws { f = try Fixture(label: "gc") }

    /// Puts `size` pseudo-random bytes from `seed` as a new version of `name`.
    @discardableResult
    mutating func put(_ name: String, size: Int = 300_000, seed: UInt64, type: ItemType = .model) throws -> ManifestEntry {
        let file = f.dir.sub("\(name)-\(seed)-\(size).bin")
        try writePseudoRandomFile(file, size: size, seed: seed)
        return try put(name, file: file, type: type)
    }

    /// Puts `file` as a new version of `name`.
    @discardableResult
    mutating func put(_ name: String, file: String, type: ItemType = .model, into store: Store? = nil) throws -> ManifestEntry {
        let e = try (store ?? f.store).ingest(path: file, name: name, type: type, signer: f.identity).entry
        files[e.contentID] = file
        return e
    }

    /// The chunk hashes of `e`'s content (from the file it was put from).
    func chunkHashes(_ e: ManifestEntry) throws -> Set<String> {
        let bytes = try readBytes(try #require(files[e.contentID]))
        var out = Set<String>()
        var i = 0
        while i < bytes.count {
            let end = min(bytes.count, i + Int(store.config.chunkSizeBytes))
            out.insert(bytes[i..<end].withUnsafeBytes { Blake2b256.hash($0) }.hex)
            i = end
        }
        return out
    }

    /// The content of `e` exports complete and byte for byte as it was put.
    func exportsExactly(_ e: ManifestEntry, from s: Store? = nil) throws -> Bool {
        let st = s ?? store
        guard try st.isComplete(e.contentID) else { return false }
        let out = f.dir.sub("export-\(FS.randomToken())")
        defer { FS.unlink(out) }
        try st.export(ItemInfo(entry: e, receivedAtMs: 0, isComplete: true), to: out)
        return try readBytes(out) == readBytes(try #require(files[e.contentID]))
    }

    func disk() throws -> DiskState { try DiskState(dataDir: dataDir) }
}

/// The `chunks` table, the chunk files and the journal, read straight from disk.
struct DiskState {
    var recorded: Set<String> = []
    var files: Set<String> = []
    var journalled: Set<String> = []
    var recipes = 0

    init(dataDir: String) throws {
        let db = try Database(path: "\(dataDir)/\(Store.databaseFileName)", create: false)
        for row in try db.query("SELECT lower(hex(hash)) FROM chunks") { if case .text(let h) = row[0] { recorded.insert(h) } }
        for row in try db.query("SELECT lower(hex(hash)) FROM chunk_writes") { if case .text(let h) = row[0] { journalled.insert(h) } }
        recipes = Int(try db.scalarInt("SELECT count(*) FROM recipes") ?? 0)
        for sub in (try? FileManager.default.contentsOfDirectory(atPath: "\(dataDir)/chunks")) ?? [] {
            for name in (try? FileManager.default.contentsOfDirectory(atPath: "\(dataDir)/chunks/\(sub)")) ?? [] where name.count == 64 {
                files.insert(name)
            }
        }
    }

    /// The store's invariant: every recorded chunk has its file.
    var recordedWithoutFile: Set<String> { recorded.subtracting(files) }
    var unrecordedFiles: Set<String> { files.subtracting(recorded) }
}

/// A writer stamp of a process that is gone (an earlier boot): a collection "killed" by a test.
let deadCollector = WriterStamp(bootID: "0-earlier-boot", pid: 4242, startTicks: 77)

struct SimulatedCrash: Error {}

@Suite("Garbage collection", .ownThread(timeLimit: .minutes(3)))
struct GarbageCollectorTests {
    static let keepOneModel = KeepPolicy(keepVersions: [.model: 1])
    static let keepTwoModels = KeepPolicy(keepVersions: [.model: 2])

    @Test("A collection deletes the versions the policy no longer keeps and leaves every kept one complete and exact")
    func deletesWhatIsNotKept() throws {
        var g = try GCFixture()
        let v1 = try g.put("model.onnx", seed: 1)
        let v2 = try g.put("model.onnx", seed: 2)
        let v3 = try g.put("model.onnx", seed: 3)
        let before = try g.disk()
        #expect(before.recorded.count == 15 && before.files.count == 15)
        #expect(try g.store.reclaimable(policy: Self.keepTwoModels) == Reclaimable(chunks: 5, bytes: 300_000))
        let r = try g.store.collectGarbage(GarbageCollectionOptions(policy: Self.keepTwoModels))
        #expect(r.contentsReleased == 1 && r.recipesDeleted == 1 && r.chunksDeleted == 5 && r.bytesReclaimed == 300_000)
        #expect(r.deletedContents == [v1.contentID] && !r.dryRun && r.replans == 0)
        #expect(try g.store.recipe(v1.contentID) == nil)
        #expect(try !g.store.isComplete(v1.contentID))
        let after = try g.disk()
        #expect(after.recorded == after.files && after.journalled.isEmpty)
        #expect(after.recorded == (try g.chunkHashes(v2)).union(try g.chunkHashes(v3)))
        #expect(try g.exportsExactly(v2) && g.exportsExactly(v3))
        #expect(try g.store.verify().ok)
        #expect(try g.store.reclaimable(policy: Self.keepTwoModels) == Reclaimable())
        // Nothing more to do.
        let again = try g.store.collectGarbage(GarbageCollectionOptions(policy: Self.keepTwoModels))
        #expect(again.recipesDeleted == 0 && again.chunksDeleted == 0)
    }

    @Test("Chunks a kept version shares with a released one stay, and only the released one's own chunks go")
    func sharedChunksStay() throws {
        var g = try GCFixture()
        let v1 = try g.put("model.onnx", size: 400_000, seed: 10)
        // Version 2: the same first 4 chunks, then different bytes.
        var bytes = try readBytes(try #require(g.files[v1.contentID]))
        for i in (4 * 65_536)..<bytes.count { bytes[i] ^= 0x5a }
        let file2 = g.f.dir.sub("v2.bin")
        try Data(bytes).write(to: URL(fileURLWithPath: file2))
        let v2 = try g.put("model.onnx", file: file2)
        let shared = try g.chunkHashes(v1).intersection(try g.chunkHashes(v2))
        #expect(shared.count == 4)
        let r = try g.store.collectGarbage(GarbageCollectionOptions(policy: Self.keepOneModel))
        #expect(r.recipesDeleted == 1 && r.chunksDeleted == 3)
        #expect(r.bytesReclaimed == UInt64(400_000 - 4 * 65_536))
        let d = try g.disk()
        #expect(d.recorded == (try g.chunkHashes(v2)) && d.files == d.recorded)
        #expect(try g.exportsExactly(v2))
    }

    @Test("A content stays while a kept version of any name references it, and deleted and expired versions are reclaimed")
    func keptByAnyName() throws {
        var g = try GCFixture()
        let file = g.f.dir.sub("weights.bin")
        try writePseudoRandomFile(file, size: 200_000, seed: 20)
        let a = try g.put("a.pt", file: file, type: .checkpoint)
        let b = try g.put("b.pt", file: file, type: .checkpoint)
        #expect(a.contentID == b.contentID)
        _ = try g.store.delete("a.pt", signer: g.f.identity)
        var r = try g.store.collectGarbage(GarbageCollectionOptions())
        #expect(r.recipesDeleted == 0 && r.chunksDeleted == 0)
        #expect(try g.exportsExactly(b))
        _ = try g.store.delete("b.pt", signer: g.f.identity)
        r = try g.store.collectGarbage(GarbageCollectionOptions())
        #expect(r.contentsReleased == 1 && r.chunksDeleted == 4)
        // Retention: a version past its expiry is not kept either.
        let policy = KeepPolicy(retentionMs: [.npz: 1_000])
        let e = try g.store.ingest(path: file, name: "shard.npz", type: .npz, signer: g.f.identity, policy: policy,
                                   nowMs: WallClock.nowMs() - 10_000).entry
        #expect(e.put?.expiresAtMs ?? 0 > 0)
        r = try g.store.collectGarbage(GarbageCollectionOptions())
        #expect(r.contentsReleased == 1 && r.chunksDeleted == 4)
        #expect(try g.disk().recorded.isEmpty && g.disk().files.isEmpty)
    }

    @Test("Pinned recipes stay although nothing keeps them: a download in progress, a live snapshot's base")
    func pinnedRecipesStay() throws {
        var g = try GCFixture()
        let v1 = try g.put("model.onnx", seed: 30)
        _ = try g.put("model.onnx", seed: 31)
        let pins = ContentPins()
        pins.pin(v1.contentID)
        // Pinned after the plan was made: the transaction reads the pins itself.
        var r = try g.store.collectGarbage(GarbageCollectionOptions(policy: Self.keepOneModel, pins: pins))
        #expect(r.recipesDeleted == 0 && r.recipesPinned == 1 && r.chunksDeleted == 0)
        #expect(try g.store.reclaimable(policy: Self.keepOneModel, pinned: [v1.contentID]) == Reclaimable())
        pins.unpin(v1.contentID)
        // A live snapshotter's last snapshot (its `node_state` row) pins its content the same way.
        let st = LiveSnapshotState(mode: .rollback, device: 1, inode: 2, contentID: v1.contentID, sizeBytes: 300_000,
                                   chunkSizeBytes: 65_536, pageSize: 4096, position: nil, changeCounter: 1, fileSizeBytes: 300_000, mtimeNs: 0)
        #expect(try g.store.recordLiveSnapshot(recipe: nil, chunks: [], state: st, path: "/nonexistent/games.db"))
        r = try g.store.collectGarbage(GarbageCollectionOptions(policy: Self.keepOneModel, pins: pins))
        #expect(r.recipesDeleted == 0 && r.recipesPinned == 1)
        try g.f.db().query("DELETE FROM node_state WHERE key = ?", [.text(LiveSnapshotState.key(path: "/nonexistent/games.db"))])
        r = try g.store.collectGarbage(GarbageCollectionOptions(policy: Self.keepOneModel, pins: pins))
        #expect(r.recipesDeleted == 1 && r.chunksDeleted == 5)
    }

    @Test("A dry run reports exactly what the collection then deletes, and deletes nothing")
    func dryRunMatches() throws {
        var g = try GCFixture()
        for seed in 40..<45 as Range<Int> { try g.put("model.onnx", size: 150_000 + Int(seed) * 1000, seed: UInt64(seed)) }
        try g.put("other.bin", seed: 46, type: .other)
        let before = try g.disk()
        var dry = try g.store.collectGarbage(GarbageCollectionOptions(policy: Self.keepTwoModels, dryRun: true))
        #expect(dry.dryRun && dry.contentsReleased == 3 && dry.chunksDeleted == 9)
        #expect(try g.disk().recorded == before.recorded && g.disk().files == before.files && g.disk().recipes == before.recipes)
        let reclaim = try g.store.reclaimable(policy: Self.keepTwoModels)
        #expect(reclaim.bytes == dry.bytesReclaimed && reclaim.chunks == dry.chunksDeleted)
        let real = try g.store.collectGarbage(GarbageCollectionOptions(policy: Self.keepTwoModels))
        dry.dryRun = false
        dry.durationMs = real.durationMs
        #expect(real == dry)
    }

    @Test("A put that reused chunks a concurrent collection then deleted stores them again before it commits")
    func putRacingACollection() throws {
        var g = try GCFixture()
        let file = g.f.dir.sub("games.npz")
        try writePseudoRandomFile(file, size: 500_000, seed: 50)
        _ = try g.put("old.npz", file: file, type: .npz)
        _ = try g.store.delete("old.npz", signer: g.f.identity)  // its content is garbage now
        // Another process's collection runs between the put's dedup check and its commit.
        let other = try Store.open(dataDir: g.dataDir)
        var collected: GarbageReport?
        g.store.testHooks.beforeRecording = { label in
            guard label == "ingest", collected == nil else { return }
            collected = try? other.collectGarbage(GarbageCollectionOptions())
        }
        let r = try g.store.ingest(path: file, name: "new.npz", type: .npz, signer: g.f.identity)
        #expect(collected?.chunksDeleted == 8, "the collection deleted the chunks the put found stored")
        #expect(r.newChunks == 0)
        let d = try g.disk()
        #expect(d.recordedWithoutFile.isEmpty, "recorded without a file: \(d.recordedWithoutFile.count)")
        #expect(d.recorded == d.files && d.recorded.count == 8)
        #expect(try g.store.verify().ok)
        let e = r.entry
        g.files[e.contentID] = file
        #expect(try g.exportsExactly(e))
        #expect(try other.collectGarbage(GarbageCollectionOptions()).chunksDeleted == 0)
    }

    @Test("A live snapshot that reused chunks a concurrent collection then deleted is built again before it is recorded")
    func snapshotRacingACollection() throws {
        let g = try GCFixture()
        let path = g.f.dir.sub("games.db")
        do {
            let db = try Database(path: path)
            try db.exec("PRAGMA page_size = 4096; PRAGMA journal_mode = DELETE; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
            for i in 0..<100 { try db.query("INSERT INTO t(id, v) VALUES(?, randomblob(3000))", [.int(Int64(i))]) }
        }
        let s = try LiveDatabaseSnapshotter(path: path, store: g.store)
        let first = try #require(try s.snapshot())
        do {
            let db = try Database(path: path)
            for i in 100..<150 { try db.query("INSERT INTO t(id, v) VALUES(?, randomblob(3000))", [.int(Int64(i))]) }
        }
        // The same bytes are put (and deleted) elsewhere: the next snapshot finds its new chunks stored.
        let copy = g.f.dir.sub("copy.db")
        try FileManager.default.copyItem(atPath: path, toPath: copy)
        let put = try g.store.ingest(path: copy, name: "copy.db", type: .game, signer: g.f.identity).entry
        _ = try g.store.delete("copy.db", signer: g.f.identity)
        let other = try Store.open(dataDir: g.dataDir)
        var collected: GarbageReport?
        g.store.testHooks.beforeRecording = { label in
            guard label == "live-snapshot", collected == nil else { return }
            collected = try? other.collectGarbage(GarbageCollectionOptions())
        }
        let second = try #require(try s.snapshot())
        #expect(second.contentID == put.contentID, "a rollback-journal image is the file's bytes")
        #expect(second.contentID != first.contentID)
        #expect((collected?.chunksDeleted ?? 0) > 0, "the collection deleted chunks the snapshot reused")
        #expect(second.counters.attempts == 2, "the cycle was run again")
        let d = try g.disk()
        #expect(d.recordedWithoutFile.isEmpty, "recorded without a file: \(d.recordedWithoutFile.count)")
        #expect(try g.store.isComplete(second.contentID))
        #expect(try g.store.verify().ok)
        let (e, _) = try g.store.recordVersion(of: second.contentID, name: "games.db", type: .game, signer: g.f.identity)
        let out = g.f.dir.sub("out.db")
        try g.store.export(ItemInfo(entry: e, receivedAtMs: 0, isComplete: true), to: out)
        #expect(try readBytes(out) == readBytes(copy))
    }

    @Test("A crash at any step of a collection leaves every kept version complete; the next open and collection finish the job",
          arguments: [GarbageStep.planned, .deletingRecipes, .unrecording, .unrecorded, .unlinking])
    func crashAtEachStep(step: GarbageStep) throws {
        var g = try GCFixture()
        var kept = [ManifestEntry]()
        for name in ["a.onnx", "b.onnx"] {
            for seed in 0..<4 {
                let e = try g.put(name, size: 100_000 + Int(seed) * 30_000, seed: UInt64(name.hashValue & 0xffff) &+ UInt64(seed))
                if seed >= 2 { kept.append(e) }
            }
        }
        let policy = Self.keepTwoModels
        let garbage = try g.store.reclaimable(policy: policy)
        #expect(garbage.chunks > 6)
        // The collection "dies" at the second time it reaches `step` (small batches: several of each;
        // the plan and the one recipe transaction come once).
        var hits = 0
        g.store.testHooks.gcStep = { (s) throws(MeshError) in
            guard s == step else { return }
            hits += 1
            if hits == ([.planned, .deletingRecipes].contains(step) ? 1 : 2) { throw MeshError(.internalError, "simulated crash at \(s)") }
        }
        var o = GarbageCollectionOptions(policy: policy, batchFiles: 3)
        o.stamp = deadCollector
        #expect(meshError { _ = try g.store.collectGarbage(o) }?.message.hasPrefix("simulated crash") == true)
        g.store.testHooks.gcStep = nil
        let crashed = try g.disk()
        #expect(crashed.recordedWithoutFile.isEmpty, "\(step): recorded without a file")
        #expect(crashed.unrecordedFiles.isSubset(of: crashed.journalled), "\(step): unrecorded and not journalled")
        // The next open finishes the dead collection's deletions.
        let reopened = try Store.open(dataDir: g.dataDir)
        let settled = try g.disk()
        #expect(settled.journalled.isEmpty && settled.unrecordedFiles.isEmpty, "\(step)")
        let report = try reopened.verify()
        #expect(report.ok && report.garbageRecordsDropped == 0, "\(step)")
        for e in kept { #expect(try g.exportsExactly(e, from: reopened), "\(step): \(e.name)") }
        // A second collection completes the job.
        _ = try reopened.collectGarbage(GarbageCollectionOptions(policy: policy, batchFiles: 3))
        let done = try g.disk()
        #expect(done.recorded == done.files && done.journalled.isEmpty, "\(step)")
        var want = Set<String>()
        for e in kept { want.formUnion(try g.chunkHashes(e)) }
        #expect(done.recorded == want, "\(step)")
        #expect(try reopened.reclaimable(policy: policy) == Reclaimable())
    }

    @Test("An entry that arrives while a collection deletes recipes makes it plan again, and what it made kept stays")
    func entriesArrivingMeanwhileReplan() throws {
        var g = try GCFixture()
        let v1 = try g.put("model.onnx", seed: 60)
        let v2 = try g.put("model.onnx", seed: 61)
        let v3 = try g.put("model.onnx", seed: 62)
        let other = try Store.open(dataDir: g.dataDir)
        var putAgain: ManifestEntry?
        g.store.testHooks.gcStep = { (s) throws(MeshError) in
            guard s == .planned, putAgain == nil else { return }
            // Another process puts version 1's bytes again: its content is the newest version now.
            putAgain = try other.ingest(path: g.files[v1.contentID]!, name: "model.onnx", type: .model, signer: g.f.identity).entry
        }
        let r = try g.store.collectGarbage(GarbageCollectionOptions(policy: Self.keepTwoModels))
        #expect(putAgain?.contentID == v1.contentID)
        #expect(r.replans == 1)
        #expect(r.deletedContents == [v2.contentID])
        #expect(try g.exportsExactly(v1) && g.exportsExactly(v3))
        #expect(try !g.store.isComplete(v2.contentID))
    }

    @Test("A chunk file a live writer has journalled is never deleted, even once the collection unrecorded its chunk")
    func journalledFileSurvives() throws {
        var g = try GCFixture()
        let v1 = try g.put("model.onnx", size: 65_536, seed: 70)
        _ = try g.put("model.onnx", size: 65_536, seed: 71)
        let h = try #require(try g.store.recipe(v1.contentID)?.chunks.first)
        g.store.testHooks.gcStep = { (s) throws(MeshError) in
            guard s == .unrecorded else { return }
            // A writer of this process saw the chunk unrecorded, wrote it again and is about to
            // name it: its journal row is there before the name.
            try g.store.beginChunkWrites([h], writer: .current)
        }
        let r = try g.store.collectGarbage(GarbageCollectionOptions(policy: Self.keepOneModel))
        g.store.testHooks.gcStep = nil
        #expect(r.chunksDeleted == 1)
        #expect(FS.exists(g.store.chunkPath(h)), "the file a live writer journalled was deleted")
        try g.store.recordChunks([(h, 65_536)], writer: .current, nowMs: WallClock.nowMs())
        let d = try g.disk()
        #expect(d.recorded == d.files && d.journalled.isEmpty)
    }

    @Test("An unrecorded file that a collection unlinks while an open settles it is not recorded without its file")
    func settlingRacesAnUnlink() throws {
        var g = try GCFixture()
        let v1 = try g.put("model.onnx", size: 65_536, seed: 90)
        let h = try #require(try g.store.recipe(v1.contentID)?.chunks.first)
        let settling = try Store.open(dataDir: g.dataDir)
        // The chunk is unrecorded (a collection's first transaction) and a dead writer's journal
        // row names it, so an open settles its file.
        try g.f.db().query("DELETE FROM chunks WHERE hash = ?", [.blob(h.digest.bytes)])
        try g.f.db().query("INSERT INTO chunk_writes(hash, writer) VALUES(?, ?)",
                           [.blob(h.digest.bytes), .text(deadCollector.description)])
        // The collection's second transaction runs between the settling's hash check and its record.
        var unlinked = false
        settling.testHooks.beforeRecording = { label in
            guard label == "settle", !unlinked else { return }
            unlinked = true
            try? g.store.unlinkUnrecorded([h], writer: Store.gcWriter(.current))
        }
        let result = try settling.finishInterruptedChunkWrites()
        #expect(unlinked)
        #expect(result.recorded == 0)
        let d = try g.disk()
        #expect(d.recordedWithoutFile.isEmpty, "recorded without a file")
        #expect(d.journalled.isEmpty)
    }

    @Test("Verify takes a recorded chunk without a file that no recipe needs for garbage, not damage")
    func verifyTreatsUnreferencedMissingAsGarbage() throws {
        var g = try GCFixture()
        let v1 = try g.put("model.onnx", size: 130_000, seed: 80)
        let v2 = try g.put("model.onnx", size: 130_000, seed: 81)
        let r1 = try #require(try g.store.recipe(v1.contentID))
        // v1's recipe is gone (a collection deleted it), its chunks' files too, their rows not.
        try g.f.db().query("DELETE FROM recipe_chunks WHERE content_id = ?", [.blob(v1.contentID.digest.bytes)])
        try g.f.db().query("DELETE FROM recipes WHERE content_id = ?", [.blob(v1.contentID.digest.bytes)])
        for c in r1.chunks { FS.unlink(g.store.chunkPath(c)) }
        let report = try g.store.verify()
        #expect(report.ok && report.badChunks.isEmpty)
        #expect(report.garbageRecordsDropped == r1.chunks.count)
        let d = try g.disk()
        #expect(d.recorded == d.files)
        #expect(try g.exportsExactly(v2))
    }
}
