import Foundation
import TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Five `meshnode run` hosts in a NetnsLab (only TCP to port 22 passes), joined through h0.
final class SSHOnlyMesh {
    let lab: NetnsLab
    var nodes: [TestNode] = []
    private var children: [ChildProcess] = []
    /// Content ids put so far, in order.
    var ids: [String] = []
    var count: Int { nodes.count }

    init(count: Int, port: Int = 7946) throws {
        lab = try NetnsLab(count: count)
        for i in 0..<count { nodes.append(try TestNode(name: "h\(i)", root: lab.dir, ip: lab.ips[i], port: port)) }
        for i in 0..<count {
            var yaml = "trusted_keys:\n" + nodes.map { "  - \($0.id)\n" }.joined() + "probe_interval: 500ms\nanti_entropy_interval: 3s\nhosts:\n"
            for j in 0..<count where j != i { yaml += "  \(nodes[j].id):\n" + lab.sshHostEntry(j, port: port) + "\n" }
            let cfg = lab.dir.sub("h\(i).yaml")
            try yaml.write(toFile: cfg, atomically: true, encoding: .utf8)
            let join = i == 0 ? [] : ["--join", nodes[0].address]
            children.append(try lab.spawn(in: i, [Meshnode.binaryPath, "run", "--data", nodes[i].dataDir, "--config", cfg,
                                                  "--listen", nodes[i].address, "--log-level", "info"] + join,
                                         environment: Meshnode.defaultEnvironment))
        }
    }

    deinit {
        lab.heal()
        for c in children { c.kill(SIGKILL); _ = c.wait(timeoutSeconds: 5) }
    }

    func logs() -> String {
        children.enumerated().map { "---- h\($0.offset) ----\n" + $0.element.result.stderr.split(separator: "\n").suffix(15).joined(separator: "\n") }
            .joined(separator: "\n")
    }

    /// Every host in `among` sees all hosts alive.
    func allAlive(_ among: [Int]? = nil) -> Bool {
        (among ?? Array(0..<count)).allSatisfy { i in
            let s = nodes[i].states()
            return s.count == count && s.values.allSatisfy { $0 == "alive" }
        }
    }

    /// Each host of `a` sees each of `b` not alive, and the other way round.
    func cutOff(_ a: [Int], _ b: [Int]) -> Bool {
        a.allSatisfy { l in b.allSatisfy { r in nodes[l].states()[nodes[r].name] != "alive" && nodes[r].states()[nodes[l].name] != "alive" } }
    }

    @discardableResult
    func put(on i: Int, _ name: String, sizeBytes: Int = 200_000, seed: UInt64) throws -> String {
        let f = lab.dir.sub(name)
        try writePseudoRandomFile(f, size: sizeBytes, seed: seed)
        let id = try nodes[i].put(f, name: name)
        ids.append(id)
        return id
    }

    /// Every host holds every item complete.
    func everyHostHoldsEverything() -> Bool { nodes.allSatisfy { n in ids.allSatisfy { n.holdsComplete($0) } } }

    /// Every host lists all hosts as the holders of every item.
    func everyHostListsEveryHolder() -> Bool {
        let everyone = Set(nodes.map(\.id))
        return nodes.allSatisfy { n in ids.allSatisfy { n.holders(of: $0) == everyone } }
    }

    /// Per host, each item's number of listed holders (for failure messages).
    func holderCounts() -> String {
        nodes.map { n in "\(n.name): " + ids.map { id in "\(id.prefix(6))=\(n.holders(of: id)?.count ?? -1)" }.joined(separator: " ") }
            .joined(separator: "\n")
    }
}

