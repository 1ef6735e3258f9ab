// The health rules, as pure functions of what the node reports (so tests need no node).

/// Everything the health rules look at, gathered by the node at the time of the check.
public struct HealthInputs: Sendable {
    // store
    /// The store's numbers, or why they could not be read.
    public var store: Result<StoreGauges, MeshError>
    public var expectedSchemaVersion: Int
    public var storeWriteErrors: UInt64 = 0
    /// Seconds since the last store write error (nil: none since start), and its message.
    public var lastStoreWriteErrorAgoSeconds: Double?
    public var lastStoreWriteError: String = ""
    // gossip
    public var membersAlive = 0
    public var membersSuspect = 0
    public var membersDead = 0
    public var seedsConfigured = 0
    /// The node is leaving the mesh (SIGTERM): it takes no new work.
    public var stopping = false
    // transfers
    public var transfersActive = 0
    public var transfersQueued = 0
    public var transfersStalled = 0
    public var transfersAbandoned = 0
    // disk
    public var disk: Result<DiskSpace, MeshError>
    /// Seconds since the last "no space left on device" (nil: none since start).
    public var lastNoSpaceAgoSeconds: Double?
    // outbox
    public var nowMs: Int64
    // breakers: peers whose transfer circuit breaker is open
    public var breakersOpen = 0

    public init(store: Result<StoreGauges, MeshError>, expectedSchemaVersion: Int, disk: Result<DiskSpace, MeshError>, nowMs: Int64) {
        self.store = store
        self.expectedSchemaVersion = expectedSchemaVersion
        self.disk = disk
        self.nowMs = nowMs
    }
}

public enum HealthChecks {
    public typealias T = HealthThresholds

    public static func report(_ i: HealthInputs) -> HealthReport {
        HealthReport(components: [
            "store": store(i), "gossip": gossip(i), "transfers": transfers(i), "disk": disk(i), "outbox": outbox(i),
            "breakers": breakers(i),
        ])
    }

    public static func store(_ i: HealthInputs) -> ComponentHealth {
        let g: StoreGauges
        switch i.store {
        case .failure(let e): return ComponentHealth(.unhealthy, "cannot read the manifest database: \(e.message)")
        case .success(let v): g = v
        }
        guard g.schemaVersion == i.expectedSchemaVersion else {
            return ComponentHealth(.unhealthy, "schema version \(g.schemaVersion), this meshnode needs \(i.expectedSchemaVersion)")
        }
        if let ago = i.lastStoreWriteErrorAgoSeconds, ago < T.storeWriteErrorRecentSeconds {
            return ComponentHealth(.degraded, "\(i.storeWriteErrors) write error(s), the last \(seconds(ago)) ago: \(i.lastStoreWriteError)")
        }
        return ComponentHealth(.healthy, "schema \(g.schemaVersion), \(g.items) items, \(g.chunks) chunks")
    }

    public static func gossip(_ i: HealthInputs) -> ComponentHealth {
        if i.stopping { return ComponentHealth(.unhealthy, "leaving the mesh: the node is shutting down") }
        let counts = "\(i.membersAlive) alive, \(i.membersSuspect) suspect, \(i.membersDead) dead"
        if i.membersAlive == 0 && i.membersSuspect == 0 {
            if i.seedsConfigured == 0 { return ComponentHealth(.healthy, "alone (no seeds configured)") }
            return ComponentHealth(.degraded, "alone: no member reachable through \(i.seedsConfigured) seed(s) (\(counts))")
        }
        if i.membersSuspect > 0 && i.membersSuspect >= i.membersAlive {
            return ComponentHealth(.degraded, "as many members suspect as alive (\(counts))")
        }
        return ComponentHealth(.healthy, counts)
    }

    public static func transfers(_ i: HealthInputs) -> ComponentHealth {
        var problems: [String] = []
        if i.transfersStalled > 0 {
            problems.append("\(i.transfersStalled) item(s) with no progress for \(seconds(T.transferStalledSeconds))")
        }
        if i.transfersAbandoned > 0 {
            problems.append("\(i.transfersAbandoned) item(s) abandoned (every recipe offered was refused)")
        }
        if !problems.isEmpty { return ComponentHealth(.degraded, problems.joined(separator: "; ")) }
        if i.transfersActive == 0 && i.transfersQueued == 0 { return ComponentHealth(.healthy, "none in flight") }
        return ComponentHealth(.healthy, "\(i.transfersActive) in flight, \(i.transfersQueued) queued")
    }

    public static func disk(_ i: HealthInputs) -> ComponentHealth {
        if let ago = i.lastNoSpaceAgoSeconds, ago < T.noSpaceRecentSeconds {
            return ComponentHealth(.unhealthy, "no space left on device \(seconds(ago)) ago")
        }
        let d: DiskSpace
        switch i.disk {
        case .failure(let e): return ComponentHealth(.degraded, "cannot see the data dir's free space: \(e.message)")
        case .success(let v): d = v
        }
        let pct = d.freeFraction * 100
        let text = "\(String(format1: pct)) % free (\(bytes(d.freeBytes)) of \(bytes(d.totalBytes)))"
        if d.freeFraction < T.diskFreeUnhealthyFraction { return ComponentHealth(.unhealthy, text + ": below \(Int(T.diskFreeUnhealthyFraction * 100)) %, writes will fail soon") }
        if d.freeFraction < T.diskFreeDegradedFraction { return ComponentHealth(.degraded, text + ": below \(Int(T.diskFreeDegradedFraction * 100)) %") }
        return ComponentHealth(.healthy, text)
    }

    public static func outbox(_ i: HealthInputs) -> ComponentHealth {
        guard case .success(let g) = i.store else { return ComponentHealth(.degraded, "unknown (the store cannot be read)") }
        if g.outboxRows >= Store.maxOutboxRows {
            return ComponentHealth(.unhealthy, "full: \(g.outboxRows) items at risk; newer ones are not recorded (is a durable node reachable?)")
        }
        guard g.outboxRows > 0, let oldest = g.oldestOutboxEnqueuedMs else { return ComponentHealth(.healthy, "empty") }
        let age = Double(max(0, i.nowMs - oldest)) / 1000
        let text = "\(g.outboxRows) items at risk (no durable copy yet), the oldest for \(seconds(age))"
        if age >= T.outboxOldestDegradedSeconds { return ComponentHealth(.degraded, text) }
        return ComponentHealth(.healthy, text)
    }

    public static func breakers(_ i: HealthInputs) -> ComponentHealth {
        i.breakersOpen == 0 ? ComponentHealth(.healthy, "no breakers open")
            : ComponentHealth(.degraded, "\(i.breakersOpen) peer breaker(s) open")
    }

    /// `75 s`, `12 min`, `3.0 h`.
    static func seconds(_ s: Double) -> String {
        if s < 120 { return "\(Int(s.rounded())) s" }
        if s < 7200 { return "\(Int((s / 60).rounded())) min" }
        return "\(String(format1: s / 3600)) h"
    }

    static func bytes(_ n: UInt64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
        var v = Double(n)
        var u = 0
        while v >= 1024 && u < units.count - 1 {
            v /= 1024
            u += 1
        }
        return u == 0 ? "\(n) B" : "\(String(format1: v)) \(units[u])"
    }
}

extension String {
    /// One decimal, without Foundation: 4.1, 12.0.
    init(format1 v: Double) {
        let tenths = Int((v * 10).rounded())
        self = "\(tenths / 10).\(abs(tenths % 10))"
    }
}
