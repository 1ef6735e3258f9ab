import Gossip
import Testing
@testable import Sync

func stat(_ i: Int, size: UInt64? = nil) -> FileStat { FileStat(sizeBytes: size ?? UInt64(100 + i), mtimeNs: Int64(i) * 1_000_000, inode: UInt64(1000 + i)) }
func file(_ i: Int, sqlite: Bool = false) -> FileObservation { FileObservation(kind: .regular, stat: stat(i), isSQLite: sqlite) }

/// A folder planner with a fake disk, catalog and clock: `run` plans, answers `check`s from
/// `disk` and follows `wakeAt`s, like the shell does, and returns the action directives.
struct Harness {
    var planner: FolderPlanner
    var catalog = Catalog()
    var complete: Set<ContentID> = []
    var now: Int64 = 1_000_000
    var disk: [String: FileObservation] = [:]
    var nextSeq: UInt64 = 1

    init(_ mode: FolderMode, records: [String: FolderRecord] = [:], isNew: Bool = false, type: ItemType? = nil,
         include: [String] = [], exclude: [String] = [], settleMs: Int64 = 300, snapshotMs: Int64 = 10_000) {
        planner = FolderPlanner(spec: FolderSpec(mode: mode, type: type, prefix: "p/", include: include, exclude: exclude,
                                                 settleMs: settleMs, snapshotIntervalMs: snapshotMs),
                                records: records, isNew: isNew)
    }

    mutating func fullScan() { planner.observe(FolderScan(files: disk, subtrees: [""]), nowMs: now) }

    mutating func planOnce() -> [FolderDirective] {
        let done = complete
        return planner.plan(catalog: catalog, nowMs: now) { done.contains($0) }
    }

    /// Plans until nothing is left to do within `ms` from now (answering checks, sleeping to
    /// wake-ups); returns every directive but checks and wake-ups, in order.
    mutating func run(for ms: Int64 = 5_000) -> [FolderDirective] {
        let end = now + ms
        var out: [FolderDirective] = []
        for _ in 0..<100 {
            var wake: Int64?
            var checked = false
            for d in planOnce() {
                switch d {
                case .check(let paths):
                    checked = true
                    var scan = FolderScan()
                    for p in paths { if let f = disk[p] { scan.files[p] = f } else { scan.absent.append(p) } }
                    planner.observe(scan, nowMs: now)
                case .wakeAt(let t): wake = t
                default: out.append(d)
                }
            }
            if checked { continue }
            guard let w = wake, w <= end else { break }
            now = max(now, w)
        }
        return out
    }

    /// A put of `name` by another node (or this one), with `content`, now current.
    @discardableResult
    mutating func put(_ name: String, content: Int, origin: Int = 9, type: ItemType = .other, complete isComplete: Bool = true) -> ManifestEntry {
        nextSeq += 1
        let e = ManifestEntry(origin: nid(origin), sequence: nextSeq, hlc: UInt64(now) << 16 | UInt64(nextSeq), contentID: cid(content),
                              sizeBytes: 10, chunkSizeBytes: 4096, type: type, createdAtMs: now, expiresAtMs: 0, name: name)
        catalog.insert(e)
        if isComplete { complete.insert(e.contentID) }
        planner.namesChanged([name])
        return e
    }

    mutating func deleteName(_ name: String, origin: Int = 9) {
        nextSeq += 1
        catalog.insert(ManifestEntry(origin: nid(origin), sequence: nextSeq, hlc: UInt64(now) << 16 | UInt64(nextSeq),
                                     payload: .tombstone(.init(scope: .name, name: name, createdAtMs: now))))
        planner.namesChanged([name])
    }

    /// Completes a put the planner asked for, as the shell would: the version is stored and current.
    mutating func completePut(_ path: String, content: Int) {
        guard let stat = disk[path]?.stat else { Issue.record("no file \(path)"); return }
        let e = put("p/" + path, content: content, origin: 1)
        planner.completed(path, .recorded(FolderRecord(stat: stat, contentID: e.contentID, entry: e.ref, source: .put, updatedMs: now)), nowMs: now)
    }

