// Store: persistence (SQLite manifest, chunk files, node identity).
@_exported import Gossip
@_exported import Sync
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

    /// Opens an existing data dir: checks the schema (migrating older ones), sweeps temp
    /// files left by processes that no longer run, and finishes their chunk writes.
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
        // Chunk files a killed writer named but did not record are recorded or removed now
        // (ChunkJournal.swift). Best effort: a store this process cannot write (a read-only
        // `ls`) still opens, and the next open that can settles them.
        try? store.settleChunkFilesAtOpen()
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
}
