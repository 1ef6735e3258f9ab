#if canImport(Glibc)
import Glibc
/// libm's natural logarithm (the simulator has a `log` of its own, for messages).
@inline(__always) func naturalLog(_ x: Double) -> Double { Glibc.log(x) }
#elseif canImport(Darwin)
import Darwin
@inline(__always) func naturalLog(_ x: Double) -> Double { Darwin.log(x) }
#endif
import Gossip
import Sync

/// Runs N nodes of the real `GossipNode` code in one process, on virtual time that
/// jumps from event to event. Everything random is drawn from one seeded generator in
/// a fixed order, so one seed gives the same run, event for event.
public final class Simulator {
    public let options: SimOptions
    var rng: SplitMix64
    var now: Int64 = 0
    var heap = EventHeap()
    var seq: UInt64 = 0
    let config: GossipConfig

    struct SimNode {
        var gossip: GossipNode?
        var id: NodeID
        var address: PeerAddress
        var started = false
        var left = false
        var vanished = false
        var everDown = false
        var crashedAt: Int64 = -1
        var durableIncarnation: UInt64 = 0
        var durableEntries: [EntryRef: ManifestEntry] = [:]
        var durablePeers: [NodeID: MemberSnapshot] = [:]
        var nextSequence: UInt64 = 0
        var timerGen = [UInt64](repeating: 0, count: TimerID.allCases.count)
        /// Fork evidence as the shell keeps it (from `forkDetected`), restored at restart.
        var durableForks: [(ManifestEntry, ManifestEntry)] = []
        var bootedAt: Int64 = -1
        /// Restarts on a new address so far (`restartNewAddress`).
        var moves = 0
        /// Stored (not computed from `gossip`) so hot paths never copy the node.
        var up = false
        /// The versions workload: the node's view of every name, fed as its shell feeds it (its
        /// own entries, every `persistEntry`, rebuilt from the durable entries at a restart).
        var catalog = Catalog()
        /// How far the node's wall clock is off real time (versions workload).
        var clockSkewMs: Int64 = 0
    }

    var nodes: [SimNode] = []
    var addrIndex: [PeerAddress: Int] = [:]
    var idIndex: [NodeID: Int] = [:]
    var seedAddresses: [PeerAddress] = []

    // Network state
    var group: [UInt8] = []
    var partition: PartitionKind? = nil
    var lastHealAt: Int64 = .min / 2
    var forkDelivered = false
    public var debugNode: Int? = nil
    var lastStreamDelivery: [Int: Int64] = [:]

    // Actions
    enum Action { case item, partition(PartitionKind), heal, crash, restart(Int), leave, join, vanish, nemesis, crashMid, viewCheck, compact(Int, UInt64), placement(PlacementStep), spot(SpotStep) }
    var actions: [Action] = []

    // Workload and oracle
    var genuine: [EntryRef: ManifestEntry] = [:]
    var created: [EntryRef: Int64] = [:]
    var nemesisEntries: Set<ManifestEntry> = []
    var forkVariants: (ManifestEntry, ManifestEntry)? = nil
    let nemesisID: NodeID
    let outsiderID: NodeID
    let nemesisAddress = PeerAddress(host: "10.255.255.1", port: 7946)
    var nemesisCounter: UInt64 = 0
    var nemesisJoined = false
    var lastDatagram: (to: Int, bytes: [UInt8])? = nil
    var itemCounter = 0
    var versionWork = VersionWorkload()
    var compactionWork = CompactionWork()
    var placementWork = PlacementWork()
    var spotWork = SpotWork()

    // Metrics
    public internal(set) var metrics = SimMetrics()
    var latencies: [Int64] = []
    var phaseEnd: Int64
    var idleWindow: (Int64, Int64)? = nil
    var idleBytes: UInt64 = 0
    var crashWatch: [Int: (at: Int64, seen: Set<Int>)] = [:]
    var detectionMs: [Double] = []
    var delivered: [EntryRef: Int] = [:]
    public private(set) var log: [String] = []
    var traceDigest: UInt64 = 0
    var eventCount: UInt64 = 0

