/// Evidence of a fork: two validly signed, different entries with one (origin, sequence)
/// (docs/PROTOCOL.md §4). `first` is the entry the manifest holds (it arrived first),
/// `second` the conflicting one; both as encoded on the wire.
public struct ForkEvidence: Sendable, Hashable {
    public var origin: NodeID
    public var sequence: UInt64
    public var first: [UInt8]
    public var second: [UInt8]
    public var detectedMs: Int64

    /// The two entries decoded (nil for one that no longer decodes: kept as bytes all the same).
    public var firstEntry: ManifestEntry? { try? ManifestEntry.decode(first) }
    public var secondEntry: ManifestEntry? { try? ManifestEntry.decode(second) }
}

extension Store {
    /// Keeps a fork found elsewhere (the gossip layer holds `held` and was offered `other`) as
    /// evidence, durably. Both must be valid, signed entries with the same origin and sequence
    /// and different bytes; anything else is refused (`.invalidInput`). A pair already kept,
    /// in either order, is kept once: returns whether this call added it.
    @discardableResult
    public func recordFork(_ held: ManifestEntry, _ other: ManifestEntry, verifier: any SignatureVerifier,
                           nowMs: Int64 = WallClock.nowMs()) throws(MeshError) -> Bool {
        guard held.origin == other.origin, held.sequence == other.sequence, held.encoded != other.encoded,
              held.invalidField == nil, other.invalidField == nil,
              held.verify(with: verifier), other.verify(with: verifier) else {
            throw MeshError(.invalidInput, "not a fork: two different validly signed entries with one origin and sequence are",
                            hint: "this is a bug in the caller")
        }
        return try db.transaction { () throws(MeshError) -> Bool in try insertForkRow(held, other, nowMs: nowMs) }
    }

    /// Inserts the pair unless it is there already (either order). Call inside a transaction.
    @discardableResult
    func insertForkRow(_ a: ManifestEntry, _ b: ManifestEntry, nowMs: Int64) throws(MeshError) -> Bool {
        let (ea, eb) = (a.encoded, b.encoded)
        return try sql { () throws(SQLiteError) -> Bool in
            let known = try db.scalarInt("""
                SELECT count(*) FROM forks WHERE origin = ? AND sequence = ?
                    AND ((entry_a = ? AND entry_b = ?) OR (entry_a = ? AND entry_b = ?))
                """, [.blob(a.origin.key.bytes), .int(Int64(a.sequence)), .blob(ea), .blob(eb), .blob(eb), .blob(ea)]) ?? 0
            guard known == 0 else { return false }
            try db.query("INSERT OR IGNORE INTO forks(origin, sequence, entry_a, entry_b, detected_ms) VALUES(?, ?, ?, ?, ?)",
                         [.blob(a.origin.key.bytes), .int(Int64(a.sequence)), .blob(ea), .blob(eb), .int(nowMs)])
            return db.changes > 0
        }
    }

    /// Every fork kept, oldest first.
    public func forks() throws(MeshError) -> [ForkEvidence] {
        var out = [ForkEvidence]()
        try db.forEach("SELECT origin, sequence, entry_a, entry_b, detected_ms FROM forks ORDER BY id") { (s) throws(MeshError) in
            out.append(ForkEvidence(origin: NodeID(key: Bytes32(bytes: s.blob(0)) ?? .zero), sequence: UInt64(s.int(1)),
                                    first: s.blob(2), second: s.blob(3), detectedMs: s.int(4)))
        }
        return out
    }
}
