// Store: persistence (SQLite manifest, chunk files, node identity).
@_exported import Gossip
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Wall-clock helpers (the store is the I/O layer; protocol code gets time passed in).
public enum WallClock {
    /// Milliseconds since the Unix epoch.
    public static func nowMs() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }

    /// Monotonic seconds, for measuring durations.
    public static func monotonicSeconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}

/// The per-store settings in `node.json`, fixed at `init`.
public struct StoreConfig: Codable, Sendable, Equatable {
    /// Version of this file's format.
    public var format: Int
    /// A human-readable node name (for `peers` and logs; not an identity).
    public var name: String
    /// The chunk size new items are cut into.
    public var chunkSizeBytes: UInt32
    public var createdAtMs: Int64

    enum CodingKeys: String, CodingKey {
        case format, name
        case chunkSizeBytes = "chunk_size_bytes"
        case createdAtMs = "created_at_ms"
    }
}

/// One manifest entry as known locally, with local bookkeeping.
public struct ItemInfo: Sendable, Hashable {
    public var entry: ManifestEntry
    /// When this node stored the entry (ms since the epoch).
    public var receivedAtMs: Int64
    /// True when the recipe and every chunk are recorded present, so `get` can export it
    /// (by the manifest's records; `Store.verify` checks the files themselves).
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

/// Totals for `meshnode status`.
public struct StoreStatus: Sendable {
    public var dataDir: String
    public var name: String
    public var schemaVersion: Int
    public var chunkSizeBytes: UInt32
    /// Manifest entries.
    public var items: Int
    /// Entries whose content is not (yet) fully here.
    public var incompleteItems: Int
    /// Sum of the sizes of the distinct contents listed.
    public var itemBytes: UInt64
    /// Chunks recorded as present, and their total size on disk.
    public var chunks: Int
    public var chunkBytes: UInt64
    public var peers: Int
    public var outbox: Int
    public var forks: Int
}

/// A content-addressed chunk store with its SQLite manifest, in one data dir:
///
/// ```
/// DATA/identity.key       Ed25519 secret key (0600)
/// DATA/node.json          name, chunk size (StoreConfig)
/// DATA/manifest.sqlite    manifest database (WAL)
/// DATA/chunks/ab/<hex64>  chunk files, fanned out by the first two hex digits
/// DATA/tmp/               temp files; stale ones are swept at open
/// ```
///
/// Not thread-safe: one `Store` is used from one thread at a time (ingest and export use
/// their own worker threads internally). Several processes may open the same data dir;
/// SQLite serialises their writes.
public final class Store {
    public let dataDir: String
    public let config: StoreConfig
    let db: Database
    let chunkFiles: ChunkFiles

    public static let configFileName = "node.json"
    public static let databaseFileName = "manifest.sqlite"
    /// How long a write waits for another process's transaction.
    public static let busyTimeoutMs: Int32 = 10_000

    var chunksDir: String { "\(dataDir)/chunks" }
    var tmpDir: String { "\(dataDir)/tmp" }

    private init(dataDir: String, config: StoreConfig, db: Database) {
        self.dataDir = dataDir
        self.config = config
        self.db = db
        self.chunkFiles = ChunkFiles(chunksDir: "\(dataDir)/chunks", tmpDir: "\(dataDir)/tmp")
    }

    // MARK: - Creating and opening

