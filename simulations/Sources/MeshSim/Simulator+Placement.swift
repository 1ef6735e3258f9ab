import Gossip
import Sync

/// A scheduled step of the placement model.
enum PlacementStep {
    /// Every up node runs its placement pass (and every other tick its eviction pass).
    case tick
    /// A fetch finished (its id in `PlacementWork.fetches`).
    case fetchDone(Int)
    /// A random up node's other data grows (it fills up to and past its cap).
    case fill
}

/// One simulated node's configuration: what its facts state, its disk and its upload
/// bandwidth. Survives a crash (it is the node's config and hardware).
struct SimDisk {
    var roles: [String] = []
    var ephemeral = false
    var nfsGroup = ""
    var excluded = false
    var totalBytes: UInt64 = 0
    /// `max_disk_usage` as bytes.
    var capBytes: UInt64 = 0
    /// Data other than contents (other programs, logs): grows with `PlacementStep.fill`.
    var otherBytes: UInt64 = 0
    var uploadBytesPerS: Double = 0
}

/// One simulated node's content store: lost at a crash (kill -9 with the disk).
struct SimStore {
    /// Complete contents, with their sizes.
    var held: [ContentID: UInt64] = [:]
    /// Fetches under way (content → fetch id), and the bytes they will add.
    var fetching: [ContentID: Int] = [:]
    var reservedBytes: UInt64 = 0
    /// Evicted for space: not fetched again while the process runs (as `MeshNode+Eviction`).
    var evicted: Set<ContentID> = []
    /// Decided once (`PlacementBug.noReevaluation` only).
    var decided: Set<ContentID> = []
    /// Stated full at the last pass: over its cap, or a content it is a target for did not fit
    /// in its room under the cap (so that the next nodes by rank take its place).
    var full = false
    /// Dropped for not being a target (to count fetches of them again: churn).
    var droppedNotTarget: Set<ContentID> = []
    /// Its upload link is busy until then (fetches from it queue).
    var uploadFreeAt: Int64 = 0
    var heldBytes: UInt64 { held.values.reduce(0, +) }
}

struct SimContent {
    var contentID: ContentID
    var type: ItemType
    var sizeBytes: UInt64
    var broadcast: Bool
    var origin: Int
    var ref: EntryRef
    var createdAtMs: Int64
}

struct SimFetch {
    var node: Int
    var content: ContentID
    var source: Int
    var sizeBytes: UInt64
    var nodeBootedAt: Int64
    var sourceBootedAt: Int64
    var doneAt: Int64
}

/// What the placement model holds and what its checkers remember
/// (`Simulator+PlacementCheckers.swift`).
struct PlacementWork {
    var policy = PlacementPolicy()
    var disks: [SimDisk] = []
    var stores: [SimStore] = []
    /// Each node's view of the holder records and node facts, fed as the node's shell feeds
    /// `Sync.Holdings`: its own entries and every `persistEntry`, rebuilt at a restart.
    var holdings: [Holdings] = []
    var contents: [ContentID: SimContent] = [:]
    var order: [ContentID] = []
    var fetches: [Int: SimFetch] = [:]
    var nextFetchID = 0
    var ticks = 0
    /// Per node: the highest hybrid logical clock among the entries it holds (to stamp its own).
    var highestHlc: [UInt64] = []
    /// Per node: holding changes not recorded yet (written together at the next tick, as the
    /// shell batches them within its debounce).
    var pendingHeld: [Set<ContentID>] = []
    var pendingDropped: [Set<ContentID>] = []
    /// Safety violations found as they happened.
    var safety: [String] = []
    /// Restore-bound violations found during the run (liveness bound).
    var bound: [String] = []
    /// Contents that lost a holder to a crash, with since when they must be restored.
    var pendingRestore: [ContentID: Int64] = [:]
    var lastRestartAt: Int64 = .min / 2
    /// Contents whose every complete copy was lost to crashes (not a checker failure).
    var lostToCrash: Set<ContentID> = []
    var metrics = PlacementMetrics()
}

