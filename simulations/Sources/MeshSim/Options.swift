import Gossip

/// Which workload and fault schedule to run.
public enum Scenario: String, CaseIterable, Sendable {
    case spread, partitionHeal = "partition-heal", churn, scale, swarm, detect, relocate, versions
    /// Content placement (`Simulator+Placement.swift`): items with types and sizes, mixed roles,
    /// holders crashing with their disk, nodes filling up to their cap.
    case placement
    /// Broadcast puts and `copies: all` types: receivers serve one another.
    case broadcast
    /// Spot nodes (`Simulator+Spot.swift`): ephemeral nodes produce items and are terminated
    /// with and without notice, durable nodes crash and fill; push-to-2 and the outbox.
    case spot
    /// The spot model with every setting drawn from the seed (swarm testing).
    case spotSwarm = "spot-swarm"
}

/// Test only: one broken spot decision each, to see the spot checkers catch it.
public enum SpotBug: String, CaseIterable, Sendable {
    case none
    /// Every member is taken for durable (the ephemeral flag of the facts is not read): an
    /// ephemeral custodian's copy counts as safe.
    case ephemeralHolderSafe = "ephemeral-holder-safe"
    /// A failed ask is never replaced: the shell never ticks the tracker (no timeout, no dead
    /// custodian noticed, a restored outbox never asked again) and drops refusals.
    case neverRetry = "never-retry"
    /// SIGTERM exits at once after the final snapshot, without waiting for anything to be safe.
    case noWaitAtSigterm = "no-wait-at-sigterm"
    /// A host that comes back after kill -9 starts with an empty outbox (not restored).
    case forgetOutbox = "forget-outbox"
    /// SIGTERM keeps the tracker as it is (2 custodians, a 10 s accept timeout) instead of asking
    /// up to 4 at once with a quarter of the deadline to accept: with a deadline of 10 s, an
    /// item whose two custodians died unnoticed is never offered to a third in time.
    case plainShutdown = "plain-shutdown"
}

/// Which placement rules a `placement` or `broadcast` run uses.
public enum PlacementPolicyChoice: String, CaseIterable, Sendable {
    /// `PlacementPolicy.seedDefaults` (`placement: defaults`).
    case seedDefaults = "defaults"
    /// Rules drawn from the seed: roles, `min_copies` 1–3, `max_copies` none or a little above.
    case random
    /// Every type `min_copies` 2, `max_copies` 2, every role: a dead holder must be replaced.
    case tight
}

/// Test only: one broken placement decision each, to see the placement checkers catch it.
public enum PlacementBug: String, CaseIterable, Sendable {
    case none
    /// Targets are evaluated once, when an item first arrives, never again: a dead holder's
    /// place is never taken (the min_copies restore bound).
    case noReevaluation = "no-reevaluation"
    /// A node leaves its own `excluded` flag out of the facts it decides with (excluded nodes).
    case forgetExcluded = "forget-excluded"
    /// Fetches are decided by the full flag alone, as the running node did before it passed sizes and room (the cap).
    case ignoreRoom = "ignore-room"
    /// Eviction is handed holder records that list every alive node (the last copy).
    case trustEveryHolder = "trust-every-holder"
    /// A node never fetches its own put again once it let go of it, as the running node did
    /// before (`MeshNode.reevaluatePlacement` skipped items it originated): a target slot stays
    /// empty (the min_copies restore bound).
    case originNeverRefetches = "origin-never-refetches"
    /// Decisions ignore the broadcast flag (broadcast reach).
    case ignoreBroadcastFlag = "ignore-broadcast-flag"
}

/// How a partition splits the nodes.
public enum PartitionKind: String, CaseIterable, Sendable {
    /// Two random halves that cannot talk at all.
    case symmetric
    /// Group A cannot reach group B, but B still reaches A.
    case asymmetric
    /// One node cut off from everyone.
    case isolateOne = "isolate-one"
    /// A random minority (< n/2) cut off from the majority.
    case majorityMinority = "majority-minority"
}

