import Gossip

extension FolderPlanner {
    /// Decides what to do about every path that changed since the last call (at most
    /// `limit` of them; a `wakeAt(nowMs)` then asks for the rest), given the catalog of
    /// names, whether a content is complete in the local store, and the time.
    public mutating func plan(catalog: Catalog, nowMs: Int64, limit: Int = 1000,
                              isComplete: (ContentID) -> Bool) -> [FolderDirective] {
        var out = queued
        queued = []
        guard ready else { return out }
        if sweepCatalog {
            sweepCatalog = false
            for n in catalog.histories.keys {
                if let p = FolderPaths.relativePath(ofName: n, prefix: spec.prefix) { dirty.insert(p) }
            }
            dirty.formUnion(records.keys)
            dirty.formUnion(seen.keys)
            dirty.formUnion(awaiting.keys)
        }
        for (p, t) in wake where t <= nowMs {
            wake[p] = nil
            dirty.insert(p)
        }
        var checks: [String] = []
        var n = 0
        // At the cap of actions in flight, the rest waits for a `completed` (which plans again).
        while n < limit, busy.count < spec.maxActionsInFlight, let p = dirty.popFirst() {
            n += 1
            var d = Decision(path: p, nowMs: nowMs)
            decide(&d, catalog: catalog, isComplete: isComplete)
            out += d.out
            if d.check { checks.append(p) }
            checks += d.extraChecks
        }
        if !checks.isEmpty { out.append(.check(checks.sorted())) }
        if !dirty.isEmpty && busy.count < spec.maxActionsInFlight {
            out.append(.wakeAt(nowMs))
        } else if let next = wake.values.min() {
            out.append(.wakeAt(next))
        }
        return out
    }

    /// The output of deciding one path.
    struct Decision {
        let path: String
        let nowMs: Int64
        var out: [FolderDirective] = []
        var check = false
        var extraChecks: [String] = []
    }

    /// The local state of a path against its record.
    enum Local {
        /// Present, and as the record says.
        case unchanged(FolderRecord)
        /// Present, and either unrecorded or different from the record.
        case changed(FileObservation, FolderRecord?)
        /// Recorded but gone.
        case missing(FolderRecord)
        /// Neither present nor recorded.
        case none
    }