public struct PlacementMetrics: Sendable {
    public var puts = 0
    public var fetchesStarted = 0
    public var fetchesCompleted = 0
    public var fetchesFailed = 0
    /// Completed fetches served by a node other than the content's origin.
    public var fetchesFromOthers = 0
    public var droppedNotTarget = 0
    public var evicted = 0
    public var restored = 0
    public var lostToCrash = 0
    public var holdingEntries = 0
    public var factsEntries = 0
    public var fills = 0
    /// Fetches of a content the node had dropped for not being a target (placement churn).
    public var refetchesAfterDrop = 0
    /// Passes that stated a node full because a content it is a target for did not fit.
    public var refusedForRoom = 0
    /// Drops of the last complete copy that relied on the holder record of a node that had
    /// crashed less than failure detection before (not yet dead in the dropper's view): a loss
    /// the drop rule cannot see (counted, not a checker failure).
    public var lastCopyDroppedOnCrashedHolder = 0

    var fields: [(String, Int)] {
        [("puts", puts), ("fetches_started", fetchesStarted), ("fetches_completed", fetchesCompleted), ("fetches_failed", fetchesFailed),
         ("fetches_from_others", fetchesFromOthers), ("dropped_not_target", droppedNotTarget), ("evicted", evicted),
         ("restored", restored), ("lost_to_crash", lostToCrash), ("holding_entries", holdingEntries),
         ("facts_entries", factsEntries), ("fills", fills), ("refetches_after_drop", refetchesAfterDrop),
         ("refused_for_room", refusedForRoom), ("last_copy_dropped_on_crashed_holder", lastCopyDroppedOnCrashedHolder)]
    }
}

/// The placement model (`placement`, `broadcast`): contents with a type and a size; each node
/// with roles, ephemeral flag, NFS group, excluded flag, a disk and its `max_disk_usage`, and an
/// upload bandwidth. Nodes state their holdings and facts as the real kind-4 and kind-5 entries
/// (docs/PROTOCOL.md §4.6, §4.7) through the real `GossipNode`, read them back through
/// `Sync.Holdings`, and decide with the node's own pure functions: `Placement.fetchDecision`,
/// `Placement.fetchSources`, `Eviction.decide` (over the same inputs `MeshNode+Placement` and
/// `MeshNode+Eviction` build). A fetch takes size / bandwidth of virtual time from the source,
/// queued behind the source's other uploads.
extension Simulator {
    static let placementTickNs: Int64 = 1_000_000_000

    /// A fetch's request and its last reply: one round trip.
    var fetchRoundTripNs: Int64 { Int64(options.latencyMs * 2e6) }

    func setUpPlacement() {
        guard options.placementOn else { return }
        var r = SplitMix64(seed: options.seed ^ 0x504C_4143_4500)
        let n = nodes.count
        placementWork.stores = Array(repeating: SimStore(), count: n)
        placementWork.holdings = Array(repeating: Holdings(), count: n)
        placementWork.highestHlc = Array(repeating: 0, count: n)
        placementWork.pendingHeld = Array(repeating: [], count: n)
        placementWork.pendingDropped = Array(repeating: [], count: n)
        let roleSets: [[String]] = [["training"], ["selfplay"], ["storage"], ["training", "storage"], []]
        let excludedNode = r.below(2) == 0 ? 3 + r.below(max(1, n - 3)) : -1
        let nfs = r.below(2) == 0 && n >= 6
        placementWork.disks = (0..<n).map { i in
            var d = SimDisk()
            d.roles = roleSets[r.below(roleSets.count)]
            d.ephemeral = i >= 3 && r.below(5) == 0
            d.excluded = i == excludedNode
            // Shared storage outlives its nodes: an NFS group's members are durable.
            if nfs && (i == n - 1 || i == n - 2) { d.nfsGroup = "nfs-a"; d.ephemeral = false }
            d.totalBytes = UInt64(2 + r.below(7)) << 30
            d.capBytes = d.totalBytes * UInt64(70 + r.below(26)) / 100
            d.otherBytes = d.capBytes * UInt64(10 + r.below(50)) / 100
            d.uploadBytesPerS = Double(100 + r.below(301)) * Double(1 << 20) * options.uploadScale
            return d
        }
        switch options.placementPolicy {
        case .seedDefaults:
            placementWork.policy = .seedDefaults
        case .tight:
            placementWork.policy = PlacementPolicy(rules: Dictionary(uniqueKeysWithValues: ItemType.allCases.map {
                ($0, PlacementRule(minCopies: 2, maxCopies: 2)) }))
        case .random:
            var rules = [ItemType: PlacementRule]()
            for t in ItemType.allCases where r.below(10) < 7 {
                let roles = ["selfplay", "training", "storage"].filter { _ in r.below(3) == 0 }
                let minCopies = 1 + r.below(3)
                let maxCopies: Int? = r.below(2) == 0 ? nil : minCopies + r.below(3)
                rules[t] = PlacementRule(roles: roles, minCopies: minCopies, maxCopies: maxCopies)
            }
            placementWork.policy = PlacementPolicy(rules: rules)
        }
    }