/// Every knob of one run. `derived(seed:)` fills a scenario's defaults; the run prints
/// all of them so that a run can be reproduced from its printout alone.
public struct SimOptions: Sendable {
    public var scenario: Scenario = .spread
    public var seed: UInt64 = 1
    public var nodes = 25
    /// Virtual seconds of the fault (safety) phase.
    public var durationS: Double = 30
    /// Virtual seconds allowed for the liveness phase after the final heal.
    public var settleS: Double = 60
    public var latencyMs: Double = 100
    public var jitterMs: Double = 5
    public var loss: Double = 0
    public var duplicate: Double = 0
    /// New items per virtual second (whole cluster), from random live nodes.
    public var itemsPerS: Double = 10
    /// Stop creating items this many seconds before the end of the fault phase.
    public var itemsStopBeforeEndS: Double = 0
    /// Items start after this many virtual seconds (the cluster forms first, as Maelstrom's does at init).
    public var warmupS: Double = 1
    public var partitions: [PartitionKind] = []
    /// Seconds each partition lasts, and seconds between two.
    public var partitionS: Double = 8
    public var partitionGapS: Double = 4
    /// Crash (then restart after `downS`) this many random nodes per virtual minute.
    public var crashesPerMin: Double = 0
    public var downS: Double = 6
    /// A restarted node (other than the three seeds) comes back on a new address, a new host
    /// and port (a spot host that returns elsewhere), after a down time drawn uniformly from
    /// 0.1 × … 2 × `downS`: some return before anyone noticed, some long after they were dead.
    public var restartNewAddress = false
    /// Graceful leaves, new joins, and ephemeral nodes that vanish for good, per minute.
    public var leavesPerMin: Double = 0
    public var joinsPerMin: Double = 0
    public var vanishPerMin: Double = 0
    /// A Byzantine injector: garbage, corrupted copies, forged and untrusted entries, a fork.
    public var nemesis = false
    /// Nodes start with everyone's peer list restored (a formed cluster restarting) instead of joining via seeds.
    public var preformed = false
    public var antiEntropyIntervalMs: Int64 = 30_000
    public var probeIntervalMs: Int64 = 800
    /// Crash this many nodes at once at the middle of the run (failure-detection measurement).
    public var crashAtMid = 0
    /// The last this-many initial nodes are reachable only over streams (a TCP tunnel): they
    /// advertise stream-only, and the network drops every datagram to or from them.
    public var streamOnlyNodes = 0
    /// The versions workload (`Simulator+Versions.swift`) when > 0: every new entry is a put or a
    /// tombstone of one of this many names (`v/0` …), so names collide and gain versions from
    /// several origins. 0: every item has a fresh name (the broadcast workload).
    public var names = 0
    /// Versions workload: the share of operations that are tombstones (`rm`) of a name the
    /// writer sees live; one in five of them deletes one version (`rm NAME@N`), the rest the name.
    public var tombstoneFraction: Double = 0.2
    /// Versions workload: while a partition is up, the share of operations that are a pair of
    /// concurrent puts of one name, one on each side.
    public var conflictFraction: Double = 0.3
    /// Versions workload: each node's wall clock is off real time by an amount drawn uniformly
    /// from ± this (ms), fixed per node. Node 1 (when there are 3 or more) is off by − this × 10:
    /// a clock far behind, which the hybrid logical clock must not let lose causality.
    public var clockSkewMs: Double = 0
    /// Versions workload: tombstone compaction (docs/PROTOCOL.md §4.5) when > 0. Each up node
    /// runs `Sync.Compactor.plan` every quarter of this (at least every virtual second, as the
    /// real node does), on its own skewed wall clock, with this as `compact_after`, and writes
    /// what it plans as a local entry. 0: no node compacts.
    public var compactAfterMs: Int64 = 0
    /// Test only: compactions are written without their dependencies, breaking the rule that a
    /// compacted tombstone stays until the receiver holds the compactions it depends on (§4.5),
    /// so that the checkers can be seen to catch the resurrections this allows.
    public var compactionWithoutDependencies = false
    /// Placement (`placement`, `broadcast`): the rules, test-only broken decisions, how often
    /// a random node's other data grows by 3–10 % of its disk (per virtual minute), and the
    /// share of puts with the broadcast flag.
    public var placementPolicy: PlacementPolicyChoice = .seedDefaults
    public var placementBug: PlacementBug = .none
    public var diskFillsPerMin: Double = 0
    public var broadcastFraction: Double = 0
    /// Every node's upload bandwidth (100–400 MiB/s) times this.
    public var uploadScale: Double = 1
    public var placementOn: Bool { scenario == .placement || scenario == .broadcast }
    /// Spot (`spot`, `spot-swarm`; `Simulator+Spot.swift`): nodes 0..<`durableNodes` are durable
    /// (the first three are the gossip seeds), the rest ephemeral. Ephemeral nodes are
    /// terminated `spotKillsPerMin` times a minute, a share `noticeFraction` with notice
    /// (SIGTERM, then death at `shutdownDeadlineS` at the latest), the rest with kill -9, of which
    /// a share `returnFraction` come back with their disk after a few seconds (the rest are gone,
    /// and a new ephemeral node joins in their place). Durable nodes crash `durableCrashesPerMin`
    /// times a minute (down `downS` × 0.5–1.5, copies kept) and fill up `durableFillsPerMin`
    /// times a minute (refusing takes for 3–10 s).
    public var durableNodes = 3
    public var spotKillsPerMin: Double = 0
    public var noticeFraction: Double = 0.5
    public var returnFraction: Double = 0.25
    public var durableCrashesPerMin: Double = 0
    public var durableFillsPerMin: Double = 0
    public var shutdownDeadlineS: Double = 25
    public var spotBug: SpotBug = .none
    public var spotOn: Bool { scenario == .spot || scenario == .spotSwarm }
    /// Only the final membership check is made for clusters larger than this (it is O(n²)).
    public var fullCheckMaxNodes = 200
    public var verbose = false