    /// Creates a new data dir: identity, `node.json`, the database and the chunk tree.
    /// Refuses (`.alreadyInitialized`) when an identity is already there.
    @discardableResult
    public static func initialize(dataDir: String, name: String,
                                  chunkSizeBytes: UInt32 = Chunking.defaultChunkSizeBytes,
                                  identity: NodeIdentity? = nil) throws(MeshError) -> (Store, NodeIdentity) {
        guard chunkSizeBytes >= Chunking.minChunkSizeBytes, chunkSizeBytes <= Chunking.maxChunkSizeBytes else {
            throw MeshError(.invalidInput, "chunk size \(chunkSizeBytes) is out of range",
                            hint: "use \(Chunking.minChunkSizeBytes)...\(Chunking.maxChunkSizeBytes) bytes")
        }
        try validateName(name, what: "node name")
        let configPath = "\(dataDir)/\(configFileName)"
        let id: NodeIdentity
        if FS.exists("\(dataDir)/\(NodeIdentity.fileName)") {
            // An init interrupted after the key was saved is completed, keeping that key;
            // a finished store is never re-initialised.
            guard !FS.exists(configPath), !FS.exists("\(dataDir)/\(databaseFileName)") else {
                throw MeshError(.alreadyInitialized, "\(dataDir) already holds a node identity",
                                hint: "refusing to overwrite it; use another --data dir for a new node")
            }
            id = try NodeIdentity.load(dataDir: dataDir)
        } else {
            try FS.mkdirs(dataDir, mode: 0o700)
            id = identity ?? NodeIdentity.generate()
            try id.save(dataDir: dataDir)
        }
        let config: StoreConfig
        if FS.exists(configPath) {
            // A store without identity (identity.key was lost): keep its settings and data.
            config = try readConfig(configPath)
        } else {
            config = StoreConfig(format: 1, name: name, chunkSizeBytes: chunkSizeBytes, createdAtMs: WallClock.nowMs())
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            let data: Data
            do { data = try enc.encode(config) } catch {
                throw MeshError(.internalError, "cannot encode node.json: \(error)", hint: "")
            }
            try FS.writeAtomically(configPath, bytes: Array(data) + [0x0a], mode: 0o644)
        }
        try FS.mkdir("\(dataDir)/chunks")
        for i in 0..<256 { try FS.mkdir("\(dataDir)/chunks/\(Hex.encode([UInt8(i)]))") }
        try FS.fsyncDirectory("\(dataDir)/chunks")
        try FS.mkdir("\(dataDir)/tmp")
        try FS.fsyncDirectory(dataDir)
        let store = try open(dataDir: dataDir)
        return (store, id)
    }

    static func readConfig(_ path: String) throws(MeshError) -> StoreConfig {
        let bytes = try FS.readSmallFile(path, limitBytes: 64 * 1024)
        let c: StoreConfig
        do { c = try JSONDecoder().decode(StoreConfig.self, from: Data(bytes)) } catch {
            throw MeshError(.corrupt, "\(path) is not valid store settings",
                            hint: "restore it from a backup (it holds the node name and chunk size)")
        }
        guard c.format == 1 else {
            throw MeshError(.schemaTooNew, "\(path) has format \(c.format), newer than this meshnode understands (1)",
                            hint: "upgrade meshnode to the version that wrote this store")
        }
        guard c.chunkSizeBytes >= Chunking.minChunkSizeBytes, c.chunkSizeBytes <= Chunking.maxChunkSizeBytes else {
            throw MeshError(.corrupt, "\(path) has an invalid chunk size \(c.chunkSizeBytes)", hint: "restore it from a backup")
        }
        return c
    }

    /// Opens an existing data dir: checks the schema (migrating older ones), and
    /// sweeps temp files left by processes that no longer run.
    public static func open(dataDir: String) throws(MeshError) -> Store {
        let configPath = "\(dataDir)/\(configFileName)"
        guard FS.exists(configPath) else {
            throw MeshError(.notInitialized, "no meshnode store at \(dataDir)",
                            hint: "run `meshnode init --data \(dataDir)` first (or pass the right --data)")
        }
        let config = try readConfig(configPath)
        let dbPath = "\(dataDir)/\(databaseFileName)"
        let db: Database
        do {
            db = try Database(path: dbPath)
            try db.exec("PRAGMA busy_timeout = \(busyTimeoutMs)")
        } catch { throw error.meshError }
        // Check the version before anything writes to the file.
        let version: Int
        do { version = Int(try db.scalarInt("PRAGMA user_version") ?? 0) } catch { throw error.meshError }
        if version > Schema.currentVersion {
            throw MeshError(.schemaTooNew,
                            "store \(dataDir) has schema version \(version), newer than this meshnode understands (\(Schema.currentVersion))",
                            hint: "upgrade meshnode to the version that wrote this store")
        }
        do {
            try db.exec("PRAGMA journal_mode = WAL")
            // FULL: a committed local entry must survive power loss, or its sequence number
            // could be reused for a different entry after reboot: a fork peers would report.
            try db.exec("PRAGMA synchronous = FULL")
        } catch { throw error.meshError }
        try Schema.migrate(db, path: dataDir)
        try FS.mkdir("\(dataDir)/tmp")
        try FS.mkdir("\(dataDir)/chunks")
        let store = Store(dataDir: dataDir, config: config, db: db)
        store.sweepTemporaryFiles()
        return store
    }

