import Gossip

/// What a watched folder does (docs/SYNC.md "Folders"; the config's `folders[].mode`).
public enum FolderMode: String, Sendable, CaseIterable {
    /// Local files become versions of names; deleted files become tombstones.
    case send
    /// The cluster's current versions are written into the folder; local edits are reverted.
    case receive
    /// Both: a local change is a new version (and wins by its newer clock).
    case both

    public var sends: Bool { self != .receive }
    public var receives: Bool { self != .send }
}

/// One folder's settings as the planner needs them (pure: no path on disk).
public struct FolderSpec: Sendable, Equatable {
    public var mode: FolderMode
    /// The type new versions get, and (when set) the only type received; nil: guessed per file
    /// from its name (`ItemType.guess`).
    public var type: ItemType?
    /// Item name = prefix + path relative to the folder. Empty, or ends in "/".
    public var prefix: String
    public var include: [String]
    public var exclude: [String]
    /// A file is acted on once it has kept its size, mtime and inode for this long.
    public var settleMs: Int64
    /// A live SQLite database is snapshotted at most this often while it changes.
    public var snapshotIntervalMs: Int64
    /// Relative subtrees never synced (the node's data dir when it lies inside the folder).
    public var excludedSubtrees: [String]
    /// A failed action on a path is retried after this long, doubling up to `retryMaxMs`
    /// (a change to the file retries at once).
    public var retryBaseMs: Int64
    public var retryMaxMs: Int64
    /// Actions (puts, writes, removals, tombstones) in flight at once; the rest wait in the
    /// planner, so the shell's queues stay bounded.
    public var maxActionsInFlight: Int

    public static let defaultSettleMs: Int64 = 300
    public static let defaultSnapshotIntervalMs: Int64 = 60_000

    public init(mode: FolderMode = .both, type: ItemType? = nil, prefix: String, include: [String] = [], exclude: [String] = [],
                settleMs: Int64 = FolderSpec.defaultSettleMs, snapshotIntervalMs: Int64 = FolderSpec.defaultSnapshotIntervalMs,
                excludedSubtrees: [String] = [], retryBaseMs: Int64 = 2_000, retryMaxMs: Int64 = 300_000,
                maxActionsInFlight: Int = 64) {
        self.mode = mode
        self.type = type
        self.prefix = prefix
        self.include = include
        self.exclude = exclude
        self.settleMs = settleMs
        self.snapshotIntervalMs = snapshotIntervalMs
        self.excludedSubtrees = excludedSubtrees
        self.retryBaseMs = retryBaseMs
        self.retryMaxMs = retryMaxMs
        self.maxActionsInFlight = max(1, maxActionsInFlight)
    }
}

/// What identifies one state of a file's bytes cheaply: if any of these changed, its content
/// may have.
public struct FileStat: Hashable, Sendable, CustomStringConvertible {
    public var sizeBytes: UInt64
    /// Modification time, nanoseconds since the Unix epoch.
    public var mtimeNs: Int64
    public var inode: UInt64

    public init(sizeBytes: UInt64, mtimeNs: Int64, inode: UInt64) {
        self.sizeBytes = sizeBytes
        self.mtimeNs = mtimeNs
        self.inode = inode
    }

    public var description: String { "size \(sizeBytes), mtime \(mtimeNs) ns, inode \(inode)" }
}

/// One path as a scan saw it.
public struct FileObservation: Hashable, Sendable {
    public enum Kind: UInt8, Sendable {
        case regular, symlink
        /// A FIFO, socket or device.
        case other
    }

    public var kind: Kind
    public var stat: FileStat
    /// Starts with the 16-byte SQLite header `SQLite format 3\0` (a live database is
    /// snapshotted, never read raw). Reported for regular files whose stat changed.
    public var isSQLite: Bool
    /// Whether some process had the file open for writing when it was observed (true), or
    /// none had (false: the shell could take a read lease on it; docs/SYNC.md "Folders"); nil
    /// when the shell cannot tell. Reported, like `isSQLite`, for regular files whose stat changed.
    public var openForWriting: Bool?

    public init(kind: Kind = .regular, stat: FileStat, isSQLite: Bool = false, openForWriting: Bool? = nil) {
        self.kind = kind
        self.stat = stat
        self.isSQLite = isSQLite
        self.openForWriting = openForWriting
    }
}

