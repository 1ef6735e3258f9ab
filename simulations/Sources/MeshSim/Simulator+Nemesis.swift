import Gossip

/// The Byzantine injector: garbage, corrupted and replayed copies of real traffic, an untrusted
/// key trying to join, tampered and foreign entries relayed by a trusted insider, and a fork.
extension Simulator {
    // MARK: - Nemesis

    /// What one injection does. The k-th injection of a run is kind k mod `allCases.count`, so
    /// every seed covers every kind (and every reason they are refused for) a few times over.
    /// Seeded randomness still picks the victim and the bytes: from a generator of the k-th
    /// injection's own (`nemesisRandom`), so the nemesis draws nothing from the run's
    /// generator and a change to it shifts no other fault of the run (and none shifts it).
    enum NemesisKind: Int, CaseIterable {
        case garbage              // at most 1200 bytes → malformed
        case oversizedGarbage     // 1201–1500 bytes → oversized
        case corruptedSignature   // → bad_signature
        case corruptedCopy        // a byte flipped anywhere → malformed or bad_signature
        case outsiderJoin         // → untrusted_key
        case tamperedAndForeign   // → bad_entry_signature, untrusted_origin
        case fork                 // → fork evidence (once per run; a replay after that)
        case replay               // → replayed
    }

    /// `nemesisCounter` packs the number of injections so far (high 48 bits) and the messages
    /// sent within the current one (low 16 bits), so envelope counters keep increasing.
    static let nemesisSendBits: UInt64 = 16

    /// Nemesis messages go straight to the victim (no loss), in order, `latency` later.
    func nemesisSend(_ m: Message, from sender: NodeID, to j: Int, aux: Int32 = 0) {
        nemesisCounter += 1
        let b = Envelope(sender: sender, incarnation: 1, counter: nemesisCounter, message: m).encode(signer: SimSigner(nodeID: sender))
        metrics.nemesisMessages += 1
        let inStep = Int64(nemesisCounter & ((1 << Self.nemesisSendBits) - 1))
        schedule(Event(t: now + Int64(options.latencyMs * 1e6) + inStep, seq: 0, kind: .deliver, node: Int32(j), aux: aux,
                       from: -1, stream: b.count > 1200, bytes: b))
    }

    /// Starts the next injection: returns its index (0, 1, 2, …).
    func nextNemesisInjection() -> UInt64 {
        let k = nemesisCounter >> Self.nemesisSendBits
        nemesisCounter = (k + 1) << Self.nemesisSendBits
        return k
    }

    /// The generator of injection `k`: a function of the run seed and `k` only.
    func nemesisRandom(_ k: UInt64) -> SplitMix64 {
        SplitMix64(seed: SplitMix64.mix(options.seed ^ 0x4E45_4D45_5349_5300) ^ SplitMix64.mix(k))
    }

    /// Raw bytes delivered by the nemesis as a datagram from its own address: `latency` ±
    /// `jitter` later, like any datagram, with the jitter drawn from `r`.
    func nemesisDeliver(_ bytes: [UInt8], to j: Int, _ r: inout SplitMix64) {
        metrics.nemesisMessages += 1
        let jitter = options.jitterMs > 0 ? (r.unit() * 2 - 1) * options.jitterMs : 0
        let delay = Int64(max(0.05, options.latencyMs + jitter) * 1e6)
        schedule(Event(t: now + delay, seq: 0, kind: .deliver, node: Int32(j), from: -1, stream: false, bytes: bytes))
    }

