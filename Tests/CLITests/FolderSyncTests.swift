import Foundation
import Synchronization
import TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Two real nodes: A with a send folder, B with a receive folder, both under prefix `data/`.
final class FolderPair {
    let cluster: TestCluster
    let send: String
    let recv: String
    var a: TestNode { cluster.nodes[0] }
    var b: TestNode { cluster.nodes[1] }
    var configA: String { cluster.root.sub("a.yaml") }
    var configB: String { cluster.root.sub("b.yaml") }

    /// `existingInReceive`: files already in B's folder before it is first configured.
    init(modeA: String = "send", modeB: String = "receive", existingInReceive: [String: String] = [:],
         optionsA: String = "") throws {
        cluster = try TestCluster(size: 2)
        send = cluster.root.sub("send")
        recv = cluster.root.sub("recv")
        for d in [send, recv] { try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true) }
        for (name, text) in existingInReceive { try Data(text.utf8).write(to: URL(fileURLWithPath: recv + "/" + name)) }
        let ids = cluster.nodes.map(\.id)
        try cluster.writeConfig(trusted: ids, extra: "folders:\n  - {path: \(send), mode: \(modeA), prefix: data/\(optionsA)}\n", to: configA)
        try cluster.writeConfig(trusted: ids, extra: "folders:\n  - {path: \(recv), mode: \(modeB), prefix: data/}\n", to: configB)
        try a.start(config: configA)
        try b.start(config: configB, join: [a.address])
        try eventually(30, "both nodes alive") { cluster.allSeeAlive(2) }
    }

    /// `meshnode folders --json` of a node: its first folder.
    func folder(_ n: TestNode) -> [String: Any] {
        guard let r = try? Meshnode.run(["folders", "--data", n.dataDir, "--json"], timeoutSeconds: 10), r.status == 0,
              let rows = (try? parseJSON(r.stdout)) as? [[String: Any]] else { return [:] }
        return rows.first ?? [:]
    }

    func same(_ rel: String) -> Bool {
        FileManager.default.contentsEqual(atPath: send + "/" + rel, andPath: recv + "/" + rel)
    }

    func exists(_ path: String) -> Bool { FileManager.default.fileExists(atPath: path) }

    var logs: String { cluster.dumpLogs() }
}

func writeFile(_ path: String, _ text: String) throws {
    try Data(text.utf8).write(to: URL(fileURLWithPath: path))
}

