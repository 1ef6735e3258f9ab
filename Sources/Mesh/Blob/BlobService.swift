import Gossip
import Logging
import Store

/// One transfer in flight, as `meshnode status` shows it.
public struct TransferRow: Codable, Sendable, Equatable {
    public var id: String
    public var name: String
    public var sizeBytes: UInt64
    public var doneBytes: UInt64
    public var rateBytesPerSecond: Double
    public var sources: Int
    public var state: String

    enum CodingKeys: String, CodingKey {
        case id, name, sources, state
        case sizeBytes = "size", doneBytes = "done", rateBytesPerSecond = "rate_bytes_per_s"
    }
}

/// Counters of the chunk exchange.
public struct BlobCounters: Codable, Sendable, Equatable {
    public var chunksFetched: UInt64 = 0
    public var bytesFetched: UInt64 = 0
    public var chunksServed: UInt64 = 0
    public var bytesServed: UInt64 = 0
    public var corruptChunks: UInt64 = 0
    /// Chunks asked of this node that it answered with an error (not held, bad index, read failure).
    public var chunksRefused: UInt64 = 0
    /// Chunks that arrived after another copy of them had been verified (endgame duplicates);
    /// not counted in `chunksFetched`/`bytesFetched`.
    public var duplicateChunks: UInt64 = 0
    public var requestsFailed: UInt64 = 0
    /// Requests that got no answer within `requestTimeout`. Requests on a connection known to be
    /// dead (closed, or a dial that failed) are failed at once and are not counted here.
    public var requestsTimedOut: UInt64 = 0
    /// Items that stalled (`stalledAfter`) and gave their slot to a waiting item.
    public var itemsRequeued: UInt64 = 0
    public var itemsCompleted: UInt64 = 0
    /// Strikes against peers that sent chunks not matching their hash, by short node id.
    public var strikes: [String: UInt64] = [:]

    enum CodingKeys: String, CodingKey {
        case strikes
        case chunksFetched = "chunks_fetched", bytesFetched = "bytes_fetched", chunksServed = "chunks_served"
        case bytesServed = "bytes_served", corruptChunks = "corrupt_chunks", chunksRefused = "chunks_refused"
        case duplicateChunks = "duplicate_chunks"
        case requestsFailed = "requests_failed"
        case requestsTimedOut = "requests_timed_out", itemsRequeued = "items_requeued", itemsCompleted = "items_completed"
    }
}

/// The chunk exchange of one node (docs/PROTOCOL.md §9): serves chunks to peers and
/// fetches the items this node wants from every peer that holds them.
///
/// Loop-confined. Chunk hashing, writes and reads run on `BlobWorkers`.
public final class BlobService: @unchecked Sendable {
    // @unchecked: loop-confined, like the node that owns it.
    public enum Reason: Sendable { case replication, request }

    public struct Config: Sendable {
        /// Items fetched at once; more wait their turn.
        public var maxConcurrentDownloads = 8
        /// A request with no answer for this long fails (and its source backs off).
        public var requestTimeout: Duration = .seconds(10)
        /// An item being fetched that made no progress (no recipe, no chunk) for this long while
        /// others wait gives its slot to the next and goes to the back of the queue. Without
        /// this, items whose only holder vanished before anyone copied them (spot hosts) would
        /// hold every slot for ever.
        public var stalledAfter: Duration = .seconds(60)
        /// Sources are looked for again this often while an item is incomplete.
        public var discoveryInterval: Duration = .seconds(2)
        /// Peers asked for their holdings per discovery round.
        public var discoveryFanout = 8
        /// Stop reading chunks for a session while it has this many bytes queued.
        public var maxQueuedServeBytes = 8 << 20
        public var bandwidth = BandwidthConfig()
        public var scheduler = FetchScheduler.Config()
        /// Testing aid only: serve every chunk with one byte flipped, so that receivers'
        /// verification, strikes and source failover can be exercised end to end.
        public var testCorruptServing = false
        public init() {}
    }

    unowned let node: MeshNode
    let config: Config
    let workers: BlobWorkers
    let logger: Logger
    public private(set) var counters = BlobCounters()

    private var downloads: [ContentID: Download] = [:]
    private var waiting: [ContentID] = []
    private var requests: [UInt32: Request] = [:]
    private var nextRequestID: UInt32 = 1
    /// Nodes known to hold an item complete (from `have` answers and announcements).
    private var holders: [ContentID: Set<NodeID>] = [:]
    private var recipes: [ContentID: Recipe] = [:]
    private var serveQueues: [ObjectIdentifier: ServeQueue] = [:]
    private var limiter: BandwidthLimiter<NodeID>
    private var tick: LoopTimer?
    private var completionWaiters: [ContentID: [(MeshError?) -> Void]] = [:]
    private var lastChunkAt: [NodeID: Instant] = [:]
    /// Testing aid: serve chunks with one byte flipped (MESHNODE_TEST_CORRUPT_SERVING=1).
    let corruptServing: Bool

