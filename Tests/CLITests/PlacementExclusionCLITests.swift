import Foundation
import TestSupport
import Testing

/// Placement with roles and `exclude_from_sync` between six real `meshnode run` processes
/// (docs/SYNC.md, "Placement"): each item lands on exactly its targets, every node lists the
/// same holders, and the excluded node never stores a byte of any item.
@Suite(.serialized, .ownThread()) struct PlacementExclusionCLITests {
    /// Bytes of the files under `dataDir`/chunks and `dataDir`/tmp (chunks being received).
    static func chunkFileBytes(_ dataDir: String) -> Int {
        var total = 0
        for sub in ["chunks", "tmp"] {
            let root = dataDir + "/" + sub
            guard let e = FileManager.default.enumerator(atPath: root) else { continue }
            for case let rel as String in e {
                let a = try? FileManager.default.attributesOfItem(atPath: root + "/" + rel)
                if a?[.type] as? FileAttributeType == .typeRegular { total += (a?[.size] as? Int) ?? 0 }
            }
        }
        return total
    }

    @Test(.ownThread(timeLimit: .minutes(3)))
    func itemsLandOnExactlyTheirTargetsEveryNodeListsTheSameHoldersAndTheExcludedNodeStoresNothing() throws {
        // n1, n2 training; n3, n4, n5 storage; n6 states storage but is excluded from sync.
        // Games go to 2 storage nodes; models to every eligible node (copies: all).
        let c = try TestCluster(size: 6)
        let shared = """
            placement: {game: {roles: [storage], min_copies: 2, max_copies: 2}, model: {roles: [training, storage], copies: all}}
            exclude_from_sync: [n6]
            """
        try c.startWithRoles(["training", "training", "storage", "storage", "storage", "storage"], shared: shared)
        try eventually(20, "every node knows n6 is excluded\n\(c.dumpLogs())") {
            c.nodes.allSatisfy { $0.peers()["n6"]?["excluded"] as? Bool == true }
        }
        let (n1, n2, excluded) = (c.nodes[0], c.nodes[1], c.nodes[5])
        let storage = Array(c.nodes[2...4])
        func put(_ name: String, type: String, seed: UInt64, on node: TestNode) throws -> String {
            let f = c.root.sub(name)
            try writePseudoRandomFile(f, size: 400_000, seed: seed)
            let r = try Meshnode.run(["put", f, "--type", type, "--name", name, "--data", node.dataDir])
            guard r.status == 0 else { throw TestFailure("put \(name) failed: \(r)") }
            return r.lastLine
        }
        // Three games put on a training node, one on a storage node; one model.
        let games = try [put("g1.db", type: "game", seed: 81, on: n1), put("g2.db", type: "game", seed: 82, on: n2),
                         put("g3.db", type: "game", seed: 83, on: n1), put("g4.db", type: "game", seed: 84, on: storage[0])]
        let model = try put("m.onnx", type: "model", seed: 85, on: n2)
        let ids = Set(c.nodes.map(\.id))

        // Each game: exactly two storage nodes hold it complete, the origin lets its copy go once
        // they do (a training node, or a storage node that is not a target), and every node lists
        // exactly those two as its holders.
        for g in games {
            try eventually(60, "game \(g.prefix(8)) on exactly two storage nodes, listed so everywhere\n\(c.dumpLogs())") {
                let holding = Set(storage.filter { $0.holdsComplete(g) }.map(\.id))
                return holding.count == 2 && !n1.holdsComplete(g) && !n2.holdsComplete(g)
                    && c.nodes.allSatisfy { $0.holders(of: g) == holding }
            }
        }
        try eventually(40, "the model on the five eligible nodes, listed so everywhere\n\(c.dumpLogs())") {
            c.nodes.prefix(5).allSatisfy { $0.holdsComplete(model) }
                && c.nodes.allSatisfy { $0.holders(of: model) == ids.subtracting([excluded.id]) }
        }
        // Settled for a few anti-entropy rounds: still exactly so, and the excluded node holds nothing.
        Thread.sleep(forTimeInterval: 4)
        for g in games {
            let holding = Set(storage.filter { $0.holdsComplete(g) }.map(\.id))
            #expect(holding.count == 2 && !n1.holdsComplete(g) && !n2.holdsComplete(g), "game \(g.prefix(8)) moved after settling")
            #expect(c.nodes.allSatisfy { $0.holders(of: g) == holding }, "\(c.nodes.map { $0.holders(of: g) ?? [] })")
        }
        for id in games + [model] {
            #expect(!excluded.holdsComplete(id))
            #expect(c.nodes.allSatisfy { $0.holders(of: id)?.contains(excluded.id) == false })
        }
        #expect(Self.chunkFileBytes(excluded.dataDir) == 0, "chunk bytes in the excluded node's data dir")
        #expect(excluded.itemNames() == ["g1.db", "g2.db", "g3.db", "g4.db", "m.onnx"], "the excluded node still lists the catalog")
        let st = try #require(excluded.nodeStatus()?["placement"] as? [String: Any])
        #expect(st["not_target"] as? Int == 5, "\(st)")

        // A game holder dies: its place goes to the third storage node, never to the excluded one,
        // within failure detection + 10 s of the kill (FailureDetection).
        let g = games[0]
        let victim = try #require(storage.first { $0.holdsComplete(g) })
        let third = try #require(storage.first { !$0.holdsComplete(g) })
        let bound = FailureDetection.boundSeconds(nodes: 6, probeIntervalSeconds: FailureDetection.testClusterProbeIntervalSeconds)
            + 10 + FailureDetection.pollSlackSeconds
        let killedAt = Date()
        victim.kill9()
        try eventually(bound, "the third storage node holds the game within \(bound) s of the kill\n\(c.dumpLogs())") {
            third.holdsComplete(g)
        }
        let tookSeconds = Date().timeIntervalSince(killedAt)
        print("placement (6 nodes): new holder complete \(tookSeconds) s after the kill (bound \(bound) s)")
        #expect(tookSeconds <= bound)
        let survivors = c.nodes.filter { $0 !== victim }
        try eventually(20, "every survivor lists the new holder\n\(c.dumpLogs())") {
            survivors.allSatisfy { $0.holders(of: g)?.contains(third.id) == true }
        }
        Thread.sleep(forTimeInterval: 2)
        #expect(!excluded.holdsComplete(g) && Self.chunkFileBytes(excluded.dataDir) == 0, "the excluded node took nothing")
        #expect(survivors.allSatisfy { $0.holders(of: g)?.contains(excluded.id) == false })
    }
}
