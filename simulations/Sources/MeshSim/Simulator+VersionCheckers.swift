import Gossip
import Sync

/// An independent oracle of docs/PROTOCOL.md §4.4, for the checkers only: the view of each
/// name that a set of entries implies, computed here from the rules and not with `Sync`
/// (the order compares the origin's bytes itself, not `OrderKey`). Retention is not modelled:
/// the workload writes no expiry.
struct VersionOracle {
    /// (hlc, origin's 32 bytes as unsigned bytes, sequence).
    struct Key {
        var hlc: UInt64
        var origin: NodeID
        var sequence: UInt64
        init(_ e: ManifestEntry) { hlc = e.hlc; origin = e.origin; sequence = e.sequence }
    }
    struct Put {
        var ref: EntryRef
        var key: Key
        var live: Bool
    }
    struct View {
        /// Every put, in order (version 1 first).
        var puts: [Put] = []
        var nameTombstones: [(ref: EntryRef, key: Key)] = []
        /// The live put with the greatest key.
        var current: Put? { puts.last(where: \.live) }
    }

    var views: [String: View] = [:]

    static func precedes(_ a: Key, _ b: Key) -> Bool {
        if a.hlc != b.hlc { return a.hlc < b.hlc }
        if a.origin != b.origin { return a.origin.key.bytes.lexicographicallyPrecedes(b.origin.key.bytes) }
        return a.sequence < b.sequence
    }

    init<S: Sequence>(entries: S, names: Set<String>) where S.Element == ManifestEntry {
        var puts: [String: [ManifestEntry]] = [:], targeted: [String: Set<EntryRef>] = [:]
        for e in entries where names.contains(e.name) {
            switch e.payload {
            case .put: puts[e.name, default: []].append(e)
            case .tombstone(let t):
                switch t.scope {
                case .name: views[e.name, default: View()].nameTombstones.append((e.ref, Key(e)))
                case .version(let r): targeted[e.name, default: []].insert(r)
                }
            case .compaction, .holding, .nodeFacts, .unknown: continue
            }
        }
        for (name, ps) in puts {
            var v = views[name] ?? View()
            let gone = targeted[name] ?? []
            // A put is deleted by a name tombstone above it, so by the greatest one.
            let top = v.nameTombstones.dropFirst().reduce(v.nameTombstones.first?.key) { m, t in Self.precedes(m!, t.key) ? t.key : m }
            v.puts = ps.map { e in
                let k = Key(e)
                let deleted = gone.contains(e.ref) || top.map { Self.precedes(k, $0) } ?? false
                return Put(ref: e.ref, key: k, live: !deleted)
            }.sorted { Self.precedes($0.key, $1.key) }
            views[name] = v
        }
    }
}

/// The versions checkers: every node's `Sync.Catalog` view against the oracle, over the
/// node's own entries (safety, at any moment, partitions included) and over the union every
/// node should hold after the heal (liveness); and the causality the hybrid logical clock
/// promises whatever the wall clocks say.
extension Simulator {
    func show(_ r: EntryRef) -> String { "\(idIndex[r.origin].map { "n\($0)" } ?? r.origin.short)#\(r.sequence)" }

    /// Node `i`'s view (its catalog) against `expected`, name by name.
    func compareView(_ i: Int, with expected: VersionOracle, against what: String, limit: Int) -> [String] {
        var v = [String]()
        let cat = nodes[i].catalog
        let nowMs = wallMs(i)
        let live = Set(cat.liveNames(nowMs: nowMs))
        for name in versionWork.names {
            let x = expected.views[name] ?? VersionOracle.View()
            let listed = cat.versions(of: name, nowMs: nowMs)
            let cur = cat.current(name, nowMs: nowMs)
            if let c = cur, x.current == nil {
                v.append("n\(i) shows deleted name \(name) live (current \(show(c.entry.ref))) though \(what) delete every version")
            } else if cur == nil, let c = x.current {
                v.append("n\(i) does not list \(name), though \(what) make \(show(c.ref)) current")
            } else if let c = cur, let e = x.current, c.entry.ref != e.ref {
                v.append("n\(i) shows \(show(c.entry.ref)) as \(name)'s current version, \(what) make \(show(e.ref)) current")
            }
            if live.contains(name) != (x.current != nil) {
                v.append("n\(i): \(name) \(live.contains(name) ? "is" : "is not") in ls, but has \(x.current == nil ? "no" : "a") current version")
            }
            let refs = listed.map(\.entry.ref), want = x.puts.map(\.ref)
            if refs != want {
                let missing = want.filter { !refs.contains($0) }.map(show), extra = refs.filter { !want.contains($0) }.map(show)
                v.append("n\(i) lists \(name)'s versions as [\(refs.map(show).joined(separator: ","))], \(what) give "
                         + "[\(want.map(show).joined(separator: ","))] (missing \(missing), extra \(extra))")
            } else {
                for (k, l) in listed.enumerated() where (l.state == .live) != x.puts[k].live {
                    v.append("n\(i) shows \(name)@\(l.number) (\(show(l.entry.ref))) \(l.state.rawValue), \(what) make it \(x.puts[k].live ? "live" : "deleted")")
                }
                for (k, l) in listed.enumerated() where l.number != k + 1 || l.isCurrent != (l.entry.ref == x.current?.ref) {
                    v.append("n\(i) numbers \(name)'s versions wrongly at \(show(l.entry.ref)): @\(l.number), current \(l.isCurrent)")
                }
            }
            if v.count >= limit { return v }
        }
        return v
    }

