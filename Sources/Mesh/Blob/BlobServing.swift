import Gossip
import Store

/// Serving (docs/PROTOCOL.md §9): recipes, `have` bitmaps, and chunks in the order asked.
extension BlobService {
    func reply(_ m: BlobMessage, on session: PeerSession) {
        var capacity = 64
        if case .chunk(_, _, let data) = m { capacity += data.count }
        var w = ByteWriter(capacity: capacity)
        m.encode(into: &w)
        session.send(frame: OutgoingFrame(message: w.bytes))  // the encoding starts with the type byte
    }

    func serveRecipe(_ id: UInt32, _ c: ContentID, to peer: NodeID, session: PeerSession) {
        guard let r = recipe(c) else { return reply(.error(requestID: id, code: .unknownItem, message: "no recipe for \(c.short)"), on: session) }
        reply(.recipe(requestID: id, contentID: c, sizeBytes: r.sizeBytes, chunkSizeBytes: r.chunkSizeBytes, chunks: r.chunks), on: session)
        node.evictionServed(c)  // wanted: later in the eviction order
        noteInterest(c, peer)
    }

    /// Which chunks of `r` this node holds, for a `have` answer. Peers ask this every few seconds
    /// per item, so it avoids a `stat` per chunk on the loop thread (500 000 of them for a 1 TB
    /// item): a complete item is remembered as such, and an item being fetched is answered from
    /// its fetch's state. Only other items are looked up chunk by chunk.
    func bitmap(_ r: Recipe) -> (bitmap: [UInt8], complete: Bool) {
        if knownComplete.contains(r.contentID) {
            return (ChunkBitmap.make(count: r.chunks.count) { _ in true }, true)
        }
        if let s = downloads[r.contentID]?.scheduler, s.chunkCount == r.chunks.count {
            return (ChunkBitmap.make(count: r.chunks.count) { s.holds($0) }, s.isComplete)
        }
        let held = (try? node.store.recordedChunks(r)) ?? Array(repeating: false, count: r.chunks.count)
        let complete = !held.contains(false)
        let b = ChunkBitmap.make(count: r.chunks.count) { held[$0] }
        if complete { rememberComplete(r.contentID) }
        return (b, complete)
    }

    func rememberComplete(_ c: ContentID) {
        if knownComplete.count >= 65_536 { knownComplete.removeAll() }
        knownComplete.insert(c)
    }

    /// The store no longer records a chunk of `c` (found missing or damaged on disk): `c` is not
    /// complete here after all, so it is fetched again.
    func chunkLost(_ c: ContentID) {
        knownComplete.remove(c)
        // (Not when the chunk went because nothing keeps the item any more: a collection.)
        if node.keeper.isKept(c), node.placementAdmits(c) { want(c, holders: [], reason: .replication) }
    }

    func serveHave(_ id: UInt32, _ c: ContentID, to peer: NodeID, session: PeerSession) {
        guard let r = recipe(c) else { return reply(.error(requestID: id, code: .unknownItem, message: "no recipe for \(c.short)"), on: session) }
        reply(.have(requestID: id, contentID: c, chunkCount: UInt32(r.chunks.count), bitmap: bitmap(r).bitmap), on: session)
        noteInterest(c, peer)
    }

    func enqueueServe(_ id: UInt32, _ c: ContentID, _ indices: [Int], priority: TransferPriority = .normal,
                      session: PeerSession, peer: NodeID) {
        let key = ObjectIdentifier(session)
        let q = serveQueues[key] ?? ServeQueue()
        serveQueues[key] = q
        guard q.jobCount < 64 else { return reply(.error(requestID: id, code: .busy, message: "too many queued requests"), on: session) }
        q.jobs[Int(priority.rawValue)].append((id, c, indices))
        serveNext(session: session, peer: peer)
    }

    /// The class of `q` whose next chunk is read next: the session's own share of its upload
    /// among priorities (PriorityScheduler), by the size of each class's next chunk.
    func nextServeClass(_ q: ServeQueue) -> TransferPriority? {
        let heads: [Int?] = q.jobs.map { jobs in
            guard let job = jobs.first, let index = job.indices.first else { return nil }
            guard let r = recipe(job.content), index >= 0, index < r.chunks.count else { return 0 }
            return r.length(ofChunk: index)
        }
        return q.scheduler.next(headBytes: heads)
    }

