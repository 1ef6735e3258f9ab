extension Message {
    /// The member records this message carries (`ping`, `ack`, `ping-req`, `join`, `member-sync`).
    public var memberUpdates: [MemberUpdate] { GossipNode.updates(in: self) }
}

extension GossipNode {
    // MARK: - Receiving

    mutating func reject(_ reason: RejectReason, from: PeerAddress, out: inout [Directive]) {
        counters.rejected[reason, default: 0] += 1
        out.append(.rejected(reason, from: from))
    }

    mutating func receive(_ bytes: [UInt8], from: PeerAddress, now: Instant, out: inout [Directive]) {
        counters.messagesReceived += 1
        counters.bytesReceived += UInt64(bytes.count)
        guard !hasLeft else { return }
        // Decode first (cheap, total), refuse what would be refused anyway, and only then
        // pay for the signature check (docs/PROTOCOL.md §5.2).
        let env: Envelope
        switch Envelope.decodeUnverified(bytes) {
        case .success(let e): env = e
        case .failure(.unsupportedVersion): reject(.unsupportedVersion, from: from, out: &out); return
        case .failure: reject(.malformed, from: from, out: &out); return
        }
        guard env.sender != id else { reject(.fromSelf, from: from, out: &out); return }
        var introduction: MemberUpdate? = nil
        if members[env.sender] == nil {
            // An unknown sender must introduce itself: its own alive record, with its credential.
            guard let rec = Self.updates(in: env.message).first(where: { $0.node == env.sender && $0.state == .alive }) else {
                reject(.unknownSender, from: from, out: &out)
                return
            }
            if let why = trust.refusal(rec.node, rec.credential) { reject(RejectReason(why), from: from, out: &out); return }
            introduction = rec
        }
        guard Envelope.verifySignature(bytes, sender: env.sender, verifier: verifier) else {
            reject(.badSignature, from: from, out: &out)
            return
        }
        if let rec = introduction {
            guard admit(rec, from: from, now: now, out: &out) else { return }
        }
        guard replayCheck(env.sender, incarnation: env.incarnation, counter: env.counter) else {
            reject(.replayed, from: from, out: &out)
            return
        }
        let s = env.sender
        if introduction == nil, let own = Self.updates(in: env.message).first(where: { $0.node == s && $0.state == .alive }),
           let m = members[s], m.state != .alive || !m.hasFields(of: own) {
            // The sender's own alive record first when it is news: a refutation of our suspicion
            // (gossiped on, as any newer record), or new fields (a node restarted on a new
            // address). Implicit liveness (below) must not take its incarnation without them.
            apply(own, fromSync: false, from: from, now: now, out: &out)
        }
        var isJoin = false
        if case .join = env.message { isJoin = true }
        heardFrom(s, incarnation: env.incarnation, isJoin: isJoin, now: now, out: &out)
        switch env.message {
        case let .ping(seq, target, ups, ads):
            // Meant for whoever listened at this address before us: not answered, and its
            // records and adverts are not applied (the envelope itself still counted above).
            guard target == id else { reject(.wrongTarget, from: from, out: &out); return }
            apply(ups, fromSync: false, from: from, now: now, out: &out, sender: s)
            onAdverts(ads, from: s, now: now, out: &out)
            replyAck(seq: seq, to: s, now: now, out: &out)
        case let .ack(seq, ups, ads):
            apply(ups, fromSync: false, from: from, now: now, out: &out, sender: s)
            onAdverts(ads, from: s, now: now, out: &out)
            onAck(seq: seq, from: s, now: now, out: &out)
        case let .pingReq(seq, target, addr, ups):
            apply(ups, fromSync: false, from: from, now: now, out: &out, sender: s)
            onPingReq(seq: seq, target: target, address: addr, requester: s, now: now, out: &out)
        case let .nack(seq):
            if probe?.seq == seq { probe!.nacks += 1 }
        case let .join(ups):
            apply(ups, fromSync: false, from: from, now: now, out: &out, sender: s)
            sendMemberList(to: s, wantReply: false, now: now, out: &out)
        case let .memberSync(wantReply, ups):
            apply(ups, fromSync: true, from: from, now: now, out: &out, sender: s)
            if wantReply { sendMemberList(to: s, wantReply: false, now: now, out: &out) }
            if ups.count > 1, members[s].map({ now - $0.lastExchange >= config.probeIntervalMs * 1_000_000 }) == true {
                // A full list (join answer or push-pull): reconcile the manifests too.
                sendDigest(to: s, now: now, out: &out)
            }
        case let .entries(treePush, es):
            for e in es { onEntry(e, from: s, fromAddress: from, treePush: treePush, now: now, out: &out) }
        case let .digest(d):
            onDigest(d, from: s, now: now, out: &out)
        case let .vector(v):
            onVector(v, from: s, now: now, out: &out)
        case let .pull(ranges):
            onPull(ranges, from: s, now: now, out: &out)
        }
    }

