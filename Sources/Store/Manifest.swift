import Foundation

/// One manifest entry as known locally, with local bookkeeping.
public struct ItemInfo: Sendable, Hashable {
    public var entry: ManifestEntry
    /// When this node stored the entry (ms since the epoch).
    public var receivedAtMs: Int64
    /// True when the recipe and every chunk are recorded present (`Store.isComplete`, the one
    /// test every reader uses), so `get` can export it.
    public var isComplete: Bool

    public var contentID: ContentID { entry.contentID }
    public var name: String { entry.name }
}

/// What happened to a remote entry offered to `Store.insertRemoteEntry`.
public enum EntryInsertOutcome: Sendable, Equatable {
    /// New and stored.
    case inserted
    /// Byte-identical to one already stored; nothing changed.
    case duplicate
    /// Same origin and sequence as a stored entry but different bytes: both kept as fork evidence.
    case fork(existing: ManifestEntry)
    /// The signature does not verify; nothing stored.
    case badSignature
    /// The entry breaks a rule of docs/PROTOCOL.md §3/§4 that decoding enforces (named
    /// field, e.g. `entry.chunkSize` out of 4 KiB … 64 MiB); nothing stored.
    case invalid(field: String)
}

extension Store {
    // MARK: - Recipes

    /// The chunk list of `contentID`, if known. If the stored list is damaged (it does not
    /// recompute the id), the returned recipe's `contentID` is not the one asked for.
    public func recipe(_ contentID: ContentID) throws(MeshError) -> Recipe? {
        try sql { () throws(SQLiteError) -> Recipe? in
            let rows = try db.query("SELECT size_bytes, chunk_size, chunk_count FROM recipes WHERE content_id = ?",
                                    [.blob(contentID.digest.bytes)])
            guard let row = rows.first, case .int(let size) = row[0], case .int(let cs) = row[1],
                  case .int(let count) = row[2] else { return nil }
            var chunks = [ChunkHash]()
            chunks.reserveCapacity(Int(count))
            let s = try db.prepare("SELECT hash FROM recipe_chunks WHERE content_id = ? ORDER BY idx")
            defer { s.reset() }
            try s.bind([.blob(contentID.digest.bytes)])
            while try s.step() {
                chunks.append(ChunkHash(digest: Bytes32(bytes: s.blob(0)) ?? .zero))
            }
            var r = Recipe(sizeBytes: UInt64(size), chunkSizeBytes: UInt32(cs), chunks: chunks)
            // Recipes are verified before insertion; a mismatch here means the database was damaged.
            if r.contentID != contentID || chunks.count != Int(count) {
                r.contentID = ContentID(digest: .zero)
            }
            return r
        }
    }

    /// Stores a recipe received from elsewhere after checking that it recomputes `contentID`.
    public func insertRecipe(contentID: ContentID, sizeBytes: UInt64, chunkSizeBytes: UInt32,
                             chunks: [ChunkHash]) throws(MeshError) {
        let r = try Recipe(verifying: contentID, sizeBytes: sizeBytes, chunkSizeBytes: chunkSizeBytes, chunks: chunks)
        try db.transaction { () throws(MeshError) in try insertRecipeRows(r) }
    }

    func insertRecipeRows(_ r: Recipe) throws(MeshError) {
        try sql { () throws(SQLiteError) in
            try db.query("INSERT OR IGNORE INTO recipes(content_id, size_bytes, chunk_size, chunk_count) VALUES(?, ?, ?, ?)",
                         [.blob(r.contentID.digest.bytes), .int(Int64(r.sizeBytes)), .int(Int64(r.chunkSizeBytes)),
                          .int(Int64(r.chunks.count))])
            guard db.changes > 0 else { return }
            let id = SQLValue.blob(r.contentID.digest.bytes)
            for (i, c) in r.chunks.enumerated() {
                try db.query("INSERT INTO recipe_chunks(content_id, idx, hash) VALUES(?, ?, ?)",
                             [id, .int(Int64(i)), .blob(c.digest.bytes)])
            }
        }
    }

    // MARK: - Entries

    static let itemColumns = "encoded, received_at_ms"

    func decodeItem(_ encoded: [UInt8], receivedAtMs: Int64) throws(MeshError) -> ManifestEntry {
        do { return try ManifestEntry.decode(encoded) } catch {
            throw MeshError(.corrupt, "a stored manifest entry does not decode (\(error))",
                            hint: "the database is damaged; restore the data dir or re-sync from peers")
        }
    }

    /// The entry for `(origin, sequence)`, if stored.
    public func entry(origin: NodeID, sequence: UInt64) throws(MeshError) -> ManifestEntry? {
        let rows = try sql { () throws(SQLiteError) in
            try db.query("SELECT encoded FROM items WHERE origin = ? AND sequence = ?",
                         [.blob(origin.key.bytes), .int(Int64(sequence))])
        }
        guard let row = rows.first, case .blob(let b) = row[0] else { return nil }
        return try decodeItem(b, receivedAtMs: 0)
    }

    /// Entries of `origin` with sequence > `after`, ascending, at most `limit` (for anti-entropy).
    public func entries(origin: NodeID, after: UInt64, limit: Int) throws(MeshError) -> [ManifestEntry] {
        var out = [ManifestEntry]()
        try db.forEach("SELECT encoded FROM items WHERE origin = ? AND sequence > ? ORDER BY sequence LIMIT ?",
                       [.blob(origin.key.bytes), .int(Int64(after)), .int(Int64(limit))]) { (s) throws(MeshError) in
            out.append(try decodeItem(s.blob(0), receivedAtMs: 0))
        }
        return out
    }

