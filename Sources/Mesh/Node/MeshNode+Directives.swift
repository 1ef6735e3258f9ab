import Gossip
import Store
import Sync

/// Carrying out the gossip core's directives: sends, timers, persistence (entries,
/// incarnation, members, fork evidence) and the node ↔ address maps that follow members.
extension MeshNode {
    // MARK: - Directives

    func apply(_ directives: [Directive]) {
        for d in directives {
            switch d {
            case .send(let to, let bytes, let via):
                send(bytes, to: to, via: via)
            case .setTimer(let id, let at):
                setTimer(id, at: at)
            case .cancelTimer(let id):
                timers[id]?.stop()
            case .persistEntry(let e):
                do {
                    switch try store.insertRemoteEntry(e, verifier: verifier) {
                    case .inserted, .duplicate: keep(e)
                    case .fork(let existing):
                        // The store held another entry the gossip layer did not know of (the
                        // store kept the pair): a fork the gossip counters did not count.
                        runtime.forks += 1
                        logFork(existing, e)
                    case .badSignature:
                        count(.badEntrySignature, peer: e.origin.short)
                    case .invalid(let field):
                        count(.malformed, peer: e.origin.short, detail: "entry refused by the store: \(field)")
                    }
                } catch {
                    storeWriteFailed("persist an entry", error)
                }
            case .persistIncarnation(let n):
                do { try store.setIncarnation(n) } catch {
                    storeWriteFailed("persist the incarnation", error)
                }
            case .fetch(let id, let holders):
                // Gossip proposes; the keeper decides (a superseded, deleted or expired version is
                // not fetched), then placement (only a target fetches; MeshNode+Placement.swift).
                // Sources: gossip's hints and every complete holder on record (swarm-style).
                if keeper.isKept(id), placementAdmits(id) {
                    blobs?.want(id, holders: Placement.fetchSources(hints: holders, holders: holdings.holders(of: id), me: identity.nodeID),
                                reason: .replication)
                }
            case .compacted(let gone):
                // Their origins compacted them (PROTOCOL §4.5): out of the store and the views.
                do { try store.deleteEntries(gone.map(\.ref)) } catch {
                    storeWriteFailed("delete compacted entries", error)
                }
                for e in gone {
                    holdings.remove(e)
                    applyKeeperChange(keeper.remove(e, nowMs: WallClock.nowMs(), isComplete: storeCompleteness))
                }
            case .membershipChanged(let t):
                memberChanged(t)
            case .forkDetected(let held, let other):
                // Counted once, by the gossip core; kept here as evidence that survives restarts.
                do { try store.recordFork(held, other, verifier: verifier) } catch {
                    storeWriteFailed("keep fork evidence", error)
                }
                logFork(held, other)
            case .rejected(let reason, let from):
                // Counted by the gossip core itself; here only the rate-limited log line.
                let c = RejectCounter(reason)
                if Self.admissionCounters.contains(c), let who = refusedIdentity[from] {
                    logAdmissionRefusal(c, node: who.node, name: who.name, remote: "\(from)", detail: "gossip from \(from) refused")
                } else {
                    logRejection(c, peer: "\(from)")
                }
            }
        }
    }

    func logFork(_ held: ManifestEntry, _ other: ManifestEntry) {
        logger.warning("fork: two validly signed entries with one origin and sequence (kept as evidence; see `meshnode ls --forks`)",
                       metadata: ["origin": "\(held.origin.short)", "sequence": "\(held.sequence)",
                                  "held": "\(held.contentID.short) \(held.name)", "other": "\(other.contentID.short) \(other.name)"])
    }

    func memberChanged(_ t: MemberTransition) {
        if t.to == .alive { seedWatch.joined(t.address) }
        // A member may announce a new address at any transition (a restart elsewhere), in any
        // state: both maps follow it, and the old address no longer names it.
        let previous = addressOfNode[t.node]
        if let old = previous, old != t.address, nodeAtAddress[old] == t.node { nodeAtAddress[old] = nil }
        addressOfNode[t.node] = t.address
        nodeAtAddress[t.address] = t.node
        let snap = gossip.memberSnapshots().first { $0.node == t.node }
        if let n = snap?.name, !n.isEmpty { nameOfNode[t.node] = n }
        let record = PeerRecord(nodeID: t.node, name: snap?.name ?? "", address: "\(t.address)", state: "\(t.to)",
                                incarnation: t.incarnation, lastSeenMs: WallClock.nowMs(), role: snap?.role ?? "",
                                credential: snap?.credential ?? [])
        do { try store.upsertPeer(record) } catch {
            storeWriteFailed("persist a member", error)
        }
        if t.from != t.to {
            logger.info("member \(t.to)", metadata: ["node": "\(t.node.short)", "name": "\(snap?.name ?? "")",
                                                     "address": "\(t.address)", "incarnation": "\(t.incarnation)"])
        } else if let previous, previous != t.address {
            logger.info("member moved", metadata: ["node": "\(t.node.short)", "name": "\(snap?.name ?? "")", "from": "\(previous)",
                                                   "address": "\(t.address)", "incarnation": "\(t.incarnation)"])
        }
        // A suspicion, a death or a new incarnation (the peer restarted, or refuted a suspicion)
        // means a connection that just died may have died with the peer: not the path's doing.
        let restarted = incarnationOf[t.node].map { t.incarnation > $0 } ?? false
        incarnationOf[t.node] = t.incarnation
        if restarted || t.to == .suspect || t.to == .dead || t.to == .left { paths[t.node]?.onPeerUnreachable() }
        // Who is alive or suspect changes who the targets are (placement counts both: a move
        // between the two changes nothing, and re-ranking every item costs items × members).
        let counted: (MemberState?) -> Bool = { $0 == .alive || $0 == .suspect }
        if counted(t.from) != counted(t.to) { placementInputsChanged() }
        if t.to == .dead || t.to == .left, let s = sessions[t.node] {
            s.shutdown()
        }
    }
}
