import Gossip
import Store

// Sessions (docs/PROTOCOL.md §8): accepting and dialling them, routing messages over them,
// the successor sessions that outrun path resets, and what a session's end teaches.
extension MeshNode {
    func accepted(_ stream: TCPStream) {
        guard !stopping, allSessions.count < options.maxSessions else {
            count(.tooManySessions, peer: stream.peerDescription)
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


    func sendOverStream(_ bytes: [UInt8], to address: PeerAddress) {
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
                count(.tooManySessions, peer: "\(address)")
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

    func dial(_ address: PeerAddress) {
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
                self.count(.connectFailed, peer: "\(address)", detail: e.description)
                self.seedDialFailed(address, e.description)
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

    func register(_ s: PeerSession) {
        let key = ObjectIdentifier(s)
        allSessions[key] = s
        lastMessage[key] = Self.now()
        runtime.sessionsOpened += 1
        s.onEstablished = { [unowned self] s in self.established(s) }
        s.onMessage = { [unowned self] s, type, body in self.message(s, type: type, body: body) }
        s.onClosing = { [unowned self] s in self.sessionClosing(s) }
        s.onClose = { [unowned self] s, reason in self.sessionClosed(s, reason: reason) }
        s.start()
    }

    /// A dial to `peer` ended without a session: any successor it was to be is not coming, and
    /// the connections that died just before died with the peer, not by the path.
    func dialDidNotReach(_ peer: NodeID) {
        successorWanted.remove(peer)
        paths[peer]?.onPeerUnreachable()
    }

    func established(_ s: PeerSession) {
        guard let peer = s.peer else { return }
        if s.direction == .outbound {
            dialing[s.remote] = nil
            seedWatch.joined(s.remote)
        }
        runtime.sessionsEstablished[s.via, default: 0] += 1
        if let c = s.cipher { runtime.sessionsByCipher["\(c)", default: 0] += 1 }
        if let old = sessions[peer], old !== s, old.isOpen {
            // The newest session wins and the old one drains: it still delivers what was
            // asked on it, takes nothing new, and is closed after `sessionDrainTimeout`. This one
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

    func message(_ s: PeerSession, type: UInt8, body: ArraySlice<UInt8>) {
        guard !stopping, let peer = s.peer else { return }
        lastMessage[ObjectIdentifier(s)] = Self.now()
        if type == PeerSession.MessageType.gossip.rawValue {
            let from = addressOfNode[peer] ?? s.remote
            receiveGossip(Array(body), from: from, frame: true, now: Self.now())
        } else if BlobMessage.Tag(rawValue: type) != nil {
            blobs?.received(type: type, body: body, from: peer, session: s)
        } else if CustodyMessage.Tag(rawValue: type) != nil {
            receivedCustody(type: type, body: body, from: peer)
        } else {
            // Every other type is reserved (PROTOCOL §8.3). Counted once, when the close is reported.
            s.close(reason: .unknownMessageType(type))
        }
    }

    /// `s` started a clean close (PROTOCOL §8.4): it takes nothing new, so messages for its peer
    /// go to another open session with it (a draining one becomes current again) or a new one.
    func sessionClosing(_ s: PeerSession) {
        guard let p = s.peer, sessions[p] === s else { return }
        sessions[p] = nil
        let others = allSessions.values.filter { $0 !== s && $0.peer == p && $0.established && $0.isOpen && !$0.isClosing }
        if let next = others.max(by: { $0.openedAt < $1.openedAt }) {
            sessions[p] = next
            draining[ObjectIdentifier(next)] = nil
        }
    }

    func sessionClosed(_ s: PeerSession, reason: SessionCloseReason?) {
        let key = ObjectIdentifier(s)
        allSessions[key] = nil
        lastMessage[key] = nil
        let wasDraining = draining.removeValue(forKey: key) != nil
        runtime.sessionsClosed += 1
        if let p = s.peer, s.established, !wasDraining, !s.endedCleanly {
            // Only a stream that died under us (a reset, an end without `close`, an idle timeout, a
            // broken tunnel) teaches the path's lifetime. A clean close (PROTOCOL §8.4) was one
            // side's choice, and a protocol error we closed on is the peer's, not the path's.
            var abnormal = false
            if case .stream(let e) = reason { abnormal = e.code != .closed && e.code != .frameTooLarge }
            paths[p, default: PathModel()].onConnectionEnded(afterSeconds: Double(Self.now() - s.openedAt) / 1e9, byReset: abnormal)
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
        if !s.established, s.direction == .outbound { seedHandshakeEnded(s.remote, reason: reason) }
        if let reason, !s.endedCleanly {
            switch reason {
            case .replaced: break
            case .stream(let e) where e.code == .eof || e.code == .closed || e.code == .frameTooLarge: break
            case .session(.notAdmitted): break  // counted by its §10 reason in admitsSessionPeer
            default:
                let c = reason.counter
                count(c, peer: s.peer?.short ?? "\(s.remote)", detail: c == .other ? "\(reason.reason): \(reason.description)" : reason.description)
            }
        }
    }
}
