import Foundation
import TestSupport
import Testing
@testable import Gossip
@testable import Store

/// A trusted insider that equivocates: it signs two different entries with one sequence
/// number and sends both to a real `meshnode run` (docs/PROTOCOL.md §4: both are kept as
/// evidence and reported).
@Suite(.serialized, .ownThread()) struct ForkEvidenceCLITests {
    final class Insider {
        let identity = NodeIdentity.generate()
        var counter: UInt64 = 0

        func datagram(_ m: Message) -> [UInt8] {
            counter += 1
            return Envelope(sender: identity.nodeID, incarnation: 1, counter: counter, message: m).encode(signer: identity)
        }

        var join: [UInt8] {
            datagram(.join(updates: [MemberUpdate(state: .alive, node: identity.nodeID, incarnation: 1,
                                                  address: PeerAddress(host: "127.0.0.1", port: 9), name: "insider")]))
        }

        func entry(_ name: String) -> ManifestEntry {
            ManifestEntry(origin: identity.nodeID, sequence: 1, contentID: ContentID(digest: Blake2b256.hash(Array(name.utf8))),
                          sizeBytes: 5000, chunkSizeBytes: 65536, type: .game, createdAtMs: WallClock.nowMs(), name: name).signed(by: identity)
        }
    }

    func forks(_ n: TestNode) throws -> [[String: Any]] {
        let r = try Meshnode.run(["ls", "--forks", "--json", "--data", n.dataDir])
        #expect(r.status == 0, "\(r)")
        return try #require(try parseJSON(r.stdout) as? [[String: Any]])
    }

    func storeForks(_ n: TestNode) throws -> Int? {
        let r = try Meshnode.run(["status", "--json", "--data", n.dataDir])
        return (try parseJSON(r.stdout) as? [String: Any])?["forks"] as? Int
    }

    @Test(.ownThread(timeLimit: .minutes(2)))
    func aForkIsCountedOnceListedByLsForksAndStillThereAfterARestart() throws {
        let c = try TestCluster(size: 1)
        let insider = Insider()
        try c.writeConfig(trusted: [c.nodes[0].id, "\(insider.identity.nodeID)"])
        let n = c.nodes[0]
        try n.start(config: c.configPath)
        let held = insider.entry("games-a.db"), other = insider.entry("games-b.db")
        try sendUDP([insider.join], to: n.ip, port: n.port)
        try eventually(10, "the insider admitted\n\(c.dumpLogs())") { n.states()["insider"] == "alive" }
        try sendUDP([insider.datagram(.entries(treePush: false, entries: [held]))], to: n.ip, port: n.port)
        try eventually(10, "the first entry listed") { n.itemNames().contains("games-a.db") }
        try sendUDP([insider.datagram(.entries(treePush: false, entries: [other]))], to: n.ip, port: n.port)
        try eventually(10, "the fork listed\n\(c.dumpLogs())") { (try? forks(n).count) == 1 }
        Thread.sleep(forTimeInterval: 1)

        let f = try #require(try forks(n).first)
        #expect(f["origin"] as? String == "\(insider.identity.nodeID)")
        #expect(f["sequence"] as? Int == 1)
        #expect((f["held"] as? [String: Any])?["name"] as? String == "games-a.db")
        #expect((f["held"] as? [String: Any])?["id"] as? String == "\(held.contentID)")
        #expect((f["other"] as? [String: Any])?["name"] as? String == "games-b.db")
        #expect((f["other"] as? [String: Any])?["id"] as? String == "\(other.contentID)")
        #expect(((f["detected_ms"] as? Int) ?? 0) > 0)
        #expect(try storeForks(n) == 1)
        #expect(n.nodeStatus()?["forks"] as? Int == 1)
        #expect(n.itemNames() == ["games-a.db"])
        #expect(n.logs.contains("fork"))

        // The evidence is the store's: listed without a node, and kept over a restart, where the
        // other entry arriving again is no new fork.
        n.kill9()
        let text = try Meshnode.run(["ls", "--forks", "--data", n.dataDir])
        #expect(text.status == 0 && text.stdout.contains("games-a.db") && text.stdout.contains("games-b.db"), "\(text)")
        try n.start(config: c.configPath)
        try sendUDP([insider.join, insider.datagram(.entries(treePush: false, entries: [other]))], to: n.ip, port: n.port)
        Thread.sleep(forTimeInterval: 1.5)
        #expect(try forks(n).count == 1)
        #expect(try storeForks(n) == 1)
        #expect(n.nodeStatus()?["forks"] as? Int == 0)
    }
}