    // Loop-confined; @unchecked so worker completions (posted back to the loop) may hold them.
    final class Download: @unchecked Sendable {
        let contentID: ContentID
        var entry: ManifestEntry?
        var recipe: Recipe?
        var scheduler: FetchScheduler?
        var reason: Reason
        var hints: Set<NodeID>
        var recipeAsked: Set<NodeID> = []
        var recipeRequest: UInt32?
        var haveAsked: [NodeID: Instant] = [:]
        var lastDiscovery = Instant(nanoseconds: .min / 2)
        var writesInFlight = 0
        var doneBytes: UInt64 = 0
        var rate: Double = 0
        var rateSample: (Instant, UInt64)
        var started: Instant
        /// When it last got its recipe or a verified chunk (or its slot).
        var lastProgress: Instant
        init(_ id: ContentID, reason: Reason, hints: Set<NodeID>, now: Instant) {
            contentID = id
            self.reason = reason
            self.hints = hints
            started = now
            lastProgress = now
            rateSample = (now, 0)
        }
    }

    struct Request {
        enum Kind { case recipe, have, get(remaining: [Int]) }
        var content: ContentID
        var source: NodeID
        var kind: Kind
        var sentAt: Instant
        var session: ObjectIdentifier?
        /// When the request last showed it was alive (sent, or a chunk of it arrived); its
        /// timeout runs from here, so a long queue on a slow but working session does not time
        /// out its tail.
        var lastProgressAt: Instant

        init(content: ContentID, source: NodeID, kind: Kind, sentAt: Instant, session: ObjectIdentifier?) {
            self.content = content
            self.source = source
            self.kind = kind
            self.sentAt = sentAt
            self.session = session
            lastProgressAt = sentAt
        }
    }

    final class ServeQueue: @unchecked Sendable {
        var jobs: [(id: UInt32, content: ContentID, indices: [Int])] = []
        var inflight: [ReadSlot] = []
        var sending = false
    }

    /// One chunk being read for a peer; filled in on the loop when the worker is done.
    final class ReadSlot: @unchecked Sendable {
        let id: UInt32
        let index: Int
        /// The `chunk` message, read straight into its outgoing frame.
        var result: Result<OutgoingFrame, MeshError>?
        var code: BlobErrorCode = .internalError
        init(id: UInt32, index: Int) { self.id = id; self.index = index }
        func finish(_ r: Result<OutgoingFrame, MeshError>, code: BlobErrorCode) {
            result = r
            self.code = code
        }
    }

    init(node: MeshNode, config: Config, dataDir: String, logger: Logger) throws(MeshError) {
        self.node = node
        self.config = config
        self.logger = logger
        workers = try BlobWorkers(loop: node.loop, dataDir: dataDir)
        limiter = BandwidthLimiter(config.bandwidth, nowNanoseconds: UInt64(max(0, MeshNode.now().nanoseconds)))
        corruptServing = config.testCorruptServing
        let t = try LoopTimer(loop: node.loop) { [unowned self] in self.onTick() }
        t.start(after: .milliseconds(250), repeating: .milliseconds(250))
        tick = t
        // Resume what a previous run left incomplete.
        for item in (try? node.store.items()) ?? [] where !item.isComplete {
            want(item.contentID, holders: [item.entry.origin], reason: .replication, entry: item.entry)
        }
    }

    func close() {
        tick?.close()
        tick = nil
        workers.drain()  // no chunk write is left half done behind the node's back
        for (_, ws) in completionWaiters { for w in ws { w(MeshError(.closed, "the node is shutting down")) } }
        completionWaiters = [:]
    }

    // MARK: - Wanting items

    /// Starts fetching `id` (idempotent). `holders` are hints of who has it.
    public func want(_ id: ContentID, holders hints: [NodeID], reason: Reason, entry: ManifestEntry? = nil) {
        if let d = downloads[id] {
            d.hints.formUnion(hints)
            if reason == .request { d.reason = .request }
            return
        }
        if (try? node.store.isComplete(id)) == true { return }
        let d = Download(id, reason: reason, hints: Set(hints), now: MeshNode.now())
        d.entry = entry ?? (try? node.store.entry(contentID: id)) ?? nil
        downloads[id] = d
        if activeCount > config.maxConcurrentDownloads { waiting.append(id) }
        logger.debug("want", metadata: ["item": "\(id.short)"])
        pump(d)
    }