    /// Loads this data dir's identity.
    public func loadIdentity() throws(MeshError) -> NodeIdentity {
        try NodeIdentity.load(dataDir: dataDir)
    }

    /// The schema version of the open database.
    public func schemaVersion() throws(MeshError) -> Int {
        try sql { () throws(SQLiteError) in Int(try db.scalarInt("PRAGMA user_version") ?? 0) }
    }

    /// Temp files are named `<pid>.<token>.<suffix>`; those whose process is gone are removed.
    func sweepTemporaryFiles() {
        let me = getpid()
        for name in FS.list(tmpDir) {
            if let pid = Int32(name.split(separator: ".", maxSplits: 1).first.map(String.init) ?? "") {
                if pid == me { continue }
                if kill(pid, 0) == 0 || errno == EPERM { continue }  // still running
            }
            FS.unlink("\(tmpDir)/\(name)")
        }
    }

    @discardableResult
    func sql<T>(_ body: () throws(SQLiteError) -> T) throws(MeshError) -> T {
        do { return try body() } catch { throw error.meshError }
    }

    static func validateName(_ name: String, what: String) throws(MeshError) {
        guard !name.isEmpty, name.utf8.count <= ManifestEntry.maxNameBytes else {
            throw MeshError(.invalidInput, "\(what) must be 1...\(ManifestEntry.maxNameBytes) bytes of UTF-8",
                            hint: "choose a shorter, non-empty name")
        }
        guard !name.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f }) else {
            throw MeshError(.invalidInput, "\(what) contains control characters", hint: "choose a printable name")
        }
    }

    // MARK: - Chunks

    /// Where a chunk's file lives: `chunks/ab/<hex>`.
    public func chunkPath(_ hash: ChunkHash) -> String { chunkFiles.path(hash) }

    /// True if the chunk's file is present (its bytes are checked by `verify`/`readChunk`).
    public func hasChunk(_ hash: ChunkHash) -> Bool { FS.regularFileSize(chunkPath(hash)) != nil }

    /// Reads a chunk and checks it against its hash; a mismatch is `.corrupt`.
    public func readChunk(_ hash: ChunkHash) throws(MeshError) -> [UInt8] {
        let path = chunkPath(hash)
        guard FS.exists(path) else {
            throw MeshError(.unknownItem, "chunk \(hash) is not in this store", hint: "fetch it from a peer")
        }
        let bytes = try FS.readSmallFile(path, limitBytes: Int(Chunking.maxChunkSizeBytes))
        guard Blake2b256.hash(bytes) == hash.digest else {
            throw MeshError(.corrupt, "chunk \(hash) is corrupt on disk (\(path))",
                            hint: "run `meshnode verify` to find every damaged item")
        }
        return bytes
    }

    /// Reads a stored chunk for a peer straight into `dest` and returns its size, which must
    /// be `expectedBytes` (else `.corrupt`). Not re-hashed: the receiver verifies every chunk
    /// anyway (PROTOCOL §9.2; a damaged chunk file costs this node a strike with that peer,
    /// and `meshnode verify` finds it). Everything that exports or trusts the bytes itself
    /// uses `readChunk`. When `dest` is 4096-aligned and has room for `expectedBytes` rounded up to
    /// 4096, the file is read with O_DIRECT: no copy out of the page cache, which cost a
    /// sixth of a serving node's CPU. Thread-safe.
    public func readChunkForPeer(_ hash: ChunkHash, expectedBytes: Int, into dest: UnsafeMutableRawBufferPointer) throws(MeshError) -> Int {
        guard expectedBytes <= dest.count, let base = dest.baseAddress else {
            throw MeshError(.invalidInput, "no room for a \(expectedBytes)-byte chunk", hint: "this is a bug")
        }
        return try chunkFiles.read(hash, into: base, capacity: dest.count, expected: expectedBytes, itemName: "an item served to a peer")
    }

    /// Stores a chunk received from elsewhere: verified against `hash` first, then written
    /// crash-safely (temp, fsync, rename, directory fsync) and recorded as present.
    public func writeChunk(_ hash: ChunkHash, bytes: [UInt8], nowMs: Int64 = WallClock.nowMs()) throws(MeshError) {
        guard bytes.count <= Int(Chunking.maxChunkSizeBytes) else {
            throw MeshError(.invalidInput, "chunk \(hash) is \(bytes.count) bytes, over the limit", hint: "the sender is broken")
        }
        guard Blake2b256.hash(bytes) == hash.digest else {
            throw MeshError(.corrupt, "received chunk does not match its hash \(hash)",
                            hint: "the sender is broken or malicious; fetch it from another peer")
        }
        let wrote = try withBytes(bytes) { (raw) throws(MeshError) -> Bool in
            try chunkFiles.store(hash, raw)
        }
        if wrote { try FS.fsyncDirectory(FS.dirname(of: chunkPath(hash))) }
        try sql { () throws(SQLiteError) in
            try db.query("INSERT OR IGNORE INTO chunks(hash, size_bytes, stored_at_ms) VALUES(?, ?, ?)",
                         [.blob(hash.digest.bytes), .int(Int64(bytes.count)), .int(nowMs)])
        }
    }

    /// Stores several chunks received from elsewhere: each is verified against its hash,
    /// written to a temp file, then all are synced in one batch, named, their directories
    /// synced once, and their presence recorded in one transaction. Much cheaper per chunk
    /// than `writeChunk` when a transfer delivers many. On a bad chunk nothing is stored.
    public func writeChunks(_ chunks: [(hash: ChunkHash, bytes: [UInt8])], nowMs: Int64 = WallClock.nowMs()) throws(MeshError) {
        for c in chunks {
            guard c.bytes.count <= Int(Chunking.maxChunkSizeBytes), Blake2b256.hash(c.bytes) == c.hash.digest else {
                throw MeshError(.corrupt, "received chunk does not match its hash \(c.hash)",
                                hint: "the sender is broken or malicious; fetch it from another peer")
            }
        }
        _ = try stageAndStore(chunks.map { ($0.hash, $0.bytes[...]) }, verify: false, nowMs: nowMs)
    }

    /// Like `writeChunks`, but a bad chunk does not spoil the batch: each chunk is hashed once,
    /// the good ones are stored (one sync for all), and the result says which were good.
    public func writeChunksKeepingGood(_ chunks: [(hash: ChunkHash, bytes: ArraySlice<UInt8>)], nowMs: Int64 = WallClock.nowMs()) throws(MeshError) -> [Bool] {
        try stageAndStore(chunks, verify: true, nowMs: nowMs)
    }

    /// Writes chunks durably and records them; with `verify`, skips (and reports false for)
    /// those whose bytes do not match their hash. Each chunk is copied once, into one
    /// 4096-aligned staging buffer, hashed there (while it is in cache) and written from
    /// there, bypassing the page cache (O_DIRECT): copying into the cache cost a fifth of a
    /// receiving node's CPU. One sync round covers the batch.
    private func stageAndStore(_ chunks: [(hash: ChunkHash, bytes: ArraySlice<UInt8>)], verify: Bool,
                               nowMs: Int64) throws(MeshError) -> [Bool] {
        guard !chunks.isEmpty else { return [] }
        var good = [Bool]()
        var kept = [(hash: ChunkHash, sizeBytes: Int)]()
        var pending = [ChunkFiles.PendingChunk]()
        defer { chunkFiles.discard(&pending) }
        var dirs = Set<String>()
        let largest = chunks.map(\.bytes.count).max()!
        let capacity = (min(largest, Int(Chunking.maxChunkSizeBytes)) + 4095) & ~4095
        let staging = UnsafeMutableRawPointer.allocate(byteCount: max(capacity, 4096), alignment: 4096)
        defer { staging.deallocate() }
        for c in chunks {
            guard c.bytes.count <= Int(Chunking.maxChunkSizeBytes) else {
                good.append(false)
                continue
            }
            c.bytes.withUnsafeBytes { src in
                if let base = src.baseAddress { staging.copyMemory(from: base, byteCount: src.count) }
            }
            let raw = UnsafeRawBufferPointer(start: staging, count: c.bytes.count)
            guard !verify || Blake2b256.hash(raw) == c.hash.digest else {
                good.append(false)
                continue
            }
            good.append(true)
            kept.append((c.hash, c.bytes.count))
            let p = try chunkFiles.writeTemp(c.hash, raw, paddedCapacity: capacity)
            if let p { pending.append(p) }
            dirs.insert(FS.dirname(of: chunkPath(c.hash)))
        }
        guard !kept.isEmpty else { return good }
        try chunkFiles.commit(&pending)
        for d in dirs.sorted() { try FS.fsyncDirectory(d) }
        try db.transaction { () throws(MeshError) in
            try sql { () throws(SQLiteError) in
                for c in kept {
                    try db.query("INSERT OR IGNORE INTO chunks(hash, size_bytes, stored_at_ms) VALUES(?, ?, ?)",
                                 [.blob(c.hash.digest.bytes), .int(Int64(c.sizeBytes)), .int(nowMs)])
                }
            }
        }
        return good
    }

    /// The chunks of `contentID` that are not on disk, in file order, without duplicates.
    /// Nil if the recipe itself is unknown.
    public func missingChunks(_ contentID: ContentID) throws(MeshError) -> [ChunkHash]? {
        guard let r = try recipe(contentID) else { return nil }
        var seen = Set<ChunkHash>()
        var out = [ChunkHash]()
        for c in r.chunks where !seen.contains(c) {
            seen.insert(c)
            if !hasChunk(c) { out.append(c) }
        }
        return out
    }

    /// True when the recipe is known and every chunk is recorded present, by the manifest
    /// alone (no file system access: fast enough for listings). `verify` checks the disk.
    public func isRecordedComplete(_ contentID: ContentID) throws(MeshError) -> Bool {
        try sql { () throws(SQLiteError) -> Bool in
            let id = SQLValue.blob(contentID.digest.bytes)
            guard try db.scalarInt("SELECT 1 FROM recipes WHERE content_id = ?", [id]) != nil else { return false }
            let missing = try db.scalarInt("""
                SELECT count(*) FROM recipe_chunks rc
                WHERE rc.content_id = ? AND NOT EXISTS (SELECT 1 FROM chunks c WHERE c.hash = rc.hash)
                """, [id]) ?? 0
            return missing == 0
        }
    }

    /// True when the recipe is known and every chunk file is on disk (checks the file system).
    public func isComplete(_ contentID: ContentID) throws(MeshError) -> Bool {
        guard let missing = try missingChunks(contentID) else { return false }
        return missing.isEmpty
    }

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
                                  signature, encoded, received_at_ms)
                VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
                [.blob(e.origin.key.bytes), .int(Int64(e.sequence)), .int(Int64(e.kind.rawValue)),
                 .blob(e.contentID.digest.bytes), .text(e.name), .int(Int64(e.type.rawValue)),
                 .int(Int64(bitPattern: e.sizeBytes)), .int(Int64(e.chunkSizeBytes)), .int(e.createdAtMs),
                 .blob(e.signature.bytes), .blob(e.encoded), .int(receivedAtMs)])
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

    // MARK: - Listing and resolving

    /// Every entry, oldest first, with completeness.
    public func items() throws(MeshError) -> [ItemInfo] {
        var raw = [(ManifestEntry, Int64)]()
        try db.forEach("SELECT encoded, received_at_ms FROM items ORDER BY received_at_ms, origin, sequence") { (s) throws(MeshError) in
            raw.append((try decodeItem(s.blob(0), receivedAtMs: s.int(1)), s.int(1)))
        }
        var complete = [ContentID: Bool]()
        return try raw.map { (e, t) throws(MeshError) in
            let c: Bool
            if let known = complete[e.contentID] { c = known } else {
                c = try isRecordedComplete(e.contentID)
                complete[e.contentID] = c
            }
            return ItemInfo(entry: e, receivedAtMs: t, isComplete: c)
        }
    }

    /// The earliest received entry announcing `contentID`, if any (indexed; no scan).
    public func entry(contentID: ContentID) throws(MeshError) -> ManifestEntry? {
        var found: ManifestEntry?
        try db.forEach("SELECT encoded, received_at_ms FROM items WHERE content_id = ? ORDER BY received_at_ms LIMIT 1",
                       [.blob(contentID.digest.bytes)]) { (s) throws(MeshError) in
            found = try decodeItem(s.blob(0), receivedAtMs: s.int(1))
        }
        return found
    }

    /// Finds the one item meant by `query`: a full content id, an exact name, or a content
    /// id prefix of at least 6 hex digits. Several entries for the same content are one item
    /// (the earliest received entry is returned); different contents are `.ambiguousName`.
    public func resolve(_ query: String) throws(MeshError) -> ItemInfo {
        let all = try items()
        func pick(_ matches: [ItemInfo], how: String) throws(MeshError) -> ItemInfo? {
            let ids = Set(matches.map(\.contentID))
            if ids.count > 1 {
                let list = ids.sorted().prefix(5).map(\.short).joined(separator: ", ")
                throw MeshError(.ambiguousName, "\(how) '\(query)' matches \(ids.count) different items (\(list))",
                                hint: "use the full content id from `meshnode ls`")
            }
            return matches.max { a, b in a.receivedAtMs > b.receivedAtMs }
        }
        if let id = ContentID(hex: query), let hit = try pick(all.filter { $0.contentID == id }, how: "id") { return hit }
        if let hit = try pick(all.filter { $0.name == query }, how: "name") { return hit }
        let lower = query.lowercased()
        if lower.count >= 6, lower.count < 64, Hex.decode(lower.count % 2 == 0 ? lower : lower + "0") != nil,
           let hit = try pick(all.filter { $0.contentID.description.hasPrefix(lower) }, how: "id prefix") { return hit }
        throw MeshError(.unknownItem, "no item with id or name '\(query)'", hint: "list items with `meshnode ls`")
    }

    // MARK: - Status

    public func status() throws(MeshError) -> StoreStatus {
        let all = try items()
        var seen = Set<ContentID>()
        var bytes: UInt64 = 0
        for i in all where seen.insert(i.contentID).inserted { bytes += i.entry.sizeBytes }
        return try sql { () throws(SQLiteError) -> StoreStatus in
            StoreStatus(
                dataDir: dataDir, name: config.name,
                schemaVersion: Int(try db.scalarInt("PRAGMA user_version") ?? 0),
                chunkSizeBytes: config.chunkSizeBytes,
                items: all.count, incompleteItems: all.filter { !$0.isComplete }.count, itemBytes: bytes,
                chunks: Int(try db.scalarInt("SELECT count(*) FROM chunks") ?? 0),
                chunkBytes: UInt64(try db.scalarInt("SELECT coalesce(sum(size_bytes), 0) FROM chunks") ?? 0),
                peers: Int(try db.scalarInt("SELECT count(*) FROM peers") ?? 0),
                outbox: Int(try db.scalarInt("SELECT count(*) FROM outbox") ?? 0),
                forks: Int(try db.scalarInt("SELECT count(*) FROM forks") ?? 0))
        }
    }

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

