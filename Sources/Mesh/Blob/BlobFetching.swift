import Gossip
import Store

/// Fetching (docs/PROTOCOL.md §9): finding sources, asking for recipes and chunks, verifying
/// and storing what arrives.
extension BlobService {
    func newRequest(_ r: Request) -> UInt32 {
        repeat { nextRequestID &+= 1 } while nextRequestID == 0 || requests[nextRequestID] != nil
        requests[nextRequestID] = r
        return nextRequestID
    }

    func sendRequest(_ m: BlobMessage, to peer: NodeID) -> Bool {
        var w = ByteWriter(capacity: 64)
        m.encode(into: &w)
        let bytes = w.bytes
        return node.send(bytes[0], Array(bytes[1...]), toNode: peer)
    }

    /// Peers worth asking about `d`: hints, known holders, then other alive members.
    func candidates(_ d: Download) -> [NodeID] {
        // Known holders that are alive first, then every other alive member, then holders not
        // (or no longer) alive: a recipe asked of a dead holder first would wait for its
        // connection to fail before anyone else is asked.
        let alive = Set(node.gossip.aliveMembers).filter { breakerAllowsQuestions($0) }
        let known = Array(d.hints.union(holders[d.contentID] ?? [])).filter { $0 != node.identity.nodeID && breakerAllowsQuestions($0) }.sorted()
        var out = known.filter { alive.contains($0) }
        for a in alive.sorted() where !out.contains(a) { out.append(a) }
        for k in known where !alive.contains(k) { out.append(k) }
        return out
    }

    func pump(_ d: Download) {
        // (A write completing after `unwant` removed the download must not revive it.)
        guard downloads[d.contentID] === d, isActive(d) else { return }
        let now = MeshNode.now()
        if d.recipe == nil, let r = recipe(d.contentID) { startScheduling(d, r) }
        guard let scheduler = d.scheduler else {
            // Ask one candidate at a time for the recipe; never again one whose recipe was refused.
            guard d.recipeRequest == nil else { return }
            let askable = candidates(d).filter { !d.recipeRejectedBy.contains($0) }
            if d.recipeRejections > 0 && askable.isEmpty { return abandon(d) }
            for c in askable where !d.recipeAsked.contains(c) {
                d.recipeAsked.insert(c)
                let rid = newRequest(Request(content: d.contentID, source: c, kind: .recipe, sentAt: now, session: node.session(with: c).map(ObjectIdentifier.init)))
                // Recorded before sending: a send on a session that is closing closes it at once,
                // which fails this request (and clears `recipeRequest`) before `sendRequest` returns.
                d.recipeRequest = rid
                if sendRequest(.wantRecipe(requestID: rid, contentID: d.contentID), to: c) { return }
                if d.recipeRequest == rid { d.recipeRequest = nil }
                requests[rid] = nil
            }
            if d.recipeAsked.isSuperset(of: askable) { d.recipeAsked = [] }  // go round again next tick
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
        let nowMs = now.nanoseconds / 1_000_000
        var assignments = s.assign(now: .nanoseconds(now.nanoseconds), excluding: breakers.blocked(nowMs: nowMs))
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
            // A budget below one chunk (a slow path that also resets often), or none left on a
            // connection older than its path's typical lifetime whose successor has not come,
            // would otherwise starve the source for good: one request at a time still goes.
            if fits == 0 && outstanding[src]! == 0 { fits = 1 }
            if fits < assignments[i].indices.count {
                s.unassign(Array(assignments[i].indices[fits...]), from: src)
                assignments[i].indices = Array(assignments[i].indices[..<fits])
            }
            outstanding[src]! += assignments[i].indices.count * chunkBytes
        }
        // A half-open breaker lets a few trial requests through, one per request.
        for i in assignments.indices where !assignments[i].indices.isEmpty && !breakers.admit(assignments[i].source, nowMs: nowMs) {
            s.unassign(assignments[i].indices, from: assignments[i].source)
            assignments[i].indices = []
        }
        d.scheduler = s
        for a in assignments where !a.indices.isEmpty {
            let rid = newRequest(Request(content: d.contentID, source: a.source, kind: .get(remaining: a.indices), sentAt: now,
                                         session: node.session(with: a.source).map(ObjectIdentifier.init)))
            if !sendRequest(.get(requestID: rid, contentID: d.contentID, indices: a.indices.map(UInt32.init), priority: d.priority), to: a.source) {
                fail(rid, requests[rid]!, now: now, reason: .sendFailed)
            }
        }
        finishIfComplete(d)
    }

