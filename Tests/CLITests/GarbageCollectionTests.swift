import Foundation
import Gossip
import Store
import TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Garbage collection with real processes: `meshnode gc` killed with SIGKILL at random moments,
/// and a running node reclaiming a replaced model's old versions by itself.
@Suite(.serialized, .ownThread()) struct GarbageCollectionTests {
    /// One version put into the store, and whether the keep policy keeps it.
    struct Version {
        var name: String
        var number: Int
        var file: String
        var kept: Bool
    }

    /// BLAKE2b-256 hex of each `chunkBytes` slice of `file`.
    static func chunkHashes(_ file: String, chunkBytes: Int) throws -> Set<String> {
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: file)))
        var out = Set<String>()
        var i = 0
        while i < bytes.count {
            let end = min(bytes.count, i + chunkBytes)
            out.insert(bytes[i..<end].withUnsafeBytes { Blake2b256.hash($0) }.hex)
            i = end
        }
        return out
    }

    /// How many chunk files `dataDir` holds (a cheap count, polled while `gc` runs).
    static func chunkFileCount(_ dataDir: String) -> Int {
        let dir = "\(dataDir)/chunks"
        var n = 0
        for sub in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] {
            n += ((try? FileManager.default.contentsOfDirectory(atPath: "\(dir)/\(sub)")) ?? []).count { $0.count == 64 }
        }
        return n
    }

    /// `status --json`'s top-level `reclaimable` (bytes), with `config`'s keep policy.
    static func reclaimable(_ dataDir: String, config: String) throws -> Int? {
        let r = try Meshnode.run(["status", "--json", "--data", dataDir, "--config", config])
        return (try parseJSON(r.stdout) as? [String: Any])?["reclaimable"] as? Int
    }

    /// A store with many versions of six names (some kept by `keep_versions`, some not; later
    /// versions share chunks with earlier ones), then `meshnode gc` killed with `-9` at seeded
    /// random moments of its run (half at a random time, half once a random number of chunk
    /// files are gone, so some kills land mid-collection on any machine). After every kill the store's invariant holds (no recorded
    /// chunk without its file; every unrecorded file journalled), `verify` exits 0, every kept
    /// version exports byte for byte, and a second `gc` leaves exactly the kept chunks.
    @Test(.ownThread(timeLimit: .minutes(8)))
    func gcKilledAtRandomMomentsLosesNoKeptChunkAndASecondGCFinishesTheJob() throws {
        let seed = UInt64(ProcessInfo.processInfo.environment["MESHNODE_CRASH_SEED"] ?? "") ?? 0x6C_0DE5
        print("gc kills: seed \(seed) (MESHNODE_CRASH_SEED=\(seed) repeats these kill delays)")
        var rng = SplitMix64(seed: seed)
        let root = TestDir("gc-kill")
        let pristine = root.sub("pristine")
        let chunkBytes = 16 * 1024
        let config = root.sub("keep.yaml")
        try "keep_versions: {model: 2, other: 1}\n".write(toFile: config, atomically: true, encoding: .utf8)
        var versions = [Version]()
        do {
            let (store, identity) = try Store.initialize(dataDir: pristine, name: "gc", chunkSizeBytes: UInt32(chunkBytes))
            for (n, (name, type)) in [("m0.onnx", ItemType.model), ("m1.onnx", .model), ("m2.onnx", .model), ("m3.onnx", .model),
                                      ("o0.bin", .other), ("o1.bin", .other)].enumerated() {
                var previous: [UInt8]? = nil
                for k in 1...6 {
                    let file = root.sub("\(name)-v\(k)")
                    try writePseudoRandomFile(file, size: 160 * 1024 + k * 20 * 1024, seed: seed &+ UInt64(n * 10 + k))
                    if let p = previous {
                        // The first half of each version is its predecessor's: shared chunks.
                        var b = [UInt8](try Data(contentsOf: URL(fileURLWithPath: file)))
                        b.replaceSubrange(0..<(5 * chunkBytes), with: p[0..<(5 * chunkBytes)])
                        try Data(b).write(to: URL(fileURLWithPath: file))
                    }
                    previous = [UInt8](try Data(contentsOf: URL(fileURLWithPath: file)))
                    _ = try store.ingest(path: file, name: name, type: type, signer: identity)
                    versions.append(Version(name: name, number: k, file: file, kept: k > (type == .model ? 4 : 5)))
                }
            }
        }
        var keptChunks = Set<String>()
        for v in versions where v.kept { keptChunks.formUnion(try Self.chunkHashes(v.file, chunkBytes: chunkBytes)) }
        let all = try ChunkRecordSnapshot(dataDir: pristine)
        #expect(all.recorded.count > keptChunks.count + 100, "enough garbage for many batches")
        let env = ["MESHNODE_GC_BATCH_FILES": "2"]

        func copyOfPristine(_ label: String) throws -> String {
            let dir = root.sub(label)
            let r = try Subprocess.run(["cp", "-a", pristine, dir])
            guard r.status == 0 else { throw TestFailure("cp failed: \(r)") }
            return dir
        }
        /// verify, every kept version exported, a second gc, then exactly the kept chunks.
        func expectRecovered(_ dir: String, _ what: String) throws {
            let verify = try Meshnode.run(["verify", "--data", dir], timeoutSeconds: 120)
            #expect(verify.status == 0, "seed \(seed) \(what): \(verify)")
            for v in versions where v.kept {
                let out = root.sub("out-\(FS.randomToken())")
                let g = try Meshnode.run(["get", "\(v.name)@\(v.number)", "-o", out, "--data", dir])
                #expect(g.status == 0, "seed \(seed) \(what): \(v.name)@\(v.number): \(g)")
                #expect(FileManager.default.contentsEqual(atPath: v.file, andPath: out), "seed \(seed) \(what): \(v.name)@\(v.number)")
                unlink(out)
            }
            let second = try Meshnode.run(["gc", "--json", "--data", dir, "--config", config], environment: env)
            #expect(second.status == 0, "seed \(seed) \(what): \(second)")
            let s = try ChunkRecordSnapshot(dataDir: dir)
            #expect(s.recorded == keptChunks, "seed \(seed) \(what): \(s.recorded.count) recorded, \(keptChunks.count) kept")
            #expect(s.files == s.recorded && s.journalled.isEmpty, "seed \(seed) \(what)")
            #expect(try Self.reclaimable(dir, config: config) == 0, "seed \(seed) \(what)")
        }

        // An uninterrupted run, for its report and to time the kills.
        let timing = try copyOfPristine("timing")
        let t0 = Date()
        let full = try Meshnode.run(["gc", "--json", "--data", timing, "--config", config], environment: env, timeoutSeconds: 120)
        let gcMs = max(100, Int(Date().timeIntervalSince(t0) * 1000))
        #expect(full.status == 0, "\(full)")
        let report = try #require(try parseJSON(full.stdout) as? [String: Any])
        #expect(report["via"] as? String == "store")
        #expect(report["contents_released"] as? Int == 4 * 4 + 2 * 5)
        #expect(report["recipes_deleted"] as? Int == 26)
        #expect(report["chunks_deleted"] as? Int == all.recorded.count - keptChunks.count)
        try expectRecovered(timing, "uninterrupted")

        let trials = 8
        let garbage = all.recorded.count - keptChunks.count
        var midRun = 0
        for trial in 0..<trials {
            let dir = try copyOfPristine("trial-\(trial)")
            let child = try Meshnode.spawn(["gc", "--data", dir, "--config", config], environment: env)
            let when: String
            if trial % 2 == 0 {
                // At a random moment of the run's length: may land before, during or after it.
                let delayMs = Int.random(in: 0...gcMs, using: &rng)
                usleep(UInt32(delayMs * 1000))
                when = "after \(delayMs) of ~\(gcMs) ms"
            } else {
                // Once a random number of chunk files are gone: lands during the collection
                // however slow this machine is (a clock guess alone can miss it on a loaded one).
                let target = Int.random(in: 1...(garbage - 1), using: &rng)
                let deadline = Date().addingTimeInterval(60)
                while child.poll() == nil, Date() < deadline, all.recorded.count - Self.chunkFileCount(dir) < target {
                    usleep(1000)
                }
                when = "after \(target) of \(garbage) chunk files were gone"
            }
            child.kill(SIGKILL)
            let status = child.wait(timeoutSeconds: 30)
            let s = try ChunkRecordSnapshot(dataDir: dir)
            print("trial \(trial): killed \(when) (status \(status)): \(s.recorded.count) recorded, "
                  + "\(s.files.count) files, \(s.journalled.count) journalled")
            // A row goes before its file, and a file goes only while journalled.
            #expect(s.recordedWithoutFile.isEmpty, "seed \(seed) trial \(trial): recorded without a file: \(s.recordedWithoutFile)")
            #expect(s.unrecordedFiles.isSubset(of: s.journalled),
                    "seed \(seed) trial \(trial): unrecorded, not journalled: \(s.unrecordedFiles.subtracting(s.journalled))")
            #expect(keptChunks.isSubset(of: s.recorded), "seed \(seed) trial \(trial): a kept chunk is gone")
            // Killed mid-collection: some chunks gone but not all (or deletions journalled).
            if !s.journalled.isEmpty || (s.recorded.count < all.recorded.count && s.recorded != keptChunks) { midRun += 1 }
            try expectRecovered(dir, "trial \(trial)")
        }
        print("gc kills: \(trials) kills, \(midRun) in the middle of the collection")
        #expect(midRun >= 2, "seed \(seed): the kills landed before or after the collection, not during it")
    }

    /// Two running nodes with `keep_versions: {model: 1}`. The receiving node holds version 1 of
    /// a model; version 2 replaces it (the receiver reclaims version 1 by itself), and version 3
    /// replaces version 2 while the receiver is still fetching it (that fetch is cancelled and its
    /// partial chunks reclaimed). In the end the receiver's disk holds version 3 alone, and
    /// `status --json` says nothing is reclaimable.
    @Test(.ownThread(timeLimit: .minutes(4)))
    func aReplacedModelsOldVersionsAreReclaimedOnAReceivingNodeByItself() throws {
        let c = try TestCluster(size: 2)
        let (origin, receiver) = (c.nodes[0], c.nodes[1])
        let config = c.root.sub("keep-one.yaml")
        try c.writeConfig(trusted: c.nodes.map(\.id), extra: "keep_versions: {model: 1}", to: config)
        let slow = c.root.sub("keep-one-slow.yaml")
        try c.writeConfig(trusted: c.nodes.map(\.id), extra: "keep_versions: {model: 1}\nbandwidth: {global: 4MB/s}", to: slow)
        try origin.start(config: slow)
        try receiver.start(config: config, join: [origin.address])
        try eventually(30, "2 alive") { c.allSeeAlive(2) }
        func storeStatus(_ n: TestNode) -> [String: Any]? {
            guard let r = try? Meshnode.run(["status", "--json", "--data", n.dataDir], timeoutSeconds: 20), r.status == 0 else { return nil }
            return (try? parseJSON(r.stdout)) as? [String: Any]
        }
        func chunkBytes(_ n: TestNode) -> Int { storeStatus(n)?["chunk_bytes"] as? Int ?? -1 }
        let v1 = c.root.sub("v1.onnx"), v2 = c.root.sub("v2.onnx"), v3 = c.root.sub("v3.onnx")
        try writePseudoRandomFile(v1, size: 10 << 20, seed: 91)
        try writePseudoRandomFile(v2, size: 24 << 20, seed: 92)
        try writePseudoRandomFile(v3, size: 3 << 20, seed: 93)
        let id1 = try origin.put(v1, name: "policy.onnx")
        try eventually(60, "version 1 complete on the receiver") { receiver.holdsComplete(id1) }
        #expect(chunkBytes(receiver) == 10 << 20)
        let id2 = try origin.put(v2, name: "policy.onnx")
        // Version 1 is released as soon as version 2 is known, and collected by itself.
        try eventually(60, "the receiver fetches version 2") {
            (receiver.nodeStatus()?["transfers"] as? [[String: Any]])?.contains { $0["id"] as? String == id2 && ($0["done"] as? Int ?? 0) > 0 } == true
        }
        let id3 = try origin.put(v3, name: "policy.onnx")
        try eventually(60, "version 3 complete on the receiver") { receiver.holdsComplete(id3) }
        #expect(!receiver.holdsComplete(id2), "version 2's fetch went on although it was released")
        #expect((receiver.nodeStatus()?["transfers"] as? [[String: Any]])?.isEmpty == true)
        // Collected by itself: version 1, and version 2's partial chunks (in one run or two: a
        // run comes 2 s after a release, and at most every 30 s).
        try eventually(90, "the receiver's disk holds version 3 alone\n\(c.dumpLogs())") {
            chunkBytes(receiver) == 3 << 20
        }
        let st = try #require(storeStatus(receiver))
        #expect(st["reclaimable"] as? Int == 0, "\(st)")
        #expect(st["chunks"] as? Int == 2)
        let gc = try #require((st["node"] as? [String: Any])?["gc"] as? [String: Any])
        #expect((gc["runs"] as? Int ?? 0) >= 1 && gc["failures"] as? Int == 0, "\(gc)")
        #expect((gc["bytes_reclaimed"] as? Int ?? 0) >= 10 << 20, "\(gc)")
        let s = try ChunkRecordSnapshot(dataDir: receiver.dataDir)
        #expect(s.recorded == (try Self.chunkHashes(v3, chunkBytes: 2 << 20)) && s.files == s.recorded)
        try receiver.expectExportMatches(id3, original: v3)
        // The origin keeps one version too: its own older puts are reclaimed as well.
        try eventually(60, "the origin reclaims its older versions") { chunkBytes(origin) == 3 << 20 }
        // `meshnode gc` through the running node: nothing left to do.
        let r = try Meshnode.run(["gc", "--json", "--data", receiver.dataDir])
        #expect(r.status == 0, "\(r)")
        let j = try #require(try parseJSON(r.stdout) as? [String: Any])
        #expect(j["via"] as? String == "node" && j["chunks_deleted"] as? Int == 0, "\(r)")
        #expect(receiver.terminate() == 0)
        #expect(origin.terminate() == 0)
    }
}