    func startPlacement() {
        scheduleAction(.placement(.tick), atNs: Self.placementTickNs / 2)
        if options.diskFillsPerMin > 0 { scheduleAction(.placement(.fill), atS: 5 + nextGap(perMin: options.diskFillsPerMin)) }
    }

    func placementStep(_ s: PlacementStep) {
        switch s {
        case .tick:
            placementWork.ticks += 1
            for i in nodes.indices where nodes[i].up {
                flushHoldings(i)
                placementPass(i, evict: placementWork.ticks % 2 == 0)
            }
            checkRestoreBound()
            scheduleAction(.placement(.tick), atNs: now + Self.placementTickNs)
        case let .fetchDone(id):
            fetchDone(id)
        case .fill:
            guard now < phaseEnd else { return }
            let c = upHonest()
            if !c.isEmpty {
                let i = c[rng.below(c.count)]
                var d = placementWork.disks[i]
                d.otherBytes = min(d.capBytes + d.capBytes / 20, d.otherBytes + d.totalBytes * UInt64(3 + rng.below(8)) / 100)
                placementWork.disks[i] = d
                placementWork.metrics.fills += 1
                log("n\(i)'s other data grows to \(d.otherBytes >> 20) MiB (cap \(d.capBytes >> 20) MiB)")
            }
            scheduleAction(.placement(.fill), atS: Double(now) / 1e9 + nextGap(perMin: options.diskFillsPerMin))
        }
    }

    // MARK: - The node's disk

    func usedBytes(_ i: Int) -> UInt64 { placementWork.disks[i].otherBytes + placementWork.stores[i].heldBytes }

    /// How far below its cap node `i` is, less what its fetches under way will add.
    func roomBytes(_ i: Int) -> UInt64 {
        let used = usedBytes(i) + placementWork.stores[i].reservedBytes, cap = placementWork.disks[i].capBytes
        return cap > used ? cap - used : 0
    }

    func overCapBytes(_ i: Int) -> UInt64 {
        let used = usedBytes(i), cap = placementWork.disks[i].capBytes
        return used > cap ? used - cap : 0
    }

    func statedFacts(_ i: Int) -> ManifestEntry.NodeFacts {
        let d = placementWork.disks[i], used = usedBytes(i)
        return ManifestEntry.NodeFacts(roles: d.roles, ephemeral: d.ephemeral, excluded: d.excluded, full: placementWork.stores[i].full,
                                       diskTotalBytes: d.totalBytes, diskUsedBytes: used,
                                       diskFreeBytes: d.totalBytes > used ? d.totalBytes - used : 0, nfsGroup: d.nfsGroup)
    }

    /// An entry arrived at node `i` (`persistEntry`): into its view.
    func placementPersisted(_ i: Int, _ e: ManifestEntry) {
        placementWork.holdings[i].insert(e)
        placementWork.highestHlc[i] = max(placementWork.highestHlc[i], e.hlc)
    }