/// The chunk tree of a data dir; safe to use from worker threads (immutable paths only).
struct ChunkFiles: Sendable {
    /// `MESHNODE_NO_TMPFILE=1` forces named temp files, as on file systems without
    /// O_TMPFILE (so that tests cover that path too).
    static let tmpfileDisabled: Bool = getenv("MESHNODE_NO_TMPFILE").map { String(cString: $0) == "1" } ?? false

    let chunksDir: String
    let tmpDir: String

    func path(_ hash: ChunkHash) -> String {
        let hex = hash.digest.hex
        return "\(chunksDir)/\(hex.prefix(2))/\(hex)"
    }

    /// A fresh temp path in `tmp/` for this process: `<pid>.<token>.<suffix>`.
    func tempPath(_ suffix: String) -> String {
        "\(tmpDir)/\(getpid()).\(FS.randomToken()).\(suffix)"
    }

    /// Writes verified bytes under the chunk's final name unless a file of the right size
    /// is already there (dedup): temp file, fdatasync, rename. Returns true if it wrote.
    /// The caller fsyncs the fan-out directory before relying on the rename.
    func store(_ hash: ChunkHash, _ bytes: UnsafeRawBufferPointer, paddedCapacity: Int? = nil) throws(MeshError) -> Bool {
        guard let pending = try writeTemp(hash, bytes, paddedCapacity: paddedCapacity) else { return false }
        var batch = [pending]
        try commit(&batch)
        return true
    }

