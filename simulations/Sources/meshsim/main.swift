import ArgumentParser
import Foundation
import MeshSim

extension Scenario: ExpressibleByArgument {}
extension PlacementPolicyChoice: ExpressibleByArgument {}
extension PlacementBug: ExpressibleByArgument {}
extension SpotBug: ExpressibleByArgument {}

/// `meshsim SCENARIO [--nodes N] [--seed S] [--json] …`: runs the real gossip code on
/// virtual time and checks safety and liveness. Exits non-zero when a checker fails.
struct MeshSimCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "meshsim",
        abstract: "Deterministic simulation of meshnode's gossip protocol.",
        discussion: "Scenarios: spread, partition-heal, churn, scale, swarm, detect, relocate, versions, placement, broadcast, spot, spot-swarm. The same seed gives the same run.")

    @Argument(help: "spread | partition-heal | churn | scale | swarm | detect | relocate | versions | placement | broadcast | spot | spot-swarm")
    var scenarioArgument: Scenario?
    @Option(name: .customLong("scenario"), help: "The scenario, as an option (instead of the argument).") var scenarioOption: Scenario?
    @Option(name: .customLong("placement-policy"), help: "placement/broadcast: defaults (PlacementPolicy.seedDefaults) | random | tight.")
    var placementPolicy: PlacementPolicyChoice?
    @Option(name: .customLong("placement-bug"), help: "Test only: one broken placement decision, to see a checker catch it.")
    var placementBug: PlacementBug?
    @Option(name: .customLong("disk-fills-per-min"), help: "placement/broadcast: a random node's other data grows by 3-10 % of its disk this often.")
    var diskFillsPerMin: Double?
    @Option(name: .customLong("broadcast-fraction"), help: "placement/broadcast: share of puts with the broadcast flag.")
    var broadcastFraction: Double?
    @Option(name: .customLong("upload-scale"), help: "placement/broadcast: every node's upload bandwidth (100-400 MiB/s) times this.")
    var uploadScale: Double?
    @Option(name: .customLong("spot-bug"), help: "Test only: one broken spot decision, to see a checker catch it.")
    var spotBug: SpotBug?
    @Option(name: .customLong("durable-nodes"), help: "spot: nodes 0..<K are durable (K >= 3: the seeds), the rest ephemeral.")
    var durableNodes: Int?
    @Option(name: .customLong("spot-kills-per-min"), help: "spot: ephemeral nodes terminated per virtual minute.")
    var spotKillsPerMin: Double?
    @Option(name: .customLong("notice-fraction"), help: "spot: share of terminations with notice (SIGTERM), the rest kill -9.")
    var noticeFraction: Double?
    @Option(name: .customLong("return-fraction"), help: "spot: share of kill -9 hosts that come back with their disk.")
    var returnFraction: Double?
    @Option(name: .customLong("durable-crashes-per-min"), help: "spot: durable crashes per virtual minute (down --down-s x 0.5-1.5).")
    var durableCrashesPerMin: Double?
    @Option(name: .customLong("durable-fills-per-min"), help: "spot: a durable disk fills up (refusing takes for 3-10 s) this often.")
    var durableFillsPerMin: Double?
    @Option(name: .customLong("shutdown-deadline-s"), help: "spot: shutdown_deadline after SIGTERM.")
    var shutdownDeadlineS: Double?
    @Option(help: "Run seed (default: random, printed).") var seed: UInt64?
    @Option(help: "Number of nodes.") var nodes: Int?
    @Option(name: .customLong("duration-s"), help: "Virtual seconds of the fault phase.") var durationS: Double?
    @Option(name: .customLong("settle-s"), help: "Virtual seconds allowed to converge after the final heal.") var settleS: Double?
    @Option(name: .customLong("latency-ms")) var latencyMs: Double?
    @Option(name: .customLong("jitter-ms")) var jitterMs: Double?
    @Option(help: "Datagram loss probability.") var loss: Double?
    @Option(help: "Datagram duplication probability.") var duplicate: Double?
    @Option(name: .customLong("items-per-s")) var itemsPerS: Double?
    @Option(name: .customLong("anti-entropy-ms")) var antiEntropyMs: Int64?
    @Option(help: "How nodes start: 'join' (through 3 seeds) or 'restored' (everyone's peer list restored, a formed cluster restarting). Default per scenario.") var bootstrap: String?
    @Option(name: .customLong("stream-only-nodes"), help: "This many nodes are reachable only over streams (a TCP tunnel); datagrams to/from them are dropped.") var streamOnlyNodes: Int?
    @Option(name: .customLong("crashes-per-min"), help: "Crashes (each followed by a restart) per virtual minute.") var crashesPerMin: Double?
    @Option(name: .customLong("down-s"), help: "Seconds a crashed node stays down.") var downS: Double?
    @Flag(name: .customLong("restart-new-address"), help: "Restarted nodes (not the seeds) come back on a new host and port.")
    var restartNewAddress = false
    @Option(help: "The versions workload over this many names (puts and tombstones that collide); 0: a fresh name per item.")
    var names: Int?
    @Option(name: .customLong("tombstone-fraction"), help: "Versions workload: share of operations that are tombstones.")
    var tombstoneFraction: Double?
    @Option(name: .customLong("conflict-fraction"), help: "Versions workload: share of operations, while partitioned, that are concurrent puts of one name on both sides.")
    var conflictFraction: Double?
    @Option(name: .customLong("clock-skew-ms"), help: "Versions workload: each node's wall clock is off by up to ± this (ms); node 1 by −10× this.")
    var clockSkewMs: Double?
    @Option(name: .customLong("compact-after-ms"), help: "Versions workload: tombstone compaction with this horizon (compact_after, virtual ms of each node's own clock); 0: off.")
    var compactAfterMs: Int64?
    @Flag(name: .customLong("compaction-without-dependencies"), help: "Test only: write compactions without their dependencies (breaks PROTOCOL §4.5 on purpose, to see the checkers catch it).")
    var compactionWithoutDependencies = false
    @Flag(help: "Print one JSON object.") var json = false
    @Flag(help: "Print the event log of notable events.") var verbose = false
    @Option(name: .customLong("debug-node"), help: "With --verbose: log replication messages of this node index.") var debugNode: Int?
    @Option(help: "Run this many consecutive seeds (swarm testing); prints one line per failure.") var runs: Int = 1

    func run() throws {
        guard let scenario = scenarioOption ?? scenarioArgument else {
            throw ValidationError("no scenario: give one as the argument or with --scenario (e.g. --scenario placement)")
        }
        let base = seed ?? UInt64.random(in: 1...UInt64(1 << 53))
        var failures = 0
        for k in 0..<max(1, runs) {
            var o = SimOptions.defaults(for: scenario, seed: base &+ UInt64(k))
            if let v = nodes { o.nodes = v }
            if let v = durationS { o.durationS = v }
            if let v = settleS { o.settleS = v }
            if let v = latencyMs { o.latencyMs = v }
            if let v = jitterMs { o.jitterMs = v }
            if let v = loss { o.loss = v }
            if let v = duplicate { o.duplicate = v }
            if let v = itemsPerS { o.itemsPerS = v }
            if let v = antiEntropyMs { o.antiEntropyIntervalMs = v }
            if let v = streamOnlyNodes { o.streamOnlyNodes = v }
            if let v = crashesPerMin { o.crashesPerMin = v }
            if let v = downS { o.downS = v }
            if restartNewAddress { o.restartNewAddress = true }
            if let v = names {
                guard v >= 0 else { throw ValidationError("--names must be ≥ 0") }
                o.names = v
            }
            if let v = tombstoneFraction { o.tombstoneFraction = v }
            if let v = conflictFraction { o.conflictFraction = v }
            if let v = clockSkewMs { o.clockSkewMs = v }
            if let v = compactAfterMs {
                guard v >= 0 else { throw ValidationError("--compact-after-ms must be ≥ 0") }
                o.compactAfterMs = v
            }
            if compactionWithoutDependencies { o.compactionWithoutDependencies = true }
            if let v = placementPolicy { o.placementPolicy = v }
            if let v = placementBug { o.placementBug = v }
            if let v = diskFillsPerMin { o.diskFillsPerMin = v }
            if let v = broadcastFraction { o.broadcastFraction = v }
            if let v = uploadScale { o.uploadScale = v }
            if let v = spotBug { o.spotBug = v }
            if let v = durableNodes {
                guard v >= 3 && v < o.nodes else { throw ValidationError("--durable-nodes must be >= 3 and below --nodes") }
                o.durableNodes = v
            }
            if let v = spotKillsPerMin { o.spotKillsPerMin = v }
            if let v = noticeFraction { o.noticeFraction = v }
            if let v = returnFraction { o.returnFraction = v }
            if let v = durableCrashesPerMin { o.durableCrashesPerMin = v }
            if let v = durableFillsPerMin { o.durableFillsPerMin = v }
            if let v = shutdownDeadlineS { o.shutdownDeadlineS = v }
            if let b = bootstrap {
                guard b == "join" || b == "restored" else {
                    throw ValidationError("--bootstrap must be 'join' or 'restored', not '\(b)'")
                }
                o.preformed = b == "restored"
            }
            o.verbose = verbose
            if !json && runs == 1 { FileHandle.standardError.write(Data("meshsim: \(o.summary)\n".utf8)) }
            let t0 = Date()
            let sim = Simulator(options: o)
            sim.debugNode = debugNode
            var r = sim.run()
            r.wallS = Date().timeIntervalSince(t0)
            if !r.ok { failures += 1 }
            if runs > 1 {
                if !r.ok { print("FAIL seed=\(o.seed): \((r.safetyViolations + r.livenessViolations).first ?? "") — reproduce: \(o.reproduceCommand)") }
                continue
            }
            if verbose { for l in r.log { print(l) } }
            print(json ? r.json : r.text, terminator: json ? "\n" : "")
            if o.spotOn && !json { print(sim.spotSummary) }
        }
        if runs > 1 { print("\(runs - failures)/\(runs) runs passed") }
        if failures > 0 { throw ExitCode(1) }
    }
}

MeshSimCommand.main()
