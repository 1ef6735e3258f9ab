import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// How to build one database image as chunks.
struct ImagePlan: Sendable {
    /// What the bytes of an untouched page are.
    enum Base: Sendable {
        /// The previous snapshot's chunks, read back from the store and verified.
        case previous(Recipe)
        /// The database file (a full read).
        case databaseFile
    }

    /// Where the pages in `overlay` are read from.
    enum OverlaySource: Sendable {
        /// Their latest valid WAL frame.
        case wal(WALFile, WALHeader)
        /// The database file (it holds them after a complete checkpoint that nothing can undo
        /// while our reader lives).
        case databaseFile
    }

    var sizeBytes: UInt64
    var chunkSizeBytes: UInt32
    var pageSize: Int
    var base: Base
    /// Page number → WAL frame holding its new content (the frame is unused for `.databaseFile`).
    /// Pages past `sizeBytes` are ignored.
    var overlay: [UInt32: UInt32]
    var overlaySource: OverlaySource
    /// The previous image, to count the chunks that changed (also for a full read).
    var previous: Recipe?

    var chunkCount: Int { Chunking.chunkCount(sizeBytes: sizeBytes, chunkSizeBytes: chunkSizeBytes) }

    func length(ofChunk i: Int) -> Int {
        Chunking.chunkLength(index: i, sizeBytes: sizeBytes, chunkSizeBytes: chunkSizeBytes)
    }

    /// Chunk indexes whose bytes intersect page `page` (1-based) within the image.
    func chunks(ofPage page: UInt32) -> ClosedRange<Int>? {
        let start = UInt64(page - 1) * UInt64(pageSize)
        guard start < sizeBytes else { return nil }
        let end = min(start + UInt64(pageSize), sizeBytes) - 1
        return Int(start / UInt64(chunkSizeBytes))...Int(end / UInt64(chunkSizeBytes))
    }

    /// Overlay pages grouped by the chunks they fall in, each list ascending.
    func pagesByChunk() -> [Int: [UInt32]] {
        var out = [Int: [UInt32]]()
        for page in overlay.keys.sorted() {
            guard let r = chunks(ofPage: page) else { continue }
            for c in r { out[c, default: []].append(page) }
        }
        return out
    }

    /// The chunks that must be rebuilt: every chunk for a full read; otherwise those holding an
    /// overlay page and those whose length differs from the previous image's.
    func touchedChunks(_ byChunk: [Int: [UInt32]]) -> [Int] {
        let n = chunkCount
        guard case .previous(let prev) = base else { return Array(0..<n) }
        var set = Set(byChunk.keys)
        let firstDiffering = Int(min(sizeBytes, prev.sizeBytes) / UInt64(chunkSizeBytes))
        if firstDiffering < n {
            for i in firstDiffering..<n where i >= prev.chunkCount || prev.length(ofChunk: i) != length(ofChunk: i) {
                set.insert(i)
            }
        }
        return set.filter { $0 < n }.sorted()
    }
}

/// A built image: its recipe and what building it cost.
struct AssembledImage {
    var recipe: Recipe
    /// The rebuilt chunks, in image order (chunk presence to record).
    var touched: [(hash: ChunkHash, sizeBytes: Int)]
    /// Rebuilt chunks that were recorded already, so not written: the record transaction checks
    /// that they still are (a concurrent gc may have unrecorded them; GarbageCollector.swift).
    var relied: [ChunkHash]
    /// Rebuilt chunks whose hash differs from the previous image's at that index.
    var chunksChanged: Int
    var bytesRead: UInt64
    var bytesHashed: UInt64
    /// Bytes of chunks that were not in the store and were written now.
    var newChunkBytes: UInt64
}

enum AssemblyOutcome {
    case built(AssembledImage)
    /// A chunk of the previous snapshot is missing or damaged in the store: do a full read.
    case previousDamaged(String)
    /// A WAL frame could not be read whole: the WAL changed under us; retry.
    case walChanged
}