    mutating func decide(_ d: inout Decision, catalog: Catalog, isComplete: (ContentID) -> Bool) {
        let p = d.path
        guard busy[p] == nil else { return }
        let name = spec.prefix + p
        if let why = FolderPaths.problem(relativePath: p) {
            // Only names from peers can be like this (a scan lists real paths).
            report(&d, FolderProblem("unsafe_name", "refused name '\(Self.printable(name))': \(why)"))
            return
        }
        if filter.ignores(p) {
            if records[p] != nil {
                records[p] = nil
                d.out.append(.forget(path: p))
            }
            seen[p] = nil
            awaiting[p] = nil
            return
        }
        if let why = FolderPaths.problem(name: name) {
            report(&d, FolderProblem("invalid_name", "cannot sync '\(Self.printable(p))': \(why)"))
            return
        }
        let s = seen[p]
        if let f = s?.file, f.kind != .regular {
            report(&d, f.kind == .symlink
                ? FolderProblem("symlink", "\(p) is a symbolic link: not synced (links are neither followed nor copied)")
                : FolderProblem("not_regular", "\(p) is not a regular file (a FIFO, socket or device): not synced"))
            return
        }
        if let r = retry[p], d.nowMs < r.atMs {
            wake[p] = r.atMs
            return
        }
        let cur = current(name, catalog: catalog, nowMs: d.nowMs)
        let settled = s.map { $0.settled(spec.settleMs) } ?? true

        let local: Local
        if let f = s?.file {
            if let r = records[p], r.stat == f.stat { local = .unchanged(r) } else { local = .changed(f, records[p]) }
        } else if let r = records[p] {
            local = .missing(r)
        } else {
            local = .none
        }

        switch local {
        case .unchanged(let r):
            if spec.mode.sends, let f = s?.file, f.isSQLite, let w = wal[p], walAtSnapshot[p] != .some(w.file?.stat) {
                // A live database in WAL mode: its main file may not change until a checkpoint
                // (and it is as recorded, so it counts as settled).
                snapshotIfDue(&d, name: name, file: f, record: r, mainSettled: true)
                return
            }
            seen[p]?.changingSinceMs = nil
            reported[p] = nil
            guard spec.mode.receives else { return }
            if r.source == .foreign {
                // Left in place when the folder was configured, until the cluster has its name.
                if let cur { materialise(&d, cur.entry, replacing: r.stat, reason: .revertAdded, isComplete) }
                return
            }
            if let cur {
                if cur.entry.contentID != r.contentID { materialise(&d, cur.entry, replacing: r.stat, reason: .update, isComplete) }
            } else if r.contentID != nil {
                // Deleted (or expired) in the cluster, and the file is as the folder left it.
                remove(&d, expect: r.stat, reason: .deletedInCluster)
            }

        case .changed(let f, let r):
            if spec.mode.sends && f.isSQLite {
                snapshotIfDue(&d, name: name, file: f, record: r, mainSettled: settled)
                return
            }
            guard settled else { return needSettle(&d, s!) }
            if spec.mode.sends {
                busy[p] = .put
                d.out.append(.put(path: p, name: name, type: type(for: name), expect: f.stat))
                return
            }
            // Receive only: the cluster's version replaces a local edit; a file the cluster has no
            // name for is removed, unless it was there before the folder was configured.
            if let r, r.source == .foreign {
                if let cur {
                    materialise(&d, cur.entry, replacing: f.stat, reason: .revertAdded, isComplete)
                } else {
                    let nr = FolderRecord(stat: f.stat, contentID: nil, entry: nil, source: .foreign, updatedMs: d.nowMs)
                    records[p] = nr
                    d.out.append(.record(path: p, nr))
                }
            } else if let cur {
                materialise(&d, cur.entry, replacing: f.stat, reason: r == nil ? .revertAdded : .revertChanged, isComplete)
            } else {
                remove(&d, expect: f.stat, reason: r == nil ? .revertAdded : .revertChanged)
            }

        case .missing(let r):
            if let s, !settled { return needSettle(&d, s) }
            if r.source == .foreign {
                forget(&d)
                return
            }
            switch spec.mode {
            case .send:
                if let cur, cur.entry.contentID == r.contentID { tombstone(&d, name: name, content: cur.entry.contentID) } else { forget(&d) }
            case .both:
                if let cur {
                    if cur.entry.contentID == r.contentID {
                        tombstone(&d, name: name, content: cur.entry.contentID)
                    } else {
                        // Deleted here, but a newer version came from elsewhere: that one stands.
                        materialise(&d, cur.entry, replacing: nil, reason: .update, isComplete)
                    }
                } else {
                    forget(&d)
                }
            case .receive:
                if let cur { materialise(&d, cur.entry, replacing: nil, reason: .revertDeleted, isComplete) } else { forget(&d) }
            }

        case .none:
            if spec.mode.receives, let cur {
                materialise(&d, cur.entry, replacing: nil, reason: .new, isComplete)
            } else {
                seen[p] = nil
                awaiting[p] = nil
            }
        }
    }

    /// The name's current version, if this folder receives it (its type, when the folder has one).
    func current(_ name: String, catalog: Catalog, nowMs: Int64) -> Catalog.Version? {
        guard let v = catalog.current(name, nowMs: nowMs), v.entry.put != nil else { return nil }
        if let t = spec.type, v.entry.type != t { return nil }
        return v
    }

    func type(for name: String) -> ItemType { spec.type ?? ItemType.guess(fromName: name) }

    /// The change has not settled yet: look again once it could have.
    /// (A file last seen open for writing is looked at again after `settleMs` all the same:
    /// if its writer closed it meanwhile, it has settled; only if it is still open then does
    /// the next look wait for the longer time.)
    mutating func needSettle(_ d: inout Decision, _ s: Seen) {
        let plain = s.sinceMs + spec.settleMs
        let at = s.file?.openForWriting == true && s.lastSeenMs >= plain ? s.sinceMs + spec.settleMs * Self.openSettleFactor : plain
        if d.nowMs >= at {
            if checking.insert(d.path).inserted { d.check = true }
        } else {
            wake[d.path] = min(wake[d.path] ?? .max, at)
        }
    }

