import Foundation
import TestSupport
import Testing

/// A node whose data dir is on a small real tmpfs that fills up (docs/SYNC.md, "Placement":
/// `max_disk_usage`): it refuses new replicas, says so in `status`, in its facts (`peers` on
/// every node) and in its log, and never shows an item it does not hold completely.
@Suite(.serialized, .ownThread()) struct DiskFullCLITests {
    @Test(.ownThread(timeLimit: .minutes(3)))
    func aNodeWhoseTmpfsFillsUpRefusesNewReplicasSaysSoEverywhereAndShowsNoPartialItem() throws {
        // n3's data dir is a 32 MiB tmpfs with max_disk_usage 50 %; no placement, so n1 and n2
        // fetch everything.
        let c = try TestCluster(size: 3)
        let (n1, n2, n3) = (c.nodes[0], c.nodes[1], c.nodes[2])
        let aside = n3.dataDir + ".aside"
        let mount = try Subprocess.shell("mv '\(n3.dataDir)' '\(aside)' && mkdir '\(n3.dataDir)' && "
                                         + "mount -t tmpfs -o size=32m tmpfs '\(n3.dataDir)' && cp -a '\(aside)'/. '\(n3.dataDir)'/")
        try #require(mount.status == 0, "mounting a tmpfs needs root: \(mount)")
        defer {
            n3.kill9()
            _ = try? Subprocess.shell("umount '\(n3.dataDir)' || umount -l '\(n3.dataDir)'")
        }
        try c.writeConfig(trusted: c.nodes.map(\.id), extra: "max_disk_usage: 50%", to: c.root.sub("n3.yaml"))
        try n1.start(config: c.configPath)
        try n2.start(config: c.configPath, join: [n1.address])
        try n3.start(config: c.root.sub("n3.yaml"), join: [n1.address])
        try eventually(30, "3 alive") { c.allSeeAlive(3) }
        try eventually(15, "n3 stated not full on every node\n\(c.dumpLogs())") {
            c.nodes.allSatisfy { $0.peers()["n3"]?["full"] as? Bool == false }
        }
        func placement() -> [String: Any] { n3.nodeStatus()?["placement"] as? [String: Any] ?? [:] }
        var originals: [String: String] = [:]  // content id → original file
        func put(_ name: String, seed: UInt64) throws -> String {
            let f = c.root.sub(name)
            try writePseudoRandomFile(f, size: 3_000_000, seed: seed)
            let id = try n1.put(f, name: name)
            originals[id] = f
            return id
        }
        /// Whatever n3's `ls --json` lists complete exports byte for byte; the rest say incomplete.
        func n3ShowsOnlyWholeItems() throws {
            let r = try Meshnode.run(["ls", "--data", n3.dataDir, "--json"], timeoutSeconds: 10)
            let rows = try #require((try? parseJSON(r.stdout)) as? [[String: Any]], "\(r)")
            for row in rows where row["complete"] as? Bool == true {
                let id = try #require(row["id"] as? String)
                try n3.expectExportMatches(id, original: try #require(originals[id]))
                unlink(originals[id]! + ".exported-from-n3")
            }
        }

        // Under the cap, n3 replicates like the others.
        let a = try put("a.bin", seed: 91)
        try eventually(30, "every node holds a.bin\n\(c.dumpLogs())") { c.nodes.allSatisfy { $0.holdsComplete(a) } }
        try n3ShowsOnlyWholeItems()
        #expect(placement()["full"] as? Bool == false, "\(placement())")

        // The disk fills up with other data (20 MiB of 32): n3 is over its cap.
        let ballast = n3.dataDir + "/ballast"
        try writePseudoRandomFile(ballast, size: 20 << 20, seed: 92)
        try eventually(15, "n3 states it is full\n\(c.dumpLogs())") { placement()["full"] as? Bool == true }
        try eventually(15, "every node's peers shows n3 full\n\(c.dumpLogs())") {
            c.nodes.allSatisfy { $0.peers()["n3"]?["full"] as? Bool == true }
        }
        #expect(n3.logs.contains("over max_disk_usage: accepting no new replicas"), "\(n3.logs.suffix(2000))")
        #expect(c.nodes.allSatisfy { $0.peers()["n1"]?["full"] as? Bool == false && $0.peers()["n2"]?["full"] as? Bool == false })
        let chunkBytesWhenFull = PlacementExclusionCLITests.chunkFileBytes(n3.dataDir)

        // New items while full: n2 fetches them, n3 lists them incomplete and stores none of their bytes.
        let b = try put("b.bin", seed: 93), d = try put("d.bin", seed: 94)
        try eventually(30, "n2 holds b.bin and d.bin\n\(c.dumpLogs())") { n2.holdsComplete(b) && n2.holdsComplete(d) }
        let until = Date().addingTimeInterval(4)
        while Date() < until {
            #expect(!n3.holdsComplete(b) && !n3.holdsComplete(d), "a full node accepts no new replicas")
            try n3ShowsOnlyWholeItems()
            Thread.sleep(forTimeInterval: 0.5)
        }
        #expect(n3.itemNames().isSuperset(of: ["a.bin", "b.bin", "d.bin"]), "the catalog still replicates to a full node")
        let st = placement()
        #expect(st["full"] as? Bool == true && (st["skipped_full"] as? Int ?? 0) >= 2, "\(st)")
        #expect(PlacementExclusionCLITests.chunkFileBytes(n3.dataDir) <= chunkBytesWhenFull, "no bytes of a refused replica stored")
        try eventually(10, "n1 and n2, not n3, listed as the holders of the refused replicas on every node") {
            c.nodes.allSatisfy { n in [b, d].allSatisfy { n.holders(of: $0) == [n1.id, n2.id] } }
        }

        // The other data goes: n3 says so and takes the replicas it refused (not a.bin again if it
        // was evicted meanwhile: an evicted item is not fetched again).
        unlink(ballast)
        try eventually(15, "n3 states it is no longer full\n\(c.dumpLogs())") {
            placement()["full"] as? Bool == false && n1.peers()["n3"]?["full"] as? Bool == false
        }
        #expect(n3.logs.contains("under max_disk_usage again: accepting replicas"))
        try eventually(30, "n3 fetches the refused replicas\n\(c.dumpLogs())") { n3.holdsComplete(b) && n3.holdsComplete(d) }
        try n3ShowsOnlyWholeItems()
        try eventually(15, "every node lists n3 among the holders") {
            c.nodes.allSatisfy { $0.holders(of: b)?.contains(n3.id) == true && $0.holders(of: d)?.contains(n3.id) == true }
        }
        // Nothing half-received is left in its temporary directory.
        let leftovers = (try? FileManager.default.contentsOfDirectory(atPath: n3.dataDir + "/tmp")) ?? []
        #expect(leftovers.isEmpty, "\(leftovers)")
    }
}
