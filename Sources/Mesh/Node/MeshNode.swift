import Gossip
import Logging
import Store

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
    /// Sessions that carried no message for this long are closed.
    public var sessionIdleTimeout: Duration = .seconds(60)
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

    public private(set) var gossip: GossipNode!
    public internal(set) var runtime = RuntimeCounters()
    public private(set) var boundAddress: PeerAddress!
    public let startedAt: Instant

    private var sockets: NodeSockets?
    private var udp: UDPSocket? { sockets?.udp }
    var timers: [TimerID: LoopTimer] = [:]
    private var housekeeping: LoopTimer?
    private var frameCounters = FrameCounters()

    /// Established sessions by peer identity.
    var sessions: [NodeID: PeerSession] = [:]
    public var sessionCount: Int { allSessions.count }
    /// Kernel-level UDP counters (oversized datagrams are dropped here, before gossip sees them).
    public var udpStats: UDPSocket.Stats? { udp?.stats }
    /// Stream-level counters of every session (oversized frames, idle timeouts, ...).
    public var streamCounters: FrameCounters { frameCounters }
    /// Every open session, established or not.
    private var allSessions: [ObjectIdentifier: PeerSession] = [:]
    /// Outbound sessions still in their handshake, by the address dialled.
    private var dialing: [PeerAddress: PeerSession] = [:]
    /// Sessions replaced by a deliberately opened successor: they finish what is in flight
    /// and are closed shortly after (`drainTimeout`).
    private var draining: [ObjectIdentifier: Instant] = [:]
    /// What this node has learned about each peer's path (connection lifetime, throughput).
    public internal(set) var paths: [NodeID: PathModel] = [:]
    private var successorWanted: Set<NodeID> = []
    /// The last incarnation seen of each member.
    var incarnationOf: [NodeID: UInt64] = [:]
    static let drainTimeoutNs: Int64 = 15_000_000_000
    private var lastMessage: [ObjectIdentifier: Instant] = [:]

    var addressOfNode: [NodeID: PeerAddress] = [:]
    var nameOfNode: [NodeID: String] = [:]
    /// `hosts` entries that name the address they describe.
    private var hostsByAddress: [PeerAddress: HostConfig] = [:]
    var nodeAtAddress: [PeerAddress: NodeID] = [:]
    private var udpHeard: [PeerAddress: Instant] = [:]
    private var resolved: [String: SocketAddress] = [:]
    private var resolving: Set<String> = []
    var rejectLog: LogThrottle<String>
    private var trustPolicy: TrustPolicy?
    private var lastRevalidation = Instant.zero
    static let revalidateIntervalNs: Int64 = 60_000_000_000
    private var stopping = false

    /// The chunk exchange (docs/PROTOCOL.md §9); nil until `start` wires it.
    public internal(set) var blobs: BlobService?

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

        var restore = GossipDurableState()
        restore.lastIncarnation = (try? store.incarnation()) ?? 0
        restore.entries = ((try? store.items()) ?? []).map(\.entry)
        restore.entriesVerified = true  // the Store checked every signature before storing it
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
        } catch {
            closeEverything()
            throw error
        }
        apply(gossip.start(seeds: options.join, now: Self.now()))
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
        apply(gossip.onLocalEntry(entry, now: Self.now()))
    }

    /// Leaves gracefully: tells peers, gives the messages `flushDelay` to go out, then
    /// closes every handle and calls `completion` (on the loop).
    public func stop(flushDelay: Duration = .milliseconds(300), completion: @escaping () -> Void) {
        loop.assertInLoop("MeshNode.stop")
        guard !stopping else { return }
        stopping = true
        apply(gossip.leave(now: Self.now()))
        do {
            let t = try LoopTimer(loop: loop)
            t.onFire = { [unowned self, t] in
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
        apply(gossip.onDatagram(Array(bytes), from: addr, now: now))
    }

    // MARK: - Sessions

    private func accepted(_ stream: TCPStream) {
        guard !stopping, allSessions.count < options.maxSessions else {
            count("too_many_sessions", peer: stream.peerDescription)
            stream.close()
            return
        }
        let remote = stream.remoteAddress.map { PeerAddress(host: $0.host, port: $0.port) } ?? PeerAddress(host: "?", port: 0)
        // Accept the SSH-tunnel suite only on a connection from loopback to loopback, as
        // made by sshd on this host for an `ssh -W 127.0.0.1:PORT` (see
        // `CipherSuite.sshTunnel`); a host whose local proxies forward network traffic to
        // this port that way must say `session_encryption: always`.
        let local = stream.localAddress.map(\.host) ?? ""
        let loopback = Endpoint.isLoopback(host: remote.host) && Endpoint.isLoopback(host: local)
        let hs = SessionHandshake(role: .responder, signer: identity, verifier: verifier, credential: options.credential,
                                  tunnelSuite: options.allowSSHTunnelSuite && loopback,
                                  admit: admitFunction(remote: "\(remote)"))
        let s = PeerSession(connection: FramedConnection(stream: stream, limits: frameLimits(), counters: frameCounters),
                            direction: .inbound, remote: remote, via: "inbound", handshake: hs, now: Self.now())
        register(s)
    }

    /// Messages (type, body) waiting for a connect to finish, by the address dialled.
    private var connecting: [PeerAddress: [(UInt8, [UInt8])]] = [:]
    static let maxQueuedWhileConnecting = 256

    private func sendOverStream(_ bytes: [UInt8], to address: PeerAddress) {
        runtime.gossipOverSession += 1
        send(PeerSession.MessageType.gossip.rawValue, bytes, toAddress: address)
    }

    /// Sends one typed message to whoever listens at `address`, over the established session
    /// with that node, a session still in its handshake, or a new connection.
    /// Returns false when the message had to be dropped (session limit).
    @discardableResult
    func send(_ type: UInt8, _ body: [UInt8], toAddress address: PeerAddress) -> Bool {
        if let node = nodeAtAddress[address], let s = sessions[node] {
            s.send(type, body)
        } else if let s = dialing[address] {
            s.send(type, body)
        } else if connecting[address] != nil {
            connecting[address]!.append((type, body))
            if connecting[address]!.count > Self.maxQueuedWhileConnecting { connecting[address]!.removeFirst() }
        } else {
            guard allSessions.count < options.maxSessions else {
                count("too_many_sessions", peer: "\(address)")
                return false
            }
            connecting[address] = [(type, body)]
            dial(address)
        }
        return true
    }

    /// Sends one typed message to `node`, dialling its gossiped address if no session is up.
    @discardableResult
    func send(_ type: UInt8, _ body: [UInt8], toNode node: NodeID) -> Bool {
        if let s = sessions[node] {
            s.send(type, body)
            return true
        }
        guard let address = addressOfNode[node] else { return false }
        return send(type, body, toAddress: address)
    }

    /// The session messages to `node` currently go through (established or still in its handshake).
    func session(with node: NodeID) -> PeerSession? {
        sessions[node] ?? addressOfNode[node].flatMap { dialing[$0] }
    }

    /// Records bytes that arrived from `peer` in `seconds` (the path's throughput).
    func pathTransferred(_ peer: NodeID, bytes: Int, seconds: Double) {
        paths[peer, default: PathModel()].onTransferred(bytes: bytes, seconds: seconds)
    }

    /// How many more bytes the current session with `peer` should be asked to carry before
    /// it is likely to be reset (nil: no limit known). Opens a successor session early, so
    /// that the next requests have somewhere to go.
    func pathBudget(_ peer: NodeID) -> Int? {
        guard let s = sessions[peer], s.established, let model = paths[peer] else { return nil }
        let age = Double(Self.now() - s.openedAt) / 1e9
        if model.shouldOpenSuccessor(ageSeconds: age), !successorWanted.contains(peer), let address = addressOfNode[peer],
           dialing[address] == nil, connecting[address] == nil {
            successorWanted.insert(peer)
            connecting[address] = []
            logger.debug("opening a successor session", metadata: ["peer": "\(peer.short)", "age_s": "\(age)"])
            dial(address)
        }
        return model.workBudgetBytes(ageSeconds: age)
    }

    /// Nodes this node has an established session with.
    var connectedNodes: [NodeID] { Array(sessions.keys) }

    /// How to reach `address`: the configured route, and the endpoint to ask the route's far
    /// end for (the `hosts` entry's `address`, else the peer's advertised address).
    func route(to address: PeerAddress) -> (endpoint: Endpoint, route: HostConfig.Route) {
        let advertised = Endpoint(host: address.host, port: address.port)
        if let h = hostsByAddress[address] { return (h.address ?? advertised, h.route) }
        if let node = nodeAtAddress[address],
           let h = options.hosts["\(node)"] ?? nameOfNode[node].flatMap({ options.hosts[$0] }) {
            return (h.address ?? advertised, h.route)
        }
        return (advertised, .direct)
    }

    private func dial(_ address: PeerAddress) {
        let (endpoint, route) = route(to: address)
        let via: String
        switch route {
        case .direct: via = "direct"
        case .ssh: via = "ssh"
        case .socks5: via = "socks5"
        }
        let connected: (Result<any ByteStream, MeshError>) -> Void = { [weak self] result in
            guard let self else { return }
            let queued = self.connecting.removeValue(forKey: address) ?? []
            switch result {
            case .failure(let e):
                if let n = self.nodeAtAddress[address] {
                    self.dialDidNotReach(n)
                    self.blobs?.dialFailed(peer: n)
                }
                self.count("connect_failed", peer: "\(address)", detail: e.description)
            case .success(let stream):
                guard !self.stopping else { return stream.close() }
                // Inside our own `ssh -W` to a loopback address, ssh already protects every
                // hop but the far host's loopback: offer to skip the second cipher pass.
                let tunnel: Bool
                if case .ssh = route { tunnel = self.options.allowSSHTunnelSuite && Endpoint.isLoopback(host: endpoint.host) } else { tunnel = false }
                let hs = SessionHandshake(role: .initiator, signer: self.identity, verifier: self.verifier,
                                          credential: self.options.credential, expectedPeer: self.nodeAtAddress[address],
                                          tunnelSuite: tunnel, admit: self.admitFunction(remote: "\(address)"))
                let s = PeerSession(connection: FramedConnection(stream: stream, limits: self.frameLimits(), counters: self.frameCounters),
                                    direction: .outbound, remote: address, via: via, handshake: hs, now: Self.now())
                self.dialing[address] = s
                self.register(s)
                for (t, b) in queued { s.send(t, b) }
                if let n = self.nodeAtAddress[address] { self.blobs?.queuedRequestsSent(to: n, on: s) }
            }
        }
        if case .direct = route {
            // Leave from our own listen IP when bound to one (not a wildcard).
            let local = SocketAddress(ip: boundAddress.host, port: 0).flatMap { a in a.ip.allSatisfy { $0 == 0 } ? nil : a }
            TCPStream.connect(loop: loop, to: endpoint, from: local, timeout: .seconds(5)) { connected($0.map { $0 as any ByteStream }) }
        } else {
            StreamConnector.connect(loop: loop, to: endpoint, route: route, timeout: .seconds(10), completion: connected)
        }
    }

    private func register(_ s: PeerSession) {
        let key = ObjectIdentifier(s)
        allSessions[key] = s
        lastMessage[key] = Self.now()
        runtime.sessionsOpened += 1
        s.onEstablished = { [unowned self] s in self.established(s) }
        s.onMessage = { [unowned self] s, type, body in self.message(s, type: type, body: body) }
        s.onClose = { [unowned self] s, reason in self.sessionClosed(s, reason: reason) }
        s.start()
    }

    /// A dial to `peer` ended without a session: any successor it was to be is not coming, and
    /// the connections that died just before died with the peer, not by the path.
    private func dialDidNotReach(_ peer: NodeID) {
        successorWanted.remove(peer)
        paths[peer]?.onPeerUnreachable()
    }

    private func established(_ s: PeerSession) {
        guard let peer = s.peer else { return }
        if s.direction == .outbound { dialing[s.remote] = nil }
        runtime.sessionsEstablished[s.via, default: 0] += 1
        if let c = s.cipher { runtime.sessionsByCipher["\(c)", default: 0] += 1 }
        if let old = sessions[peer], old !== s, old.isOpen {
            // The newest session wins and the old one drains: it still delivers what was
            // asked on it, takes nothing new, and is closed after `drainTimeoutNs`. This one
            // rule serves both a successor opened ahead of a predicted reset and two ends
            // that dialled each other at once (each may keep a different session for a while;
            // messages are accepted on any session).
            draining[ObjectIdentifier(old)] = Self.now()
            if successorWanted.contains(peer) { runtime.successorSessions += 1 }
        }
        // Whether or not the old session outlived the wait, the wanted successor is here.
        successorWanted.remove(peer)
        sessions[peer] = s
        paths[peer]?.onSessionEstablished()
        blobs?.sessionEstablished(peer: peer)
        logger.debug("session up", metadata: ["peer": "\(peer.short)", "via": "\(s.via)", "dir": "\(s.direction.rawValue)"])
    }

    private func message(_ s: PeerSession, type: UInt8, body: ArraySlice<UInt8>) {
        guard !stopping, let peer = s.peer else { return }
        lastMessage[ObjectIdentifier(s)] = Self.now()
        switch PeerSession.MessageType(rawValue: type) {
        case .gossip:
            let from = addressOfNode[peer] ?? s.remote
            apply(gossip.onFrame(Array(body), from: from, now: Self.now()))
        case nil where type >= 0x10 && type <= 0x1f:
            blobs?.received(type: type, body: body, from: peer, session: s)
        case nil:
            count("unknown_message_type", peer: peer.short)
            s.close(reason: .unknownMessageType(type))
        }
    }

    private func sessionClosed(_ s: PeerSession, reason: SessionCloseReason?) {
        let key = ObjectIdentifier(s)
        allSessions[key] = nil
        lastMessage[key] = nil
        let wasDraining = draining.removeValue(forKey: key) != nil
        runtime.sessionsClosed += 1
        if let p = s.peer, s.established, !wasDraining {
            // A connection that died under us (reset, timeout, broken tunnel) teaches the path's lifetime.
            var byReset = false
            if let reason {
                switch reason {
                case .replaced: byReset = false
                case .stream(let e): byReset = e.code != .closed
                default: byReset = true
                }
            }
            paths[p, default: PathModel()].onConnectionEnded(afterSeconds: Double(Self.now() - s.openedAt) / 1e9, byReset: byReset)
        }
        if !s.established, s.direction == .outbound, let n = nodeAtAddress[s.remote] {
            // A dial that got a stream but no session: through SSH or SOCKS5 this is how a
            // refused connection at the far end shows.
            dialDidNotReach(n)
        }
        let wasCurrent = s.peer.map { sessions[$0] === s } ?? false
        if wasCurrent, let p = s.peer { sessions[p] = nil }
        blobs?.sessionClosed(s, peer: s.peer ?? nodeAtAddress[s.remote], wasCurrent: wasCurrent || s.peer == nil)
        if s.direction == .outbound, dialing[s.remote] === s { dialing[s.remote] = nil }
        if let reason {
            switch reason {
            case .replaced: break
            case .stream(let e) where e.code == .eof || e.code == .closed || e.code == .frameTooLarge: break
            case .session(.notAdmitted): break  // counted by its §10 reason in admitsSessionPeer
            default: count(reason.reason, peer: s.peer?.short ?? "\(s.remote)", detail: reason.description)
            }
        }
    }

    private func frameLimits() -> FrameLimits {
        // A keepalive every 2 s and an 8 s idle timeout: a dead connection (a silently dropping
        // middlebox, a vanished host) is noticed within seconds, and its work moves elsewhere.
        FrameLimits(maxFrameBytes: 16 << 20, maxWriteQueueBytes: 64 << 20, idleTimeout: .seconds(8), keepaliveInterval: .seconds(2))
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
        // Certificates expire while their holders are members: re-check everyone now and then.
        if now - lastRevalidation > Self.revalidateIntervalNs, let trustPolicy {
            lastRevalidation = now
            apply(gossip.revalidate(trust: trustPolicy, now: now))
        }
        for (key, since) in draining where now - since > Self.drainTimeoutNs {
            allSessions[key]?.close()
        }
        let idle = Self.nanos(options.sessionIdleTimeout)
        for (key, s) in allSessions where now - (lastMessage[key] ?? s.openedAt) > idle {
            if let p = s.peer, let a = addressOfNode[p], options.gossip.streamOnlyPeers.contains(a) { continue }
            s.close()
        }
        let udpCutoff = Self.nanos(options.udpSilenceBeforeStream) * 4
        udpHeard = udpHeard.filter { now - $0.value < udpCutoff }
    }

    static func nanos(_ d: Duration) -> Int64 {
        let (s, a) = d.components
        return s * 1_000_000_000 + a / 1_000_000_000
    }

}