    /// A live SQLite database that changed (its main file, or its `-wal`): snapshot it once it
    /// settled, or every `snapshotIntervalMs` while it keeps changing, and never more often.
    mutating func snapshotIfDue(_ d: inout Decision, name: String, file f: FileObservation, record r: FolderRecord?, mainSettled: Bool) {
        let p = d.path
        let s = seen[p]!
        let w = wal[p]
        let interval = spec.snapshotIntervalMs
        let changingSince = [s.changingSinceMs, walChangingSince[p]].compactMap { $0 }.min() ?? s.sinceMs
        let walSettled = w.map { $0.lastSeenMs - $0.sinceMs >= spec.settleMs } ?? true
        let settled = mainSettled && walSettled
        let lastPut = r?.source == .put ? r?.updatedMs : nil
        let deferred = deferredSnapshot[p]
        let last = [lastPut, deferred?.atMs].compactMap { $0 }.max()
        var rateOK = last.map { d.nowMs - $0 >= interval } ?? true
        // A snapshot deferred because the file was still changing does not hold back the one
        // of it once it settled.
        if !rateOK, settled, let df = deferred, !df.settled, lastPut.map({ $0 < df.atMs }) ?? true { rateOK = true }
        // Nor does one deferred because of a -wal that has gone since (the database was closed).
        if !rateOK, settled, let df = deferred, let w, w.file == nil, w.sinceMs >= df.atMs, lastPut.map({ $0 < df.atMs }) ?? true {
            rateOK = true
        }
        let due = settled || d.nowMs - changingSince >= interval
        if rateOK && due {
            busy[p] = .snapshot
            snapshotSettled[p] = settled
            walInFlight.updateValue(w?.file?.stat, forKey: p)
            d.out.append(.snapshot(path: p, name: name, type: type(for: name), expect: f.stat, settled: settled))
            return
        }
        if !mainSettled { needSettle(&d, s) }
        if let w, !walSettled {
            // The -wal needs its second look too.
            let at = w.sinceMs + spec.settleMs
            if d.nowMs >= at {
                if checking.insert(p + "-wal").inserted { d.extraChecks.append(p + "-wal") }
            } else {
                wake[p] = min(wake[p] ?? .max, at)
            }
        }
        var at: Int64 = .max
        if !due { at = changingSince + interval }
        if !rateOK, let last { at = min(at, last + interval) }
        if !due && !rateOK, let last { at = max(changingSince + interval, last + interval) }
        if at != .max, at > d.nowMs { wake[p] = min(wake[p] ?? .max, at) }
    }

    mutating func materialise(_ d: inout Decision, _ e: ManifestEntry, replacing: FileStat?, reason: FolderChange,
                              _ isComplete: (ContentID) -> Bool) {
        let p = d.path
        guard isComplete(e.contentID) else {
            if awaiting[p] != e.contentID {
                awaiting[p] = e.contentID
                d.out.append(.fetch(path: p, entry: e))
            }
            return
        }
        awaiting[p] = nil
        busy[p] = .materialise
        d.out.append(.materialise(path: p, entry: e, replacing: replacing, reason: reason))
    }

    mutating func remove(_ d: inout Decision, expect: FileStat, reason: FolderChange) {
        awaiting[d.path] = nil
        busy[d.path] = .remove
        d.out.append(.remove(path: d.path, expect: expect, reason: reason))
    }

    mutating func tombstone(_ d: inout Decision, name: String, content: ContentID) {
        busy[d.path] = .tombstone
        d.out.append(.tombstone(path: d.path, name: name, content: content))
    }

    mutating func forget(_ d: inout Decision) {
        records[d.path] = nil
        seen[d.path] = nil
        awaiting[d.path] = nil
        d.out.append(.forget(path: d.path))
    }

    mutating func report(_ d: inout Decision, _ problem: FolderProblem) {
        guard reported[d.path] != problem else { return }
        reported[d.path] = problem
        d.out.append(.report(path: d.path, problem))
    }

    /// A name as safe one-line text for a report.
    static func printable(_ s: String) -> String {
        var out = ""
        for u in s.unicodeScalars.prefix(300) {
            if u.value < 0x20 || u.value == 0x7f { out += "\\u{\(String(u.value, radix: 16))}" } else { out.unicodeScalars.append(u) }
        }
        return out
    }
}
