import Foundation
import TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Five hosts between which only TCP to port 22 passes, partitioned into two sides and healed:
/// afterwards every host holds every item and lists all five holders of each (the issue's
/// report: two hosts listed only 4 of 5 holders after a heal).
@Suite(.serialized, .ownThread()) struct SSHOnlyPartitionTests {
    @Test(.ownThread(timeLimit: .minutes(4)), .enabled(if: NetnsLab.isAvailable, "needs root, iproute2, nftables and openssh-server (installed by .ci/run)"))
    func afterAPartitionOfFiveSSHOnlyHostsHealsEveryHostListsAllFiveHoldersOfEveryItem() throws {
        let count = 5
        let lab = try NetnsLab(count: count)
        defer { lab.heal() }
        let port = 7946
        var nodes: [TestNode] = []
        for i in 0..<count { nodes.append(try TestNode(name: "h\(i)", root: lab.dir, ip: lab.ips[i], port: port)) }
        var children: [ChildProcess] = []
        defer { for c in children { c.kill(SIGKILL); _ = c.wait(timeoutSeconds: 5) } }
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
        func logs() -> String {
            children.enumerated().map { "---- h\($0.offset) ----\n" + $0.element.result.stderr.split(separator: "\n").suffix(15).joined(separator: "\n") }
                .joined(separator: "\n")
        }
        func allAlive(_ among: [TestNode]) -> Bool {
            among.allSatisfy { n in let s = n.states(); return s.count == count && s.values.allSatisfy { $0 == "alive" } }
        }
        try eventually(90, "all five alive in every view, through SSH only\n\(logs())") { allAlive(nodes) }
        var ids: [String] = []
        func put(on i: Int, _ name: String, seed: UInt64) throws {
            let f = lab.dir.sub(name)
            try writePseudoRandomFile(f, size: 200_000, seed: seed)
            ids.append(try nodes[i].put(f, name: name))
        }
        // Items put on three hosts, replicated everywhere.
        try put(on: 0, "a.bin", seed: 101)
        try put(on: 2, "b.bin", seed: 102)
        try put(on: 4, "c.bin", seed: 103)
        try eventually(60, "every host holds a, b and c\n\(logs())") { nodes.allSatisfy { n in ids.allSatisfy { n.holdsComplete($0) } } }

        // Partition {h0, h1} | {h2, h3, h4}; each side puts more.
        let left = [0, 1], right = [2, 3, 4]
        try lab.partition(left, right)
        try eventually(60, "each side marks the other not alive\n\(logs())") {
            left.allSatisfy { l in right.allSatisfy { r in nodes[l].states()[nodes[r].name] != "alive" && nodes[r].states()[nodes[l].name] != "alive" } }
        }
        let before = ids.count
        try put(on: 1, "d.bin", seed: 104)
        try put(on: 0, "e.bin", seed: 105)
        try put(on: 3, "f.bin", seed: 106)
        try put(on: 4, "g.bin", seed: 107)
        let leftItems = [ids[before], ids[before + 1]], rightItems = [ids[before + 2], ids[before + 3]]
        try eventually(60, "each side holds its own new items\n\(logs())") {
            left.allSatisfy { i in leftItems.allSatisfy { nodes[i].holdsComplete($0) } }
                && right.allSatisfy { i in rightItems.allSatisfy { nodes[i].holdsComplete($0) } }
        }

        lab.heal()
        try eventually(90, "all five alive in every view after the heal\n\(logs())") { allAlive(nodes) }
        try eventually(60, "every host holds every item\n\(logs())") { nodes.allSatisfy { n in ids.allSatisfy { n.holdsComplete($0) } } }
        let everyone = Set(nodes.map(\.id))
        func missing() -> String {
            nodes.map { n in "\(n.name): " + ids.map { id in "\(id.prefix(6))=\(n.holders(of: id)?.count ?? -1)" }.joined(separator: " ") }
                .joined(separator: "\n")
        }
        try eventually(60, "every host lists all five holders of every item\n\(missing())\n\(logs())") {
            nodes.allSatisfy { n in ids.allSatisfy { n.holders(of: $0) == everyone } }
        }
    }
}
