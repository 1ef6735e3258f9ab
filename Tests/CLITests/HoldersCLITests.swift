import Foundation
import TestSupport
import Testing

extension TestNode {
    /// `ls --json` (or `ls --versions --json`) holders of content `id`, as node ids; nil when
    /// the item is not listed.
    func holders(of id: String, versions: Bool = false) -> Set<String>? {
        let args = ["ls", "--data", dataDir, "--json"] + (versions ? ["--versions"] : [])
        guard let r = try? Meshnode.run(args, timeoutSeconds: 10), r.status == 0,
              let rows = (try? parseJSON(r.stdout)) as? [[String: Any]],
              let row = rows.first(where: { $0["id"] as? String == id }) else { return nil }
        return Set(row["holders"] as? [String] ?? [])
    }

    /// Content ids `ls --json` lists complete (one `ls` for all; empty when it fails).
    func completeContents() -> Set<String> {
        guard let r = try? Meshnode.run(["ls", "--data", dataDir, "--json"], timeoutSeconds: 10), r.status == 0,
              let rows = (try? parseJSON(r.stdout)) as? [[String: Any]] else { return [] }
        return Set(rows.filter { $0["complete"] as? Bool == true }.compactMap { $0["id"] as? String })
    }
}

/// Holder records and node facts (PROTOCOL §4.6, §4.7) between real `meshnode run` processes.
@Suite(.serialized, .ownThread()) struct HoldersCLITests {
    /// Three nodes with their own roles: n1 `roles: [training, storage]`, n2 `role: selfplay`,
    /// n3 ephemeral; the cluster-wide lists exclude `n3*` and group n1 and n2 on one NFS.
    static func cluster() throws -> TestCluster {
        let c = try TestCluster(size: 3)
        let shared = """
            exclude_from_sync: ["n3*", mac-studio]
            nfs_groups: [[n2, n1]]
            """
        let own = ["roles: [training, storage]", "role: selfplay", "role: training\nephemeral: true"]
        for (i, n) in c.nodes.enumerated() {
            try c.writeConfig(trusted: c.nodes.map(\.id), extra: shared + "\n" + own[i], to: c.root.sub("\(n.name).yaml"))
        }
        try c.nodes[0].start(config: c.root.sub("n1.yaml"))
        for n in c.nodes.dropFirst() { try n.start(config: c.root.sub("\(n.name).yaml"), join: [c.nodes[0].address]) }
        try eventually(30, "3 alive") { c.allSeeAlive(3) }
        return c
    }

    @Test(.ownThread(timeLimit: .minutes(2)))
    func anItemFetchedByEveryNodeListsExactlyItsThreeHoldersOnEveryNodeAndDroppedCopiesLeaveTheList() throws {
        let c = try Self.cluster()
        let f = c.root.sub("games.db")
        try writePseudoRandomFile(f, size: 300_000, seed: 11)
        let id = try c.nodes[0].put(f, name: "games.db")
        let everyone = Set(c.nodes.map(\.id))
        // Right after the put, the origin's put is its holder record: every node lists n1.
        try eventually(10, "the origin listed as holder everywhere") {
            c.nodes.allSatisfy { $0.holders(of: id)?.contains(c.nodes[0].id) == true }
        }
        try eventually(20, "all three holders listed on every node\n\(c.dumpLogs())") {
            c.nodes.allSatisfy { $0.holders(of: id) == everyone }
        }
        for n in c.nodes { #expect(n.holdsComplete(id)) }
        // Deleted everywhere and collected everywhere: each node records the drop, and every
        // node's list of holders empties (the deleted version is still listed by --versions).
        let rm = try Meshnode.run(["rm", "games.db", "--data", c.nodes[1].dataDir])
        #expect(rm.status == 0, "\(rm)")
        try eventually(15, "the name leaves ls on every node") { c.nodes.allSatisfy { !$0.itemNames().contains("games.db") } }
        for n in c.nodes {
            let g = try Meshnode.run(["gc", "--data", n.dataDir], timeoutSeconds: 30)
            #expect(g.status == 0, "\(g)")
        }
        try eventually(20, "no holder left on any node\n\(c.dumpLogs())") {
            c.nodes.allSatisfy { $0.holders(of: id, versions: true) == [] }
        }
    }

    @Test(.ownThread(timeLimit: .minutes(2)))
    func peersShowsEveryNodesRolesDiskAndFlagsOnEveryNode() throws {
        let c = try Self.cluster()
        try eventually(15, "every node's facts on every node\n\(c.dumpLogs())") {
            c.nodes.allSatisfy { n in
                let p = n.peers()
                return p.count == 3 && p.values.allSatisfy { ($0["disk_total_bytes"] as? Int ?? 0) > 0 }
            }
        }
        for n in c.nodes {
            let p = n.peers()
            for row in p.values {
                let total = try #require(row["disk_total_bytes"] as? Int)
                let used = try #require(row["disk_used_bytes"] as? Int)
                let free = try #require(row["disk_free_bytes"] as? Int)
                #expect(used > 0 && used <= total && free <= total, "\(row)")
            }
            #expect(p["n1"]?["roles"] as? [String] == ["training", "storage"])
            #expect(p["n2"]?["roles"] as? [String] == ["selfplay"])
            #expect(p["n3"]?["roles"] as? [String] == ["training"])
            #expect(p["n1"]?["nfs_group"] as? String == "n1", "the group is named by its smallest member")
            #expect(p["n2"]?["nfs_group"] as? String == "n1")
            #expect(p["n3"]?["nfs_group"] as? String == "")
            #expect(p["n3"]?["ephemeral"] as? Bool == true)
            #expect(p["n1"]?["ephemeral"] as? Bool == false)
            #expect(p["n3"]?["excluded"] as? Bool == true, "n3 matches exclude_from_sync's n3*")
            #expect(p["n2"]?["excluded"] as? Bool == false)
        }
        let text = try Meshnode.run(["peers", "--data", c.nodes[2].dataDir])
        #expect(text.status == 0)
        #expect(text.stdout.contains("training,storage") && text.stdout.contains("ephemeral excluded") && text.stdout.contains("nfs:n1"),
                "\(text.stdout)")
    }

    /// The observation: after a partition healed, every host held every item, yet some
    /// listed only part of the holders. With replicated records, every host lists all of them.
    @Test(.ownThread(timeLimit: .minutes(3)), .enabled(if: Partition.isAvailable, "needs root and nftables (installed by .ci/run)"))
    func afterAPartitionHealsEveryNodeListsEveryHolderOfEveryItem() throws {
        let c = try TestCluster(size: 5)
        try c.startAll()
        try eventually(30, "5 alive") { c.allSeeAlive(5) }
        let left = Array(c.nodes[0..<2]), right = Array(c.nodes[2..<5])
        let cut = try Partition(left.map(\.ip), right.map(\.ip))
        defer { cut.heal() }
        try eventually(30, "each side marks the other down\n\(c.dumpLogs())") {
            left.allSatisfy { n in right.allSatisfy { n.states()[$0.name] != "alive" } }
        }
        let f1 = c.root.sub("left.bin"), f2 = c.root.sub("right.bin")
        try writePseudoRandomFile(f1, size: 100_000, seed: 21)
        try writePseudoRandomFile(f2, size: 100_000, seed: 22)
        let id1 = try left[0].put(f1, name: "left.bin")
        let id2 = try right[0].put(f2, name: "right.bin")
        try eventually(20, "each side holds its own item") {
            left.allSatisfy { $0.holdsComplete(id1) } && right.allSatisfy { $0.holdsComplete(id2) }
        }
        cut.heal()
        try eventually(40, "views converge after the heal") { c.allSeeAlive(5) }
        let everyone = Set(c.nodes.map(\.id))
        try eventually(40, "every node holds both items") { c.nodes.allSatisfy { $0.holdsComplete(id1) && $0.holdsComplete(id2) } }
        try eventually(20, "every node lists all five holders of both items\n\(c.dumpLogs())") {
            c.nodes.allSatisfy { $0.holders(of: id1) == everyone && $0.holders(of: id2) == everyone }
        }
    }
}