    public init() {}

    /// The scenario's defaults for this seed (swarm draws every fault setting from it).
    public static func defaults(for s: Scenario, seed: UInt64) -> SimOptions {
        var o = SimOptions()
        o.scenario = s
        o.seed = seed
        switch s {
        case .spread:
            o.nodes = 25; o.durationS = 35; o.warmupS = 5; o.itemsPerS = 10; o.latencyMs = 100; o.jitterMs = 5
        case .partitionHeal:
            o.nodes = 25; o.durationS = 60; o.itemsPerS = 10; o.latencyMs = 100; o.jitterMs = 10
            o.partitions = PartitionKind.allCases; o.partitionS = 8; o.partitionGapS = 4
            o.nemesis = true
        case .churn:
            o.nodes = 25; o.durationS = 120; o.itemsPerS = 5; o.latencyMs = 20; o.jitterMs = 5; o.loss = 0.02
            o.crashesPerMin = 4; o.downS = 10; o.leavesPerMin = 1; o.joinsPerMin = 2; o.vanishPerMin = 1
            o.nemesis = true
        case .scale:
            o.nodes = 1000; o.durationS = 600; o.itemsPerS = 1; o.itemsStopBeforeEndS = 120; o.latencyMs = 20; o.jitterMs = 5
            o.preformed = true; o.settleS = 30
        case .detect:
            o.nodes = 100; o.durationS = 600; o.itemsPerS = 0.2; o.latencyMs = 20; o.jitterMs = 5; o.loss = 0.10
            o.crashAtMid = 1; o.settleS = 30
        case .relocate:
            o.nodes = 12; o.durationS = 60; o.itemsPerS = 5; o.latencyMs = 20; o.jitterMs = 5; o.loss = 0.01
            o.crashesPerMin = 8; o.downS = 4; o.restartNewAddress = true
            o.nemesis = true
        case .versions:
            o.nodes = 12; o.durationS = 50; o.itemsPerS = 4; o.latencyMs = 20; o.jitterMs = 10; o.loss = 0.01
            o.partitions = [.symmetric, .majorityMinority, .asymmetric, .isolateOne, .symmetric]; o.partitionS = 6; o.partitionGapS = 3
            o.crashesPerMin = 2; o.downS = 4
            o.names = 6; o.tombstoneFraction = 0.35; o.conflictFraction = 0.3; o.clockSkewMs = 30_000
            o.antiEntropyIntervalMs = 5_000
            // Shorter than a partition (6 s), and far shorter than the clock skew: a node cut
            // off for the whole partition may bring a deleted version back (§4.5, "The horizon is
            // the only assumption"), which the checkers tell from a broken dependency rule.
            o.compactAfterMs = 4_000
        case .placement:
            o.nodes = 10; o.durationS = 60; o.itemsPerS = 1; o.latencyMs = 10; o.jitterMs = 5
            o.crashesPerMin = 2; o.downS = 12; o.diskFillsPerMin = 6; o.antiEntropyIntervalMs = 5_000
            o.placementPolicy = seed % 2 == 0 ? .seedDefaults : .random
        case .broadcast:
            o.nodes = 8; o.durationS = 40; o.itemsPerS = 0.5; o.latencyMs = 10; o.jitterMs = 5
            o.crashesPerMin = 0; o.diskFillsPerMin = 2; o.antiEntropyIntervalMs = 5_000; o.uploadScale = 0.25
            o.placementPolicy = .random; o.broadcastFraction = 0.7
        case .spot:
            o.nodes = 14; o.durableNodes = 3; o.durationS = 60; o.settleS = 150; o.itemsPerS = 0; o.latencyMs = 10; o.jitterMs = 5
            o.spotKillsPerMin = 10; o.noticeFraction = 0.5; o.returnFraction = 0.25
            o.durableCrashesPerMin = 3; o.downS = 8; o.durableFillsPerMin = 2; o.warmupS = 3
        case .spotSwarm:
            var r = SplitMix64(seed: seed ^ 0x5350_4F54_5357)
            o.durableNodes = 3 + r.below(3)
            o.nodes = o.durableNodes + 3 + r.below(12)
            o.durationS = Double(30 + r.below(61))
            o.settleS = 150; o.itemsPerS = 0; o.warmupS = 3
            o.latencyMs = [1, 5, 10, 30][r.below(4)]
            o.jitterMs = o.latencyMs * [0, 0.2, 0.5][r.below(3)]
            o.spotKillsPerMin = [4, 10, 20][r.below(3)]
            o.noticeFraction = [0, 0.5, 1][r.below(3)]
            o.returnFraction = [0, 0.25, 0.5][r.below(3)]
            o.durableCrashesPerMin = [0, 2, 6][r.below(3)]
            o.downS = Double(2 + r.below(15))
            o.durableFillsPerMin = [0, 2, 6][r.below(3)]
            o.shutdownDeadlineS = [10, 25, 30][r.below(3)]
        case .swarm:
            var r = SplitMix64(seed: seed ^ 0x5157_4152_4D00)
            o.nodes = 3 + r.below(10)
            o.durationS = Double(20 + r.below(41))
            o.itemsPerS = [0.5, 2, 5, 10][r.below(4)]
            o.latencyMs = [1, 10, 50, 100][r.below(4)]
            o.jitterMs = o.latencyMs * [0, 0.1, 0.5, 1][r.below(4)]
            o.loss = [0, 0, 0.01, 0.05, 0.1, 0.2][r.below(6)]
            o.duplicate = [0, 0.01, 0.05][r.below(3)]
            let kinds = PartitionKind.allCases
            o.partitions = (0..<r.below(4)).map { _ in kinds[r.below(kinds.count)] }
            o.partitionS = Double(2 + r.below(10))
            o.partitionGapS = Double(1 + r.below(6))
            o.crashesPerMin = [0, 0, 2, 6][r.below(4)]
            o.downS = Double(1 + r.below(15))
            o.leavesPerMin = [0, 0, 1][r.below(3)]
            o.joinsPerMin = [0, 1, 3][r.below(3)]
            o.vanishPerMin = [0, 0, 1][r.below(3)]
            o.nemesis = r.below(2) == 0
            o.antiEntropyIntervalMs = [2000, 10_000, 30_000][r.below(3)]
            o.settleS = 90
            // Drawn last, so that every setting above is what it was for each seed before.
            o.restartNewAddress = r.below(2) == 0
            // The versions workload in half of the seeds (drawn after everything above, so it
            // changes nothing else): 1–8 names, skews from none to an hour.
            if r.below(2) == 0 {
                o.names = 1 + r.below(8)
                o.tombstoneFraction = [0.1, 0.2, 0.4][r.below(3)]
                o.conflictFraction = [0, 0.3, 0.7][r.below(3)]
                o.clockSkewMs = [0, 1000, 30_000, 3_600_000][r.below(4)]
                // Compaction in three quarters of those (drawn last: nothing above changes).
                o.compactAfterMs = [0, 2_000, 5_000, 20_000][r.below(4)]
            }
        }
        return o
    }

