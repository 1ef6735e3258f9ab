import Gossip
import Logging
import Store
import Sync

/// One transfer in flight, as `meshnode status` shows it.
public struct TransferRow: Codable, Sendable, Equatable {
    public var id: String
    public var name: String
    public var sizeBytes: UInt64
    public var doneBytes: UInt64
    public var rateBytesPerSecond: Double
    public var sources: Int
    /// `queued`, `finding` (no recipe yet), `fetching`, or `abandoned` (every recipe offered
    /// was refused; see the node's log).
    public var state: String
    /// `low`, `normal`, `high` or `critical` (issue 13); absent from older nodes' rows.
    public var priority: String?

    enum CodingKeys: String, CodingKey {
        case id, name, sources, state, priority
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
    /// Failed chunk requests and chunks refused on arrival, by `P2PRequestError` reason.
    public var requestErrors: [String: UInt64] = [:]
    /// Requests that got no answer within `requestTimeout`. Requests on a connection known to be
    /// dead (closed, or a dial that failed) are failed at once and are not counted here.
    public var requestsTimedOut: UInt64 = 0
    /// Items that stalled (`stalledAfter`) and gave their slot to a waiting item.
    public var itemsRequeued: UInt64 = 0
    public var itemsCompleted: UInt64 = 0
    /// Items given up on because the peers' recipes for them were all refused (PROTOCOL §9.3);
    /// tried again on the next `get` of the item or after a restart.
    public var itemsAbandoned: UInt64 = 0
    /// Strikes against peers that sent chunks not matching their hash (or a chunk's pieces that
    /// do not fit together), by short node id.
    public var strikes: [String: UInt64] = [:]