    /// Completes a materialise: the file is on disk with a new inode.
    mutating func completeWrite(_ path: String, _ e: ManifestEntry, fileNumber: Int) {
        disk[path] = file(fileNumber)
        planner.completed(path, .recorded(FolderRecord(stat: stat(fileNumber), contentID: e.contentID, entry: e.ref,
                                                       source: .materialised, updatedMs: now)), nowMs: now)
    }
}

func record(_ i: Int, content: Int, source: FolderRecord.Source = .put, origin: Int = 1, seq: UInt64 = 1) -> FolderRecord {
    FolderRecord(stat: stat(i), contentID: cid(content), entry: EntryRef(origin: nid(origin), sequence: seq), source: source, updatedMs: 0)
}

extension FolderDirective {
    var isPut: Bool { if case .put = self { true } else { false } }
    var kindName: String {
        switch self {
        case .check: "check"
        case .put: "put"
        case .snapshot: "snapshot"
        case .tombstone: "tombstone"
        case .fetch: "fetch"
        case .materialise: "materialise"
        case .remove: "remove"
        case .record: "record"
        case .forget: "forget"
        case .report: "report"
        case .wakeAt: "wake"
        }
    }
}

@Suite("Folder planner: send")
struct FolderPlannerSendTests {
    @Test("Nothing is decided before the first complete scan (an unscanned folder would look empty)")
    func nothingBeforeTheFirstScan() {
        var h = Harness(.both, records: ["a": record(1, content: 1)])
        h.put("p/a", content: 1, origin: 1)
        h.put("p/b", content: 2)
        #expect(h.run().isEmpty)
        h.fullScan()
        #expect(h.run().map(\.kindName).sorted() == ["materialise", "tombstone"])
    }

    @Test("A new file is put once its size, mtime and inode were seen unchanged settle apart, with the guessed type")
    func settleThenPut() {
        var h = Harness(.send)
        h.disk["games/a.db"] = file(1)
        h.fullScan()
        #expect(h.planOnce().filter { !($0.kindName == "wake") }.isEmpty, "not yet: seen once")
        h.now += 299
        #expect(h.run(for: 0).isEmpty, "not before settle")
        let start = h.now
        let out = h.run()
        #expect(out == [.put(path: "games/a.db", name: "p/games/a.db", type: .game, expect: stat(1))])
        #expect(h.now - start <= 1, "put as soon as settle passed")
    }

    @Test("A file changed again during settle is put only once, in its final state")
    func changedDuringSettle() {
        var h = Harness(.send)
        h.disk["a"] = file(1)
        h.fullScan()
        h.now += 200
        h.disk["a"] = file(2)
        h.planner.observe(FolderScan(files: ["a": file(2)]), nowMs: h.now)
        h.now += 200  // 400 ms after the first sighting, 200 after the change
        #expect(h.run(for: 0).isEmpty, "settle restarts at the change")
        let out = h.run()
        #expect(out == [.put(path: "a", name: "p/a", type: .other, expect: stat(2))])
    }

    @Test("A new file that no process holds open for writing (renamed in whole) is put at its first look, without the settle wait")
    func closedNewFileIsPutAtOnce() {
        var h = Harness(.send, records: ["old": record(1, content: 1)])
        h.put("p/old", content: 1, origin: 1)
        h.disk["old"] = file(1)
        h.fullScan()
        #expect(h.run().isEmpty)
        var renamed = file(2)  // another inode replaces the recorded one (os.replace, mv, rsync)
        renamed.openForWriting = false
        var fresh = file(3)
        fresh.openForWriting = false
        h.disk["old"] = renamed
        h.disk["new"] = fresh
        h.planner.observe(FolderScan(files: ["old": renamed, "new": fresh]), nowMs: h.now)
        let start = h.now
        let out = h.run(for: 0)
        #expect(out.count == 2 && out.allSatisfy(\.isPut), "both put at once: \(out)")
        #expect(h.now == start)
    }

