import Gossip
import Logging
import Store
import Sync

/// What a running node needs to know beyond its store.
public struct MeshNodeOptions: Sendable {
    /// Where to bind UDP and TCP (the same port number for both). Port 0 picks a free one.
    public var listen: PeerAddress
    /// The address peers should use to reach this node; defaults to `listen`.
    public var advertise: PeerAddress?
    /// Seeds to join through.
    public var join: [PeerAddress]
    public var gossip: GossipConfig
    public var admission: AdmissionPolicy
    /// This node's certificate (empty when it is admitted by key).
    public var credential: [UInt8]
    /// A rejected input is logged at most once per (reason, peer) per this interval.
    public var rejectLogInterval: Duration = .seconds(10)
    /// Sessions that carried no message for this long are closed cleanly (PROTOCOL §8.4).
    public var sessionIdleTimeout: Duration = .seconds(60)
    /// A session replaced by a newer one with the same peer drains this long, then is closed
    /// cleanly.
    public var sessionDrainTimeout: Duration = .seconds(15)
    /// A peer that has not sent us a datagram for this long, but has a session with
    /// us, is reached over that session (it is probably behind a TCP-only tunnel).
    public var udpSilenceBeforeStream: Duration = .seconds(20)
    /// Cap on simultaneously open sessions (inbound and outbound).
    public var maxSessions: Int = 512
    /// Seed for this run's random choices (taken from the OS when nil).
    public var randomSeed: UInt64?
    /// Per-peer settings by name or node id (the config's `hosts`): how to reach each peer.
    public var hosts: [String: HostConfig] = [:]
    /// The chunk exchange's limits (bandwidth, concurrency, timeouts).
    public var blob = BlobService.Config()
    /// When false (`session_encryption: always`), sessions are always encrypted, even inside
    /// an SSH tunnel that ends on the peer's loopback (`CipherSuite.sshTunnel`).
    public var allowSSHTunnelSuite = true
    /// What this node keeps of each name's history, and the retention it stamps on its own puts.
    public var keep = KeepPolicy()
    /// `compact_after`: how long a deleted or expired entry of this node's own log stays before
    /// it is compacted away (docs/PROTOCOL.md §4.5). 0 turns compaction off.
    public var compactAfter: Duration = .seconds(7 * 86_400)
    /// Watched folders (the config's `folders`; Folders/FolderService.swift).
    public var folders: [FolderConfig] = []
    /// What this node states about itself in its node facts (PROTOCOL §4.7), besides its disk.
    public var facts = OwnFacts()
    /// `placement:` (docs/SYNC.md, "Placement"): nil (not configured) keeps every item on every node.
    public var placement: PlacementPolicy?
    /// `max_disk_usage` (1-100 %): over it this node fetches no new replicas. nil: no cap.
    public var maxDiskUsagePercent: Int?
    /// The config file this node read (named in log lines that say what to change there).
    public var configPath: String?
    /// A seed not joined this long after start is reported (log line, `peers`, `status`) at the
    /// next housekeeping sweep (every 5 s: so about 10 s after start by default), and then again
    /// at most once per `seedReportInterval` (MeshNode+Seeds.swift).
    public var seedReportAfter: Duration = .seconds(8)
    public var seedReportInterval: Duration = .seconds(60)

    /// `push_copies`: custodians asked at once to take a copy of each item this node originates
    /// (HYBRID push-to-2, MeshNode+SpotSafety.swift; 0 turns it off).
    public var pushCopies = 2
    /// An ephemeral node's send folders are snapshotted and rescanned at least this often.
    public static let ephemeralCadence: Duration = .seconds(5)
    /// `shutdown_deadline`: how long `finalSync` (SIGTERM) waits for items at risk to become safe.
    public var shutdownDeadline: Duration = .seconds(25)

    /// The configured part of this node's facts: `roles`, `ephemeral`, its NFS group and
    /// whether `exclude_from_sync` names it.
    public struct OwnFacts: Sendable, Equatable {
        public var roles: [String] = ["node"]
        public var ephemeral = false
        public var nfsGroup = ""
        public var excluded = false
        public init(roles: [String] = ["node"], ephemeral: Bool = false, nfsGroup: String = "", excluded: Bool = false) {
            self.roles = roles
            self.ephemeral = ephemeral
            self.nfsGroup = nfsGroup
            self.excluded = excluded
        }
    }

