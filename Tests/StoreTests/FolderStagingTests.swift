import Foundation
@testable import Store
import TestSupport
import Testing

extension BackedFixture {
    /// Gives the receiver `e`'s entry and recipe, no chunk.
    func announce(_ e: ManifestEntry) throws -> Recipe {
        _ = try dst.store.insertRemoteEntry(e, verifier: Ed25519Verifier())
        let r = try #require(try src.store.recipe(e.contentID))
        try dst.store.insertRecipe(contentID: e.contentID, sizeBytes: r.sizeBytes, chunkSizeBytes: r.chunkSizeBytes, chunks: r.chunks)
        return r
    }

    /// Fetches chunks `indices` of `r` into `staging`, as the blob workers do.
    func stage(_ r: Recipe, _ indices: [Int], into staging: FolderStaging) throws {
        let chunks = try indices.map { (r.chunks[$0], try src.store.readChunk(r.chunks[$0])[...]) }
        #expect(try dst.store.writeStaged(chunks, into: staging).allSatisfy { $0 })
    }

    /// The receiver's `node_state` rows about staging files.
    func stagingRows() throws -> [String] {
        let db = try Database(path: "\(dst.dataDir)/\(Store.databaseFileName)", create: false)
        return try db.query("SELECT key FROM node_state WHERE key LIKE 'staging %'").compactMap { if case .text(let k) = $0[0] { k } else { nil } }
    }

    /// Hidden files left in `dir` (the folder's temp files).
    func hiddenFiles(_ dir: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.hasPrefix(".") }
    }
}

