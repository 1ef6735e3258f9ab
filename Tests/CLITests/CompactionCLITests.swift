import Foundation
import TestSupport
import Testing

/// Tombstone compaction (docs/PROTOCOL.md §4.5) between real `meshnode run` processes.
@Suite(.serialized, .ownThread()) struct CompactionCLITests {
    @Test(.ownThread(timeLimit: .minutes(3)))
    func aDeletedNameIsCompactedAwayOnEveryNodeAfterCompactAfterAndStaysGoneAcrossARestart() throws {
        let c = try TestCluster(size: 2, extraConfig: "compact_after: 1s")
        try c.startAll()
        try eventually(30, "2 alive") { c.allSeeAlive(2) }
        let (a, b) = (c.nodes[0], c.nodes[1])
        let old = c.root.sub("old"), live = c.root.sub("live"), again = c.root.sub("again")
        try writePseudoRandomFile(old, size: 40_000, seed: 1)
        try writePseudoRandomFile(live, size: 30_000, seed: 2)
        try writePseudoRandomFile(again, size: 20_000, seed: 3)
        let oldID = try a.put(old, name: "old.pt")
        let liveID = try a.put(live, name: "live.pt")
        try eventually(20, "both names on b") { b.currentID("old.pt") == oldID && b.currentID("live.pt") == liveID }
        let rm = try Meshnode.run(["rm", "old.pt", "--data", a.dataDir])
        #expect(rm.status == 0, "\(rm)")
        // a's log: put old.pt, put live.pt, tombstone. First the deleted put goes, then the
        // tombstone, which no longer deletes anything: of the names' entries only live.pt's put
        // and the last compaction are left everywhere. (Holder records and node facts, PROTOCOL
        // §4.6–4.7, come and go with collections and disk use: counted apart.)
        func kinds(_ n: TestNode) -> [String: Int]? { n.nodeStatus()?["entries_by_kind"] as? [String: Int] }
        func onlyLivePutLeft(_ n: TestNode) -> Bool {
            guard let k = kinds(n) else { return false }
            return k["put"] == 1 && (k["tombstone"] ?? 0) == 0 && (k["compaction"] ?? 0) >= 1
        }
        try eventually(60, "only live.pt's put and the last compaction left on both\n\(c.dumpLogs())") {
            onlyLivePutLeft(a) && onlyLivePutLeft(b)
        }
        #expect(((b.nodeStatus()?["entries_compacted"] as? Int) ?? 0) >= 2)
        for n in c.nodes {
            #expect(n.currentID("old.pt") == nil)
            #expect(n.currentID("live.pt") == liveID)
            let v = try Meshnode.run(["ls", "--versions", "old.pt", "--json", "--data", n.dataDir])
            #expect(!v.stdout.contains(oldID), "\(n.name) still lists the compacted version: \(v.stdout)")
        }
        try a.expectExportMatches("live.pt", original: live)

        // A restart brings nothing back; a later put of the name is a new version everywhere.
        #expect(b.terminate() == 0)
        try b.start(config: c.configPath, join: [a.address])
        try eventually(30, "b back") { c.allSeeAlive(2) }
        #expect(onlyLivePutLeft(b))
        let againID = try b.put(again, name: "old.pt")
        try eventually(20, "the new version of old.pt everywhere") { c.nodes.allSatisfy { $0.currentID("old.pt") == againID } }
        #expect(a.currentRows()["old.pt"]?["version"] as? Int == 1, "the compacted version no longer counts")
    }
}
