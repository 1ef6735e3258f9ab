/// One meshnode's gossip protocol: SWIM membership with Lifeguard, the replicated
/// manifest with anti-entropy, and the HYBRID push layer, as a sans-IO state machine.
///
/// A value type: every input is a `mutating` call that takes `now` and returns the
/// directives the shell must carry out (send bytes, arm timers, persist, fetch, report).
/// It never reads a clock, never draws global randomness, never touches a socket.
/// The same code runs in the libuv node (`Mesh`) and in the simulator (`MeshSim`).
///
/// What the shell must do (docs/PROTOCOL.md §5–§7 has the wire side):
/// - Pass `now` from one monotonic clock (e.g. `uv_hrtime()`), and a `seed` from the OS.
/// - Perform directives in order. `setTimer(id, at:)` replaces the pending deadline of
///   `id`; `cancelTimer(id)` drops it; call `onTimer(id, now:)` when it fires.
/// - Make `persistIncarnation` durable before sending the `send`s that follow it.
/// - `send(to:bytes:via: .datagram)`: one UDP datagram. `.stream`: one frame on a TCP
///   connection (direct or through a tunnel) to that address, opened on demand; frames
///   received on any connection go to `onFrame(_:from:)` with the peer's address.
/// - On restart, build `GossipDurableState` from the last persisted incarnation, the
///   member list kept from `membershipChanged`, and the Store's entries.
public struct GossipNode: Sendable {
    public let config: GossipConfig
    public let id: NodeID
    public let address: PeerAddress
    let signer: any Signer
    let verifier: any SignatureVerifier
    let trust: TrustPolicy
    var rng: SplitMix64

    /// Addresses reached over streams only (starts as `config.streamOnlyPeers`; see `setStreamOnly`).
    public internal(set) var streamOnlyPeers: Set<PeerAddress>

    // Self
    public internal(set) var incarnation: UInt64
    public internal(set) var hasLeft = false
    var counter: UInt64 = 0
    public internal(set) var localHealth = 0
    var started = false

    // Membership
    var members: [NodeID: Member] = [:]
    var addressIndex: [PeerAddress: NodeID] = [:]
    var suspects: Set<NodeID> = []
    var downMembers: Set<NodeID> = []
    var seeds: [PeerAddress] = []
    var updates: UpdateQueue
    var probeOrder: [NodeID] = []
    var probeIndex = 0
    var probeSoon: [NodeID] = []
    var probe: ProbeState?
    var probeSeq: UInt32 = 0
    var pendingIndirect: [UInt32: PendingIndirect] = [:]
    var aliveCount = 0
    var aliveSortedCache: [NodeID]? = nil
    var lastMemberSync = Instant(nanoseconds: .min / 2)
    /// XOR of `memberHashTerm` over all members (self excluded), kept incrementally.
    var memberHashOthers: UInt64 = 0

    // Replication
    public internal(set) var manifest = Manifest()
    var adverts: AdvertQueue
    var pendingPulls: [EntryRef: Instant] = [:]
    var gapSuspects: [EntryRef: (peer: NodeID, since: Instant)] = [:]
    var treeForwarded: Set<EntryRef> = []
    var repairedSinceLastRound = false
    var treeForwardedOrder: [EntryRef] = []

    public internal(set) var counters = GossipCounters()

    struct Member: Sendable {
        var id: NodeID
        var address: PeerAddress
        var state: MemberState
        var incarnation: UInt64
        /// The incarnation of the `alive` record that `address`, `name`, `role`, `credential`
        /// and `streamOnly` come from. Below `incarnation` when implicit liveness (§6.1) raised
        /// the incarnation without a record: an `alive` record at `incarnation` then still wins.
        var fieldsIncarnation: UInt64
        var name: String
        var role: String
        var credential: [UInt8]
        var streamOnly: Bool
        var stateSince: Instant
        var lastHeard: Instant?
        var rttNs: Int64?
        /// The member holds us in its table (it has sent us something other than a join); until
        /// then, messages without records are preceded by our own alive record (§6.5).
        var knowsUs = false
        /// The member has sent us something other than a join since this node started, so it
        /// knows this run's incarnation and address; until then our own alive record rides on
        /// every ping and ack to it (after a restart, maybe on a new address: §6.4).
        var heardThisRun = false
        var lastExchange = Instant(nanoseconds: .min / 2)
        var introducedAt = Instant(nanoseconds: .min / 2)
        // replay window
        var replayIncarnation: UInt64 = 0
        var replayTop: UInt64 = 0
        var replayBits: UInt64 = 0
        var suspicion: Suspicion?

