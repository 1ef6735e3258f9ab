import Gossip

/// Decides which chunk of one item to ask which peer for, and when. Pure: the caller
/// owns connections and time (passed in as the time elapsed since any fixed origin),
/// and reports what happened.
///
/// Policy (docs/PROTOCOL.md §9.3):
/// - **Many sources at once.** Every source with spare window gets work; a source is
///   ranked by its expected time to deliver one more chunk,
///   `(inFlight + 1) × chunkBytes / throughput`, so fast, idle peers get more.
/// - **Windowed.** At most `windowChunks` chunks in flight per source.
/// - **Verified.** A chunk whose hash does not match earns the source a strike and an
///   immediate back-off; the chunk goes straight back into the pool for another
///   source. `maxStrikes` strikes drop the source for this item.
/// - **Complete holders serve what no one else can.** While peers still receiving the item
///   (bitmap sources) are known, a source that holds all of it is given first the chunks none of
///   them holds, in this receiver's own random order: its upload, shared by every receiver of a
///   broadcast, goes to chunks that are new to the swarm (BitTorrent's super-seeding), and the
///   receivers trade the rest.
///   A chunk that a partial holder which can be asked now holds is not asked of a complete
///   holder at all (it waits for the partial holders' windows), so the complete holder's upload
///   goes only to chunks the swarm lacks.
/// - **Endgame.** When every missing chunk is already in flight, idle sources may
///   duplicate a request (at most `maxCopiesInEndgame` copies per chunk); the first
///   verified copy wins and the caller cancels the rest.
/// - **Back-off.** A failed request backs its source off exponentially, from
///   `baseBackoff` up to `maxBackoff`.
public struct FetchScheduler: Sendable {
    public struct Config: Sendable {
        public var windowChunks = 8
        public var maxIndicesPerRequest = 4
        public var maxStrikes = 3
        public var maxCopiesInEndgame = 2
        public var baseBackoff: Duration = .milliseconds(250)
        public var maxBackoff: Duration = .seconds(30)
        /// Throughput assumed for a source nothing is known about yet.
        public var initialThroughputBytesPerSecond: Double = 50_000_000
        /// Where the lowest-index-first order starts (taken modulo the chunk count): receivers
        /// of one item that start at different chunks soon hold chunks the others lack, and
        /// serve them to one another (swarm-style) instead of all asking the origin for the
        /// same chunks in the same order. 0: from the first chunk.
        public var firstChunk = 0
        /// At most this many chunks in flight to a source holding the whole item while a peer
        /// still receiving it is a source too (2: measured on the 10-node broadcast, 4 and 8 were
        /// slower; on a long fat link it caps what one complete holder gives this receiver to 2
        /// chunks per round trip, while the partial holders give the rest): chunks asked of a complete holder (in a broadcast,
        /// the origin, whose upload every receiver shares) wait in its queue, and the more are
        /// committed there the more of them another receiver fetches too, from it, meanwhile.
        public var completeSourceWindowWithPartials = 2
        /// This receiver. With it, while peers still receiving the item are known, the chunks
        /// none of them holds yet are shared out among this node and them by rendezvous hashing
        /// (every receiver computes the same share from the same set), and a complete holder is
        /// asked only for this node's share, unless nothing at all is in flight here: so that in
        /// a broadcast the origin's upload sends each chunk about once, and the receivers trade
        /// the rest. Nil: no shares.
        public var localNode: NodeID?
        public init() {}
    }

    /// What a source holds.
    public enum Holdings: Sendable, Equatable {
        case all
        case bitmap([UInt8])

        func contains(_ i: Int) -> Bool {
            switch self {
            case .all: true
            case .bitmap(let b): ChunkBitmap.contains(b, i)
            }
        }
    }

    /// One request to send: these chunk indices, to this source.
    public struct Assignment: Equatable, Sendable {
        public var source: NodeID
        public var indices: [Int]
    }

    public struct SourceStats: Sendable, Equatable {
        public var inFlight: Int
        public var strikes: Int
        public var throughputBytesPerSecond: Double
        public var bytesReceived: UInt64
        public var banned: Bool
    }

