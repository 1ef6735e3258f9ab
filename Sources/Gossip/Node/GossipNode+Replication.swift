extension GossipNode {
    // MARK: - Entries

    func originTrusted(_ o: NodeID) -> Bool {
        o == id || members[o] != nil || trust.admits(o, [])
    }

    mutating func onEntry(_ e: ManifestEntry, from s: NodeID, fromAddress: PeerAddress, treePush: Bool, now: Instant, out: inout [Directive]) {
        let ref = EntryRef(origin: e.origin, sequence: e.sequence)
        if let have = manifest.entry(ref), have == e {
            counters.entriesDuplicate += 1
            // Got it first by a pull or repair: the tree below us still needs it.
            if treePush && !treeForwarded.contains(ref) { treeForward(e, now: now, out: &out) }
            return
        }
        guard originTrusted(e.origin) else { reject(.untrustedOrigin, from: fromAddress, out: &out); return }
        guard e.verify(with: verifier) else { reject(.badEntrySignature, from: fromAddress, out: &out); return }
        let (r, old) = manifest.insert(e, maxForks: config.maxForkEvidence)
        switch r {
        case .duplicate:
            counters.entriesDuplicate += 1
        case .fork:
            counters.forks += 1
            out.append(.forkDetected(old!, e))
        case .compacted:
            // Its origin compacted it (§4.5): a lagging relay's copy, not kept.
            counters.entriesCompacted += 1
        case .added:
            counters.entriesAccepted += 1
            pendingPulls[ref] = nil
            out.append(.persistEntry(e))
            emitCompacted(out: &out)
            if let p = e.put { out.append(.fetch(p.contentID, holders: s == e.origin ? [s] : [e.origin, s])) }
            adverts.add(ref)
            if treePush { treeForward(e, now: now, out: &out) } else { repairedSinceLastRound = true }
            if e.sequence > manifest.maxContiguous(e.origin) + 1 && s != id {
                // A gap below a fresh entry: the sender most likely has the rest. The
                // missing one may still be on its way down the tree, so wait a little
                // (`gapPullDelayMs`, checked every protocol period) before pulling.
                let gap = EntryRef(origin: e.origin, sequence: e.sequence - 1)
                if gapSuspects[gap] == nil && gapSuspects.count < config.maxPendingPulls { gapSuspects[gap] = (s, now) }
            }
        }
    }

    /// HYBRID eager half: each entry travels down a broadcast tree rooted at its origin.
    /// The ring is the alive members sorted by id, rotated so the origin is at 0; the
    /// node at ring offset r forwards to offsets r·F+1 … r·F+F (F = `pushFanout`). With
    /// agreeing views every node receives the entry exactly once (n − 1 messages) after
    /// at most ⌈log_F(n)⌉ hops; disagreeing views cost a few duplicates or misses, and
    /// misses are closed by the lazy adverts below and by anti-entropy.
    mutating func treeForward(_ e: ManifestEntry, now: Instant, out: inout [Directive]) {
        let ref = EntryRef(origin: e.origin, sequence: e.sequence)
        if treeForwardedOrder.count >= 1024 { treeForwarded.remove(treeForwardedOrder.removeFirst()) }
        if treeForwarded.insert(ref).inserted { treeForwardedOrder.append(ref) }
        let ring = aliveSorted()
        let n = ring.count
        guard n > 1, let me = Self.index(of: id, in: ring) else { return }
        let root = Self.index(of: e.origin, in: ring) ?? Int(SplitMix64.mix(e.origin.key.w0) % UInt64(n))
        let r = (me - root + n) % n
        let f = max(1, config.pushFanout)
        for c in 1...f {
            let child = r * f + c
            guard child < n else { break }
            let t = ring[(root + child) % n]
            if t == id || t == e.origin { continue }
            counters.treePushesSent += 1
            send(.entries(treePush: true, entries: [e]), toMember: t, now: now, out: &out)
        }
    }

    static func index(of x: NodeID, in ring: [NodeID]) -> Int? {
        var lo = 0, hi = ring.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if ring[mid] < x { lo = mid + 1 } else { hi = mid }
        }
        return lo < ring.count && ring[lo] == x ? lo : nil
    }

    /// HYBRID lazy half: ids of recent entries ride on probe traffic; a node missing one
    /// pulls the gap from the advertiser.
    mutating func onAdverts(_ ads: [EntryRef], from s: NodeID, now: Instant, out: inout [Directive]) {
        guard !ads.isEmpty else { return }
        requestMissing(ads, from: s, now: now, out: &out)
    }

    /// Pulls from `s` everything up to each advertised sequence that is not held
    /// (an origin's sequences have no gaps, so any id above our contiguous prefix
    /// reveals what we lack).
    mutating func requestMissing(_ ads: [EntryRef], from s: NodeID, now: Instant, out: inout [Directive]) {
        var ranges = [NodeID: (UInt64, UInt64)]()
        for a in ads where manifest.maxContiguous(a.origin) < a.sequence && originTrusted(a.origin) {
            if manifest.contains(a) && manifest.maxContiguous(a.origin) + 1 >= a.sequence { continue }
            if let t = pendingPulls[a], now - t < config.pullRetryMs * 1_000_000 { continue }
            if pendingPulls.count >= config.maxPendingPulls {
                pendingPulls = pendingPulls.filter { now - $0.value < config.pullRetryMs * 1_000_000 }
                if pendingPulls.count >= config.maxPendingPulls { break }
            }
            pendingPulls[a] = now
            let lo = manifest.maxContiguous(a.origin) + 1
            if let r = ranges[a.origin] { ranges[a.origin] = (min(r.0, lo), max(r.1, a.sequence)) } else { ranges[a.origin] = (lo, a.sequence) }
        }
        guard !ranges.isEmpty else { return }
        let list = ranges.keys.sorted().prefix(Wire.maxPullRanges).map {
            PullRange(origin: $0, fromSequence: ranges[$0]!.0, toSequence: max(ranges[$0]!.0, ranges[$0]!.1))
        }
        counters.pullsSent += 1
        send(.pull(Array(list)), toMember: s, now: now, out: &out)
    }

    /// Repair cascade: a node that just received missing entries by repair is evidence
    /// of divergence (a healed partition, a restart), and others likely miss them too:
    /// it runs one extra anti-entropy round with a random member at the next protocol
    /// period. Costs nothing while the cluster agrees.
    mutating func cascadeRepair(now: Instant, out: inout [Directive]) {
        guard repairedSinceLastRound else { return }
        repairedSinceLastRound = false
        guard let p = randomAlive(count: 1, excluding: []).first,
              now - members[p]!.lastExchange >= config.probeIntervalMs * 1_000_000 else { return }
        counters.antiEntropyRounds += 1
        sendDigest(to: p, now: now, out: &out)
    }

    /// Pulls gaps that were noticed at least `gapPullDelayMs` ago and are still open.
    mutating func pullStaleGaps(now: Instant, out: inout [Directive]) {
        guard !gapSuspects.isEmpty else { return }
        var byPeer = [NodeID: [EntryRef]]()
        for (ref, v) in gapSuspects.sorted(by: { ($0.key.origin, $0.key.sequence) < ($1.key.origin, $1.key.sequence) }) {
            if manifest.maxContiguous(ref.origin) >= ref.sequence { gapSuspects[ref] = nil; continue }
            if now - v.since >= config.gapPullDelayMs * 1_000_000 {
                gapSuspects[ref] = nil
                if members[v.peer] != nil { byPeer[v.peer, default: []].append(ref) }
            }
        }
        for p in byPeer.keys.sorted() { requestMissing(byPeer[p]!, from: p, now: now, out: &out) }
    }

    mutating func onPull(_ ranges: [PullRange], from s: NodeID, now: Instant, out: inout [Directive]) {
        var es = [ManifestEntry]()
        for r in ranges {
            let room = config.maxRepairEntries - es.count
            if room <= 0 { break }
            es += manifest.entries(origin: r.origin, from: r.fromSequence, to: r.toSequence, limit: room)
        }
        sendEntries(es, to: s, now: now, out: &out)
    }

    /// Repair batches: one datagram when they fit, else stream frames ≤ `maxFrameBytes`.
    mutating func sendEntries(_ es: [ManifestEntry], to s: NodeID, now: Instant, out: inout [Directive]) {
        guard !es.isEmpty else { return }
        counters.repairEntriesSent += UInt64(es.count)
        let sizes = es.map { $0.encoded.count }
        let total = sizes.reduce(0, +)
        if total <= datagramPayloadBudget - 3 {
            send(.entries(treePush: false, entries: es), toMember: s, now: now, out: &out)
            return
        }
        let budget = config.maxFrameBytes - Envelope.overheadBytes - 3
        var batch = [ManifestEntry](), size = 0
        for (e, sz) in zip(es, sizes) {
            if size + sz > budget || batch.count >= Wire.maxEntriesPerMessage {
                send(.entries(treePush: false, entries: batch), toMember: s, now: now, out: &out)
                batch = []; size = 0
            }
            batch.append(e); size += sz
        }
        if !batch.isEmpty { send(.entries(treePush: false, entries: batch), toMember: s, now: now, out: &out) }
    }

    // MARK: - Anti-entropy

    /// XOR of a mix of (id, coarse state) over every member and self: views that agree
    /// on who is in the cluster and who is up give equal hashes. Incarnations and the
    /// transient suspect state are left out on purpose: gossip settles those, and a full
    /// list (tens of KB at 1000 members) should move only when views really disagree.
    var memberHash: UInt64 { memberHashOthers ^ Self.memberHashTerm(id, hasLeft ? .left : .alive) }

    static func memberHashTerm(_ n: NodeID, _ st: MemberState) -> UInt64 {
        Manifest.pairHash(n, st == .suspect ? 1 : UInt64(st.rawValue))
    }

    mutating func sendDigest(to s: NodeID, now: Instant, out: inout [Directive]) {
        guard members[s] != nil else { return }
        members[s]!.lastExchange = now
        let b = manifest.preferredBucketsLog2
        let d = Digest(bucketsLog2: UInt8(b), bucketHashes: manifest.digestHashes(log2: b), originCount: UInt32(manifest.originCount),
                       memberHash: memberHash, memberCount: UInt32(members.count + 1))
        send(.digest(d), toMember: s, now: now, out: &out)
    }

    mutating func antiEntropyTick(now: Instant, out: inout [Directive]) {
        out.append(.setTimer(.antiEntropy, at: now.advanced(byMs: config.antiEntropyIntervalMs)))
        guard let p = randomAlive(count: 1, excluding: []).first else { return }
        counters.antiEntropyRounds += 1
        sendDigest(to: p, now: now, out: &out)
    }

    mutating func onDigest(_ d: Digest, from s: NodeID, now: Instant, out: inout [Directive]) {
        members[s]?.lastExchange = now
        // Full lists cost ~80 bytes per member: small clusters may exchange them every
        // second, large ones at most every `memberSyncMinIntervalMs`.
        let syncGapMs = max(1000, min(config.memberSyncMinIntervalMs, 20 * Int64(members.count + 1)))
        if d.memberHash != memberHash && now - lastMemberSync >= syncGapMs * 1_000_000 {
            lastMemberSync = now
            sendMemberList(to: s, wantReply: true, now: now, out: &out)
        }
        let b = Int(d.bucketsLog2)
        let mine = manifest.digestHashes(log2: b)
        var diff = [UInt16]()
        for i in 0..<mine.count where mine[i] != d.bucketHashes[i] { diff.append(UInt16(i)) }
        guard !diff.isEmpty else { return }
        sendVector(wantReply: true, log2: b, buckets: diff, to: s, now: now, out: &out)
    }

    mutating func sendVector(wantReply: Bool, log2 b: Int, buckets: [UInt16], to s: NodeID, now: Instant, out: inout [Directive]) {
        let pairs = manifest.vector(log2: b, buckets: Set(buckets.map(Int.init)))
        let v = VectorMessage(wantReply: wantReply, bucketsLog2: UInt8(b), buckets: buckets, pairs: Array(pairs.prefix(Wire.maxVectorPairs)))
        send(.vector(v), toMember: s, now: now, out: &out)
    }

    mutating func onVector(_ v: VectorMessage, from s: NodeID, now: Instant, out: inout [Directive]) {
        let b = Int(v.bucketsLog2)
        let set = Set(v.buckets.map(Int.init))
        let missing = manifest.entriesMissing(from: v.pairs, log2: b, buckets: set, limit: config.maxRepairEntries)
        sendEntries(missing, to: s, now: now, out: &out)
        if v.wantReply { sendVector(wantReply: false, log2: b, buckets: v.buckets, to: s, now: now, out: &out) }
    }
}