/// Five hosts between which only TCP to port 22 passes, partitioned into two sides and healed:
/// afterwards every host holds every item and lists all five holders of each (the issue's
/// report: two hosts listed only 4 of 5 holders after a heal).
@Suite(.serialized, .ownThread()) struct SSHOnlyPartitionTests {
    static let enabled = NetnsLab.isAvailable

    @Test(.ownThread(timeLimit: .minutes(4)), .enabled(if: enabled, "needs root, iproute2, nftables and openssh-server (installed by .ci/run)"))
    func afterAPartitionOfFiveSSHOnlyHostsHealsEveryHostListsAllFiveHoldersOfEveryItem() throws {
        let m = try SSHOnlyMesh(count: 5)
        try eventually(90, "all five alive in every view, through SSH only\n\(m.logs())") { m.allAlive() }
        // Items put on three hosts, replicated everywhere.
        try m.put(on: 0, "a.bin", seed: 101)
        try m.put(on: 2, "b.bin", seed: 102)
        try m.put(on: 4, "c.bin", seed: 103)
        try eventually(60, "every host holds a, b and c\n\(m.logs())") { m.everyHostHoldsEverything() }

        // Partition {h0, h1} | {h2, h3, h4}; each side puts more.
        let left = [0, 1], right = [2, 3, 4]
        try m.lab.partition(left, right)
        try eventually(60, "each side marks the other not alive\n\(m.logs())") { m.cutOff(left, right) }
        let leftItems = [try m.put(on: 1, "d.bin", seed: 104), try m.put(on: 0, "e.bin", seed: 105)]
        let rightItems = [try m.put(on: 3, "f.bin", seed: 106), try m.put(on: 4, "g.bin", seed: 107)]
        try eventually(60, "each side holds its own new items\n\(m.logs())") {
            left.allSatisfy { i in leftItems.allSatisfy { m.nodes[i].holdsComplete($0) } }
                && right.allSatisfy { i in rightItems.allSatisfy { m.nodes[i].holdsComplete($0) } }
        }

        m.lab.heal()
        try eventually(90, "all five alive in every view after the heal\n\(m.logs())") { m.allAlive() }
        try eventually(60, "every host holds every item\n\(m.logs())") { m.everyHostHoldsEverything() }
        try eventually(60, "every host lists all five holders of every item\n\(m.holderCounts())\n\(m.logs())") { m.everyHostListsEveryHolder() }
    }

    @Test(.ownThread(timeLimit: .minutes(4)), .enabled(if: enabled, "needs root, iproute2, nftables and openssh-server (installed by .ci/run)"))
    func aPartitionThatCutsTransfersAndHolderRecordsInFlightStillEndsWithEveryHostListingAllFiveHolders() throws {
        let m = try SSHOnlyMesh(count: 5)
        try eventually(90, "all five alive in every view, through SSH only\n\(m.logs())") { m.allAlive() }
        // Items put on both sides just before the cut: transfers, holder records and pushes are
        // under way across it when it falls, and more are put on both sides during it.
        let left = [0, 1], right = [2, 3, 4]
        try m.put(on: 0, "a.bin", sizeBytes: 12 << 20, seed: 111)
        try m.put(on: 3, "b.bin", sizeBytes: 12 << 20, seed: 112)
        try m.put(on: 1, "c.bin", seed: 113)
        try m.lab.partition(left, right)
        try m.put(on: 4, "d.bin", seed: 114)
        try m.put(on: 0, "e.bin", seed: 115)
        try eventually(60, "each side marks the other not alive\n\(m.logs())") { m.cutOff(left, right) }
        try m.put(on: 2, "f.bin", seed: 116)
        try m.put(on: 1, "g.bin", seed: 117)
        Thread.sleep(forTimeInterval: 3)

        m.lab.heal()
        try eventually(90, "all five alive in every view after the heal\n\(m.logs())") { m.allAlive() }
        try eventually(90, "every host holds every item\n\(m.logs())") { m.everyHostHoldsEverything() }
        try eventually(60, "every host lists all five holders of every item\n\(m.holderCounts())\n\(m.logs())") { m.everyHostListsEveryHolder() }
    }
}