    /// Chunk bytes in flight per source at most (but always `minWindowChunks` chunks), so that a
    /// store with 64 MiB chunks does not ask one peer for half a gigabyte at once.
    static let maxWindowBytes = 128 << 20
    static let minWindowChunks = 2

    /// The fetch window for chunks of `chunkSizeBytes`: the configured one, smaller for large chunks.
    static func windowChunks(chunkSizeBytes: Int, configured: Int) -> Int {
        min(configured, max(minWindowChunks, maxWindowBytes / max(1, chunkSizeBytes)))
    }

    func startScheduling(_ d: Download, _ r: Recipe) {
        // A collection may have deleted the stored recipe (the fetch began after it read the
        // pins, from a cached or earlier recipe): store it again, or the record could never
        // show the item complete.
        if !node.store.hasRecipe(r.contentID) {
            try? node.store.insertRecipe(contentID: r.contentID, sizeBytes: r.sizeBytes, chunkSizeBytes: r.chunkSizeBytes, chunks: r.chunks)
        }
        d.recipe = r
        attachStaging(d)
        d.lastProgress = MeshNode.now()
        let held = (try? node.store.recordedChunks(r)) ?? Array(repeating: false, count: r.chunks.count)  // the record, not the files
        var cfg = config.scheduler
        cfg.windowChunks = Self.windowChunks(chunkSizeBytes: Int(r.chunkSizeBytes), configured: cfg.windowChunks)
        // Each receiver starts at its own chunk (by node and content), so that receivers of one
        // item hold different chunks early and serve one another (swarm-style).
        let start = SplitMix64.mix(node.identity.nodeID.key.w0 ^ SplitMix64.mix(r.contentID.digest.w0))
        cfg.firstChunk = Int(start % UInt64(max(1, r.chunks.count)))
        cfg.localNode = node.identity.nodeID
        d.scheduler = FetchScheduler(chunkCount: r.chunks.count, chunkSizeBytes: Int(r.chunkSizeBytes),
                                     present: { held[$0] }, config: cfg)
        d.doneBytes = (0..<r.chunks.count).reduce(0) { $0 + (held[$1] ? UInt64(r.length(ofChunk: $1)) : 0) }
        for h in holders[d.contentID] ?? [] { d.scheduler!.addSource(h, holds: .all) }
        d.lastDiscovery = Instant(nanoseconds: .min / 2)
    }

    /// Once a download for a folder file knows its recipe: its chunks go into the file's staging file.
    func attachStaging(_ d: Download) {
        guard d.staging == nil, let dest = d.destination, let r = d.recipe else { return }
        d.staging = FolderStaging(root: dest.root, relativePath: dest.relativePath, recipe: r)
    }

    /// The open request `id` if `peer` was asked it about `content`; a reply that matches no such
    /// request (late, duplicated, or another peer's id) is ignored, and nothing is removed.
    func request(_ id: UInt32, askedOf peer: NodeID, about content: ContentID) -> Request? {
        guard let r = requests[id], r.source == peer, r.content == content else { return nil }
        return r
    }

    func gotRecipe(_ id: UInt32, _ c: ContentID, _ size: UInt64, _ cs: UInt32, _ chunks: [ChunkHash], from peer: NodeID) {
        guard let req = request(id, askedOf: peer, about: c), case .recipe = req.kind, let d = downloads[c] else { return }
        do {
            try node.store.insertRecipe(contentID: c, sizeBytes: size, chunkSizeBytes: cs, chunks: chunks)
        } catch where error.code == .corrupt {
            // It does not recompute the content id (or its shape is impossible): it never will.
            node.count(.badRecipe, peer: peer.short, detail: error.description)
            return recipeRefused(id, c, from: peer, why: error.message)
        } catch {
            requests[id] = nil
            if d.recipeRequest == id { d.recipeRequest = nil }
            logger.error("could not store the recipe of \(c.short): \(error)")
            pump(d)
            return
        }
        requests[id] = nil
        if d.recipeRequest == id { d.recipeRequest = nil }
        if let r = recipe(c) { startScheduling(d, r) }
        pump(d)
    }