    /// Writes one of node `i`'s own entries (a put, a holder record, node facts), as the shell's
    /// `writeOwn` and the Store do (the next sequence, `HybridLogicalClock.next` over the highest
    /// stamp held), folds it into its `Holdings` and announces it.
    @discardableResult
    func writePlacementEntry(_ i: Int, _ payload: ManifestEntry.Payload) -> EntryRef {
        nodes[i].nextSequence += 1
        let e = ManifestEntry(origin: nodes[i].id, sequence: nodes[i].nextSequence,
                              hlc: HybridLogicalClock.next(wallMs: wallMs(i), after: placementWork.highestHlc[i]),
                              payload: payload).signed(by: SimSigner(nodeID: nodes[i].id))
        genuine[e.ref] = e
        created[e.ref] = now
        nodes[i].durableEntries[e.ref] = e
        placementPersisted(i, e)
        process(i, nodes[i].gossip!.onLocalEntry(e, now: Instant(nanoseconds: now)))
        return e.ref
    }

    /// Records what changed since the last tick (`flushHoldings`), against what the log says.
    func flushHoldings(_ i: Int) {
        let me = nodes[i].id, h = placementWork.holdings[i]
        let held = placementWork.pendingHeld[i].filter { placementWork.stores[i].held[$0] != nil && h.latest(me, $0)?.held != true }
        let dropped = placementWork.pendingDropped[i].filter { placementWork.stores[i].held[$0] == nil && h.latest(me, $0)?.held == true }
        placementWork.pendingHeld[i] = []
        placementWork.pendingDropped[i] = []
        writeHolding(i, held: held.sorted(), dropped: dropped.sorted())
    }

    func writeHolding(_ i: Int, held: [ContentID] = [], dropped: [ContentID] = []) {
        let all = held.map { ($0, true) } + dropped.map { ($0, false) }
        var k = 0
        while k < all.count {
            let part = all[k..<min(all.count, k + ManifestEntry.Holding.maxContents)]
            k += part.count
            writePlacementEntry(i, .holding(ManifestEntry.Holding(held: part.filter(\.1).map(\.0), dropped: part.filter { !$0.1 }.map(\.0))))
            placementWork.metrics.holdingEntries += 1
        }
    }

    /// Node facts, when they differ from the last stated (`MeshNode.factsChanged`'s flags).
    func writeFactsIfChanged(_ i: Int, force: Bool) {
        let f = statedFacts(i)
        if !force, let old = placementWork.holdings[i].facts(of: nodes[i].id)?.facts, old.full == f.full { return }
        writePlacementEntry(i, .nodeFacts(f))
        placementWork.metrics.factsEntries += 1
    }

    // MARK: - Lifecycle

    /// At boot (and restart): the view rebuilt from the durable entries, the facts stated, and
    /// what the log says this node holds compared with its (lost) store, as `startHoldings` does.
    func placementBooted(_ i: Int) {
        placementWork.holdings[i] = Holdings(nodes[i].durableEntries.values)
        placementWork.highestHlc[i] = nodes[i].durableEntries.values.reduce(0) { max($0, $1.hlc) }
        placementWork.pendingHeld[i] = []
        placementWork.pendingDropped[i] = []
        if nodes[i].everDown { placementWork.lastRestartAt = now }
        placementWork.stores[i].full = overCapBytes(i) > 0
        let me = nodes[i].id
        let said = placementWork.holdings[i].held(by: me)
        let lost = said.filter { placementWork.stores[i].held[$0] == nil }.sorted()
        writeHolding(i, dropped: lost)
        writeFactsIfChanged(i, force: true)
    }

