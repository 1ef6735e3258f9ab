import CSQLite
import Foundation
import Store
import TestSupport
import Testing

@Suite("Store integrity", .ownThread(timeLimit: .minutes(2)))
struct IntegrityTests {
    @Test("A flipped byte in a chunk is found by verify, which names the chunk and the items it breaks and stops counting it")
    func flippedByte() throws {
        let f = try Fixture()
        let a = f.dir.sub("a.bin"), b = f.dir.sub("b.bin")
        try writePseudoRandomFile(a, size: 200_000, seed: 11)
        try Data(try readBytes(a)).write(to: URL(fileURLWithPath: b))
        let ra = try f.store.ingest(path: a, signer: f.identity)
        _ = try f.store.ingest(path: b, signer: f.identity)
        #expect(try f.store.verify().ok)
        let victim = try #require(try f.store.recipe(ra.entry.contentID)).chunks[1]
        flipByte(f.store.chunkPath(victim), at: 1234)
        let report = try f.store.verify()
        #expect(!report.ok)
        #expect(report.badChunks.count == 1)
        let bad = try #require(report.badChunks.first)
        #expect(bad.hash == victim)
        #expect(bad.problem == .hashMismatch)
        #expect(bad.dropped)
        #expect(Set(bad.items.map(\.name)) == ["a.bin", "b.bin"])
        // One truth: the damaged chunk is no longer counted, by any reader.
        #expect(!f.store.hasChunk(victim))
        #expect(!FS.exists(f.store.chunkPath(victim)))
        #expect(try f.store.missingChunks(ra.entry.contentID) == [victim])
        #expect(try !f.store.isComplete(ra.entry.contentID))
        #expect(try f.store.items().allSatisfy { !$0.isComplete })
        #expect(try f.store.status().incompleteItems == 2)
        let out = f.dir.sub("out.bin")
        #expect(meshError { try f.store.export(try f.store.resolve("a.bin"), to: out) }?.code == .incomplete)
        #expect(!FS.exists(out))
        // Nothing else is wrong now; putting the file again brings the chunk back.
        #expect(try f.store.verify().ok)
        #expect(try f.store.ingest(path: a, signer: f.identity).newChunks == 1)
        try f.store.export(try f.store.resolve("a.bin"), to: out)
        #expect(try hashOfFile(out) == hashOfFile(a))
    }

    @Test("get re-verifies every chunk: a damaged or missing one fails the export, leaves nothing behind and is no longer counted")
    func exportFindsDamage() throws {
        let f = try Fixture()
        let a = f.dir.sub("a.bin")
        try writePseudoRandomFile(a, size: 300_000, seed: 12)
        let ra = try f.store.ingest(path: a, signer: f.identity)
        let chunks = try #require(try f.store.recipe(ra.entry.contentID)).chunks
        flipByte(f.store.chunkPath(chunks[1]), at: 1234)
        FS.unlink(f.store.chunkPath(chunks[3]))
        let out = f.dir.sub("out.bin")
        let e = try #require(meshError { try f.store.export(try f.store.resolve("a.bin"), to: out) })
        #expect(e.code == .corrupt)
        #expect(e.message.contains(chunks[1].description))
        #expect(e.message.contains("1 more damaged"))
        #expect(!FS.exists(out))
        #expect(FS.list(f.dir.path).filter { $0.contains("meshnode") }.isEmpty)
        // Both are dropped from the record (the bad file with them): the item is incomplete.
        #expect(try f.store.missingChunks(ra.entry.contentID) == [chunks[1], chunks[3]])
        #expect(!FS.exists(f.store.chunkPath(chunks[1])))
        #expect(try !f.store.isComplete(ra.entry.contentID))
        #expect(meshError { _ = try f.store.readChunk(chunks[1]) }?.code == .unknownItem)
        #expect(meshError { try f.store.export(try f.store.resolve("a.bin"), to: out) }?.code == .incomplete)
        #expect(try f.store.verify().ok)
    }