    /// The fault-phase view check, run every virtual second: each live node's view is what
    /// its own entries imply, and a tombstone held hides every put its writer held. A node
    /// whose entries did not change since its last check (same count, same boot) is skipped
    /// unless `all`: its view cannot have changed (nothing expires in this workload).
    func checkVersionViews(all: Bool = false) {
        guard options.names > 0, versionWork.violations.count < 20 else { return }
        versionWork.checks += 1
        for i in nodes.indices where nodes[i].up {
            let m = nodes[i].gossip!.manifest
            let stamp = (m.count, nodes[i].bootedAt)
            if !all, let last = versionWork.lastChecked[i], last == stamp { continue }
            versionWork.lastChecked[i] = stamp
            let held = versionWork.refs.compactMap { m.entry($0) }
            var v = compareView(i, with: VersionOracle(entries: held, names: versionWork.nameSet), against: "its own entries", limit: 5)
            let heldRefs = Set(held.map(\.ref))
            var state: [EntryRef: Catalog.VersionState] = [:]
            for n in versionWork.names { for x in nodes[i].catalog.versions(of: n, nowMs: wallMs(i)) { state[x.entry.ref] = x.state } }
            for t in held where t.tombstone?.scope == .name {
                for p in versionWork.tombstoneSaw[t.ref] ?? [] where heldRefs.contains(p) && state[p] == .live {
                    v.append("n\(i) shows \(t.name) version \(show(p)) live though it holds \(show(t.ref)), an rm written by a node that held it")
                }
            }
            if compacting { v += voidEntriesKept(i) }
            for s in v { versionWork.violations.append("at \(Double(now) / 1e9)s: \(s)") }
            checkNoResurrection(i, names: versionWork.nameSet)
        }
    }

    /// Safety, at the end: the fault-phase view checks found nothing, every view is still what
    /// its entries imply, and every entry orders after every entry of its name its writer held.
    public func versionSafetyViolations() -> [String] {
        guard options.names > 0 else { return [] }
        checkVersionViews(all: true)
        var v = versionWork.violations
        for (t, saw) in versionWork.tombstoneSaw.sorted(by: { show($0.key) < show($1.key) }) {
            guard let te = genuine[t] else { continue }
            for p in saw {
                if let pe = genuine[p], !VersionOracle.precedes(VersionOracle.Key(pe), VersionOracle.Key(te)) {
                    v.append("clock: rm \(show(t)) orders before \(show(p)), a put its writer held (hlc \(te.hlc) ≤ \(pe.hlc))")
                }
            }
        }
        for (p, saw) in versionWork.putSaw.sorted(by: { show($0.key) < show($1.key) }) {
            guard let pe = genuine[p] else { continue }
            for t in saw {
                if let te = genuine[t], !VersionOracle.precedes(VersionOracle.Key(te), VersionOracle.Key(pe)) {
                    v.append("clock: put \(show(p)) orders before \(show(t)), an rm its writer held: the put cannot revive the name")
                }
            }
        }
        return v
    }

    /// The versioned entries every live node must hold after the heal: those whose origin is
    /// live, and those any live node holds.
    func requiredVersionEntries() -> [ManifestEntry] {
        let live = nodes.indices.filter { nodes[$0].up }
        let ms = live.map { nodes[$0].gossip!.manifest }
        var req = [ManifestEntry]()
        for ref in versionWork.refs {
            guard let e = genuine[ref] else { continue }
            if let o = idIndex[ref.origin], nodes[o].up { req.append(e); continue }
            if ms.contains(where: { $0.entry(ref) == e }) { req.append(e) }
        }
        // Those that remain once every origin's latest compaction is applied (§4.5).
        return compacting ? Self.withoutVoid(req) : req
    }

    /// Liveness: every live node shows, for every name, the view the union of entries implies:
    /// the same current version (or none, for a deleted name) and the same list of versions,
    /// the losers of concurrent puts included.
    func versionLivenessViolations(limit: Int) -> [String] {
        guard options.names > 0 else { return [] }
        let expected = VersionOracle(entries: requiredVersionEntries(), names: versionWork.nameSet)
        var v = [String]()
        for i in nodes.indices where nodes[i].up {
            v += compareView(i, with: expected, against: "the entries of all live nodes", limit: limit - v.count)
            if v.count >= limit { return v }
        }
        return v + compactionConvergenceViolations(limit: limit - v.count)
    }
}