    /// `peer`'s answer to recipe request `id` about `c` was refused (it does not decode or does
    /// not verify; already counted by reason). That peer is not asked for this recipe again, and
    /// after `maxRecipeRejections` refusals, or when nobody else is left to ask, the item is given
    /// up (PROTOCOL §9.3): retrying a recipe that can never be accepted would go on for ever.
    func recipeRefused(_ id: UInt32, _ c: ContentID, from peer: NodeID, why: String) {
        guard let req = request(id, askedOf: peer, about: c), case .recipe = req.kind, let d = downloads[c] else { return }
        requests[id] = nil
        if d.recipeRequest == id { d.recipeRequest = nil }
        d.recipeRejectedBy.insert(peer)
        d.recipeRejections += 1
        d.lastRecipeProblem = "\(peer.short): \(why)"
        if d.recipeRejections >= config.maxRecipeRejections { return abandon(d) }
        pump(d)
    }

    /// Gives up on `d`: it stops asking, holds no slot, shows as `abandoned`, and whoever waits
    /// for it is told why. It is tried again when someone asks for it (`want` with `.request`).
    func abandon(_ d: Download) {
        guard !d.abandoned else { return }
        let wasActive = isActive(d)
        d.abandoned = true
        abandonedCount += 1
        counters.itemsAbandoned += 1
        let why = "\(d.recipeRejections) recipe(s) refused, the last from \(d.lastRecipeProblem)"
        logger.warning("giving up on an item: no peer sent a recipe this node can accept",
                       metadata: ["item": "\(d.contentID.short)", "why": "\(why)"])
        let error = MeshError(.corrupt, "gave up fetching \(d.contentID.short): \(why)",
                              hint: "the item's holders send a recipe this node refuses; check that every node runs the same meshnode version")
        for w in completionWaiters.removeValue(forKey: d.contentID) ?? [] { w(error) }
        if wasActive, let next = waiting.first {
            waiting.removeFirst()
            if let nd = downloads[next] { pump(nd) }
        }
    }

    /// An abandoned download asked for again: the peers' recipes get another chance.
    func revive(_ d: Download) {
        guard d.abandoned else { return }
        d.abandoned = false
        abandonedCount -= 1
        d.recipeRejectedBy = []
        d.recipeRejections = 0
        d.recipeAsked = []
        d.lastProgress = MeshNode.now()
        if activeCount > config.maxConcurrentDownloads { waiting.append(d.contentID) }
        pump(d)
    }

    /// Asks `peers` now whether they hold `content` (answers arrive in `gotHave`): fresh
    /// evidence before this node lets its own copy go (MeshNode+DropConfirmation.swift).
    func askHolding(_ content: ContentID, of peers: [NodeID]) {
        let now = MeshNode.now()
        for p in peers where breakerAllowsQuestions(p) {
            let rid = newRequest(Request(content: content, source: p, kind: .have, sentAt: now,
                                         session: node.session(with: p).map(ObjectIdentifier.init)))
            if !sendRequest(.wantHave(requestID: rid, contentID: content), to: p) { requests[rid] = nil }
        }
    }

    func gotHave(_ id: UInt32, _ c: ContentID, _ n: Int, _ bitmap: [UInt8], from peer: NodeID) {
        if id != 0, let req = request(id, askedOf: peer, about: c), case .have = req.kind { requests[id] = nil }
        // An item has at least one chunk unless it is empty; a count that disagrees with the
        // recipe known here is not believed.
        if let r = recipe(c) {
            guard n == r.chunks.count else { return }
        } else if n == 0 {
            return
        }
        let complete = (0..<n).allSatisfy { ChunkBitmap.contains(bitmap, $0) }
        if complete {
            holders[c, default: []].insert(peer)
            node.holdingConfirmed(c, by: peer)  // a copy this node wants to let go of is safe there
        }
        guard let d = downloads[c], var s = d.scheduler, n == s.chunkCount else { return }
        let anything = (0..<n).contains { ChunkBitmap.contains(bitmap, $0) }
        guard anything else { return }
        s.addSource(peer, holds: complete ? .all : .bitmap(bitmap))
        d.scheduler = s
        pump(d)
    }

    /// A `chunk` arrived. It must not come between the pieces of a chunk being assembled on
    /// the same session (PROTOCOL §9.2).
    func gotChunk(_ id: UInt32, _ index: Int, _ data: ArraySlice<UInt8>, from peer: NodeID, session: PeerSession) {
        let key = ObjectIdentifier(session)
        if let open = assemblies.removeValue(forKey: key), isAwaited(open) {
            piecesInconsistent(open.requestID, open.index, from: peer, why: "a chunk message came before chunk \(open.index)'s last piece")
        }
        noteLateBytes(id, from: peer)
        deliverChunk(id, index, data, from: peer)
    }

