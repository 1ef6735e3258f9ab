import Foundation
@testable import Store
import TestSupport
import Testing

/// The `chunks` table and the chunk files must never disagree for good. These tests make each
/// kind of disagreement directly (as a crash, a power loss or a damaged disk would leave it)
/// and check that opening, fetching and verifying each bring the two back together.
@Suite("Store record and chunk files", .ownThread(timeLimit: .minutes(2)))
struct ChunkRecordTests {
    /// A store `dst` that knows item `data.bin` (recipe and entry) from `src` but holds none of
    /// its chunks yet, as a node that is about to fetch it.
    struct Fetching {
        let src: Fixture
        let dst: Fixture
        let entry: ManifestEntry
        let chunks: [ChunkHash]
        let file: String

        init(size: Int = 400_000) throws {
            src = try Fixture(label: "src")
            dst = try Fixture(label: "dst")
            file = src.dir.sub("data.bin")
            try writePseudoRandomFile(file, size: size, seed: 77)
            entry = try src.store.ingest(path: file, signer: src.identity).entry
            let r = try #require(try src.store.recipe(entry.contentID))
            chunks = r.chunks
            try dst.store.insertRecipe(contentID: r.contentID, sizeBytes: r.sizeBytes, chunkSizeBytes: r.chunkSizeBytes, chunks: r.chunks)
            _ = try dst.store.insertRemoteEntry(entry, verifier: Ed25519Verifier())
        }

        func bytes(_ i: Int) throws -> [UInt8] { try src.store.readChunk(chunks[i]) }

        /// Puts chunk `i`'s file under its final name in `dst` without recording it, as a
        /// writer killed between naming and recording leaves it; `damaged` flips a byte first.
        func nameWithoutRecording(_ i: Int, damaged: Bool = false) throws {
            var b = try bytes(i)
            if damaged { b[100] ^= 0xff }
            try Data(b).write(to: URL(fileURLWithPath: dst.store.chunkPath(chunks[i])))
        }

        /// Adds the journal row such a writer committed before naming the file.
        func journal(_ i: Int, writer: String) throws {
            try dst.db().query("INSERT INTO chunk_writes(hash, writer) VALUES(?, ?)", [.blob(chunks[i].digest.bytes), .text(writer)])
        }

        func reopen() throws -> Store { try Store.open(dataDir: dst.dataDir) }

        func exportMatches(_ store: Store) throws -> Bool {
            let out = dst.dir.sub("out-\(FS.randomToken()).bin")
            try store.export(try store.resolve("data.bin"), to: out)
            defer { FS.unlink(out) }
            return try hashOfFile(out) == hashOfFile(file)
        }
    }

    /// A writer stamp of a process that is gone: one from an earlier boot, one whose pid is
    /// unused in this boot.
    static let deadWriters = ["0-earlier-boot 4242 77", "\(WriterStamp.bootID) 2147483000 12345"]

    @Test("A chunk file a killed writer named but did not record is recorded at the next open, and the item completes")
    func namedNotRecordedIsRecordedAtOpen() throws {
        let t = try Fetching()
        try t.dst.store.writeChunks([(t.chunks[0], try t.bytes(0)), (t.chunks[1], try t.bytes(1))])
        // Chunks 2 and 3 were named by writers that died before recording them.
        try t.nameWithoutRecording(2)
        try t.journal(2, writer: Self.deadWriters[0])
        try t.nameWithoutRecording(3)
        try t.journal(3, writer: Self.deadWriters[1])
        // Until an open settles them, no reader counts them: the record is the one truth.
        #expect(!t.dst.store.hasChunk(t.chunks[2]))
        #expect(try t.dst.store.missingChunks(t.entry.contentID) == Array(t.chunks[2...]))
        #expect(try t.dst.store.items().first?.isComplete == false)
        let store = try t.reopen()
        #expect(try store.missingChunks(t.entry.contentID) == Array(t.chunks[4...]))
        #expect(try t.journalRows() == 0)
        try store.writeChunks(try (4..<t.chunks.count).map { (t.chunks[$0], try t.bytes($0)) })
        #expect(try store.isComplete(t.entry.contentID))
        #expect(try store.items().allSatisfy(\.isComplete))
        #expect(try store.status().incompleteItems == 0)
        #expect(try t.exportMatches(store))
        let report = try store.verify()
        #expect(report.ok)
        #expect(report.unrecordedFiles == ChunkSettlement())
    }

