/// Writers that skip a chunk because the store records it rely on it staying recorded until
/// they commit what references it; a garbage collection may unrecord it in between. The check
/// below, run in the writer's final transaction, closes that gap (GarbageCollector.swift).

/// Test-only hooks of one `Store` handle (set by `@testable` tests; nil in production).
struct StoreTestHooks {
    /// Called by a writer right before the transaction that records what it stored and checks
    /// what it relied on (label: `ingest`, `live-snapshot`; `settle` before an unrecorded file
    /// found good is recorded): where a concurrent GC would strike.
    var beforeRecording: ((String) -> Void)?
    /// Called at each step of a collection; throwing aborts the open transaction.
    var gcStep: ((GarbageStep) throws(MeshError) -> Void)?
    /// Called at each step of a materialise (`before-rename`, `renamed`, `in-force`); throwing
    /// simulates kill -9 there (nothing is cleaned up: the temp file and pending backings stay).
    var materialiseStep: ((String) throws(MeshError) -> Void)?
    /// The writer stamp a materialise records its pending backings under (a dead one, to test
    /// what the next open does after a simulated crash).
    var materialiseWriter: WriterStamp?
}

extension Store {
    /// Of `relied` (chunks a writer skipped writing because the table recorded them), those the
    /// table no longer records: a collection unrecorded them since. Run it inside the writer's
    /// final transaction, which holds the write lock, so that none can go between the check and
    /// the commit (GarbageCollector.swift, "Writers that dedup against a chunk GC then deletes").
    func unrecordedAmong(_ relied: some Sequence<ChunkHash>) throws(MeshError) -> [ChunkHash] {
        var out = [ChunkHash]()
        for h in relied where try !isChunkRecorded(h) { out.append(h) }
        return out
    }
}

extension Store {
    /// Final transactions a writer tries when a collection keeps unrecording chunks it relied on.
    static let maxRecordAttempts = 4

    /// Reads chunks of `recipe` again from the file being put (`fd`) and stores them: a
    /// collection unrecorded them after this put found them recorded. Each is checked against
    /// its hash (the file must not have changed); they are stored in batches like fetched chunks.
    func restoreChunks(_ hashes: [ChunkHash], of recipe: Recipe, fd: Int32, path: String, nowMs: Int64) throws(MeshError) {
        var firstIndex = [ChunkHash: Int]()
        for (i, c) in recipe.chunks.enumerated() where firstIndex[c] == nil { firstIndex[c] = i }
        var batch = [(hash: ChunkHash, bytes: ArraySlice<UInt8>)]()
        var batchBytes = 0
        for h in hashes {
            guard let i = firstIndex[h] else { continue }
            let len = recipe.length(ofChunk: i)
            var bytes = [UInt8](repeating: 0, count: len)
            let read: Result<Int, MeshError> = bytes.withUnsafeMutableBytes { raw in
                guard let base = raw.baseAddress else { return .success(0) }
                return Result { () throws(MeshError) in try readAt(fd: fd, path: path, into: base, count: len, offset: recipe.offset(ofChunk: i)) }
            }
            let got = try read.get()
            guard got == len, Blake2b256.hash(bytes) == h.digest else {
                throw MeshError(.fileUnreadable, "\(path) changed while it was being read",
                                hint: "wait until the file is fully written, then put it again")
            }
            batch.append((h, bytes[...]))
            batchBytes += len
            if batchBytes >= Self.syncBatchBytes || batch.count >= Self.syncBatchFiles {
                _ = try writeChunksKeepingGood(batch, nowMs: nowMs)
                batch = []
                batchBytes = 0
            }
        }
        if !batch.isEmpty { _ = try writeChunksKeepingGood(batch, nowMs: nowMs) }
    }
}