    static func updates(in m: Message) -> [MemberUpdate] {
        switch m {
        case let .ping(_, _, u, _), let .ack(_, u, _), let .pingReq(_, _, _, u), let .join(u), let .memberSync(_, u): return u
        default: return []
        }
    }

    /// Anti-replay: (incarnation, counter) must be new, within a sliding window of
    /// `replayWindow` counters (RFC 4303 §3.4.3 style bitmap, at most 64).
    mutating func replayCheck(_ s: NodeID, incarnation inc: UInt64, counter c: UInt64) -> Bool {
        guard var m = members[s] else { return false }
        defer { members[s] = m }
        if inc < m.replayIncarnation || inc < m.incarnation { return false }
        if inc > m.replayIncarnation {
            m.replayIncarnation = inc
            m.replayTop = c
            m.replayBits = 1
            return true
        }
        let window = UInt64(min(64, max(1, config.replayWindow)))
        if c > m.replayTop {
            let shift = c - m.replayTop
            m.replayBits = shift >= 64 ? 1 : (m.replayBits << shift) | 1
            m.replayTop = c
            return true
        }
        let diff = m.replayTop - c
        guard diff < window else { return false }
        let bit: UInt64 = 1 << diff
        if m.replayBits & bit != 0 { return false }
        m.replayBits |= bit
        return true
    }

    /// A valid message from `s`: it is alive at least at `inc`.
    mutating func heardFrom(_ s: NodeID, incarnation inc: UInt64, isJoin: Bool, now: Instant, out: inout [Directive]) {
        guard var m = members[s] else { return }
        let wasDown = m.state != .alive
        m.lastHeard = now
        if !isJoin { m.knowsUs = true; m.heardThisRun = true }
        members[s] = m
        if inc > m.incarnation {
            // Signed by the member itself: it is alive at a newer incarnation. Nothing is
            // gossiped for it: we hold no record of that incarnation (its own alive record,
            // which it spreads itself, carries the address and the rest).
            setState(s, .alive, incarnation: inc, now: now, out: &out)
        }
        if wasDown, now - members[s]!.lastExchange >= Int64(config.probeIntervalMs) * 1_000_000 {
            // Heal at once instead of waiting for the next anti-entropy round.
            sendDigest(to: s, now: now, out: &out)
        }
    }

    /// Admits a new member from its alive record, if the trust policy allows (a refusal is
    /// counted under the policy's reason).
    @discardableResult
    mutating func admit(_ u: MemberUpdate, from: PeerAddress, now: Instant, out: inout [Directive]) -> Bool {
        guard u.state == .alive, let addr = u.address, u.node != id else { return false }
        guard members.count < config.maxMembers else {
            reject(.tooManyMembers, from: from, out: &out)
            return false
        }
        if let why = trust.refusal(u.node, u.credential) {
            reject(RejectReason(why), from: from, out: &out)
            return false
        }
        let m = Member(id: u.node, address: addr, state: .alive, incarnation: u.incarnation, fieldsIncarnation: u.incarnation,
                       name: u.name, role: u.role, credential: u.credential, streamOnly: u.streamOnly, stateSince: now)
        members[u.node] = m
        memberHashOthers ^= Self.memberHashTerm(u.node, .alive)
        addressIndex[addr] = u.node
        aliveCount += 1
        aliveSortedCache = nil
        insertIntoProbeOrder(u.node)
        updates.enqueue(u)
        out.append(.membershipChanged(MemberTransition(node: u.node, from: nil, to: .alive, incarnation: u.incarnation, address: addr)))
        return true
    }

    mutating func apply(_ ups: [MemberUpdate], fromSync: Bool, from: PeerAddress, now: Instant, out: inout [Directive],
                        sender: NodeID? = nil) {
        var corrections = [MemberUpdate]()
        var size = 0
        for u in ups {
            apply(u, fromSync: fromSync, from: from, now: now, out: &out)
            // The sender accuses a member we know alive at a newer incarnation: it missed the
            // refutation. Correct it directly instead of letting its suspicion run out.
            if sender != nil, u.state == .suspect || u.state == .dead, u.node != id, let m = members[u.node],
               m.state == .alive, m.fieldsIncarnation > u.incarnation {
                let c = aliveUpdate(of: m)
                if size + c.encodedSize <= datagramPayloadBudget - 8 { corrections.append(c); size += c.encodedSize }
            }
        }
        if let s = sender, !corrections.isEmpty, members[s] != nil {
            send(.memberSync(wantReply: false, updates: corrections), toMember: s, now: now, out: &out)
        }
    }

