import Gossip
import Sync

/// What the compaction checkers remember (`Simulator+Compaction.swift`).
struct CompactionWork {
    /// For each tombstone, when its origin first compacted it: the puts it deletes that the
    /// origin had seen compacted by their own origins (void in its manifest) at that moment.
    /// Those are the puts the compaction's dependencies protect: no receiver may drop the
    /// tombstone while it still holds one of them (docs/PROTOCOL.md §4.5). A put the origin
    /// had never seen is not protected (the horizon caveat, §4.5).
    var knew: [EntryRef: Set<EntryRef>] = [:]
    /// Per node: puts it has shown deleted (it held the put and a tombstone deleting it), or
    /// that were compacted there.
    var seenDeleted: [Int: Set<EntryRef>] = [:]
    /// Per node: puts it may show live again, because it dropped a tombstone that deletes them
    /// whose origin had never seen them when it compacted it (the horizon caveat).
    var revivedByHorizon: [Int: Set<EntryRef>] = [:]
    /// Per node: entries deleted there by a compaction; none may come back.
    var compactedAt: [Int: Set<EntryRef>] = [:]
    /// Per node: a generation, so that a restarted node runs one compaction timer, not two.
    var generation: [Int: UInt64] = [:]
}

/// Tombstone compaction in the versions workload (docs/PROTOCOL.md §4.5): each up node runs
/// the real planner (`Sync.Compactor.plan`) every quarter of `compactAfterMs`, on its own skewed
/// wall clock, and writes the compaction as a local entry (stamped, signed, announced, as the
/// node's shell does in `MeshNode+Compaction.swift`); every node applies it through the real
/// `Gossip.Manifest`, and the simulator deletes what the `.compacted` directive names from
/// the node's durable entries and its catalog, as the shell does.
///
/// The checkers, kept apart from the Manifest's own logic:
/// - **planner**, at each write: the compaction voids no put live in its writer's entries and no
///   tombstone that still deletes a put its writer holds, and depends on the compaction of
///   every put it had seen compacted that such a tombstone deletes;
/// - **dependency rule**, at each `.compacted`: a node that drops a tombstone holds no put the
///   tombstone deletes, unless the tombstone's origin had never seen that put when it compacted
///   it (the horizon caveat: allowed, counted as `horizon_revivals`);
/// - **no resurrection**, after every batch of directives and every check: a put a node has shown
///   deleted is never live there again (but for the horizon caveat), an entry compacted at a
///   node never comes back there, and a node keeps no entry that the compaction in effect voids.
extension Simulator {
    var compacting: Bool { options.names > 0 && options.compactAfterMs > 0 }

    /// How often a node runs the planner: a quarter of the horizon, between 1 s and 1 h (as the
    /// real node, `MeshNode.compactionCheckIntervalNs`).
    var compactionIntervalNs: Int64 {
        min(max(options.compactAfterMs * 1_000_000 / 4, 1_000_000_000), 3_600_000_000_000)
    }

    /// Starts node `i`'s compaction timer (at boot), offset per node so nodes do not run in step.
    func startCompactionTimer(_ i: Int) {
        guard compacting else { return }
        let g = (compactionWork.generation[i] ?? 0) + 1
        compactionWork.generation[i] = g
        let first = compactionIntervalNs * Int64(1 + i % 4) / 4
        scheduleAction(.compact(i, g), atNs: now + first)
    }

    func compactionTimerFired(_ i: Int, generation g: UInt64) {
        guard nodes[i].up, compactionWork.generation[i] == g else { return }
        compactStep(i)
        scheduleAction(.compact(i, g), atNs: now + compactionIntervalNs)
    }

    /// Whether tombstone `t` deletes put `p` (by the oracle's order, not `OrderKey`).
    static func deletes(_ t: ManifestEntry, _ p: ManifestEntry) -> Bool {
        guard let ts = t.tombstone, p.put != nil, p.name == t.name else { return false }
        switch ts.scope {
        case .name: return VersionOracle.precedes(VersionOracle.Key(p), VersionOracle.Key(t))
        case .version(let r): return r == p.ref
        }
    }

    func flag(_ s: String) {
        if versionWork.violations.count < 50 { versionWork.violations.append("at \(Double(now) / 1e9)s: \(s)") }
    }

