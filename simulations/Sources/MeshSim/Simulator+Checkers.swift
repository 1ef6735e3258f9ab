import Gossip

/// The safety and liveness checkers (separate from the runner: they only read its state).
extension Simulator {
    // MARK: - Checkers

    /// Safety: no forged or corrupt entry accepted anywhere; nothing a node persisted is
    /// lost; a delivered fork is reported.
    public func safetyViolations() -> [String] {
        var v = [String]()
        for (i, n) in nodes.enumerated() {
            guard let g = n.gossip else { continue }
            var held = Set<EntryRef>()
            for e in g.entries {
                let ref = EntryRef(origin: e.origin, sequence: e.sequence)
                held.insert(ref)
                if genuine[ref] != e && !nemesisEntries.contains(e) {
                    v.append("n\(i) accepted a forged entry \(e.origin.short)#\(e.sequence) '\(e.name)'")
                }
            }
            for (ref, e) in n.durableEntries where g.manifest.entry(ref) != e && !nemesisEntries.contains(e) {
                v.append("n\(i) lost entry \(ref.origin.short)#\(ref.sequence) it had persisted")
            }
            // Every fork reported over the node's lifetime, restarts included, is held as evidence,
            // and none was reported twice.
            if g.manifest.forks.count != n.durableForks.count {
                v.append("n\(i) holds \(g.manifest.forks.count) forks but reported \(n.durableForks.count)")
            }
        }
        v += versionSafetyViolations()
        v += placementSafetyViolations()
        if let (a, b) = forkVariants {
            let both = nodes.contains { n in n.gossip.map { $0.manifest.forks.contains { ($0.0 == a && $0.1 == b) || ($0.0 == b && $0.1 == a) } } ?? false }
            if forkDelivered && !both && metrics.forksReported == 0 { v.append("a fork was delivered but no node reported it") }
        }
        return v
    }

    /// Liveness: every live node holds every item some live node holds (or whose origin
    /// is live), and every live node sees exactly the live nodes as alive.
    public func livenessViolations(limit: Int, itemsOnly: Bool = false) -> [String] {
        var v = [String]()
        let live = nodes.indices.filter { nodes[$0].up }
        var required = Set<EntryRef>()
        for (ref, _) in genuine {
            if let o = idIndex[ref.origin], nodes[o].up { required.insert(ref) }
        }
        for i in live {
            for e in nodes[i].gossip!.entries where genuine[EntryRef(origin: e.origin, sequence: e.sequence)] == e {
                required.insert(EntryRef(origin: e.origin, sequence: e.sequence))
            }
        }
        if compacting {
            // Not what compactions voided (§4.5): only what remains of those entries.
            required = Set(Self.withoutVoid(required.compactMap { genuine[$0] }).map(\.ref))
        }
        let sortedReq = required.sorted { ($0.origin, $0.sequence) < ($1.origin, $1.sequence) }
        for i in live {
            let g = nodes[i].gossip!
            var missing = 0
            for r in sortedReq where !g.manifest.contains(r) { missing += 1 }
            if missing > 0 {
                v.append("n\(i) misses \(missing) of \(required.count) items")
                if v.count >= limit { return v }
            }
        }
        if itemsOnly { return v }
        let liveSet = Set(live)
        let anyMoved = nodes.contains { $0.moves > 0 }
        for i in live {
            let g = nodes[i].gossip!
            // Where this node believes each member listens (only needed once someone moved).
            let addressOf = anyMoved ? Dictionary(g.memberSnapshots().map { ($0.node, $0.address) }) { a, _ in a } : [:]
            for j in nodes.indices where j != i && nodes[j].started {
                let st = g.memberState(nodes[j].id)
                if anyMoved, liveSet.contains(j), st == .alive, let a = addressOf[nodes[j].id], a != nodes[j].address {
                    v.append("n\(i) sees live n\(j) alive at its old address \(a), not \(nodes[j].address)")
                    if v.count >= limit { return v }
                }
                if liveSet.contains(j) {
                    // With datagram loss, false suspicions arise and are refuted all the time; a
                    // live member seen as suspect is then not a disagreement (it is not dead).
                    if st != .alive && !(options.loss > 0 && st == .suspect) {
                        v.append("n\(i) sees live n\(j) as \(st.map(\.description) ?? "unknown")")
                        if v.count >= limit { return v }
                    }
                } else if st == .alive || st == .suspect {
                    v.append("n\(i) sees down n\(j) as \(st!)")
                    if v.count >= limit { return v }
                }
            }
        }
        // Last, as it is the dearest: every node's view of every name (versions workload).
        v += versionLivenessViolations(limit: limit - v.count)
        if v.count < limit { v += placementLivenessViolations(limit: limit - v.count) }
        return v
    }
}
