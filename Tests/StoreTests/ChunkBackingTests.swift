import Foundation
@testable import Store
import TestSupport
import Testing

/// A sender store and a receiver store with a watched folder (64 KiB chunks): the receiver
/// gets entries, recipes and only the chunks it does not record, as a fetcher would.
struct BackedFixture {
    let src: Fixture
    let dst: Fixture
    let root: String
    var store: Store { dst.store }

    /// `folderParent`: where the receive folder goes (default: the receiver's temp dir).
    init(folderParent: String? = nil) throws {
        src = try Fixture(label: "backing-src")
        dst = try Fixture(label: "backing-dst")
        root = folderParent.map { "\($0)/meshnode-folder-\(FS.randomToken())" } ?? dst.dir.sub("folder")
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
    }

    /// Puts `bytes` on the sender as `name`.
    func put(_ name: String, _ bytes: [UInt8]) throws -> ManifestEntry {
        let file = src.dir.sub("put-\(FS.randomToken())")
        try Data(bytes).write(to: URL(fileURLWithPath: file))
        return try src.store.ingest(path: file, name: name, signer: src.identity).entry
    }

    /// Delivers `e` to the receiver; returns the chunks it had to send ("fetched").
    @discardableResult
    func replicate(_ e: ManifestEntry) throws -> Int {
        _ = try dst.store.insertRemoteEntry(e, verifier: Ed25519Verifier())
        let r = try #require(try src.store.recipe(e.contentID))
        try dst.store.insertRecipe(contentID: e.contentID, sizeBytes: r.sizeBytes, chunkSizeBytes: r.chunkSizeBytes, chunks: r.chunks)
        let missing = try dst.store.missingChunks(e.contentID) ?? []
        try dst.store.writeChunks(try missing.map { ($0, try src.store.readChunk($0)) })
        return missing.count
    }

    /// Chunk file names in the receiver's store.
    func chunkFiles() -> Set<String> { chunkFileNames(dataDir: dst.dataDir) }

    func exported(_ e: ManifestEntry, from store: Store? = nil) throws -> [UInt8] {
        let out = dst.dir.sub("export-\(FS.randomToken())")
        try (store ?? dst.store).export(ItemInfo(entry: e, receivedAtMs: 0, isComplete: true), to: out)
        return try readBytes(out)
    }

    /// Every recorded chunk of the receiver has a chunk file or a backing in force whose file
    /// (same inode) holds the right bytes: the invariant, checked from outside.
    func everyRecordedChunkHasASource() throws -> Bool {
        let db = try Database(path: "\(dst.dataDir)/\(Store.databaseFileName)", create: false)
        let files = chunkFiles()
        for row in try db.query("SELECT lower(hex(hash)), hash FROM chunks") {
            guard case .text(let hex) = row[0], case .blob(let raw) = row[1] else { continue }
            if files.contains(hex) { continue }
            let h = ChunkHash(digest: Bytes32(bytes: raw)!)
            var good = false
            for b in try dst.store.backings(of: h) {
                let buf = UnsafeMutableRawPointer.allocate(byteCount: max(1, b.sizeBytes), alignment: 4096)
                defer { buf.deallocate() }
                if b.read(into: buf) == .ok { good = true }
            }
            if !good { return false }
        }
        return true
    }
}

/// Chunk file names under a data dir's `chunks/`.
func chunkFileNames(dataDir: String) -> Set<String> {
    do {
        var out = Set<String>()
        for sub in (try? FileManager.default.contentsOfDirectory(atPath: "\(dataDir)/chunks")) ?? [] {
            for name in (try? FileManager.default.contentsOfDirectory(atPath: "\(dataDir)/chunks/\(sub)")) ?? [] where name.count == 64 {
                out.insert(name)
            }
        }
        return out
    }
}

/// Five chunks of 64 KiB, the last one short.
func backedBytes(seed: UInt8) -> [UInt8] {
    var g = SplitMix64(seed: UInt64(seed))
    return (0..<300_000).map { _ in UInt8(truncatingIfNeeded: g.next()) }
}

let deadMaterialiser = WriterStamp(bootID: "0-earlier-boot", pid: 4243, startTicks: 78)