    public init(listen: PeerAddress, advertise: PeerAddress? = nil, join: [PeerAddress] = [], gossip: GossipConfig = GossipConfig(),
                admission: AdmissionPolicy = AdmissionPolicy(), credential: [UInt8] = []) {
        self.listen = listen
        self.advertise = advertise
        self.join = join
        self.gossip = gossip
        self.admission = admission
        self.credential = credential
    }
}

/// Counters of a running node that are not the gossip core's own.
public struct RuntimeCounters: Sendable, Equatable {
    /// Inputs dropped, by reason (gossip rejections, session failures, stream errors).
    public var rejected: [String: UInt64] = [:]
    public var sessionsOpened: UInt64 = 0
    public var sessionsClosed: UInt64 = 0
    public var datagramsSent: UInt64 = 0
    public var datagramsReceived: UInt64 = 0
    public var datagramSendErrors: UInt64 = 0
    public var gossipOverSession: UInt64 = 0
    public var persistErrors: UInt64 = 0
    /// Sessions opened ahead of a predicted reset, replacing one that then drained.
    public var successorSessions: UInt64 = 0
    /// Sessions established, by how the stream was made (direct, ssh, socks5, inbound).
    public var sessionsEstablished: [String: UInt64] = [:]
    /// Sessions established since start, by cipher suite (`aes-256-gcm`, `ssh-tunnel`...).
    public var sessionsByCipher: [String: UInt64] = [:]
    public var forks: UInt64 = 0
}

/// The libuv shell around `GossipNode`: sockets, sessions, timers and persistence.
///
/// Everything here runs on `loop`'s thread. Other threads talk to a node only through
/// `loop.post`/`loop.execute` (the control server, signal handling and the CLI's `run`
/// do exactly that), so the node needs no locks.
public final class MeshNode: @unchecked Sendable {
    // @unchecked: loop-confined; see the type's documentation.
    public let loop: EventLoop
    public let store: Store
    public let identity: NodeIdentity
    public let options: MeshNodeOptions
    public let logger: Logger
    let verifier = Ed25519Verifier()

    public internal(set) var gossip: GossipNode!
    public internal(set) var runtime = RuntimeCounters()
    public private(set) var boundAddress: PeerAddress!
    public let startedAt: Instant

    private var sockets: NodeSockets?
    private var udp: UDPSocket? { sockets?.udp }
    var timers: [TimerID: LoopTimer] = [:]
    private var housekeeping: LoopTimer?
    var frameCounters = FrameCounters()

    /// Established sessions by peer identity.
    var sessions: [NodeID: PeerSession] = [:]
    public var sessionCount: Int { allSessions.count }
    /// Kernel-level UDP counters (oversized datagrams are dropped here, before gossip sees them).
    public var udpStats: UDPSocket.Stats? { udp?.stats }
    /// Stream-level counters of every session (oversized frames, idle timeouts, ...).
    public var streamCounters: FrameCounters { frameCounters }
    /// Every open session, established or not.
    var allSessions: [ObjectIdentifier: PeerSession] = [:]
    /// Outbound sessions still in their handshake, by the address dialled.
    var dialing: [PeerAddress: PeerSession] = [:]
    /// Sessions replaced by a deliberately opened successor: they finish what is in flight
    /// and are closed cleanly shortly after (`sessionDrainTimeout`).
    var draining: [ObjectIdentifier: Instant] = [:]
    /// What this node has learned about each peer's path (connection lifetime, throughput).
    public internal(set) var paths: [NodeID: PathModel] = [:]
    var successorWanted: Set<NodeID> = []
    /// The last incarnation seen of each member.
    var incarnationOf: [NodeID: UInt64] = [:]
    var lastMessage: [ObjectIdentifier: Instant] = [:]

    var addressOfNode: [NodeID: PeerAddress] = [:]
    var nameOfNode: [NodeID: String] = [:]
    /// `hosts` entries that name the address they describe.
    var hostsByAddress: [PeerAddress: HostConfig] = [:]
    var nodeAtAddress: [PeerAddress: NodeID] = [:]
    private var udpHeard: [PeerAddress: Instant] = [:]
    /// Host names of peers and seeds, resolved (for sending datagrams, and for matching a seed
    /// named by host name to the member at its address).
    private(set) var resolved: [String: SocketAddress] = [:]
    private var resolving: Set<String> = []
    var rejectLog: LogThrottle<String>
    /// Who sent the last input refused on admission from each address, and the names of refused
    /// nodes (MeshNode+Seeds.swift): for log lines that name them.
    var refusedIdentity: [PeerAddress: RefusedIdentity] = [:]
    var refusedNames: [NodeID: String] = [:]
    /// The configured seeds and which of them are not joined yet.
    var seedWatch: SeedWatch
    private var trustPolicy: TrustPolicy?
    private var lastRevalidation = Instant.zero
    var lastCompactionCheck = Instant.zero
    static let revalidateIntervalNs: Int64 = 60_000_000_000
    var stopping = false
    /// Messages (type, body) waiting for a connect to finish, by the address dialled.
    var connecting: [PeerAddress: [(UInt8, [UInt8])]] = [:]
    static let maxQueuedWhileConnecting = 256

