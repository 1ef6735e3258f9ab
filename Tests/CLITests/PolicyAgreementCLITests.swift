import Foundation
import TestSupport
import Testing

/// Nodes whose `placement:` rules differ (docs/SYNC.md, "Policy agreement"): each says so,
/// and nothing is dropped while they disagree; once they agree, placement goes on.
@Suite(.serialized, .ownThread()) struct PolicyAgreementCLITests {
    @Test(.ownThread(timeLimit: .minutes(3)))
    func nodesWithDifferentPlacementRulesWarnListEachOtherAndTheOriginKeepsItsCopyUntilTheyAgree() throws {
        // n1 training puts a game; n2 storage is its only target. n2 also has a rule for npz.
        let c = try TestCluster(size: 2)
        let n1 = c.nodes[0], n2 = c.nodes[1]
        let game = "game: {roles: [storage], min_copies: 1, max_copies: 1}"
        try c.writeConfig(trusted: c.nodes.map(\.id), extra: "placement: {\(game)}\nroles: [training]", to: c.root.sub("n1.yaml"))
        try c.writeConfig(trusted: c.nodes.map(\.id), extra: "placement: {\(game), npz: {roles: [training]}}\nroles: [storage]",
                          to: c.root.sub("n2.yaml"))
        try n1.start(config: c.root.sub("n1.yaml"))
        try n2.start(config: c.root.sub("n2.yaml"), join: [n1.address])
        try eventually(30, "2 alive") { c.allSeeAlive(2) }

        func mismatch(_ n: TestNode) -> [String]? { (n.nodeStatus()?["placement"] as? [String: Any])?["policy_mismatch"] as? [String] }
        try eventually(20, "each lists the other as disagreeing\n\(c.dumpLogs())") {
            mismatch(n1) == [n2.name] && mismatch(n2) == [n1.name]
        }
        #expect(n1.peers()[n2.name]?["policy_mismatch"] as? Bool == true)
        #expect(n1.peers()[n1.name]?["policy_mismatch"] == nil, "a node is not compared with itself")
        #expect(n1.logs.contains("placement rules differ from \(n2.name)'s"), "\(n1.logs)")
        #expect(n2.logs.contains("placement rules differ from \(n1.name)'s"), "\(n2.logs)")
        let status = try Meshnode.run(["status", "--data", n1.dataDir])
        #expect(status.stdout.contains("rules differ from \(n2.name)"), "\(status)")

        let f = c.root.sub("games.db")
        try writePseudoRandomFile(f, size: 200_000, seed: 43)
        let put = try Meshnode.run(["put", f, "--type", "game", "--name", "games.db", "--data", n1.dataDir])
        try #require(put.status == 0, "\(put)")
        let id = put.lastLine
        try eventually(20, "the target n2 fetches it (fetching goes on)\n\(c.dumpLogs())") { n2.holdsComplete(id) }
        // Eviction passes run every 10 s: past two of them the origin still holds its copy.
        Thread.sleep(forTimeInterval: 22)
        #expect(n1.holdsComplete(id), "nothing is dropped while the rules differ")

        // The same rules on both: they agree, and the origin, no target, drops its copy.
        _ = n2.terminate()
        try c.writeConfig(trusted: c.nodes.map(\.id), extra: "placement: {\(game)}\nroles: [storage]", to: c.root.sub("n2.yaml"))
        try n2.start(config: c.root.sub("n2.yaml"), join: [n1.address])
        try eventually(30, "they agree\n\(c.dumpLogs())") { mismatch(n1) == [] && mismatch(n2) == [] }
        try eventually(40, "the origin drops its copy once they agree\n\(c.dumpLogs())") { !n1.holdsComplete(id) && n2.holdsComplete(id) }
    }
}