    /// SWIM's update rules, with memberlist's merge rule for full lists (a remote
    /// `dead` becomes a local `suspect`, so a healed partition does not kill anyone).
    mutating func apply(_ u: MemberUpdate, fromSync: Bool, from: PeerAddress, now: Instant, out: inout [Directive]) {
        if u.node == id {
            switch u.state {
            case .alive:
                if u.incarnation > incarnation { refute(above: u.incarnation, out: &out) }
            case .suspect, .dead, .left:
                if u.incarnation >= incarnation && !hasLeft {
                    refute(above: u.incarnation, out: &out)
                } else if !hasLeft && updates.pending(for: id) == nil {
                    // A stale accusation: whoever holds it missed our last refutation. Re-announce.
                    updates.enqueue(selfUpdate())
                }
            }
            return
        }
        guard let m = members[u.node] else {
            if u.state == .alive { admit(u, from: from, now: now, out: &out) }
            return
        }
        switch u.state {
        case .alive:
            guard let addr = u.address else { return }
            let newer = u.incarnation > m.incarnation
            // Implicit liveness may have raised the incarnation without a record: this record's
            // fields are then newer than ours, though its incarnation is not.
            let newerFields = u.incarnation == m.incarnation && u.incarnation > m.fieldsIncarnation
            guard newer || newerFields else { return }
            if newerFields && m.hasFields(of: u) {
                // Confirms what we hold, at the incarnation implicit liveness gave us. Gossiped on
                // (it is the member's own news: a refutation) unless our fields were only
                // restored from storage (then all members restarting at once would flood).
                members[u.node]!.fieldsIncarnation = u.incarnation
                if m.fieldsIncarnation != 0 && m.state == .alive { updates.enqueue(u) }
                return
            }
            if let why = trust.refusal(u.node, u.credential) {
                reject(RejectReason(why), from: from, out: &out)
                return
            }
            var n = m
            if n.address != addr {
                if addressIndex[n.address] == n.id { addressIndex[n.address] = nil }
                addressIndex[addr] = n.id
                n.address = addr
            }
            n.name = u.name; n.role = u.role; n.credential = u.credential; n.streamOnly = u.streamOnly
            n.fieldsIncarnation = u.incarnation
            members[u.node] = n
            if newer {
                setState(u.node, .alive, incarnation: u.incarnation, now: now, out: &out)
                updates.enqueue(u)
            } else {
                // Same incarnation: the state stays (a suspect or dead member refutes at a higher
                // one, now that answers reach it), and so does what we gossip about a down member.
                // The shell is told: its address maps and stored member list follow the fields.
                out.append(.membershipChanged(MemberTransition(node: n.id, from: n.state, to: n.state, incarnation: n.incarnation,
                                                               address: addr)))
                if n.state == .alive { updates.enqueue(u) }
            }
        case .suspect:
            suspectUpdate(u, m: m, now: now, out: &out)
        case .dead:
            if fromSync {
                var s = u
                s.state = .suspect
                suspectUpdate(s, m: m, now: now, out: &out)
            } else if (m.state == .alive || m.state == .suspect) && u.incarnation >= m.incarnation {
                setState(u.node, .dead, incarnation: u.incarnation, now: now, out: &out)
                updates.enqueue(u)
            } else if m.state == .dead && u.incarnation > m.incarnation {
                members[u.node]!.incarnation = u.incarnation
            }
        case .left:
            if m.state != .left && u.incarnation >= m.incarnation {
                setState(u.node, .left, incarnation: u.incarnation, now: now, out: &out)
                updates.enqueue(u)
            }
        }
    }

    mutating func suspectUpdate(_ u: MemberUpdate, m: Member, now: Instant, out: inout [Directive]) {
        let accuser = u.accuser ?? u.node
        if m.state == .alive && u.incarnation >= m.incarnation {
            setState(u.node, .suspect, incarnation: u.incarnation, now: now, out: &out, accuser: accuser)
            updates.enqueue(u)
            if probeSoon.count < 16 && !probeSoon.contains(u.node) { probeSoon.append(u.node) }
        } else if m.state == .suspect && u.incarnation >= m.incarnation {
            if u.incarnation > m.incarnation { members[u.node]!.incarnation = u.incarnation }
            if confirmSuspicion(u.node, by: accuser, now: now, out: &out) { updates.enqueue(u) }
        }
    }

    /// Someone says this node is suspect, dead or left at `inc`: take a higher incarnation.
    mutating func refute(above inc: UInt64, out: inout [Directive]) {
        incarnation = max(incarnation, inc) + 1
        counter = 0  // the message counter restarts at 1 with each incarnation (§5.3)
        counters.refutations += 1
        localHealth = min(config.maxLocalHealth, localHealth + 1)
        out.append(.persistIncarnation(incarnation))
        updates.enqueue(selfUpdate())
    }