    /// Calls `done` once `id` is complete here (nil) or can no longer be fetched.
    public func whenComplete(_ id: ContentID, done: @escaping (MeshError?) -> Void) {
        if (try? node.store.isComplete(id)) == true { return done(nil) }
        completionWaiters[id, default: []].append(done)
        want(id, holders: [], reason: .request)
    }

    private var activeCount: Int { downloads.count - waiting.count }

    private func isActive(_ d: Download) -> Bool { !waiting.contains(d.contentID) }

    // MARK: - Messages

    func received(type: UInt8, body: ArraySlice<UInt8>, from peer: NodeID, session: PeerSession) {
        // Chunks are most of the bytes: take them straight from the frame, one copy.
        if type == BlobMessage.Tag.chunk.rawValue {
            guard body.count >= 8, body.count - 8 <= BlobMessage.maxChunkBytes else {
                node.count("malformed_blob_message", peer: peer.short, detail: "chunk message of \(body.count) bytes")
                return
            }
            let b = body.startIndex
            func u32(_ at: Int) -> UInt32 { body[at..<(at + 4)].reduce(0) { $0 << 8 | UInt32($1) } }
            gotChunk(u32(b), Int(u32(b + 4)), body[(b + 8)...], from: peer)
            return
        }
        let msg: BlobMessage
        do { msg = try BlobMessage.decode([type] + body) } catch {
            node.count("malformed_blob_message", peer: peer.short, detail: "\(error)")
            return
        }
        switch msg {
        case .wantRecipe(let id, let c): serveRecipe(id, c, to: peer, session: session)
        case .wantHave(let id, let c): serveHave(id, c, to: peer, session: session)
        case .get(let id, let c, let indices): enqueueServe(id, c, indices.map(Int.init), session: session, peer: peer)
        case .cancel(let id):
            serveQueues[ObjectIdentifier(session)]?.jobs.removeAll { $0.id == id }
        case .recipe(let id, let c, let size, let cs, let chunks): gotRecipe(id, c, size, cs, chunks, from: peer)
        case .have(let id, let c, let n, let bitmap): gotHave(id, c, Int(n), bitmap, from: peer)
        case .chunk(let id, let index, let data): gotChunk(id, Int(index), data[...], from: peer)
        case .error(let id, let code, let message): gotError(id, code, message, from: peer)
        }
    }

    /// A session ended: what was asked on it will never be answered. When it was the peer's
    /// current session, requests not yet bound to a session (sent while dialling) are lost too.
    ///
    /// A closed connection is one failure of its peer, however many requests it carried, so the
    /// backoff grows with the number of failed connections, not with the window size.
    func sessionClosed(_ s: PeerSession, peer: NodeID?, wasCurrent: Bool) {
        serveQueues[ObjectIdentifier(s)] = nil
        failRequests { _, r in r.session == ObjectIdentifier(s) || (wasCurrent && r.source == peer && r.session == nil) }
    }

    /// The messages queued for `peer` while its connection was being made have just been handed
    /// to `session`: the requests among them now live and die with that session.
    func queuedRequestsSent(to peer: NodeID, on session: PeerSession) {
        for (rid, r) in requests where r.source == peer && r.session == nil {
            requests[rid]?.session = ObjectIdentifier(session)
        }
    }

    /// A connection attempt to `peer` failed: the chunk requests queued for it are lost. Without
    /// this they would hold the source's window until `requestTimeout`. Recipe and `have`
    /// requests are left to their timeout, which paces asking a peer that is down.
    ///
    /// A dial can fail synchronously, inside a send that `pump` is making, so the requests are
    /// picked now and failed on the next turn of the loop.
    func dialFailed(peer: NodeID) {
        let lost = Set(requests.compactMap { rid, r -> UInt32? in
            guard r.source == peer, r.session == nil, case .get = r.kind else { return nil }
            return rid
        })
        guard !lost.isEmpty else { return }
        _ = node.loop.post { [weak self] in
            self?.failRequests { rid, r in lost.contains(rid) && r.session == nil }
        }
    }