    @Test("At open, a journalled file with the wrong bytes is deleted, a journalled file that never got its name is forgotten")
    func badOrAbsentJournalledFilesAtOpen() throws {
        let t = try Fetching()
        try t.nameWithoutRecording(0, damaged: true)
        try t.journal(0, writer: Self.deadWriters[1])
        try t.journal(1, writer: Self.deadWriters[1])  // killed before naming it
        let store = try t.reopen()
        #expect(!FS.exists(store.chunkPath(t.chunks[0])))
        #expect(try store.missingChunks(t.entry.contentID) == t.chunks)
        #expect(try t.journalRows() == 0)
    }

    @Test("A write whose process still runs is left alone by an open and by verify, and finished by the next open after it dies")
    func liveWriterIsLeftAlone() throws {
        let t = try Fetching()
        // A live writer: this process (the journal row of a write in progress here).
        try t.nameWithoutRecording(0)
        try t.journal(0, writer: WriterStamp.current.description)
        try t.nameWithoutRecording(1, damaged: true)
        try t.journal(1, writer: WriterStamp.current.description)
        var store = try t.reopen()
        #expect(!store.hasChunk(t.chunks[0]))
        #expect(FS.exists(store.chunkPath(t.chunks[1])))
        #expect(try t.journalRows() == 2)
        // verify leaves them to their writer too.
        let report = try store.verify()
        #expect(report.unrecordedFiles.inFlight == 2)
        #expect(FS.exists(store.chunkPath(t.chunks[1])))
        // The writer dies (its rows now name a process that is gone): the next open settles them.
        try t.dst.db().query("UPDATE chunk_writes SET writer = ?", [.text(Self.deadWriters[1])])
        store = try t.reopen()
        #expect(store.hasChunk(t.chunks[0]))
        #expect(!FS.exists(store.chunkPath(t.chunks[1])))
        #expect(try t.journalRows() == 0)
    }

    @Test("The fetch path does not trust a file the store has not recorded: it writes the chunk again, replacing it, and records it")
    func fetchReplacesUnrecordedFile() throws {
        let t = try Fetching()
        // No journal row (a power loss can lose it): only the fetch path and verify see these.
        try t.nameWithoutRecording(0, damaged: true)
        try t.nameWithoutRecording(1)
        let store = try t.reopen()
        #expect(try store.missingChunks(t.entry.contentID) == t.chunks)
        try store.writeChunks(try t.chunks.indices.map { (t.chunks[$0], try t.bytes($0)) })
        #expect(try store.isComplete(t.entry.contentID))
        #expect(try store.readChunk(t.chunks[0]) == t.bytes(0))
        #expect(try t.exportMatches(store))
        let report = try store.verify()
        #expect(report.ok)
        #expect(report.unrecordedFiles == ChunkSettlement())
        #expect(try t.journalRows() == 0)
    }

    @Test("put does not dedup against a file the store has not recorded: it writes the chunk again")
    func putReplacesUnrecordedFile() throws {
        let f = try Fixture()
        let a = f.dir.sub("a.bin")
        try writePseudoRandomFile(a, size: 200_000, seed: 5)
        let hash = ChunkHash(digest: try readBytes(a)[0..<65_536].withUnsafeBytes { Blake2b256.hash($0) })
        var wrong = Array(try readBytes(a)[0..<65_536])
        wrong[9] ^= 1
        try Data(wrong).write(to: URL(fileURLWithPath: f.store.chunkPath(hash)))
        let r = try f.store.ingest(path: a, signer: f.identity)
        #expect(r.newChunks == r.chunkCount)
        #expect(try f.store.readChunk(hash) == Array(try readBytes(a)[0..<65_536]))
        #expect(try f.store.verify().ok)
        #expect(try f.journalRows() == 0)
    }

    @Test("verify settles files nothing records: the right bytes are recorded, wrong bytes deleted, and it says so")
    func verifySettlesUnrecordedFiles() throws {
        let t = try Fetching()
        try t.nameWithoutRecording(0)
        try t.nameWithoutRecording(1, damaged: true)
        try t.nameWithoutRecording(2)
        let report = try t.dst.store.verify()
        #expect(report.ok, "unrecorded files are not damage: nothing counted on them")
        #expect(report.badChunks.isEmpty)
        #expect(report.unrecordedFiles.recorded == 2)
        #expect(report.unrecordedFiles.removed == 1)
        #expect(report.chunksChecked == 0)
        #expect(t.dst.store.hasChunk(t.chunks[0]) && t.dst.store.hasChunk(t.chunks[2]))
        #expect(!FS.exists(t.dst.store.chunkPath(t.chunks[1])))
        #expect(try t.dst.store.missingChunks(t.entry.contentID) == [t.chunks[1]] + t.chunks[3...])
        #expect(try t.dst.store.verify().unrecordedFiles == ChunkSettlement())
    }