    /// A crash with the disk: every content and fetch under way is gone.
    func placementCrashed(_ i: Int) {
        for (c, _) in placementWork.stores[i].held {
            placementWork.pendingRestore[c] = now
            if completeCopies(c).isEmpty, !placementWork.lostToCrash.contains(c) {
                placementWork.lostToCrash.insert(c)
                placementWork.metrics.lostToCrash += 1
                log("content \(c.short) lost: n\(i) held its last copy and crashed")
            }
        }
        let upload = placementWork.stores[i].uploadFreeAt
        placementWork.stores[i] = SimStore()
        placementWork.stores[i].uploadFreeAt = upload
    }

    /// A put by a random up node (an excluded node may put too); its origin holds it.
    func placementPut() {
        let c = upHonest()
        guard !c.isEmpty else { return }
        let i = c[rng.below(c.count)]
        let types: [ItemType] = [.game, .game, .npz, .checkpoint, .model, .other]
        let type = types[rng.below(types.count)]
        let size = UInt64(4 + rng.below(253)) << 20
        let broadcast = options.broadcastFraction > 0 && rng.unit() < options.broadcastFraction
        let cid = ContentID(digest: Bytes32(w0: rng.next(), w1: rng.next(), w2: rng.next(), w3: rng.next()))
        itemCounter += 1
        let put = ManifestEntry.Put(contentID: cid, sizeBytes: size, chunkSizeBytes: 4 << 20, type: type,
                                    flags: broadcast ? ManifestEntry.Put.broadcastFlag : 0, createdAtMs: wallMs(i),
                                    name: "p/\(itemCounter).\(type)")
        let ref = writePlacementEntry(i, .put(put))
        placementWork.contents[cid] = SimContent(contentID: cid, type: type, sizeBytes: size, broadcast: broadcast, origin: i,
                                                 ref: ref, createdAtMs: wallMs(i))
        placementWork.order.append(cid)
        placementWork.stores[i].held[cid] = size
        placementWork.metrics.puts += 1
    }

    // MARK: - Decisions (the node's pure functions)

    /// The facts placement reads on node `i`, as `MeshNode.placementFacts` builds them: every
    /// alive or suspect member's stated facts (none stated yet: no roles, 1 GiB), and its own
    /// as stated with the live flags.
    func placementFacts(_ i: Int, full: Bool? = nil) -> [NodeID: NodeFacts] {
        let h = placementWork.holdings[i], me = nodes[i].id
        var out = [NodeID: NodeFacts]()
        for m in nodes[i].gossip!.memberSnapshots() where !m.isSelf && (m.state == .alive || m.state == .suspect) {
            out[m.node] = h.facts(of: m.node).map { NodeFacts($0.facts) } ?? NodeFacts()
        }
        let d = placementWork.disks[i]
        var mine = h.facts(of: me).map { NodeFacts($0.facts) } ?? NodeFacts()
        mine.roles = d.roles
        mine.ephemeral = d.ephemeral
        mine.nfsGroup = d.nfsGroup
        mine.excluded = options.placementBug == .forgetExcluded ? false : d.excluded
        mine.full = full ?? placementWork.stores[i].full
        out[me] = mine
        return out
    }

    /// Node `i`'s placement pass: every content it knows of and does not hold decided again
    /// (`reevaluatePlacement`), as if it were not full unless it is over its cap; then its full
    /// flag (a change stated at once): over its cap, or a content it is a target for does not fit
    /// in its room; then eviction.
    func placementPass(_ i: Int, evict: Bool) {
        let overCap = overCapBytes(i) > 0
        let facts = placementFacts(i, full: overCap)
        var refused = false
        let me = nodes[i].id
        let manifest = nodes[i].gossip!.manifest
        for c in placementWork.order {
            let s = placementWork.stores[i]
            guard s.held[c] == nil, s.fetching[c] == nil, !s.evicted.contains(c), let item = placementWork.contents[c],
                  manifest.contains(item.ref) else { continue }
            // The running node never fetches its own put again (`reevaluatePlacement`), even
            // once it dropped it and is a target again: modelled only as a bug.
            if item.origin == i && options.placementBug == .originNeverRefetches { continue }
            if options.placementBug == .noReevaluation {
                guard placementWork.stores[i].decided.insert(c).inserted else { continue }
            }
            let room = options.placementBug == .ignoreRoom ? nil : roomBytes(i)
            let broadcast = options.placementBug == .ignoreBroadcastFlag ? false : item.broadcast
            let d = Placement.fetchDecision(c, types: [item.type], broadcast: broadcast, me: me, alive: facts,
                                            policy: placementWork.policy, sizeBytes: item.sizeBytes, roomBytes: room)
            if d == .full && !overCap { refused = true }
            guard d == .fetch else { continue }
            startFetch(i, item)
        }
        if refused { placementWork.metrics.refusedForRoom += 1 }
        if (overCap || refused) != placementWork.stores[i].full {
            placementWork.stores[i].full = overCap || refused
            writeFactsIfChanged(i, force: false)
        }
        if evict { evictionPass(i, facts: placementFacts(i)) }
    }

