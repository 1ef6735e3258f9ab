import Foundation
import TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A host that comes back on another address (a spot instance on a new IP, a daemon moved to
/// another port) rejoins at once: real `meshnode run` processes, killed with SIGKILL and
/// started again on the same data dir with another `--listen`.
@Suite(.serialized, .ownThread()) struct RestartElsewhereTests {
    /// Both nodes see each other alive, `moved` at its current address, within `seconds`.
    func expectBothAlive(_ a: TestNode, _ moved: TestNode, within seconds: Double, _ what: String, _ c: TestCluster) throws {
        let start = Date()
        try eventually(seconds, "\(what): both alive, \(moved.name) at \(moved.address)\n\(c.dumpLogs())") {
            let there = a.peers()[moved.name]
            let back = moved.peers()[a.name]
            return there?["state"] as? String == "alive" && there?["address"] as? String == moved.address
                && back?["state"] as? String == "alive" && back?["last_heard_ms_ago"] is Int
        }
        print("\(what): both views alive \(String(format: "%.1f", Date().timeIntervalSince(start))) s after the restart")
    }

    @Test(.ownThread(timeLimit: .minutes(2)))
    func aNodeRestartedOnANewPortAndThenOnANewHostAddressIsAliveInBothViewsWithinTenSeconds() throws {
        let c = try TestCluster(size: 2)
        try c.startAll()
        try eventually(30, "2 alive\n\(c.dumpLogs())") { c.allSeeAlive(2) }
        let (a, b) = (c.nodes[0], c.nodes[1])

        // At once on a new port, from its persisted member list alone (no --join): `a` still
        // has it alive at the old address.
        b.kill9()
        b.move(port: b.port + 1)
        try b.start(config: c.configPath)
        try expectBothAlive(a, b, within: 10, "new port", c)
        // `a` fetches from it at its new address (its own node-to-address map followed the move).
        let f1 = c.root.sub("after-move.bin")
        try writePseudoRandomFile(f1, size: 300_000, seed: 21)
        let id1 = try b.put(f1, name: "after-move.bin")
        try eventually(20, "\(a.name) fetches the item from \(b.name)'s new port\n\(c.dumpLogs())") { a.holdsComplete(id1) }

        // Once `a` has declared it dead, on another loopback address, joining through `a`.
        b.kill9()
        try eventually(30, "\(a.name) marks \(b.name) dead\n\(c.dumpLogs())") { a.states()[b.name] == "dead" }
        b.move(ip: "\(c.subnet).3")
        try b.start(config: c.configPath, join: [a.address])
        try expectBothAlive(a, b, within: 10, "new address", c)
        let f2 = c.root.sub("after-second-move.bin")
        try writePseudoRandomFile(f2, size: 300_000, seed: 22)
        let id2 = try b.put(f2, name: "after-second-move.bin")
        try eventually(20, "\(a.name) fetches the item from \(b.name)'s new address\n\(c.dumpLogs())") { a.holdsComplete(id2) }
        #expect((a.incarnation(of: b.name) ?? 0) >= 3)
    }
}
