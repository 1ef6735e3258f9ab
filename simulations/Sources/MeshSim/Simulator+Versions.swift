import Gossip
import Sync

/// What the versions workload wrote, for its checkers (`Simulator+VersionCheckers.swift`).
struct VersionWorkload {
    /// The name space: `v/0`, `v/1`, … (small, so that names collide).
    var names: [String] = []
    var nameSet: Set<String> = []
    /// For each name-scope tombstone: the puts of its name that its writer held when it wrote
    /// it. The hybrid logical clock puts the tombstone after each, whatever the writer's wall
    /// clock says, so none of them may be live anywhere the tombstone is held.
    var tombstoneSaw: [EntryRef: [EntryRef]] = [:]
    /// For each put: the name tombstones of its name that its writer held when it wrote it. The
    /// put orders after each, so it is live again (a put after `rm` revives the name).
    var putSaw: [EntryRef: [EntryRef]] = [:]
    /// Pairs of puts of one name written at the same moment on the two sides of a partition:
    /// neither writer held the other's put.
    var concurrent: [(EntryRef, EntryRef)] = []
    /// Violations found by the view checks made during the fault phase (safety).
    var violations: [String] = []
    var checks = 0
    /// Per node: (entries held, boot time) at its last view check.
    var lastChecked: [Int: (Int, Int64)] = [:]
    /// Every entry the workload wrote, in order, and its puts by name.
    var refs: [EntryRef] = []
    var putsByName: [String: [EntryRef]] = [:]
}

/// The versions workload (`SimOptions.names` > 0): nodes put versions of a few names and
/// delete them (`rm NAME`, `rm NAME@N`), during partitions too, each with its own wall clock
/// (skewed, never agreeing), stamping entries with the hybrid logical clock as the Store does
/// (`HybridLogicalClock.next` over the highest stamp held). Entries travel through the real
/// `GossipNode`; each node's view is a `Sync.Catalog` fed, as the node's shell feeds it, with
/// its own entries and every `persistEntry`.
extension Simulator {
    static let epochMs: Int64 = 1_700_000_000_000

    /// Sets up the name space and each node's clock skew (from a generator of their own, so
    /// that the run's main generator draws what it drew before for the same seed).
    func setUpVersionWorkload() {
        guard options.names > 0 else { return }
        versionWork.names = (0..<options.names).map { "v/\($0)" }
        versionWork.nameSet = Set(versionWork.names)
        var r = SplitMix64(seed: options.seed ^ 0x434C_4F43_4B53)
        let s = options.clockSkewMs
        for i in nodes.indices {
            let off = s > 0 ? (r.unit() * 2 - 1) * s : 0
            nodes[i].clockSkewMs = Int64(i == 1 && nodes.count >= 3 ? -10 * s : off)
        }
    }

    /// Node `i`'s wall clock, in ms since the epoch (real time plus its skew).
    func wallMs(_ i: Int) -> Int64 { Self.epochMs + now / 1_000_000 + nodes[i].clockSkewMs }

    /// One operation of the workload: a pair of concurrent puts across a partition, a
    /// tombstone of a name (or one version) the writer sees live, or a put.
    func versionOperation() {
        let c = upHonest()
        guard !c.isEmpty else { return }
        let names = versionWork.names
        if partition != nil, options.conflictFraction > 0, rng.unit() < options.conflictFraction {
            let a = c.filter { group[$0] == 0 }, b = c.filter { group[$0] == 1 }
            if !a.isEmpty && !b.isEmpty {
                let name = names[rng.below(names.count)]
                let i = a[rng.below(a.count)], j = b[rng.below(b.count)]
                let p = writePut(i, name: name), q = writePut(j, name: name)
                versionWork.concurrent.append((p, q))
                metrics.concurrentPuts += 1
                return
            }
        }
        let i = c[rng.below(c.count)]
        let name = names[rng.below(names.count)]
        if rng.unit() < options.tombstoneFraction, nodes[i].catalog.current(name, nowMs: wallMs(i)) != nil {
            if rng.below(5) == 0 {
                let live = nodes[i].catalog.versions(of: name, nowMs: wallMs(i)).filter { $0.state == .live }
                writeTombstone(i, name: name, scope: .version(live[rng.below(live.count)].entry.ref))
            } else {
                writeTombstone(i, name: name, scope: .name)
            }
        } else {
            writePut(i, name: name)
        }
    }

