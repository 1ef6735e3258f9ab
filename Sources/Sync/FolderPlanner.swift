import Gossip

/// A scan's findings about one folder, relative paths throughout.
public struct FolderScan: Sendable, Equatable {
    /// Paths found, with what they are (directories are not listed).
    public var files: [String: FileObservation]
    /// Paths checked and found missing.
    public var absent: [String]
    /// Directories scanned completely ("" = the whole folder): every known path under them
    /// that is not in `files` is gone.
    public var subtrees: [String]

    public init(files: [String: FileObservation] = [:], absent: [String] = [], subtrees: [String] = []) {
        self.files = files
        self.absent = absent
        self.subtrees = subtrees
    }
}

/// The decisions of one watched folder (docs/SYNC.md "Folders"): sans-IO, like the gossip
/// core. The shell feeds it scans, catalog changes and the outcomes of the actions it asked
/// for, with the time; `plan` returns directives (put, snapshot, tombstone, fetch,
/// materialise, remove, ...). It never touches a file.
///
/// Per path it compares three things: the file as last observed, the folder's record of
/// what it last saw or wrote there (`FolderRecord`), and the name's current version in the
/// catalog. A change on disk is acted on only once it has settled: the same size, mtime
/// and inode observed twice, `settleMs` apart (the planner asks for the second look with
/// `check`), or at once for a new file that no process holds open for writing (a file
/// renamed into place complete, the way checkpoints and rsync publish; `Seen.newInode`).
/// Each path has at most one action in flight.
public struct FolderPlanner: Sendable {
    public private(set) var spec: FolderSpec
    let filter: FolderFilter
    /// What the folder last saw or wrote, by relative path (the shell persists every change:
    /// `record`/`forget` directives and action outcomes).
    public internal(set) var records: [String: FolderRecord]

    /// The latest observation of a path, and since when it has been in that state.
    struct Seen: Sendable {
        /// Nil: absent.
        var file: FileObservation?
        var sinceMs: Int64
        var lastSeenMs: Int64
        /// When the path was first seen differing from its record (for snapshot intervals).
        var changingSinceMs: Int64?
        /// The file is another inode than the one seen before at this path and than the
        /// record's: it appeared whole (created or renamed in) rather than changed in place.
        var newInode = false

        /// Settled: new and closed by every writer (at once); else unchanged for `settleMs`, or
        /// for `openSettleFactor` times that while a writer still holds it open (a writer that
        /// pauses longer than the settle time mid-file must not have half a file put). A file
        /// changed in place and closed waits `settleMs` (its writer may close it between writes).
        func settled(_ settleMs: Int64) -> Bool {
            if newInode && file?.openForWriting == false { return true }
            let wait = file?.openForWriting == true ? settleMs * FolderPlanner.openSettleFactor : settleMs
            return lastSeenMs - sinceMs >= wait
        }
    }

    enum Busy: Sendable { case put, snapshot, tombstone, materialise, remove }

    var seen: [String: Seen] = [:]
    /// How many times `settleMs` a file must stand still while a process holds it open for
    /// writing (10: 3 s at the default settle, Syncthing's watcher waits 10 s).
    public static let openSettleFactor: Int64 = 10
    /// The first complete scan has arrived (until then nothing is decided: an unscanned
    /// folder would look empty).
    public internal(set) var ready = false
    /// A receive folder configured just now: files already there are left in place (recorded
    /// as foreign) instead of being treated as local additions to revert.
    var adoptExisting: Bool
    var busy: [String: Busy] = [:]
    /// Content asked for (a `fetch` went out), by path.
    var awaiting: [String: ContentID] = [:]
    var checking: Set<String> = []
    var reported: [String: FolderProblem] = [:]
    var retry: [String: (atMs: Int64, failures: Int)] = [:]
    /// The last snapshot attempt the hook deferred, and whether the file had settled then.
    var deferredSnapshot: [String: (atMs: Int64, settled: Bool)] = [:]
    var snapshotSettled: [String: Bool] = [:]
    /// The `-wal` beside each database, by the database's path: a live database in WAL mode
    /// changes there, not in its main file, until a checkpoint.
    var wal: [String: Seen] = [:]
    /// When a database's `-wal` first changed since its last snapshot.
    var walChangingSince: [String: Int64] = [:]
    /// The `-wal` stat each database's last snapshot saw (nil inside: there was no `-wal`),
    /// and the one of the snapshot in flight.
    var walAtSnapshot: [String: FileStat?] = [:]
    var walInFlight: [String: FileStat?] = [:]
    var dirty: Set<String> = []
    var wake: [String: Int64] = [:]
    var sweepCatalog = false
    /// Directives produced between plans (records made by `observe`), emitted by the next `plan`.
    var queued: [FolderDirective] = []