    /// A chunk written to a temp file, not yet synced nor visible under its name.
    struct PendingChunk {
        let fd: Int32
        /// The named temp file, or "" for an unnamed O_TMPFILE inode (linked at commit).
        let tmp: String
        let final: String
    }

    /// Writes a chunk to a temp file without syncing it, unless a file of the right size is
    /// already under its final name (then nil: dedup). `commit` makes it durable and visible.
    ///
    /// The temp file is an unnamed `O_TMPFILE` inode in the chunk's own directory where the
    /// file system supports it (nothing to clean up after a crash: the kernel frees it), else
    /// a named file in `tmp/` (swept at open). With `paddedCapacity` (the bytes live in a
    /// 4096-aligned buffer at least that long) it is written with O_DIRECT: the length
    /// rounded up to 4096, then truncated to the exact size. That skips the page cache,
    /// which on this class of machine is several times slower than the disk. File systems
    /// without O_DIRECT (tmpfs) fall back to buffered writes.
    func writeTemp(_ hash: ChunkHash, _ bytes: UnsafeRawBufferPointer, paddedCapacity: Int? = nil) throws(MeshError) -> PendingChunk? {
        let final = path(hash)
        if let size = FS.regularFileSize(final), size == UInt64(bytes.count) { return nil }
        let dir = FS.dirname(of: final)
        let padded = (bytes.count + 4095) & ~4095
        var useDirect = false
        if let cap = paddedCapacity, cap >= padded, let base = bytes.baseAddress,
           Int(bitPattern: base) % 4096 == 0, bytes.count > 0 {
            useDirect = true
        }
        var tmp = ""
        var fd: Int32 = -1
        var direct = false
        // 1. Unnamed temp inode, 2. named temp file; each with O_DIRECT first if usable.
        for named in ChunkFiles.tmpfileDisabled ? [true] : [false, true] {
            if named { tmp = tempPath("chunk") }
            for tryDirect in useDirect ? [true, false] : [false] {
                let flags = O_WRONLY | O_CLOEXEC | (tryDirect ? O_DIRECT : 0)
                fd = named ? Glibc.open(tmp, flags | O_CREAT | O_EXCL, 0o644) : Glibc.open(dir, flags | O_TMPFILE_, 0o644)
                if fd >= 0 {
                    direct = tryDirect
                    break
                }
                if errno == ENOENT && !named {
                    // The fan-out directory is missing (created lazily by older layouts).
                    try FS.mkdir(dir)
                    fd = Glibc.open(dir, flags | O_TMPFILE_, 0o644)
                    if fd >= 0 {
                        direct = tryDirect
                        break
                    }
                }
                let e = errno
                if e != EINVAL && e != EOPNOTSUPP && e != EISDIR && e != ENOTDIR {
                    throw MeshError.posix(e, "creating chunk in", path: named ? tmp : dir)
                }
            }
            if fd >= 0 { break }
        }
        guard fd >= 0 else { throw MeshError(.ioError, "cannot create a temp file in \(dir)", hint: "check the data dir's file system") }
        do throws(MeshError) {
            if let base = bytes.baseAddress {
                try writeAt(fd: fd, path: final, from: base, count: direct ? padded : bytes.count, offset: 0)
            }
            if direct && padded != bytes.count {
                guard ftruncate(fd, off_t(bytes.count)) == 0 else { throw MeshError.posix(errno, "truncating", path: final) }
            }
        } catch {
            _ = Glibc.close(fd)
            if !tmp.isEmpty { FS.unlink(tmp) }
            throw error
        }
        return PendingChunk(fd: fd, tmp: tmp, final: final)
    }

