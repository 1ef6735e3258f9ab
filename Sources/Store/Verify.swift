import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

extension Store {
    // MARK: - Verify

    /// A chunk `verify` found wrong, with the items it breaks.
    public struct BadChunk: Sendable, Hashable {
        public enum Problem: String, Sendable { case hashMismatch = "hash mismatch", missing = "missing", unreadable = "unreadable" }
        public var hash: ChunkHash
        public var problem: Problem
        public var path: String
        public var items: [ItemInfo]
    }

    /// The result of `verify`.
    public struct VerifyReport: Sendable {
        public var chunksChecked: Int
        public var bytesChecked: UInt64
        public var badChunks: [BadChunk]
        /// Content ids whose stored chunk list does not recompute the id.
        public var badRecipes: [ContentID]
        /// Valid chunk files the manifest does not record: left by interrupted puts or
        /// transfers. Harmless; reused if the same chunk is stored again.
        public var unreferencedChunks: Int
        public var ok: Bool { badChunks.isEmpty && badRecipes.isEmpty }
    }

    /// Re-hashes every chunk file, checks every chunk the manifest records is present and
    /// every recipe recomputes its content id. Reports problems; changes nothing.
    public func verify(progress: ProgressHandler? = nil) throws(MeshError) -> VerifyReport {
        var bad = [(ChunkHash, BadChunk.Problem, String)]()
        var checked = 0
        var unreferenced = 0
        var bytes: UInt64 = 0
        let total = Atomic<UInt64>(0)
        let maxChunk = Int(Chunking.maxChunkSizeBytes)
        let defaultChunk = (Int(config.chunkSizeBytes) + 4095) & ~4095
        let files = chunkFiles
        for d in FS.list(chunksDir).sorted() where d.utf8.count == 2 {
            let dir = "\(chunksDir)/\(d)"
            let names = FS.list(dir).filter { $0.utf8.count == 64 }.sorted()
            let work = WorkQueue(count: names.count)
            let workers = min(Self.workerCount, max(names.count, 1))
            let problems = Mutex<[(Int, BadChunk.Problem)]>([])
            let dirBytes = Atomic<UInt64>(0)
            runWorkers(workers) { _ in
                var cap = defaultChunk
                var base = UnsafeMutableRawPointer.allocate(byteCount: cap, alignment: 4096)
                defer { base.deallocate() }
                while let i = work.take() {
                    let p = "\(dir)/\(names[i])"
                    guard let size = FS.regularFileSize(p), size <= UInt64(maxChunk), let hash = ChunkHash(hex: names[i]) else {
                        problems.withLock { $0.append((i, .unreadable)) }
                        continue
                    }
                    let need = (Int(size) + 4095) & ~4095
                    if cap < need {
                        base.deallocate()
                        cap = need
                        base = UnsafeMutableRawPointer.allocate(byteCount: cap, alignment: 4096)
                    }
                    // O_DIRECT where possible: a full verify should not flush the page cache.
                    guard let got = try? files.read(hash, into: base, capacity: cap, expected: Int(size), itemName: "verify"),
                          got == Int(size) else {
                        problems.withLock { $0.append((i, .unreadable)) }
                        continue
                    }
                    let h = Blake2b256.hash(UnsafeRawBufferPointer(start: base, count: got))
                    if h.hex != names[i] { problems.withLock { $0.append((i, .hashMismatch)) } }
                    dirBytes.wrappingAdd(size, ordering: .relaxed)
                    let t = total.wrappingAdd(size, ordering: .relaxed).newValue
                    progress?(t)
                }
            }
            checked += names.count
            bytes += dirBytes.load(ordering: .relaxed)
            for name in names {
                guard let h = ChunkHash(hex: name) else { continue }
                let known = try sql { () throws(SQLiteError) in
                    try db.scalarInt("SELECT 1 FROM chunks WHERE hash = ?", [.blob(h.digest.bytes)]) != nil
                }
                if !known { unreferenced += 1 }
            }
            for (i, problem) in problems.withLock({ $0 }).sorted(by: { $0.0 < $1.0 }) {
                let hash = ChunkHash(hex: names[i]) ?? ChunkHash(digest: .zero)
                bad.append((hash, problem, "\(dir)/\(names[i])"))
            }
        }
        // Chunks the manifest says are present but whose file is gone.
        try db.forEach("SELECT hash FROM chunks") { (s) throws(MeshError) in
            guard let d = Bytes32(bytes: s.blob(0)) else { return }
            let h = ChunkHash(digest: d)
            if !hasChunk(h) { bad.append((h, .missing, chunkPath(h))) }
        }
        // Recipes must recompute their ids.
        var ids = [ContentID]()
        try db.forEach("SELECT content_id FROM recipes") { (s) throws(MeshError) in
            if let d = Bytes32(bytes: s.blob(0)) { ids.append(ContentID(digest: d)) }
        }
        var badRecipes = [ContentID]()
        for id in ids {
            if let r = try recipe(id), r.contentID != id { badRecipes.append(id) }
        }
        let all = try items()
        let badChunks = try bad.map { (hash, problem, path) throws(MeshError) -> BadChunk in
            var contents = Set<ContentID>()
            try db.forEach("SELECT DISTINCT content_id FROM recipe_chunks WHERE hash = ?", [.blob(hash.digest.bytes)]) { (s) throws(MeshError) in
                if let d = Bytes32(bytes: s.blob(0)) { contents.insert(ContentID(digest: d)) }
            }
            return BadChunk(hash: hash, problem: problem, path: path, items: all.filter { contents.contains($0.contentID) })
        }
        return VerifyReport(chunksChecked: checked, bytesChecked: bytes, badChunks: badChunks, badRecipes: badRecipes,
                            unreferencedChunks: unreferenced)
    }
}
