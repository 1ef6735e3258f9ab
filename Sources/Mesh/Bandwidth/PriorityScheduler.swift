// Transfer priorities and the pure scheduler that shares bandwidth among them (issue 13).

/// How much of the upload bandwidth a transfer gets when others compete: LOW, NORMAL, HIGH and
/// CRITICAL get weighted shares 1:2:4:8 (docs/PROTOCOL.md §9.1, the `get` priority byte).
public enum TransferPriority: UInt8, CaseIterable, Comparable, Sendable, CustomStringConvertible {
    case low = 0, normal = 1, high = 2, critical = 3

    /// The class's weight: 1, 2, 4, 8.
    public var weight: Int { 1 << Int(rawValue) }

    public var description: String {
        switch self {
        case .low: "low"
        case .normal: "normal"
        case .high: "high"
        case .critical: "critical"
        }
    }

    /// From `low`, `normal`, `high` or `critical` (any case); nil otherwise.
    public init?(name: String) {
        guard let p = Self.allCases.first(where: { $0.description == name.lowercased() }) else { return nil }
        self = p
    }

    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
}

/// Deficit round robin across the four priority classes, by bytes: each round, every class with
/// something waiting earns `quantumBytes × weight` of credit and sends while its credit covers
/// its next message. So classes that all have work share the link 1:2:4:8, a class alone gets
/// all of it (work-conserving: an idle class earns nothing and keeps no credit), and a class
/// that starts waiting is served within one round (at most the other classes' quanta plus one
/// message of each in between).
///
/// Pure: the caller says what waits (the size of each class's next message) and sends what
/// `next` picks. One instance per shared bucket (the node's global upload limit, or a session).
public struct PriorityScheduler: Sendable, Equatable {
    public let quantumBytes: Int
    /// Each class's credit, indexed by raw value.
    public private(set) var deficitBytes: [Int] = [0, 0, 0, 0]
    /// The class the round is at.
    public private(set) var cursor: TransferPriority = .critical
    /// Whether `cursor` already earned its quantum this visit.
    private var credited = false

    public init(quantumBytes: Int = 256 << 10) {
        precondition(quantumBytes > 0)
        self.quantumBytes = quantumBytes
    }

    /// The class whose next message goes now, its size taken from its credit; nil when nothing
    /// waits. `headBytes[p.rawValue]` is the size of class `p`'s next message, nil when it has none.
    public mutating func next(headBytes: [Int?]) -> TransferPriority? {
        precondition(headBytes.count == 4)
        guard headBytes.contains(where: { $0 != nil }) else {
            deficitBytes = [0, 0, 0, 0]
            credited = false
            return nil
        }
        for p in TransferPriority.allCases where headBytes[Int(p.rawValue)] == nil { deficitBytes[Int(p.rawValue)] = 0 }
        // Terminates: every full round adds at least one quantum to a waiting class.
        while true {
            let i = Int(cursor.rawValue)
            if let head = headBytes[i] {
                if !credited {
                    deficitBytes[i] += quantumBytes * cursor.weight
                    credited = true
                }
                if deficitBytes[i] >= head {
                    deficitBytes[i] -= head
                    return cursor
                }
            }
            advance()
        }
    }

    /// Round order: critical, high, normal, low, then critical again.
    private mutating func advance() {
        cursor = TransferPriority(rawValue: cursor.rawValue == 0 ? 3 : cursor.rawValue - 1)!
        credited = false
    }
}