    @Test("A file changed in place waits the settle time even when closed (its writer may close it between writes); one still open waits ten times as long")
    func inPlaceOrOpenFilesStillSettle() {
        var h = Harness(.send, records: ["log": record(1, content: 1)])
        h.put("p/log", content: 1, origin: 1)
        var appended = file(1)
        appended.stat.sizeBytes += 10  // the same inode, grown
        appended.openForWriting = false
        var writing = file(4)  // a new inode, but its writer still has it open
        writing.openForWriting = true
        h.disk["log"] = appended
        h.disk["new"] = writing
        h.fullScan()
        #expect(h.run(for: 0).isEmpty, "neither before settle")
        let start = h.now
        #expect(h.run(for: 1_000) == [.put(path: "log", name: "p/log", type: .other, expect: appended.stat)], "the closed one after settle")
        #expect(h.now - start < 1_000)
        // The open one must stand still 10 times as long (a writer pausing mid-file).
        h.now = start + 2_900
        #expect(h.run(for: 0).isEmpty, "not while open, before 3 s")
        #expect(h.run(for: 500) == [.put(path: "new", name: "p/new", type: .other, expect: writing.stat)])
        #expect(h.now - start >= 3_000)
    }

    @Test("A file seen open for writing whose writer then closes it is put at the plain settle time")
    func closedMeanwhileSettlesAtThePlainTime() {
        var h = Harness(.send)
        var open = file(1)
        open.openForWriting = true
        h.disk["a.bin"] = open
        h.fullScan()
        var closed = open
        closed.openForWriting = false
        h.disk["a.bin"] = closed  // the same bytes, its writer gone
        let start = h.now
        #expect(h.run() == [.put(path: "a.bin", name: "p/a.bin", type: .other, expect: open.stat)])
        #expect(h.now - start <= 300)
    }

    @Test("Where the shell cannot tell whether a writer has the file (not its owner, NFS), the plain settle time applies")
    func unknownWritersSettleAsBefore() {
        var h = Harness(.send)
        h.disk["nfs.bin"] = file(1)  // openForWriting nil
        h.fullScan()
        #expect(h.run(for: 0).isEmpty)
        let start = h.now
        #expect(h.run().count == 1)
        #expect(h.now - start <= 300)
    }

    @Test("A file that changes while a put of it runs is looked at again, and put in its new state after settling")
    func changedDuringPut() {
        var h = Harness(.send)
        h.disk["a"] = file(1)
        h.fullScan()
        #expect(h.run().count == 1)
        h.disk["a"] = file(2)
        h.planner.completed("a", .changedMeanwhile(file(2)), nowMs: h.now)
        #expect(h.run() == [.put(path: "a", name: "p/a", type: .other, expect: stat(2))])
    }

    @Test("A file as recorded is not put again (after a restart); one whose mtime or inode changed is")
    func onlyChangedFilesArePut() {
        var h = Harness(.send, records: ["same": record(1, content: 1), "touched": record(2, content: 2)])
        h.put("p/same", content: 1, origin: 1)
        h.put("p/touched", content: 2, origin: 1)
        h.disk["same"] = file(1)
        var t = file(2)
        t.stat.mtimeNs += 1
        h.disk["touched"] = t
        h.fullScan()
        #expect(h.run() == [.put(path: "touched", name: "p/touched", type: .other, expect: t.stat)])
    }

    @Test("The planner's own put, once current in the catalog, leads to nothing more")
    func ownPutIsNotMaterialisedAgain() {
        var h = Harness(.both)
        h.disk["m.onnx"] = file(1)
        h.fullScan()
        #expect(h.run().map(\.kindName) == ["put"])
        h.completePut("m.onnx", content: 7)
        #expect(h.run().isEmpty)
        h.fullScan()  // a rescan changes nothing either
        #expect(h.run().isEmpty)
    }

    @Test("A deleted file becomes a tombstone after settle, only while its recorded content is the name's current version")
    func deletionBecomesTombstoneOnlyWhenStillCurrent() {
        var h = Harness(.send, records: ["a": record(1, content: 1), "b": record(2, content: 2)])
        h.put("p/a", content: 1, origin: 1)
        h.put("p/b", content: 2, origin: 1)
        h.put("p/b", content: 3, origin: 5)  // a newer version of b from elsewhere
        h.fullScan()  // both files are gone
        #expect(h.run(for: 100).isEmpty, "a deletion settles too")
        let out = h.run()
        #expect(out.contains(.tombstone(path: "a", name: "p/a", content: cid(1))))
        #expect(out.contains(.forget(path: "b")), "b's current version is not what the folder had: no tombstone")
        #expect(!out.contains { if case .tombstone(let p, _, _) = $0 { p == "b" } else { false } })
    }