    /// Fails the requests `isLost` picks, as one failure per source and item, then pumps.
    private func failRequests(_ isLost: (UInt32, Request) -> Bool) {
        let now = MeshNode.now()
        var lost: [ContentID: [NodeID: [Int]]] = [:]
        for (rid, r) in requests where isLost(rid, r) {
            if case .get(let remaining) = r.kind {
                requests[rid] = nil
                counters.requestsFailed += 1
                lost[r.content, default: [:]][r.source, default: []] += remaining
            } else {
                fail(rid, r, now: now)
            }
        }
        for (content, bySource) in lost {
            for (source, indices) in bySource {
                downloads[content]?.scheduler?.onRequestFailed(indices, from: source, now: .nanoseconds(now.nanoseconds))
            }
        }
        for d in downloads.values { pump(d) }
    }

    /// A session with `peer` was established: that is fresh evidence it can serve, so any backoff
    /// its earlier failures earned ends now (a source that restarted is used again at once, not
    /// after up to `maxBackoff`).
    func sessionEstablished(peer: NodeID) {
        let now = Duration.nanoseconds(MeshNode.now().nanoseconds)
        for d in downloads.values {
            d.scheduler?.onSourceReachable(peer, now: now)
            pump(d)
        }
    }

    // MARK: - Serving

    private func recipe(_ c: ContentID) -> Recipe? {
        if let r = recipes[c] { return r }
        guard let r = try? node.store.recipe(c), r.contentID == c else { return nil }
        if recipes.count > 64 { recipes.removeAll() }
        recipes[c] = r
        return r
    }

    private func reply(_ m: BlobMessage, on session: PeerSession) {
        var capacity = 64
        if case .chunk(_, _, let data) = m { capacity += data.count }
        var w = ByteWriter(capacity: capacity)
        m.encode(into: &w)
        session.send(frame: OutgoingFrame(message: w.bytes))  // the encoding starts with the type byte
    }

    private func serveRecipe(_ id: UInt32, _ c: ContentID, to peer: NodeID, session: PeerSession) {
        guard let r = recipe(c) else { return reply(.error(requestID: id, code: .unknownItem, message: "no recipe for \(c.short)"), on: session) }
        reply(.recipe(requestID: id, contentID: c, sizeBytes: r.sizeBytes, chunkSizeBytes: r.chunkSizeBytes, chunks: r.chunks), on: session)
    }