    /// What this node keeps (the catalog of names and the keep policy; docs/SYNC.md).
    public internal(set) var keeper: Keeper
    /// Who holds what, and every node's stated facts (PROTOCOL §4.6, §4.7), from the entries held.
    public internal(set) var holdings: Holdings
    /// This node's own holder records and facts, as they are being written (MeshNode+Holdings.swift).
    var holdingsWriter = HoldingsWriterState()
    /// What placement decided about fetching (MeshNode+Placement.swift).
    var placementState = PlacementState()
    var policyAgreement = PolicyAgreementState()
    /// Push-to-2 as a custodian (MeshNode+Custody.swift) and as an origin, with the spot outbox
    /// (MeshNode+SpotSafety.swift).
    var custody = CustodyState()
    var spot = SpotState()

    /// The chunk exchange (docs/PROTOCOL.md §9); nil until `start` wires it.
    public internal(set) var blobs: BlobService?
    /// The watched folders (MeshNode+Folders.swift); nil when none are configured.
    public internal(set) var folders: FolderService?
    /// Garbage collection (MeshNode+GC.swift).
    var collector: NodeCollector?

    /// Metrics, health state and the HTTP server of `/metrics` and `/health` (MeshNode+Metrics.swift).
    public let observability = NodeObservability()

    /// Opens sockets and starts gossip. Call on the loop thread (e.g. inside `loop.execute`).
    public init(loop: EventLoop, store: Store, identity: NodeIdentity, options: MeshNodeOptions, logger: Logger) throws(MeshError) {
        loop.assertInLoop("MeshNode.init")
        self.loop = loop
        self.store = store
        self.identity = identity
        self.options = options
        self.logger = logger
        startedAt = Self.now()

        rejectLog = LogThrottle(interval: options.rejectLogInterval)
        for h in options.hosts.values {
            if let a = h.address { hostsByAddress[PeerAddress(host: a.host, port: a.port)] = h }
        }
        let sockets = try NodeSockets.bind(loop: loop, listen: Endpoint(host: options.listen.host, port: options.listen.port),
                                           maxDatagramBytes: options.gossip.maxDatagramBytes)
        self.sockets = sockets
        let port = sockets.localAddress.port
        boundAddress = PeerAddress(host: options.listen.host, port: port)
        var advertise = options.advertise ?? boundAddress!
        if options.advertise == nil && (advertise.host == "0.0.0.0" || advertise.host == "::") {
            advertise.host = "127.0.0.1"
            logger.warning("listening on a wildcard address without `advertise`; peers will be told 127.0.0.1:\(port)")
        }
        if advertise.port == 0 { advertise.port = port }
        // The gossip core ignores its own address among the seeds; so does the report of them.
        let ownAddresses = [advertise, boundAddress!]
        seedWatch = SeedWatch(seeds: options.join.filter { !ownAddresses.contains($0) }, startedAt: startedAt)

        var restore = GossipDurableState()
        restore.lastIncarnation = (try? store.incarnation()) ?? 0
        restore.entries = (try? store.allEntries()) ?? []
        restore.entriesVerified = true  // the Store checked every signature before storing it
        keeper = Keeper(policy: options.keep, entries: restore.entries, nowMs: WallClock.nowMs(),
                        isComplete: { (try? store.isComplete($0)) == true })
        holdings = Holdings(restore.entries)
        restore.forks = ((try? store.forks()) ?? []).compactMap { f in
            guard let a = f.firstEntry, let b = f.secondEntry else { return nil }
            return (a, b)
        }
        restore.knownPeers = ((try? store.peers()) ?? []).compactMap { p in
            guard let addr = PeerAddress(p.address), p.nodeID != identity.nodeID, p.state != "left" else { return nil }
            return MemberSnapshot(restoring: p.nodeID, address: addr, incarnation: p.incarnation, name: p.name, role: p.role,
                                  credential: p.credential)
        }
        var gcfg = options.gossip
        gcfg.credential = options.credential
        for (a, h) in hostsByAddress where h.route != .direct { gcfg.streamOnlyPeers.insert(a) }
        let verifier = self.verifier
        // One admission rule for gossip members and for session handshakes.
        let trust = TrustPolicy(refusal: Self.admissionRefusal(options.admission, verifier))
        trustPolicy = trust
        let seed = options.randomSeed ?? Self.osRandomSeed()
        gossip = GossipNode(config: gcfg, signer: identity, verifier: verifier, trust: trust, address: advertise,
                            seed: seed, restore: restore, now: startedAt)

        try sockets.udp.startReceiving { [unowned self] bytes, from in self.datagramArrived(bytes, from: from) }
        sockets.tcp.onAccept = { [unowned self] stream in self.accepted(stream) }
        let hk = try LoopTimer(loop: loop) { [unowned self] in self.sweep() }
        hk.start(after: .seconds(5), repeating: .seconds(5))
        housekeeping = hk

        // Members restored from the store start out alive without a transition: learn their addresses now.
        for m in gossip.memberSnapshots() where !m.isSelf {
            addressOfNode[m.node] = m.address
            nodeAtAddress[m.address] = m.node
            if !m.name.isEmpty { nameOfNode[m.node] = m.name }
        }
        do {
            blobs = try BlobService(node: self, config: options.blob, dataDir: store.dataDir, logger: logger)
            try startFolders()
            collector = try NodeCollector(node: self)
        } catch {
            closeEverything()
            throw error
        }
        apply(gossip.start(seeds: options.join, now: Self.now()))
        refreshDiskCap()
        startHoldings()
        startSpotSafety()
        logger.info("node started", metadata: ["id": "\(identity.nodeID.short)", "listen": "\(boundAddress!)", "advertise": "\(advertise)"])
    }

