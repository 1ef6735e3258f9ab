import Foundation
import TestSupport
import Testing

/// Placement between real `meshnode run` processes (docs/SYNC.md, "Placement"): only the
/// targets of an item fetch it, and a dead holder's place goes to the next-ranked node.
@Suite(.serialized, .ownThread()) struct PlacementCLITests {
    @Test(.ownThread(timeLimit: .minutes(3)))
    func aGameLandsOnExactlyTwoStorageNodesAndADeadHoldersPlaceGoesToTheThird() throws {
        // n1, n2 training; n3, n4, n5 storage; games go to 2 storage nodes.
        let c = try TestCluster(size: 5)
        try c.startWithRoles(["training", "training", "storage", "storage", "storage"],
                             shared: "placement: {game: {roles: [storage], min_copies: 2, max_copies: 2}}")
        let storage = Array(c.nodes[2...])
        let f = c.root.sub("games.db")
        try writePseudoRandomFile(f, size: 300_000, seed: 31)
        let put = try Meshnode.run(["put", f, "--type", "game", "--name", "games.db", "--data", c.nodes[0].dataDir])
        #expect(put.status == 0, "\(put)")
        let id = put.lastLine
        try eventually(20, "two storage nodes hold the game\n\(c.dumpLogs())") {
            let holding = storage.filter { $0.holdsComplete(id) }
            return holding.count == 2 && c.nodes[0].holders(of: id)?.isSuperset(of: holding.map(\.id)) == true
        }
        // Settled: nobody else fetches it (the other training node, the third storage node).
        Thread.sleep(forTimeInterval: 3)
        let holding = storage.filter { $0.holdsComplete(id) }
        let third = try #require(storage.first { !$0.holdsComplete(id) })
        #expect(holding.count == 2)
        #expect(!c.nodes[1].holdsComplete(id), "a training node is not a target of a game")
        // The origin, no target, may already have let its copy go once the two held it.
        #expect(c.nodes[0].holders(of: id)?.subtracting([c.nodes[0].id]) == Set(holding.map(\.id)))
        let st = try #require(c.nodes[1].nodeStatus()?["placement"] as? [String: Any])
        #expect(st["configured"] as? Bool == true && st["not_target"] as? Int == 1, "\(st)")

        // A holder dies: the third storage node holds the game complete within failure detection
        // (computed from the config's probe interval, FailureDetection) + 10 s, from the kill.
        let victim = holding[0]
        let bound = FailureDetection.boundSeconds(nodes: 5, probeIntervalSeconds: FailureDetection.testClusterProbeIntervalSeconds)
            + 10 + FailureDetection.pollSlackSeconds
        let killedAt = Date()
        victim.kill9()
        try eventually(bound - Date().timeIntervalSince(killedAt), "the third storage node becomes a holder within \(bound) s of the kill\n\(c.dumpLogs())") {
            third.holdsComplete(id)
        }
        let tookSeconds = Date().timeIntervalSince(killedAt)
        print("placement: new holder complete \(tookSeconds) s after the kill (bound \(bound) s)")
        #expect(tookSeconds <= bound)
        let survivors = c.nodes.filter { $0 !== victim }
        try eventually(10, "the victim is declared dead\n\(c.dumpLogs())") {
            survivors.allSatisfy { let s = $0.states()[victim.name]; return s == "dead" || s == nil }
        }
        try eventually(10, "listed as a holder") { c.nodes[0].holders(of: id)?.contains(third.id) == true }
        #expect(!c.nodes[1].holdsComplete(id))
    }

    @Test(.ownThread(timeLimit: .minutes(2)))
    func aNodeOverMaxDiskUsageStatesFullAndFetchesNothingWhileTheOthersStillDo() throws {
        // No placement: every node fetches everything, except n2, whose cap of 1 % any disk exceeds.
        let c = try TestCluster(size: 3)
        try c.writeConfig(trusted: c.nodes.map(\.id), extra: "max_disk_usage: 1%", to: c.root.sub("capped.yaml"))
        try c.nodes[0].start(config: c.configPath)
        try c.nodes[1].start(config: c.root.sub("capped.yaml"), join: [c.nodes[0].address])
        try c.nodes[2].start(config: c.configPath, join: [c.nodes[0].address])
        try eventually(30, "3 alive") { c.allSeeAlive(3) }
        try eventually(15, "n2 is stated full on every node\n\(c.dumpLogs())") {
            c.nodes.allSatisfy { $0.peers()["n2"]?["full"] as? Bool == true }
        }
        #expect(c.nodes[0].peers()["n3"]?["full"] as? Bool == false)
        let f = c.root.sub("model.bin")
        try writePseudoRandomFile(f, size: 200_000, seed: 41)
        let id = try c.nodes[0].put(f, name: "model.bin")
        try eventually(20, "n3 fetches it\n\(c.dumpLogs())") { c.nodes[2].holdsComplete(id) }
        Thread.sleep(forTimeInterval: 2)
        #expect(!c.nodes[1].holdsComplete(id), "a full node accepts no new replicas")
        let st = try #require(c.nodes[1].nodeStatus()?["placement"] as? [String: Any])
        #expect(st["full"] as? Bool == true && st["configured"] as? Bool == false && st["max_disk_usage_percent"] as? Int == 1, "\(st)")
        #expect(st["skipped_full"] as? Int == 1, "\(st)")
        #expect(c.nodes[0].nodeStatus()?["placement"] == nil, "no placement block without placement or a cap")
    }
}
