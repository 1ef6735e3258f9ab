import Foundation
import TestSupport
import Testing

/// `put --broadcast` between real `meshnode run` processes (docs/SYNC.md, "Broadcast"): every
/// eligible node receives the item, receivers serve one another, and `ls --json` states the
/// delivery per node.
@Suite(.serialized, .ownThread()) struct BroadcastCLITests {
    @Test(.ownThread(timeLimit: .minutes(4)))
    func aBroadcastReachesEveryNodeButTheExcludedOneAndReceiversServeOneAnother() throws {
        // Five nodes; n5 is excluded from sync; `other` items would go to one node only. The
        // origin n1 serves at most 8 MB/s, so that receivers finish sooner from one another.
        let c = try TestCluster(size: 5)
        let shared = "placement: {other: {max_copies: 1}}\nexclude_from_sync: [n5]"
        for (i, n) in c.nodes.enumerated() {
            try c.writeConfig(trusted: c.nodes.map(\.id), extra: shared + (i == 0 ? "\nbandwidth: {global: 8MB/s}" : ""),
                              to: c.root.sub("\(n.name).yaml"))
        }
        try c.nodes[0].start(config: c.root.sub("n1.yaml"))
        for n in c.nodes.dropFirst() { try n.start(config: c.root.sub("\(n.name).yaml"), join: [c.nodes[0].address]) }
        try eventually(30, "5 alive") { c.allSeeAlive(5) }
        try eventually(20, "every node's facts on every node\n\(c.dumpLogs())") {
            c.nodes.allSatisfy { n in n.peers().count == 5 && n.peers()["n5"]?["excluded"] as? Bool == true }
        }
        let f = c.root.sub("weights.bin")
        try writePseudoRandomFile(f, size: 32 << 20, seed: 51)
        let put = try Meshnode.run(["put", f, "--type", "other", "--broadcast", "--name", "weights.bin", "--data", c.nodes[0].dataDir])
        #expect(put.status == 0, "\(put)")
        #expect(put.stdout.contains("broadcast"), "\(put.stdout)")
        let id = put.lastLine
        let receivers = Array(c.nodes[1...3])
        try eventually(90, "every non-excluded node holds it\n\(c.dumpLogs())") {
            receivers.allSatisfy { $0.holdsComplete(id) }
        }
        for r in receivers { try r.expectExportMatches(id, original: f) }
        Thread.sleep(forTimeInterval: 2)
        #expect(!c.nodes[4].holdsComplete(id), "the excluded node receives nothing")

        // Swarm-style: receivers served chunks of it to one another, more than the odd endgame
        // duplicate (16 chunks of 2 MiB; each receiver starts at its own chunk).
        let servedByReceivers = receivers.map { $0.blobCounter("chunks_served") }
        #expect(servedByReceivers.reduce(0, +) >= 4, "chunks served by n2…n4: \(servedByReceivers)")
        print("broadcast: chunks served by the origin \(c.nodes[0].blobCounter("chunks_served")), by n2…n4 \(servedByReceivers)")

        // Delivery per node, the same on the origin and on the excluded node.
        for n in [c.nodes[0], c.nodes[4]] {
            try eventually(20, "delivery settled on \(n.name)") {
                Set(Self.row(id, on: n)?["delivered"] as? [String] ?? []) == ["n1", "n2", "n3", "n4"]
            }
            let row = try #require(Self.row(id, on: n))
            #expect(row["broadcast"] as? Bool == true)
            let skipped = row["skipped"] as? [[String: Any]] ?? []
            #expect(skipped.count == 1 && skipped.first?["node"] as? String == "n5" && skipped.first?["reason"] as? String == "excluded",
                    "\(skipped)")
            #expect((row["pending"] as? [String])?.isEmpty == true, "\(row)")
        }
        // The same from the excluded node's store once it has stopped (no running node to ask).
        #expect(c.nodes[4].terminate() == 0)
        let offline = try #require(Self.row(id, on: c.nodes[4]))
        #expect(Set(offline["delivered"] as? [String] ?? []) == ["n1", "n2", "n3", "n4"], "\(offline)")
        #expect((offline["skipped"] as? [[String: Any]])?.first?["node"] as? String == "n5", "\(offline)")
        // Each node also lists it with the broadcast flag in the plain table.
        let ls = try Meshnode.run(["ls", "--data", c.nodes[2].dataDir])
        #expect(ls.status == 0 && ls.stdout.contains("complete, broadcast"), "\(ls.stdout)")
    }

    static func row(_ id: String, on n: TestNode) -> [String: Any]? {
        guard let r = try? Meshnode.run(["ls", "weights.bin", "--data", n.dataDir, "--json"], timeoutSeconds: 10), r.status == 0,
              let rows = (try? parseJSON(r.stdout)) as? [[String: Any]] else { return nil }
        return rows.first { $0["id"] as? String == id }
    }
}