    public init(options o: SimOptions) {
        options = o
        rng = SplitMix64(seed: o.seed)
        var c = GossipConfig()
        c.antiEntropyIntervalMs = o.antiEntropyIntervalMs
        c.probeIntervalMs = o.probeIntervalMs
        // A probe timeout must cover a round trip on the slowest link.
        c.probeTimeoutMs = max(c.probeTimeoutMs, Int64(2 * (o.latencyMs + o.jitterMs)) + 50)
        if c.probeTimeoutMs * 2 > c.probeIntervalMs { c.probeIntervalMs = c.probeTimeoutMs * 5 / 2 }
        config = c
        phaseEnd = Int64(o.durationS * 1e9)
        nemesisID = SimCrypto.nodeID(seed: o.seed ^ 0xBAD, index: 1)
        outsiderID = SimCrypto.nodeID(seed: o.seed ^ 0xBAD, index: 2)
        let joiners = Int((o.joinsPerMin * o.durationS / 60).rounded(.up))
            + (o.spotOn ? Int((o.spotKillsPerMin * o.durationS / 60 * 1.5).rounded(.up)) + 4 : 0)  // spot replacements
        let total = o.nodes + joiners
        for i in 0..<total {
            let id = SimCrypto.nodeID(seed: o.seed, index: i)
            let addr = PeerAddress(host: "10.\(i >> 16).\((i >> 8) & 255).\(i & 255)", port: 7946)
            nodes.append(SimNode(id: id, address: addr))
            addrIndex[addr] = i
            idIndex[id] = i
        }
        group = [UInt8](repeating: 0, count: total)
        seedAddresses = Array(nodes.prefix(min(3, o.nodes)).map(\.address))
        if o.itemsStopBeforeEndS >= 60 {
            let end = o.durationS
            idleWindow = (Int64((end - o.itemsStopBeforeEndS + 30) * 1e9), Int64(end * 1e9))
        }
        setUpVersionWorkload()
        setUpPlacement()
        setUpSpot()
    }

    lazy var trust: TrustPolicy = .keys(Set(nodes.map(\.id) + [nemesisID]))

    func log(_ s: @autoclosure () -> String) {
        if options.verbose { log.append("[\(Double(now) / 1e9)s] \(s())") }
    }

    // MARK: - Scheduling

    func schedule(_ e: Event) {
        var e = e
        seq += 1
        e.seq = seq
        heap.push(e)
    }

    func scheduleAction(_ a: Action, atS t: Double) {
        actions.append(a)
        schedule(Event(t: Int64(t * 1e9), seq: 0, kind: .action, node: -1, aux: Int32(actions.count - 1)))
    }

    func scheduleAction(_ a: Action, atNs t: Int64) {
        actions.append(a)
        schedule(Event(t: t, seq: 0, kind: .action, node: -1, aux: Int32(actions.count - 1)))
    }

    /// An exponential inter-arrival time for a rate per minute.
    func nextGap(perMin: Double) -> Double { -naturalLog(max(1e-12, 1 - rng.unit())) * 60 / perMin }

    // MARK: - Run

