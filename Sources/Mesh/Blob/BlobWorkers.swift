import Dispatch
import Foundation
import Gossip
import Store

/// Threads for chunk I/O, so that hashing, `fsync` and file reads never run on the loop.
///
/// Each worker is a serial queue with its own `Store` handle (its own SQLite connection),
/// used only on that queue. Results come back on the caller's loop through `loop.post`.
final class BlobWorkers: @unchecked Sendable {
    // @unchecked: `stores[i]` is only touched on `queues[i]`; `next` only on the loop.
    private let queues: [DispatchQueue]
    private let stores: [Store]
    private let loop: EventLoop
    private var next = 0

    init(loop: EventLoop, dataDir: String, count: Int = 2) throws(MeshError) {
        self.loop = loop
        var q = [DispatchQueue]()
        var s = [Store]()
        for i in 0..<max(1, count) {
            q.append(DispatchQueue(label: "meshnode.blob.\(i)", qos: .utility))
            s.append(try Store.open(dataDir: dataDir))
        }
        queues = q
        stores = s
        pendingWrites = Array(repeating: [], count: q.count)
        writing = Array(repeating: false, count: q.count)
    }

    private func pick() -> Int {
        next = (next + 1) % queues.count
        return next
    }

    /// Chunks waiting to be written, per worker; a worker takes all that queued up while
    /// it was busy and syncs them together (one fsync round for the batch).
    private var pendingWrites: [[PendingWrite]]
    private struct PendingWrite {
        var hash: ChunkHash
        var bytes: ArraySlice<UInt8>
        /// Where the chunk goes: its folder file's staging file (FolderStaging.swift), else a chunk file.
        var staging: FolderStaging?
        var done: @Sendable (MeshError?) -> Void
    }
    private var writing: [Bool]
    private let batchLock = NSLock()
    static let maxBatch = 16

    /// Verifies `bytes` against `hash` and stores the chunk crash-safely; `done` runs on the
    /// loop with nil, `.corrupt` (bytes do not match), or another error. `bytes` is usually a
    /// slice of the received frame, so the chunk is not copied before the store stages it.
    /// With `staging`, the chunk is written into that folder file's staging file instead.
    func write(_ hash: ChunkHash, _ bytes: ArraySlice<UInt8>, staging: FolderStaging? = nil, done: @escaping @Sendable (MeshError?) -> Void) {
        let i = pick()
        batchLock.lock()
        pendingWrites[i].append(PendingWrite(hash: hash, bytes: bytes, staging: staging, done: done))
        let start = !writing[i]
        writing[i] = true
        batchLock.unlock()
        if start { queues[i].async { [self] in drainWrites(i) } }
    }

    private func drainWrites(_ i: Int) {
        while true {
            batchLock.lock()
            let batch = Array(pendingWrites[i].prefix(Self.maxBatch))
            pendingWrites[i].removeFirst(batch.count)
            if batch.isEmpty { writing[i] = false }
            batchLock.unlock()
            if batch.isEmpty { return }
            // One group per destination (chunk files, or one staging file), each stored at once.
            var groups: [(staging: FolderStaging?, writes: [PendingWrite])] = []
            for w in batch {
                if let g = groups.firstIndex(where: { $0.staging === w.staging }) { groups[g].writes.append(w) } else { groups.append((w.staging, [w])) }
            }
            for g in groups { store(g.writes, staging: g.staging, on: i) }
        }
    }

    private func store(_ batch: [PendingWrite], staging: FolderStaging?, on i: Int) {
        var results: [MeshError?]
        do throws(MeshError) {
            let chunks = batch.map { ($0.hash, $0.bytes) }
            let good = if let staging { try stores[i].writeStaged(chunks, into: staging) } else { try stores[i].writeChunksKeepingGood(chunks) }
            results = good.enumerated().map { k, ok in
                ok ? nil : MeshError(.corrupt, "received chunk does not match its hash \(batch[k].hash)",
                                     hint: "the sender is broken or malicious; fetch it from another peer")
            }
        } catch {
            results = Array(repeating: error, count: batch.count)
        }
        let callbacks = batch.map(\.done)
        let r = results
        loop.post { for (k, cb) in callbacks.enumerated() { cb(r[k]) } }
    }