        /// Whether `u` (an alive record) announces exactly the address, flags, name, role and
        /// credential this member already has.
        func hasFields(of u: MemberUpdate) -> Bool {
            u.address == address && u.streamOnly == streamOnly && u.name == name && u.role == role && u.credential == credential
        }
    }

    struct Suspicion: Sendable {
        var start: Instant
        var confirmers: [NodeID]
        var deadline: Instant
    }

    struct ProbeState: Sendable {
        var target: NodeID
        var seq: UInt32
        var sentAt: Instant
        var acked = false
        var indirectSent = 0
        var nacks = 0
    }

    struct PendingIndirect: Sendable {
        var requester: NodeID
        var requesterSeq: UInt32
        var target: NodeID
        var deadline: Instant
        var nackSent = false
    }

    /// Creates a node. `restore` brings back what a previous run persisted: the node
    /// continues at incarnation `lastIncarnation + 1` (the caller must persist it; the
    /// first directives of `start` include `persistIncarnation`).
    public init(config: GossipConfig, signer: any Signer, verifier: any SignatureVerifier, trust: TrustPolicy,
                address: PeerAddress, seed: UInt64, restore: GossipDurableState = GossipDurableState(), now: Instant = .zero) {
        self.config = config
        self.id = signer.nodeID
        self.address = address
        self.signer = signer
        self.verifier = verifier
        self.trust = trust
        self.rng = SplitMix64(seed: seed ^ SplitMix64.mix(signer.nodeID.key.w0))
        self.incarnation = restore.lastIncarnation + 1
        self.streamOnlyPeers = config.streamOnlyPeers
        self.updates = UpdateQueue(capacity: config.maxMembers + 1)
        self.adverts = AdvertQueue(capacity: Wire.maxAdvertsPerMessage)
        for e in restore.entries where restore.entriesVerified || e.verify(with: verifier) {
            _ = manifest.insert(e, maxForks: config.maxForkEvidence)
        }
        for (held, other) in restore.forks where restore.entriesVerified || (held.verify(with: verifier) && other.verify(with: verifier)) {
            manifest.restoreFork(held, other, maxForks: config.maxForkEvidence)
        }
        for p in restore.knownPeers where p.node != id && members.count < config.maxMembers {
            guard p.state == .alive || p.state == .suspect else { continue }
            // The shell persisted the address with the member's latest incarnation, which may be
            // one known only by implicit liveness: any alive record at that incarnation still wins.
            // It knows us, but not this run's incarnation (nor, maybe, its address): it gets our
            // own alive record on pings and acks until it has been heard from.
            let m = Member(id: p.node, address: p.address, state: .alive, incarnation: p.incarnation,
                           fieldsIncarnation: 0, name: p.name,
                           role: p.role, credential: p.credential, streamOnly: p.streamOnly, stateSince: now, knowsUs: true)
            members[p.node] = m
            memberHashOthers ^= Self.memberHashTerm(p.node, .alive)
            addressIndex[p.address] = p.node
            aliveCount += 1
        }
    }

    // MARK: - Inputs