    /// Runs the fault phase then the liveness phase and returns the result.
    public func run() -> SimResult {
        let o = options
        let startSeeds = seedAddresses
        // Boot the initial nodes.
        let peers: [MemberSnapshot] = o.preformed ? (0..<o.nodes).map { j in
            MemberSnapshot(node: nodes[j].id, address: nodes[j].address, state: .alive, incarnation: 0, name: name(of: j), role: role(of: j),
                           credential: [], streamOnly: isTunnelOnly(j), lastHeard: nil, rttNanoseconds: nil, stateSince: .zero, isSelf: false)
        } : []
        for i in 0..<o.nodes {
            boot(i, restore: GossipDurableState(lastIncarnation: 0, knownPeers: peers, entries: []), seeds: o.preformed ? [] : startSeeds)
        }
        // Workload and faults.
        if o.itemsPerS > 0 { scheduleAction(.item, atS: o.warmupS + rng.unit() / o.itemsPerS) }
        // Partitions are laid out so that the last one is still active at the end of the
        // fault phase: the final heal then really heals something.
        let span = Double(o.partitions.count) * (o.partitionS + o.partitionGapS) - o.partitionGapS
        var t = max(2, o.durationS - span)
        for k in o.partitions where t + o.partitionS <= o.durationS + 1e-9 {
            scheduleAction(.partition(k), atS: t)
            if t + o.partitionS < o.durationS - 1e-9 { scheduleAction(.heal, atS: t + o.partitionS) }
            t += o.partitionS + o.partitionGapS
        }
        if o.crashesPerMin > 0 { scheduleAction(.crash, atS: 2 + nextGap(perMin: o.crashesPerMin)) }
        if o.leavesPerMin > 0 { scheduleAction(.leave, atS: 2 + nextGap(perMin: o.leavesPerMin)) }
        if o.joinsPerMin > 0 { scheduleAction(.join, atS: 2 + nextGap(perMin: o.joinsPerMin)) }
        if o.vanishPerMin > 0 { scheduleAction(.vanish, atS: 2 + nextGap(perMin: o.vanishPerMin)) }
        if o.nemesis { scheduleAction(.nemesis, atS: 1.5) }
        if o.crashAtMid > 0 { scheduleAction(.crashMid, atS: o.durationS / 2) }
        if o.names > 0 { scheduleAction(.viewCheck, atS: o.warmupS + 1) }
        if o.placementOn { startPlacement() }
        if o.spotOn { startSpot() }

        runUntil(phaseEnd)
        // Final heal: the liveness phase.
        heal()
        let checkEveryNs: Int64 = o.nodes > o.fullCheckMaxNodes ? 5_000_000_000 : 250_000_000
        let settleEnd = phaseEnd + Int64(o.settleS * 1e9)
        var converged: Int64? = nil
        var itemsConverged: Int64? = nil
        var tt = phaseEnd
        while tt <= settleEnd {
            runUntil(tt)
            if itemsConverged == nil && livenessViolations(limit: 1, itemsOnly: true).isEmpty { itemsConverged = tt - phaseEnd }
            let lv = livenessViolations(limit: 1) + spotLivenessViolations(limit: 1)
            if lv.isEmpty { converged = tt - phaseEnd; break }
            if o.verbose && (tt - phaseEnd) % 1_000_000_000 == 0 { log("not converged: \(lv[0])") }
            tt += checkEveryNs
        }
        var r = SimResult(options: o)
        r.safetyViolations = safetyViolations() + spotSafetyViolations()
        r.livenessViolations = converged == nil ? livenessViolations(limit: 10) + spotLivenessViolations(limit: 10) : []
        r.convergenceAfterHealMs = converged.map { Double($0) / 1e6 }
        r.itemsConvergenceAfterHealMs = itemsConverged.map { Double($0) / 1e6 }
        finishVersionMetrics()
        metrics.placement = placementWork.metrics
        r.metrics = metrics
        r.metrics.items = genuine.count
        latencies.sort()
        func pct(_ p: Double) -> Double {
            latencies.isEmpty ? 0 : Double(latencies[min(latencies.count - 1, Int(Double(latencies.count - 1) * p))]) / 1e6
        }
        r.latencyP50Ms = pct(0.5); r.latencyP99Ms = pct(0.99); r.latencyMaxMs = latencies.last.map { Double($0) / 1e6 } ?? 0
        r.deliveries = latencies.count
        if let (a, b) = idleWindow {
            let live = nodes.filter(\.up).count
            r.idleBytesPerNodePerS = Double(idleBytes) / Double(max(1, live)) / (Double(b - a) / 1e9)
        }
        r.detectionMs = detectionMs.sorted()
        r.nodesEver = nodes.filter(\.started).count
        r.liveAtEnd = nodes.filter { $0.up }.count
        r.log = log
        r.traceDigest = traceDigest
        r.events = eventCount
        return r
    }

    func runUntil(_ end: Int64) {
        while let t = heap.peekTime, t <= end {
            let e = heap.pop()!
            now = e.t
            // Fold every event into the trace digest: two runs agree event for event iff
            // their digests (and event counts) agree. For messages, the 8 bytes at the
            // start of the signature stand for the whole content (the fake signature is a
            // hash of it).
            var x = UInt64(bitPattern: e.t) ^ UInt64(e.kind.rawValue) << 60 ^ UInt64(UInt32(bitPattern: e.node)) << 32 ^ UInt64(e.bytes.count)
            if e.bytes.count >= 64 {
                var w: UInt64 = 0
                for k in (e.bytes.count - 64)..<(e.bytes.count - 56) { w = w << 8 | UInt64(e.bytes[k]) }
                x ^= SplitMix64.mix(w)
            }
            traceDigest = SplitMix64.mix(traceDigest ^ x)
            eventCount += 1
            switch e.kind {
            case .deliver: deliver(e)
            case .timer: fireTimer(e)
            case .action: perform(actions[Int(e.aux)])
            }
        }
        now = end
    }