    enum CodingKeys: String, CodingKey {
        case strikes
        case chunksFetched = "chunks_fetched", bytesFetched = "bytes_fetched", chunksServed = "chunks_served"
        case bytesServed = "bytes_served", corruptChunks = "corrupt_chunks", chunksRefused = "chunks_refused"
        case duplicateChunks = "duplicate_chunks"
        case requestsFailed = "requests_failed", requestErrors = "request_errors"
        case requestsTimedOut = "requests_timed_out", itemsRequeued = "items_requeued", itemsCompleted = "items_completed"
        case itemsAbandoned = "items_abandoned"
    }
}

/// The chunk exchange of one node (docs/PROTOCOL.md §9): serves chunks to peers and
/// fetches the items this node wants from every peer that holds them.
///
/// Loop-confined. Chunk hashing, writes and reads run on `BlobWorkers`. Serving is in
/// BlobServing.swift, fetching in BlobFetching.swift; this file holds the state, the message
/// dispatch and the reactions to sessions coming and going.
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
        /// Per-peer upload limits by peer (`providers`, the peers' `hosts` entries); the rest
        /// get `bandwidth.perPeerBytesPerSecond`.
        public var peerLimits = PeerBandwidthLimits()
        /// The priority of the fetches placement makes, by type (`placement.TYPE.priority`).
        public var typePriorities: [ItemType: TransferPriority] = [:]
        public var scheduler = FetchScheduler.Config()
        /// Per-peer circuit breakers (BlobBreakers.swift).
        public var breaker = CircuitBreaker.Config()
        /// Testing aid only: serve every chunk with one byte flipped, so that receivers'
        /// verification, strikes and source failover can be exercised end to end.
        public var testCorruptServing = false
        /// Recipes refused for one item before the node gives up on it (PROTOCOL §9.3).
        public var maxRecipeRejections = 3
        public init() {}
    }

    unowned let node: MeshNode
    let config: Config
    let workers: BlobWorkers
    let logger: Logger
    public internal(set) var counters = BlobCounters()

    var downloads: [ContentID: Download] = [:]
    var waiting = WaitQueue()
    /// Downloads given up on (`Download.abandoned`); they hold no slot.
    var abandonedCount = 0
    var requests: [UInt32: Request] = [:]
    var nextRequestID: UInt32 = 1
    /// Nodes known to hold an item complete (from `have` answers and announcements).
    var holders: [ContentID: Set<NodeID>] = [:]
    var recipes: [ContentID: Recipe] = [:]
    /// Peers fetching each content (they asked this node its recipe or its chunks), and when
    /// they last asked: told this node's progress while it fetches the same content.
    var interested: [ContentID: [NodeID: Instant]] = [:]
    var serveQueues: [ObjectIdentifier: ServeQueue] = [:]
    /// The chunk being put together from `chunk_piece` messages, per session (at most one each).
    var assemblies: [ObjectIdentifier: ChunkAssembly] = [:]
    /// The per-peer upload limits (the global one is `uploadPacer`'s).
    var limiter: BandwidthLimiter<NodeID>
    /// The global upload limit, shared among sessions by priority (BlobPacing.swift).
    var uploadPacer: PriorityPacer<UInt64>
    var pacerWaiters: [UInt64: () -> Void] = [:]
    var nextPacerTicket: UInt64 = 1
    var pacerTimerArmed = false
    /// Per-peer limits found for peers by name (`perPeerLimit`); emptied when a session ends.
    var peerLimitCache: [NodeID: Int64?] = [:]
    /// One circuit breaker per peer for transfer requests (BlobBreakers.swift).
    var breakers: CircuitBreakers
    var tick: LoopTimer?
    var completionWaiters: [ContentID: [(MeshError?) -> Void]] = [:]
    var lastChunkAt: [NodeID: Instant] = [:]
    /// When each source last sent a chunk or piece for any request of this node (request
    /// timeouts run from the later of this and the request's own progress).
    var sourceProgressAt: [NodeID: Instant] = [:]
    /// The latest `get`s to each source that this node stopped awaiting (timed out, cancelled; at
    /// most `endedRequestsPerSource`): the rest of a chunk already on its way for one of them
    /// still shows the source alive (a 16 MiB chunk at 1 MB/s takes longer than
    /// `requestTimeout`), though its bytes are ignored.
    var endedRequests: [NodeID: [UInt32]] = [:]
    static let endedRequestsPerSource = 16
    /// Items known to be complete here (bounded; forgetting one only costs a lookup). A chunk
    /// of one that is later lost on disk is refused when asked for, and the asker goes elsewhere.
    var knownComplete: Set<ContentID> = []
    /// Testing aid: serve chunks with one byte flipped (MESHNODE_TEST_CORRUPT_SERVING=1).
    let corruptServing: Bool
    /// The contents being fetched: their recipes stay through a garbage collection although
    /// nothing may keep them yet (a fetch on request), read by GC off the loop.
    public let downloadPins = ContentPins()
    /// How long a content fetched on request stays pinned after it completed.
    static let requestedPinGrace: Duration = .seconds(600)

    // Loop-confined; @unchecked so worker completions (posted back to the loop) may hold them.
    final class Download: @unchecked Sendable {
        let contentID: ContentID
        var entry: ManifestEntry?
        var recipe: Recipe?
        var scheduler: FetchScheduler?
        var reason: Reason
        /// The priority its `get`s carry (PROTOCOL §9.1).
        var priority: TransferPriority = .normal
        var hints: Set<NodeID>
        var recipeAsked: Set<NodeID> = []
        var recipeRequest: UInt32?
        /// Peers whose recipe for this item was refused (not asked for it again), and how many.
        var recipeRejectedBy: Set<NodeID> = []
        var recipeRejections = 0
        var lastRecipeProblem = ""
        /// Given up on: every recipe offered was refused (PROTOCOL §9.3).
        var abandoned = false
        var haveAsked: [NodeID: Instant] = [:]
        /// Chunks verified when this node last told interested peers its bitmap (BlobProgressHaves.swift).
        var haveToldCount = 0
        var haveToldAt = Instant.zero
        var lastDiscovery = Instant(nanoseconds: .min / 2)
        var writesInFlight = 0
        var doneBytes: UInt64 = 0
        var rate: Double = 0
        var rateSample: (Instant, UInt64)
        var started: Instant
        /// When it last got its recipe or a verified chunk (or its slot).
        var lastProgress: Instant
        /// The watched folder file it is fetched for (root, relative path), if any, and the
        /// staging file its chunks are written into once the recipe is known (FolderStaging.swift).
        var destination: (root: String, relativePath: String)?
        var staging: FolderStaging?
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

    /// One session's queued `get`s, by priority (raw value), and the chunks being read for it.
    final class ServeQueue: @unchecked Sendable {
        typealias Job = (id: UInt32, content: ContentID, indices: [Int])
        var jobs: [[Job]] = [[], [], [], []]
        /// Which class's next chunk is read next (issue 13 priorities, within the session).
        var scheduler = PriorityScheduler()
        var inflight: [ReadSlot] = []
        var sending = false
        var jobCount: Int { jobs.reduce(0) { $0 + $1.count } }
        var firstJob: Job? { jobs.reversed().first { !$0.isEmpty }?.first }
        func removeJobs(requestID id: UInt32) { for i in jobs.indices { jobs[i].removeAll { $0.id == id } } }
    }

    /// One chunk being read for a peer; filled in on the loop when the worker is done.
    final class ReadSlot: @unchecked Sendable {
        let id: UInt32
        let index: Int
        var priority: TransferPriority = .normal
        /// The messages carrying the chunk, read straight into their outgoing frames: one
        /// `chunk`, or its `chunk_piece`s in order (a large chunk); sent ones are removed.
        var result: Result<[OutgoingFrame], MeshError>?
        var code: BlobErrorCode = .internalError
        /// Testing aid (`corruptServing`): the chunk already has its flipped byte.
        var corrupted = false
        init(id: UInt32, index: Int) { self.id = id; self.index = index }
        func finish(_ r: Result<[OutgoingFrame], MeshError>, code: BlobErrorCode) {
            result = r
            self.code = code
        }
    }

    init(node: MeshNode, config: Config, dataDir: String, logger: Logger) throws(MeshError) {
        self.node = node
        self.config = config
        self.logger = logger
        workers = try BlobWorkers(loop: node.loop, dataDir: dataDir)
        let startNs = UInt64(max(0, MeshNode.now().nanoseconds))
        limiter = BandwidthLimiter(globalBytesPerSecond: nil, perPeerBytesPerSecond: config.bandwidth.perPeerBytesPerSecond,
                                   nowNanoseconds: startNs)
        uploadPacer = PriorityPacer(bucket: config.bandwidth.globalBytesPerSecond.map {
            TokenBucket(rateBytesPerSecond: $0, nowNanoseconds: startNs)
        })
        corruptServing = config.testCorruptServing
        breakers = CircuitBreakers(config: config.breaker)
        let t = try LoopTimer(loop: node.loop) { [unowned self] in self.onTick() }
        t.start(after: .milliseconds(250), repeating: .milliseconds(250))
        tick = t
        // Resume what a previous run left incomplete (and this node still keeps).
        for item in (try? node.store.items()) ?? [] where !item.isComplete && node.keeper.isKept(item.contentID)
            && node.placementDecision(item.contentID, types: [item.entry.type], broadcast: item.entry.isBroadcast,
                                      sizeBytes: item.entry.sizeBytes) == .fetch {
            want(item.contentID, holders: Placement.fetchSources(hints: [item.entry.origin], holders: node.holdings.holders(of: item.contentID),
                                                                 me: node.identity.nodeID),
                 reason: .replication, entry: item.entry)
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
    /// `priority`: the `get`s' priority (issue 13); nil: the type's `placement.TYPE.priority`,
    /// else NORMAL (`meshnode get` passes HIGH unless told). A request's priority replaces the
    /// fetch's; a replication's only raises it.
    /// With `destination` (a watched folder's root and the path the item will show at), its
    /// chunks go straight into that file's staging file (FolderStaging.swift), not chunk files.
    public func want(_ id: ContentID, holders hints: [NodeID], reason: Reason, entry: ManifestEntry? = nil,
                     priority: TransferPriority? = nil, destination: (root: String, relativePath: String)? = nil) {
        if let d = downloads[id] {
            if d.destination == nil, let destination {
                d.destination = destination
                attachStaging(d)
            }
            d.hints.formUnion(hints)
            if reason == .request { d.reason = .request }
            if let priority { d.priority = reason == .request ? priority : max(d.priority, priority) }
            // Asked for again by someone waiting for it: give the peers' recipes another chance.
            if d.abandoned, reason == .request { revive(d) }
            return
        }
        if (try? node.store.isComplete(id)) == true { return }
        let d = Download(id, reason: reason, hints: Set(hints), now: MeshNode.now())
        d.entry = entry ?? (try? node.store.entry(contentID: id)) ?? nil
        d.priority = priority ?? d.entry.flatMap { config.typePriorities[$0.type] } ?? .normal
        d.destination = destination
        downloads[id] = d
        downloadPins.pin(id)
        if activeCount > config.maxConcurrentDownloads { waiting.append(id) }
        logger.debug("want", metadata: ["item": "\(id.short)"])
        pump(d)
    }

    /// A node now holds `id` complete (its holder record arrived): a fetch under way asks it
    /// too (swarm-style); nothing starts if none is.
    public func holderAppeared(_ id: ContentID, _ holder: NodeID) {
        guard holder != node.identity.nodeID, let d = downloads[id] else { return }
        d.hints.insert(holder)
    }

    /// Stops fetching `id` because this node no longer keeps it (the keeper released it): its
    /// requests are cancelled and its slot goes to the next item; the chunks that arrived
    /// become garbage for the next collection. A fetch someone asked for (`.request`) goes on.
    public func unwant(_ id: ContentID) {
        guard let d = downloads[id], d.reason == .replication else { return }
        let wasActive = isActive(d)
        downloads[id] = nil
        downloadPins.unpin(id)
        waiting.remove(id)
        if d.abandoned { abandonedCount -= 1 }
        for (rid, r) in requests where r.content == id {
            requests[rid] = nil
            if case .get = r.kind {
                _ = sendRequest(.cancel(requestID: rid), to: r.source)
                noteEnded(rid, r.source)
                breakers.recordWithdrawn(r.source)
            }
        }
        for w in completionWaiters.removeValue(forKey: id) ?? [] {
            w(MeshError(.incomplete, "\(id.short) is no longer kept by this node (a newer version, a delete or its retention)"))
        }
        logger.info("item released: its fetch stops", metadata: ["item": "\(id.short)"])
        if wasActive, let next = waiting.first {
            waiting.removeFirst()
            if let nd = downloads[next] { pump(nd) }
        }
    }

    /// A collection deleted the recipes of `contents`: forget what is cached about them here.
    public func forgetCollected(_ contents: [ContentID]) {
        for c in contents {
            recipes[c] = nil
            knownComplete.remove(c)
            holders[c]?.remove(node.identity.nodeID)
        }
    }

    /// Calls `done` once `id` is complete here (nil) or can no longer be fetched.
    public func whenComplete(_ id: ContentID, done: @escaping (MeshError?) -> Void) {
        if (try? node.store.isComplete(id)) == true { return done(nil) }
        completionWaiters[id, default: []].append(done)
        want(id, holders: [], reason: .request)
    }

    var activeCount: Int { downloads.count - waiting.count - abandonedCount }

    func isActive(_ d: Download) -> Bool { !d.abandoned && !waiting.contains(d.contentID) }

    // MARK: - Messages

    /// One chunk-exchange message (type 0x10-0x18) from an established session.
    func received(type: UInt8, body: ArraySlice<UInt8>, from peer: NodeID, session: PeerSession) {
        let b = body.startIndex
        func u32(_ at: Int) -> UInt32 { body[at..<(at + 4)].reduce(0) { $0 << 8 | UInt32($1) } }
        // Chunks are most of the bytes: take them straight from the frame, one copy.
        if type == BlobMessage.Tag.chunk.rawValue {
            guard body.count >= 8, body.count - 8 <= BlobMessage.maxChunkBytes else {
                node.count(.malformedBlobMessage, peer: peer.short, detail: "chunk message of \(body.count) bytes")
                return
            }
            gotChunk(u32(b), Int(u32(b + 4)), body[(b + 8)...], from: peer, session: session)
            return
        }
        if type == BlobMessage.Tag.chunkPiece.rawValue {
            guard body.count >= 16 else {
                node.count(.malformedBlobMessage, peer: peer.short, detail: "chunk_piece message of \(body.count) bytes")
                return
            }
            let total = Int(u32(b + 8)), offset = Int(u32(b + 12))
            if let problem = BlobMessage.pieceProblem(chunkBytes: total, offset: offset, dataBytes: body.count - 16) {
                node.count(.malformedBlobMessage, peer: peer.short, detail: "\(problem)")
                return
            }
            gotPiece(u32(b), Int(u32(b + 4)), chunkBytes: total, offset: offset, body[(b + 16)...], from: peer, session: session)
            return
        }
        let msg: BlobMessage
        do { msg = try BlobMessage.decode([type] + body) } catch {
            node.count(.malformedBlobMessage, peer: peer.short, detail: "\(error)")
            // A recipe that cannot be decoded (e.g. a chunk size out of range) will not decode
            // the next time either: it is refused like one that does not verify.
            if type == BlobMessage.Tag.recipe.rawValue, body.count >= 36 {
                let c = ContentID(digest: Bytes32(bytes: Array(body[(b + 4)..<(b + 36)]))!)
                recipeRefused(u32(b), c, from: peer, why: "\(error)")
            }
            return
        }
        switch msg {
        case .wantRecipe(let id, let c): serveRecipe(id, c, to: peer, session: session)
        case .wantHave(let id, let c): serveHave(id, c, to: peer, session: session)
        case .get(let id, let c, let indices, let priority):
            enqueueServe(id, c, indices.map(Int.init), priority: priority, session: session, peer: peer)
        case .cancel(let id):
            serveQueues[ObjectIdentifier(session)]?.removeJobs(requestID: id)
        case .recipe(let id, let c, let size, let cs, let chunks): gotRecipe(id, c, size, cs, chunks, from: peer)
        case .have(let id, let c, let n, let bitmap): gotHave(id, c, Int(n), bitmap, from: peer)
        case .chunk(let id, let index, let data): gotChunk(id, Int(index), data[...], from: peer, session: session)
        case .chunkPiece(let id, let index, let total, let offset, let data):
            gotPiece(id, Int(index), chunkBytes: Int(total), offset: Int(offset), data[...], from: peer, session: session)
        case .error(let id, let code, let message): gotError(id, code, message, from: peer)
        }
    }

    /// A session ended: what was asked on it will never be answered. When it was the peer's
    /// current session, requests not yet bound to a session (sent while dialling) are lost too.
    ///
    /// A closed connection is one failure of its peer, however many requests it carried, so the
    /// backoff grows with the number of failed connections, not with the window size. A session
    /// that ended cleanly (PROTOCOL §8.4) is no failure at all: its open requests go back to the
    /// pool and are asked again at once, elsewhere or on a new session.
    func sessionClosed(_ s: PeerSession, peer: NodeID?, wasCurrent: Bool) {
        serveQueues[ObjectIdentifier(s)] = nil
        peerLimitCache = [:]
        assemblies[ObjectIdentifier(s)] = nil
        failRequests(blamingSource: !s.endedCleanly, reason: .sessionClosed) { _, r in
            r.session == ObjectIdentifier(s) || (wasCurrent && r.source == peer && r.session == nil)
        }
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

    /// Fails the requests `isLost` picks, as one failure per source and item (none when
    /// `blamingSource` is false: their chunks just go back to the pool), then pumps.
    func failRequests(blamingSource: Bool = true, reason: P2PRequestError = .dialFailed, _ isLost: (UInt32, Request) -> Bool) {
        let now = MeshNode.now()
        var lost: [ContentID: [NodeID: [Int]]] = [:]
        for (rid, r) in requests where isLost(rid, r) {
            if case .get(let remaining) = r.kind {
                requests[rid] = nil
                if blamingSource {
                    counters.requestsFailed += 1
                    countRequestError(reason)
                }
                lost[r.content, default: [:]][r.source, default: []] += remaining
            } else {
                fail(rid, r, now: now, reason: reason)
            }
        }
        for (content, bySource) in lost {
            for (source, indices) in bySource {
                if blamingSource {
                    downloads[content]?.scheduler?.onRequestFailed(indices, from: source, now: .nanoseconds(now.nanoseconds))
                } else {
                    downloads[content]?.scheduler?.unassign(indices, from: source)
                }
            }
        }
        for d in downloads.values { pump(d) }
    }

    /// A session with `peer` was established: that is fresh evidence it can serve, so any backoff
    /// its earlier failures earned ends now (a source that restarted is used again at once, not
    /// after up to `maxBackoff`).
    func sessionEstablished(peer: NodeID) {
        breakers.recordReachable(peer, nowMs: breakerNowMs)
        let now = Duration.nanoseconds(MeshNode.now().nanoseconds)
        for d in downloads.values {
            d.scheduler?.onSourceReachable(peer, now: now)
            pump(d)
        }
    }


    /// The recipe of `c` if this node knows one (cached).
    func recipe(_ c: ContentID) -> Recipe? {
        if let r = recipes[c] { return r }
        guard let r = try? node.store.recipe(c), r.contentID == c else { return nil }
        if recipes.count > 64 { recipes.removeAll() }
        recipes[c] = r
        return r
    }

    func after(_ d: Duration, _ body: @escaping () -> Void) {
        guard let t = try? LoopTimer(loop: node.loop) else { return body() }
        t.onFire = { [t] in
            t.close()
            body()
        }
        t.start(after: d)
    }

    func onTick() {
        let now = MeshNode.now()
        let timeout = MeshNode.nanos(config.requestTimeout)
        // A request queued behind another one to the same source waits there without progress of
        // its own (a source serves one session's requests in turn): it times out only when the
        // source has sent nothing for any request of this node for `requestTimeout`. On a slow
        // link (1 MB/s, 16 MiB chunks) a second request would otherwise fail again and again
        // behind the first, each failure backing off the only honest source.
        for (rid, r) in requests where now - max(r.lastProgressAt, sourceProgressAt[r.source] ?? r.lastProgressAt) > timeout {
            if case .get = r.kind { counters.requestsTimedOut += 1 }
            fail(rid, r, now: now, reason: .timeout)
        }
        if sourceProgressAt.count > 1024 { sourceProgressAt = sourceProgressAt.filter { now - $0.value <= timeout } }
        if endedRequests.count > 1024 { endedRequests = endedRequests.filter { sourceProgressAt[$0.key] != nil } }
        // A chunk whose request failed or was cancelled while its pieces came in: let go of it.
        for (key, a) in assemblies where !isAwaited(a) { assemblies[key] = nil }
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
        tellProgress(now: now)
    }

    // MARK: - Queries

    /// Whether `id` is being fetched (or queued to be).
    public func isFetching(_ id: ContentID) -> Bool { downloads[id] != nil }

    /// Bytes the downloads under way (queued ones too) will still write.
    public var pendingBytes: UInt64 {
        downloads.values.reduce(0) { acc, d in
            let size = d.recipe?.sizeBytes ?? d.entry?.sizeBytes ?? 0
            return acc + (size > d.doneBytes ? size - d.doneBytes : 0)
        }
    }

    /// Nodes known to hold `id` complete (this node included when it does).
    public func knownHolders(_ id: ContentID) -> Set<NodeID> {
        var h = holders[id] ?? []
        if (try? node.store.isComplete(id)) == true { h.insert(node.identity.nodeID) }
        return h
    }
}
