import Foundation
import TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A 500 MB `put --broadcast` between five real `meshnode run` processes: every node ends with
/// the whole item, byte for byte, and `ls --json` lists every node as delivered.
@Suite(.serialized, .ownThread()) struct BroadcastLargeCLITests {
    /// `b2sum` of `path`.
    static func b2sum(_ path: String) throws -> String {
        let r = try Subprocess.run(["b2sum", path], timeoutSeconds: 60)
        guard r.status == 0, let sum = r.stdout.split(separator: " ").first else { throw TestFailure("b2sum \(path): \(r)") }
        return String(sum)
    }

    @Test(.ownThread(timeLimit: .minutes(4)))
    func aFiveHundredMegabyteBroadcastReachesEveryNodeWholeAndEveryNodeIsListedDelivered() throws {
        // `other` items would go to one node only: the broadcast flag alone makes every node a target.
        let c = try TestCluster(size: 5, extraConfig: "placement: {other: {max_copies: 1}}")
        try c.startAll()
        try eventually(30, "5 alive") { c.allSeeAlive(5) }
        try eventually(20, "every node's facts on every node\n\(c.dumpLogs())") {
            c.nodes.allSatisfy { n in let p = n.peers(); return p.count == 5 && p.values.allSatisfy { $0["disk_total_bytes"] != nil } }
        }
        let f = c.root.sub("weights.bin")
        var phase = Date()
        func lap(_ what: String) {
            print("broadcast 500 MB: \(what) took \(Date().timeIntervalSince(phase)) s")
            phase = Date()
        }
        try writePseudoRandomFile(f, size: 500_000_000, seed: 61)
        let originalSum = try Self.b2sum(f)
        lap("writing and hashing the file")
        let put = try Meshnode.run(["put", f, "--type", "other", "--broadcast", "--name", "weights.bin", "--data", c.nodes[0].dataDir],
                                   timeoutSeconds: 120)
        #expect(put.status == 0, "\(put)")
        let id = put.lastLine
        try eventually(150, "every node holds the broadcast complete\n\(c.dumpLogs())") { c.nodes.allSatisfy { $0.holdsComplete(id) } }
        lap("put and delivery to 5 nodes")
        // Whole on every node: `verify` re-hashes every chunk each node stores and recomputes each
        // content id from its chunk list (the id is the one the put printed); and byte for byte
        // through `get` on the last receiver (500 MB: the export is removed at once).
        // (All five at once: each is one process reading its own store.)
        let verifies = try c.nodes.map { try Meshnode.spawn(["verify", "--data", $0.dataDir]) }
        for (n, v) in zip(c.nodes, verifies) {
            let status = v.wait(timeoutSeconds: 120)
            #expect(status == 0 && v.result.stdout.contains("ok:"), "verify on \(n.name): \(v.result)")
            #expect(n.holdsComplete(id), "\(n.name) lists the item complete after verify")
        }
        lap("verify on 5 nodes")
        let out = c.root.sub("export.bin")
        let g = try Meshnode.run(["get", id, "-o", out, "--data", c.nodes[4].dataDir], timeoutSeconds: 120)
        #expect(g.status == 0, "\(g)")
        #expect(try Self.b2sum(out) == originalSum, "the copy on n5 differs")
        unlink(out)
        lap("get and b2sum on n5")
        unlink(f)
        let everyone = Set(c.nodes.map(\.name))
        for n in c.nodes {
            try eventually(20, "delivery to all five listed on \(n.name)\n\(c.dumpLogs())") {
                guard let row = BroadcastCLITests.row(id, on: n) else { return false }
                return Set(row["delivered"] as? [String] ?? []) == everyone && (row["pending"] as? [String])?.isEmpty == true
                    && (row["skipped"] as? [[String: Any]] ?? []).isEmpty && row["broadcast"] as? Bool == true
            }
        }
        for n in c.nodes { #expect(n.terminate() == 0) }
    }
}