    struct Source: Sendable {
        var holdings: Holdings
        var inFlight: Set<Int> = []
        var strikes = 0
        var consecutiveFailures = 0
        var backoffUntil: Duration = .zero
        var throughput: Double
        var bytesReceived: UInt64 = 0
        var banned = false
    }

    public let config: Config
    public let chunkCount: Int
    public let chunkSizeBytes: Int
    private var missing: Set<Int>
    private var copies: [Int: Set<NodeID>] = [:]
    private var sources: [NodeID: Source] = [:]

    /// - Parameter present: chunk indices already verified locally (the resume state).
    public init(chunkCount: Int, chunkSizeBytes: Int, present: (Int) -> Bool, config: Config = Config()) {
        self.config = config
        self.chunkCount = chunkCount
        self.chunkSizeBytes = chunkSizeBytes
        missing = Set((0..<chunkCount).filter { !present($0) })
    }

    public var isComplete: Bool { missing.isEmpty }
    /// Whether chunk `i` is stored here (verified), as far as this fetch knows.
    public func holds(_ i: Int) -> Bool { !missing.contains(i) }
    public var missingCount: Int { missing.count }
    public var inFlightCount: Int { copies.count }
    public var sourceIDs: [NodeID] { sources.keys.sorted() }

    public func stats(_ id: NodeID) -> SourceStats? {
        sources[id].map {
            SourceStats(inFlight: $0.inFlight.count, strikes: $0.strikes, throughputBytesPerSecond: $0.throughput,
                        bytesReceived: $0.bytesReceived, banned: $0.banned)
        }
    }

    /// Adds a source, or updates what it holds (a peer still receiving the item
    /// serves what it has so far).
    public mutating func addSource(_ id: NodeID, holds: Holdings) {
        if sources[id] != nil {
            sources[id]!.holdings = holds
        } else {
            sources[id] = Source(holdings: holds, throughput: config.initialThroughputBytesPerSecond)
        }
    }

    /// The source is gone (connection lost for good, node dead): its chunks go back in the pool.
    public mutating func removeSource(_ id: NodeID) {
        guard let s = sources.removeValue(forKey: id) else { return }
        for i in s.inFlight { release(i, from: id) }
    }