    /// Makes pending chunks durable (fdatasync each; after the first, the journal commit
    /// usually covers the rest, which is why chunks are committed in batches), then gives
    /// each its final name (link of the unnamed inode, or rename of the named temp file).
    /// A final name that appeared meanwhile holds the same verified bytes: that is fine.
    /// Empties `batch`; on failure, removes what is left.
    func commit(_ batch: inout [PendingChunk]) throws(MeshError) {
        defer { discard(&batch) }
        for p in batch {
            guard fdatasync(p.fd) == 0 else { throw MeshError.posix(errno, "syncing", path: p.final) }
        }
        for p in batch {
            if p.tmp.isEmpty {
                if linkat(p.fd, "", AT_FDCWD, p.final, AT_EMPTY_PATH) == 0 || errno == EEXIST { continue }
                // AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH; /proc/self/fd works for everyone.
                if linkat(AT_FDCWD, "/proc/self/fd/\(p.fd)", AT_FDCWD, p.final, AT_SYMLINK_FOLLOW) == 0 || errno == EEXIST { continue }
                throw MeshError.posix(errno, "naming chunk", path: p.final)
            } else {
                try FS.mkdir(FS.dirname(of: p.final))
                try FS.rename(p.tmp, p.final)  // the deferred unlink of tmp then finds nothing
            }
        }
    }