    deinit {
        precondition(sockets == nil, "MeshNode deallocated without stop()")
    }

    static func now() -> Instant { Instant(nanoseconds: Int64(EventLoop.monotonicNanoseconds)) }

    static func osRandomSeed() -> UInt64 {
        var g = SystemRandomNumberGenerator()
        return g.next()
    }

    // MARK: - Inputs

    /// A local `put` finished: announce the entry (HYBRID push).
    public func announce(_ entry: ManifestEntry) {
        loop.assertInLoop("MeshNode.announce")
        guard !stopping else { return }
        keep(entry)
        apply(gossip.onLocalEntry(entry, now: Self.now()))
        spotOriginated(entry)
    }

    /// Leaves gracefully: tells peers, ends every session cleanly, gives the messages
    /// `flushDelay` to go out (and the clean closes up to `closeWait` more to be answered), then
    /// closes every handle and calls `completion` (on the loop).
    public func stop(flushDelay: Duration = .milliseconds(300), closeWait: Duration = .seconds(2),
                     completion: @escaping () -> Void) {
        loop.assertInLoop("MeshNode.stop")
        guard !stopping else { return }
        stopping = true
        apply(gossip.leave(now: Self.now()))
        // Every established session ends cleanly (PROTOCOL §8.4), after the leave that may
        // still be going out on it; one still in its handshake is closed with everything below.
        for s in allSessions.values where s.established { s.shutdown() }
        let giveUpAt = Self.now().advanced(byNanoseconds: Self.nanos(flushDelay) + Self.nanos(closeWait))
        do {
            let t = try LoopTimer(loop: loop)
            t.onFire = { [unowned self, t] in
                // A peer slow to answer our `close` (a loaded host) would otherwise see its
                // connection reset, not closed: wait a little for the answers.
                if Self.now() < giveUpAt, self.allSessions.values.contains(where: { $0.isClosing && $0.isOpen }) {
                    return t.start(after: .milliseconds(50))
                }
                t.close()
                self.closeEverything()
                completion()
            }
            t.start(after: flushDelay)
        } catch {
            closeEverything()
            completion()
        }
    }

    /// Closes every handle at once, without telling peers (used after `stop`'s flush, and on fatal errors).
    public func closeEverything() {
        stopFolders()
        stopHoldings()
        stopPlacement()
        stopSpotSafety()
        collector?.close()
        collector = nil
        observability.close()
        blobs?.close()
        blobs = nil
        for t in timers.values { t.close() }
        timers = [:]
        housekeeping?.close()
        housekeeping = nil
        for s in Array(allSessions.values) { s.close() }
        allSessions = [:]
        sessions = [:]
        dialing = [:]
        sockets?.close()
        sockets = nil
    }

