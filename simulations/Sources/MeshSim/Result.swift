import Gossip

/// Raw counters of one run.
public struct SimMetrics: Sendable {
    /// Messages and bytes sent by honest nodes during the fault phase (the figures per item).
    public var messages: UInt64 = 0
    public var bytes: UInt64 = 0
    /// Messages over the whole run, liveness phase included.
    public var messagesTotal: UInt64 = 0
    public var items = 0
    public var fetches: UInt64 = 0
    public var falseSuspicions = 0
    public var falseDeaths = 0
    public var forksReported = 0
    public var droppedByLoss: UInt64 = 0
    public var droppedByPartition: UInt64 = 0
    public var duplicated: UInt64 = 0
    /// Datagrams sent to or from a stream-only node (the network drops them).
    public var datagramsToTunnelOnly: UInt64 = 0
    public var partitions = 0
    /// Restarts on a new address (`restartNewAddress`).
    public var relocations = 0
    public var nemesisMessages: UInt64 = 0
    public var rejected: [String: UInt64] = [:]
    /// The versions workload: puts, tombstones of a name and of one version, pairs of
    /// concurrent puts across a partition, and puts that revived a name the writer saw deleted.
    public var versionPuts = 0
    public var nameTombstones = 0
    public var versionTombstones = 0
    public var concurrentPuts = 0
    public var revivingPuts = 0
    /// At the end, in the view every live node agrees on: names with a current version, names
    /// deleted, names current again after a tombstone, names with versions from several origins.
    public var namesLiveAtEnd = 0
    public var namesDeletedAtEnd = 0
    public var namesRevivedAtEnd = 0
    public var namesWithSeveralOrigins = 0
    /// Tombstone compaction (`compactAfterMs` > 0): compaction entries written; the puts and
    /// tombstones they voided in their writers' logs (each counted once, by its origin); entries
    /// deleted on all nodes together when a compaction was applied (the `.compacted` directive);
    /// and tombstones dropped by a node that still held a put they delete which the tombstone's
    /// origin had never seen when it compacted it: the §4.5 horizon caveat, allowed.
    public var compactionsWritten = 0
    public var putsCompacted = 0
    public var tombstonesCompacted = 0
    public var entriesDeletedByCompaction = 0
    public var horizonRevivals = 0
    /// The placement model (`placement`, `broadcast`).
    public var placement = PlacementMetrics()
}

/// The outcome of one run: checker verdicts and the contract metrics.
public struct SimResult: Sendable {
    public var options: SimOptions
    public var metrics = SimMetrics()
    public var safetyViolations: [String] = []
    public var livenessViolations: [String] = []
    /// Time from the final heal until every live node holds every item and sees exactly the live nodes alive.
    public var convergenceAfterHealMs: Double? = nil
    /// Time from the final heal until every live node holds every item (the partition-heal target).
    public var itemsConvergenceAfterHealMs: Double? = nil
    public var latencyP50Ms = 0.0, latencyP99Ms = 0.0, latencyMaxMs = 0.0
    public var deliveries = 0
    public var idleBytesPerNodePerS: Double? = nil
    public var detectionMs: [Double] = []
    public var nodesEver = 0
    public var liveAtEnd = 0
    public var wallS = 0.0
    /// A digest of every event processed (time, kind, node, message content) and their count:
    /// equal for two runs exactly when they went event for event the same way.
    public var traceDigest: UInt64 = 0
    public var events: UInt64 = 0
    public var log: [String] = []

    public init(options: SimOptions) { self.options = options }

    public var safetyOK: Bool { safetyViolations.isEmpty }
    public var livenessOK: Bool { livenessViolations.isEmpty && convergenceAfterHealMs != nil }
    public var ok: Bool { safetyOK && livenessOK }

    public var messagesPerItem: Double { metrics.items == 0 ? 0 : Double(metrics.messages) / Double(metrics.items) }