    /// The entries of `name` node `i` holds (its manifest, not its view).
    func held(_ i: Int, name: String) -> [ManifestEntry] {
        nodes[i].gossip!.entries.filter { $0.kind != nil && $0.name == name }
    }

    @discardableResult
    func writePut(_ i: Int, name: String) -> EntryRef {
        let saw = held(i, name: name).filter { $0.tombstone?.scope == .name }.map(\.ref)
        let revives = !saw.isEmpty && nodes[i].catalog.current(name, nowMs: wallMs(i)) == nil
        let cid = ContentID(digest: Bytes32(w0: rng.next(), w1: rng.next(), w2: rng.next(), w3: rng.next()))
        let put = ManifestEntry.Put(contentID: cid, sizeBytes: UInt64(1 + rng.below(1 << 30)), chunkSizeBytes: 4 << 20,
                                    type: .model, createdAtMs: wallMs(i), name: name)
        let ref = writeLocal(i, .put(put))
        versionWork.putSaw[ref] = saw
        versionWork.putsByName[name, default: []].append(ref)
        metrics.versionPuts += 1
        if revives { metrics.revivingPuts += 1 }
        return ref
    }

    func writeTombstone(_ i: Int, name: String, scope: ManifestEntry.Tombstone.Scope) {
        let saw = held(i, name: name).filter { $0.put != nil }.map(\.ref)
        let ref = writeLocal(i, .tombstone(.init(scope: scope, name: name, createdAtMs: wallMs(i))))
        if scope == .name {
            versionWork.tombstoneSaw[ref] = saw
            metrics.nameTombstones += 1
        } else {
            metrics.versionTombstones += 1
        }
    }

    /// Stamps, signs, stores and announces one local entry of node `i`, as the Store and the
    /// shell do: the next sequence, `hlc = HybridLogicalClock.next(wall, highest held)`.
    func writeLocal(_ i: Int, _ payload: ManifestEntry.Payload) -> EntryRef {
        let g = nodes[i].gossip!
        let highest = g.entries.reduce(UInt64(0)) { max($0, $1.hlc) }
        nodes[i].nextSequence += 1
        let e = ManifestEntry(origin: nodes[i].id, sequence: nodes[i].nextSequence,
                              hlc: HybridLogicalClock.next(wallMs: wallMs(i), after: highest),
                              payload: payload).signed(by: SimSigner(nodeID: nodes[i].id))
        let ref = e.ref
        genuine[ref] = e
        versionWork.refs.append(ref)
        created[ref] = now
        nodes[i].durableEntries[ref] = e
        nodes[i].catalog.insert(e)
        let d = nodes[i].gossip!.onLocalEntry(e, now: Instant(nanoseconds: now))
        process(i, d)
        if e.put != nil || e.tombstone != nil { checkNoResurrection(i, names: [e.name]) }
        return ref
    }

    /// The end-of-run counts: names live, names deleted, and names live again after a
    /// tombstone, in the view every node should agree on.
    func finishVersionMetrics() {
        guard options.names > 0 else { return }
        let expected = VersionOracle(entries: requiredVersionEntries(), names: versionWork.nameSet)
        // Over every entry written, compacted or not: a compacted rm still deleted the name.
        let everything = VersionOracle(entries: versionWork.refs.compactMap { genuine[$0] }, names: versionWork.nameSet)
        for n in versionWork.names {
            let x = expected.views[n] ?? VersionOracle.View()
            if let cur = x.current {
                metrics.namesLiveAtEnd += 1
                let rms = everything.views[n]?.nameTombstones ?? []
                if rms.contains(where: { VersionOracle.precedes($0.key, cur.key) }) { metrics.namesRevivedAtEnd += 1 }
            } else if !(versionWork.putsByName[n] ?? []).isEmpty {
                metrics.namesDeletedAtEnd += 1
            }
            if x.puts.count > 1 { metrics.namesWithSeveralOrigins += Set(x.puts.map(\.ref.origin)).count > 1 ? 1 : 0 }
        }
    }
}
