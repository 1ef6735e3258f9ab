/// A pending push of an entry to a peer (the gossip layer's durable retry queue).
public struct OutboxItem: Sendable, Hashable {
    public var id: Int64
    public var origin: NodeID
    public var sequence: UInt64
    public var target: NodeID
    public var attempts: Int
    public var nextAttemptMs: Int64
    public var enqueuedMs: Int64
}

extension Store {
    // MARK: - Outbox

    /// The most rows the outbox holds; enqueueing beyond it fails (back-pressure).
    public static let maxOutboxRows = 100_000

    /// Queues a push of entry `(origin, sequence)` to `target`; idempotent per triple.
    public func enqueueOutbox(origin: NodeID, sequence: UInt64, target: NodeID,
                              nowMs: Int64 = WallClock.nowMs()) throws(MeshError) {
        let n = try outboxCount()
        guard n < Self.maxOutboxRows else {
            throw MeshError(.invalidInput, "the outbox is full (\(Self.maxOutboxRows) pending pushes)",
                            hint: "peers are unreachable; pushes resume as they are acknowledged or expire")
        }
        try sql { () throws(SQLiteError) in
            try db.query("""
                INSERT OR IGNORE INTO outbox(origin, sequence, target, attempts, next_attempt_ms, enqueued_ms)
                VALUES(?, ?, ?, 0, ?, ?)
                """, [.blob(origin.key.bytes), .int(Int64(sequence)), .blob(target.key.bytes), .int(nowMs), .int(nowMs)])
        }
    }

    /// Pushes due at `nowMs`, earliest first, at most `limit`.
    public func dueOutbox(nowMs: Int64, limit: Int) throws(MeshError) -> [OutboxItem] {
        var out = [OutboxItem]()
        try db.forEach("""
            SELECT id, origin, sequence, target, attempts, next_attempt_ms, enqueued_ms FROM outbox
            WHERE next_attempt_ms <= ? ORDER BY next_attempt_ms, id LIMIT ?
            """, [.int(nowMs), .int(Int64(limit))]) { (s) throws(MeshError) in
            out.append(OutboxItem(id: s.int(0), origin: NodeID(key: Bytes32(bytes: s.blob(1)) ?? .zero),
                                  sequence: UInt64(s.int(2)), target: NodeID(key: Bytes32(bytes: s.blob(3)) ?? .zero),
                                  attempts: Int(s.int(4)), nextAttemptMs: s.int(5), enqueuedMs: s.int(6)))
        }
        return out
    }

    /// The push succeeded: remove it.
    public func ackOutbox(id: Int64) throws(MeshError) {
        try sql { () throws(SQLiteError) in try db.query("DELETE FROM outbox WHERE id = ?", [.int(id)]) }
    }

    /// The push failed: count the attempt and try again at `nextAttemptMs`.
    public func retryOutbox(id: Int64, nextAttemptMs: Int64) throws(MeshError) {
        try sql { () throws(SQLiteError) in
            try db.query("UPDATE outbox SET attempts = attempts + 1, next_attempt_ms = ? WHERE id = ?",
                         [.int(nextAttemptMs), .int(id)])
        }
    }

    public func outboxCount() throws(MeshError) -> Int {
        try sql { () throws(SQLiteError) in Int(try db.scalarInt("SELECT count(*) FROM outbox") ?? 0) }
    }
}