    /// Runs the planner on node `i` and writes what it plans.
    func compactStep(_ i: Int) {
        let m = nodes[i].gossip!.manifest
        let me = nodes[i].id
        let own = m.entries(of: me)
        let current = m.compaction(of: me)
        let inputs = Compactor.Inputs(own: me, ownEntries: own, catalog: nodes[i].catalog, current: current,
                                      compactionSequences: m.compactionSequences, nowMs: wallMs(i), horizonMs: options.compactAfterMs)
        guard var plan = Compactor.plan(inputs) else { return }
        if options.compactionWithoutDependencies { plan.dependencies = [] }
        let before = current?.0 ?? ManifestEntry.Compaction(ranges: [])
        let newly = own.filter { plan.contains($0.sequence) && !before.contains($0.sequence) && $0.sequence != current?.sequence }
        let deps = Dictionary(plan.dependencies.map { ($0.origin, $0.sequence) }) { a, b in max(a, b) }
        let tombstonesHeld = newly.contains { $0.put != nil } ? m.allEntries.filter { $0.tombstone != nil } : []
        for e in newly {
            if e.put != nil {
                metrics.putsCompacted += 1
                // Dead in the writer's own entries (other origins' tombstones included).
                if !tombstonesHeld.contains(where: { Self.deletes($0, e) }) {
                    flag("planner: n\(i) compacted its put \(show(e.ref)) of \(e.name), live in its own entries")
                }
            } else if e.tombstone != nil {
                metrics.tombstonesCompacted += 1
                var knew = Set<EntryRef>()
                for p in (versionWork.putsByName[e.name] ?? []).compactMap({ genuine[$0] }) where Self.deletes(e, p) {
                    if m.entry(p.ref) == p {
                        flag("planner: n\(i) compacted its rm \(show(e.ref)) of \(e.name) while holding \(show(p.ref)), a put it deletes")
                    } else if let c = m.compaction(of: p.origin), c.0.contains(p.sequence) {
                        knew.insert(p.ref)
                        // Its own puts go in this very compaction (or an earlier one it restates).
                        if p.origin != me, !options.compactionWithoutDependencies, (deps[p.origin] ?? 0) < c.sequence {
                            flag("planner: n\(i) compacted its rm \(show(e.ref)) with no dependency on \(show(EntryRef(origin: p.origin, sequence: c.sequence))), "
                                 + "the compaction of \(show(p.ref)) it deletes")
                        }
                    }
                }
                compactionWork.knew[e.ref] = knew
            }
        }
        metrics.compactionsWritten += 1
        log("n\(i) compacts \(plan.count) sequences of its log, \(plan.dependencies.count) dependencies")
        _ = writeLocal(i, .compaction(plan))
    }

    /// The simulator's half of `.compacted` at node `i` (after the catalog removals): the
    /// dependency rule for every tombstone dropped, and what node `i` has seen compacted.
    func checkCompacted(_ i: Int, _ gone: [ManifestEntry]) {
        let m = nodes[i].gossip!.manifest
        for e in gone {
            metrics.entriesDeletedByCompaction += 1
            compactionWork.compactedAt[i, default: []].insert(e.ref)
            if e.put != nil { compactionWork.seenDeleted[i, default: []].insert(e.ref) }
            guard e.tombstone != nil, genuine[e.ref] == e else { continue }
            for p in (versionWork.putsByName[e.name] ?? []).compactMap({ genuine[$0] }) where m.entry(p.ref) == p && Self.deletes(e, p) {
                if compactionWork.knew[e.ref]?.contains(p.ref) == true {
                    flag("dependency rule: n\(i) dropped rm \(show(e.ref)) of \(e.name) while holding \(show(p.ref)), a put it deletes "
                         + "that \(show(e.ref))'s origin had seen compacted by \(show(p.ref))'s origin when it compacted the rm")
                } else {
                    log("horizon: n\(i) drops rm \(show(e.ref)) (written at \(Double(created[e.ref] ?? 0) / 1e9)s) and holds \(show(p.ref)) "
                        + "(written at \(Double(created[p.ref] ?? 0) / 1e9)s), which the rm's origin had not seen when it compacted it")
                    compactionWork.revivedByHorizon[i, default: []].insert(p.ref)
                    metrics.horizonRevivals += 1
                }
            }
        }
    }

    /// After a batch of directives (or a local write) at node `i`: what it shows of `names` now.
    /// A put shown deleted is remembered; one remembered and live again is a resurrection.
    func checkNoResurrection(_ i: Int, names: Set<String>) {
        guard options.names > 0, !names.isEmpty else { return }
        let nowMs = wallMs(i)
        var seen = compactionWork.seenDeleted[i] ?? []
        let allowed = compactionWork.revivedByHorizon[i] ?? []
        for n in names.sorted() {
            for v in nodes[i].catalog.versions(of: n, nowMs: nowMs) {
                if v.state == .deleted {
                    seen.insert(v.entry.ref)
                } else if v.state == .live, seen.contains(v.entry.ref), !allowed.contains(v.entry.ref) {
                    flag("resurrection: n\(i) shows \(n) version \(show(v.entry.ref)) live again, after it had shown it deleted")
                }
            }
        }
        compactionWork.seenDeleted[i] = seen
    }