    // MARK: - Nodes

    func name(of i: Int) -> String { "n\(i)" }
    func role(of i: Int) -> String { i < 3 ? "seed" : "worker" }

    func boot(_ i: Int, restore: GossipDurableState, seeds: [PeerAddress]) {
        var c = config
        c.name = name(of: i)
        c.role = role(of: i)
        c.advertiseStreamOnly = isTunnelOnly(i)
        var g = GossipNode(config: c, signer: SimSigner(nodeID: nodes[i].id), verifier: SimVerifier(), trust: trust,
                           address: nodes[i].address, seed: options.seed &+ UInt64(i) &* 7919 &+ UInt64(now), restore: restore,
                           now: Instant(nanoseconds: now))
        nodes[i].started = true
        nodes[i].bootedAt = now
        if options.names > 0 { nodes[i].catalog = Catalog(restore.entries) }
        let d = g.start(seeds: seeds, now: Instant(nanoseconds: now))
        nodes[i].gossip = g
        nodes[i].up = true
        process(i, d)
        startCompactionTimer(i)
        if options.placementOn { placementBooted(i) }
        if options.spotOn { spotBooted(i) }
    }

    func process(_ i: Int, _ ds: [Directive]) {
        var touched = Set<String>()
        defer { if !touched.isEmpty { checkNoResurrection(i, names: touched) } }
        for d in ds {
            switch d {
            case let .send(to, bytes, via):
                if options.verbose, debugNode != nil, i == 0, now >= phaseEnd, bytes.count > 3 {
                    log("send type \(bytes[3]) n\(i) -> \(addrIndex[to].map { "n\($0)" } ?? "?") via \(via) \(bytes.count)B")
                }
                if now < phaseEnd {
                    metrics.messages += 1
                    metrics.bytes += UInt64(bytes.count)
                }
                metrics.messagesTotal += 1
                if let (a, b) = idleWindow, now >= a, now < b { idleBytes += UInt64(bytes.count) }
                route(from: i, to: to, bytes: bytes, stream: via == .stream)
            case let .setTimer(id, at):
                nodes[i].timerGen[Int(id.rawValue)] &+= 1
                schedule(Event(t: max(now, at.nanoseconds), seq: 0, kind: .timer, node: Int32(i), aux: Int32(id.rawValue),
                               gen: nodes[i].timerGen[Int(id.rawValue)]))
            case let .cancelTimer(id):
                nodes[i].timerGen[Int(id.rawValue)] &+= 1
            case let .persistEntry(e):
                let ref = EntryRef(origin: e.origin, sequence: e.sequence)
                nodes[i].durableEntries[ref] = e
                if options.placementOn { placementPersisted(i, e) }
                if options.names > 0 {
                    nodes[i].catalog.insert(e)
                    if e.put != nil || e.tombstone != nil { touched.insert(e.name) }
                    if compacting { checkNotCompactedBefore(i, e) }
                }
                if let c = created[ref], genuine[ref] == e {
                    latencies.append(now - c)
                    if now - c > 1_000_000_000 { log("late delivery n\(i) \(e.name) after \((now - c) / 1_000_000) ms") }
                    delivered[ref, default: 0] += 1
                }
            case let .persistIncarnation(v):
                nodes[i].durableIncarnation = max(nodes[i].durableIncarnation, v)
            case .fetch:
                metrics.fetches += 1
            case let .compacted(es):
                // The shell deletes what its origin compacted, from its store and its views.
                for e in es {
                    nodes[i].durableEntries[e.ref] = nil
                    if options.names > 0 {
                        nodes[i].catalog.remove(e)
                        if e.put != nil || e.tombstone != nil { touched.insert(e.name) }
                    }
                }
                if options.names > 0 { checkCompacted(i, es) }
            case let .membershipChanged(t):
                membershipChanged(at: i, t)
            case let .forkDetected(a, b):
                nodes[i].durableForks.append((a, b))
                metrics.forksReported += 1
            case let .rejected(reason, from):
                if options.verbose, debugNode == i { log("n\(i) rejected \(reason) from \(addrIndex[from].map { "n\($0)" } ?? "?")") }
                metrics.rejected[reason.rawValue, default: 0] += 1
            @unknown default:
                // A directive this simulator does not model yet (e.g. one added to Gossip later).
                break
            }
        }
    }