    /// Starts the node: joins through `seeds` (addresses; the node's own is ignored) and
    /// arms every timer.
    public mutating func start(seeds: [PeerAddress], now: Instant) -> [Directive] {
        var out: [Directive] = [.persistIncarnation(incarnation)]
        // Entries restored from the store that a restored compaction voids (a deletion the
        // shell had not finished before a crash): delete them now.
        emitCompacted(out: &out)
        started = true
        self.seeds = Array(Set(seeds.filter { $0 != address })).sorted()
        updates.enqueue(selfUpdate())
        for id in members.keys.sorted() { insertIntoProbeOrder(id) }
        // After a restart, advertise our newest own entry: peers that missed entries we
        // created just before crashing pull them at once.
        let own = manifest.maxContiguous(id)
        if own > 0 { adverts.add(EntryRef(origin: id, sequence: own)) }
        sendJoins(now: now, out: &out)
        out.append(.setTimer(.join, at: now.advanced(byMs: config.joinRetryIntervalMs)))
        out.append(.setTimer(.probe, at: now.advanced(byMs: Int64(rng.below(Int(config.probeIntervalMs)) + 1))))
        out.append(.setTimer(.antiEntropy, at: now.advanced(byMs: Int64(rng.below(Int(config.antiEntropyIntervalMs)) + 1))))
        out.append(.setTimer(.retry, at: now.advanced(byMs: config.retryIntervalMs)))
        return out
    }

    /// A datagram arrived (UDP). `from` is its source address.
    public mutating func onDatagram(_ bytes: [UInt8], from: PeerAddress, now: Instant) -> [Directive] {
        var out = [Directive]()
        guard bytes.count <= config.maxDatagramBytes else {
            reject(.oversized, from: from, out: &out)
            return out
        }
        receive(bytes, from: from, now: now, out: &out)
        return out
    }

    /// A frame arrived over a stream (TCP, possibly through a tunnel). `from` is the
    /// peer's address as the shell knows it.
    public mutating func onFrame(_ bytes: [UInt8], from: PeerAddress, now: Instant) -> [Directive] {
        var out = [Directive]()
        guard bytes.count <= config.maxFrameBytes else {
            reject(.oversized, from: from, out: &out)
            return out
        }
        receive(bytes, from: from, now: now, out: &out)
        return out
    }

    /// A timer set by an earlier `setTimer` fired.
    public mutating func onTimer(_ timer: TimerID, now: Instant) -> [Directive] {
        var out = [Directive]()
        guard started, !hasLeft else { return out }
        switch timer {
        case .probe:
            probeTick(now: now, out: &out)
            pullStaleGaps(now: now, out: &out)
            cascadeRepair(now: now, out: &out)
        case .probeTimeout: probeTimeout(now: now, out: &out)
        case .indirect: indirectTick(now: now, out: &out)
        case .suspicion: suspicionTick(now: now, out: &out)
        case .antiEntropy: antiEntropyTick(now: now, out: &out)
        case .retry: retryTick(now: now, out: &out)
        case .join: joinTick(now: now, out: &out)
        }
        return out
    }

    /// A new entry created by the local Store (already signed, with its sequence).
    /// It is pushed at once to `pushFanout` neighbours along this origin's broadcast tree.
    public mutating func onLocalEntry(_ entry: ManifestEntry, now: Instant) -> [Directive] {
        var out = [Directive]()
        guard entry.origin == id else {
            reject(.notSenderOrigin, from: address, out: &out)
            return out
        }
        let (r, old) = manifest.insert(entry, maxForks: config.maxForkEvidence)
        switch r {
        case .duplicate: return out
        case .fork:
            counters.forks += 1
            out.append(.forkDetected(old!, entry))
            return out
        case .compacted:
            counters.entriesCompacted += 1
            return out
        case .added:
            counters.entriesAccepted += 1
            adverts.add(EntryRef(origin: id, sequence: entry.sequence))
            treeForward(entry, now: now, out: &out)
            emitCompacted(out: &out)
        }
        return out
    }

    /// An entry that arrived outside gossip, from the established session peer `sender` (a
    /// `take` carries the put it asks about, docs/PROTOCOL.md §9.5): accepted exactly as a
    /// relayed entry (§7.1: its origin trusted, its signature verified), persisted, advertised
    /// and repaired onward; returns whether it is held now.
    public mutating func onCarriedEntry(_ entry: ManifestEntry, from sender: NodeID, now: Instant) -> (held: Bool, directives: [Directive]) {
        var out = [Directive]()
        guard started, !hasLeft else { return (false, out) }
        let from = members[sender]?.address ?? address
        onEntry(entry, from: sender, fromAddress: from, treePush: false, now: now, out: &out)
        return (manifest.entry(EntryRef(origin: entry.origin, sequence: entry.sequence)) == entry, out)
    }

