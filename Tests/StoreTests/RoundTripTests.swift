import Foundation
import Store
import TestSupport
import Testing

@Suite("Store round trips", .ownThread(timeLimit: .minutes(2)))
struct RoundTripTests {
    static let chunk = 64 * 1024

    @Test("A file survives ingest and export byte for byte",
          arguments: [0, 1, chunk - 1, chunk, chunk + 1, 3 * chunk + 7])
    func roundTrip(size: Int) throws {
        let f = try Fixture(chunkSizeBytes: UInt32(Self.chunk))
        let input = f.dir.sub("in.bin")
        try writePseudoRandomFile(input, size: size, seed: UInt64(size))
        let r = try f.store.ingest(path: input, signer: f.identity)
        #expect(r.entry.sizeBytes == UInt64(size))
        #expect(r.chunkCount == (size + Self.chunk - 1) / Self.chunk)
        #expect(r.entry.verify(with: Ed25519Verifier()))
        let out = f.dir.sub("out.bin")
        try f.store.export(try f.store.resolve(r.entry.contentID.description), to: out)
        #expect(try hashOfFile(out) == hashOfFile(input))
        #expect(FS.regularFileSize(out) == UInt64(size))
        let report = try f.store.verify()
        #expect(report.ok)
        #expect(report.unrecordedFiles == ChunkSettlement())
    }

    @Test("A 100 MB file round trips with the default 2 MiB chunks", .ownThread(timeLimit: .minutes(1)))
    func hundredMegabytes() throws {
        let f = try Fixture(chunkSizeBytes: Chunking.defaultChunkSizeBytes)
        let input = f.dir.sub("big.bin")
        let size = 100_000_000
        try writePseudoRandomFile(input, size: size, seed: 100)
        let r = try f.store.ingest(path: input, signer: f.identity)
        #expect(r.chunkCount == 48)
        #expect(r.entry.chunkSizeBytes == 2_097_152)
        let out = f.dir.sub("big.out")
        try f.store.export(try f.store.resolve("big.bin"), to: out)
        #expect(try hashOfFile(out) == hashOfFile(input))
    }

    @Test("Chunks shared by several files are stored once")
    func dedup() throws {
        let f = try Fixture()
        let a = f.dir.sub("a.bin"), b = f.dir.sub("b.bin")
        try writePseudoRandomFile(a, size: 5 * Self.chunk, seed: 1)
        // b = the first 3 chunks of a, then 2 chunks of its own.
        let aBytes = try readBytes(a)
        try writePseudoRandomFile(b, size: 2 * Self.chunk, seed: 2)
        let tail = try readBytes(b)
        try Data(aBytes[0..<(3 * Self.chunk)] + tail).write(to: URL(fileURLWithPath: b))
        let ra = try f.store.ingest(path: a, signer: f.identity)
        let rb = try f.store.ingest(path: b, signer: f.identity)
        #expect(ra.newChunks == 5)
        #expect(rb.newChunks == 2)
        let st = try f.store.status()
        #expect(st.chunks == 7)
        #expect(st.items == 2)
        let files = FS.list("\(f.dataDir)/chunks").flatMap { FS.list("\(f.dataDir)/chunks/\($0)") }
        #expect(files.count == 7)
        // A file made of one repeated chunk stores it once.
        let rep = f.dir.sub("rep.bin")
        try Data(repeating: 7, count: 4 * Self.chunk).write(to: URL(fileURLWithPath: rep))
        #expect(try f.store.ingest(path: rep, signer: f.identity).newChunks == 1)
        let out = f.dir.sub("rep.out")
        try f.store.export(try f.store.resolve("rep.bin"), to: out)
        #expect(try readBytes(out) == readBytes(rep))
    }

    @Test("Putting the same content under the same name again returns the same entry")
    func idempotentPut() throws {
        let f = try Fixture()
        let a = f.dir.sub("a.bin")
        try writePseudoRandomFile(a, size: 1000, seed: 9)
        let r1 = try f.store.ingest(path: a, signer: f.identity)
        let r2 = try f.store.ingest(path: a, signer: f.identity)
        #expect(r1.entry == r2.entry)
        #expect(!r2.isNewEntry)
        let r3 = try f.store.ingest(path: a, name: "other", signer: f.identity)
        #expect(r3.entry.sequence == 2)
        #expect(try f.store.highestSequence(origin: f.identity.nodeID) == 2)
    }

    @Test("The content id follows the documented construction")
    func contentIDConstruction() throws {
        let f = try Fixture()
        let a = f.dir.sub("a.bin")
        let size = 2 * Self.chunk + 5
        try writePseudoRandomFile(a, size: size, seed: 3)
        let bytes = try readBytes(a)
        var hashes = [UInt8]()
        var off = 0
        while off < size {
            let end = min(off + Self.chunk, size)
            hashes += Blake2b256.hash(Array(bytes[off..<end])).bytes
            off = end
        }
        var pre = Array("meshnode/content/v1".utf8) + [0]
        pre += withUnsafeBytes(of: UInt64(size).bigEndian, Array.init)
        pre += withUnsafeBytes(of: UInt32(Self.chunk).bigEndian, Array.init)
        let expected = Blake2b256.hash(pre + hashes)
        #expect(try f.store.ingest(path: a, signer: f.identity).entry.contentID.digest == expected)
        // An empty file has no chunks: the id hashes only the header.
        let e = f.dir.sub("empty")
        _ = FileManager.default.createFile(atPath: e, contents: Data())
        var h0 = Array("meshnode/content/v1".utf8) + [0]
        h0 += [UInt8](repeating: 0, count: 8)
        h0 += withUnsafeBytes(of: UInt32(Self.chunk).bigEndian, Array.init)
        #expect(try f.store.ingest(path: e, signer: f.identity).entry.contentID.digest == Blake2b256.hash(h0))
        // The worked example in docs/PROTOCOL.md §3 (empty file, default chunk size).
        #expect(Chunking.contentID(sizeBytes: 0, chunkSizeBytes: Chunking.defaultChunkSizeBytes, chunks: []).description
                == "774659ac0c3da5d32a281074b18e3d53b9e29d61125ff9bfc6e182529f1081c5")
    }
}