    /// Asks the sources `Placement.fetchSources` lists (the origin, then every recorded holder),
    /// in that order, then the alive members still receiving it (chunk discovery: they serve
    /// what they have): the one that can finish soonest serves it, a receiver once its own
    /// fetch is done (a coarse model of swarming: no chunk interleaving).
    func startFetch(_ i: Int, _ item: SimContent) {
        let c = item.contentID
        let sources = Placement.fetchSources(hints: [nodes[item.origin].id], holders: placementWork.holdings[i].holders(of: c),
                                             me: nodes[i].id).compactMap { idIndex[$0] }
        let receiving = nodes.indices.filter { $0 != i && placementWork.stores[$0].fetching[c] != nil && !sources.contains($0) }
        var best: (j: Int, start: Int64)? = nil
        for j in sources + receiving {
            guard nodes[j].up, linkUp(i, j) else { continue }
            var ready = placementWork.stores[j].uploadFreeAt
            if placementWork.stores[j].held[c] == nil {
                guard let f = placementWork.stores[j].fetching[c], let done = placementWork.fetches[f]?.doneAt else { continue }
                ready = max(ready, done)
            }
            let start = max(now, ready)
            if best == nil || start < best!.start { best = (j, start) }
        }
        guard let (j, start) = best else { return }
        // Checkers (b) and (c), at the decision: nothing lands on an excluded node, and a fetch
        // never takes a node over its cap.
        if placementWork.disks[i].excluded {
            placementFlag("n\(i) is excluded from sync but fetches \(c.short) (\(item.type)) from n\(j)")
        }
        let after = usedBytes(i) + placementWork.stores[i].reservedBytes + item.sizeBytes
        if after > placementWork.disks[i].capBytes {
            placementFlag("n\(i) fetches \(c.short) (\(item.sizeBytes >> 20) MiB) to \(after >> 20) MiB used with fetches under way, "
                          + "over its max_disk_usage of \(placementWork.disks[i].capBytes >> 20) MiB")
        }
        let end = start + Int64(Double(item.sizeBytes) / placementWork.disks[j].uploadBytesPerS * 1e9)
        placementWork.stores[j].uploadFreeAt = end
        let id = placementWork.nextFetchID
        placementWork.nextFetchID += 1
        placementWork.fetches[id] = SimFetch(node: i, content: c, source: j, sizeBytes: item.sizeBytes,
                                             nodeBootedAt: nodes[i].bootedAt, sourceBootedAt: nodes[j].bootedAt,
                                             doneAt: end + fetchRoundTripNs)
        placementWork.stores[i].fetching[c] = id
        if placementWork.stores[i].droppedNotTarget.contains(c) { placementWork.metrics.refetchesAfterDrop += 1 }
        placementWork.stores[i].reservedBytes += item.sizeBytes
        placementWork.metrics.fetchesStarted += 1
        scheduleAction(.placement(.fetchDone(id)), atNs: end + fetchRoundTripNs)
    }

