import Gossip

/// The Byzantine injector: garbage, corrupted and replayed copies of real traffic, an untrusted
/// key trying to join, tampered and foreign entries relayed by a trusted insider, and a fork.
extension Simulator {
    // MARK: - Nemesis

    /// Nemesis messages go straight to the victim (no loss), in order, `latency` later.
    func nemesisSend(_ m: Message, from sender: NodeID, to j: Int, aux: Int32 = 0) {
        nemesisCounter += 1
        let b = Envelope(sender: sender, incarnation: 1, counter: nemesisCounter, message: m).encode(signer: SimSigner(nodeID: sender))
        metrics.nemesisMessages += 1
        schedule(Event(t: now + Int64(options.latencyMs * 1e6) + Int64(nemesisCounter), seq: 0, kind: .deliver, node: Int32(j), aux: aux,
                       from: -1, stream: b.count > 1200, bytes: b))
    }

    func nemesisStep() {
        let c = upHonest()
        guard c.count >= 2 else { return }
        let j = c[rng.below(c.count)]
        let selfRec = MemberUpdate(state: .alive, node: nemesisID, incarnation: 1, address: nemesisAddress, name: "nemesis")
        switch rng.below(7) {
        case 0:  // garbage
            let n = rng.below(1500)
            let b = (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            metrics.nemesisMessages += 1
            schedule(Event(t: now + delayNs(), seq: 0, kind: .deliver, node: Int32(j), from: -1, stream: false, bytes: b))
        case 1:  // a corrupted copy of real traffic
            if let (to, b0) = lastDatagram, !b0.isEmpty, var b = Optional(b0), nodes[to].up {
                b[rng.below(b.count)] ^= UInt8(1 + rng.below(255))
                metrics.nemesisMessages += 1
                schedule(Event(t: now + delayNs(), seq: 0, kind: .deliver, node: Int32(to), from: -1, stream: false, bytes: b))
            }
        case 2:  // an untrusted outsider tries to join
            let rec = MemberUpdate(state: .alive, node: outsiderID, incarnation: 1, address: PeerAddress(host: "10.255.255.2", port: 7946))
            nemesisSend(.join(updates: [rec]), from: outsiderID, to: j)
        case 3, 4:  // a trusted insider relays a tampered genuine entry and an entry by an untrusted origin
            if let g = genuine.keys.sorted(by: { ($0.origin, $0.sequence) < ($1.origin, $1.sequence) }).last.flatMap({ genuine[$0] }) {
                var bad = g
                bad.name += "-tampered"
                bad.sequence += 1000
                let foreign = ManifestEntry(origin: outsiderID, sequence: 1, contentID: g.contentID, sizeBytes: 1, chunkSizeBytes: 4096,
                                            type: .other, createdAtMs: 0, name: "foreign").signed(by: SimSigner(nodeID: outsiderID))
                nemesisSend(.join(updates: [selfRec]), from: nemesisID, to: j)
                nemesisSend(.entries(treePush: true, entries: [bad, foreign]), from: nemesisID, to: j)
            }
        case 5:  // an equivocating insider: two different entries with the same (origin, sequence)
            if forkVariants == nil, c.count >= 2 {
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
        default:  // an exact replay of real traffic
            if let (to, b) = lastDatagram, nodes[to].up {
                metrics.nemesisMessages += 1
                schedule(Event(t: now + delayNs(), seq: 0, kind: .deliver, node: Int32(to), from: -1, stream: false, bytes: b))
            }
        }
    }
}