    func nemesisStep() {
        let c = upHonest()
        guard c.count >= 2 else { return }
        let k = nextNemesisInjection()
        let kind = NemesisKind(rawValue: Int(k % UInt64(NemesisKind.allCases.count)))!
        var r = nemesisRandom(k)
        let j = c[r.below(c.count)]
        let selfRec = MemberUpdate(state: .alive, node: nemesisID, incarnation: 1, address: nemesisAddress, name: "nemesis")
        let copy = lastDatagram.flatMap { nodes[$0.to].up && !$0.bytes.isEmpty ? $0 : nil }
        let newest = genuine.keys.sorted(by: { ($0.origin, $0.sequence) < ($1.origin, $1.sequence) }).last.flatMap { genuine[$0] }
        switch kind {
        case .corruptedSignature, .corruptedCopy, .replay:
            // Real traffic to copy appears within the first second; until then, garbage.
            guard let (to, b0) = copy else { return nemesisGarbage(to: j, &r) }
            var b = b0
            switch kind {
            case .corruptedSignature where b.count >= 64:
                // A valid envelope with one byte of its signature changed (§5.2 step 6).
                b[b.count - 64 + r.below(64)] ^= UInt8(1 + r.below(255))
            case .corruptedSignature, .corruptedCopy:
                b[r.below(b.count)] ^= UInt8(1 + r.below(255))
            default:
                break  // an exact replay
            }
            nemesisDeliver(b, to: to, &r)
        case .garbage:
            nemesisGarbage(to: j, &r)
        case .oversizedGarbage:
            nemesisGarbage(to: j, bytes: 1201 + r.below(300), &r)
        case .outsiderJoin:  // an untrusted outsider tries to join
            let rec = MemberUpdate(state: .alive, node: outsiderID, incarnation: 1, address: PeerAddress(host: "10.255.255.2", port: 7946))
            nemesisSend(.join(updates: [rec]), from: outsiderID, to: j)
        case .tamperedAndForeign:  // a trusted insider relays a tampered genuine entry and an entry by an untrusted origin
            guard let g = newest else { return nemesisGarbage(to: j, &r) }
            var bad = g
            bad.name += "-tampered"
            bad.sequence += 1000
            let foreign = ManifestEntry(origin: outsiderID, sequence: 1, contentID: g.contentID, sizeBytes: 1, chunkSizeBytes: 4096,
                                        type: .other, createdAtMs: 0, name: "foreign").signed(by: SimSigner(nodeID: outsiderID))
            nemesisSend(.join(updates: [selfRec]), from: nemesisID, to: j)
            nemesisSend(.entries(treePush: true, entries: [bad, foreign]), from: nemesisID, to: j)
        case .fork:  // an equivocating insider: two different entries with the same (origin, sequence)
            guard forkVariants == nil else {
                if let (to, b) = copy { nemesisDeliver(b, to: to, &r) } else { nemesisGarbage(to: j, &r) }
                return
            }
            let base = ManifestEntry(origin: nemesisID, sequence: 1, contentID: ContentID(digest: Bytes32(w0: 1, w1: 2, w2: 3, w3: 4)),
                                     sizeBytes: 10, chunkSizeBytes: 4096, type: .other, createdAtMs: 0, name: "fork-a")
            var b2 = base
            b2.name = "fork-b"
            let a = base.signed(by: SimSigner(nodeID: nemesisID)), b = b2.signed(by: SimSigner(nodeID: nemesisID))
            forkVariants = (a, b)
            nemesisEntries.insert(a); nemesisEntries.insert(b)
            let k = c[(c.firstIndex(of: j)! + 1) % c.count]
            nemesisSend(.join(updates: [selfRec]), from: nemesisID, to: j)
            nemesisSend(.join(updates: [selfRec]), from: nemesisID, to: k)
            nemesisSend(.entries(treePush: false, entries: [a]), from: nemesisID, to: j)
            nemesisSend(.entries(treePush: false, entries: [a, b]), from: nemesisID, to: k, aux: 1)
        }
    }

    /// `count` random bytes (by default 0–1200: a datagram within the limit) to `j`.
    func nemesisGarbage(to j: Int, bytes count: Int? = nil, _ r: inout SplitMix64) {
        let n = count ?? r.below(1201)
        let b = (0..<n).map { _ in UInt8(truncatingIfNeeded: r.next()) }
        nemesisDeliver(b, to: j, &r)
    }
}