    /// The exact command that reproduces this run.
    public var reproduceCommand: String {
        var c = "swift run -c release meshsim \(scenario.rawValue) --seed \(seed) --nodes \(nodes) --duration-s \(fmt(durationS))"
        c += " --latency-ms \(fmt(latencyMs)) --jitter-ms \(fmt(jitterMs)) --loss \(fmt(loss)) --duplicate \(fmt(duplicate))"
        c += " --items-per-s \(fmt(itemsPerS)) --settle-s \(fmt(settleS)) --anti-entropy-ms \(antiEntropyIntervalMs)"
        c += " --bootstrap \(preformed ? "restored" : "join")"
        if streamOnlyNodes > 0 { c += " --stream-only-nodes \(streamOnlyNodes)" }
        if restartNewAddress { c += " --crashes-per-min \(fmt(crashesPerMin)) --down-s \(fmt(downS)) --restart-new-address" }
        if scenario == .swarm { c = "swift run -c release meshsim swarm --seed \(seed) --nodes \(nodes) --duration-s \(fmt(durationS))" }
        if spotOn {
            c = "swift run -c release meshsim \(scenario.rawValue) --seed \(seed) --nodes \(nodes) --durable-nodes \(durableNodes)"
            c += " --duration-s \(fmt(durationS)) --settle-s \(fmt(settleS)) --latency-ms \(fmt(latencyMs)) --jitter-ms \(fmt(jitterMs))"
            c += " --loss \(fmt(loss)) --spot-kills-per-min \(fmt(spotKillsPerMin)) --notice-fraction \(fmt(noticeFraction))"
            c += " --return-fraction \(fmt(returnFraction)) --durable-crashes-per-min \(fmt(durableCrashesPerMin)) --down-s \(fmt(downS))"
            c += " --durable-fills-per-min \(fmt(durableFillsPerMin)) --shutdown-deadline-s \(fmt(shutdownDeadlineS))"
            if spotBug != .none { c += " --spot-bug \(spotBug.rawValue)" }
            return c
        }
        if names > 0 {
            c += " --names \(names) --tombstone-fraction \(fmt(tombstoneFraction)) --conflict-fraction \(fmt(conflictFraction))"
            c += " --clock-skew-ms \(fmt(clockSkewMs)) --compact-after-ms \(compactAfterMs)"
            if compactionWithoutDependencies { c += " --compaction-without-dependencies" }
        }
        if placementOn {
            c += " --crashes-per-min \(fmt(crashesPerMin)) --down-s \(fmt(downS)) --placement-policy \(placementPolicy.rawValue)"
            c += " --disk-fills-per-min \(fmt(diskFillsPerMin)) --broadcast-fraction \(fmt(broadcastFraction)) --upload-scale \(fmt(uploadScale))"
            if placementBug != .none { c += " --placement-bug \(placementBug.rawValue)" }
        }
        return c
    }