    @Test("A file deleted and recreated within settle is not deleted")
    func deletedAndRecreatedQuickly() {
        var h = Harness(.send, records: ["a": record(1, content: 1)])
        h.put("p/a", content: 1, origin: 1)
        h.disk["a"] = file(1)
        h.fullScan()
        h.planner.observe(FolderScan(absent: ["a"]), nowMs: h.now)
        h.now += 100
        h.planner.observe(FolderScan(files: ["a": file(1)]), nowMs: h.now)
        #expect(h.run().isEmpty)
    }

    @Test("A directory moved away (only its own name is reported absent) takes every file under it with it")
    func directoryMovedAway() {
        var h = Harness(.send, records: ["d/a": record(1, content: 1), "d/e/b": record(2, content: 2), "dx": record(3, content: 3)])
        h.put("p/d/a", content: 1, origin: 1)
        h.put("p/d/e/b", content: 2, origin: 1)
        h.put("p/dx", content: 3, origin: 1)
        h.disk = ["d/a": file(1), "d/e/b": file(2), "dx": file(3)]
        h.fullScan()
        #expect(h.run().isEmpty)
        h.disk = ["dx": file(3)]
        h.planner.observe(FolderScan(absent: ["d"]), nowMs: h.now)
        let out = h.run()
        #expect(Set(out.compactMap { if case .tombstone(let p, _, _) = $0 { p } else { nil } }) == ["d/a", "d/e/b"])
    }

    @Test("A send folder never writes: newer versions and deletions elsewhere leave its files alone")
    func sendNeverWrites() {
        var h = Harness(.send, records: ["a": record(1, content: 1)])
        h.disk["a"] = file(1)
        h.put("p/a", content: 2, origin: 5)
        h.put("p/new", content: 3, origin: 5)
        h.fullScan()
        #expect(h.run().isEmpty)
        h.deleteName("p/a")
        #expect(h.run().isEmpty)
    }

    @Test("Symbolic links and other non-files are reported once and never put")
    func symlinksAreReported() {
        var h = Harness(.send)
        h.disk["link"] = FileObservation(kind: .symlink, stat: stat(1))
        h.disk["fifo"] = FileObservation(kind: .other, stat: stat(2))
        h.fullScan()
        let out = h.run()
        #expect(out.map(\.kindName) == ["report", "report"])
        #expect(out.contains { if case .report("link", let p) = $0 { p.code == "symlink" } else { false } })
        h.fullScan()
        #expect(h.run().isEmpty, "reported once")
    }

    @Test("Include and exclude globs, temp files and SQLite sidecars decide what is put")
    func filters() {
        var h = Harness(.send, include: ["*.db", "models/*.onnx"], exclude: ["old*", "cache"])
        for (i, p) in ["a.db", "sub/b.db", "c.txt", "models/m.onnx", "models/x/m.onnx", "old.db", "sub/old2.db", "cache/d.db",
                       "a.db-wal", "a.db-shm", "a.db-journal", ".a.db.meshnode-1-2.tmp", "x.meshnode-tmp", "~lock.db"].enumerated() {
            h.disk[p] = file(i)
        }
        h.fullScan()
        let put = Set(h.run().compactMap { if case .put(let p, _, _, _) = $0 { p } else { nil } })
        #expect(put == ["a.db", "sub/b.db", "models/m.onnx"])
    }

    @Test("The folder's type is the type of every version put; without one it is guessed per file")
    func typeOfPuts() {
        var h = Harness(.send, type: .checkpoint)
        h.disk["a.db"] = file(1)
        h.fullScan()
        #expect(h.run() == [.put(path: "a.db", name: "p/a.db", type: .checkpoint, expect: stat(1))])
    }