    func membershipChanged(at i: Int, _ t: MemberTransition) {
        // As the node's shell persists a member: address, state, incarnation, name and role.
        let k = idIndex[t.node]
        nodes[i].durablePeers[t.node] = MemberSnapshot(node: t.node, address: t.address, state: t.to, incarnation: t.incarnation,
                                                        name: k.map(name(of:)) ?? "", role: k.map(role(of:)) ?? "", credential: [],
                                                        streamOnly: false, lastHeard: nil, rttNanoseconds: nil, stateSince: .zero, isSelf: false)
        guard let j = k else { return }
        if options.verbose && (now >= phaseEnd - 10_000_000_000 || crashWatch[j] != nil) { log("n\(i): n\(j) \(t.from.map(\.description) ?? "new") -> \(t.to) inc \(t.incarnation)") }
        // Transitions within a grace window after a heal or after the member restarted are
        // consequences of that fault, not false positives.
        let grace = Int64(config.suspicionTimeoutsMs(members: nodes.count).max) * 1_000_000
        let reachable = nodes[j].up && partition == nil && nodes[i].up && now - lastHealAt > grace
            && (nodes[j].bootedAt < 0 || now - nodes[j].bootedAt > grace) && now - nodes[i].bootedAt > grace
        if t.to == .suspect && reachable { metrics.falseSuspicions += 1 }
        if t.to == .dead && reachable {
            metrics.falseDeaths += 1
            log("FALSE DEATH: n\(i) marked n\(j) dead")
        }
        if t.to == .dead || t.to == .left, var w = crashWatch[j] {
            w.seen.insert(i)
            crashWatch[j] = w
            let observers = nodes.indices.filter { nodes[$0].up && $0 != j }
            if observers.allSatisfy({ w.seen.contains($0) }) {
                detectionMs.append(Double(now - w.at) / 1e6)
                crashWatch[j] = nil
            }
        }
    }

    func fireTimer(_ e: Event) {
        let i = Int(e.node)
        guard nodes[i].up, nodes[i].timerGen[Int(e.aux)] == e.gen, let id = TimerID(rawValue: UInt8(e.aux)) else { return }
        let d = nodes[i].gossip!.onTimer(id, now: Instant(nanoseconds: now))
        process(i, d)
    }

    // MARK: - Network

    func isTunnelOnly(_ i: Int) -> Bool { i < options.nodes && i >= options.nodes - options.streamOnlyNodes }

    func linkUp(_ a: Int, _ b: Int) -> Bool {
        guard let p = partition else { return true }
        switch p {
        case .asymmetric: return !(group[a] == 0 && group[b] == 1)
        default: return group[a] == group[b]
        }
    }

    func delayNs() -> Int64 {
        let j = options.jitterMs > 0 ? (rng.unit() * 2 - 1) * options.jitterMs : 0
        return Int64(max(0.05, options.latencyMs + j) * 1e6)
    }

    func route(from i: Int, to addr: PeerAddress, bytes: [UInt8], stream: Bool) {
        guard let j = addrIndex[addr] else { return }
        if i >= 0 && !linkUp(i, j) { metrics.droppedByPartition += 1; return }
        if stream {
            var t = now + delayNs()
            let key = i &* 1_000_003 &+ j
            if let last = lastStreamDelivery[key], last >= t { t = last + 1 }
            lastStreamDelivery[key] = t
            schedule(Event(t: t, seq: 0, kind: .deliver, node: Int32(j), from: Int32(i), stream: true, bytes: bytes))
            return
        }
        if options.streamOnlyNodes > 0 && (isTunnelOnly(j) || (i >= 0 && isTunnelOnly(i))) {
            metrics.datagramsToTunnelOnly += 1
            return
        }
        if options.loss > 0 && rng.unit() < options.loss { metrics.droppedByLoss += 1; return }
        schedule(Event(t: now + delayNs(), seq: 0, kind: .deliver, node: Int32(j), from: Int32(i), stream: false, bytes: bytes))
        if options.duplicate > 0 && rng.unit() < options.duplicate {
            metrics.duplicated += 1
            schedule(Event(t: now + delayNs(), seq: 0, kind: .deliver, node: Int32(j), from: Int32(i), stream: false, bytes: bytes))
        }
        if i >= 0 && options.nemesis && rng.below(16) == 0 { lastDatagram = (j, bytes) }
    }