    /// Every option, one line, for the run's printout.
    public var summary: String {
        "scenario=\(scenario.rawValue) seed=\(seed) nodes=\(nodes) duration_s=\(fmt(durationS)) settle_s=\(fmt(settleS)) "
            + "latency_ms=\(fmt(latencyMs)) jitter_ms=\(fmt(jitterMs)) loss=\(fmt(loss)) duplicate=\(fmt(duplicate)) "
            + "items_per_s=\(fmt(itemsPerS)) warmup_s=\(fmt(warmupS)) partitions=[\(partitions.map(\.rawValue).joined(separator: ","))] "
            + "partition_s=\(fmt(partitionS)) partition_gap_s=\(fmt(partitionGapS)) crashes_per_min=\(fmt(crashesPerMin)) "
            + "down_s=\(fmt(downS)) leaves_per_min=\(fmt(leavesPerMin)) joins_per_min=\(fmt(joinsPerMin)) "
            + "vanish_per_min=\(fmt(vanishPerMin)) nemesis=\(nemesis) preformed=\(preformed) "
            + "anti_entropy_ms=\(antiEntropyIntervalMs) probe_ms=\(probeIntervalMs) crash_at_mid=\(crashAtMid) stream_only_nodes=\(streamOnlyNodes) "
            + "restart_new_address=\(restartNewAddress) names=\(names) tombstone_fraction=\(fmt(tombstoneFraction)) "
            + "conflict_fraction=\(fmt(conflictFraction)) clock_skew_ms=\(fmt(clockSkewMs)) "
            + "compact_after_ms=\(compactAfterMs) compaction_without_dependencies=\(compactionWithoutDependencies) "
            + "placement_policy=\(placementPolicy.rawValue) placement_bug=\(placementBug.rawValue) "
            + "disk_fills_per_min=\(fmt(diskFillsPerMin)) broadcast_fraction=\(fmt(broadcastFraction)) upload_scale=\(fmt(uploadScale))"
            + (spotOn ? " durable_nodes=\(durableNodes) spot_kills_per_min=\(fmt(spotKillsPerMin)) notice_fraction=\(fmt(noticeFraction)) "
                + "return_fraction=\(fmt(returnFraction)) durable_crashes_per_min=\(fmt(durableCrashesPerMin)) "
                + "durable_fills_per_min=\(fmt(durableFillsPerMin)) shutdown_deadline_s=\(fmt(shutdownDeadlineS)) spot_bug=\(spotBug.rawValue)" : "")
    }
}

func fmt(_ d: Double) -> String {
    if d == d.rounded() && abs(d) < 1e15 { return String(Int64(d)) }
    return String(d)
}
