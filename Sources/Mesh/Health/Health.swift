// A node's health: each component healthy, degraded or unhealthy with a one-line reason;
// the node as a whole is its worst component. `meshnode health` and `GET /health` show it.

/// Ordered: a worse status compares greater.
public enum HealthStatus: String, Codable, Sendable, Comparable, CaseIterable {
    case healthy, degraded, unhealthy

    public static func < (a: Self, b: Self) -> Bool { a.rank < b.rank }
    var rank: Int {
        switch self {
        case .healthy: 0
        case .degraded: 1
        case .unhealthy: 2
        }
    }

    /// `meshnode health`'s exit status: 0, 1, 2.
    public var exitStatus: Int32 { Int32(rank) }
    /// `GET /health`'s status: 200 while the node serves (healthy or degraded), 503 when unhealthy.
    public var httpStatus: Int { self == .unhealthy ? 503 : 200 }
}

public struct ComponentHealth: Codable, Sendable, Equatable {
    public var status: HealthStatus
    /// One line: what was seen, and for a problem, what it means.
    public var reason: String

    public init(_ status: HealthStatus, _ reason: String) {
        self.status = status
        self.reason = reason
    }
}

/// The whole report: JSON `{"status": ..., "components": {"store": {"status", "reason"}, ...}}`.
public struct HealthReport: Codable, Sendable, Equatable {
    public var status: HealthStatus
    public var components: [String: ComponentHealth]

    public init(components: [String: ComponentHealth]) {
        self.components = components
        status = components.values.map(\.status).max() ?? .healthy
    }

    /// The components in the order they are shown.
    public static let componentOrder = ["store", "gossip", "transfers", "disk", "outbox", "breakers"]
}

/// Where the components turn degraded or unhealthy.
public enum HealthThresholds {
    /// A store write error this recent makes the store degraded.
    public static let storeWriteErrorRecentSeconds: Double = 300
    /// An active transfer with no progress for this long is stalled (degraded).
    public static let transferStalledSeconds: Double = 60
    /// Free space on the data dir's file system below these fractions: degraded, unhealthy.
    public static let diskFreeDegradedFraction = 0.10
    public static let diskFreeUnhealthyFraction = 0.02
    /// A "no space left on device" this recent makes the disk unhealthy.
    public static let noSpaceRecentSeconds: Double = 300
    /// An item at risk this long (no durable node holds it) makes the outbox degraded.
    public static let outboxOldestDegradedSeconds: Double = 600
}
