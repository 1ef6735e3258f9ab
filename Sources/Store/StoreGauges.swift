/// Cheap aggregate numbers about the store, for metrics and health checks: a handful of
/// `count`/`sum`/`min` queries, no per-item work (unlike `status()`, which checks every item's
/// completeness). A metrics scrape or a health check may call this every few seconds.
public struct StoreGauges: Sendable, Equatable {
    /// `PRAGMA user_version` (compare with `Schema.currentVersion`).
    public var schemaVersion: Int
    /// Puts stored (every version of every name, complete or not).
    public var items: Int
    /// Chunks recorded as present, and their total size in bytes.
    public var chunks: Int
    public var chunkBytes: UInt64
    /// Pending outbox rows, and when the oldest of them was enqueued (ms since the epoch).
    public var outboxRows: Int
    public var oldestOutboxEnqueuedMs: Int64?
}

extension Store {
    public func gauges() throws(MeshError) -> StoreGauges {
        try sql { () throws(SQLiteError) -> StoreGauges in
            StoreGauges(
                schemaVersion: Int(try db.scalarInt("PRAGMA user_version") ?? 0),
                items: Int(try db.scalarInt("SELECT count(*) FROM items WHERE kind = 1") ?? 0),
                chunks: Int(try db.scalarInt("SELECT count(*) FROM chunks") ?? 0),
                chunkBytes: UInt64(max(0, try db.scalarInt("SELECT coalesce(sum(size_bytes), 0) FROM chunks") ?? 0)),
                outboxRows: Int(try db.scalarInt("SELECT count(*) FROM outbox") ?? 0),
                oldestOutboxEnqueuedMs: try db.scalarInt("SELECT min(enqueued_ms) FROM outbox"))
        }
    }

    /// When this node first stored a put of `contentID` (ms since the epoch), if it holds one.
    public func firstReceivedMs(of contentID: ContentID) throws(MeshError) -> Int64? {
        try sql { () throws(SQLiteError) -> Int64? in
            try db.scalarInt("SELECT min(received_at_ms) FROM items WHERE content_id = ? AND kind = 1",
                             [.blob(contentID.digest.bytes)])
        }
    }
}