    /// An entry persisted at node `i`: it must not be one compacted there before, while the
    /// compaction in effect there voids it. A put it always does (ranges only grow). A tombstone
    /// may legitimately come back while a later compaction of its origin, whose dependencies are
    /// raised, waits for them there (§4.5: the compaction in effect decides); it deletes again
    /// what it deleted, so it revives nothing.
    func checkNotCompactedBefore(_ i: Int, _ e: ManifestEntry) {
        guard compactionWork.compactedAt[i]?.contains(e.ref) == true else { return }
        let m = nodes[i].gossip!.manifest
        let waits = e.tombstone != nil && m.compaction(of: e.origin).map { c in
            !c.0.dependencies.allSatisfy { m.maxContiguous($0.origin) >= $0.sequence } } ?? true
        if !waits {
            flag("reappearance: \(show(e.ref)) (\(e.name)) is back at n\(i), where a compaction had deleted it")
        }
    }

    /// Node `i` keeps no entry the compaction in effect voids (computed here, not by asking the
    /// Manifest's `isVoid`): no entry in its origin's latest compaction's ranges but tombstones,
    /// and those only while that compaction's dependencies are unmet there.
    func voidEntriesKept(_ i: Int) -> [String] {
        let m = nodes[i].gossip!.manifest
        var v = [String]()
        for (o, _) in m.compactionSequences.sorted(by: { $0.key < $1.key }) {
            guard let (c, s) = m.compaction(of: o) else { continue }
            let met = c.dependencies.allSatisfy { m.maxContiguous($0.origin) >= $0.sequence }
            for e in m.entries(of: o) where c.contains(e.sequence) && (e.tombstone == nil || met) {
                v.append("n\(i) keeps \(show(e.ref)) (\(e.name)), void under \(show(EntryRef(origin: o, sequence: s)))"
                         + (e.tombstone == nil ? "" : " whose dependencies it meets"))
                if v.count >= 5 { return v }
            }
        }
        return v
    }

    /// The entries that remain of `entries` once every origin's latest compaction among them is
    /// applied (§4.5): an entry in its ranges is void, a tombstone only once its dependencies are
    /// met over `entries` (each dependency origin's log held, or compacted, up to the sequence).
    static func withoutVoid(_ entries: [ManifestEntry]) -> [ManifestEntry] {
        var latest: [NodeID: (ManifestEntry.Compaction, UInt64)] = [:]
        var seqs: [NodeID: Set<UInt64>] = [:]
        for e in entries {
            seqs[e.origin, default: []].insert(e.sequence)
            if let c = e.compaction, e.sequence > latest[e.origin]?.1 ?? 0 { latest[e.origin] = (c, e.sequence) }
        }
        guard !latest.isEmpty else { return entries }
        var contiguous: [NodeID: UInt64] = [:]
        func maxContiguous(_ o: NodeID) -> UInt64 {
            if let x = contiguous[o] { return x }
            var s: UInt64 = 0
            let have = seqs[o] ?? [], c = latest[o]?.0
            while have.contains(s + 1) || c?.contains(s + 1) == true { s += 1 }
            contiguous[o] = s
            return s
        }
        return entries.filter { e in
            guard let (c, _) = latest[e.origin], c.contains(e.sequence) else { return true }
            guard e.tombstone != nil else { return false }
            return !c.dependencies.allSatisfy { maxContiguous($0.origin) >= $0.sequence }
        }
    }

    /// Convergence of compaction, after the heal: every live node holds the same latest
    /// compaction of every origin, and the same version vector over the cluster's origins (the
    /// manifest digest without the Byzantine insider's entries).
    func compactionConvergenceViolations(limit: Int) -> [String] {
        let live = nodes.indices.filter { nodes[$0].up }
        guard let first = live.first, limit > 0 else { return [] }
        var v = [String]()
        var origins = Set<NodeID>()
        for i in live { origins.formUnion(nodes[i].gossip!.manifest.compactionSequences.keys) }
        func vector(_ i: Int) -> [NodeID: UInt64] { nodes[i].gossip!.manifest.versionVector.filter { idIndex[$0.key] != nil } }
        let v0 = vector(first)
        for i in live {
            let m = nodes[i].gossip!.manifest
            for o in origins.sorted() {
                let a = nodes[first].gossip!.manifest.compactionSequences[o] ?? 0, b = m.compactionSequences[o] ?? 0
                if a != b {
                    v.append("n\(i) holds \(show(EntryRef(origin: o, sequence: b))) as its latest compaction, n\(first) \(show(EntryRef(origin: o, sequence: a)))")
                    if v.count >= limit { return v }
                }
            }
            if i != first, vector(i) != v0 {
                let diff = Set(v0.keys).union(vector(i).keys).filter { v0[$0] != vector(i)[$0] }.sorted().prefix(3)
                v.append("n\(i)'s version vector differs from n\(first)'s at " + diff.map { "\(show(EntryRef(origin: $0, sequence: vector(i)[$0] ?? 0))) vs \(v0[$0] ?? 0)" }.joined(separator: ", "))
                if v.count >= limit { return v }
            }
        }
        return v
    }
}
