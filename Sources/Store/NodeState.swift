/// Durable facts of the running node that are not part of the manifest.
extension Store {
    /// The highest gossip incarnation this node has used (0 before its first run).
    /// A restarted node continues above it, so that its `alive` refutes any stale
    /// `suspect` or `dead` others still hold about it.
    public func incarnation() throws(MeshError) -> UInt64 {
        try sql { () throws(SQLiteError) -> UInt64 in
            UInt64(bitPattern: try db.scalarInt("SELECT value FROM node_state WHERE key = 'incarnation'") ?? 0)
        }
    }

    /// Records the incarnation durably before the node sends anything under it.
    public func setIncarnation(_ n: UInt64) throws(MeshError) {
        try sql { () throws(SQLiteError) in
            _ = try db.query("INSERT INTO node_state(key, value) VALUES('incarnation', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                             [.int(Int64(bitPattern: n))])
        }
    }
}
