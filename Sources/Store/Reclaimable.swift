import Synchronization

/// Contents a process is working on whose recipes GC must leave in place although no kept
/// version references them (a download in progress). Thread-safe: the node pins on its loop
/// thread, a collection reads the pins on its own thread, inside each transaction that
/// deletes recipes.
public final class ContentPins: Sendable {
    private let counts = Mutex<[ContentID: Int]>([:])

    public init() {}

    public func pin(_ c: ContentID) { counts.withLock { $0[c, default: 0] += 1 } }

    /// Releases one `pin` of `c` (nothing if it was not pinned).
    public func unpin(_ c: ContentID) {
        counts.withLock {
            guard let n = $0[c] else { return }
            $0[c] = n > 1 ? n - 1 : nil
        }
    }

    public var contents: Set<ContentID> { counts.withLock { Set($0.keys) } }
}

/// Recorded chunks that a garbage collection would delete now, and their bytes.
public struct Reclaimable: Sendable, Equatable {
    public var chunks = 0
    public var bytes: UInt64 = 0

    public init(chunks: Int = 0, bytes: UInt64 = 0) {
        self.chunks = chunks
        self.bytes = bytes
    }
}

extension Store {
    /// The recorded chunks referenced by no kept content's recipe (nor a pinned one's): what
    /// `collectGarbage` with the same inputs would reclaim. The kept set is computed once from
    /// the catalog; then one query counts them (cheap enough for `status`).
    public func reclaimable(policy: KeepPolicy, alsoKeep: Set<ContentID> = [], pinned: Set<ContentID> = [],
                            nowMs: Int64 = WallClock.nowMs()) throws(MeshError) -> Reclaimable {
        var keep = try catalog().keptContents(policy: policy, nowMs: nowMs)
        keep.formUnion(alsoKeep)
        keep.formUnion(pinned)
        keep.formUnion(try liveSnapshotBases())
        return try chunksReferencedByNone(of: keep)
    }

    /// The recorded chunks that no recipe of a content in `keep` references: the kept ids go
    /// into a temporary table (the connection's own, never shared), then one query.
    func chunksReferencedByNone(of keep: Set<ContentID>) throws(MeshError) -> Reclaimable {
        try sql { () throws(SQLiteError) -> Reclaimable in
            try db.exec("CREATE TEMP TABLE IF NOT EXISTS gc_keep(content_id BLOB PRIMARY KEY) WITHOUT ROWID")
            // A deferred transaction: one snapshot for the query; only the temp database is written.
            try db.exec("BEGIN")
            do throws(SQLiteError) {
                try db.exec("DELETE FROM temp.gc_keep")
                for c in keep { try db.query("INSERT OR IGNORE INTO temp.gc_keep(content_id) VALUES(?)", [.blob(c.digest.bytes)]) }
                let row = try db.query("""
                    SELECT count(*), coalesce(sum(c.size_bytes), 0) FROM chunks c
                    WHERE NOT EXISTS (SELECT 1 FROM recipe_chunks rc JOIN temp.gc_keep k ON k.content_id = rc.content_id
                                      WHERE rc.hash = c.hash)
                    """).first
                try db.exec("DELETE FROM temp.gc_keep")
                try db.exec("COMMIT")
                guard let row, case .int(let n) = row[0], case .int(let b) = row[1] else { return Reclaimable() }
                return Reclaimable(chunks: Int(n), bytes: UInt64(max(0, b)))
            } catch {
                try? db.exec("ROLLBACK")
                throw error
            }
        }
    }
}