    private func datagramArrived(_ bytes: UnsafeRawBufferPointer, from: SocketAddress) {
        guard !stopping else { return }
        runtime.datagramsReceived += 1
        let addr = PeerAddress(host: from.host, port: from.port)
        let now = Self.now()
        udpHeard[addr] = now
        receiveGossip(Array(bytes), from: addr, frame: false, now: now)
    }

    func frameLimits() -> FrameLimits {
        // The protocol's timers (§8.1: a keepalive after 2 s of sending nothing, closed after 8 s
        // of receiving nothing): a dead connection (a silently dropping middlebox, a vanished
        // host) is noticed within seconds, and its work moves elsewhere.
        FrameLimits(maxFrameBytes: 16 << 20, maxWriteQueueBytes: 64 << 20)
    }

    func send(_ bytes: [UInt8], to address: PeerAddress, via: Transport) {
        let now = Self.now()
        let node = nodeAtAddress[address]
        let session = node.flatMap { sessions[$0] }
        let useSession: Bool
        switch via {
        case .stream:
            useSession = true
        case .datagram where route(to: address).route != .direct:
            useSession = true  // UDP does not pass SSH or SOCKS5 tunnels
        case .datagram:
            if let session, session.established {
                let heard = udpHeard[address]
                let silent = heard.map { now - $0 > Self.nanos(options.udpSilenceBeforeStream) } ?? true
                useSession = silent && now - session.openedAt > 2_000_000_000
            } else {
                useSession = false
            }
        }
        if useSession {
            sendOverStream(bytes, to: address)
        } else {
            sendDatagram(bytes, to: address)
        }
    }

    private func sendDatagram(_ bytes: [UInt8], to address: PeerAddress) {
        guard let udp else { return }
        let target: SocketAddress
        if let lit = SocketAddress(ip: address.host, port: address.port) {
            target = lit
        } else if let r = resolved[address.host] {
            target = SocketAddress(ip: r.host, port: address.port) ?? r
        } else {
            resolve(address.host)
            runtime.datagramSendErrors += 1
            return
        }
        do {
            try udp.send(bytes, to: target)
            runtime.datagramsSent += 1
        } catch {
            runtime.datagramSendErrors += 1
        }
    }

    private func resolve(_ host: String) {
        guard !resolving.contains(host) else { return }
        resolving.insert(host)
        DNSResolver.resolve(loop: loop, host: host, port: 0) { [weak self] r in
            guard let self else { return }
            self.resolving.remove(host)
            if case .success(let addrs) = r, let a = addrs.first { self.resolved[host] = a }
        }
    }

    func setTimer(_ id: TimerID, at: Instant) {
        let timer: LoopTimer
        if let t = timers[id] {
            timer = t
        } else {
            guard let t = try? LoopTimer(loop: loop) else { return }
            t.onFire = { [unowned self] in
                guard !self.stopping else { return }
                self.apply(self.gossip.onTimer(id, now: Self.now()))
            }
            timers[id] = t
            timer = t
        }
        let delayNs = max(0, at - Self.now())
        timer.start(after: .nanoseconds(delayNs))
    }

    private func sweep() {
        let now = Self.now()
        refreshKeeper()
        placementHousekeeping(now: now)
        holdingsHousekeeping(now: now)
        custodyHousekeeping(now: now)
        compactIfDue(now: now)
        seedHousekeeping(now: now)
        // Certificates expire while their holders are members: re-check everyone now and then.
        if now - lastRevalidation > Self.revalidateIntervalNs, let trustPolicy {
            lastRevalidation = now
            apply(gossip.revalidate(trust: trustPolicy, now: now))
        }
        // Drained and idle sessions end cleanly (PROTOCOL §8.4), so that the peer does not take
        // the end for its path resetting connections.
        for (key, since) in draining where now - since > Self.nanos(options.sessionDrainTimeout) {
            allSessions[key]?.shutdown()
        }
        let idle = Self.nanos(options.sessionIdleTimeout)
        for (key, s) in allSessions where now - (lastMessage[key] ?? s.openedAt) > idle {
            if let p = s.peer, let a = addressOfNode[p], options.gossip.streamOnlyPeers.contains(a) { continue }
            s.shutdown()
        }
        let udpCutoff = Self.nanos(options.udpSilenceBeforeStream) * 4
        udpHeard = udpHeard.filter { now - $0.value < udpCutoff }
    }

    static func nanos(_ d: Duration) -> Int64 {
        let (s, a) = d.components
        return s * 1_000_000_000 + a / 1_000_000_000
    }
}