    /// Removes pending chunks without making them visible.
    func discard(_ batch: inout [PendingChunk]) {
        for p in batch {
            _ = Glibc.close(p.fd)
            if !p.tmp.isEmpty { FS.unlink(p.tmp) }
        }
        batch.removeAll()
    }

    /// Reads a chunk file whole into `buf` (4096-aligned, `capacity` bytes), with O_DIRECT
    /// where the file system allows it. Returns the bytes read; a file whose size is not
    /// `expected` is `.corrupt`. Thread-safe.
    func read(_ hash: ChunkHash, into buf: UnsafeMutableRawPointer, capacity: Int, expected: Int,
              itemName: String) throws(MeshError) -> Int {
        let p = path(hash)
        var fd = Glibc.open(p, O_RDONLY | O_CLOEXEC | O_DIRECT)
        var direct = true
        if fd < 0 && errno == EINVAL {
            fd = Glibc.open(p, O_RDONLY | O_CLOEXEC)
            direct = false
        }
        guard fd >= 0 else {
            if errno == ENOENT {
                throw MeshError(.corrupt, "chunk \(hash) of \(itemName) is missing from the store",
                                hint: "run `meshnode verify` to find every damaged item")
            }
            throw MeshError.posix(errno, "reading chunk", path: p)
        }
        defer { _ = Glibc.close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw MeshError.posix(errno, "inspecting", path: p) }
        guard Int(st.st_size) == expected, expected <= capacity else {
            throw MeshError(.corrupt, "chunk \(hash) of \(itemName) has the wrong size on disk",
                            hint: "run `meshnode verify` to find every damaged item")
        }
        var want = direct ? min(capacity, (expected + 4095) & ~4095) : expected
        var done = 0
        while done < want {
            let n = Glibc.pread(fd, buf + done, want - done, off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EINVAL && direct {
                    // Some file systems accept O_DIRECT at open but not this read, and a short
                    // read leaves the next offset unaligned: go on buffered.
                    direct = false
                    _ = fcntl(fd, F_SETFL, 0)
                    want = expected
                    continue
                }
                throw MeshError.posix(errno, "reading chunk", path: p)
            }
            if n == 0 { break }
            done += n
            // Past the end of the data the next O_DIRECT read would be unaligned: stop here.
            if done >= expected { break }
        }
        guard done >= expected else {
            throw MeshError(.corrupt, "chunk \(hash) of \(itemName) ended after \(done) of \(expected) bytes",
                            hint: "run `meshnode verify` to find every damaged item")
        }
        return expected
    }
}