@Suite("Folder files fetched in place", .ownThread(timeLimit: .minutes(3)))
struct FolderStagingTests {
    @Test("Chunks fetched for a folder file go into its hidden staging file, are served from there mid-fetch, and the materialise only renames it: no chunk file is ever written")
    func fetchedIntoTheStagingFile() throws {
        let t = try BackedFixture()
        let bytes = backedBytes(seed: 11)
        let e = try t.put("data/sub/a.bin", bytes)
        let r = try t.announce(e)
        let staging = try #require(FolderStaging(root: t.root, relativePath: "sub/a.bin", recipe: r))
        try t.stage(r, [0, 2], into: staging)
        #expect(FileManager.default.fileExists(atPath: staging.path))
        #expect(!FileManager.default.fileExists(atPath: t.root + "/sub/a.bin"), "never visible partially")
        #expect(t.chunkFiles().isEmpty)
        #expect(try !t.store.isComplete(e.contentID))
        #expect(try t.store.missingChunks(e.contentID) == [r.chunks[1], r.chunks[3], r.chunks[4]])
        // Another handle (a blob worker serving a peer) reads the staged chunks, verified.
        let other = try Store.open(dataDir: t.dst.dataDir)
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: 65_536, alignment: 4096)
        defer { buf.deallocate() }
        for i in [0, 2] {
            let n = try other.readChunkForPeer(r.chunks[i], expectedBytes: r.length(ofChunk: i), into: buf)
            #expect(Array(buf[0..<n]) == Array(bytes[(i * 65_536)..<((i + 1) * 65_536)]))
        }
        #expect(try other.verify().ok, "a store mid-fetch verifies")
        try t.stage(r, [1, 3, 4], into: staging)
        #expect(try t.store.isComplete(e.contentID))
        let (st, wrote) = try t.store.materialise(e, root: t.root, relativePath: "sub/a.bin", replacing: nil, adoptIdentical: false)
        #expect(wrote && st.sizeBytes == UInt64(bytes.count))
        #expect(try readBytes(t.root + "/sub/a.bin") == bytes)
        #expect(t.hiddenFiles(t.root + "/sub").isEmpty, "the staging file became the folder file")
        #expect(t.chunkFiles().isEmpty)
        #expect(try t.stagingRows().isEmpty)
        #expect(try t.store.backings(atPath: staging.path).isEmpty)
        #expect(try t.store.backingTotals().chunks == 5)
        let report = try t.store.verify()
        #expect(report.ok && report.chunksChecked == 5)
        #expect(try t.everyRecordedChunkHasASource())
        #expect(try t.exported(e) == bytes)
    }

    @Test("A newer version fetched into its staging file gets only its changed chunks over the wire and the unchanged ones from the old folder file, whole blocks through O_DIRECT, where the file system has it (the disk) and where it does not (tmpfs)",
          arguments: [nil, "/dev/shm"])
    func newerVersionStagedBesideTheOldFile(folderParent: String?) throws {
        if let p = folderParent, !FileManager.default.fileExists(atPath: p) { return }
        let t = try BackedFixture(folderParent: folderParent)
        defer { if folderParent != nil { try? FileManager.default.removeItem(atPath: t.root) } }
        let v1bytes = backedBytes(seed: 5)  // 4 whole 64 KiB chunks and a short one
        let v1 = try t.put("data/a.bin", v1bytes)
        let r1 = try t.announce(v1)
        let s1 = try #require(FolderStaging(root: t.root, relativePath: "a.bin", recipe: r1))
        try t.stage(r1, [0, 1, 2, 3, 4], into: s1)
        let (st1, _) = try t.store.materialise(v1, root: t.root, relativePath: "a.bin", replacing: nil, adoptIdentical: false)
        #expect(try readBytes(t.root + "/a.bin") == v1bytes)
        var v2bytes = v1bytes
        v2bytes[1 * 65_536 + 7] ^= 0x5a
        v2bytes[v2bytes.count - 1] ^= 0x5a  // the short last chunk changes too
        let v2 = try t.put("data/a.bin", v2bytes)
        let r2 = try t.announce(v2)
        #expect(try t.store.missingChunks(v2.contentID) == [r2.chunks[1], r2.chunks[4]])
        let s2 = try #require(FolderStaging(root: t.root, relativePath: "a.bin", recipe: r2))
        try t.stage(r2, [1, 4], into: s2)
        #expect(try readBytes(t.root + "/a.bin") == v1bytes, "the old version stays in view until the rename")
        let (st2, wrote) = try t.store.materialise(v2, root: t.root, relativePath: "a.bin", replacing: st1, adoptIdentical: false,
                                                   policy: KeepPolicy())
        #expect(wrote && st2.sizeBytes == UInt64(v2bytes.count))
        #expect(try readBytes(t.root + "/a.bin") == v2bytes)
        #expect(t.hiddenFiles(t.root).isEmpty)
        #expect(try t.stagingRows().isEmpty)
        #expect(try t.exported(v1) == v1bytes && t.exported(v2) == v2bytes)
        #expect(try t.store.verify().ok && t.everyRecordedChunkHasASource())
    }

    @Test("A folder file's chunk served to a peer is checked by the fingerprint of the bytes hashed when they were written, and an edit in place is still caught; without a fingerprint BLAKE2b catches it")
    func servedChunksAreCheckedByFingerprint() throws {
        let t = try BackedFixture()
        let bytes = backedBytes(seed: 41)
        let e = try t.put("data/a.bin", bytes)
        let r = try t.announce(e)
        let staging = try #require(FolderStaging(root: t.root, relativePath: "a.bin", recipe: r))
        try t.stage(r, [0, 1, 2, 3, 4], into: staging)
        _ = try t.store.materialise(e, root: t.root, relativePath: "a.bin", replacing: nil, adoptIdentical: false)
        #expect(ChunkFingerprints.has(r.chunks[1]) && ChunkFingerprints.has(r.chunks[3]))
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: 65_536, alignment: 4096)
        defer { buf.deallocate() }
        let fast = ChunkFingerprints.checkedByFingerprint.load(ordering: .relaxed)
        #expect(try t.store.readChunkForPeer(r.chunks[1], expectedBytes: 65_536, into: buf) == 65_536)
        #expect(Array(buf[0..<65_536]) == Array(bytes[65_536..<131_072]))
        #expect(ChunkFingerprints.checkedByFingerprint.load(ordering: .relaxed) >= fast + 1, "checked by its fingerprint")
        let mismatches = BackingCounters.mismatches.load(ordering: .relaxed)
        flipByte(t.root + "/a.bin", at: 65_536 + 4_321)  // a person edits chunk 1 in place
        #expect(meshError { _ = try t.store.readChunkForPeer(r.chunks[1], expectedBytes: 65_536, into: buf) }?.code == .corrupt)
        ChunkFingerprints.forget(r.chunks[3])  // as if another process had written it
        flipByte(t.root + "/a.bin", at: 3 * 65_536 + 17)
        #expect(meshError { _ = try t.store.readChunkForPeer(r.chunks[3], expectedBytes: 65_536, into: buf) }?.code == .corrupt)
        #expect(BackingCounters.mismatches.load(ordering: .relaxed) >= mismatches + 2)
        #expect(try t.store.missingChunks(e.contentID) == [r.chunks[1], r.chunks[3]], "both treated as missing, so fetched again")
        #expect(try t.store.readChunkForPeer(r.chunks[2], expectedBytes: 65_536, into: buf) == 65_536, "the others still serve")
        #expect(try t.everyRecordedChunkHasASource())
    }

    @Test("After its writer died, an open re-reads the staging file: chunks whose bytes did not survive are fetched again, the rest are kept, and the file completes")
    func deadWritersStagingIsReverified() throws {
        let t = try BackedFixture()
        let bytes = backedBytes(seed: 12)
        let e = try t.put("data/a.bin", bytes)
        let r = try t.announce(e)
        var staging = FolderStaging(root: t.root, relativePath: "a.bin", recipe: r)
        try t.stage(r, [0, 1, 2], into: try #require(staging))
        let path = try #require(staging).path
        staging = nil  // closed, as by a kill
        flipByte(path, at: 70_000)  // chunk 1's bytes never reached the disk
        let db = try Database(path: "\(t.dst.dataDir)/\(Store.databaseFileName)", create: false)
        _ = try db.query("UPDATE node_state SET value = ? WHERE key = ?", [.text(deadMaterialiser.description), .text("staging " + path)])
        let reopened = try Store.open(dataDir: t.dst.dataDir)
        #expect(try t.stagingRows().isEmpty)
        #expect(try reopened.missingChunks(e.contentID) == [r.chunks[1], r.chunks[3], r.chunks[4]])
        #expect(try reopened.verify().ok)
        #expect(!FileManager.default.fileExists(atPath: t.root + "/a.bin"))
        // The restarted fetch writes the rest into the same file, then it is put in place.
        let again = try #require(FolderStaging(root: t.root, relativePath: "a.bin", recipe: r))
        #expect(again.path == path)
        let chunks = try [1, 3, 4].map { (r.chunks[$0], try t.src.store.readChunk(r.chunks[$0])[...]) }
        #expect(try reopened.writeStaged(chunks, into: again).allSatisfy { $0 })
        _ = try reopened.materialise(e, root: t.root, relativePath: "a.bin", replacing: nil, adoptIdentical: false)
        #expect(try readBytes(t.root + "/a.bin") == bytes)
        #expect(t.chunkFiles().isEmpty && t.hiddenFiles(t.root).filter { $0.hasSuffix(".tmp") }.isEmpty)
        #expect(try reopened.verify().ok)
    }

    @Test("Killed between the rename and the transaction that records it: the reopened store verifies, and the folder file backs the item")
    func killedAfterTheRename() throws {
        let t = try BackedFixture()
        let bytes = backedBytes(seed: 13)
        let e = try t.put("data/a.bin", bytes)
        let r = try t.announce(e)
        let staging = try #require(FolderStaging(root: t.root, relativePath: "a.bin", recipe: r))
        try t.stage(r, Array(0..<5), into: staging)
        let path = staging.path
        t.store.testHooks.materialiseWriter = deadMaterialiser
        t.store.testHooks.materialiseStep = { (s) throws(MeshError) in if s == "renamed" { throw MeshError(.ioError, "killed") } }
        #expect(meshError { _ = try t.store.materialise(e, root: t.root, relativePath: "a.bin", replacing: nil, adoptIdentical: false) } != nil)
        let db = try Database(path: "\(t.dst.dataDir)/\(Store.databaseFileName)", create: false)
        _ = try db.query("UPDATE node_state SET value = ? WHERE key = ?", [.text(deadMaterialiser.description), .text("staging " + path)])
        let reopened = try Store.open(dataDir: t.dst.dataDir)
        #expect(try readBytes(t.root + "/a.bin") == bytes)
        #expect(try reopened.isComplete(e.contentID))
        #expect(try reopened.backings(atPath: t.root + "/a.bin").count == 5)
        #expect(try reopened.backings(atPath: path).isEmpty)
        #expect(try reopened.verify().ok)
        #expect(t.chunkFiles().isEmpty)
    }

    @Test("A fetch superseded or deleted before it was materialised leaves no staging file: a collection removes it and its backings, while one still downloading (pinned) or of a current version stays")
    func abandonedStagingFilesAreCollected() throws {
        let t = try BackedFixture()
        let v1bytes = backedBytes(seed: 14)
        let v1 = try t.put("data/a.bin", v1bytes)
        let r1 = try t.announce(v1)
        let s1 = try #require(FolderStaging(root: t.root, relativePath: "a.bin", recipe: r1))
        try t.stage(r1, [0, 2], into: s1)
        // A second name, fetched in part too, whose fetch is still current.
        let other = try t.put("data/b.bin", backedBytes(seed: 15))
        let rb = try t.announce(other)
        let sb = try #require(FolderStaging(root: t.root, relativePath: "b.bin", recipe: rb))
        try t.stage(rb, [1], into: sb)
        var v2bytes = v1bytes
        v2bytes[0] ^= 0xff
        let v2 = try t.put("data/a.bin", v2bytes)
        _ = try t.dst.store.insertRemoteEntry(v2, verifier: Ed25519Verifier())
        // Still downloading (pinned): it stays.
        let pins = ContentPins()
        pins.pin(v1.contentID)
        let kept = try t.store.collectGarbage(GarbageCollectionOptions(policy: KeepPolicy(), pins: pins))
        #expect(kept.stagingFilesRemoved == 0)
        #expect(FileManager.default.fileExists(atPath: s1.path))
        pins.unpin(v1.contentID)
        let r = try t.store.collectGarbage(GarbageCollectionOptions(policy: KeepPolicy(), pins: pins))
        #expect(r.stagingFilesRemoved == 1 && r.stagedContentsDropped == [v1.contentID])
        #expect(!FileManager.default.fileExists(atPath: s1.path), "the superseded fetch's file went")
        #expect(try t.store.backings(atPath: s1.path).isEmpty)
        #expect(try t.stagingRows() == ["staging " + sb.path], "the current fetch's file and row stay")
        #expect(FileManager.default.fileExists(atPath: sb.path))
        #expect(try t.store.missingChunks(v1.contentID)?.count ?? 5 == 5)
        #expect(try t.store.verify().ok && t.everyRecordedChunkHasASource())
        // A delete of the other name makes its fetch abandoned too.
        let tomb = try t.src.store.delete("data/b.bin", signer: t.src.identity)
        _ = try t.dst.store.insertRemoteEntry(tomb, verifier: Ed25519Verifier())
        let r2 = try t.store.collectGarbage(GarbageCollectionOptions(policy: KeepPolicy()))
        #expect(r2.stagingFilesRemoved == 1)
        #expect(try t.hiddenFiles(t.root).isEmpty && t.stagingRows().isEmpty)
        #expect(try t.store.verify().ok && t.store.backingTotals().rows == 0)
    }

    @Test("A staging file whose writer died before any chunk of it was written is removed at the next open: it held only allocated space")
    func emptyStagingOfADeadWriterIsRemoved() throws {
        let t = try BackedFixture()
        let e = try t.put("data/a.bin", backedBytes(seed: 16))
        let r = try t.announce(e)
        var staging = FolderStaging(root: t.root, relativePath: "a.bin", recipe: r)
        _ = try #require(staging).open(t.store)
        let path = try #require(staging).path
        staging = nil
        #expect(FileManager.default.fileExists(atPath: path))
        let db = try Database(path: "\(t.dst.dataDir)/\(Store.databaseFileName)", create: false)
        _ = try db.query("UPDATE node_state SET value = ? WHERE key = ?", [.text(deadMaterialiser.description), .text("staging " + path)])
        let reopened = try Store.open(dataDir: t.dst.dataDir)
        #expect(!FileManager.default.fileExists(atPath: path))
        #expect(try t.stagingRows().isEmpty && reopened.verify().ok)
    }
}