    func deliver(_ e: Event) {
        let j = Int(e.node)
        guard nodes[j].up else { return }
        let from = e.from >= 0 ? nodes[Int(e.from)].address : nemesisAddress
        if e.aux == 1 { forkDelivered = true }
        if options.verbose, let w = debugNode, (j == w || Int(e.from) == w), now >= phaseEnd, e.bytes.count > 3, e.bytes[3] >= 1 {
            log("deliver type \(e.bytes[3]) n\(e.from) -> n\(j) \(e.bytes.count)B")
        }
        let n = Instant(nanoseconds: now)
        let d = e.stream ? nodes[j].gossip!.onFrame(e.bytes, from: from, now: n) : nodes[j].gossip!.onDatagram(e.bytes, from: from, now: n)
        process(j, d)
    }

    // MARK: - Actions

    func upHonest(excludingSeeds: Bool = false) -> [Int] {
        nodes.indices.filter { nodes[$0].up && !(excludingSeeds && $0 < 3) }
    }

    func perform(_ a: Action) {
        let inPhase = now < phaseEnd
        switch a {
        case .item:
            guard inPhase else { return }
            if options.itemsStopBeforeEndS <= 0 || Double(now) / 1e9 < options.durationS - options.itemsStopBeforeEndS {
                if options.placementOn { placementPut() } else if options.names > 0 { versionOperation() } else { createItem() }
            }
            scheduleAction(.item, atNs: now + Int64(1e9 / options.itemsPerS))
        case let .partition(kind):
            guard inPhase else { return }
            applyPartition(kind)
        case .heal:
            heal()
        case .crash:
            guard inPhase else { return }
            let c = upHonest()
            if c.count > 2 {
                let i = c[rng.below(c.count)]
                crash(i)
                let down = options.restartNewAddress ? options.downS * (0.1 + 1.9 * rng.unit()) : options.downS
                scheduleAction(.restart(i), atS: Double(now) / 1e9 + down)
            }
            scheduleAction(.crash, atS: Double(now) / 1e9 + nextGap(perMin: options.crashesPerMin))
        case let .restart(i):
            guard !nodes[i].up, !nodes[i].vanished, !nodes[i].left else { return }
            let n = nodes[i]
            let restore = GossipDurableState(lastIncarnation: n.durableIncarnation,
                                             knownPeers: n.durablePeers.keys.sorted().map { n.durablePeers[$0]! },
                                             entries: n.durableEntries.keys.sorted { ($0.origin, $0.sequence) < ($1.origin, $1.sequence) }.map { n.durableEntries[$0]! },
                                             forks: n.durableForks)
            if options.restartNewAddress && i >= 3 { relocate(i) }
            log("restart n\(i) inc>\(n.durableIncarnation) at \(nodes[i].address)")
            boot(i, restore: restore, seeds: seedAddresses)
        case .leave:
            guard inPhase else { return }
            let c = upHonest(excludingSeeds: true)
            if c.count > 3 {
                let i = c[rng.below(c.count)]
                let d = nodes[i].gossip!.leave(now: Instant(nanoseconds: now))
                process(i, d)
                nodes[i].gossip = nil
        nodes[i].up = false
                nodes[i].up = false
                nodes[i].left = true
                log("n\(i) leaves")
            }
            scheduleAction(.leave, atS: Double(now) / 1e9 + nextGap(perMin: options.leavesPerMin))
        case .join:
            guard inPhase else { return }
            if let i = nodes.indices.first(where: { !nodes[$0].started }) {
                log("n\(i) joins")
                boot(i, restore: GossipDurableState(), seeds: seedAddresses)
            }
            scheduleAction(.join, atS: Double(now) / 1e9 + nextGap(perMin: options.joinsPerMin))
        case .vanish:
            guard inPhase else { return }
            let c = upHonest(excludingSeeds: true)
            if c.count > 3 {
                let i = c[rng.below(c.count)]
                crash(i)
                nodes[i].vanished = true
                log("n\(i) vanishes")
            }
            scheduleAction(.vanish, atS: Double(now) / 1e9 + nextGap(perMin: options.vanishPerMin))
        case .nemesis:
            guard inPhase else { return }
            nemesisStep()
            scheduleAction(.nemesis, atS: Double(now) / 1e9 + 0.5 + rng.unit() * 2)
        case .crashMid:
            let c = upHonest(excludingSeeds: true)
            for _ in 0..<options.crashAtMid where c.count > 3 {
                let i = c[rng.below(c.count)]
                if nodes[i].up {
                    crash(i)
                    nodes[i].vanished = true
                }
            }
        case .viewCheck:
            guard inPhase else { return }
            checkVersionViews()
            scheduleAction(.viewCheck, atNs: now + 1_000_000_000)
        case let .compact(i, g):
            compactionTimerFired(i, generation: g)
        case let .placement(step):
            placementStep(step)
        case let .spot(step):
            spotStep(step)
        }
    }