    @Test("A failed put is retried with back-off, and at once when the file changes")
    func failedPutIsRetried() {
        var h = Harness(.send)
        h.disk["a"] = file(1)
        h.fullScan()
        #expect(h.run().count == 1)
        h.planner.completed("a", .failed, nowMs: h.now)
        h.now += 1_000
        #expect(h.run(for: 0).isEmpty, "not before the back-off")
        #expect(h.run(for: 2_000).count == 1, "after it")
        h.planner.completed("a", .failed, nowMs: h.now)
        h.disk["a"] = file(2)
        h.planner.observe(FolderScan(files: ["a": file(2)]), nowMs: h.now)
        #expect(h.run(for: 1_000) == [.put(path: "a", name: "p/a", type: .other, expect: stat(2))])
    }

    @Test("At most maxActionsInFlight actions run at once; the rest follow as they complete")
    func boundedActionsInFlight() {
        var h = Harness(.send)
        h.planner = FolderPlanner(spec: FolderSpec(mode: .send, prefix: "p/", maxActionsInFlight: 4), isNew: false)
        for i in 0..<10 { h.disk["f\(i)"] = file(i) }
        h.fullScan()
        var puts = h.run().filter(\.isPut).count
        #expect(puts == 4)
        #expect(h.planOnce().filter { if case .wakeAt(let t) = $0 { t <= h.now } else { false } }.isEmpty, "no busy wake-ups while waiting")
        var completed = 0
        while completed < 10, let p = h.planner.busy.keys.sorted().first {
            h.completePut(p, content: 100 + completed)
            completed += 1
            puts += h.run().filter(\.isPut).count
            #expect(h.planner.busy.count <= 4)
        }
        #expect(puts == 10 && completed == 10)
    }

    @Test("Each round decides at most `limit` paths and asks to be called again for the rest")
    func boundedRounds() {
        var h = Harness(.send)
        for i in 0..<50 { h.disk["f\(i)"] = file(i) }
        h.fullScan()
        h.now += 1_000
        let first = h.planner.plan(catalog: h.catalog, nowMs: h.now, limit: 10) { _ in true }
        #expect(first.contains(.wakeAt(h.now)))
        let checked = first.compactMap { if case .check(let p) = $0 { p.count } else { nil } }.reduce(0, +)
        #expect(checked == 10)
    }
}