    func selfUpdate() -> MemberUpdate {
        MemberUpdate(state: .alive, node: id, incarnation: incarnation, address: address,
                     streamOnly: config.advertiseStreamOnly, name: config.name, role: config.role,
                     credential: config.credential)
    }

    /// The alive record we hold about `m`, at the incarnation it came with: never a record
    /// made up from an incarnation implicit liveness gave us and fields of an older one (it
    /// would override the member's own announcement of a new address wherever it arrived first).
    func aliveUpdate(of m: Member) -> MemberUpdate {
        MemberUpdate(state: .alive, node: m.id, incarnation: m.fieldsIncarnation, address: m.address, streamOnly: m.streamOnly,
                     name: m.name, role: m.role, credential: m.credential)
    }

    /// Moves a member to a new state and reports the transition.
    mutating func setState(_ nid: NodeID, _ st: MemberState, incarnation inc: UInt64, now: Instant,
                           out: inout [Directive], accuser: NodeID? = nil) {
        guard var m = members[nid] else { return }
        let old = m.state, oldIncarnation = m.incarnation
        m.incarnation = max(m.incarnation, inc)
        if old != st {
            m.state = st
            memberHashOthers ^= Self.memberHashTerm(nid, old) ^ Self.memberHashTerm(nid, st)
            m.stateSince = now
            if old == .alive { aliveCount -= 1; aliveSortedCache = nil }
            if st == .alive { aliveCount += 1; aliveSortedCache = nil }
            if old == .suspect { suspects.remove(nid); m.suspicion = nil }
            if st == .suspect {
                suspects.insert(nid)
                counters.suspicionsRaised += 1
                let c = 0
                let t = config.suspicionTimeoutMs(members: members.count + 1, confirmations: c)
                m.suspicion = Suspicion(start: now, confirmers: [accuser ?? id], deadline: now.advanced(byMs: t))
            }
            if st == .dead || st == .left { downMembers.insert(nid) } else { downMembers.remove(nid) }
            if st == .alive || st == .suspect, old == .dead || old == .left { insertIntoProbeOrder(nid) }
            members[nid] = m
            out.append(.membershipChanged(MemberTransition(node: nid, from: old, to: st, incarnation: m.incarnation, address: m.address)))
            if st == .suspect { armSuspicionTimer(out: &out) }
            if st == .alive, old == .suspect || old == .dead, now - m.lastExchange >= config.probeIntervalMs * 1_000_000 {
                // Back from suspect or dead (a healed partition, a restart): reconcile at once
                // rather than at the next anti-entropy round.
                sendDigest(to: nid, now: now, out: &out)
            }
        } else {
            members[nid] = m
            if m.incarnation > oldIncarnation {
                // Same state at a newer incarnation (a restart or a refutation): the shell
                // persists the member list from these, and learns that the peer restarted.
                out.append(.membershipChanged(MemberTransition(node: nid, from: old, to: st, incarnation: m.incarnation, address: m.address)))
            }
        }
    }

    /// Lifeguard §IV-C: an independent confirmation shortens the suspicion timeout.
    mutating func confirmSuspicion(_ nid: NodeID, by who: NodeID, now: Instant, out: inout [Directive]) -> Bool {
        guard var m = members[nid], var s = m.suspicion else { return false }
        let k = max(1, min(config.suspicionConfirmations, members.count - 1))
        guard s.confirmers.count <= k, !s.confirmers.contains(who) else { return false }
        s.confirmers.append(who)
        let t = config.suspicionTimeoutMs(members: members.count + 1, confirmations: s.confirmers.count - 1)
        s.deadline = s.start.advanced(byMs: t)
        m.suspicion = s
        members[nid] = m
        armSuspicionTimer(out: &out)
        return true
    }

    mutating func armSuspicionTimer(out: inout [Directive]) {
        var earliest: Instant? = nil
        for s in suspects {
            if let d = members[s]?.suspicion?.deadline, earliest == nil || d < earliest! { earliest = d }
        }
        if let e = earliest { out.append(.setTimer(.suspicion, at: e)) }
    }

    mutating func removeMember(_ nid: NodeID) {
        guard let m = members.removeValue(forKey: nid) else { return }
        memberHashOthers ^= Self.memberHashTerm(nid, m.state)
        if addressIndex[m.address] == nid { addressIndex[m.address] = nil }
        if m.state == .alive { aliveCount -= 1; aliveSortedCache = nil }
        suspects.remove(nid)
        downMembers.remove(nid)
    }
}