    /// Gives a down node a new host and port: datagrams and frames to its old address are lost
    /// from now on, as to a host that went away.
    func relocate(_ i: Int) {
        nodes[i].moves += 1
        metrics.relocations += 1
        let k = nodes[i].moves
        let addr = PeerAddress(host: "10.\(64 + (k - 1) % 64).\((i >> 8) & 255).\(i & 255)", port: 7946 &+ UInt16(k % 1000))
        addrIndex[nodes[i].address] = nil
        addrIndex[addr] = i
        nodes[i].address = addr
    }

    func crash(_ i: Int) {
        log("crash n\(i)")
        nodes[i].gossip = nil
        nodes[i].up = false
        nodes[i].everDown = true
        nodes[i].crashedAt = now
        for k in nodes[i].timerGen.indices { nodes[i].timerGen[k] &+= 1 }
        crashWatch[i] = (now, [])
        if options.placementOn { placementCrashed(i) }
        if options.spotOn { spotCrashed(i) }
    }

    func createItem() {
        let c = upHonest()
        guard !c.isEmpty else { return }
        let i = c[rng.below(c.count)]
        nodes[i].nextSequence += 1
        itemCounter += 1
        let cid = ContentID(digest: Bytes32(w0: rng.next(), w1: rng.next(), w2: rng.next(), w3: rng.next()))
        let e = ManifestEntry(origin: nodes[i].id, sequence: nodes[i].nextSequence, contentID: cid, sizeBytes: UInt64(1 + rng.below(1 << 30)),
                              chunkSizeBytes: 4 << 20, type: .npz, createdAtMs: 1_700_000_000_000 + now / 1_000_000,
                              name: "item-\(itemCounter).npz").signed(by: SimSigner(nodeID: nodes[i].id))
        let ref = EntryRef(origin: e.origin, sequence: e.sequence)
        genuine[ref] = e
        created[ref] = now
        nodes[i].durableEntries[ref] = e
        let d = nodes[i].gossip!.onLocalEntry(e, now: Instant(nanoseconds: now))
        process(i, d)
    }

    func applyPartition(_ k: PartitionKind) {
        let n = nodes.count
        for i in 0..<n { group[i] = 0 }
        var idx = Array(0..<n)
        idx.shuffle(using: &rng)
        switch k {
        case .symmetric, .asymmetric:
            for i in idx.prefix(n / 2) { group[i] = 1 }
        case .isolateOne:
            group[idx[0]] = 1
        case .majorityMinority:
            for i in idx.prefix(max(1, (n - 1) / 2 - rng.below(max(1, n / 4)))) { group[i] = 1 }
        }
        partition = k
        metrics.partitions += 1
        log("partition \(k.rawValue)")
    }

    func heal() {
        if partition != nil { log("heal"); lastHealAt = now }
        partition = nil
    }
}