    /// The highest sequence number seen from `origin` (0 if none).
    public func highestSequence(origin: NodeID) throws(MeshError) -> UInt64 {
        try sql { () throws(SQLiteError) in
            UInt64(try db.scalarInt("SELECT highest_seq FROM origins WHERE origin = ?", [.blob(origin.key.bytes)]) ?? 0)
        }
    }

    /// Every origin with its highest sequence (the anti-entropy summary).
    public func originSummary() throws(MeshError) -> [NodeID: UInt64] {
        var out = [NodeID: UInt64]()
        try db.forEach("SELECT origin, highest_seq FROM origins") { (s) throws(MeshError) in
            if let k = Bytes32(bytes: s.blob(0)) { out[NodeID(key: k)] = UInt64(s.int(1)) }
        }
        return out
    }

    func bumpOrigin(_ origin: NodeID, to seq: UInt64) throws(MeshError) {
        try sql { () throws(SQLiteError) in
            try db.query("""
                INSERT INTO origins(origin, highest_seq) VALUES(?, ?)
                ON CONFLICT(origin) DO UPDATE SET highest_seq = max(highest_seq, excluded.highest_seq)
                """, [.blob(origin.key.bytes), .int(Int64(seq))])
        }
    }

    func insertItemRow(_ e: ManifestEntry, receivedAtMs: Int64) throws(MeshError) {
        try sql { () throws(SQLiteError) in
            try db.query("""
                INSERT INTO items(origin, sequence, kind, content_id, name, type, size_bytes, chunk_size, created_ms,
                                  signature, encoded, received_at_ms, hlc, expires_ms)
                VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
                [.blob(e.origin.key.bytes), .int(Int64(e.sequence)), .int(Int64(e.kindCode)),
                 .blob(e.contentID.digest.bytes), .text(e.name), .int(Int64(e.type.rawValue)),
                 .int(Int64(bitPattern: e.sizeBytes)), .int(Int64(e.chunkSizeBytes)), .int(e.createdAtMs),
                 .blob(e.signature.bytes), .blob(e.encoded), .int(receivedAtMs),
                 .int(Int64(bitPattern: e.hlc)), .int(e.put?.expiresAtMs ?? 0)])
        }
    }

    /// Stores an entry received from a peer, idempotently. The signature is checked here;
    /// an entry that differs from a stored one with the same `(origin, sequence)` is kept
    /// as fork evidence (the stored one stays authoritative) and reported.
    public func insertRemoteEntry(_ e: ManifestEntry, verifier: any SignatureVerifier,
                                  nowMs: Int64 = WallClock.nowMs()) throws(MeshError) -> EntryInsertOutcome {
        // An entry built in memory skipped the decoder's checks: the store enforces them too.
        if let field = e.invalidField { return .invalid(field: field) }
        guard e.verify(with: verifier) else { return .badSignature }
        return try db.transaction { () throws(MeshError) -> EntryInsertOutcome in
            if let existing = try entry(origin: e.origin, sequence: e.sequence) {
                if existing.encoded == e.encoded { return .duplicate }
                try insertForkRow(existing, e, nowMs: nowMs)
                return .fork(existing: existing)
            }
            try insertItemRow(e, receivedAtMs: nowMs)
            try bumpOrigin(e.origin, to: e.sequence)
            return .inserted
        }
    }

    // MARK: - Listing

    /// Every put (a version of a name), oldest first, with completeness. Tombstones and
    /// entries of unknown kinds are not items: see `allEntries()` and `catalog()`.
    public func items() throws(MeshError) -> [ItemInfo] {
        var raw = [(ManifestEntry, Int64)]()
        try db.forEach("SELECT encoded, received_at_ms FROM items WHERE kind = 1 ORDER BY received_at_ms, origin, sequence") { (s) throws(MeshError) in
            raw.append((try decodeItem(s.blob(0), receivedAtMs: s.int(1)), s.int(1)))
        }
        var complete = [ContentID: Bool]()
        return try raw.map { (e, t) throws(MeshError) in
            let c: Bool
            if let known = complete[e.contentID] { c = known } else {
                c = try isComplete(e.contentID)
                complete[e.contentID] = c
            }
            return ItemInfo(entry: e, receivedAtMs: t, isComplete: c)
        }
    }

    /// Every stored entry of every kind, in origin then sequence order (what gossip restores).
    public func allEntries() throws(MeshError) -> [ManifestEntry] {
        var out = [ManifestEntry]()
        try db.forEach("SELECT encoded FROM items ORDER BY origin, sequence") { (s) throws(MeshError) in
            out.append(try decodeItem(s.blob(0), receivedAtMs: 0))
        }
        return out
    }

    /// The earliest received put announcing `contentID`, if any (indexed; no scan).
    public func entry(contentID: ContentID) throws(MeshError) -> ManifestEntry? {
        var found: ManifestEntry?
        try db.forEach("SELECT encoded, received_at_ms FROM items WHERE content_id = ? AND kind = 1 ORDER BY received_at_ms LIMIT 1",
                       [.blob(contentID.digest.bytes)]) { (s) throws(MeshError) in
            found = try decodeItem(s.blob(0), receivedAtMs: s.int(1))
        }
        return found
    }
}