    /// A `chunk_piece` arrived (its header already checked against PROTOCOL §9.1). Pieces for a
    /// request that is no longer awaited (late, cancelled, timed out) are ignored; pieces that do
    /// not fit together are a strike against the peer, as a chunk failing its hash is.
    func gotPiece(_ id: UInt32, _ index: Int, chunkBytes: Int, offset: Int, _ data: ArraySlice<UInt8>,
                  from peer: NodeID, session: PeerSession) {
        let key = ObjectIdentifier(session)
        noteLateBytes(id, from: peer)
        if var a = assemblies.removeValue(forKey: key), isAwaited(a) {
            if a.continues(requestID: id, index: index, chunkBytes: chunkBytes, offset: offset) {
                a.append(data)
                touch(id)
                if a.isComplete { deliverChunk(id, index, a.bytes[...], from: peer) } else { assemblies[key] = a }
                return
            }
            piecesInconsistent(a.requestID, a.index, from: peer, why: "chunk \(a.index) stopped after \(a.nextOffset) of \(a.chunkBytes) bytes")
        }
        guard let req = requests[id], req.source == peer, case .get(let remaining) = req.kind, remaining.contains(index),
              let d = downloads[req.content], let r = d.recipe, index < r.chunks.count else { return }
        guard offset == 0 else {
            return piecesInconsistent(id, index, from: peer, why: "chunk \(index) began with the piece at offset \(offset)")
        }
        guard chunkBytes == r.length(ofChunk: index) else {
            return piecesInconsistent(id, index, from: peer, why: "chunk \(index) announced as \(chunkBytes) bytes, the recipe says \(r.length(ofChunk: index))")
        }
        touch(id)
        assemblies[key] = ChunkAssembly(requestID: id, source: peer, index: index, chunkBytes: chunkBytes, first: data)
    }

    /// Whether the chunk `a` is being put together for is still asked of its source.
    func isAwaited(_ a: ChunkAssembly) -> Bool {
        guard let r = requests[a.requestID], r.source == a.source, case .get(let remaining) = r.kind else { return false }
        return remaining.contains(a.index)
    }

    /// A piece of request `id` arrived: its timeout runs from now.
    private func touch(_ id: UInt32) {
        guard let source = requests[id]?.source else { return }
        let now = MeshNode.now()
        requests[id]!.lastProgressAt = now
        sourceProgressAt[source] = now
    }

    /// The pieces `peer` sent for chunk `index` of request `id` do not fit together: counted, a
    /// strike against the peer, and the chunk goes back to the pool for another source.
    func piecesInconsistent(_ id: UInt32, _ index: Int, from peer: NodeID, why: String) {
        node.count(.inconsistentChunkPieces, peer: peer.short, detail: why)
        countRequestError(.inconsistentPieces)
        counters.strikes[peer.short, default: 0] += 1
        breakerFailure(peer, P2PRequestError.inconsistentPieces.rawValue)
        guard var req = requests[id], req.source == peer, case .get(var remaining) = req.kind,
              let k = remaining.firstIndex(of: index) else { return }
        remaining.remove(at: k)
        if remaining.isEmpty {
            requests[id] = nil
        } else {
            req.kind = .get(remaining: remaining)
            requests[id] = req
        }
        guard let d = downloads[req.content], var s = d.scheduler else { return }
        s.onChunkCorrupt(index, from: peer, now: .nanoseconds(MeshNode.now().nanoseconds))
        d.scheduler = s
        pump(d)
    }

    /// A whole chunk arrived (one `chunk`, or its assembled pieces): hashed and stored on a worker.
    func deliverChunk(_ id: UInt32, _ index: Int, _ data: ArraySlice<UInt8>, from peer: NodeID) {
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
        sourceProgressAt[peer] = now
        node.pathTransferred(peer, bytes: data.count, seconds: Double(max(1, now - since)) / 1e9)
        let hash = r.chunks[index]
        d.writesInFlight += 1
        workers.write(hash, data, staging: d.staging) { [weak self] error in
            guard let self else { return }
            d.writesInFlight -= 1
            guard var s = d.scheduler else { return }
            if let error, error.code == .corrupt {
                self.counters.corruptChunks += 1
                self.counters.strikes[peer.short, default: 0] += 1
                self.node.count(.corruptChunk, peer: peer.short, detail: "chunk \(index) of \(d.contentID.short)")
                self.countRequestError(.corruptChunk)
                s.onChunkCorrupt(index, from: peer, now: .nanoseconds(MeshNode.now().nanoseconds))
                self.breakerFailure(peer, P2PRequestError.corruptChunk.rawValue)
            } else if let error {
                self.logger.error("could not store a chunk: \(error)")
                self.countRequestError(.writeFailed)
                self.node.noteStoreWriteError(error)
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
                self.breakerSuccess(peer)
                let losers = s.onChunkVerified(index, from: peer, bytes: data.count, elapsed: elapsed)
                for l in losers { self.cancelDuplicate(d, index: index, at: l) }
            }
            d.scheduler = s
            self.pump(d)
        }
    }

