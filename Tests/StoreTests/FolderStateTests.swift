import Foundation
import Store
import Sync
import TestSupport
import Testing

@Suite("Folder state and materialising files")
struct FolderStateTests {
    @Test("Folder records survive reopening the store; a folder is new until its first scan is recorded")
    func recordsPersist() throws {
        let f = try Fixture()
        let (id, isNew) = try f.store.folderState(path: "/data/games", prefix: "games/")
        #expect(isNew)
        #expect(try f.store.folderState(path: "/data/games", prefix: "games/") == (id, true), "a crash before the first scan: new again")
        let r = FolderRecord(stat: FileStat(sizeBytes: 1 << 40, mtimeNs: 1_700_000_000_123_456_789, inode: UInt64.max - 3),
                             contentID: ContentID(digest: Bytes32(w0: 1, w1: 2, w2: 3, w3: 4)),
                             entry: EntryRef(origin: f.identity.nodeID, sequence: 42), source: .put, updatedMs: 99)
        let foreign = FolderRecord(stat: FileStat(sizeBytes: 5, mtimeNs: 6, inode: 7), contentID: nil, entry: nil, source: .foreign, updatedMs: 1)
        try f.store.setFolderRecord(folder: id, path: "a/b.db", r)
        try f.store.applyFolderRecords(folder: id, [("old.db", foreign), ("nothing-there", nil)], markScanned: true)
        let again = try Store.open(dataDir: f.dataDir)
        let (id2, isNew2) = try again.folderState(path: "/data/games", prefix: "games/")
        #expect(id2 == id && !isNew2)
        #expect(try again.folderRecords(folder: id) == ["a/b.db": r, "old.db": foreign])
        let (other, otherNew) = try again.folderState(path: "/data/games", prefix: "other/")
        #expect(otherNew && other != id, "another prefix is another folder")
        try again.removeFolderRecord(folder: id, path: "old.db")
        #expect(try again.folderRecords(folder: id).keys.sorted() == ["a/b.db"])
    }

    @Test("Materialise writes the content atomically with the version's mtime, creating directories, and records its stat")
    func materialiseWritesAtomically() throws {
        let f = try Fixture()
        let src = f.dir.sub("src.bin")
        try writePseudoRandomFile(src, size: 300_000, seed: 5)
        let e = try f.store.ingest(path: src, name: "x/deep/a.bin", signer: f.identity).entry
        let root = f.dir.sub("folder")
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        let (st, wrote) = try f.store.materialise(e, root: root, relativePath: "deep/a.bin", replacing: nil, adoptIdentical: false)
        #expect(wrote)
        let out = root + "/deep/a.bin"
        #expect(FileManager.default.contentsEqual(atPath: src, andPath: out))
        #expect(FolderFS.regularStat(out) == st)
        #expect(st.mtimeNs / 1_000_000 == e.createdAtMs)
        #expect(try FileManager.default.contentsOfDirectory(atPath: root + "/deep") == ["a.bin"], "no temp file left")
        // The path must still be as the caller last saw it: here it is not absent any more.
        let e2 = meshError { _ = try f.store.materialise(e, root: root, relativePath: "deep/a.bin", replacing: nil, adoptIdentical: false) }
        #expect(e2?.code == .fileChanged)
        // Identical content already there is adopted, not rewritten.
        let (st2, wrote2) = try f.store.materialise(e, root: root, relativePath: "deep/a.bin", replacing: st, adoptIdentical: true)
        #expect(!wrote2 && st2 == st)
        // A directory in the way is an error of its own (not "changed": retrying at once would not help).
        try FileManager.default.createDirectory(atPath: root + "/dir", withIntermediateDirectories: true)
        let e3 = meshError { _ = try f.store.materialise(e, root: root, relativePath: "dir", replacing: nil, adoptIdentical: false) }
        #expect(e3?.code == .fileUnreadable && e3?.message.contains("is a directory") == true)
        #expect(try f.store.currentVersion(of: "x/deep/a.bin")?.entry == e)
        #expect(try f.store.currentVersion(of: "nothing") == nil)
    }

    @Test("Materialise never writes through a symbolic link in the path")
    func materialiseRefusesSymlinkedDirectories() throws {
        let f = try Fixture()
        let src = f.dir.sub("src.bin")
        try writePseudoRandomFile(src, size: 1000, seed: 1)
        let e = try f.store.ingest(path: src, name: "a", signer: f.identity).entry
        let root = f.dir.sub("folder"), elsewhere = f.dir.sub("elsewhere")
        for d in [root, elsewhere] { try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true) }
        try FileManager.default.createSymbolicLink(atPath: root + "/link", withDestinationPath: elsewhere)
        let err = meshError { _ = try f.store.materialise(e, root: root, relativePath: "link/a", replacing: nil, adoptIdentical: false) }
        #expect(err?.message.contains("symbolic link") == true)
        #expect(try FileManager.default.contentsOfDirectory(atPath: elsewhere).isEmpty)
    }

    @Test("An ingest whose check before recording fails records nothing")
    func ingestCheckBeforeRecording() throws {
        let f = try Fixture()
        let src = f.dir.sub("src.bin")
        try writePseudoRandomFile(src, size: 200_000, seed: 9)
        let err = meshError {
            _ = try f.store.ingest(path: src, name: "a", signer: f.identity, beforeRecording: { () throws(MeshError) in
                throw MeshError(.fileChanged, "changed")
            })
        }
        #expect(err?.code == .fileChanged)
        #expect(try f.store.items().isEmpty)
        #expect(try f.store.highestSequence(origin: f.identity.nodeID) == 0, "no sequence number used")
    }
}
