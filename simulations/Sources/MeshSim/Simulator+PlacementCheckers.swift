import Gossip
import Sync

/// The placement checkers (`placement`, `broadcast`), kept apart from the decisions: they read
/// the ground truth (what each node's store holds, its disk and config), never the holder
/// records or the node facts the decisions read, and they do not call `Placement` to say what
/// should have happened.
///
/// Safety, as it happens (`placementFlag`):
/// - (b) nothing is fetched by a node excluded from sync;
/// - (c) no fetch takes a node over its `max_disk_usage`, fetches under way counted;
/// - (d) no drop or eviction lets go of the last complete copy of a content (a crash that loses
///   the last copy is not a drop: counted as `lost_to_crash`; a drop that relied on the record of
///   a holder crashed less than failure detection before, still alive in the dropper's view, is
///   counted as `last_copy_dropped_on_crashed_holder`, not a failure: the rule cannot see it).
///
/// Liveness:
/// - (a) after a holder crashes, each content it held is back to `min(min_copies, slots)`
///   complete copies on alive durable nodes (one per NFS group) within failure detection
///   + 10 s of the crash (or of the latest restart, which adds a slot), where a slot is an alive
///   durable node that holds it or could take it: not excluded, of a role the rule admits, under
///   its cap with room for it and not stating itself full (a content it is a target for did
///   not fit), and that has not evicted it. Checked every tick; the same condition over every content
///   must hold by the end of the liveness phase;
/// - (e) by the end of the liveness phase, every broadcast content and every content of a type
///   whose rule has no `max_copies` (`copies: all`) is held by every alive node that could take
///   it (by the same test) or by a node of its NFS group.
extension Simulator {
    /// Failure detection: a probe round and its timeout, then the longest suspicion.
    var detectionBoundNs: Int64 {
        (config.suspicionTimeoutsMs(members: nodes.count).max + 2 * config.probeIntervalMs + config.probeTimeoutMs) * 1_000_000
    }

    var restoreBoundNs: Int64 { detectionBoundNs + 10_000_000_000 }

    /// Whether node `n` could take content `c` now (ground truth).
    func couldTake(_ n: Int, _ c: SimContent) -> Bool {
        let d = placementWork.disks[n], s = placementWork.stores[n]
        return nodes[n].up && !d.excluded && placementWork.policy.rule(for: c.type).admitsRoles(d.roles) && overCapBytes(n) == 0 && !s.full
            && roomBytes(n) + (s.fetching[c.contentID] != nil ? c.sizeBytes : 0) >= c.sizeBytes
            && !s.evicted.contains(c.contentID)
    }

    /// Complete copies on alive durable nodes (one per NFS group), and how many there should be.
    func copies(_ c: SimContent) -> (have: Int, want: Int) {
        var have = 0, slots = 0
        var haveGroups = Set<String>(), slotGroups = Set<String>()
        for n in nodes.indices where nodes[n].up && !placementWork.disks[n].ephemeral {
            let g = placementWork.disks[n].nfsGroup
            let holds = placementWork.stores[n].held[c.contentID] != nil
            if holds && (g.isEmpty || haveGroups.insert(g).inserted) { have += 1 }
            if (holds || couldTake(n, c)) && (g.isEmpty || slotGroups.insert(g).inserted) { slots += 1 }
        }
        return (have, min(placementWork.policy.rule(for: c.type).minCopies, slots))
    }

    /// Checker (a) during the run: every tick.
    func checkRestoreBound() {
        for (c, since) in placementWork.pendingRestore.sorted(by: { $0.key < $1.key }) {
            guard let item = placementWork.contents[c], !completeCopies(c).isEmpty else {
                placementWork.pendingRestore[c] = nil
                continue
            }
            let (have, want) = copies(item)
            if have >= want {
                placementWork.pendingRestore[c] = nil
                placementWork.metrics.restored += 1
                continue
            }
            let from = max(since, placementWork.lastRestartAt)
            if now - from > restoreBoundNs {
                placementWork.pendingRestore[c] = nil
                if placementWork.bound.count < 50 {
                    placementWork.bound.append("at \(Double(now) / 1e9)s: \(c.short) (\(item.type)) has \(have) of \(want) copies "
                        + "\(Double(now - since) / 1e9) s after a holder crashed (bound: failure detection \(Double(detectionBoundNs) / 1e9) s + 10 s); "
                        + "held by \(completeCopies(c).sorted().map { "n\($0)" }); fetches under way: "
                        + "\(placementWork.fetches.values.filter { $0.content == c }.map { "n\($0.node) from n\($0.source) until \(Double($0.doneAt) / 1e9)s" }.sorted())"
                        + "; could take it: \(whyNot(item))")
                }
            }
        }
    }

    public func placementSafetyViolations() -> [String] {
        guard options.placementOn else { return [] }
        return placementWork.safety.map { "placement: \($0)" }
    }

    public func placementLivenessViolations(limit: Int) -> [String] {
        guard options.placementOn, limit > 0 else { return [] }
        var v = placementWork.bound.map { "placement restore bound: \($0)" }
        if v.count >= limit { return Array(v.prefix(limit)) }
        for c in placementWork.order {
            guard let item = placementWork.contents[c], !completeCopies(c).isEmpty else { continue }
            let (have, want) = copies(item)
            if have < want {
                v.append("placement: \(c.short) (\(item.type)) has \(have) of \(want) copies on alive durable nodes")
                if v.count >= limit { return v }
            }
            let rule = placementWork.policy.rule(for: item.type)
            guard item.broadcast || rule.maxCopies == nil else { continue }
            for n in nodes.indices where nodes[n].up && placementWork.stores[n].held[c] == nil && couldTake(n, item) {
                let g = placementWork.disks[n].nfsGroup
                if !g.isEmpty, completeCopies(c).contains(where: { placementWork.disks[$0].nfsGroup == g }) { continue }
                v.append("broadcast: n\(n) could take \(c.short) (\(item.type)\(item.broadcast ? ", broadcast" : ", copies: all")) but does not hold it")
                if v.count >= limit { return v }
            }
        }
        return v
    }

    /// Diagnostics for a failure message (not a check): each node that could take `c` and does
    /// not hold it, with what its own decision says now and which nodes it takes for targets.
    func whyNot(_ c: SimContent) -> String {
        nodes.indices.filter { couldTake($0, c) && placementWork.stores[$0].held[c.contentID] == nil }.map { n in
            let facts = placementFacts(n, full: false)
            let d = Placement.fetchDecision(c.contentID, types: [c.type], broadcast: c.broadcast, me: nodes[n].id, alive: facts,
                                            policy: placementWork.policy, sizeBytes: c.sizeBytes, roomBytes: roomBytes(n))
            let t = Placement.targets(c.contentID, type: c.type, broadcast: c.broadcast, alive: facts, policy: placementWork.policy)
            let ts = t.compactMap { idIndex[$0] }.map { j in
                let st = placementWork.stores[j]
                return "n\(j)" + (st.held[c.contentID] != nil ? "" : st.evicted.contains(c.contentID) ? " evicted it"
                    : j == c.origin ? " its origin" : st.fetching[c.contentID] != nil ? " fetching" : !nodes[j].up ? " down" : " lacks it")
            }
            return "n\(n) (\(d), targets \(ts))"
        }.joined(separator: ", ")
    }
}