    @Test("A recorded chunk whose file is missing, truncated or wrong is damage: verify names it and the store stops counting it")
    func recordedWithoutGoodFile() throws {
        let t = try Fetching()
        try t.dst.store.writeChunks(try t.chunks.indices.map { (t.chunks[$0], try t.bytes($0)) })
        #expect(try t.dst.store.isComplete(t.entry.contentID))
        FS.unlink(t.dst.store.chunkPath(t.chunks[0]))
        #expect(truncate(t.dst.store.chunkPath(t.chunks[1]), 1000) == 0)
        flipByte(t.dst.store.chunkPath(t.chunks[2]), at: 7)
        let report = try t.dst.store.verify()
        #expect(!report.ok)
        let problems = Dictionary(uniqueKeysWithValues: report.badChunks.map { ($0.hash, $0.problem) })
        #expect(problems == [t.chunks[0]: .missing, t.chunks[1]: .wrongSize, t.chunks[2]: .hashMismatch])
        #expect(report.badChunks.allSatisfy { $0.dropped && $0.items.map(\.name) == ["data.bin"] })
        // Every reader now agrees the item is incomplete, and fetching the chunks again heals it.
        #expect(try t.dst.store.missingChunks(t.entry.contentID) == Array(t.chunks[0...2]))
        #expect(try t.dst.store.items().first?.isComplete == false)
        #expect(try t.dst.store.status().chunks == t.chunks.count - 3)
        #expect(try t.dst.store.verify().ok)
        try t.dst.store.writeChunks(try (0...2).map { (t.chunks[$0], try t.bytes($0)) })
        #expect(try t.exportMatches(t.dst.store))
    }

    @Test("A store from before the journal is swept once, at its first open: its unrecorded files are settled")
    func legacyStoreIsSweptOnce() throws {
        let t = try Fetching()
        try t.dst.db().query("DELETE FROM node_state WHERE key = ?", [.text(Store.sweptKey)])
        try t.nameWithoutRecording(0)
        try t.nameWithoutRecording(1, damaged: true)
        var store = try t.reopen()
        #expect(store.hasChunk(t.chunks[0]))
        #expect(!FS.exists(store.chunkPath(t.chunks[1])))
        // Once only: later opens read the journal alone (verify still finds the rest).
        try t.nameWithoutRecording(2)
        store = try t.reopen()
        #expect(!store.hasChunk(t.chunks[2]))
        #expect(try store.verify().unrecordedFiles.recorded == 1)
        #expect(store.hasChunk(t.chunks[2]))
    }

    @Test("Writer stamps: this process may be running; a pid from an earlier boot, an unused pid or a reused one is not")
    func writerStamps() throws {
        let me = WriterStamp.current
        #expect(me.pid == getpid())
        #expect(me.startTicks > 0)
        #expect(WriterStamp(me.description) == me)
        #expect(me.mayBeRunning)
        #expect(WriterStamp(bootID: "0-earlier-boot", pid: me.pid, startTicks: me.startTicks).mayBeRunning == false)
        #expect(WriterStamp(bootID: me.bootID, pid: 2147483000, startTicks: 1).mayBeRunning == false)
        // PID 1 runs, but not since this tick: a reused pid.
        let initTicks = try #require(WriterStamp.startTicks(of: 1))
        #expect(WriterStamp(bootID: me.bootID, pid: 1, startTicks: initTicks + 1).mayBeRunning == false)
        #expect(WriterStamp(bootID: me.bootID, pid: 1, startTicks: initTicks).mayBeRunning)
        #expect(WriterStamp("not a stamp") == nil)
    }
}

extension Fixture {
    /// A second connection to the store's database, for making states the API never makes.
    func db() throws -> Database { try Database(path: "\(dataDir)/\(Store.databaseFileName)") }

    func journalRows() throws -> Int64 { try db().scalarInt("SELECT count(*) FROM chunk_writes") ?? -1 }
}

extension ChunkRecordTests.Fetching {
    func journalRows() throws -> Int64 { try dst.journalRows() }
}