/// What a folder last saw or wrote at one relative path (persisted by the Store in
/// `folder_files`, so a restart knows what changed while the node was down).
public struct FolderRecord: Hashable, Sendable {
    public enum Source: UInt8, Sendable, CustomStringConvertible {
        /// This folder put the file (a version of its name).
        case put = 1
        /// This folder wrote the file from the cluster's version.
        case materialised = 2
        /// A receive folder found the file when it was first configured and left it in place.
        case foreign = 3

        public var description: String {
            switch self {
            case .put: "put"
            case .materialised: "materialised"
            case .foreign: "foreign"
            }
        }
    }

    public var stat: FileStat
    /// The content the file held (nil for `foreign`).
    public var contentID: ContentID?
    /// The version it corresponds to.
    public var entry: EntryRef?
    public var source: Source
    public var updatedMs: Int64

    public init(stat: FileStat, contentID: ContentID?, entry: EntryRef?, source: Source, updatedMs: Int64) {
        self.stat = stat
        self.contentID = contentID
        self.entry = entry
        self.source = source
        self.updatedMs = updatedMs
    }
}

/// A problem the planner reports about one path (shown by `meshnode folders`).
public struct FolderProblem: Hashable, Sendable, CustomStringConvertible {
    /// A stable snake-case code (`symlink`, `unsafe_name`, ...).
    public var code: String
    public var message: String

    public init(_ code: String, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}

/// Why a file is written or removed.
public enum FolderChange: String, Sendable {
    /// A name the folder does not hold yet.
    case new
    /// A newer version of a name the folder holds.
    case update
    /// The name was deleted (or expired) in the cluster.
    case deletedInCluster = "deleted_in_cluster"
    /// Receive folder: the file was changed locally; the cluster's version replaces it.
    case revertChanged = "revert_changed"
    /// Receive folder: a file the folder did not write appeared; replaced or removed.
    case revertAdded = "revert_added"
    /// Receive folder: the file was deleted locally; the cluster's version is restored.
    case revertDeleted = "revert_deleted"

    /// Whether this undoes a local edit (counted as "local edits reverted").
    public var isRevert: Bool {
        switch self {
        case .revertChanged, .revertAdded, .revertDeleted: true
        default: false
        }
    }
}

/// What the planner asks the shell to do. Paths are relative to the folder.
public enum FolderDirective: Hashable, Sendable {
    /// Stat these paths again and report them through `observe` (settle confirmation).
    case check([String])
    /// Ingest the file as a version of `name`, if it still has stat `expect`.
    case put(path: String, name: String, type: ItemType, expect: FileStat)
    /// A live SQLite database: snapshot it through SQLite (`settled`: it has not changed for
    /// `settle`; a raw copy is safe only then and without a `-wal` beside it).
    case snapshot(path: String, name: String, type: ItemType, expect: FileStat, settled: Bool)
    /// Delete the name (a name tombstone): the file this folder recorded for it is gone
    /// and the name's current version is still that content.
    case tombstone(path: String, name: String, content: ContentID)
    /// The content of `entry` is wanted here so it can be written at `path`.
    case fetch(path: String, entry: ManifestEntry)
    /// Write `entry`'s content at `path` (temp file in the same directory, verified, synced,
    /// renamed), if the path still is as `replacing` says (nil: absent).
    case materialise(path: String, entry: ManifestEntry, replacing: FileStat?, reason: FolderChange)
    /// Delete the file at `path` if it still has stat `expect`.
    case remove(path: String, expect: FileStat, reason: FolderChange)
    /// Persist this record (no file is touched).
    case record(path: String, FolderRecord)
    /// Drop the record of `path` (no file is touched).
    case forget(path: String)
    case report(path: String, FolderProblem)
    /// Call `plan` again at this time (ms since the epoch) even if nothing happens.
    case wakeAt(Int64)
}

/// How an action the planner asked for ended (the shell reports it with `completed`).
public enum FolderOutcome: Hashable, Sendable {
    /// The file is now as `record` says (put, snapshot or materialise done).
    case recorded(FolderRecord)
    /// The record is gone (tombstone written or file removed).
    case forgotten
    /// The file was not as expected (changed during the action); here is what it is now.
    case changedMeanwhile(FileObservation?)
    /// The snapshot hook declined for now (a live database it cannot copy safely yet).
    case deferred
    /// The action failed; it is retried with back-off (or when the file changes).
    case failed
}