    /// Entries a compaction just voided: the shell deletes them (docs/PROTOCOL.md §4.5).
    mutating func emitCompacted(out: inout [Directive]) {
        let gone = manifest.takeCompacted()
        guard !gone.isEmpty else { return }
        counters.entriesCompacted += UInt64(gone.count)
        out.append(.compacted(gone))
    }

    /// Leaves gracefully: announces `left` to several members directly and stops probing.
    public mutating func leave(now: Instant) -> [Directive] {
        var out = [Directive]()
        guard !hasLeft else { return out }
        let u = MemberUpdate(state: .left, node: id, incarnation: incarnation)
        updates.enqueue(u)
        let targets = randomAlive(count: max(4, config.indirectChecks + config.pushFanout), excluding: [])
        for t in targets {
            let m = members[t]!
            send(.memberSync(wantReply: false, updates: [u]), to: m.address, streamOnly: isStreamOnly(m), now: now, out: &out)
        }
        hasLeft = true
        for t in TimerID.allCases { out.append(.cancelTimer(t)) }
        return out
    }

    /// Sends everything for `address` over streams from now on (`enabled`), or lets small
    /// messages use datagrams again. For the shell: e.g. when a peer is configured behind
    /// an SSH or SOCKS5 tunnel, or when it finds that UDP to it does not get through.
    public mutating func setStreamOnly(_ address: PeerAddress, _ enabled: Bool) {
        if enabled { streamOnlyPeers.insert(address) } else { streamOnlyPeers.remove(address) }
    }

    /// Re-checks every member against a changed trust policy (e.g. a revoked or expired
    /// certificate): members no longer admitted are dropped, each counted under the reason.
    public mutating func revalidate(trust newTrust: TrustPolicy, now: Instant) -> [Directive] {
        var out = [Directive]()
        for nid in members.keys.sorted() {
            guard let m = members[nid], let why = newTrust.refusal(nid, m.credential) else { continue }
            reject(RejectReason(why), from: m.address, out: &out)
            removeMember(nid)
            out.append(.membershipChanged(MemberTransition(node: nid, from: m.state, to: .left, incarnation: m.incarnation, address: m.address)))
        }
        return out
    }

    // MARK: - Queries

    /// Every member (this node included), sorted by node id.
    public func memberSnapshots() -> [MemberSnapshot] {
        var out = members.values.map { m in
            MemberSnapshot(node: m.id, address: m.address, state: m.state, incarnation: m.incarnation, name: m.name,
                           role: m.role, credential: m.credential, streamOnly: m.streamOnly, lastHeard: m.lastHeard,
                           rttNanoseconds: m.rttNs, stateSince: m.stateSince, isSelf: false)
        }
        out.append(MemberSnapshot(node: id, address: address, state: hasLeft ? .left : .alive, incarnation: incarnation,
                                  name: config.name, role: config.role, credential: config.credential,
                                  streamOnly: config.advertiseStreamOnly, lastHeard: nil, rttNanoseconds: nil,
                                  stateSince: .zero, isSelf: true))
        return out.sorted { $0.node < $1.node }
    }

    /// The state of one member (nil if unknown).
    public func memberState(_ node: NodeID) -> MemberState? {
        node == id ? (hasLeft ? .left : .alive) : members[node]?.state
    }

    /// The name of one member (this node's own for `id`; nil if unknown).
    public func memberName(_ node: NodeID) -> String? {
        node == id ? config.name : members[node]?.name
    }

    /// Ids of members this node considers alive (itself excluded).
    public var aliveMembers: [NodeID] { members.values.filter { $0.state == .alive }.map(\.id) }

    public var memberCount: Int { members.count }

    /// Every verified entry, by origin then sequence.
    public var entries: [ManifestEntry] { manifest.allEntries }
}