    /// Which chunks of `r` this node holds, for a `have` answer. Peers ask this every few seconds
    /// per item, so it avoids a `stat` per chunk on the loop thread (500 000 of them for a 1 TB
    /// item): a complete item is remembered as such, and an item being fetched is answered from
    /// its fetch's state. Only other items are looked up chunk by chunk.
    private func bitmap(_ r: Recipe) -> (bitmap: [UInt8], complete: Bool) {
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

    /// Items known to be complete here (bounded; forgetting one only costs a lookup). A chunk
    /// of one that is later lost on disk is refused when asked for, and the asker goes elsewhere.
    private var knownComplete: Set<ContentID> = []

    private func rememberComplete(_ c: ContentID) {
        if knownComplete.count >= 65_536 { knownComplete.removeAll() }
        knownComplete.insert(c)
    }

    private func serveHave(_ id: UInt32, _ c: ContentID, to peer: NodeID, session: PeerSession) {
        guard let r = recipe(c) else { return reply(.error(requestID: id, code: .unknownItem, message: "no recipe for \(c.short)"), on: session) }
        reply(.have(requestID: id, contentID: c, chunkCount: UInt32(r.chunks.count), bitmap: bitmap(r).bitmap), on: session)
    }

    private func enqueueServe(_ id: UInt32, _ c: ContentID, _ indices: [Int], session: PeerSession, peer: NodeID) {
        let key = ObjectIdentifier(session)
        let q = serveQueues[key] ?? ServeQueue()
        serveQueues[key] = q
        guard q.jobs.count < 64 else { return reply(.error(requestID: id, code: .busy, message: "too many queued requests"), on: session) }
        q.jobs.append((id, c, indices))
        serveNext(session: session, peer: peer)
    }

    /// Serves the queued `get`s of one session: up to `maxParallelReads` chunk reads run on
    /// the workers at once, and the chunks go out strictly in the order they were asked for,
    /// paced by the upload limits and the session's write queue.
    private func serveNext(session: PeerSession, peer: NodeID) {
        let key = ObjectIdentifier(session)
        guard let q = serveQueues[key], session.isOpen else { return }
        // Steps 1 and 2 repeat while a slot is free and jobs wait: slots that fail at once (a chunk
        // not held, a bad index) are answered in step 2 without any read completing, so nothing
        // else would call this again and the remaining jobs would wait for the next request.
        repeat {
            // 1. Start reads.
            while q.inflight.count < Self.maxParallelReads, !q.jobs.isEmpty {
                var job = q.jobs[0]
                let index = job.indices.removeFirst()
                if job.indices.isEmpty { q.jobs.removeFirst() } else { q.jobs[0] = job }
                let slot = ReadSlot(id: job.id, index: index)
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
                // The message up to the chunk bytes; the worker reads the chunk in after it.
                var header = ByteWriter(capacity: 9)
                BlobMessage.chunk(requestID: job.id, index: UInt32(index), data: []).encode(into: &header)
                let start = UInt64(index) * UInt64(r.chunkSizeBytes)
                let size = Int(min(UInt64(r.chunkSizeBytes), r.sizeBytes - min(start, r.sizeBytes)))
                let content = job.content
                workers.read(hash, header: header.bytes, sizeBytes: size) { [weak self, weak session] result in
                    slot.finish(result, code: .internalError)
                    if case .failure(let e) = result, e.code == .corrupt { self?.chunkLost(content) }  // BlobWorkers.read
                    if let self, let session { self.serveNext(session: session, peer: peer) }
                }
            }
            // 2. Send what is ready, in order.
            while !q.sending, let head = q.inflight.first, let result = head.result {
                switch result {
                case .failure(let e):
                    q.inflight.removeFirst()
                    counters.chunksRefused += 1
                    reply(.error(requestID: head.id, code: head.code, message: e.message), on: session)
                case .success(let frame):
                    if session.writeQueueBytes > config.maxQueuedServeBytes {
                        q.sending = true
                        after(.milliseconds(2)) { [weak self, weak session] in
                            q.sending = false
                            if let self, let session { self.serveNext(session: session, peer: peer) }
                        }
                        return
                    }
                    let chunkBytes = frame.messageCount - Self.chunkHeaderBytes
                    let wait = limiter.reserve(chunkBytes, peer: peer, nowNanoseconds: UInt64(MeshNode.now().nanoseconds))
                    q.inflight.removeFirst()
                    if corruptServing, chunkBytes > 0 {
                        frame.message[Self.chunkHeaderBytes + chunkBytes / 2] ^= 0xff
                    }
                    let send = { [weak self, weak session] in
                        guard let self, let session, session.isOpen else { return }
                        session.send(frame: frame)
                        self.counters.chunksServed += 1
                        self.counters.bytesServed += UInt64(chunkBytes)
                    }
                    if wait > 0 {
                        q.sending = true
                        after(.nanoseconds(Int64(wait))) { [weak self, weak session] in
                            send()
                            q.sending = false
                            if let self, let session { self.serveNext(session: session, peer: peer) }
                        }
                        return
                    }
                    send()
                }
            }
        } while !q.sending && q.inflight.count < Self.maxParallelReads && !q.jobs.isEmpty
    }

    /// The store no longer records a chunk of `c` (found missing or damaged on disk): `c` is not
    /// complete here after all, so it is fetched again.
    private func chunkLost(_ c: ContentID) {
        knownComplete.remove(c)
        want(c, holders: [], reason: .replication)
    }

    /// Bytes of a `chunk` message before the chunk itself: type, request id, index.
    static let chunkHeaderBytes = 9
    static let maxParallelReads = 3

    private func after(_ d: Duration, _ body: @escaping () -> Void) {
        guard let t = try? LoopTimer(loop: node.loop) else { return body() }
        t.onFire = { [t] in
            t.close()
            body()
        }
        t.start(after: d)
    }

    // MARK: - Fetching

    private func newRequest(_ r: Request) -> UInt32 {
        repeat { nextRequestID &+= 1 } while nextRequestID == 0 || requests[nextRequestID] != nil
        requests[nextRequestID] = r
        return nextRequestID
    }

    private func sendRequest(_ m: BlobMessage, to peer: NodeID) -> Bool {
        var w = ByteWriter(capacity: 64)
        m.encode(into: &w)
        let bytes = w.bytes
        return node.send(bytes[0], Array(bytes[1...]), toNode: peer)
    }

    /// Peers worth asking about `d`: hints, known holders, then other alive members.
    private func candidates(_ d: Download) -> [NodeID] {
        var out = Array(d.hints.union(holders[d.contentID] ?? [])).filter { $0 != node.identity.nodeID }.sorted()
        let alive = node.gossip.aliveMembers.sorted()
        for a in alive where !out.contains(a) { out.append(a) }
        return out
    }

    private func pump(_ d: Download) {
        guard isActive(d) else { return }
        let now = MeshNode.now()
        if d.recipe == nil, let r = recipe(d.contentID) { startScheduling(d, r) }
        guard let scheduler = d.scheduler else {
            // Ask one candidate at a time for the recipe.
            guard d.recipeRequest == nil else { return }
            for c in candidates(d) where !d.recipeAsked.contains(c) {
                d.recipeAsked.insert(c)
                let rid = newRequest(Request(content: d.contentID, source: c, kind: .recipe, sentAt: now, session: node.session(with: c).map(ObjectIdentifier.init)))
                // Recorded before sending: a send on a session that is closing closes it at once,
                // which fails this request (and clears `recipeRequest`) before `sendRequest` returns.
                d.recipeRequest = rid
                if sendRequest(.wantRecipe(requestID: rid, contentID: d.contentID), to: c) { return }
                if d.recipeRequest == rid { d.recipeRequest = nil }
                requests[rid] = nil
            }
            if d.recipeAsked.count >= candidates(d).count { d.recipeAsked = [] }  // go round again next tick
            return
        }
        if now - d.lastDiscovery > MeshNode.nanos(config.discoveryInterval) {
            d.lastDiscovery = now
            var asked = 0
            for c in candidates(d) where asked < config.discoveryFanout {
                if let last = d.haveAsked[c], now - last < MeshNode.nanos(config.discoveryInterval) * 3 { continue }
                d.haveAsked[c] = now
                let rid = newRequest(Request(content: d.contentID, source: c, kind: .have, sentAt: now, session: node.session(with: c).map(ObjectIdentifier.init)))
                if sendRequest(.wantHave(requestID: rid, contentID: d.contentID), to: c) { asked += 1 } else { requests[rid] = nil }
            }
        }
        var s = scheduler
        // Every tick, not only when there is work to hand out: a connection whose window is
        // full still needs its successor opened before the predicted reset.
        for src in s.sourceIDs { _ = node.pathBudget(src) }
        var assignments = s.assign(now: .nanoseconds(now.nanoseconds))
        // Give a connection only what it can carry before its path is likely to reset it;
        // the rest waits for the successor connection the node opens meanwhile.
        let chunkBytes = Int(d.recipe?.chunkSizeBytes ?? 0)
        var outstanding: [NodeID: Int] = [:]
        for i in assignments.indices {
            let src = assignments[i].source
            guard let budget = node.pathBudget(src) else { continue }
            let current = node.session(with: src).map(ObjectIdentifier.init)
            if outstanding[src] == nil {
                outstanding[src] = requests.values.reduce(0) { acc, r in
                    guard r.source == src, r.session == current, case .get(let rem) = r.kind else { return acc }
                    return acc + rem.count * chunkBytes
                }
            }
            var fits = max(0, (budget - outstanding[src]!) / max(chunkBytes, 1))
            // A budget below one chunk (a slow path that also resets often) would otherwise starve
            // the source for good: with no chunk arriving, its throughput estimate never recovers.
            if fits == 0 && outstanding[src]! == 0 && budget > 0 { fits = 1 }
            if fits < assignments[i].indices.count {
                s.unassign(Array(assignments[i].indices[fits...]), from: src)
                assignments[i].indices = Array(assignments[i].indices[..<fits])
            }
            outstanding[src]! += assignments[i].indices.count * chunkBytes
        }
        d.scheduler = s
        for a in assignments where !a.indices.isEmpty {
            let rid = newRequest(Request(content: d.contentID, source: a.source, kind: .get(remaining: a.indices), sentAt: now,
                                         session: node.session(with: a.source).map(ObjectIdentifier.init)))
            if !sendRequest(.get(requestID: rid, contentID: d.contentID, indices: a.indices.map(UInt32.init)), to: a.source) {
                fail(rid, requests[rid]!, now: now)
            }
        }
        finishIfComplete(d)
    }

    private func startScheduling(_ d: Download, _ r: Recipe) {
        d.recipe = r
        d.lastProgress = MeshNode.now()
        let held = (try? node.store.recordedChunks(r)) ?? Array(repeating: false, count: r.chunks.count)  // the record, not the files
        d.scheduler = FetchScheduler(chunkCount: r.chunks.count, chunkSizeBytes: Int(r.chunkSizeBytes),
                                     present: { held[$0] }, config: config.scheduler)
        d.doneBytes = (0..<r.chunks.count).reduce(0) { $0 + (held[$1] ? UInt64(r.length(ofChunk: $1)) : 0) }
        for h in holders[d.contentID] ?? [] { d.scheduler!.addSource(h, holds: .all) }
        d.lastDiscovery = Instant(nanoseconds: .min / 2)
    }

    /// The open request `id` if `peer` was asked it about `content`; a reply that matches no such
    /// request (late, duplicated, or another peer's id) is ignored, and nothing is removed.
    private func request(_ id: UInt32, askedOf peer: NodeID, about content: ContentID) -> Request? {
        guard let r = requests[id], r.source == peer, r.content == content else { return nil }
        return r
    }

    private func gotRecipe(_ id: UInt32, _ c: ContentID, _ size: UInt64, _ cs: UInt32, _ chunks: [ChunkHash], from peer: NodeID) {
        guard let req = request(id, askedOf: peer, about: c), case .recipe = req.kind, let d = downloads[c] else { return }
        requests[id] = nil
        if d.recipeRequest == id { d.recipeRequest = nil }
        do {
            try node.store.insertRecipe(contentID: c, sizeBytes: size, chunkSizeBytes: cs, chunks: chunks)
        } catch {
            node.count("bad_recipe", peer: peer.short, detail: error.description)
            pump(d)
            return
        }
        if let r = recipe(c) { startScheduling(d, r) }
        pump(d)
    }

    private func gotHave(_ id: UInt32, _ c: ContentID, _ n: Int, _ bitmap: [UInt8], from peer: NodeID) {
        if id != 0, let req = request(id, askedOf: peer, about: c), case .have = req.kind { requests[id] = nil }
        // An item has at least one chunk unless it is empty; a count that disagrees with the
        // recipe known here is not believed.
        if let r = recipe(c) {
            guard n == r.chunks.count else { return }
        } else if n == 0 {
            return
        }
        let complete = (0..<n).allSatisfy { ChunkBitmap.contains(bitmap, $0) }
        if complete { holders[c, default: []].insert(peer) }
        guard let d = downloads[c], var s = d.scheduler, n == s.chunkCount else { return }
        let anything = (0..<n).contains { ChunkBitmap.contains(bitmap, $0) }
        guard anything else { return }
        s.addSource(peer, holds: complete ? .all : .bitmap(bitmap))
        d.scheduler = s
        pump(d)
    }

    private func gotChunk(_ id: UInt32, _ index: Int, _ data: ArraySlice<UInt8>, from peer: NodeID) {
        guard var req = requests[id], req.source == peer, case .get(var remaining) = req.kind, let k = remaining.firstIndex(of: index),
              let d = downloads[req.content], let r = d.recipe, index < r.chunks.count else { return }
        let now = MeshNode.now()
        let elapsed = Duration.nanoseconds(max(1, now - req.sentAt))
        remaining.remove(at: k)
        if remaining.isEmpty {
            requests[id] = nil
        } else {
            req.kind = .get(remaining: remaining)
            req.lastProgressAt = now
            requests[id] = req
        }
        let since = max(req.sentAt, lastChunkAt[peer] ?? req.sentAt)
        lastChunkAt[peer] = now
        node.pathTransferred(peer, bytes: data.count, seconds: Double(max(1, now - since)) / 1e9)
        let hash = r.chunks[index]
        d.writesInFlight += 1
        workers.write(hash, data) { [weak self] error in
            guard let self else { return }
            d.writesInFlight -= 1
            guard var s = d.scheduler else { return }
            if let error, error.code == .corrupt {
                self.counters.corruptChunks += 1
                self.counters.strikes[peer.short, default: 0] += 1
                self.node.count("corrupt_chunk", peer: peer.short, detail: "chunk \(index) of \(d.contentID.short)")
                s.onChunkCorrupt(index, from: peer, now: .nanoseconds(MeshNode.now().nanoseconds))
            } else if let error {
                self.logger.error("could not store a chunk: \(error)")
                s.onRequestFailed([index], from: peer, now: .nanoseconds(MeshNode.now().nanoseconds))
            } else {
                // Two endgame copies can both arrive before either write ends: count the chunk once.
                if s.holds(index) {
                    self.counters.duplicateChunks += 1
                } else {
                    self.counters.chunksFetched += 1
                    self.counters.bytesFetched += UInt64(data.count)
                    d.doneBytes += UInt64(data.count)
                    d.lastProgress = MeshNode.now()
                }
                let losers = s.onChunkVerified(index, from: peer, bytes: data.count, elapsed: elapsed)
                for l in losers { self.cancelDuplicate(d, index: index, at: l) }
            }
            d.scheduler = s
            self.pump(d)
        }
    }

    private func cancelDuplicate(_ d: Download, index: Int, at source: NodeID) {
        for (rid, var r) in requests where r.source == source && r.content == d.contentID {
            guard case .get(var remaining) = r.kind, let k = remaining.firstIndex(of: index) else { continue }
            remaining.remove(at: k)
            if remaining.isEmpty {
                requests[rid] = nil
                _ = sendRequest(.cancel(requestID: rid), to: source)
            } else {
                r.kind = .get(remaining: remaining)
                requests[rid] = r
            }
        }
    }

    private func gotError(_ id: UInt32, _ code: BlobErrorCode, _ message: String, from peer: NodeID) {
        // Like every reply (PROTOCOL §9), an error counts only from the peer that was asked.
        guard let r = requests[id], r.source == peer else { return }
        fail(id, r, now: MeshNode.now())
    }

    private func fail(_ rid: UInt32, _ r: Request, now: Instant) {
        requests[rid] = nil
        guard let d = downloads[r.content] else { return }
        switch r.kind {
        case .recipe:
            if d.recipeRequest == rid { d.recipeRequest = nil }
        case .have:
            break
        case .get(let remaining):
            counters.requestsFailed += 1
            d.scheduler?.onRequestFailed(remaining, from: r.source, now: .nanoseconds(now.nanoseconds))
        }
    }

    private func finishIfComplete(_ d: Download) {
        guard let s = d.scheduler, s.isComplete, d.writesInFlight == 0 else { return }
        // The store's record decides. It lags the fetch only if a read found a chunk damaged and
        // dropped its record meanwhile: then fetch again from the record.
        guard (try? node.store.isComplete(d.contentID)) == true else {
            if let r = d.recipe { startScheduling(d, r) }
            return
        }
        downloads[d.contentID] = nil
        waiting.removeAll { $0 == d.contentID }
        rememberComplete(d.contentID)
        counters.itemsCompleted += 1
        holders[d.contentID, default: []].insert(node.identity.nodeID)
        let secs = Double(MeshNode.now() - d.started) / 1e9
        logger.info("item complete", metadata: ["item": "\(d.contentID.short)", "bytes": "\(d.recipe?.sizeBytes ?? 0)",
                                                "seconds": "\(String(format: "%.2f", secs))"])
        if let r = d.recipe {
            let all = ChunkBitmap.make(count: r.chunks.count) { _ in true }
            for peer in node.connectedNodes {
                _ = sendRequest(.have(requestID: 0, contentID: d.contentID, chunkCount: UInt32(r.chunks.count), bitmap: all), to: peer)
            }
        }
        for w in completionWaiters.removeValue(forKey: d.contentID) ?? [] { w(nil) }
        if let next = waiting.first {
            waiting.removeFirst()
            if let nd = downloads[next] { pump(nd) }
        }
    }

    private func onTick() {
        let now = MeshNode.now()
        let timeout = MeshNode.nanos(config.requestTimeout)
        for (rid, r) in requests where now - r.lastProgressAt > timeout {
            if case .get = r.kind { counters.requestsTimedOut += 1 }
            fail(rid, r, now: now)
        }
        let stalled = MeshNode.nanos(config.stalledAfter)
        for d in downloads.values where !waiting.isEmpty && isActive(d) && now - d.lastProgress > stalled {
            // `d` goes to the back of the queue and the item waiting longest takes its slot.
            waiting.append(d.contentID)
            let next = waiting.removeFirst()
            downloads[next]?.lastProgress = now
            d.lastProgress = now
            counters.itemsRequeued += 1
            logger.info("item stalled; its slot goes to the next waiting item",
                        metadata: ["item": "\(d.contentID.short)", "next": "\(next.short)"])
        }
        for d in downloads.values {
            if now - d.rateSample.0 >= 1_000_000_000 {
                let inst = Double(d.doneBytes - min(d.doneBytes, d.rateSample.1)) / (Double(now - d.rateSample.0) / 1e9)
                d.rate = d.rate == 0 ? inst : d.rate * 0.5 + inst * 0.5
                d.rateSample = (now, d.doneBytes)
            }
            pump(d)
        }
    }

    // MARK: - Queries

    /// Nodes known to hold `id` complete (this node included when it does).
    public func knownHolders(_ id: ContentID) -> Set<NodeID> {
        var h = holders[id] ?? []
        if (try? node.store.isComplete(id)) == true { h.insert(node.identity.nodeID) }
        return h
    }

    public func transfers() -> [TransferRow] {
        downloads.values.map { d in
            TransferRow(id: "\(d.contentID)", name: d.entry?.name ?? "", sizeBytes: d.recipe?.sizeBytes ?? d.entry?.sizeBytes ?? 0,
                        doneBytes: d.doneBytes, rateBytesPerSecond: d.rate, sources: d.scheduler?.sourceIDs.count ?? 0,
                        state: !isActive(d) ? "queued" : d.recipe == nil ? "finding" : "fetching")
        }.sorted { $0.id < $1.id }
    }
}
