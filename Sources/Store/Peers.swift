/// What the store remembers about a peer between runs.
public struct PeerRecord: Sendable, Hashable {
    public var nodeID: NodeID
    public var name: String
    public var address: String
    /// alive | suspect | dead | left (free text owned by the membership layer).
    public var state: String
    public var incarnation: UInt64
    public var lastSeenMs: Int64
    public var role: String
    /// What it was admitted with (its certificate; empty when admitted by key).
    public var credential: [UInt8]

    public init(nodeID: NodeID, name: String, address: String, state: String, incarnation: UInt64,
                lastSeenMs: Int64, role: String, credential: [UInt8] = []) {
        self.nodeID = nodeID
        self.name = name
        self.address = address
        self.state = state
        self.incarnation = incarnation
        self.lastSeenMs = lastSeenMs
        self.role = role
        self.credential = credential
    }
}

extension Store {
    // MARK: - Peers

    /// Inserts or replaces what is known about a peer.
    public func upsertPeer(_ p: PeerRecord, nowMs: Int64 = WallClock.nowMs()) throws(MeshError) {
        try sql { () throws(SQLiteError) in
            try db.query("""
                INSERT INTO peers(node_id, name, address, state, incarnation, last_seen_ms, role, updated_ms, credential)
                VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT(node_id) DO UPDATE SET name = excluded.name, address = excluded.address,
                    state = excluded.state, incarnation = excluded.incarnation, last_seen_ms = excluded.last_seen_ms,
                    role = excluded.role, updated_ms = excluded.updated_ms, credential = excluded.credential
                """, [.blob(p.nodeID.key.bytes), .text(p.name), .text(p.address), .text(p.state),
                      .int(Int64(bitPattern: p.incarnation)), .int(p.lastSeenMs), .text(p.role), .int(nowMs),
                      .blob(p.credential)])
        }
    }

    public func peers() throws(MeshError) -> [PeerRecord] {
        var out = [PeerRecord]()
        try db.forEach("SELECT node_id, name, address, state, incarnation, last_seen_ms, role, credential FROM peers ORDER BY name, node_id") { (s) throws(MeshError) in
            out.append(PeerRecord(nodeID: NodeID(key: Bytes32(bytes: s.blob(0)) ?? .zero), name: s.text(1), address: s.text(2),
                                  state: s.text(3), incarnation: UInt64(bitPattern: s.int(4)), lastSeenMs: s.int(5), role: s.text(6),
                                  credential: s.blob(7)))
        }
        return out
    }

    public func removePeer(_ id: NodeID) throws(MeshError) {
        try sql { () throws(SQLiteError) in try db.query("DELETE FROM peers WHERE node_id = ?", [.blob(id.key.bytes)]) }
    }
}