    /// Hands out work to every source with spare window, best source first; none to the
    /// sources in `excluding` (peers whose circuit breaker is open).
    public mutating func assign(now: Duration, excluding: Set<NodeID> = []) -> [Assignment] {
        var batches: [NodeID: [Int]] = [:]
        // Endgame duplicates go one chunk per request, so that the first copy to verify can
        // cancel the others outright (a cancel covers a whole request; a duplicate batched with
        // chunks still wanted would be sent anyway: 21-28 % of a 10-node broadcast's bytes).
        var duplicates: [Assignment] = []
        // Chunks nobody is fetching yet, lowest index first from `firstChunk`, wrapping round
        // (sequential reads on the server).
        let n = max(chunkCount, 1), first = ((config.firstChunk % n) + n) % n
        var pool = missing.filter { copies[$0] == nil }.sorted { ($0 - first + n) % n < ($1 - first + n) % n }
        var endgame = pool.isEmpty
        let partial = sources.values.compactMap { s -> [UInt8]? in
            if case .bitmap(let b) = s.holdings, !s.banned { return b }
            return nil
        }
        func elsewhere(_ i: Int) -> Bool { partial.contains { ChunkBitmap.contains($0, i) } }
        // The partial holders that can be asked now (not backed off, not excluded): a chunk one
        // of them holds is theirs to serve, not a complete holder's (whose upload, in a broadcast,
        // every receiver shares), even while their windows are full; they drain. A chunk held
        // only by partial holders that cannot be asked now goes to a complete holder as usual.
        let usablePartial = sources.compactMap { id, s -> [UInt8]? in
            if case .bitmap(let b) = s.holdings, !s.banned, s.backoffUntil <= now, !excluding.contains(id) { return b }
            return nil
        }
        func partialCanServe(_ i: Int) -> Bool { usablePartial.contains { ChunkBitmap.contains($0, i) } }
        // Any peer still receiving it (not only one that holds a chunk this node lacks: early in
        // a broadcast they hold nothing yet, and the origin's queue is where duplicates start).
        let partialsKnown = !partial.isEmpty
        // This node's share of the fresh chunks (see `Config.localNode`).
        let peers = sources.compactMap { id, s -> UInt64? in
            if case .bitmap = s.holdings, !s.banned { return id.key.w0 }
            return nil
        }
        func share(_ i: Int) -> Bool {
            guard let me = config.localNode?.key.w0 else { return true }
            let k = SplitMix64.mix(UInt64(i) &+ 0x6A09_E667_F3BC_C909)
            let score = SplitMix64.mix(me ^ k)
            return !peers.contains { $0 != me && SplitMix64.mix($0 ^ k) > score }
        }
        // The shares hold while this node has anything else to do: something in flight, a chunk
        // of its share, or one a partial holder can serve. Otherwise (the peers whose shares are
        // left are slow or gone) any fresh chunk may be asked of a complete holder.
        let sharesHold = !copies.isEmpty || pool.contains { share($0) || partialCanServe($0) }
        func mine(_ i: Int) -> Bool { !sharesHold || share(i) }
        func servable(_ i: Int, by h: Holdings) -> Bool {
            h.contains(i) && !(partialsKnown && h == .all && (partialCanServe(i) || (!elsewhere(i) && !mine(i))))
        }
        // Those fresh chunks in this receiver's own random order, not from `firstChunk` on:
        // receivers that go through them in index order converge on the same few chunks at the
        // end (every receiver asks the origin for each of them: 9 copies in a 10-node broadcast,
        // the whole tail at the origin's rate); in different random orders they take different
        // ones and trade them.
        let salt = SplitMix64.mix(UInt64(truncatingIfNeeded: config.firstChunk) &+ 0x9E37_79B9_7F4A_7C15)
        var freshOrder = partial.isEmpty ? [] : pool.filter { !elsewhere($0) && mine($0) }
            .sorted { SplitMix64.mix(UInt64($0) ^ salt) < SplitMix64.mix(UInt64($1) ^ salt) }
        freshOrder.reverse()  // taken from the end
        while true {
            guard let best = bestSource(now: now, partialsKnown: partialsKnown, canServe: { id, s in
                !excluding.contains(id) && (endgame ? self.endgameCandidate(for: id, s) != nil : pool.contains(where: { servable($0, by: s.holdings) }))
            }) else {
                if !endgame && pool.isEmpty { endgame = true; continue }
                break
            }
            let pick: Int
            if endgame {
                guard let i = endgameCandidate(for: best, sources[best]!) else { break }
                pick = i
            } else {
                let h = sources[best]!.holdings
                var fresh: Int?
                if h == .all {
                    while let f = freshOrder.popLast() {
                        if let k = pool.firstIndex(of: f) { fresh = k; break }
                    }
                }
                guard let k = fresh ?? pool.firstIndex(where: { servable($0, by: h) }) else { break }
                pick = pool.remove(at: k)
            }
            sources[best]!.inFlight.insert(pick)
            let duplicate = copies[pick] != nil
            copies[pick, default: []].insert(best)
            if duplicate {
                duplicates.append(Assignment(source: best, indices: [pick]))
            } else {
                batches[best, default: []].append(pick)
            }
            if !endgame && pool.isEmpty { endgame = true }
        }
        var out = [Assignment]()
        for (id, idx) in batches.sorted(by: { $0.key < $1.key }) {
            var rest = idx[...]
            while !rest.isEmpty {
                let part = rest.prefix(config.maxIndicesPerRequest)
                out.append(Assignment(source: id, indices: Array(part)))
                rest = rest.dropFirst(part.count)
            }
        }
        return out + duplicates
    }

    private func window(_ s: Source, _ partialsKnown: Bool) -> Int {
        partialsKnown && s.holdings == .all ? min(config.windowChunks, max(1, config.completeSourceWindowWithPartials)) : config.windowChunks
    }

    private func endgameCandidate(for id: NodeID, _ s: Source) -> Int? {
        copies.keys.sorted().first { i in
            let c = copies[i]!
            return missing.contains(i) && !c.contains(id) && c.count < config.maxCopiesInEndgame && s.holdings.contains(i)
        }
    }

