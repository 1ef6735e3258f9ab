import Foundation
import TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Spot nodes with real processes (docs/SYNC.md, "Spot nodes"): push-to-2 of content, the
/// durable outbox across `kill -9`, the final sync on SIGTERM, and a live SQLite database
/// written on an ephemeral node that survives its node's SIGTERM or `kill -9`.
@Suite(.serialized, .ownThread()) struct SpotNodeCLITests {
    /// `status --json`'s `node.spot`.
    static func spot(_ n: TestNode) -> [String: Any]? { n.nodeStatus()?["spot"] as? [String: Any] }
    static func atRisk(_ n: TestNode) -> Int? { spot(n)?["at_risk_items"] as? Int }

    /// A config like the cluster's plus `extra`, written next to it.
    static func config(_ c: TestCluster, _ label: String, _ extra: String) throws -> String {
        let path = c.root.sub("\(label).yaml")
        try c.writeConfig(trusted: c.nodes.map(\.id), extra: extra, to: path)
        return path
    }

    /// An ephemeral selfplay node puts a 10 MB NPZ file that no durable node's role wants: the two
    /// durable nodes take a copy at once anyway (push-to-2), the item is at risk on its origin
    /// until then, and `status` says when it became safe.
    @Test(.ownThread(timeLimit: .minutes(3)))
    func anEphemeralNodesPutIsTakenByTwoDurableNodesAtOnceEvenIfNoRoleWantsIt() throws {
        let c = try TestCluster(size: 3)
        let (spotNode, d1, d2) = (c.nodes[0], c.nodes[1], c.nodes[2])
        let rules = "placement: {npz: {roles: [training], min_copies: 2}}"
        let spotConfig = try Self.config(c, "spot", "\(rules)\nephemeral: true\nroles: [selfplay]")
        let storage = try Self.config(c, "storage", "\(rules)\nroles: [storage]")
        try d1.start(config: storage)
        try d2.start(config: storage, join: [d1.address])
        try spotNode.start(config: spotConfig, join: [d1.address])
        try eventually(30, "3 alive") { c.allSeeAlive(3) }
        let file = c.root.sub("game-1.bin")
        try writePseudoRandomFile(file, size: 10 << 20, seed: 12)
        let put = try Meshnode.run(["put", file, "--name", "selfplay/game-1.bin", "--type", "npz", "--data", spotNode.dataDir])
        #expect(put.status == 0, "\(put)")
        let id = put.lastLine
        try eventually(30, "both durable nodes hold the game\n\(c.dumpLogs())") { d1.holdsComplete(id) && d2.holdsComplete(id) }
        try eventually(15, "nothing at risk on the spot node") { Self.atRisk(spotNode) == 0 }
        let s = try #require(Self.spot(spotNode))
        #expect(s["ephemeral"] as? Bool == true)
        #expect((s["takes_sent"] as? Int ?? 0) >= 2, "\(s)")
        #expect((s["made_safe"] as? Int ?? 0) == 1, "\(s)")
        #expect(s["last_safe_after_ms"] is Int, "\(s)")
        for d in [d1, d2] {
            let ds = try #require(Self.spot(d))
            #expect(ds["takes_accepted"] as? Int == 1, "\(d.name): \(ds)")
            try d.expectExportMatches(id, original: file)
        }
    }

    /// Custodians keep a copy their role does not want exactly until placement is met: once a
    /// training node (the only target) holds the item, both storage custodians let theirs go.
    @Test(.ownThread(timeLimit: .minutes(4)))
    func custodiansLetTheirCopyGoOncePlacementIsMetAmongTheWantedNodes() throws {
        let c = try TestCluster(size: 4)
        let (spotNode, s1, s2, trainer) = (c.nodes[0], c.nodes[1], c.nodes[2], c.nodes[3])
        let rules = "placement: {npz: {roles: [training], min_copies: 1}}"
        let spotConfig = try Self.config(c, "spot", "\(rules)\nephemeral: true\nroles: [selfplay]")
        let storage = try Self.config(c, "storage", "\(rules)\nroles: [storage]")
        let training = try Self.config(c, "training", "\(rules)\nroles: [training]")
        try s1.start(config: storage)
        try s2.start(config: storage, join: [s1.address])
        try spotNode.start(config: spotConfig, join: [s1.address])
        try eventually(30, "3 alive") { c.allSeeAlive(3, among: [spotNode, s1, s2]) }
        let file = c.root.sub("batch.npz")
        try writePseudoRandomFile(file, size: 4 << 20, seed: 21)
        let put = try Meshnode.run(["put", file, "--name", "train/batch.npz", "--data", spotNode.dataDir])
        #expect(put.status == 0, "\(put)")
        let id = put.lastLine
        try eventually(30, "both custodians hold it") { s1.holdsComplete(id) && s2.holdsComplete(id) }
        // No training node yet: placement is not met, so the custodians keep their copies.
        sleep(12)
        #expect(s1.holdsComplete(id) && s2.holdsComplete(id), "a custodian dropped its copy before placement was met")
        try trainer.start(config: training, join: [s1.address])
        try eventually(30, "the training node holds it\n\(c.dumpLogs())") { trainer.holdsComplete(id) }
        try eventually(60, "the custodians let their copies go\n\(c.dumpLogs())") { !s1.holdsComplete(id) && !s2.holdsComplete(id) }
        #expect(Self.atRisk(spotNode) == 0)
    }

    /// An ephemeral node with no durable peer puts an item: it is at risk, in the outbox. After
    /// `kill -9` and a restart it still is; once a durable node joins, it takes the item and
    /// the outbox empties.
    @Test(.ownThread(timeLimit: .minutes(3)))
    func itemsAtRiskSurviveAKillAndAreTakenWhenADurableNodeJoins() throws {
        let c = try TestCluster(size: 2)
        let (spotNode, durable) = (c.nodes[0], c.nodes[1])
        let spotConfig = try Self.config(c, "spot", "ephemeral: true")
        try spotNode.start(config: spotConfig)
        let file = c.root.sub("npz-1.npz")
        try writePseudoRandomFile(file, size: 3 << 20, seed: 5)
        let id = try spotNode.put(file, name: "train/npz-1.npz")
        try eventually(10, "the item is at risk") { Self.atRisk(spotNode) == 1 }
        let row = try #require((Self.spot(spotNode)?["at_risk"] as? [[String: Any]])?.first)
        #expect(row["id"] as? String == id && row["name"] as? String == "train/npz-1.npz", "\(row)")
        spotNode.kill9()
        try spotNode.start(config: spotConfig)
        try eventually(10, "still at risk after kill -9") { Self.atRisk(spotNode) == 1 }
        #expect(spotNode.logs.contains("items at risk from before the restart"), "\(spotNode.logs.suffix(2000))")
        try durable.start(config: c.configPath, join: [spotNode.address])
        try eventually(30, "the durable node holds it\n\(c.dumpLogs())") { durable.holdsComplete(id) }
        try eventually(20, "the outbox is empty") { Self.atRisk(spotNode) == 0 }
        try durable.expectExportMatches(id, original: file)
    }

    /// SIGTERM on an ephemeral node that no durable node can reach: it waits `shutdown_deadline`,
    /// logs one line per item left unsaved and exits 20. A second SIGTERM exits at once.
    @Test(.ownThread(timeLimit: .minutes(3)))
    func sigtermWithNoDurableNodeWaitsTheDeadlineReportsEachItemAndExitsTwenty() throws {
        let c = try TestCluster(size: 1)
        let n = c.nodes[0]
        let short = try Self.config(c, "short", "ephemeral: true\nshutdown_deadline: 2s")
        try n.start(config: short)
        for i in 1...2 {
            let f = c.root.sub("g\(i).db")
            try writePseudoRandomFile(f, size: 100_000, seed: UInt64(i))
            _ = try n.put(f, name: "games/g\(i).db")
        }
        let t0 = Date()
        #expect(n.terminate() == 20, "\(n.logs.suffix(2000))")
        let took = Date().timeIntervalSince(t0)
        #expect(took >= 1.5, "it waited the deadline (\(took) s)")
        let lines = n.logs.split(separator: "\n").filter { $0.contains("left unsaved: no durable node holds it") }
        #expect(lines.count == 2 && lines.contains { $0.contains("games/g1.db") } && lines.contains { $0.contains("games/g2.db") },
                "\(n.logs.suffix(2000))")
        // A long deadline: a second SIGTERM ends the wait at once.
        let long = try Self.config(c, "long", "ephemeral: true\nshutdown_deadline: 120s")
        try n.start(config: long)
        try eventually(10, "the outbox is restored") { Self.atRisk(n) == 2 }
        n.child?.kill(SIGTERM)
        usleep(500_000)
        #expect(n.child?.poll() == nil, "the first SIGTERM waits")
        let t1 = Date()
        n.child?.kill(SIGTERM)
        #expect(n.child?.wait(timeoutSeconds: 10) == 20)
        #expect(Date().timeIntervalSince(t1) < 10)
    }

    /// 2 durable and 2 ephemeral nodes; a writer inserts rows into a SQLite database in each
    /// ephemeral node's send folder. One ephemeral node gets SIGTERM right after its writer
    /// stopped: every committed row is on a durable node, and it exits 0. The other is killed
    /// with `-9` while its writer runs: the durable copy misses at most the last 5 s of rows
    /// (the ephemeral cadence) plus the transfer time.
    @Test(.ownThread(timeLimit: .minutes(5)))
    func aLiveDatabaseOnASpotNodeLosesNoRowOnSigtermAndAtMostTheCadenceOnKill() throws {
        let c = try TestCluster(size: 4)
        let (d1, d2, e1, e2) = (c.nodes[0], c.nodes[1], c.nodes[2], c.nodes[3])
        var folders = [String]()
        var configs = [String]()
        for (i, e) in [e1, e2].enumerated() {
            let dir = c.root.sub("selfplay-\(e.name)")
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            folders.append(dir)
            configs.append(try Self.config(c, "spot-\(i)", """
                ephemeral: true
                folders:
                  - {path: \(dir), mode: send, prefix: "\(e.name)/"}
                """))
        }
        try d1.start(config: c.configPath)
        try d2.start(config: c.configPath, join: [d1.address])
        try e1.start(config: configs[0], join: [d1.address])
        try e2.start(config: configs[1], join: [d1.address])
        try eventually(30, "4 alive") { c.allSeeAlive(4) }
        var writers = [ChildProcess]()
        for (i, dir) in folders.enumerated() {
            let db = dir + "/games.db"
            let r = try Subprocess.run(["/usr/bin/python3", folderWriterScript, "--db", db, "--init", "100"])
            #expect(r.status == 0, "\(r)")
            writers.append(try Subprocess.spawn(["/usr/bin/python3", folderWriterScript, "--db", db, "--rate", "40",
                                                 "--duration", i == 0 ? "9" : "60", "--report", "1"]))
        }
        defer { for w in writers { w.kill(SIGKILL) } }

        // SIGTERM: the writer stops first (the host is going down), then at once the node.
        #expect(writers[0].wait(timeoutSeconds: 30) == 0)
        let committed = Self.lastCommitted(writers[0].result.stdout)
        #expect(committed > 100, "\(writers[0].result.stdout.suffix(300))")
        let t0 = Date()
        #expect(e1.terminate() == 0, "\(e1.logs.suffix(3000))")
        print("spot SIGTERM: exit after \(String(format: "%.2f", Date().timeIntervalSince(t0))) s, \(committed) rows committed")
        let look1 = try Self.durableCopy(of: "\(e1.name)/games.db", on: d1, c)
        #expect(look1.ok && look1.bad == 0 && look1.count == look1.maxID, "\(look1.detail)")
        #expect(look1.maxID == committed, "SIGTERM lost rows: the durable copy has \(look1.maxID) of \(committed)")

        // kill -9 while the writer runs.
        let killedAt = Date().timeIntervalSince1970
        e2.kill9()
        writers[1].kill(SIGKILL)
        var look2 = DatabaseLook(ok: false, count: 0, maxID: 0, bad: 0, detail: "")
        var lastT = 0.0
        try eventually(30, "a durable copy of \(e2.name)'s database") {
            guard let l = try? Self.durableCopy(of: "\(e2.name)/games.db", on: d2, c), l.ok, l.maxID > 100 else { return false }
            look2 = l
            lastT = Self.rowTime(c.root.sub("copy-\(e2.name).db"), id: l.maxID) ?? 0
            return lastT > 0
        }
        let window = killedAt - lastT
        print("spot kill -9: the durable copy misses the last \(String(format: "%.2f", window)) s of rows (max id \(look2.maxID))")
        #expect(look2.bad == 0 && look2.count == look2.maxID, "\(look2.detail)")
        #expect(window <= 5 + 3, "kill -9 lost \(window) s of rows, more than the 5 s cadence and the transfer")
    }

    static func lastCommitted(_ out: String) -> Int {
        out.split(separator: "\n").compactMap { l -> Int? in
            if l.hasPrefix("done ") { return Int(l.dropFirst(5)) }
            if l.hasPrefix("commit ") { return Int(l.dropFirst(7)) }
            return nil
        }.max() ?? -1
    }

    /// The current version of `name` exported from `node`, looked at read-only.
    static func durableCopy(of name: String, on node: TestNode, _ c: TestCluster) throws -> DatabaseLook {
        let out = c.root.sub("copy-\(name.split(separator: "/").first ?? "x").db")
        unlink(out)
        let g = try Meshnode.run(["get", name, "-o", out, "--data", node.dataDir], timeoutSeconds: 60)
        guard g.status == 0, let l = DatabaseLook.of(out) else { throw TestFailure("get \(name) on \(node.name): \(g)") }
        return l
    }

    /// Row `id`'s timestamp `t` (s since the epoch) in the database at `path`.
    static func rowTime(_ path: String, id: Int) -> Double? {
        let py = "import sqlite3,sys\nd=sqlite3.connect('file:'+sys.argv[1]+'?mode=ro',uri=True)\nprint(d.execute('SELECT t FROM games WHERE id=?',(int(sys.argv[2]),)).fetchone()[0])"
        guard let r = try? Subprocess.run(["/usr/bin/python3", "-c", py, path, "\(id)"]), r.status == 0 else { return nil }
        return Double(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
    }
}