    /// Serves the queued `get`s of one session: up to `maxParallelReads` chunk reads run on
    /// the workers at once (fewer for large chunks), started in the order the session's priority
    /// scheduler picks (each `get`'s chunks in the order asked), and sent in the order read,
    /// paced by the per-peer limit, the global limit (shared by priority, `uploadPacer`) and
    /// the session's write queue. A chunk
    /// over 8 MiB goes out as its `chunk_piece`s, each paced like a chunk, with no other `chunk`
    /// or `chunk_piece` between them (PROTOCOL §9.2).
    func serveNext(session: PeerSession, peer: NodeID) {
        let key = ObjectIdentifier(session)
        guard let q = serveQueues[key], session.isOpen, !session.isClosing else { return }
        // Steps 1 and 2 repeat while a slot is free and jobs wait: slots that fail at once (a chunk
        // not held, a bad index) are answered in step 2 without any read completing, so nothing
        // else would call this again and the remaining jobs would wait for the next request.
        repeat {
            // 1. Start reads.
            while q.inflight.count < maxParallelReads(q), let priority = nextServeClass(q) {
                let p = Int(priority.rawValue)
                var job = q.jobs[p][0]
                let index = job.indices.removeFirst()
                if job.indices.isEmpty { q.jobs[p].removeFirst() } else { q.jobs[p][0] = job }
                let slot = ReadSlot(id: job.id, index: index)
                slot.priority = priority
                q.inflight.append(slot)
                guard let r = recipe(job.content), index >= 0, index < r.chunks.count else {
                    slot.finish(.failure(MeshError(.invalidInput, "no chunk \(index) of \(job.content.short)")), code: .badRequest)
                    continue
                }
                let hash = r.chunks[index]
                guard node.store.hasChunk(hash) else {
                    if knownComplete.contains(job.content) { chunkLost(job.content) }  // its record was dropped elsewhere
                    slot.finish(.failure(MeshError(.unknownItem, "chunk \(index) not held")), code: .notHeld)
                    continue
                }
                let size = r.length(ofChunk: index)
                let content = job.content
                let done: @Sendable (Result<[OutgoingFrame], MeshError>) -> Void = { [weak self, weak session] result in
                    slot.finish(result, code: .internalError)
                    if case .failure(let e) = result, e.code == .corrupt { self?.chunkLost(content) }  // BlobWorkers.read
                    if let self, let session { self.serveNext(session: session, peer: peer) }
                }
                if BlobMessage.pieceCount(chunkBytes: size) > 0 {
                    workers.readPieces(hash, requestID: job.id, index: UInt32(index), sizeBytes: size, done: done)
                } else {
                    // The message up to the chunk bytes; the worker reads the chunk in after it.
                    var header = ByteWriter(capacity: BlobMessage.chunkHeaderBytes)
                    BlobMessage.chunk(requestID: job.id, index: UInt32(index), data: []).encode(into: &header)
                    workers.read(hash, header: header.bytes, sizeBytes: size) { done($0.map { [$0] }) }
                }
            }
            // 2. Send what is ready, in order.
            while !q.sending, let head = q.inflight.first, let result = head.result {
                switch result {
                case .failure(let e):
                    q.inflight.removeFirst()
                    counters.chunksRefused += 1
                    reply(.error(requestID: head.id, code: head.code, message: e.message), on: session)
                case .success(var frames):
                    if session.writeQueueBytes > config.maxQueuedServeBytes {
                        q.sending = true
                        after(.milliseconds(2)) { [weak self, weak session] in
                            q.sending = false
                            if let self, let session { self.serveNext(session: session, peer: peer) }
                        }
                        return
                    }
                    guard !frames.isEmpty else {
                        q.inflight.removeFirst()
                        continue
                    }
                    // One `chunk`, or the next `chunk_piece` of a large chunk.
                    let frame = frames.removeFirst()
                    let last = frames.isEmpty
                    head.result = .success(frames)
                    let headerBytes = frame.message[0] == BlobMessage.Tag.chunkPiece.rawValue
                        ? BlobMessage.pieceHeaderBytes : BlobMessage.chunkHeaderBytes
                    let dataBytes = frame.messageCount - headerBytes
                    let wait = limiter.reserve(dataBytes, peer: peer, rateBytesPerSecond: perPeerLimit(peer),
                                               nowNanoseconds: UInt64(MeshNode.now().nanoseconds))
                    if last { q.inflight.removeFirst() }
                    if corruptServing, dataBytes > 0, !head.corrupted {  // one flipped byte per chunk
                        frame.message[headerBytes + dataBytes / 2] ^= 0xff
                        head.corrupted = true
                    }
                    let send = { [weak self, weak session] in
                        guard let self, let session, session.isOpen else { return }
                        session.send(frame: frame)
                        if last { self.counters.chunksServed += 1 }
                        self.counters.bytesServed += UInt64(dataBytes)
                    }
                    let priority = head.priority
                    if wait > 0 || uploadPacer.bucket != nil {
                        // The peer's own limit first, then a turn of the global limit by priority.
                        q.sending = true
                        let resume = { [weak self, weak session] in
                            send()
                            q.sending = false
                            if let self, let session { self.serveNext(session: session, peer: peer) }
                        }
                        let paced = { [weak self] in
                            guard let self else { return }
                            if self.uploadPacer.bucket == nil { return resume() }
                            self.paceUpload(bytes: dataBytes, priority: priority, resume)
                        }
                        if wait > 0 { after(.nanoseconds(Int64(wait)), paced) } else { paced() }
                        return
                    }
                    send()
                }
            }
        } while !q.sending && q.inflight.count < maxParallelReads(q) && q.jobCount > 0
    }

    static let maxParallelReads = 3
    /// Chunk bytes a session's reads may hold at once, so that 64 MiB chunks are read one at a
    /// time (each is held twice while it is cut into pieces).
    static let maxParallelReadBytes = 24 << 20

    /// How many chunk reads one session's queue may run at once: `maxParallelReads`, fewer for
    /// chunks so large that three would hold more than `maxParallelReadBytes`.
    func maxParallelReads(_ q: ServeQueue) -> Int {
        guard let c = q.firstJob?.content, let r = recipe(c) else { return Self.maxParallelReads }
        return max(1, min(Self.maxParallelReads, Self.maxParallelReadBytes / max(1, Int(r.chunkSizeBytes))))
    }
}