    /// `partialsKnown`: a peer still receiving the item is a source (complete
    /// holders then get the smaller window).
    private func bestSource(now: Duration, partialsKnown: Bool, canServe: (NodeID, Source) -> Bool) -> NodeID? {
        var best: (NodeID, Double)?
        for (id, s) in sources where !s.banned && s.backoffUntil <= now && s.inFlight.count < window(s, partialsKnown) {
            guard canServe(id, s) else { continue }
            let eta = Double(s.inFlight.count + 1) * Double(chunkSizeBytes) / max(s.throughput, 1)
            if best == nil || eta < best!.1 || (eta == best!.1 && id < best!.0) { best = (id, eta) }
        }
        return best?.0
    }

    /// A chunk arrived from `source` and matched its hash. Returns the other sources
    /// that were asked for the same chunk (endgame duplicates): cancel those.
    public mutating func onChunkVerified(_ index: Int, from source: NodeID, bytes: Int, elapsed: Duration) -> [NodeID] {
        let others = (copies[index] ?? []).subtracting([source]).sorted()
        for o in others { sources[o]?.inFlight.remove(index) }
        copies[index] = nil
        missing.remove(index)
        if var s = sources[source] {
            s.inFlight.remove(index)
            s.consecutiveFailures = 0
            s.bytesReceived += UInt64(bytes)
            let seconds = max(Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18, 1e-6)
            let sample = Double(bytes) / seconds
            s.throughput = s.throughput * 0.7 + sample * 0.3
            sources[source] = s
        }
        return others
    }

    /// A chunk arrived from `source` but its bytes did not match the hash: a strike,
    /// an immediate back-off, and the chunk goes back in the pool. Returns true when
    /// the source has now been dropped for this item.
    @discardableResult
    public mutating func onChunkCorrupt(_ index: Int, from source: NodeID, now: Duration) -> Bool {
        release(index, from: source)
        guard var s = sources[source] else { return true }
        s.strikes += 1
        s.banned = s.strikes >= config.maxStrikes
        s.consecutiveFailures += 1
        s.backoffUntil = now + backoff(s.consecutiveFailures)
        sources[source] = s
        if s.banned { for i in s.inFlight { release(i, from: source) } }
        return s.banned
    }

    /// A request failed without data (error reply, timeout, connection reset): its
    /// chunks go back in the pool and the source backs off.
    public mutating func onRequestFailed(_ indices: [Int], from source: NodeID, now: Duration) {
        for i in indices { release(i, from: source) }
        guard var s = sources[source] else { return }
        s.consecutiveFailures += 1
        s.backoffUntil = now + backoff(s.consecutiveFailures)
        sources[source] = s
    }

    /// Fresh evidence that `source` is reachable (a session with it was just established, for
    /// example after it restarted): its current backoff ends now. The failure count stays (only
    /// a verified chunk clears it), so a peer whose sessions come up and die at once still backs
    /// off further each time; strikes stay, and a banned source stays banned.
    public mutating func onSourceReachable(_ source: NodeID, now: Duration) {
        guard var s = sources[source], !s.banned else { return }
        s.backoffUntil = min(s.backoffUntil, now)
        sources[source] = s
    }

    /// Hands chunks back without blaming the source (e.g. the caller decided not to send the
    /// request on a connection that is about to be reset): they return to the pool.
    public mutating func unassign(_ indices: [Int], from source: NodeID) {
        for i in indices { release(i, from: source) }
    }

    /// The earliest time a backed-off source becomes usable again (for a timer).
    public func nextWakeup(after now: Duration) -> Duration? {
        sources.values.filter { !$0.banned && $0.backoffUntil > now }.map(\.backoffUntil).min()
    }

    private mutating func release(_ i: Int, from source: NodeID) {
        sources[source]?.inFlight.remove(i)
        copies[i]?.remove(source)
        if copies[i]?.isEmpty == true { copies[i] = nil }
    }

    private func backoff(_ failures: Int) -> Duration {
        let factor = 1 << min(max(failures - 1, 0), 16)
        let d = config.baseBackoff * factor
        return d < config.maxBackoff ? d : config.maxBackoff
    }
}