    /// One JSON object; the keys listed in the issue are a contract.
    public var json: String {
        func num(_ d: Double) -> String { d.isFinite ? String(Double(Int64(d * 1000)) / 1000) : "null" }
        func str(_ s: String) -> String {
            var o = "\""
            for c in s.unicodeScalars {
                switch c {
                case "\"": o += "\\\""
                case "\\": o += "\\\\"
                case "\n": o += "\\n"
                default: if c.value < 0x20 { o += "\\u" + String(c.value, radix: 16).leftPad(4) } else { o.unicodeScalars.append(c) }
                }
            }
            return o + "\""
        }
        let m = metrics
        var f: [(String, String)] = [
            ("scenario", str(options.scenario.rawValue)),
            ("seed", String(options.seed)),
            ("nodes", String(options.nodes)),
            ("items", String(m.items)),
            ("messages", String(m.messages)),
            ("bytes", String(m.bytes)),
            ("messages_per_item", num(messagesPerItem)),
            ("latency_ms", "{\"p50\":\(num(latencyP50Ms)),\"p99\":\(num(latencyP99Ms)),\"max\":\(num(latencyMaxMs))}"),
            ("convergence_after_heal_ms", convergenceAfterHealMs.map(num) ?? "null"),
            ("items_convergence_after_heal_ms", itemsConvergenceAfterHealMs.map(num) ?? "null"),
            ("false_suspicions", String(m.falseSuspicions)),
            ("false_deaths", String(m.falseDeaths)),
            ("safety_ok", String(safetyOK)),
            ("liveness_ok", String(livenessOK)),
            ("wall_s", num(wallS)),
            ("messages_total", String(m.messagesTotal)),
            ("events", String(events)),
            ("trace_digest", str(String(traceDigest, radix: 16).leftPad(16))),
            ("deliveries", String(deliveries)),
            ("nodes_ever", String(nodesEver)),
            ("live_at_end", String(liveAtEnd)),
            ("duration_s", num(options.durationS)),
            ("bytes_per_node_per_s", num(Double(m.bytes) / Double(max(1, options.nodes)) / max(1e-9, options.durationS))),
            ("idle_bytes_per_node_per_s", idleBytesPerNodePerS.map(num) ?? "null"),
            ("dead_detection_ms", "[" + detectionMs.map(num).joined(separator: ",") + "]"),
            ("forks_reported", String(m.forksReported)),
            ("nemesis_messages", String(m.nemesisMessages)),
            ("dropped_by_loss", String(m.droppedByLoss)),
            ("dropped_by_partition", String(m.droppedByPartition)),
            ("duplicated", String(m.duplicated)),
            ("datagrams_to_stream_only", String(m.datagramsToTunnelOnly)),
            ("relocations", String(m.relocations)),
            ("versions", "{\"puts\":\(m.versionPuts),\"name_tombstones\":\(m.nameTombstones),\"version_tombstones\":\(m.versionTombstones),"
                + "\"concurrent_puts\":\(m.concurrentPuts),\"reviving_puts\":\(m.revivingPuts),\"names_live\":\(m.namesLiveAtEnd),"
                + "\"names_deleted\":\(m.namesDeletedAtEnd),\"names_revived\":\(m.namesRevivedAtEnd),"
                + "\"names_with_several_origins\":\(m.namesWithSeveralOrigins)}"),
            ("compaction", "{\"compact_after_ms\":\(options.compactAfterMs),\"compactions\":\(m.compactionsWritten),"
                + "\"puts_compacted\":\(m.putsCompacted),\"tombstones_compacted\":\(m.tombstonesCompacted),"
                + "\"entries_compacted\":\(m.putsCompacted + m.tombstonesCompacted),"
                + "\"entries_deleted\":\(m.entriesDeletedByCompaction),\"horizon_revivals\":\(m.horizonRevivals)}"),
            ("placement", "{" + m.placement.fields.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}"),
            ("rejected", "{" + m.rejected.keys.sorted().map { "\(str($0)):\(m.rejected[$0]!)" }.joined(separator: ",") + "}"),
            ("safety_violations", "[" + safetyViolations.prefix(20).map(str).joined(separator: ",") + "]"),
            ("liveness_violations", "[" + livenessViolations.prefix(20).map(str).joined(separator: ",") + "]"),
            ("options", str(options.summary)),
            ("reproduce", str(options.reproduceCommand)),
        ]
        if f.isEmpty { f = [] }
        return "{" + f.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}"
    }

    /// A human-readable summary.
    public var text: String {
        var s = "options: \(options.summary)\n"
        s += "items=\(metrics.items) deliveries=\(deliveries) messages=\(metrics.messages) bytes=\(metrics.bytes) "
        s += "messages_per_item=\(fmt(messagesPerItem))\n"
        s += "latency_ms p50=\(fmt(latencyP50Ms)) p99=\(fmt(latencyP99Ms)) max=\(fmt(latencyMaxMs))\n"
        s += "convergence_after_heal_ms=\(convergenceAfterHealMs.map(fmt) ?? "none") items_convergence_after_heal_ms=\(itemsConvergenceAfterHealMs.map(fmt) ?? "none") false_suspicions=\(metrics.falseSuspicions) false_deaths=\(metrics.falseDeaths)\n"
        if let i = idleBytesPerNodePerS { s += "idle_bytes_per_node_per_s=\(fmt(i))\n" }
        if !detectionMs.isEmpty { s += "dead_detection_ms=\(detectionMs.map(fmt))\n" }
        if options.names > 0 {
            s += "versions: puts=\(metrics.versionPuts) name_tombstones=\(metrics.nameTombstones) version_tombstones=\(metrics.versionTombstones) "
            s += "concurrent_puts=\(metrics.concurrentPuts) reviving_puts=\(metrics.revivingPuts) names_live=\(metrics.namesLiveAtEnd) "
            s += "names_deleted=\(metrics.namesDeletedAtEnd) names_revived=\(metrics.namesRevivedAtEnd) "
            s += "names_with_several_origins=\(metrics.namesWithSeveralOrigins)\n"
        }
        if options.names > 0 && options.compactAfterMs > 0 {
            s += "compaction: compact_after_ms=\(options.compactAfterMs) compactions=\(metrics.compactionsWritten) "
            s += "entries_compacted=\(metrics.putsCompacted + metrics.tombstonesCompacted) (puts=\(metrics.putsCompacted) "
            s += "tombstones=\(metrics.tombstonesCompacted)) entries_deleted=\(metrics.entriesDeletedByCompaction) "
            s += "horizon_revivals=\(metrics.horizonRevivals)\n"
        }
        if options.placementOn { s += "placement: " + metrics.placement.fields.map { "\($0.0)=\($0.1)" }.joined(separator: " ") + "\n" }
        s += "rejected=\(metrics.rejected.keys.sorted().map { "\($0):\(metrics.rejected[$0]!)" }.joined(separator: " "))\n"
        s += "events=\(events) trace_digest=\(String(traceDigest, radix: 16).leftPad(16))\n"
        s += "safety_ok=\(safetyOK) liveness_ok=\(livenessOK) wall_s=\(fmt(wallS))\n"
        for v in safetyViolations.prefix(10) { s += "SAFETY: \(v)\n" }
        for v in livenessViolations.prefix(10) { s += "LIVENESS: \(v)\n" }
        if !ok { s += "reproduce: \(options.reproduceCommand)\n" }
        return s
    }
}

extension String {
    func leftPad(_ n: Int) -> String { String(repeating: "0", count: max(0, n - count)) + self }
}
