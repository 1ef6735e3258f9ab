import Foundation
import TestSupport
import Testing

extension TestNode {
    /// `ls --json` rows (the current version of each live name).
    func currentRows() -> [String: [String: Any]] {
        guard let r = try? Meshnode.run(["ls", "--data", dataDir, "--json"], timeoutSeconds: 10), r.status == 0,
              let rows = (try? parseJSON(r.stdout)) as? [[String: Any]] else { return [:] }
        var out = [String: [String: Any]]()
        for row in rows { if let n = row["name"] as? String { out[n] = row } }
        return out
    }

    /// The content id of `name`'s current version here, if it is live.
    func currentID(_ name: String) -> String? { currentRows()[name]?["id"] as? String }
}

/// Versions and tombstones between real `meshnode run` processes.
@Suite(.serialized, .ownThread()) struct VersionReplicationTests {
    @Test(.ownThread(timeLimit: .minutes(2)))
    func aNewerPutOfANameFromAnyNodeBecomesItsCurrentVersionEverywhereAndRmRemovesItEverywhere() throws {
        let c = try TestCluster(size: 3)
        try c.startAll()
        try eventually(30, "3 alive") { c.allSeeAlive(3) }
        let v1 = c.root.sub("v1"), v2 = c.root.sub("v2"), v3 = c.root.sub("v3")
        try writePseudoRandomFile(v1, size: 50_000, seed: 1)
        try writePseudoRandomFile(v2, size: 60_000, seed: 2)
        try writePseudoRandomFile(v3, size: 70_000, seed: 3)
        let id1 = try c.nodes[0].put(v1, name: "model.onnx")
        try eventually(15, "version 1 everywhere") { c.nodes.allSatisfy { $0.currentID("model.onnx") == id1 } }
        let id2 = try c.nodes[1].put(v2, name: "model.onnx")
        try eventually(15, "version 2 (from another node) current everywhere\n\(c.dumpLogs())") {
            c.nodes.allSatisfy { $0.currentID("model.onnx") == id2 }
        }
        for n in c.nodes {
            let row = try #require(n.currentRows()["model.onnx"])
            #expect(row["version"] as? Int == 2)
            #expect(row["versions"] as? Int == 2)
        }
        // Every node ends with the current content complete, and `get NAME` gives it.
        try eventually(20, "version 2 complete everywhere") { c.nodes.allSatisfy { $0.holdsComplete(id2) } }
        try c.nodes[2].expectExportMatches("model.onnx", original: v2)
        let rm = try Meshnode.run(["rm", "model.onnx", "--data", c.nodes[2].dataDir])
        #expect(rm.status == 0, "\(rm)")
        try eventually(15, "the name leaves ls on every node") { c.nodes.allSatisfy { $0.currentID("model.onnx") == nil } }
        let id3 = try c.nodes[0].put(v3, name: "model.onnx")
        try eventually(15, "a later put makes a new version everywhere") { c.nodes.allSatisfy { $0.currentID("model.onnx") == id3 } }
        #expect(c.nodes[1].currentRows()["model.onnx"]?["version"] as? Int == 3)
    }
}
