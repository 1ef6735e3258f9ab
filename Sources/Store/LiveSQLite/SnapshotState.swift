/// What a snapshotter remembers about the last snapshot of one database, durably (in the
/// store's `node_state`, written in the same transaction as that snapshot's recipe), so
/// that a restarted meshnode can continue from it.
struct LiveSnapshotState: Equatable, Sendable {
    enum Mode: UInt8, Sendable { case rollback = 1, wal = 2 }

    static let formatVersion: UInt8 = 1

    var mode: Mode
    /// Identity of the database file the snapshot was taken from.
    var device: UInt64
    var inode: UInt64
    var contentID: ContentID
    var sizeBytes: UInt64
    var chunkSizeBytes: UInt32
    var pageSize: UInt32
    /// WAL mode: the last commit frame taken into the image (nil: no valid WAL then).
    var position: WALPosition?
    /// Rollback mode: header change counter, file size and mtime at the snapshot.
    var changeCounter: UInt32
    var fileSizeBytes: UInt64
    var mtimeNs: Int64

    var pages: UInt32 { UInt32(sizeBytes / UInt64(max(pageSize, 1))) }

    /// The `node_state` key for the database at `path` (its resolved path).
    static func key(path: String) -> String { "live_sqlite:" + path }

    func encoded() -> [UInt8] {
        var w = ByteWriter(capacity: 128)
        w.u8(Self.formatVersion)
        w.u8(mode.rawValue)
        w.u64(device)
        w.u64(inode)
        w.bytes32(contentID.digest)
        w.u64(sizeBytes)
        w.u32(chunkSizeBytes)
        w.u32(pageSize)
        if let p = position {
            w.u8(1)
            w.u32(p.salt1)
            w.u32(p.salt2)
            w.u32(p.frame)
            w.u32(p.checksum.s0)
            w.u32(p.checksum.s1)
        } else {
            w.u8(0)
        }
        w.u32(changeCounter)
        w.u64(fileSizeBytes)
        w.i64(mtimeNs)
        return w.bytes
    }

    /// Nil for anything this version did not write (the next snapshot is then a full read).
    init?(decoding b: [UInt8]) {
        var r = ByteReader(b)
        do throws(DecodeError) {
            guard try r.u8() == Self.formatVersion, let m = Mode(rawValue: try r.u8()) else { return nil }
            mode = m
            device = try r.u64()
            inode = try r.u64()
            contentID = ContentID(digest: try r.bytes32())
            sizeBytes = try r.u64()
            chunkSizeBytes = try r.u32()
            pageSize = try r.u32()
            switch try r.u8() {
            case 0: position = nil
            case 1:
                let s1 = try r.u32(), s2 = try r.u32(), f = try r.u32(), c0 = try r.u32(), c1 = try r.u32()
                position = WALPosition(salt1: s1, salt2: s2, frame: f, checksum: WALChecksum(s0: c0, s1: c1))
            default: return nil
            }
            changeCounter = try r.u32()
            fileSizeBytes = try r.u64()
            mtimeNs = try r.i64()
            try r.expectEnd()
        } catch {
            return nil
        }
    }

    init(mode: Mode, device: UInt64, inode: UInt64, contentID: ContentID, sizeBytes: UInt64, chunkSizeBytes: UInt32,
         pageSize: UInt32, position: WALPosition?, changeCounter: UInt32, fileSizeBytes: UInt64, mtimeNs: Int64) {
        self.mode = mode
        self.device = device
        self.inode = inode
        self.contentID = contentID
        self.sizeBytes = sizeBytes
        self.chunkSizeBytes = chunkSizeBytes
        self.pageSize = pageSize
        self.position = position
        self.changeCounter = changeCounter
        self.fileSizeBytes = fileSizeBytes
        self.mtimeNs = mtimeNs
    }
}

extension Store {
    /// The recorded state of the live snapshots of the database at `path`, if any.
    func liveSnapshotState(path: String) throws(MeshError) -> LiveSnapshotState? {
        let rows = try sql { () throws(SQLiteError) in
            try db.query("SELECT value FROM node_state WHERE key = ?", [.text(LiveSnapshotState.key(path: path))])
        }
        guard let row = rows.first, case .blob(let b) = row[0] else { return nil }
        return LiveSnapshotState(decoding: b)
    }

    /// Records a live snapshot in one transaction: its recipe (when new), the presence of the
    /// chunks it rebuilt (their files are already durable) and the snapshotter's state.
    /// Creates no manifest entry: the caller signs one for `recipe.contentID`.
    func recordLiveSnapshot(recipe: Recipe?, chunks: [(hash: ChunkHash, sizeBytes: Int)], state: LiveSnapshotState,
                            path: String, nowMs: Int64 = WallClock.nowMs()) throws(MeshError) {
        try db.transaction { () throws(MeshError) in
            if let recipe { try insertRecipeRows(recipe) }
            var seen = Set<ChunkHash>()
            try insertChunkRows(chunks.filter { seen.insert($0.hash).inserted }, writer: WriterStamp.current, nowMs: nowMs)
            try sql { () throws(SQLiteError) in
                try db.query("""
                    INSERT INTO node_state(key, value) VALUES(?, ?)
                    ON CONFLICT(key) DO UPDATE SET value = excluded.value
                    """, [.text(LiveSnapshotState.key(path: path)), .blob(state.encoded())])
            }
        }
    }
}
