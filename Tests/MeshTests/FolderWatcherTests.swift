import Foundation
import Sync
import TestSupport
import Testing
@testable import Mesh

@Suite("Folder watcher and scanner", .ownThread())
struct FolderWatcherTests {
    @Test("Every directory gets its own watch: a file in a subdirectory created later is reported, and a removed tree is dropped")
    func subdirectoriesAreWatched() throws {
        let dir = TestDir("watch")
        let root = dir.path
        try withLoop { loop in
            let seen = Locked<Set<String>>([])
            let w = try loop.execute { () -> FolderWatcher in
                let w = FolderWatcher(loop: loop, root: root, maxWatches: 100)
                w.onChange = { p in seen.mutate { _ = $0.insert(p) } }
                w.sync([""])
                return w
            }
            try FileManager.default.createDirectory(atPath: dir.sub("sub"), withIntermediateDirectories: true)
            #expect(eventually(5) { seen.value.contains("sub") })
            // As the service does for a new directory: watch it, then look at it.
            try loop.execute { w.add(["sub"]) }
            try Data("x".utf8).write(to: URL(fileURLWithPath: dir.sub("sub/f.txt")))
            #expect(eventually(5) { seen.value.contains("sub/f.txt") }, "\(seen.value)")
            #expect(try loop.execute { w.watchCount } == 2)
            try FileManager.default.removeItem(atPath: dir.sub("sub"))
            try loop.execute { w.removeTree("sub") }
            #expect(try loop.execute { w.watchCount } == 1)
            try loop.execute { w.close() }
        }
    }

    @Test("Over the watch limit, the directories left unwatched are reported (they are found by rescans)")
    func watchLimit() throws {
        let dir = TestDir("watch-limit")
        for d in ["a", "b", "c"] { try FileManager.default.createDirectory(atPath: dir.sub(d), withIntermediateDirectories: true) }
        let root = dir.path
        try withLoop { loop in
            let (count, fallback) = try loop.execute { () -> (Int, String?) in
                let w = FolderWatcher(loop: loop, root: root, maxWatches: 2)
                w.sync(["", "a", "b", "c"])
                defer { w.close() }
                return (w.watchCount, w.fallback)
            }
            #expect(count == 2)
            #expect(fallback?.contains("more than 2 directories") == true, "\(fallback ?? "nil")")
        }
    }

    @Test("A full scan lists files with their stat and SQLite header, skips excluded paths, and needs the marker")
    func fullScan() throws {
        let dir = TestDir("scan")
        let fm = FileManager.default
        try fm.createDirectory(atPath: dir.sub("sub/data"), withIntermediateDirectories: true)
        try Data("plain text, long enough".utf8).write(to: URL(fileURLWithPath: dir.sub("a.txt")))
        try Data(FolderFS.sqliteHeader + [UInt8](repeating: 0, count: 100)).write(to: URL(fileURLWithPath: dir.sub("sub/g.db")))
        try Data().write(to: URL(fileURLWithPath: dir.sub("sub/g.db-wal")))
        try Data().write(to: URL(fileURLWithPath: dir.sub("sub/data/node-file")))
        try fm.createSymbolicLink(atPath: dir.sub("link"), withDestinationPath: "/etc/passwd")
        let filter = FolderFilter(excludedSubtrees: ["sub/data"])
        let blocked = FolderScanner.full(root: dir.path, filter: filter, known: [:], createMarker: false, limits: .init())
        #expect(blocked.blocked?.contains(".meshnode-folder is missing") == true, "without the marker nothing is scanned")
        #expect(blocked.scan.subtrees.isEmpty)
        let out = FolderScanner.full(root: dir.path, filter: filter, known: [:], createMarker: true, limits: .init())
        #expect(out.blocked == nil)
        // A -wal is listed (a live database changes there) but is never synced (the planner ignores it).
        #expect(Set(out.scan.files.keys) == ["a.txt", "sub/g.db", "sub/g.db-wal", "link"])
        #expect(out.scan.files["sub/g.db"]?.isSQLite == true)
        #expect(out.scan.files["sub/g.db"]?.openForWriting == nil, "a database is never opened to probe its writers")
        #expect(out.scan.files["sub/g.db-wal"]?.openForWriting == nil)
        #expect(out.scan.files["a.txt"]?.openForWriting == false)
        #expect(out.scan.files["a.txt"]?.isSQLite == false)
        #expect(out.scan.files["link"]?.kind == .symlink)
        #expect(out.scan.subtrees == [""])
        #expect(Set(out.directories) == ["", "sub"])
        let capped = FolderScanner.full(root: dir.path, filter: filter, known: [:], createMarker: false, limits: .init(maxFiles: 1))
        #expect(capped.truncated && capped.scan.subtrees.isEmpty, "a truncated scan infers no deletion")
    }

