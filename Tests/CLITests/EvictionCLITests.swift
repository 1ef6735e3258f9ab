import Foundation
import TestSupport
import Testing

/// Dropping and eviction between real `meshnode run` processes (docs/SYNC.md, "Dropping"): a
/// node that is not a target lets its copy go once placement is met, and never the last copy.
@Suite(.serialized, .ownThread()) struct EvictionCLITests {
    static func placement(_ c: TestCluster, rule: String, roles: [String]) throws {
        for (i, n) in c.nodes.enumerated() {
            try c.writeConfig(trusted: c.nodes.map(\.id), extra: "placement: {game: \(rule)}\nroles: [\(roles[i])]",
                              to: c.root.sub("\(n.name).yaml"))
        }
        try c.nodes[0].start(config: c.root.sub("n1.yaml"))
        for n in c.nodes.dropFirst() { try n.start(config: c.root.sub("\(n.name).yaml"), join: [c.nodes[0].address]) }
        try eventually(30, "\(c.nodes.count) alive") { c.allSeeAlive(c.nodes.count) }
        try eventually(20, "every node's facts on every node\n\(c.dumpLogs())") {
            c.nodes.allSatisfy { n in
                let p = n.peers()
                return p.count == c.nodes.count && p.values.allSatisfy { ($0["roles"] as? [String])?.isEmpty == false }
            }
        }
    }

    @Test(.ownThread(timeLimit: .minutes(3)))
    func theOriginAndANodeThatFetchedOnRequestDropTheirCopiesOnceBothTargetsHoldIt() throws {
        // n1 training puts; n2, n3, n4 storage; games go to 2 storage nodes.
        let c = try TestCluster(size: 4)
        try Self.placement(c, rule: "{roles: [storage], min_copies: 2, max_copies: 2}",
                           roles: ["training", "storage", "storage", "storage"])
        let storage = Array(c.nodes[1...])
        let f = c.root.sub("games.db")
        try writePseudoRandomFile(f, size: 300_000, seed: 51)
        let put = try Meshnode.run(["put", f, "--type", "game", "--name", "games.db", "--data", c.nodes[0].dataDir])
        #expect(put.status == 0, "\(put)")
        let id = put.lastLine
        try eventually(30, "two storage nodes hold the game\n\(c.dumpLogs())") {
            storage.filter { $0.holdsComplete(id) }.count == 2
        }
        let targets = storage.filter { $0.holdsComplete(id) }
        let other = try #require(storage.first { !$0.holdsComplete(id) })
        // The node that is not a target asks for a copy (`meshnode get` through the node).
        try other.expectExportMatches(id, original: f)
        #expect(other.holdsComplete(id))
        // Placement is met: the origin and the other storage node let theirs go.
        let expected = Set(targets.map(\.id))
        try eventually(90, "only the two targets hold it, on every node\n\(c.dumpLogs())") {
            !c.nodes[0].holdsComplete(id) && !other.holdsComplete(id)
                && c.nodes.allSatisfy { $0.holders(of: id) == expected }
        }
        for t in targets { #expect(t.holdsComplete(id)) }
        let st = try #require(other.nodeStatus()?["placement"] as? [String: Any])
        #expect(st["dropped_not_target"] as? Int == 1 && (st["dropped_not_target_bytes"] as? Int ?? 0) >= 300_000
                && st["evicted"] as? Int == 0, "\(st)")
        let origin = try #require(c.nodes[0].nodeStatus()?["placement"] as? [String: Any])
        #expect(origin["dropped_not_target"] as? Int == 1, "\(origin)")
        // The dropped copy is not fetched again.
        Thread.sleep(forTimeInterval: 3)
        #expect(!other.holdsComplete(id) && !c.nodes[0].holdsComplete(id))
    }

    @Test(.ownThread(timeLimit: .minutes(3)))
    func withNoTargetAliveTheLastCopyIsNeverDroppedAndOfTwoCopiesOneStays() throws {
        // Games go to storage nodes only, and there are none: no node is a target.
        let c = try TestCluster(size: 2)
        try Self.placement(c, rule: "{roles: [storage], min_copies: 1}", roles: ["training", "training"])
        let f = c.root.sub("games.db")
        try writePseudoRandomFile(f, size: 200_000, seed: 52)
        let put = try Meshnode.run(["put", f, "--type", "game", "--name", "games.db", "--data", c.nodes[0].dataDir])
        #expect(put.status == 0, "\(put)")
        let id = put.lastLine
        // The origin alone holds it: over several eviction passes, it stays.
        let until = Date().addingTimeInterval(25)
        while Date() < until {
            #expect(c.nodes[0].holdsComplete(id), "the last copy went\n\(c.dumpLogs())")
            Thread.sleep(forTimeInterval: 1)
        }
        #expect(!c.nodes[1].holdsComplete(id), "not a target: not fetched")
        // n2 asks for a copy: of the two, the lower-ranked goes; never both.
        try c.nodes[1].expectExportMatches(id, original: f)
        try eventually(90, "one of the two copies goes\n\(c.dumpLogs())") {
            c.nodes.filter { $0.holdsComplete(id) }.count == 1
                && c.nodes.allSatisfy { $0.holders(of: id)?.count == 1 }
        }
        let until2 = Date().addingTimeInterval(15)
        while Date() < until2 {
            #expect(c.nodes.contains { $0.holdsComplete(id) }, "the last copy went\n\(c.dumpLogs())")
            Thread.sleep(forTimeInterval: 1)
        }
        let keeper = try #require(c.nodes.first { $0.holdsComplete(id) })
        #expect(c.nodes.allSatisfy { $0.holders(of: id) == [keeper.id] })
    }
}