    /// `records`: what the Store holds for this folder; `isNew`: the folder was never
    /// scanned before (its state was created just now).
    public init(spec: FolderSpec, records: [String: FolderRecord] = [:], isNew: Bool) {
        self.spec = spec
        filter = FolderFilter(spec)
        self.records = records
        adoptExisting = isNew && spec.mode == .receive
    }

    // MARK: - Inputs

    /// Folds in what a scan saw. A complete scan of the folder (`subtrees` contains "")
    /// also makes every path and every name under the prefix due for a decision.
    public mutating func observe(_ scan: FolderScan, nowMs: Int64) {
        for (p, o) in scan.files where !filter.ignores(p) { update(p, o, nowMs: nowMs) }
        for p in scan.absent { update(p, nil, nowMs: nowMs) }
        for (p, o) in scan.files where p.hasSuffix("-wal") { updateWAL(String(p.dropLast(4)), o.stat, nowMs: nowMs) }
        for p in scan.absent where p.hasSuffix("-wal") { updateWAL(String(p.dropLast(4)), nil, nowMs: nowMs) }
        for root in scan.subtrees {
            for (base, w) in wal where w.file != nil && scan.files[base + "-wal"] == nil && (root.isEmpty || base.hasPrefix(root + "/")) {
                updateWAL(base, nil, nowMs: nowMs)
            }
        }
        // Nothing is left under a directory scanned whole but what the scan found, and nothing
        // at all under a path that is absent (a directory moved away reports only itself).
        let roots = scan.subtrees + scan.absent
        if !roots.isEmpty {
            var known = Set(records.keys)
            for (p, s) in seen where s.file != nil { known.insert(p) }
            for root in roots {
                for p in known where scan.files[p] == nil && (root.isEmpty || p.hasPrefix(root + "/")) {
                    update(p, nil, nowMs: nowMs)
                }
            }
        }
        if scan.subtrees.contains("") {
            checking = []
            if !ready {
                ready = true
                if adoptExisting {
                    for (p, o) in scan.files.sorted(by: { $0.key < $1.key })
                    where records[p] == nil && o.kind == .regular && !filter.ignores(p) && FolderPaths.problem(relativePath: p) == nil {
                        let r = FolderRecord(stat: o.stat, contentID: nil, entry: nil, source: .foreign, updatedMs: nowMs)
                        records[p] = r
                        queued.append(.record(path: p, r))
                    }
                }
                adoptExisting = false
            }
            sweepCatalog = true
        }
    }

    /// These names have new entries (or their current version may have changed).
    public mutating func namesChanged<S: Sequence>(_ names: S) where S.Element == String {
        for n in names {
            guard let p = FolderPaths.relativePath(ofName: n, prefix: spec.prefix) else { continue }
            retry[p] = nil
            dirty.insert(p)
        }
    }

    /// Every name may have changed (retention expiries, a burst of entries): reconsider all.
    public mutating func catalogChanged() { sweepCatalog = true }

    /// The content of `id` is complete here now.
    public mutating func fetched(_ id: ContentID) {
        for (p, c) in awaiting where c == id { dirty.insert(p) }
    }

    /// An action asked for by `plan` ended.
    public mutating func completed(_ path: String, _ outcome: FolderOutcome, nowMs: Int64) {
        let kind = busy.removeValue(forKey: path)
        dirty.insert(path)
        switch outcome {
        case .recorded(let r):
            records[path] = r
            retry[path] = nil
            deferredSnapshot[path] = nil
            reported[path] = nil
            let sqlite = seen[path]?.file?.isSQLite ?? false
            seen[path] = Seen(file: FileObservation(kind: .regular, stat: r.stat, isSQLite: sqlite), sinceMs: nowMs, lastSeenMs: nowMs)
            if let w = walInFlight.removeValue(forKey: path) {
                walAtSnapshot.updateValue(w, forKey: path)
                walChangingSince[path] = nil
            }
        case .forgotten:
            records[path] = nil
            retry[path] = nil
            if seen[path]?.file == nil { seen[path] = nil }
        case .changedMeanwhile(let o):
            update(path, o, nowMs: nowMs)
        case .deferred:
            deferredSnapshot[path] = (nowMs, snapshotSettled[path] ?? false)
        case .failed:
            let n = (retry[path]?.failures ?? 0) + 1
            let delay = min(spec.retryMaxMs, spec.retryBaseMs << Int64(min(n - 1, 20)))
            retry[path] = (nowMs + delay, n)
            wake[path] = nowMs + delay
        }
        if kind == .snapshot {
            snapshotSettled[path] = nil
            walInFlight[path] = nil
        }
    }