@Suite("Folder puts backed by their file", .ownThread(timeLimit: .minutes(2)))
struct BackedPutTests {
    @Test("A folder put only reads and hashes the file: no chunk file, the file backs the chunks, served verified; an edit in place before any fetch loses that version")
    func folderPutIsBackedByItsFile() throws {
        let f = try Fixture(label: "backed-put")
        let root = f.dir.sub("folder")
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        let bytes = backedBytes(seed: 21)
        let file = root + "/a.bin"
        try Data(bytes).write(to: URL(fileURLWithPath: file))
        let e = try f.store.ingest(path: file, name: "data/a.bin", signer: f.identity, backedByFile: true).entry
        #expect(chunkFileNames(dataDir: f.dataDir).isEmpty)
        #expect(try f.store.isComplete(e.contentID))
        #expect(try f.store.backings(atPath: file).count == 5)
        let r = try #require(try f.store.recipe(e.contentID))
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: 65_536, alignment: 4096)
        defer { buf.deallocate() }
        let n = try f.store.readChunkForPeer(r.chunks[1], expectedBytes: 65_536, into: buf)
        #expect(Array(buf[0..<n]) == Array(bytes[65_536..<131_072]))
        #expect(try f.store.verify().ok)
        flipByte(file, at: 70_000)  // edited in place before any peer fetched chunk 1
        #expect(meshError { _ = try f.store.readChunkForPeer(r.chunks[1], expectedBytes: 65_536, into: buf) }?.code == .corrupt)
        #expect(try !f.store.isComplete(e.contentID), "that version is lost here (docs/SYNC.md Limits)")
        #expect(try f.store.verify().ok)
    }
}
