import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

extension Store {
    // MARK: - Verify

    /// A recorded chunk whose file `verify` found wrong, with the items it breaks.
    public struct BadChunk: Sendable, Hashable {
        public enum Problem: String, Sendable {
            case hashMismatch = "hash mismatch", missing = "missing", wrongSize = "wrong size", unreadable = "unreadable"
        }
        public var hash: ChunkHash
        public var problem: Problem
        public var path: String
        /// The items that contain the chunk (now incomplete, unless the problem is `unreadable`).
        public var items: [ItemInfo]
        /// True when its record was dropped: the store no longer counts the chunk as present,
        /// and a running node fetches it again when the item is asked for. False only for
        /// `unreadable` (an I/O error: the bytes may be fine once the disk is).
        public var dropped: Bool { problem != .unreadable }
    }

    /// The result of `verify`.
    public struct VerifyReport: Sendable {
        /// Recorded chunks whose files were re-hashed, and their bytes.
        public var chunksChecked: Int
        public var bytesChecked: UInt64
        public var badChunks: [BadChunk]
        /// Content ids whose stored chunk list does not recompute the id.
        public var badRecipes: [ContentID]
        /// Chunk files that no record named: files a write named but did not record before it
        /// was interrupted (a killed `put` or transfer whose journal row was lost, or a store
        /// older than the journal). Settled now: recorded if their bytes match their name,
        /// deleted if not; those another running process is writing are left to it.
        public var unrecordedFiles: ChunkSettlement
        /// Recorded chunks without a file that no recipe references: garbage, not damage (their
        /// records were dropped; nothing needed them).
        public var garbageRecordsDropped = 0
        /// No damage: every recorded chunk's file is there with the right bytes, and every
        /// chunk list is sound. (Unrecorded files were not damage: nothing counted on them.)
        public var ok: Bool { badChunks.isEmpty && badRecipes.isEmpty }
    }

    /// Makes the record and the files agree, and says how they differed. Re-hashes the file of
    /// every chunk the store records: one missing (unless no recipe references it: then it is
    /// garbage, and only its record goes), of the wrong size or with the wrong bytes is
    /// damage, reported with the items it breaks, and its record is dropped (so those items
    /// show incomplete and are fetched again; an I/O error is only reported). A chunk file that
    /// nothing records is settled (`VerifyReport.unrecordedFiles`). Every chunk list must
    /// recompute its content id.
    public func verify(progress: ProgressHandler? = nil, nowMs: Int64 = WallClock.nowMs()) throws(MeshError) -> VerifyReport {
        var bad = [(ChunkHash, BadChunk.Problem, String)]()
        var checked = 0
        var bytes: UInt64 = 0
        var unrecorded = ChunkSettlement()
        let total = Atomic<UInt64>(0)
        let defaultChunk = (Int(config.chunkSizeBytes) + 4095) & ~4095
        let files = chunkFiles
        let busy = try chunksBeingWritten()
        for p in 0..<256 {
            let prefix = UInt8(p)
            // The records first, then the names: a chunk's file is named before its row
            // commits, so a chunk recorded here has its file in the listing that follows.
            let recorded = try recordedChunks(withPrefix: prefix)
            let listed = chunkFileNames(withPrefix: prefix)
            let names = listed.filter { recorded[$0.hash] != nil }
            let work = WorkQueue(count: names.count)
            let workers = min(Self.workerCount, max(names.count, 1))
            let problems = Mutex<[(Int, BadChunk.Problem)]>([])
            let dirBytes = Atomic<UInt64>(0)
            runWorkers(workers) { _ in
                var cap = defaultChunk
                var base = UnsafeMutableRawPointer.allocate(byteCount: cap, alignment: 4096)
                defer { base.deallocate() }
                while let i = work.take() {
                    let (name, hash) = names[i]
                    let expected = recorded[hash] ?? 0
                    guard let size = FS.regularFileSize(files.path(hash)) else {
                        problems.withLock { $0.append((i, FS.exists(files.path(hash)) ? .unreadable : .missing)) }
                        continue
                    }
                    guard size == UInt64(expected) else {
                        problems.withLock { $0.append((i, .wrongSize)) }
                        continue
                    }
                    let need = (expected + 4095) & ~4095
                    if cap < need {
                        base.deallocate()
                        cap = need
                        base = UnsafeMutableRawPointer.allocate(byteCount: cap, alignment: 4096)
                    }
                    // O_DIRECT where possible: a full verify should not flush the page cache.
                    let got: Int
                    do throws(MeshError) {
                        got = try files.read(hash, into: base, capacity: cap, expected: expected, itemName: "verify")
                    } catch {
                        problems.withLock { $0.append((i, error.code == .corrupt ? .wrongSize : .unreadable)) }
                        continue
                    }
                    let h = Blake2b256.hash(UnsafeRawBufferPointer(start: base, count: got))
                    if h.hex != name { problems.withLock { $0.append((i, .hashMismatch)) } }
                    dirBytes.wrappingAdd(size, ordering: .relaxed)
                    let t = total.wrappingAdd(size, ordering: .relaxed).newValue
                    progress?(t)
                }
            }
            checked += names.count
            bytes += dirBytes.load(ordering: .relaxed)
            for (i, problem) in problems.withLock({ $0 }).sorted(by: { $0.0 < $1.0 }) {
                bad.append((names[i].hash, problem, chunkPath(names[i].hash)))
            }
            // Recorded, but no file.
            let present = Set(listed.map(\.hash))
            for h in recorded.keys.sorted() where !present.contains(h) {
                // Held by a folder file instead (ChunkBackings.swift): read there and re-hashed.
                let size = recorded[h] ?? 0
                let buf = ScratchBuffer(count: (size + 4095) & ~4095)
                if try readThroughBackings(h, into: buf.base, expected: size) {
                    checked += 1
                    bytes += UInt64(size)
                    continue
                }
                bad.append((h, .missing, chunkPath(h)))
            }
            // A file, but no record.
            for f in listed where recorded[f.hash] == nil {
                switch try settleUnrecordedFile(f.hash, busy: busy, nowMs: nowMs) {
                case .recorded: unrecorded.recorded += 1
                case .removed: unrecorded.removed += 1
                case .inFlight: unrecorded.inFlight += 1
                case .absent, .alreadyRecorded: break
                }
            }
        }
        // A recorded chunk without a file that no recipe references needs nothing: garbage (its
        // record goes, as a collection would have taken it), not damage.
        var garbage = [ChunkHash]()
        var damage = [(ChunkHash, BadChunk.Problem, String)]()
        for b in bad {
            if b.1 == .missing, try !isChunkReferenced(b.0) { garbage.append(b.0) } else { damage.append(b) }
        }
        bad = damage
        try forgetChunks(garbage)
        try forgetChunks(bad.filter { $0.1 != .unreadable }.map(\.0))
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
                            unrecordedFiles: unrecorded, garbageRecordsDropped: garbage.count)
    }
}