    @Test("A chunk served to a peer is read whole into page-aligned memory, and a wrong size on disk is refused")
    func servingReads() throws {
        let f = try Fixture()
        let a = f.dir.sub("a.bin")
        try writePseudoRandomFile(a, size: 150_000, seed: 3)  // chunks of 65 536, 65 536, 18 928
        let r = try #require(try f.store.recipe(try f.store.ingest(path: a, signer: f.identity).entry.contentID))
        let all = try readBytes(a)
        let room = 65_536 + 4096
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: room, alignment: 4096)
        defer { buf.deallocate() }
        for (i, hash) in r.chunks.enumerated() {
            let size = min(65_536, all.count - i * 65_536)
            let n = try f.store.readChunkForPeer(hash, expectedBytes: size, into: buf)
            #expect(n == size)
            #expect(Array(buf[0..<n]) == Array(all[(i * 65_536)..<(i * 65_536 + n)]))
        }
        // Unaligned memory works too (buffered read).
        let odd = UnsafeMutableRawBufferPointer(rebasing: buf[13...])
        #expect(try f.store.readChunkForPeer(r.chunks[2], expectedBytes: 18_928, into: odd) == 18_928)
        // A file whose size is not what the recipe says is damage, named as such.
        let e = meshError { _ = try f.store.readChunkForPeer(r.chunks[0], expectedBytes: 65_535, into: buf) }
        #expect(e?.code == .corrupt)
    }

    @Test("A .db item is exported only if it passes PRAGMA integrity_check")
    func sqliteIntegrity() throws {
        let f = try Fixture(chunkSizeBytes: 4096)
        let dbPath = f.dir.sub("games.db")
        do {
            let db = try Database(path: dbPath)
            try db.exec("CREATE TABLE g(id INTEGER PRIMARY KEY, moves TEXT); ")
            for i in 0..<500 { try db.query("INSERT INTO g(moves) VALUES(?)", [.text(String(repeating: "e4 e5 ", count: i % 50))]) }
        }
        let r = try f.store.ingest(path: dbPath, signer: f.identity)
        #expect(r.entry.type == .game)
        let out = f.dir.sub("copy.db")
        try f.store.export(try f.store.resolve("games.db"), to: out)
        #expect(try hashOfFile(out) == hashOfFile(dbPath))
        // Garbage named .db is refused after reassembly, and nothing is left behind.
        let junk = f.dir.sub("junk.db")
        try writePseudoRandomFile(junk, size: 20_000, seed: 5)
        _ = try f.store.ingest(path: junk, signer: f.identity)
        let out2 = f.dir.sub("junk-out.db")
        let e = try #require(meshError { try f.store.export(try f.store.resolve("junk.db"), to: out2) })
        #expect(e.code == .corrupt)
        #expect(!FS.exists(out2))
        // A database with a damaged page (b-tree page 2 overwritten) also fails the check.
        var bytes = try readBytes(dbPath)
        for k in 4096..<4200 { bytes[k] = 0xff }
        let broken = f.dir.sub("broken.db")
        try Data(bytes).write(to: URL(fileURLWithPath: broken))
        _ = try f.store.ingest(path: broken, signer: f.identity)
        let out3 = f.dir.sub("broken-out.db")
        #expect(throws: MeshError.self) { try f.store.export(try f.store.resolve("broken.db"), to: out3) }
        #expect(!FS.exists(out3))
        #expect(FS.list(f.dir.path).filter { $0.contains("meshnode") }.isEmpty)
    }

    @Test("A store whose schema is newer than the code is refused with a one-line error")
    func newerSchema() throws {
        let f = try Fixture()
        let dir = f.dataDir
        do {
            let db = try Database(path: "\(dir)/manifest.sqlite")
            try db.exec("PRAGMA user_version = 99")
        }
        let e = try #require(meshError { _ = try Store.open(dataDir: dir) })
        #expect(e.code == .schemaTooNew)
        #expect(e.description.contains("99"))
        #expect(!e.description.contains("\n"))
    }

    @Test("Opening a store sweeps temp files of processes that are gone, keeping live ones")
    func sweepsTemp() throws {
        let f = try Fixture()
        let dead = "\(f.dataDir)/tmp/2147483000.abcd.chunk"
        let mine = "\(f.dataDir)/tmp/\(getpid()).abcd.chunk"
        let junk = "\(f.dataDir)/tmp/whatever"
        for p in [dead, mine, junk] { _ = FileManager.default.createFile(atPath: p, contents: Data([1, 2, 3])) }
        _ = try Store.open(dataDir: f.dataDir)
        #expect(!FS.exists(dead))
        #expect(!FS.exists(junk))
        #expect(FS.exists(mine))
    }

    @Test("A valid chunk file that nothing records is recorded by verify, and reported as such, not as damage")
    func orphanChunk() throws {
        let f = try Fixture()
        let bytes = [UInt8](repeating: 42, count: 1000)
        let hash = ChunkHash(digest: Blake2b256.hash(bytes))
        try Data(bytes).write(to: URL(fileURLWithPath: f.store.chunkPath(hash)))
        #expect(!f.store.hasChunk(hash))
        let report = try f.store.verify()
        #expect(report.ok)
        #expect(report.unrecordedFiles.recorded == 1)
        #expect(f.store.hasChunk(hash))
        #expect(try f.store.verify().unrecordedFiles == ChunkSettlement())
    }

    @Test("Opening a directory that was never initialised says to run init")
    func notInitialised() throws {
        let d = TestDir("store")
        let e = try #require(meshError { _ = try Store.open(dataDir: d.sub("nothing")) })
        #expect(e.code == .notInitialized)
        #expect(e.hint?.contains("meshnode init") == true)
    }

    @Test("Missing and unreadable inputs are reported with their own codes")
    func badInputs() throws {
        let f = try Fixture()
        #expect(throws: MeshError(.fileNotFound, "\(f.dir.sub("nope")) does not exist", hint: "check the path and try again")) {
            try f.store.ingest(path: f.dir.sub("nope"), signer: f.identity)
        }
        #expect(meshError { _ = try f.store.ingest(path: f.dir.path, signer: f.identity) }?.code == .fileUnreadable)
        #expect(meshError { _ = try f.store.ingest(path: "/dev/null", name: "null", signer: f.identity) }?.code == .fileUnreadable)
        #expect(meshError { _ = try f.store.resolve("no-such-item") }?.code == .unknownItem)
    }

    @Test("A name put with different contents resolves to its newest version; a content id to its content")
    func ambiguity() throws {
        let f = try Fixture()
        let a = f.dir.sub("a"), b = f.dir.sub("b")
        try writePseudoRandomFile(a, size: 100, seed: 1)
        try writePseudoRandomFile(b, size: 100, seed: 2)
        let ra = try f.store.ingest(path: a, name: "same", signer: f.identity)
        #expect(try f.store.resolve("same").contentID == ra.entry.contentID)
        #expect(try f.store.resolve(String(ra.entry.contentID.description.prefix(8))).contentID == ra.entry.contentID)
        let rb = try f.store.ingest(path: b, name: "same", signer: f.identity)
        #expect(rb.isNewEntry)
        #expect(try f.store.resolve("same").contentID == rb.entry.contentID)
        #expect(try f.store.resolve("same@1").contentID == ra.entry.contentID)
        #expect(rb.entry.hlc > ra.entry.hlc)
        #expect(try f.store.resolve(ra.entry.contentID.description).contentID == ra.entry.contentID)
    }
}