    /// Reads a stored chunk of `sizeBytes` to send to a peer (which verifies it) straight
    /// into a new outgoing frame that already holds `header` (the message up to the chunk
    /// bytes). The chunk lands page-aligned so the read can bypass the page cache. `done`
    /// runs on the loop; a `.corrupt` failure means the chunk's record was dropped.
    func read(_ hash: ChunkHash, header: [UInt8], sizeBytes: Int,
              done: @escaping @Sendable (Result<OutgoingFrame, MeshError>) -> Void) {
        let i = pick()
        queues[i].async { [self] in
            let r: Result<OutgoingFrame, MeshError>
            do throws(MeshError) {
                let room = (sizeBytes + 4095) & ~4095  // O_DIRECT reads whole blocks
                let frame = OutgoingFrame(messageCapacity: header.count + room, pageAlignedAt: header.count)
                frame.append(header)
                try frame.appendInPlace(maxBytes: room) { (dest) throws(MeshError) -> Int in
                    try stores[i].readChunkForPeer(hash, expectedBytes: sizeBytes, into: dest)
                }
                r = .success(frame)
            } catch {
                // Recorded, but its file is missing or of the wrong size: the record goes, so that
                // the store stops counting the chunk (and announcing it) until it is fetched again.
                if error.code == .corrupt { try? stores[i].forgetChunks([hash]) }
                r = .failure(error)
            }
            loop.post { done(r) }
        }
    }

    /// Reads a stored chunk too large for one `chunk` message and cuts it into its
    /// `chunk_piece` messages (PROTOCOL §9.2), each in its own outgoing frame, in order. The
    /// copying happens here, on the worker, not on the loop. `done` runs on the loop.
    func readPieces(_ hash: ChunkHash, requestID: UInt32, index: UInt32, sizeBytes: Int,
                    done: @escaping @Sendable (Result<[OutgoingFrame], MeshError>) -> Void) {
        let i = pick()
        queues[i].async { [self] in
            let r: Result<[OutgoingFrame], MeshError>
            do throws(MeshError) {
                let room = (sizeBytes + 4095) & ~4095  // O_DIRECT reads whole blocks
                let whole = OutgoingFrame(messageCapacity: room, pageAlignedAt: 0)
                try whole.appendInPlace(maxBytes: room) { (dest) throws(MeshError) -> Int in
                    try stores[i].readChunkForPeer(hash, expectedBytes: sizeBytes, into: dest)
                }
                let chunk = UnsafeRawBufferPointer(whole.message)
                var pieces = [OutgoingFrame]()
                var offset = 0
                while offset < sizeBytes {
                    let n = min(BlobMessage.pieceBytes, sizeBytes - offset)
                    var header = ByteWriter(capacity: BlobMessage.pieceHeaderBytes)
                    BlobMessage.chunkPiece(requestID: requestID, index: index, chunkBytes: UInt32(sizeBytes),
                                           offset: UInt32(offset), data: []).encode(into: &header)
                    let f = OutgoingFrame(messageCapacity: header.bytes.count + n)
                    f.append(header.bytes)
                    f.append(UnsafeRawBufferPointer(rebasing: chunk[offset..<(offset + n)]))
                    pieces.append(f)
                    offset += n
                }
                r = .success(pieces)
            } catch {
                // As in `read`: a recorded chunk whose file is missing or short loses its record.
                if error.code == .corrupt { try? stores[i].forgetChunks([hash]) }
                r = .failure(error)
            }
            loop.post { done(r) }
        }
    }

    /// Waits for queued work to finish (shutdown).
    func drain() { for q in queues { q.sync {} } }
}