@Suite("Folder planner: live SQLite databases")
struct FolderPlannerSQLiteTests {
    @Test("A database that settled is snapshotted at once (settled), one that keeps changing every snapshot interval")
    func snapshots() {
        var h = Harness(.send, snapshotMs: 10_000)
        h.disk["g.db"] = file(1, sqlite: true)
        h.fullScan()
        #expect(h.run() == [.snapshot(path: "g.db", name: "p/g.db", type: .game, expect: stat(1), settled: true)])
        h.completePut("g.db", content: 1)
        // Now it changes every 100 ms for 25 s.
        var snaps: [(Int64, Bool)] = []
        for i in 2..<252 {
            h.now += 100
            h.disk["g.db"] = file(i, sqlite: true)
            h.planner.observe(FolderScan(files: ["g.db": file(i, sqlite: true)]), nowMs: h.now)
            for d in h.run(for: 0) {
                if case .snapshot(_, _, _, let st, let settled) = d {
                    snaps.append((h.now, settled))
                    h.planner.completed("g.db", .recorded(FolderRecord(stat: st, contentID: cid(i), entry: nil, source: .put, updatedMs: h.now)), nowMs: h.now)
                }
            }
        }
        #expect(snaps.count == 2, "\(snaps)")
        #expect(snaps.allSatisfy { !$0.1 })
        if snaps.count == 2 { #expect(snaps[1].0 - snaps[0].0 >= 10_000) }
    }

    @Test("A database in WAL mode whose main file stays the same is snapshotted when its -wal changes, at most every interval")
    func walChanges() {
        var h = Harness(.send, records: ["g.db": record(1, content: 1)], snapshotMs: 10_000)
        h.put("p/g.db", content: 1, origin: 1)
        h.disk["g.db"] = file(1, sqlite: true)
        h.fullScan()
        #expect(h.run().isEmpty, "no -wal, main file as recorded")
        h.now += 20_000
        h.disk["g.db-wal"] = file(50)
        h.planner.observe(FolderScan(files: ["g.db-wal": file(50)]), nowMs: h.now)
        #expect(h.run() == [.snapshot(path: "g.db", name: "p/g.db", type: .game, expect: stat(1), settled: true)])
        h.planner.completed("g.db", .recorded(FolderRecord(stat: stat(1), contentID: cid(2), entry: nil, source: .put, updatedMs: h.now)), nowMs: h.now)
        #expect(h.run().isEmpty, "the -wal as the snapshot saw it")
        // The -wal keeps growing: the next snapshot comes an interval after the last one.
        var snaps: [Int64] = []
        let start = h.now
        for i in 51..<200 {
            h.now += 100
            h.disk["g.db-wal"] = file(i)
            h.planner.observe(FolderScan(files: ["g.db-wal": file(i)]), nowMs: h.now)
            for d in h.run(for: 0) where d.kindName == "snapshot" {
                snaps.append(h.now - start)
                h.planner.completed("g.db", .recorded(FolderRecord(stat: stat(1), contentID: cid(i), entry: nil, source: .put, updatedMs: h.now)), nowMs: h.now)
            }
        }
        #expect(snaps.count == 1 && snaps[0] >= 10_000, "\(snaps)")
        // What changed after that snapshot is snapshotted an interval later, settled by then.
        let tail = h.run(for: 20_000)
        #expect(tail.map(\.kindName) == ["snapshot"])
        if case .snapshot(_, _, _, _, let settled)? = tail.first { #expect(settled) }
        h.planner.completed("g.db", .recorded(FolderRecord(stat: stat(1), contentID: cid(250), entry: nil, source: .put, updatedMs: h.now)), nowMs: h.now)
        #expect(h.run(for: 30_000).isEmpty)
        // A checkpoint removes the -wal (and changes the main file): one more snapshot, once settled.
        h.disk["g.db-wal"] = nil
        h.disk["g.db"] = file(300, sqlite: true)
        h.now += 10_000
        h.planner.observe(FolderScan(files: ["g.db": file(300, sqlite: true)], absent: ["g.db-wal"]), nowMs: h.now)
        #expect(h.run() == [.snapshot(path: "g.db", name: "p/g.db", type: .game, expect: stat(300), settled: true)])
    }

    @Test("A snapshot deferred because of a -wal is retried once the -wal is gone and the database settled, not an interval later")
    func deferredUntilTheWALIsGone() {
        var h = Harness(.send, snapshotMs: 60_000)
        h.disk["g.db"] = file(1, sqlite: true)
        h.disk["g.db-wal"] = file(2)
        h.fullScan()
        #expect(h.run().map(\.kindName) == ["snapshot"])
        h.planner.completed("g.db", .deferred, nowMs: h.now)
        h.now += 5_000
        h.disk["g.db-wal"] = nil
        h.planner.observe(FolderScan(absent: ["g.db-wal"]), nowMs: h.now)
        let start = h.now
        #expect(h.run(for: 2_000) == [.snapshot(path: "g.db", name: "p/g.db", type: .game, expect: stat(1), settled: true)])
        #expect(h.now - start < 1_000)
    }

    @Test("A snapshot the hook deferred is not retried before the interval, unless the database settled meanwhile")
    func deferredSnapshot() {
        var h = Harness(.send, snapshotMs: 10_000)
        h.disk["g.db"] = file(1, sqlite: true)
        h.fullScan()
        #expect(h.run().count == 1)
        h.planner.completed("g.db", .deferred, nowMs: h.now)  // a -wal is beside it
        h.now += 9_000
        #expect(h.run(for: 0).isEmpty)
        #expect(h.run(for: 2_000).count == 1)
    }
}

@Suite("Folder planner: receive")
struct FolderPlannerReceiveTests {
    @Test("A name under the prefix is fetched if needed, then written at its path; names elsewhere are not")
    func newNameIsFetchedThenMaterialised() {
        var h = Harness(.receive)
        h.fullScan()
        let e = h.put("p/dir/a.npz", content: 1, complete: false)
        h.put("other/b", content: 2)
        let out = h.run()
        #expect(out == [.fetch(path: "dir/a.npz", entry: e)])
        #expect(h.run().isEmpty, "fetched once")
        h.complete.insert(e.contentID)
        h.planner.fetched(e.contentID)
        #expect(h.run() == [.materialise(path: "dir/a.npz", entry: e, replacing: nil, reason: .new)])
        h.completeWrite("dir/a.npz", e, fileNumber: 5)
        #expect(h.run().isEmpty)
    }

    @Test("A newer version replaces the file the folder wrote")
    func newerVersionIsMaterialised() {
        var h = Harness(.receive, records: ["a": record(1, content: 1, source: .materialised, origin: 9)])
        h.put("p/a", content: 1)
        h.disk["a"] = file(1)
        h.fullScan()
        #expect(h.run().isEmpty)
        let v2 = h.put("p/a", content: 2)
        #expect(h.run() == [.materialise(path: "a", entry: v2, replacing: stat(1), reason: .update)])
    }

    @Test("A version arriving while the previous one is being written is written after it")
    func versionDuringWrite() {
        var h = Harness(.receive)
        h.fullScan()
        let v1 = h.put("p/a", content: 1)
        #expect(h.run().count == 1)
        let v2 = h.put("p/a", content: 2)
        #expect(h.run().isEmpty, "one action per path at a time")
        h.completeWrite("a", v1, fileNumber: 3)
        #expect(h.run() == [.materialise(path: "a", entry: v2, replacing: stat(3), reason: .update)])
    }

    @Test("A deleted name removes its file when the file is as the folder wrote it")
    func tombstoneRemovesFile() {
        var h = Harness(.receive, records: ["a": record(1, content: 1, source: .materialised, origin: 9)])
        h.put("p/a", content: 1)
        h.disk["a"] = file(1)
        h.fullScan()
        h.deleteName("p/a")
        #expect(h.run() == [.remove(path: "a", expect: stat(1), reason: .deletedInCluster)])
    }

    @Test("Receive only: a local edit is reverted to the cluster's version, a deleted file restored, an added one removed")
    func localEditsAreReverted() {
        var h = Harness(.receive, records: ["edited": record(1, content: 1, source: .materialised, origin: 9),
                                            "deleted": record(2, content: 2, source: .materialised, origin: 9)])
        let e1 = h.put("p/edited", content: 1)
        let e2 = h.put("p/deleted", content: 2)
        h.disk["edited"] = file(11)
        h.disk["added"] = file(12)
        h.fullScan()
        let out = h.run()
        #expect(out.count == 3)
        #expect(out.contains(.materialise(path: "edited", entry: e1, replacing: stat(11), reason: .revertChanged)))
        #expect(out.contains(.materialise(path: "deleted", entry: e2, replacing: nil, reason: .revertDeleted)))
        #expect(out.contains(.remove(path: "added", expect: stat(12), reason: .revertAdded)))
        #expect(!out.contains { $0.isPut }, "a receive folder never puts")
    }

    @Test("Receive only: an edit is reverted only once it settled")
    func revertWaitsForSettle() {
        var h = Harness(.receive, records: ["a": record(1, content: 1, source: .materialised, origin: 9)])
        h.put("p/a", content: 1)
        h.disk["a"] = file(1)
        h.fullScan()
        h.disk["a"] = file(2)
        h.planner.observe(FolderScan(files: ["a": file(2)]), nowMs: h.now)
        #expect(h.run(for: 200).isEmpty)
        #expect(h.run().map(\.kindName) == ["materialise"])
    }

    @Test("A new receive folder leaves the files already there in place (recorded as foreign), until the cluster has their name")
    func existingFilesOfANewReceiveFolder() {
        var h = Harness(.receive, isNew: true)
        h.disk["mine.txt"] = file(1)
        h.disk["shared.txt"] = file(2)
        h.fullScan()
        let out = h.run()
        #expect(out.map(\.kindName) == ["record", "record"])
        #expect(h.planner.records["mine.txt"]?.source == .foreign)
        let e = h.put("p/shared.txt", content: 3)
        #expect(h.run() == [.materialise(path: "shared.txt", entry: e, replacing: stat(2), reason: .revertAdded)])
        h.fullScan()
        #expect(h.run().isEmpty, "the foreign file stays")
    }

    @Test("A folder with a type receives only names of that type")
    func typeFilter() {
        var h = Harness(.receive, type: .npz)
        h.fullScan()
        let e = h.put("p/a.npz", content: 1, type: .npz)
        h.put("p/b.db", content: 2, type: .game)
        #expect(h.run() == [.materialise(path: "a.npz", entry: e, replacing: nil, reason: .new)])
    }

    @Test("Names that would leave the folder or are not plain paths are refused and reported, never written")
    func unsafeNamesAreRefused() {
        var h = Harness(.receive)
        h.fullScan()
        let bad = ["p/../etc/passwd", "p/a/../../x", "p//etc/shadow", "p/./a", "p/a/", "p/a//b", "p/..", "p/a\u{1}b"]
        for (i, n) in bad.enumerated() { h.put(n, content: i + 1) }
        let ok = h.put("p/fine/a.txt", content: 99)
        let out = h.run()
        #expect(out.filter { $0.kindName == "materialise" } == [.materialise(path: "fine/a.txt", entry: ok, replacing: nil, reason: .new)])
        let reports = out.compactMap { if case .report(_, let p) = $0 { p.code } else { nil } }
        #expect(reports.count == bad.count)
        #expect(reports.allSatisfy { $0 == "unsafe_name" })
        #expect(!out.contains { if case .fetch = $0 { true } else { false } })
    }

    @Test("Names of temp files, sidecars or excluded paths are never written")
    func ignoredNamesAreNotWritten() {
        var h = Harness(.receive, exclude: ["*.log"])
        h.fullScan()
        for (i, n) in ["p/a.db-wal", "p/a.db-journal", "p/.x.tmp", "p/run.log", "p/.meshnode-folder"].enumerated() { h.put(n, content: i + 1) }
        #expect(h.run().isEmpty)
    }
}

@Suite("Folder planner: both")
struct FolderPlannerBothTests {
    @Test("A local change is put even when a newer version arrived meanwhile (it wins by its newer clock)")
    func localChangeWins() {
        var h = Harness(.both, records: ["a": record(1, content: 1)])
        h.put("p/a", content: 1, origin: 1)
        h.disk["a"] = file(1)
        h.fullScan()
        h.put("p/a", content: 2, origin: 5)  // concurrently, elsewhere
        h.disk["a"] = file(2)
        h.planner.observe(FolderScan(files: ["a": file(2)]), nowMs: h.now)
        let out = h.run()
        #expect(out == [.put(path: "a", name: "p/a", type: .other, expect: stat(2))], "\(out)")
    }

    @Test("An unchanged file is replaced by a newer version from elsewhere; a deleted name removes it")
    func remoteChangesApply() {
        var h = Harness(.both, records: ["a": record(1, content: 1)])
        h.put("p/a", content: 1, origin: 1)
        h.disk["a"] = file(1)
        h.fullScan()
        let v2 = h.put("p/a", content: 2, origin: 5)
        #expect(h.run() == [.materialise(path: "a", entry: v2, replacing: stat(1), reason: .update)])
        h.completeWrite("a", v2, fileNumber: 3)
        h.deleteName("p/a", origin: 5)
        #expect(h.run() == [.remove(path: "a", expect: stat(3), reason: .deletedInCluster)])
    }

    @Test("A file deleted here while a newer version came from elsewhere gets that version, not a tombstone")
    func deleteVersusNewerVersion() {
        var h = Harness(.both, records: ["a": record(1, content: 1)])
        h.put("p/a", content: 1, origin: 1)
        let v2 = h.put("p/a", content: 2, origin: 5)
        h.fullScan()  // a is gone here
        let out = h.run()
        #expect(out == [.materialise(path: "a", entry: v2, replacing: nil, reason: .update)])
    }

    @Test("A local edit of a name deleted elsewhere is put again (a newer version makes the name live)")
    func editOfDeletedName() {
        var h = Harness(.both, records: ["a": record(1, content: 1)])
        h.put("p/a", content: 1, origin: 1)
        h.deleteName("p/a", origin: 5)
        h.disk["a"] = file(2)
        h.fullScan()
        #expect(h.run() == [.put(path: "a", name: "p/a", type: .other, expect: stat(2))])
    }
}
