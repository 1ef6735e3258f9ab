import Foundation
import Gossip
import Sync
import TestSupport
import Testing

/// Dropping and eviction between real `meshnode run` processes (docs/SYNC.md, "Dropping"): a
/// node that is not a target lets its copy go once placement is met, and never the last copy.
@Suite(.serialized, .ownThread()) struct EvictionCLITests {
    /// Writes each node's config (the rule for games, its roles) and starts the first `start` nodes.
    static func placement(_ c: TestCluster, rule: String, roles: [String], start: Int? = nil) throws {
        let running = Array(c.nodes.prefix(start ?? c.nodes.count))
        for (i, n) in c.nodes.enumerated() {
            try c.writeConfig(trusted: c.nodes.map(\.id), extra: "placement: {game: \(rule)}\nroles: [\(roles[i])]",
                              to: c.root.sub("\(n.name).yaml"))
        }
        try c.nodes[0].start(config: c.root.sub("n1.yaml"))
        for n in running.dropFirst() { try n.start(config: c.root.sub("\(n.name).yaml"), join: [c.nodes[0].address]) }
        try eventually(30, "\(running.count) alive") { c.allSeeAlive(running.count, among: running) }
        try eventually(20, "every node's facts on every node\n\(c.dumpLogs())") {
            running.allSatisfy { n in
                let p = n.peers()
                return p.count == running.count && p.values.allSatisfy { ($0["roles"] as? [String])?.isEmpty == false }
            }
        }
    }

    /// Whether `node` is among the two best-ranked of `storage` for content `id` (docs/SYNC.md,
    /// "Rank"; the nodes share one disk, so their weights are equal).
    static func ranksAmongTopTwo(_ node: TestNode, of storage: [TestNode], for id: String) -> Bool {
        guard let content = ContentID(hex: id) else { return false }
        let score = { (n: TestNode) in NodeID(n.id).map { Placement.score(content, $0, weightBytes: 1 << 40) } ?? 0 }
        return storage.filter { score($0) > score(node) }.count < 2
    }

    @Test(.ownThread(timeLimit: .minutes(3)))
    func whenANewStorageNodeJoinsTheDisplacedHoldersAndTheOriginDropTheirCopiesAndEveryNodeListsTheTargets() throws {
        // n1 training puts; n2, n3 storage at first, n4 storage joins later; games go to 2 storage nodes.
        let c = try TestCluster(size: 4)
        try Self.placement(c, rule: "{roles: [storage], min_copies: 2, max_copies: 2}",
                           roles: ["training", "storage", "storage", "storage"], start: 3)
        let (n1, n2, n3, n4) = (c.nodes[0], c.nodes[1], c.nodes[2], c.nodes[3])
        // At least 8 games, and more until one of them will move to n4 (with random node ids, n4
        // ranks last of the three storage nodes for all of 8 games once in 3^8 runs).
        var ids = [String]()
        var i = 0
        while ids.count < 8 || !ids.contains(where: { Self.ranksAmongTopTwo(n4, of: [n2, n3, n4], for: $0) }) {
            let f = c.root.sub("games-\(i).bin")
            try writePseudoRandomFile(f, size: 100_000, seed: UInt64(60 + i))
            let put = try Meshnode.run(["put", f, "--type", "game", "--name", "games-\(i).bin", "--data", c.nodes[0].dataDir])
            #expect(put.status == 0, "\(put)")
            ids.append(put.lastLine)
            i += 1
        }
        try eventually(60, "n2 and n3 hold every game and n1 dropped its copies\n\(c.dumpLogs())") {
            ids.allSatisfy { n2.holdsComplete($0) && n3.holdsComplete($0) && !n1.holdsComplete($0) }
        }
        let origin = try #require(n1.nodeStatus()?["placement"] as? [String: Any])
        #expect(origin["dropped_not_target"] as? Int == ids.count && origin["evicted"] as? Int == 0, "\(origin)")
        // n4 joins: of each game's two targets one may now be n4, and the displaced holder drops.
        try n4.start(config: c.root.sub("n4.yaml"), join: [n1.address])
        try eventually(30, "4 alive") { c.allSeeAlive(4) }
        try eventually(120, "each game on exactly two storage nodes, listed so on every node\n\(c.dumpLogs())") {
            ids.allSatisfy { id in
                let holding = [n2, n3, n4].filter { $0.holdsComplete(id) }
                return holding.count == 2 && !n1.holdsComplete(id)
                    && c.nodes.allSatisfy { $0.holders(of: id) == Set(holding.map(\.id)) }
            }
        }
        let onN4 = ids.filter { n4.holdsComplete($0) }.count
        #expect(onN4 > 0, "n4 ranks among the two targets of none of \(ids.count) games")
        let dropped = [n2, n3].map { ($0.nodeStatus()?["placement"] as? [String: Any])?["dropped_not_target"] as? Int ?? 0 }
        #expect(dropped.reduce(0, +) == onN4, "\(dropped), \(onN4) games moved to n4")
        // Settled: nothing is fetched again or dropped further.
        Thread.sleep(forTimeInterval: 3)
        #expect(ids.allSatisfy { id in [n2, n3, n4].filter { $0.holdsComplete(id) }.count == 2 && !n1.holdsComplete(id) })
    }

    @Test(.ownThread(timeLimit: .minutes(3)))
    func aSoleHolderThatIsNoLongerATargetKeepsTheLastCopy() throws {
        // n2 is a storage node at first: it fetches the game and the origin n1 drops its copy.
        let c = try TestCluster(size: 2)
        try Self.placement(c, rule: "{roles: [storage], min_copies: 1}", roles: ["training", "storage"])
        let f = c.root.sub("games.bin")
        try writePseudoRandomFile(f, size: 200_000, seed: 52)
        let put = try Meshnode.run(["put", f, "--type", "game", "--name", "games.bin", "--data", c.nodes[0].dataDir])
        #expect(put.status == 0, "\(put)")
        let id = put.lastLine
        let (n1, n2) = (c.nodes[0], c.nodes[1])
        try eventually(60, "n2 holds it and n1 dropped its copy\n\(c.dumpLogs())") {
            n2.holdsComplete(id) && !n1.holdsComplete(id) && n1.holders(of: id) == [n2.id]
        }
        // n2 comes back as a training node: no node is a target now, and n2 holds the last copy.
        #expect(n2.terminate() == 0)
        try c.writeConfig(trusted: c.nodes.map(\.id), extra: "placement: {game: {roles: [storage], min_copies: 1}}\nroles: [training]",
                          to: c.root.sub("n2.yaml"))
        try n2.start(config: c.root.sub("n2.yaml"), join: [n1.address])
        try eventually(30, "2 alive") { c.allSeeAlive(2) }
        try eventually(20, "n2's new roles on n1") { (n1.peers()["n2"]?["roles"] as? [String]) == ["training"] }
        let until = Date().addingTimeInterval(30)
        while Date() < until {
            #expect(n2.holdsComplete(id), "the last copy went\n\(c.dumpLogs())")
            Thread.sleep(forTimeInterval: 1)
        }
        #expect(!n1.holdsComplete(id), "not a target: not fetched again")
        #expect(c.nodes.allSatisfy { $0.holders(of: id) == [n2.id] })
        let st = try #require(n2.nodeStatus()?["placement"] as? [String: Any])
        #expect(st["dropped_not_target"] as? Int == 0 && st["release_pending"] as? Int == 0, "\(st)")
    }

    /// Runs `sh -c command`; its exit status.
    @discardableResult
    static func sh(_ command: String) throws -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", command]
        try p.run()
        p.waitUntilExit()
        return p.terminationStatus
    }

    @Test(.ownThread(timeLimit: .minutes(3)))
    func aNodeWhoseDataDirFillsEvictsOnlyWhatHasACopyElsewhereAndFetchesNoneOfItAgain() throws {
        // n3's data dir is a 64 MiB tmpfs with max_disk_usage 50 %; n2 (capped at 1 %) fetches nothing.
        let c = try TestCluster(size: 3)
        let (n1, n2, n3) = (c.nodes[0], c.nodes[1], c.nodes[2])
        let aside = n3.dataDir + ".aside"
        try #require(try Self.sh("mv '\(n3.dataDir)' '\(aside)' && mkdir '\(n3.dataDir)' && mount -t tmpfs -o size=64m tmpfs '\(n3.dataDir)' && cp -a '\(aside)'/. '\(n3.dataDir)'/") == 0,
                     "mounting a tmpfs needs root")
        defer {
            n3.kill9()
            try? Self.sh("umount '\(n3.dataDir)'")
        }
        try c.writeConfig(trusted: c.nodes.map(\.id), extra: "max_disk_usage: 1%", to: c.root.sub("n2.yaml"))
        try c.writeConfig(trusted: c.nodes.map(\.id), extra: "max_disk_usage: 50%", to: c.root.sub("n3.yaml"))
        try n1.start(config: c.configPath)
        try n2.start(config: c.root.sub("n2.yaml"), join: [n1.address])
        try n3.start(config: c.root.sub("n3.yaml"), join: [n1.address])
        try eventually(30, "3 alive") { c.allSeeAlive(3) }
        try eventually(15, "n2 is stated full\n\(c.dumpLogs())") { n1.peers()["n2"]?["full"] as? Bool == true }
        // 8 items of 5 MB put on n1 (40 MB > n3's 32 MB cap): n3 fetches what fits under its cap.
        var ids = [String]()
        for i in 0..<8 {
            let f = c.root.sub("m\(i).bin")
            try writePseudoRandomFile(f, size: 5_000_000, seed: UInt64(71 + i))
            ids.append(try n1.put(f, name: "m\(i).bin"))
        }
        // Every content n3 is seen holding complete, polled throughout (an evicted one is one seen
        // held and then no longer held).
        var everHeld = Set<String>()
        func heldNow() -> Set<String> {
            let held = n3.completeContents().intersection(ids)
            everHeld.formUnion(held)
            return held
        }
        func placement() -> [String: Any] { n3.nodeStatus()?["placement"] as? [String: Any] ?? [:] }
        try eventually(60, "n3 holds some and starts no more fetches\n\(c.dumpLogs())") {
            heldNow().count >= 2 && (placement()["skipped_full"] as? Int ?? 0) > 0
        }
        // Fetching never took it over its cap (a little slack for SQLite's own files).
        func usedBytes() throws -> Int {
            var s = statvfs()
            guard statvfs(n3.dataDir, &s) == 0 else { throw TestFailure("statvfs \(n3.dataDir)") }
            return Int(s.f_blocks - s.f_bfree) * Int(s.f_frsize)
        }
        let used = try usedBytes()
        #expect(used <= 32 << 20 + 2 << 20, "n3 went over its cap by fetching: \(used) bytes used")
        // Something else fills its disk: now it is over the cap, and evicts.
        try #require(try Self.sh("dd if=/dev/zero of='\(n3.dataDir)/filler' bs=1M count=16 status=none") == 0)
        try eventually(30, "n3 is stated full\n\(c.dumpLogs())") {
            _ = heldNow()
            return placement()["full"] as? Bool == true || (placement()["evicted"] as? Int ?? 0) > 0
        }
        try eventually(90, "n3 evicts\n\(c.dumpLogs())") {
            _ = heldNow()
            return (placement()["evicted"] as? Int ?? 0) > 0
        }
        let settle = Date().addingTimeInterval(3)
        while Date() < settle { _ = heldNow(); Thread.sleep(forTimeInterval: 0.3) }
        let st = placement()
        let held = heldNow()
        let evicted = st["evicted"] as? Int ?? 0
        #expect(evicted > 0 && (st["evicted_bytes"] as? Int ?? 0) >= 5_000_000, "\(st)")
        #expect(st["dropped_not_target"] as? Int == 0, "no placement: nothing dropped for not being a target")
        // Every item still has its copy on n1; what n3 let go of, n1 holds.
        for id in ids { #expect(n1.holdsComplete(id)) }
        #expect(held.count + evicted <= ids.count, "\(held.count) held, \(evicted) evicted")
        #expect(!n2.holdsComplete(ids[0]))
        // Nothing evicted is fetched again, though n3 may be under its cap now. (An item it never
        // held may still be fetched when an eviction takes it under its cap: that is no refetch.)
        let gone = everHeld.subtracting(held)
        let until = Date().addingTimeInterval(12)
        while Date() < until {
            let now = heldNow()
            #expect(now.isDisjoint(with: gone), "evicted and fetched again: \(now.intersection(gone).map { $0.prefix(8) })")
            Thread.sleep(forTimeInterval: 0.5)
        }
    }
}
