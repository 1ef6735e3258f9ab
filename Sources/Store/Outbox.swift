import Gossip

/// One item of the spot outbox (the seeds' write-ahead log of pending games): an item this node
/// originated that no durable node is known to hold complete yet (docs/SYNC.md, "Spot nodes").
public struct OutboxItem: Sendable, Hashable {
    public var contentID: ContentID
    public var type: ItemType
    public var sizeBytes: UInt64
    /// When it became at risk (ms since the epoch).
    public var enqueuedMs: Int64

    public init(contentID: ContentID, type: ItemType, sizeBytes: UInt64, enqueuedMs: Int64) {
        self.contentID = contentID
        self.type = type
        self.sizeBytes = sizeBytes
        self.enqueuedMs = enqueuedMs
    }
}

extension Store {
    // MARK: - Outbox

    /// The most rows the outbox holds; beyond it an item is still pushed, but not recorded
    /// (health says unhealthy: an ephemeral node that cannot reach any durable one).
    public static let maxOutboxRows = 100_000

    /// Records `item` as at risk; idempotent per content (the first enqueue time stays).
    public func enqueueOutbox(_ item: OutboxItem) throws(MeshError) {
        let n = try outboxCount()
        guard n < Self.maxOutboxRows else {
            throw MeshError(.invalidInput, "the outbox is full (\(Self.maxOutboxRows) items at risk)",
                            hint: "no durable node takes this node's items; check that one is reachable (`meshnode peers`)")
        }
        try sql { () throws(SQLiteError) in
            try db.query("INSERT OR IGNORE INTO outbox(content_id, type, size_bytes, enqueued_ms) VALUES(?, ?, ?, ?)",
                         [.blob(item.contentID.digest.bytes), .int(Int64(item.type.rawValue)),
                          .int(Int64(clamping: item.sizeBytes)), .int(item.enqueuedMs)])
        }
    }

    /// Every item at risk, oldest first.
    public func outboxItems() throws(MeshError) -> [OutboxItem] {
        var out = [OutboxItem]()
        try db.forEach("SELECT content_id, type, size_bytes, enqueued_ms FROM outbox ORDER BY enqueued_ms, content_id", []) { (s) throws(MeshError) in
            guard let d = Bytes32(bytes: s.blob(0)) else { return }
            out.append(OutboxItem(contentID: ContentID(digest: d), type: ItemType(rawValue: UInt8(clamping: s.int(1))) ?? .other,
                                  sizeBytes: UInt64(max(0, s.int(2))), enqueuedMs: s.int(3)))
        }
        return out
    }

    /// `content` is safe (or no longer kept): it leaves the outbox.
    public func removeOutbox(_ content: ContentID) throws(MeshError) {
        try sql { () throws(SQLiteError) in try db.query("DELETE FROM outbox WHERE content_id = ?", [.blob(content.digest.bytes)]) }
    }

    public func outboxCount() throws(MeshError) -> Int {
        try sql { () throws(SQLiteError) in Int(try db.scalarInt("SELECT count(*) FROM outbox") ?? 0) }
    }
}