/// Watched folders between real `meshnode run` processes.
@Suite(.serialized, .ownThread()) struct FolderSyncTests {
    @Test(.ownThread(timeLimit: .minutes(3)))
    func filesWrittenIntoASendFolderAppearByteIdenticalInAReceiveFolderAndLeaveItWhenDeleted() throws {
        let p = try FolderPair()
        // A small file, with default settings: how long from written on A to visible on B.
        let t0 = Date()
        try writeFile(p.send + "/hello.txt", "hello from A\n")
        try eventually(15, "hello.txt on B\n\(p.logs)") { p.same("hello.txt") }
        let latency = Date().timeIntervalSince(t0)
        print("folder sync latency (small file, settle 300ms): \(String(format: "%.3f", latency)) s")
        // An NPZ written by numpy, in a subdirectory created for it.
        try FileManager.default.createDirectory(atPath: p.send + "/npz/run1", withIntermediateDirectories: true)
        let npz = p.send + "/npz/run1/batch.npz"
        let py = try Subprocess.run(["/usr/bin/python3", "-c",
                                     "import numpy as np; r = np.random.default_rng(7); np.savez('\(npz)', x=r.random((300, 400)), y=np.arange(200000))"])
        #expect(py.status == 0, "\(py)")
        try eventually(20, "the npz on B\n\(p.logs)") { p.same("npz/run1/batch.npz") }
        let rows = p.b.currentRows()
        #expect(rows["data/npz/run1/batch.npz"]?["type"] as? String == "npz")
        #expect(rows["data/hello.txt"] != nil)
        // Deleting on A removes the file on B, and the name leaves `ls` everywhere.
        try FileManager.default.removeItem(atPath: p.send + "/hello.txt")
        try eventually(15, "hello.txt removed on B\n\(p.logs)") { !p.exists(p.recv + "/hello.txt") }
        try eventually(10, "the name leaves ls") { p.a.currentID("data/hello.txt") == nil && p.b.currentID("data/hello.txt") == nil }
        #expect(p.same("npz/run1/batch.npz"))
        let fa = p.folder(p.a), fb = p.folder(p.b)
        #expect(fa["puts"] as? Int == 2)
        #expect(fa["tombstones"] as? Int == 1)
        #expect(fb["materialised"] as? Int == 2)
        #expect(fb["removed"] as? Int == 1)
        #expect((fb["errors"] as? [String])?.isEmpty == true, "\(fb)")
        #expect(fb["local_edits_reverted"] as? Int == 0)
    }

    @Test(.ownThread(timeLimit: .minutes(3)))
    func aFileStillOpenForWritingIsNeverPutHalfWrittenThoughItsWriterPausesLongerThanSettle() throws {
        let p = try FolderPair()
        // Another process writes 8 blocks into the send folder, pausing 0.5 s (more than the
        // 300 ms settle) between them, with the file open throughout: no look may take it as done.
        let path = p.send + "/slow.bin"
        let py = "import os, sys, time\nf = open(sys.argv[1], 'wb')\nfor i in range(8):\n    f.write(bytes([i]) * 65536); f.flush(); os.fsync(f.fileno()); time.sleep(0.5)\nf.close()\n"
        let writer = try Subprocess.spawn(["/usr/bin/python3", "-c", py, path])
        defer { writer.kill(SIGKILL) }
        #expect(writer.wait(timeoutSeconds: 30) == 0)
        try eventually(20, "slow.bin on B\n\(p.logs)") { p.same("slow.bin") }
        let v = try Meshnode.run(["ls", "--versions", "data/slow.bin", "--data", p.a.dataDir, "--json"])
        let versions = (try parseJSON(v.stdout)) as? [[String: Any]] ?? []
        #expect(versions.count == 1, "a half-written state was put: \(v.stdout)")
        #expect(versions.first?["size"] as? Int == 8 * 65536, "\(v.stdout)")
        // A complete file renamed in is put at its first look, well inside the settle time.
        let tmp = p.cluster.root.sub("ready.tmp")
        try writePseudoRandomFile(tmp, size: 100_000, seed: 5)
        let t0 = Date()
        _ = rename(tmp, p.send + "/ready.bin")
        try eventually(15, "ready.bin on B\n\(p.logs)") { p.same("ready.bin") }
        print("renamed-in file on B after \(String(format: "%.3f", Date().timeIntervalSince(t0))) s")
    }

    @Test(.ownThread(timeLimit: .minutes(3)))
    func aModelReplacedThreeTimesEndsAsTheLatestOnTheReceiverWithThreeVersions() throws {
        let p = try FolderPair()
        let model = p.send + "/model.onnx"
        for i in 1...3 {
            let tmp = p.cluster.root.sub("model-v\(i)")
            try writePseudoRandomFile(tmp, size: 200_000 + i * 1000, seed: UInt64(i))
            _ = rename(tmp, model)  // replaced the way trainers do: a complete file renamed over the old one
            try eventually(20, "version \(i) on B\n\(p.logs)") { p.same("model.onnx") }
        }
        let v = try Meshnode.run(["ls", "--versions", "data/model.onnx", "--data", p.b.dataDir, "--json"])
        let versions = (try parseJSON(v.stdout)) as? [[String: Any]] ?? []
        #expect(versions.count == 3, "\(v)")
        #expect(versions.last?["current"] as? Bool == true)
        #expect(p.b.currentRows()["data/model.onnx"]?["version"] as? Int == 3)
    }

    @Test(.ownThread(timeLimit: .minutes(3)))
    func aLocalEditInAReceiveFolderIsReportedAndReverted() throws {
        let p = try FolderPair(existingInReceive: ["notes.txt": "was here before the folder was configured\n"])
        try writeFile(p.send + "/a.txt", "the cluster's a\n")
        try writeFile(p.send + "/b.txt", "the cluster's b\n")
        try eventually(15, "a and b on B\n\(p.logs)") { p.same("a.txt") && p.same("b.txt") }
        // Changed locally: replaced by the cluster's version.
        try writeFile(p.recv + "/a.txt", "a local edit\n")
        try eventually(15, "a.txt reverted\n\(p.logs)") { p.same("a.txt") }
        let f = p.folder(p.b)
        #expect(f["local_edits_reverted"] as? Int == 1)
        #expect((f["last_revert"] as? String)?.hasPrefix("a.txt") == true, "\(f)")
        // Deleted locally: restored. Added locally (no such name): removed.
        try FileManager.default.removeItem(atPath: p.recv + "/b.txt")
        try writeFile(p.recv + "/stray.txt", "not from the cluster\n")
        try eventually(15, "b restored, stray removed\n\(p.logs)") { p.same("b.txt") && !p.exists(p.recv + "/stray.txt") }
        try eventually(5, "three reverts counted") { p.folder(p.b)["local_edits_reverted"] as? Int == 3 }
        // `status` has the folder's one-line summary with the count.
        let s = try Meshnode.run(["status", "--data", p.b.dataDir])
        #expect(s.stdout.contains("folder") && s.stdout.contains("3 local edits reverted"), "\(s)")
        // A file that was there before the folder was configured is left alone; nothing was put
        // from the receive folder.
        #expect(p.exists(p.recv + "/notes.txt"))
        #expect(p.folder(p.b)["puts"] as? Int == 0)
        #expect(p.a.currentRows().keys.sorted() == ["data/a.txt", "data/b.txt"])
    }

    @Test(.ownThread(timeLimit: .minutes(4)))
    func aReceiveFolderNeverShowsAPartialFile() throws {
        let p = try FolderPair()
        let size = 80 << 20
        let staged = p.cluster.root.sub("big.staged")
        try writePseudoRandomFile(staged, size: size, seed: 77)
        let expected = try Data(contentsOf: URL(fileURLWithPath: staged))
        let target = p.recv + "/big.bin"
        let stop = Atomic<Bool>(false)
        let seenComplete = Atomic<Int>(0)
        let bad = Mutex<[String]>([])
        let poller = Thread {
            while !stop.load(ordering: .relaxed) {
                guard let d = FileManager.default.contents(atPath: target) else { continue }
                if d.count == expected.count && d == expected {
                    seenComplete.add(1, ordering: .relaxed)
                } else {
                    bad.withLock { $0.append("saw \(d.count) bytes (\(d == expected ? "same" : "different") content)") }
                }
            }
        }
        poller.start()
        defer { stop.store(true, ordering: .relaxed) }
        // Written straight into A's folder (a slow writer is what settle is for).
        let copy = try Subprocess.run(["cp", staged, p.send + "/big.bin"])
        #expect(copy.status == 0)
        try eventually(120, "big.bin complete on B\n\(p.logs)") { seenComplete.load(ordering: .relaxed) >= 3 }
        stop.store(true, ordering: .relaxed)
        usleep(200_000)
        #expect(bad.withLock { $0 }.isEmpty, "\(bad.withLock { $0 }.prefix(5))")
        #expect(p.same("big.bin"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: p.recv).filter { $0.hasSuffix(".tmp") }.isEmpty, "no temp file left")
    }

    @Test(.ownThread(timeLimit: .minutes(3)))
    func changesMadeWhileTheSendingNodeWasStoppedArePickedUpAtItsStartupRescan() throws {
        let p = try FolderPair()
        try writeFile(p.send + "/keep.txt", "stays\n")
        try writeFile(p.send + "/gone.txt", "deleted while A is down\n")
        try eventually(15, "both files on B\n\(p.logs)") { p.same("keep.txt") && p.same("gone.txt") }
        let stopped = p.a.terminate()
        #expect(stopped == 0, "\(p.logs)")
        try FileManager.default.removeItem(atPath: p.send + "/gone.txt")
        try writeFile(p.send + "/new.txt", "added while A is down\n")
        try p.a.start(config: p.configA, join: [p.b.address])
        try eventually(30, "A's start-up rescan reaches B\n\(p.logs)") {
            p.same("new.txt") && !p.exists(p.recv + "/gone.txt") && p.same("keep.txt")
        }
        #expect(p.b.currentID("data/gone.txt") == nil)
        #expect(p.a.currentRows().keys.sorted() == ["data/keep.txt", "data/new.txt"])
        #expect(p.folder(p.a)["puts"] as? Int == 1, "keep.txt was not put again after the restart")
    }

    @Test(.ownThread(timeLimit: .minutes(2)))
    func aSendFolderWhoseMarkerIsGoneLikeAnUnmountedDiskDeletesNothing() throws {
        let p = try FolderPair()
        try writeFile(p.send + "/x.txt", "x\n")
        try eventually(15, "x.txt on B\n\(p.logs)") { p.same("x.txt") }
        // The disk is unmounted (or the directory emptied): every file goes, the marker too.
        for f in try FileManager.default.contentsOfDirectory(atPath: p.send) { try FileManager.default.removeItem(atPath: p.send + "/" + f) }
        try eventually(10, "A reports the folder as not synced\n\(p.logs)") {
            (p.folder(p.a)["blocked"] as? String)?.contains(".meshnode-folder is missing") == true
        }
        sleep(2)
        #expect(p.exists(p.recv + "/x.txt"))
        #expect(p.a.currentID("data/x.txt") != nil, "no tombstone was written")
        #expect(p.folder(p.a)["tombstones"] as? Int == 0)
        // Mounted again: in sync, and the same content is not a new version.
        try writeFile(p.send + "/.meshnode-folder", "")
        try writeFile(p.send + "/x.txt", "x\n")
        try eventually(10, "A syncs the folder again") { p.folder(p.a)["blocked"] == nil }
        sleep(1)
        let v = try Meshnode.run(["ls", "--versions", "data/x.txt", "--data", p.a.dataDir, "--json"])
        #expect(((try parseJSON(v.stdout)) as? [[String: Any]])?.count == 1, "\(v)")
    }

    @Test func foldersWithoutARunningNodeSaysSoAndExits17() throws {
        let root = TestDir("folders-no-node")
        let n = try TestNode(name: "solo", root: root, ip: "127.0.0.1")
        let r = try Meshnode.run(["folders", "--data", n.dataDir])
        #expect(r.status == 17, "\(r)")
        #expect(r.stderr.contains("no node is running"), "\(r)")
    }
}