extension Store {
    /// Builds `plan`'s image chunk by chunk on worker threads (memory: one chunk buffer per
    /// worker), hashes every rebuilt chunk and writes the ones not yet stored (temp file,
    /// batched fdatasync, rename), then fsyncs their directories. Records nothing in the
    /// manifest: `recordLiveSnapshot` does, in one transaction.
    func assembleImage(_ plan: ImagePlan, database db: DatabaseFile, itemName: String) throws(MeshError) -> AssemblyOutcome {
        let byChunk = plan.pagesByChunk()
        let touched = plan.touchedChunks(byChunk)
        let work = WorkQueue(count: touched.count)
        let files = chunkFiles
        let capacity = (Int(plan.chunkSizeBytes) + 4095) & ~4095
        let workers = min(Self.workerCount, max(touched.count, 1))
        let bytesRead = Atomic<UInt64>(0)
        let bytesHashed = Atomic<UInt64>(0)
        let newBytes = Atomic<UInt64>(0)
        let damaged = Mutex<String?>(nil)
        let walShort = Atomic<Bool>(false)
        let batchBytes = Self.syncBatchBytes
        let pageSize = UInt64(plan.pageSize)
        let size = plan.sizeBytes
        let chunkSize = UInt64(plan.chunkSizeBytes)
        let base = plan.base
        let overlay = plan.overlay
        let source = plan.overlaySource
        let shared = SharedStore(self)
        let writer = WriterStamp.current
        @Sendable func commit(_ pending: inout [ChunkFiles.PendingChunk]) throws(MeshError) {
            try shared.commitJournalled(&pending, files: files, writer: writer)
        }
        runWorkers(workers) { _ in
            let buf = ScratchBuffer(count: capacity)
            var pending = [ChunkFiles.PendingChunk]()
            var pendingBytes = 0
            defer { files.discard(&pending) }
            while let k = work.take() {
                do throws(MeshError) {
                    let i = touched[k]
                    let len = plan.length(ofChunk: i)
                    let start = UInt64(i) * chunkSize
                    var filled = 0
                    switch base {
                    case .previous(let prev):
                        if i < prev.chunkCount {
                            let prevLen = prev.length(ofChunk: i)
                            let hash = prev.chunks[i]
                            let got: Int
                            do throws(MeshError) { got = try files.read(hash, into: buf.base, capacity: capacity, expected: prevLen, itemName: itemName) } catch {
                                damaged.withLock { if $0 == nil { $0 = "chunk \(hash) of the previous snapshot: \(error.message)" } }
                                work.fail(error)
                                continue
                            }
                            bytesRead.wrappingAdd(UInt64(got), ordering: .relaxed)
                            bytesHashed.wrappingAdd(UInt64(got), ordering: .relaxed)
                            guard Blake2b256.hash(UnsafeRawBufferPointer(start: buf.base, count: got)) == hash.digest else {
                                damaged.withLock { if $0 == nil { $0 = "chunk \(hash) of the previous snapshot is corrupt in the store" } }
                                work.fail(MeshError(.corrupt, "chunk \(hash) is corrupt", hint: "run `meshnode verify`"))
                                continue
                            }
                            filled = min(got, len)
                        }
                    case .databaseFile:
                        try db.read(into: buf.base, count: len, offset: start)
                        filled = len
                        bytesRead.wrappingAdd(UInt64(len), ordering: .relaxed)
                    }
                    // Past the end of the file (or of the previous image) a page reads as zeros, as in SQLite.
                    if filled < len { (buf.base + filled).initializeMemory(as: UInt8.self, repeating: 0, count: len - filled) }
                    for page in byChunk[i] ?? [] {
                        let pStart = UInt64(page - 1) * pageSize
                        let lo = max(pStart, start)
                        let hi = min(pStart + pageSize, start + UInt64(len), size)
                        guard lo < hi else { continue }
                        let count = Int(hi - lo)
                        let dest = buf.base + Int(lo - start)
                        switch source {
                        case .wal(let wal, let header):
                            guard let frame = overlay[page] else { continue }
                            let off = header.offset(ofFrame: frame) + UInt64(WALHeader.frameHeaderSize) + (lo - pStart)
                            let got = try readAt(fd: wal.fd, path: wal.path, into: dest, count: count, offset: off)
                            guard got == count else {
                                walShort.store(true, ordering: .relaxed)
                                throw MeshError(.ioError, "\(wal.path) shrank during a snapshot", hint: "the snapshot is retried")
                            }
                        case .databaseFile:
                            try db.read(into: dest, count: count, offset: lo)
                        }
                        bytesRead.wrappingAdd(UInt64(count), ordering: .relaxed)
                    }
                    // The lock-byte page is zeros in every image (`DatabaseHeader.lockBytePage`).
                    let lockStart = DatabaseHeader.pendingByte
                    let lo = max(lockStart, start), hi = min(lockStart + pageSize, start + UInt64(len))
                    if lo < hi { (buf.base + Int(lo - start)).initializeMemory(as: UInt8.self, repeating: 0, count: Int(hi - lo)) }
                    // The image is standalone: file format versions 1 (rollback journal), not 2 (WAL).
                    for o in DatabaseHeader.versionOffsets where UInt64(o) >= start && UInt64(o) < start + UInt64(len) {
                        buf.base.storeBytes(of: 1, toByteOffset: Int(UInt64(o) - start), as: UInt8.self)
                    }
                    let raw = UnsafeRawBufferPointer(start: buf.base, count: len)
                    let h = ChunkHash(digest: Blake2b256.hash(raw))
                    bytesHashed.wrappingAdd(UInt64(len), ordering: .relaxed)
                    work.results[k] = h.digest
                    let claimed = work.claimed.withLock { $0.insert(h).inserted }
                    if claimed, try !shared.run({ (s) throws(MeshError) in try s.isChunkRecorded(h) }) {
                        work.wrote[k] = true
                        newBytes.wrappingAdd(UInt64(len), ordering: .relaxed)
                        pending.append(try files.writeTemp(h, raw, paddedCapacity: capacity))
                        pendingBytes += len
                        if pendingBytes >= batchBytes || pending.count >= Self.syncBatchFiles {
                            try commit(&pending)
                            pendingBytes = 0
                        }
                    }
                } catch {
                    work.fail(error)
                }
            }
            do throws(MeshError) {
                if work.failure.withLock({ $0 == nil }) { try commit(&pending) }
            } catch {
                work.fail(error)
            }
        }
        if let why = damaged.withLock({ $0 }) { return .previousDamaged(why) }
        if walShort.load(ordering: .relaxed) { return .walChanged }
        try work.throwIfFailed()

        var chunks: [ChunkHash]
        let previousChunks = plan.previous?.chunks ?? []
        switch plan.base {
        case .previous(let prev):
            chunks = Array(prev.chunks.prefix(plan.chunkCount))
        case .databaseFile:
            chunks = []
        }
        if chunks.count < plan.chunkCount {
            chunks.append(contentsOf: repeatElement(ChunkHash(digest: .zero), count: plan.chunkCount - chunks.count))
        }
        var rebuilt = [(hash: ChunkHash, sizeBytes: Int)]()
        var changed = 0
        var wrote = Set<ChunkHash>()
        for (k, i) in touched.enumerated() {
            let h = ChunkHash(digest: work.results[k])
            if i >= previousChunks.count || previousChunks[i] != h { changed += 1 }
            chunks[i] = h
            rebuilt.append((h, plan.length(ofChunk: i)))
            if work.wrote[k] { wrote.insert(h) }
        }
        var seen = Set<ChunkHash>()
        let relied = rebuilt.map(\.hash).filter { !wrote.contains($0) && seen.insert($0).inserted }
        // Renames become durable before the manifest can point at them (as in `ingest`).
        var dirs = Set<String>()
        for c in rebuilt { dirs.insert(FS.dirname(of: chunkPath(c.hash))) }
        for d in dirs.sorted() { try FS.fsyncDirectory(d) }
        let recipe = Recipe(sizeBytes: plan.sizeBytes, chunkSizeBytes: plan.chunkSizeBytes, chunks: chunks)
        return .built(AssembledImage(recipe: recipe, touched: rebuilt, relied: relied, chunksChanged: changed,
                                     bytesRead: bytesRead.load(ordering: .relaxed),
                                     bytesHashed: bytesHashed.load(ordering: .relaxed),
                                     newChunkBytes: newBytes.load(ordering: .relaxed)))
    }
}
