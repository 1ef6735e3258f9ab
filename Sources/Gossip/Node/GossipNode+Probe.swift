extension GossipNode {
    // MARK: - Sending

    func isStreamOnly(_ m: Member) -> Bool { m.streamOnly || streamOnlyPeers.contains(m.address) }

    /// Signs and emits one message. Datagram unless the peer is stream-only or the
    /// message is larger than a datagram.
    mutating func send(_ msg: Message, to addr: PeerAddress, streamOnly: Bool, now: Instant, out: inout [Directive]) {
        counter += 1
        let bytes = Envelope(sender: id, incarnation: incarnation, counter: counter, message: msg).encode(signer: signer)
        guard bytes.count <= config.maxFrameBytes else { return }  // callers split; never reached
        // A node that advertises itself stream-only (it sits behind a TCP-only tunnel)
        // also sends everything over streams: its datagrams would not get out either.
        let via: Transport = config.advertiseStreamOnly || streamOnly || streamOnlyPeers.contains(addr)
            || bytes.count > config.maxDatagramBytes ? .stream : .datagram
        counters.messagesSent += 1
        counters.bytesSent += UInt64(bytes.count)
        if via == .datagram { counters.datagramsSent += 1 } else { counters.framesSent += 1 }
        out.append(.send(to: addr, bytes: bytes, via: via))
    }

    mutating func send(_ msg: Message, toMember nid: NodeID, now: Instant, out: inout [Directive]) {
        guard let m = members[nid] else { return }
        if !m.knowsUs && Self.updates(in: msg).isEmpty && now - m.introducedAt >= config.probeIntervalMs * 1_000_000 {
            // The peer may not know us yet (our alive record has not reached it): introduce
            // ourselves first, or it drops what follows as from an unknown sender.
            members[nid]!.introducedAt = now
            send(.memberSync(wantReply: false, updates: [selfUpdate()]), to: m.address, streamOnly: isStreamOnly(m), now: now, out: &out)
        }
        send(msg, to: m.address, streamOnly: isStreamOnly(m), now: now, out: &out)
    }

    var datagramPayloadBudget: Int { config.maxDatagramBytes - Envelope.overheadBytes }

    /// Piggybacked membership updates for a message to `dest`: first what we believe
    /// about `dest` if it is not alive (so it can refute at once), then our own record
    /// when `dest` may not know us, then the least-sent pending updates.
    mutating func piggyback(for dest: NodeID?, budget: Int, forceSelf: Bool) -> [MemberUpdate] {
        var out = [MemberUpdate]()
        var left = budget
        if let d = dest, let m = members[d], m.state == .suspect || m.state == .dead {
            let u = MemberUpdate(state: m.state, node: d, incarnation: m.incarnation, accuser: id)
            out.append(u)
            left -= u.encodedSize
        }
        var needSelf = forceSelf
        if let d = dest, let m = members[d] { if !m.heardThisRun || m.state != .alive { needSelf = true } } else { needSelf = true }
        if needSelf {
            let s = selfUpdate()
            if s.encodedSize <= left {
                out.append(s)
                left -= s.encodedSize
            }
        }
        out += updates.take(budget: left, limit: config.retransmitLimit(members: members.count + 1))
        return out
    }

    mutating func takeAdverts() -> [EntryRef] {
        adverts.take(config.advertsPerMessage, limit: config.advertRetransmitLimit(members: members.count + 1))
    }

    mutating func replyAck(seq: UInt32, to s: NodeID, now: Instant, out: inout [Directive]) {
        let ads = takeAdverts()
        let ups = piggyback(for: s, budget: datagramPayloadBudget - 4 - 2 - 1 - ads.count * 40, forceSelf: false)
        send(.ack(seq: seq, updates: ups, adverts: ads), toMember: s, now: now, out: &out)
    }

    mutating func sendPing(seq: UInt32, target: NodeID, to addr: PeerAddress, streamOnly: Bool, now: Instant, out: inout [Directive]) {
        let ads = takeAdverts()
        let refresh = rng.below(8) == 0
        let ups = piggyback(for: target, budget: datagramPayloadBudget - 4 - 32 - 2 - 1 - ads.count * 40, forceSelf: refresh)
        send(.ping(seq: seq, target: target, updates: ups, adverts: ads), to: addr, streamOnly: streamOnly, now: now, out: &out)
    }

    mutating func sendJoins(now: Instant, out: inout [Directive]) {
        for s in seeds where addressIndex[s].flatMap({ members[$0]?.state }) != .alive {
            send(.join(updates: [selfUpdate()]), to: s, streamOnly: streamOnlyPeers.contains(s), now: now, out: &out)
        }
    }

    /// Our full member list, split into frames that fit `maxFrameBytes`.
    mutating func sendMemberList(to nid: NodeID, wantReply: Bool, now: Instant, out: inout [Directive]) {
        var recs = [selfUpdate()]
        for k in members.keys.sorted() {
            let m = members[k]!
            switch m.state {
            case .alive: recs.append(aliveUpdate(of: m))
            case .suspect:
                recs.append(aliveUpdate(of: m))
                recs.append(MemberUpdate(state: .suspect, node: k, incarnation: m.incarnation, accuser: id))
            case .dead: recs.append(MemberUpdate(state: .dead, node: k, incarnation: m.incarnation, accuser: id))
            case .left: recs.append(MemberUpdate(state: .left, node: k, incarnation: m.incarnation))
            }
        }
        counters.memberSyncs += 1
        let budget = config.maxFrameBytes - Envelope.overheadBytes - 3
        var batch = [MemberUpdate](), size = 0
        for r in recs {
            let sz = r.encodedSize
            if size + sz > budget || batch.count >= Wire.maxUpdatesPerMessage {
                send(.memberSync(wantReply: wantReply, updates: batch), toMember: nid, now: now, out: &out)
                batch = []; size = 0
            }
            batch.append(r); size += sz
        }
        if !batch.isEmpty { send(.memberSync(wantReply: wantReply, updates: batch), toMember: nid, now: now, out: &out) }
    }

    // MARK: - Probing (SWIM + Lifeguard)

    var periodMs: Int64 { config.probeIntervalMs * Int64(1 + localHealth) }
    var probeTimeoutScaledMs: Int64 { config.probeTimeoutMs * Int64(1 + localHealth) }

    mutating func insertIntoProbeOrder(_ nid: NodeID) {
        let pos = probeIndex + rng.below(max(1, probeOrder.count - probeIndex + 1))
        probeOrder.insert(nid, at: min(pos, probeOrder.count))
    }

    mutating func nextProbeTarget() -> NodeID? {
        while !probeSoon.isEmpty {
            // Suspects learned from others, oldest first: our own probe either confirms the
            // suspicion independently or delivers the accusation so the member can refute.
            let c = probeSoon.removeFirst()
            if members[c]?.state == .suspect { return c }
        }
        for _ in 0..<2 {
            while probeIndex < probeOrder.count {
                let c = probeOrder[probeIndex]
                probeIndex += 1
                if let st = members[c]?.state, st == .alive || st == .suspect { return c }
            }
            var ids = members.values.filter { $0.state == .alive || $0.state == .suspect }.map(\.id)
            ids.sort()
            ids.shuffle(using: &rng)
            probeOrder = ids
            probeIndex = 0
        }
        return nil
    }

    mutating func probeTick(now: Instant, out: inout [Directive]) {
        if var p = probe {
            // Any valid message from the target since the ping proves it alive, even if
            // the ack itself was lost or overtaken (e.g. the period was stretched by LHM).
            if !p.acked, let h = members[p.target]?.lastHeard, h > p.sentAt { p.acked = true }
            if p.acked {
                localHealth = max(0, localHealth - 1)
            } else {
                counters.failedProbes += 1
                var delta = 1
                if p.indirectSent > 0 && p.nacks < p.indirectSent { delta += 1 }
                localHealth = min(config.maxLocalHealth, localHealth + delta)
                if let m = members[p.target], m.state == .alive {
                    let u = MemberUpdate(state: .suspect, node: p.target, incarnation: m.incarnation, accuser: id)
                    setState(p.target, .suspect, incarnation: m.incarnation, now: now, out: &out, accuser: id)
                    updates.enqueue(u)
                } else if let m = members[p.target], m.state == .suspect {
                    // Our own failed probe independently confirms someone else's suspicion:
                    // count it and gossip it, so every node's timeout shrinks (Lifeguard §IV-C).
                    if confirmSuspicion(p.target, by: id, now: now, out: &out) {
                        updates.enqueue(MemberUpdate(state: .suspect, node: p.target, incarnation: m.incarnation, accuser: id))
                    }
                }
            }
            probe = nil
        }
        if let t = nextProbeTarget(), let m = members[t] {
            probeSeq &+= 1
            probe = ProbeState(target: t, seq: probeSeq, sentAt: now)
            counters.probes += 1
            sendPing(seq: probeSeq, target: t, to: m.address, streamOnly: isStreamOnly(m), now: now, out: &out)
            out.append(.setTimer(.probeTimeout, at: now.advanced(byMs: probeTimeoutScaledMs)))
        }
        out.append(.setTimer(.probe, at: now.advanced(byMs: periodMs)))
    }

    mutating func probeTimeout(now: Instant, out: inout [Directive]) {
        guard let p = probe, !p.acked, p.indirectSent == 0, let tm = members[p.target] else { return }
        let helpers = randomAlive(count: config.indirectChecks, excluding: [p.target])
        for h in helpers {
            send(.pingReq(seq: p.seq, target: p.target, address: tm.address,
                          updates: piggyback(for: h, budget: datagramPayloadBudget - 4 - 32 - 2 - 2 - PeerAddress.maxTextBytes, forceSelf: false)),
                 toMember: h, now: now, out: &out)
        }
        counters.indirectProbes += UInt64(helpers.count)
        probe!.indirectSent = helpers.count
    }

    mutating func onAck(seq: UInt32, from s: NodeID, now: Instant, out: inout [Directive]) {
        if var p = probe, p.seq == seq, !p.acked {
            p.acked = true
            probe = p
            if s == p.target {
                let sample = now - p.sentAt
                var m = members[s]!
                m.rttNs = m.rttNs.map { ($0 * 7 + sample) / 8 } ?? sample
                members[s] = m
            }
            out.append(.cancelTimer(.probeTimeout))
        }
        if let pi = pendingIndirect[seq], pi.target == s {
            pendingIndirect[seq] = nil
            send(.ack(seq: pi.requesterSeq, updates: [], adverts: []), toMember: pi.requester, now: now, out: &out)
        }
    }

    mutating func onPingReq(seq: UInt32, target: NodeID, address: PeerAddress, requester: NodeID, now: Instant, out: inout [Directive]) {
        guard target != id else {
            replyAck(seq: seq, to: requester, now: now, out: &out)
            return
        }
        guard pendingIndirect.count < config.maxPendingIndirectProbes else {
            reject(.overloaded, from: members[requester]?.address ?? address, out: &out)
            return
        }
        probeSeq &+= 1
        let deadline = now.advanced(byMs: config.probeTimeoutMs * 4 / 5)
        pendingIndirect[probeSeq] = PendingIndirect(requester: requester, requesterSeq: seq, target: target, deadline: deadline)
        let m = members[target]
        sendPing(seq: probeSeq, target: target, to: m?.address ?? address,
                 streamOnly: m.map(isStreamOnly) ?? streamOnlyPeers.contains(address), now: now, out: &out)
        armIndirectTimer(out: &out)
    }

    mutating func armIndirectTimer(out: inout [Directive]) {
        var e: Instant? = nil
        for p in pendingIndirect.values where !p.nackSent { if e == nil || p.deadline < e! { e = p.deadline } }
        if let e { out.append(.setTimer(.indirect, at: e)) }
    }

    mutating func indirectTick(now: Instant, out: inout [Directive]) {
        for seq in pendingIndirect.keys.sorted() {
            guard var p = pendingIndirect[seq] else { continue }
            if !p.nackSent && p.deadline <= now {
                p.nackSent = true
                pendingIndirect[seq] = p
                send(.nack(seq: p.requesterSeq), toMember: p.requester, now: now, out: &out)
            } else if p.nackSent && now - p.deadline > Int64(config.probeIntervalMs) * 1_000_000 {
                pendingIndirect[seq] = nil
            }
        }
        armIndirectTimer(out: &out)
        if !pendingIndirect.isEmpty {
            out.append(.setTimer(.indirect, at: now.advanced(byMs: config.probeIntervalMs)))
        }
    }

    mutating func suspicionTick(now: Instant, out: inout [Directive]) {
        for s in suspects.sorted() {
            guard let m = members[s], let sp = m.suspicion, sp.deadline <= now else { continue }
            setState(s, .dead, incarnation: m.incarnation, now: now, out: &out)
            updates.enqueue(MemberUpdate(state: .dead, node: s, incarnation: m.incarnation, accuser: id))
        }
        armSuspicionTimer(out: &out)
    }

    /// Dead members and seeds are probed one at a time, forever (seeds) or until
    /// `deadRetentionMs` (dead members), so a partition heals by itself.
    mutating func retryTick(now: Instant, out: inout [Directive]) {
        out.append(.setTimer(.retry, at: now.advanced(byMs: config.retryIntervalMs)))
        var dead = [NodeID]()
        for d in downMembers.sorted() {
            guard let m = members[d] else { continue }
            if now - m.stateSince > config.deadRetentionMs * 1_000_000 {
                removeMember(d)
            } else if m.state == .dead {
                dead.append(d)
            }
        }
        let seedsDown = seeds.filter { addressIndex[$0].flatMap { members[$0]?.state } != .alive }
        let total = dead.count + seedsDown.count
        guard total > 0 else { return }
        let pick = rng.below(total)
        if pick < dead.count {
            let m = members[dead[pick]]!
            probeSeq &+= 1
            sendPing(seq: probeSeq, target: m.id, to: m.address, streamOnly: isStreamOnly(m), now: now, out: &out)
        } else {
            let s = seedsDown[pick - dead.count]
            send(.join(updates: [selfUpdate()]), to: s, streamOnly: streamOnlyPeers.contains(s), now: now, out: &out)
        }
    }

    mutating func joinTick(now: Instant, out: inout [Directive]) {
        guard aliveCount == 0, !seeds.isEmpty else { return }
        sendJoins(now: now, out: &out)
        out.append(.setTimer(.join, at: now.advanced(byMs: config.joinRetryIntervalMs)))
    }

    /// Alive members (self included), sorted by id: the ring the broadcast trees and
    /// random choices are drawn from.
    mutating func aliveSorted() -> [NodeID] {
        if let c = aliveSortedCache { return c }
        var ids = [id]
        ids.reserveCapacity(aliveCount + 1)
        for m in members.values where m.state == .alive { ids.append(m.id) }
        ids.sort()
        aliveSortedCache = ids
        return ids
    }

    /// Up to `count` distinct random alive members, never self nor `excluding`.
    mutating func randomAlive(count: Int, excluding: [NodeID]) -> [NodeID] {
        let ring = aliveSorted()
        let candidates = ring.count - 1 - excluding.filter { members[$0]?.state == .alive }.count
        let want = min(count, max(0, candidates))
        var out = [NodeID]()
        var tries = 0
        while out.count < want && tries < want * 8 + 16 {
            tries += 1
            let c = ring[rng.below(ring.count)]
            if c == id || excluding.contains(c) || out.contains(c) { continue }
            out.append(c)
        }
        return out
    }
}
