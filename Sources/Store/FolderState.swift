import Sync

/// What each watched folder last saw or wrote, per relative path (`folder_files`), so that a
/// restarted node knows what changed while it was down: a file deleted meanwhile becomes a
/// tombstone, a receive folder's file edited meanwhile is reverted.
///
/// A folder is identified by its path and name prefix (`folder_roots`): changing either
/// starts it afresh (its files are compared with the catalog again; nothing is lost, as
/// puts of unchanged content are no-ops).
extension Store {
    /// The id of the folder at `path` with `prefix`, creating it if needed; `isNew` until its
    /// first complete scan was recorded (`applyFolderRecords(..., markScanned: true)`), so a
    /// crash before that makes the next start treat the folder as new again.
    public func folderState(path: String, prefix: String, nowMs: Int64 = WallClock.nowMs()) throws(MeshError) -> (id: Int64, isNew: Bool) {
        try db.transaction { () throws(MeshError) -> (id: Int64, isNew: Bool) in
            try sql { () throws(SQLiteError) -> (id: Int64, isNew: Bool) in
                let rows = try db.query("SELECT id, scanned_ms FROM folder_roots WHERE path = ? AND prefix = ?", [.text(path), .text(prefix)])
                if let row = rows.first, case .int(let id) = row[0] {
                    return (id, row[1] == .null)
                }
                _ = try db.query("INSERT INTO folder_roots(path, prefix, created_ms) VALUES(?, ?, ?)",
                                 [.text(path), .text(prefix), .int(nowMs)])
                return (db.lastInsertRowID, true)
            }
        }
    }

    /// Stores (a record) or drops (nil) the records of several paths of folder `id` in one
    /// transaction; with `markScanned`, also records that the folder's first complete scan is
    /// in (after which `folderState` no longer reports it new).
    public func applyFolderRecords(folder id: Int64, _ changes: [(path: String, record: FolderRecord?)], markScanned: Bool = false,
                                   nowMs: Int64 = WallClock.nowMs()) throws(MeshError) {
        try db.transaction { () throws(MeshError) in
            for c in changes {
                if let r = c.record { try setFolderRecord(folder: id, path: c.path, r) } else { try removeFolderRecord(folder: id, path: c.path) }
            }
            if markScanned {
                try sql { () throws(SQLiteError) in
                    _ = try db.query("UPDATE folder_roots SET scanned_ms = coalesce(scanned_ms, ?) WHERE id = ?", [.int(nowMs), .int(id)])
                }
            }
        }
    }

    /// Every record of folder `id`, by relative path.
    public func folderRecords(folder id: Int64) throws(MeshError) -> [String: FolderRecord] {
        var out = [String: FolderRecord]()
        try db.forEach("""
            SELECT rel_path, size_bytes, mtime_ns, inode, content_id, origin, sequence, source, updated_ms
            FROM folder_files WHERE folder = ?
            """, [.int(id)]) { (s) throws(MeshError) in
            guard let source = FolderRecord.Source(rawValue: UInt8(clamping: s.int(7))) else {
                throw MeshError(.corrupt, "folder_files row for \(s.text(0)) has an unknown source \(s.int(7))",
                                hint: "the database was written by a newer meshnode or is damaged")
            }
            let content = s.isNull(4) ? nil : Bytes32(bytes: s.blob(4)).map(ContentID.init(digest:))
            var ref: EntryRef?
            if !s.isNull(5), let o = Bytes32(bytes: s.blob(5)) { ref = EntryRef(origin: NodeID(key: o), sequence: UInt64(bitPattern: s.int(6))) }
            let stat = FileStat(sizeBytes: UInt64(bitPattern: s.int(1)), mtimeNs: s.int(2), inode: UInt64(bitPattern: s.int(3)))
            out[s.text(0)] = FolderRecord(stat: stat, contentID: content, entry: ref, source: source, updatedMs: s.int(8))
        }
        return out
    }

    /// Stores (or replaces) the record of `path` in folder `id`.
    public func setFolderRecord(folder id: Int64, path: String, _ r: FolderRecord) throws(MeshError) {
        try sql { () throws(SQLiteError) in
            _ = try db.query("""
                INSERT OR REPLACE INTO folder_files(folder, rel_path, size_bytes, mtime_ns, inode, content_id, origin, sequence, source, updated_ms)
                VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, [.int(id), .text(path), .int(Int64(bitPattern: r.stat.sizeBytes)), .int(r.stat.mtimeNs),
                      .int(Int64(bitPattern: r.stat.inode)), r.contentID.map { .blob($0.digest.bytes) } ?? .null,
                      r.entry.map { .blob($0.origin.key.bytes) } ?? .null, r.entry.map { .int(Int64(bitPattern: $0.sequence)) } ?? .null,
                      .int(Int64(r.source.rawValue)), .int(r.updatedMs)])
        }
    }

    /// Drops the record of `path` in folder `id` (nothing if there is none).
    public func removeFolderRecord(folder id: Int64, path: String) throws(MeshError) {
        try sql { () throws(SQLiteError) in
            _ = try db.query("DELETE FROM folder_files WHERE folder = ? AND rel_path = ?", [.int(id), .text(path)])
        }
    }
}