@Suite("Chunks backed by folder files", .ownThread(timeLimit: .minutes(3)))
struct ChunkBackingTests {
    @Test("A materialised file backs its chunks: their chunk files go, and the item still exports, serves and verifies")
    func materialisedFileBacksItsChunks() throws {
        let t = try BackedFixture()
        let bytes = backedBytes(seed: 1)
        let e = try t.put("data/a.bin", bytes)
        #expect(try t.replicate(e) == 5)
        #expect(t.chunkFiles().count == 5)
        let (st, wrote) = try t.store.materialise(e, root: t.root, relativePath: "a.bin", replacing: nil, adoptIdentical: false)
        #expect(wrote && st.sizeBytes == 300_000)
        #expect(try readBytes(t.root + "/a.bin") == bytes)
        #expect(t.chunkFiles().isEmpty, "the folder file holds the chunks: no second copy")
        #expect(try t.store.isComplete(e.contentID))
        #expect(try t.store.backingTotals().chunks == 5)
        #expect(try t.exported(e) == bytes)
        let r = try #require(try t.store.recipe(e.contentID))
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: 65_536, alignment: 4096)
        defer { buf.deallocate() }
        for (i, h) in r.chunks.enumerated() {
            let n = try t.store.readChunkForPeer(h, expectedBytes: r.length(ofChunk: i), into: buf)
            #expect(Blake2b256.hash(UnsafeRawBufferPointer(rebasing: buf[0..<n])) == h.digest)
        }
        #expect(try t.store.readChunk(r.chunks[4]).count == 300_000 - 4 * 65_536)
        let report = try t.store.verify()
        #expect(report.ok && report.chunksChecked == 5)
        #expect(try t.everyRecordedChunkHasASource())
        // Reopening changes nothing.
        let again = try Store.open(dataDir: t.dst.dataDir)
        #expect(try again.isComplete(e.contentID) && t.exported(e, from: again) == bytes)
    }

    @Test("A backed chunk whose folder file was edited is never served: its backing goes, counted, the chunk is missing and comes back when fetched")
    func editedFileIsNeverServed() throws {
        let t = try BackedFixture()
        let bytes = backedBytes(seed: 2)
        let e = try t.put("data/a.bin", bytes)
        try t.replicate(e)
        _ = try t.store.materialise(e, root: t.root, relativePath: "a.bin", replacing: nil, adoptIdentical: false)
        let r = try #require(try t.store.recipe(e.contentID))
        let before = BackingCounters.mismatches.load(ordering: .relaxed)
        flipByte(t.root + "/a.bin", at: 70_000)  // a person edits chunk 1 in place
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: 65_536, alignment: 4096)
        defer { buf.deallocate() }
        let err = meshError { _ = try t.store.readChunkForPeer(r.chunks[1], expectedBytes: 65_536, into: buf) }
        #expect(err?.code == .corrupt)
        #expect(BackingCounters.mismatches.load(ordering: .relaxed) >= before + 1)
        #expect(try t.store.missingChunks(e.contentID) == [r.chunks[1]], "treated as missing, so fetched again")
        #expect(try !t.store.isComplete(e.contentID))
        #expect(try t.store.readChunkForPeer(r.chunks[2], expectedBytes: 65_536, into: buf) == 65_536, "the other chunks still serve")
        #expect(meshError { _ = try t.exported(e) }?.code == .incomplete)
        #expect(try t.everyRecordedChunkHasASource())
        // The chunk is fetched again; the receive folder's revert writes the cluster's version.
        #expect(try t.replicate(e) == 1)
        let edited = try #require(FolderFS.regularStat(t.root + "/a.bin"))
        _ = try t.store.materialise(e, root: t.root, relativePath: "a.bin", replacing: edited, adoptIdentical: true)
        #expect(try readBytes(t.root + "/a.bin") == bytes)
        #expect(t.chunkFiles().isEmpty)
        #expect(try t.exported(e) == bytes && t.store.verify().ok)
    }

    @Test("A newer version is built from the old file's unchanged chunks (only the changed one fetched); the old version's own chunk stays while kept")
    func newerVersionCopiesUnchangedChunks() throws {
        let t = try BackedFixture()
        let v1bytes = backedBytes(seed: 3)
        let v1 = try t.put("data/a.bin", v1bytes)
        try t.replicate(v1)
        let (st1, _) = try t.store.materialise(v1, root: t.root, relativePath: "a.bin", replacing: nil, adoptIdentical: false)
        var v2bytes = v1bytes
        v2bytes[2 * 65_536 + 10] ^= 0xff
        let v2 = try t.put("data/a.bin", v2bytes)
        #expect(try t.replicate(v2) == 1, "only the changed chunk is fetched")
        let copiedBefore = BackingCounters.chunksCopied.load(ordering: .relaxed)
        _ = try t.store.materialise(v2, root: t.root, relativePath: "a.bin", replacing: st1, adoptIdentical: false,
                                    policy: KeepPolicy())
        #expect(BackingCounters.chunksCopied.load(ordering: .relaxed) >= copiedBefore + 4, "four chunks copied from the old file")
        #expect(try readBytes(t.root + "/a.bin") == v2bytes)
        let r1 = try #require(try t.store.recipe(v1.contentID))
        #expect(t.chunkFiles() == [r1.chunks[2].description], "v1 is kept (keep_versions 3): its own chunk went to a chunk file")
        #expect(try t.exported(v1) == v1bytes && t.exported(v2) == v2bytes)
        #expect(try t.store.verify().ok && t.everyRecordedChunkHasASource())
        // keep_versions 1: the next version's old chunk is not kept; it loses its record with the file.
        var v3bytes = v2bytes
        v3bytes[3 * 65_536] ^= 0xff
        let v3 = try t.put("data/a.bin", v3bytes)
        #expect(try t.replicate(v3) == 1)
        let st2 = try #require(FolderFS.regularStat(t.root + "/a.bin"))
        _ = try t.store.materialise(v3, root: t.root, relativePath: "a.bin", replacing: st2, adoptIdentical: false,
                                    policy: KeepPolicy(keepVersions: [.other: 1]))
        #expect(try readBytes(t.root + "/a.bin") == v3bytes)
        #expect(t.chunkFiles() == [r1.chunks[2].description], "v2's own chunk was not kept")
        #expect(try !t.store.isComplete(v2.contentID) && t.store.isComplete(v3.contentID))
        #expect(try t.everyRecordedChunkHasASource())
    }

    @Test("A collection deletes what backed chunks no kept version needs, and a folder file deleted by hand takes its backings and records with it")
    func collectionWithBackings() throws {
        let t = try BackedFixture()
        let v1bytes = backedBytes(seed: 4)
        let v1 = try t.put("data/a.bin", v1bytes)
        try t.replicate(v1)
        let (st1, _) = try t.store.materialise(v1, root: t.root, relativePath: "a.bin", replacing: nil, adoptIdentical: false)
        var v2bytes = v1bytes
        v2bytes[0] ^= 0xff
        let v2 = try t.put("data/a.bin", v2bytes)
        try t.replicate(v2)
        _ = try t.store.materialise(v2, root: t.root, relativePath: "a.bin", replacing: st1, adoptIdentical: false, policy: KeepPolicy())
        #expect(t.chunkFiles().count == 1)
        let keepOne = KeepPolicy(keepVersions: [.other: 1])
        let r = try t.store.collectGarbage(GarbageCollectionOptions(policy: keepOne))
        #expect(r.recipesDeleted == 1 && r.chunksDeleted == 1 && r.backedChunksLost == 0)
        #expect(t.chunkFiles().isEmpty)
        #expect(try t.exported(v2) == v2bytes && t.store.verify().ok)
        #expect(try t.store.backingTotals().chunks == 5)
        // The person deletes the file: the next collection drops its backings and the records.
        try FileManager.default.removeItem(atPath: t.root + "/a.bin")
        let r2 = try t.store.collectGarbage(GarbageCollectionOptions(policy: keepOne))
        #expect(r2.backedChunksLost == 5)
        #expect(try !t.store.isComplete(v2.contentID) && t.store.missingChunks(v2.contentID)?.count == 5)
        #expect(try t.store.backingTotals().rows == 0 && t.everyRecordedChunkHasASource())
    }

    @Test("A folder file edited in place loses only the backings of the bytes that changed: found by a collection, or by the put of the edit")
    func editedInPlaceLosesOnlyChangedBackings() throws {
        let t = try BackedFixture()
        let bytes = backedBytes(seed: 7)
        let e = try t.put("data/a.bin", bytes)
        try t.replicate(e)
        _ = try t.store.materialise(e, root: t.root, relativePath: "a.bin", replacing: nil, adoptIdentical: false)
        let r = try #require(try t.store.recipe(e.contentID))
        let file = t.root + "/a.bin"
        flipByte(file, at: 3 * 65_536 + 1)
        let gc = try t.store.collectGarbage(GarbageCollectionOptions(policy: KeepPolicy()))
        #expect(gc.backedChunksLost == 1)
        #expect(try t.store.missingChunks(e.contentID) == [r.chunks[3]])
        #expect(try t.store.collectGarbage(GarbageCollectionOptions(policy: KeepPolicy())).backedChunksLost == 0, "the others were restamped")
        #expect(try t.everyRecordedChunkHasASource())
        // A `both` folder puts the edit: the put knows which chunks it replaced, without reading again.
        flipByte(file, at: 1 * 65_536 + 1)
        let st = try #require(FolderFS.regularStat(file))
        let put = try t.store.ingest(path: file, name: "data/a.bin", signer: t.dst.identity).entry
        try t.store.refreshBackings(path: file, recipe: try #require(try t.store.recipe(put.contentID)), stat: st)
        #expect(try t.store.missingChunks(e.contentID) == [r.chunks[1], r.chunks[3]])
        #expect(try t.store.backings(atPath: file).count == 3)
        #expect(try t.everyRecordedChunkHasASource())
    }

    @Test("Removing a folder file keeps, in chunk files, the chunks a kept version needs and only it held")
    func removingKeepsWhatIsKept() throws {
        let t = try BackedFixture()
        let bytes = backedBytes(seed: 5)
        let e = try t.put("data/a.bin", bytes)
        try t.replicate(e)
        _ = try t.store.materialise(e, root: t.root, relativePath: "a.bin", replacing: nil, adoptIdentical: false)
        let file = t.root + "/a.bin"
        try t.store.removeFolderFile(file, policy: KeepPolicy()) { () throws(MeshError) in _ = unlink(file) }
        #expect(try t.chunkFiles().count == 5 && t.store.backingTotals().rows == 0)
        #expect(try t.exported(e) == bytes)
        // After a delete (tombstone) nothing keeps it: removing the file just lets the records go.
        _ = try t.store.materialise(e, root: t.root, relativePath: "a.bin", replacing: nil, adoptIdentical: false)
        _ = try t.store.delete("data/a.bin", signer: t.dst.identity)
        try t.store.removeFolderFile(file, policy: KeepPolicy()) { () throws(MeshError) in _ = unlink(file) }
        #expect(try t.chunkFiles().isEmpty && !t.store.isComplete(e.contentID))
        #expect(try t.everyRecordedChunkHasASource())
    }

    @Test("A crash at any step of replacing a backed file loses no chunk a kept version needs; the next open settles the pending backings",
          arguments: ["before-rename", "renamed", "in-force"])
    func crashWhileReplacing(step: String) throws {
        let t = try BackedFixture()
        let v1bytes = backedBytes(seed: 6)
        let v1 = try t.put("data/a.bin", v1bytes)
        try t.replicate(v1)
        let (st1, _) = try t.store.materialise(v1, root: t.root, relativePath: "a.bin", replacing: nil, adoptIdentical: false)
        var v2bytes = v1bytes
        v2bytes[65_536 + 5] ^= 0xff
        let v2 = try t.put("data/a.bin", v2bytes)
        try t.replicate(v2)
        t.store.testHooks.materialiseWriter = deadMaterialiser
        t.store.testHooks.materialiseStep = { (s) throws(MeshError) in
            if s == step { throw MeshError(.internalError, "simulated kill -9 at \(s)") }
        }
        let err = meshError { _ = try t.store.materialise(v2, root: t.root, relativePath: "a.bin", replacing: st1, adoptIdentical: false,
                                                          policy: KeepPolicy()) }
        #expect(err?.message.hasPrefix("simulated kill -9") == true, "\(step)")
        let inPlace = try readBytes(t.root + "/a.bin")
        #expect(inPlace == (step == "before-rename" ? v1bytes : v2bytes), "\(step): the old file or the whole new one")
        // The next open (the crashed process is gone).
        let reopened = try Store.open(dataDir: t.dst.dataDir)
        #expect(try reopened.isComplete(v1.contentID) && reopened.isComplete(v2.contentID), "\(step)")
        #expect(try t.exported(v1, from: reopened) == v1bytes && t.exported(v2, from: reopened) == v2bytes, "\(step)")
        #expect(try t.everyRecordedChunkHasASource(), "\(step)")
        #expect(try reopened.verify().ok, "\(step)")
        let pending = try Database(path: "\(t.dst.dataDir)/\(Store.databaseFileName)", create: false)
            .scalarInt("SELECT count(*) FROM chunk_backings WHERE writer IS NOT NULL")
        #expect(pending == 0, "\(step): pending backings settled at open")
        // Materialising again (the folder's next look) ends with one copy of each chunk.
        let now = try #require(FolderFS.regularStat(t.root + "/a.bin"))
        _ = try reopened.materialise(v2, root: t.root, relativePath: "a.bin", replacing: now, adoptIdentical: true, policy: KeepPolicy())
        let r1 = try #require(try reopened.recipe(v1.contentID))
        #expect(t.chunkFiles() == [r1.chunks[1].description], "\(step)")
        #expect(try t.exported(v1, from: reopened) == v1bytes && t.exported(v2, from: reopened) == v2bytes, "\(step)")
    }
}