    func fetchDone(_ id: Int) {
        guard let f = placementWork.fetches.removeValue(forKey: id) else { return }
        let i = f.node, j = f.source, c = f.content
        // The receiver crashed since (its store, reservation included, is gone).
        guard nodes[i].up, nodes[i].bootedAt == f.nodeBootedAt, placementWork.stores[i].fetching[c] == id else { return }
        placementWork.stores[i].fetching[c] = nil
        placementWork.stores[i].reservedBytes -= f.sizeBytes
        guard nodes[j].up, nodes[j].bootedAt == f.sourceBootedAt, placementWork.stores[j].held[c] != nil else {
            placementWork.metrics.fetchesFailed += 1
            return
        }
        placementWork.stores[i].held[c] = f.sizeBytes
        placementWork.metrics.fetchesCompleted += 1
        if j != placementWork.contents[c]?.origin { placementWork.metrics.fetchesFromOthers += 1 }
        placementWork.pendingHeld[i].insert(c)
    }

    /// `MeshNode.runEvictionPass`: what it holds complete (none pinned: a download in progress
    /// is not held yet), the facts, the holder records, how far it is over its cap.
    func evictionPass(_ i: Int, facts: [NodeID: NodeFacts]) {
        let s = placementWork.stores[i]
        guard !s.held.isEmpty else { return }
        var held = [Eviction.Held]()
        var holders = [ContentID: Set<NodeID>]()
        for (c, size) in s.held {
            guard let item = placementWork.contents[c] else { continue }
            var h = Eviction.Held(contentID: c, type: item.type, sizeBytes: size, originatedHere: item.origin == i,
                                  lastWantedMs: item.createdAtMs)
            h.broadcast = item.broadcast
            held.append(h)
            holders[c] = placementWork.holdings[i].holders(of: c)
            if options.placementBug == .trustEveryHolder { holders[c]!.formUnion(facts.keys) }
        }
        let d = Eviction.decide(me: nodes[i].id, held: held, policy: placementWork.policy, alive: facts, holders: holders,
                                overCapBytes: overCapBytes(i))
        let release = d.release
        guard !release.isEmpty else { return }
        for (c, reason) in release {
            // Checker (d): a drop or an eviction never takes a content from one complete copy to none.
            let others = completeCopies(c).subtracting([i])
            if others.isEmpty {
                let counted = (holders[c] ?? []).compactMap { idIndex[$0] }.filter { $0 != i }.sorted()
                // A holder it counted crashed (with its copy) too recently for this node to know.
                let justCrashed = counted.filter { !nodes[$0].up && now - nodes[$0].crashedAt < detectionBoundNs }
                if !justCrashed.isEmpty && options.placementBug == .none {
                    placementWork.metrics.lastCopyDroppedOnCrashedHolder += 1
                    log("n\(i) let go of the last copy of \(c.short) on the records of \(justCrashed.map { "n\($0)" }), crashed "
                        + "\(justCrashed.map { Double(now - nodes[$0].crashedAt) / 1e9 }) s before")
                } else {
                    placementFlag("n\(i) let go of the last complete copy of \(c.short) (\(reason.rawValue)); its holder records "
                                  + "named \(counted.map { "n\($0)" })" + (justCrashed.isEmpty ? "" : ", of which \(justCrashed.map { "n\($0)" }) had just crashed"))
                }
            }
            placementWork.stores[i].held[c] = nil
            switch reason {
            case .evicted:
                placementWork.stores[i].evicted.insert(c)
                placementWork.metrics.evicted += 1
            case .notTarget:
                placementWork.stores[i].droppedNotTarget.insert(c)
                placementWork.metrics.droppedNotTarget += 1
            }
        }
        log("n\(i) releases \(release.count) contents")
        placementWork.pendingDropped[i].formUnion(release.map(\.0))
    }

    /// The up nodes that hold `c` complete (ground truth).
    func completeCopies(_ c: ContentID) -> Set<Int> {
        Set(nodes.indices.filter { nodes[$0].up && placementWork.stores[$0].held[c] != nil })
    }

    func placementFlag(_ s: String) {
        if placementWork.safety.count < 50 { placementWork.safety.append("at \(Double(now) / 1e9)s: \(s)") }
    }
}