    @Test("A file is open for writing while any process holds it so, ours or another's, a writable mapping included; unknown for what is not a plain file")
    func openForWritingFollowsWriters() throws {
        let dir = TestDir("lease")
        let path = dir.sub("f.bin")
        try Data(repeating: 7, count: 4096).write(to: URL(fileURLWithPath: path))
        #expect(FolderFS.isOpenForWriting(path, isDatabase: false) == false)
        let fd = open(path, O_WRONLY)
        #expect(fd >= 0)
        #expect(FolderFS.isOpenForWriting(path, isDatabase: false) == true, "open for writing here")
        close(fd)
        #expect(FolderFS.isOpenForWriting(path, isDatabase: false) == false)
        let reader = open(path, O_RDONLY)
        #expect(FolderFS.isOpenForWriting(path, isDatabase: false) == false, "a reader is not a writer")
        close(reader)
        let rw = open(path, O_RDWR)
        let map = mmap(nil, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, rw, 0)
        close(rw)
        #expect(map != MAP_FAILED)
        #expect(FolderFS.isOpenForWriting(path, isDatabase: false) == true, "mapped writable, its descriptor closed")
        munmap(map, 4096)
        #expect(FolderFS.isOpenForWriting(path, isDatabase: false) == false)
        // Another process appending: sleeps with the file open, then exits.
        let child = Process()
        child.executableURL = URL(fileURLWithPath: "/bin/sh")
        child.arguments = ["-c", "exec 3>>\"$0\"; echo go; exec sleep 30", path]
        let out = Pipe()
        child.standardOutput = out
        try child.run()
        defer { if child.isRunning { kill(child.processIdentifier, SIGKILL) } }
        _ = out.fileHandleForReading.readData(ofLength: 3)
        #expect(FolderFS.isOpenForWriting(path, isDatabase: false) == true, "open for writing by another process")
        kill(child.processIdentifier, SIGKILL)
        child.waitUntilExit()
        #expect(FolderFS.isOpenForWriting(path, isDatabase: false) == false)
        #expect(FolderFS.isOpenForWriting(dir.sub("missing"), isDatabase: false) == nil)
        // Never a descriptor of a database or a sidecar (closing one would drop this process's
        // POSIX locks on it, a live snapshotter's among them): refused before opening.
        try Data(FolderFS.sqliteHeader + [UInt8](repeating: 0, count: 100)).write(to: URL(fileURLWithPath: dir.sub("g.db")))
        try Data().write(to: URL(fileURLWithPath: dir.sub("g.db-wal")))
        try Data().write(to: URL(fileURLWithPath: dir.sub("g.db-shm")))
        #expect(FolderFS.isOpenForWriting(dir.sub("g.db"), isDatabase: FolderFS.hasSQLiteHeader(dir.sub("g.db"))) == nil)
        for f in ["g.db-wal", "g.db-shm"] { #expect(FolderFS.isOpenForWriting(dir.sub(f), isDatabase: false) == nil, "\(f)") }
        #expect(FolderFS.isOpenForWriting(dir.path, isDatabase: false) == nil, "a directory is not a file")
    }

    @Test("A scan reports a changed file closed when no writer has it, and open while one does")
    func scanReportsClosedForWriting() throws {
        let dir = TestDir("lease-scan")
        try Data("done".utf8).write(to: URL(fileURLWithPath: dir.sub("done.txt")))
        try Data("busy".utf8).write(to: URL(fileURLWithPath: dir.sub("busy.txt")))
        let fd = open(dir.sub("busy.txt"), O_WRONLY | O_APPEND)
        defer { close(fd) }
        let out = FolderScanner.full(root: dir.path, filter: FolderFilter(), known: [:], createMarker: true, limits: .init())
        #expect(out.scan.files["done.txt"]?.openForWriting == false)
        #expect(out.scan.files["busy.txt"]?.openForWriting == true)
        let check = FolderScanner.check(root: dir.path, paths: ["done.txt"], filter: FolderFilter(), known: [:], limits: .init())
        #expect(check.scan.files["done.txt"]?.openForWriting == false)
    }
}
