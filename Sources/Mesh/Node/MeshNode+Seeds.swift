// Setup mistakes that say how to fix them: a refused node is named with its id and what to add
// where; a joining node says which seeds do not answer or do not admit it (docs/RUNTIME.md).
import Gossip
import Logging

extension MeshNode {
    /// The §10 reasons a node is refused for (as opposed to a malformed or replayed input).
    static let admissionCounters: Set<RejectCounter> = [
        .untrustedKey, .revoked, .malformedCertificate, .certificateWrongSubject, .certificateUnknownAuthority,
        .certificateBadSignature, .certificateNotYetValid, .certificateExpired,
    ]

    /// Gossip bytes from `from` (a datagram, or a frame of a session): when the core refuses them
    /// on admission, first notes whose record it was, for the log line that names it.
    func receiveGossip(_ bytes: [UInt8], from: PeerAddress, frame: Bool, now: Instant) {
        let out = frame ? gossip.onFrame(bytes, from: from, now: now) : gossip.onDatagram(bytes, from: from, now: now)
        let refused = out.contains {
            if case .rejected(let r, _) = $0 { return Self.admissionCounters.contains(RejectCounter(r)) }
            return false
        }
        if refused { noteRefusedIdentity(bytes, from: from) }
        apply(out)
    }

    /// Remembers the first alive record in `bytes` that admission refuses (bounded).
    private func noteRefusedIdentity(_ bytes: [UInt8], from: PeerAddress) {
        guard case .success(let env) = Envelope.decodeUnverified(bytes) else { return }
        let refusal = Self.admissionRefusal(options.admission, verifier)
        guard let u = env.message.memberUpdates.first(where: { $0.state == .alive && refusal($0.node, $0.credential) != nil }) else { return }
        if refusedIdentity.count >= 1024 { refusedIdentity.removeAll() }
        refusedIdentity[from] = RefusedIdentity(node: u.node, name: u.name)
        if !u.name.isEmpty {
            if refusedNames.count >= 1024 { refusedNames.removeAll() }
            refusedNames[u.node] = u.name
        }
    }

    /// What to change so that `node` is admitted, in one line naming the config file.
    func admissionFix(_ reason: RejectCounter, node: NodeID) -> String {
        let file = options.configPath ?? "this node's config file (it was started without --config)"
        switch reason {
        case .untrustedKey:
            let orCert = options.admission.authorities.isEmpty ? "" : ", or give that node a certificate (`meshnode admit \(node)`)"
            return "add \(node) to trusted_keys in \(file)\(orCert), then restart this node"
        case .revoked:
            return "it is revoked in \(file) (revoked_keys or revoked_serials); remove it there if that is a mistake"
        case .certificateExpired, .certificateNotYetValid:
            return "issue that node a new certificate (`meshnode admit \(node)`), or add \(node) to trusted_keys in \(file)"
        default:
            return "check that node's certificate, or add \(node) to trusted_keys in \(file)"
        }
    }

    /// The "dropped input" log line of an admission refusal, naming the node and the fix.
    func logAdmissionRefusal(_ reason: RejectCounter, node: NodeID, name: String?, remote: String, detail: String) {
        guard let suppressed = rejectLog.admit(reason.rawValue + "|" + remote + "|" + node.description,
                                               nowMilliseconds: loop.nowMilliseconds) else { return }
        logger.warning("dropped input", metadata: [
            "reason": "\(reason.rawValue)", "peer": "\(remote)", "node": "\(node)", "name": "\(name ?? "")",
            "detail": "\(detail)", "fix": "\(admissionFix(reason, node: node))", "suppressed": "\(suppressed)",
        ])
    }

    // MARK: - Seeds

    /// Called from `sweep`: marks seeds joined, logs those due a report and probes them over TCP,
    /// whose handshake tells a seed that refuses us from one that is not there.
    func seedHousekeeping(now: Instant) {
        let alive = Set(gossip.memberSnapshots().filter { $0.state == .alive && !$0.isSelf }.map(\.node))
        for a in seedWatch.seeds.keys where !seedWatch.seeds[a]!.joined {
            // A seed named by host name: the member is at the address it resolved to.
            let at = resolved[a.host].map { PeerAddress(host: $0.host, port: a.port) } ?? a
            if let n = nodeAtAddress[a] ?? nodeAtAddress[at], alive.contains(n) { seedWatch.joined(a) }
        }
        let due = seedWatch.due(now: now, after: Self.nanos(options.seedReportAfter), interval: Self.nanos(options.seedReportInterval))
        for (a, error) in due {
            logger.warning("seed not joined", metadata: [
                "seed": "\(a)", "last_error": "\(error)",
                "fix": "check that a node runs there and that its trusted_keys (or authority_keys) admit this node, \(identity.nodeID)",
            ])
            if sessions.values.contains(where: { $0.remote == a }) || dialing[a] != nil || connecting[a] != nil { continue }
            guard allSessions.count < options.maxSessions else { continue }
            seedWatch.probing.insert(a)
            connecting[a] = []
            dial(a)
        }
    }

    /// The outcome of a probe dial to seed `a`, logged once.
    private func seedProbeFailed(_ a: PeerAddress, _ error: String) {
        guard seedWatch.probing.remove(a) != nil else { return }
        logger.warning("seed not joined", metadata: ["seed": "\(a)", "last_error": "\(error)"])
    }

    /// A dial to `address` failed before any session.
    func seedDialFailed(_ address: PeerAddress, _ error: String) {
        guard seedWatch.isSeed(address) else { return }
        seedWatch.failed(address, "cannot connect: \(error)", now: Self.now())
        seedProbeFailed(address, "cannot connect: \(error)")
    }

    /// An outbound connection to `address` ended before its session was established.
    func seedHandshakeEnded(_ address: PeerAddress, reason: SessionCloseReason?) {
        guard seedWatch.isSeed(address) else { return }
        let why: String
        switch reason {
        case .session(.notAdmitted(let n))?:
            why = "this node refuses the node there (\(n)): \(admissionFix(.untrustedKey, node: n))"
        case .stream(let e)? where e.code == .eof || e.code == .closed || e.code.rawValue == "uv.ECONNRESET":
            why = "it closed the connection during the handshake: it does not admit this node; add \(identity.nodeID) to its trusted_keys"
        case let r?:
            why = "the handshake failed: \(r.description)"
        case nil:
            why = "the connection ended during the handshake"
        }
        seedWatch.failed(address, why, now: Self.now())
        seedProbeFailed(address, why)
    }

    /// The seeds not joined, for `peers` and `status`.
    public func unjoinedSeeds() -> [UnjoinedSeed] { seedWatch.unjoined(now: Self.now()) }
}

/// Who sent an input refused on admission: its node id and the name in its record.
struct RefusedIdentity {
    var node: NodeID
    var name: String
}