    /// This node no longer awaits `get` `rid` from `source` (see `endedRequests`).
    func noteEnded(_ rid: UInt32, _ source: NodeID) {
        var ended = endedRequests[source, default: []]
        ended.append(rid)
        if ended.count > Self.endedRequestsPerSource { ended.removeFirst(ended.count - Self.endedRequestsPerSource) }
        endedRequests[source] = ended
    }

    /// A chunk or piece of a `get` this node stopped awaiting: the source is still working
    /// through what it was asked (its other requests are not stalled).
    private func noteLateBytes(_ id: UInt32, from peer: NodeID) {
        if requests[id] == nil, endedRequests[peer]?.contains(id) == true { sourceProgressAt[peer] = MeshNode.now() }
    }

    func cancelDuplicate(_ d: Download, index: Int, at source: NodeID) {
        for (rid, var r) in requests where r.source == source && r.content == d.contentID {
            guard case .get(var remaining) = r.kind, let k = remaining.firstIndex(of: index) else { continue }
            remaining.remove(at: k)
            if remaining.isEmpty {
                requests[rid] = nil
                _ = sendRequest(.cancel(requestID: rid), to: source)
                noteEnded(rid, source)
                breakers.recordWithdrawn(source)
            } else {
                r.kind = .get(remaining: remaining)
                requests[rid] = r
            }
        }
    }

    func gotError(_ id: UInt32, _ code: BlobErrorCode, _ message: String, from peer: NodeID) {
        // Like every reply (PROTOCOL §9), an error counts only from the peer that was asked.
        guard let r = requests[id], r.source == peer else { return }
        // The peer failing to read its own store counts against it; not holding or being busy does not.
        if code == .internalError { breakerFailure(peer, "internal_error") }
        fail(id, r, now: MeshNode.now(), reason: .errorReply)
    }

    func fail(_ rid: UInt32, _ r: Request, now: Instant, reason: P2PRequestError) {
        requests[rid] = nil
        switch reason {
        case .timeout, .dialFailed:
            breakerFailure(r.source, reason.rawValue, unreachable: true)
            // The source may only be slow: it should not go on to send what is asked again elsewhere.
            if reason == .timeout, case .get = r.kind { _ = sendRequest(.cancel(requestID: rid), to: r.source); noteEnded(rid, r.source) }
        case .sessionClosed, .sendFailed, .errorReply, .corruptChunk, .inconsistentPieces, .writeFailed:
            // A reset session is the path model's business; the others are counted where they happen.
            if case .get = r.kind { breakers.recordWithdrawn(r.source) }
        }
        guard let d = downloads[r.content] else { return }
        switch r.kind {
        case .recipe:
            if d.recipeRequest == rid { d.recipeRequest = nil }
        case .have:
            break
        case .get(let remaining):
            counters.requestsFailed += 1
            countRequestError(reason)
            d.scheduler?.onRequestFailed(remaining, from: r.source, now: .nanoseconds(now.nanoseconds))
        }
    }

    func finishIfComplete(_ d: Download) {
        guard let s = d.scheduler, s.isComplete, d.writesInFlight == 0 else { return }
        // The store's record decides. It lags the fetch only if a read found a chunk damaged and
        // dropped its record meanwhile: then fetch again from the record.
        guard (try? node.store.isComplete(d.contentID)) == true else {
            if let r = d.recipe { startScheduling(d, r) }
            return
        }
        downloads[d.contentID] = nil
        if d.reason == .request {
            // Whoever asked (`meshnode get`) exports it next: a collection leaves it alone a while
            // even if nothing keeps it (an old version).
            let c = d.contentID
            after(Self.requestedPinGrace) { [weak self] in self?.downloadPins.unpin(c) }
        } else {
            downloadPins.unpin(d.contentID)
        }
        waiting.remove(d.contentID)
        rememberComplete(d.contentID)
        counters.itemsCompleted += 1
        node.itemSynced(d.contentID, entry: d.entry, startedAt: d.started)
        node.contentCompleted(d.contentID)
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
}