    mutating func updateWAL(_ base: String, _ stat: FileStat?, nowMs: Int64) {
        checking.remove(base + "-wal")
        let o = stat.map { FileObservation(kind: .regular, stat: $0) }
        if var w = wal[base] {
            w.lastSeenMs = nowMs
            if w.file?.stat == stat {
                wal[base] = w
                if seen[base] != nil { dirty.insert(base) }
                return
            }
            w.file = o
            w.sinceMs = nowMs
            wal[base] = w
        } else {
            guard o != nil else { return }
            wal[base] = Seen(file: o, sinceMs: nowMs, lastSeenMs: nowMs)
        }
        if walChangingSince[base] == nil { walChangingSince[base] = nowMs }
        if seen[base] != nil { dirty.insert(base) }
    }

    mutating func update(_ p: String, _ o: FileObservation?, nowMs: Int64) {
        checking.remove(p)
        if var s = seen[p] {
            if s.file?.kind == o?.kind && s.file?.stat == o?.stat {
                s.lastSeenMs = nowMs
                if let o, o.isSQLite { s.file?.isSQLite = true }
                if let o { s.file?.openForWriting = o.openForWriting }
                seen[p] = s
                dirty.insert(p)
                return
            }
            let inode = o?.stat.inode
            s.newInode = inode != nil && inode != s.file?.stat.inode && inode != records[p]?.stat.inode
            s.file = o
            s.sinceMs = nowMs
            s.lastSeenMs = nowMs
            seen[p] = s
        } else {
            if o == nil && records[p] == nil { return }  // unknown and absent: nothing to do
            var s = Seen(file: o, sinceMs: nowMs, lastSeenMs: nowMs)
            s.newInode = o.map { $0.stat.inode != records[p]?.stat.inode } ?? false
            seen[p] = s
        }
        retry[p] = nil  // a changed file is worth another try at once
        if records[p].map({ $0.stat != o?.stat }) ?? (o != nil) {
            if seen[p]?.changingSinceMs == nil { seen[p]?.changingSinceMs = nowMs }
        } else {
            seen[p]?.changingSinceMs = nil
        }
        dirty.insert(p)
    }

    /// A stopping node's final snapshot (SIGTERM, docs/SYNC.md "Spot nodes"): from now on every
    /// local change is acted on at its second look, without waiting `settleMs` or for a live
    /// database's snapshot interval.
    public mutating func urgent() {
        spec.settleMs = 0
        spec.snapshotIntervalMs = 0
    }

    /// No action in flight and no second look asked for.
    public var isQuiet: Bool { busy.isEmpty && checking.isEmpty }

    // MARK: - Status

    /// Work the folder has not done yet, for `meshnode folders`.
    public struct Pending: Sendable, Equatable {
        /// Local changes waiting to settle (or for their retry).
        public var settling = 0
        public var puts = 0
        public var fetches = 0
        public var materialisations = 0
        public var removals = 0
    }

    public var pending: Pending {
        var p = Pending()
        for (path, s) in seen where busy[path] == nil {
            let r = records[path]
            if let f = s.file, f.kind == .regular, r?.stat != f.stat, !filter.ignores(path) { p.settling += 1 }
            if s.file == nil, r != nil { p.settling += 1 }
        }
        for k in busy.values {
            switch k {
            case .put, .snapshot, .tombstone: p.puts += 1
            case .materialise: p.materialisations += 1
            case .remove: p.removals += 1
            }
        }
        p.fetches = awaiting.count
        return p
    }

    /// Regular files present (and synced by this folder), and their bytes.
    public var files: (count: Int, bytes: UInt64) {
        var n = 0
        var b: UInt64 = 0
        for s in seen.values { if let f = s.file, f.kind == .regular { n += 1; b += f.stat.sizeBytes } }
        return (n, b)
    }

    /// The records' stats, for a scanner that reads headers only of files that changed.
    public var recordedStats: [String: FileStat] { records.mapValues(\.stat) }
}
