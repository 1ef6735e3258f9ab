import Foundation
import TestSupport
import Testing

/// `meshnode_items_under_min_copies` and `status --json`'s `node.placement.under_min_copies`
/// between real processes: 0 while placement is met, 1 once a holder dies and no other
/// eligible node is left to take its place, 0 again when it comes back.
@Suite(.serialized, .ownThread()) struct UnderMinCopiesCLITests {
    @Test(.ownThread(timeLimit: .minutes(3)))
    func anItemReadsAsUnderMinCopiesOnEveryNodeWhileOneOfItsTwoStorageHoldersIsDead() throws {
        // n1 training; n2, n3 storage; games need 2 copies on storage nodes.
        let c = try TestCluster(size: 3)
        let n1 = c.nodes[0], n3 = c.nodes[2]
        try c.startWithRoles(["training", "storage", "storage"], shared: "placement: {game: {roles: [storage], min_copies: 2, max_copies: 2}}",
                             firstExtra: ["--metrics-listen", "\(n1.ip):9946"])
        func under(_ n: TestNode) -> Int? { (n.nodeStatus()?["placement"] as? [String: Any])?["under_min_copies"] as? Int }
        func gauge() -> Double? {
            httpGet(host: n1.ip, port: 9946, path: "/metrics")?.body.split(separator: "\n")
                .first { $0.hasPrefix("meshnode_items_under_min_copies ") }
                .flatMap { $0.split(separator: " ").last }.flatMap { Double($0) }
        }
        let f = c.root.sub("games.db")
        try writePseudoRandomFile(f, size: 200_000, seed: 41)
        let put = try Meshnode.run(["put", f, "--type", "game", "--name", "games.db", "--data", n1.dataDir])
        try #require(put.status == 0, "\(put)")
        let id = put.lastLine
        try eventually(20, "both storage nodes hold the game\n\(c.dumpLogs())") {
            c.nodes.dropFirst().allSatisfy { $0.holdsComplete(id) } && n1.holders(of: id)?.count == 3
        }
        try eventually(10, "placement met: 0 everywhere") { c.nodes.allSatisfy { under($0) == 0 } }
        try eventually(10, "the gauge reads 0") { gauge() == 0 }

        n3.kill9()
        try eventually(30, "n3 is declared dead\n\(c.dumpLogs())") {
            c.nodes.dropLast().allSatisfy { let s = $0.states()[n3.name]; return s == "dead" || s == nil }
        }
        try eventually(10, "one item under min_copies on both survivors") { c.nodes.dropLast().allSatisfy { under($0) == 1 } }
        try eventually(10, "the gauge reads 1") { gauge() == 1 }

        try n3.start(config: c.root.sub("n3.yaml"), join: [n1.address])
        try eventually(30, "n3 back, placement met again: 0 everywhere\n\(c.dumpLogs())") { c.nodes.allSatisfy { under($0) == 0 } }
    }
}
