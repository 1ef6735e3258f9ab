import Foundation
import TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A send folder on A (uploads limited by `bandwidthA`), a receive folder on B, and `extra`
/// nodes with no folder; all of `data/`.
final class StagingCluster {
    let cluster: TestCluster
    let send: String
    let recv: String
    var a: TestNode { cluster.nodes[0] }
    var b: TestNode { cluster.nodes[1] }
    var configA: String { cluster.root.sub("a.yaml") }
    var configB: String { cluster.root.sub("b.yaml") }

    init(bandwidthA: String, extra: Int = 0) throws {
        cluster = try TestCluster(size: 2 + extra)
        send = cluster.root.sub("send")
        recv = cluster.root.sub("recv")
        for d in [send, recv] { try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true) }
        let ids = cluster.nodes.map(\.id)
        try cluster.writeConfig(trusted: ids, extra: "folders:\n  - {path: \(send), mode: send, prefix: data/}\nbandwidth: {global: \(bandwidthA)}\n",
                                to: configA)
        try cluster.writeConfig(trusted: ids, extra: "folders:\n  - {path: \(recv), mode: receive, prefix: data/}\n", to: configB)
        try a.start(config: configA)
        try b.start(config: configB, join: [a.address])
        try eventually(30, "A and B alive") { cluster.allSeeAlive(2, among: [a, b]) }
    }

    /// Writes `size` pseudo-random bytes and renames them into A's folder as `name`.
    func drop(_ name: String, size: Int, seed: UInt64) throws {
        let staged = cluster.root.sub("staged-\(name)")
        try writePseudoRandomFile(staged, size: size, seed: seed)
        _ = rename(staged, send + "/" + name)
    }

    func same(_ rel: String) -> Bool { FileManager.default.contentsEqual(atPath: send + "/" + rel, andPath: recv + "/" + rel) }

    /// B's hidden meshnode temp files in its folder.
    var stagingFiles: [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: recv)) ?? []).filter { $0.hasPrefix(".") && $0.hasSuffix(".tmp") }
    }

    func backed(_ n: TestNode) -> [String: Any] {
        let s = try? Meshnode.run(["status", "--data", n.dataDir, "--json"], timeoutSeconds: 10)
        let node = ((s.flatMap { try? parseJSON($0.stdout) }) as? [String: Any])?["node"] as? [String: Any]
        return node?["backed"] as? [String: Any] ?? [:]
    }

    var logs: String { cluster.dumpLogs() }
}

/// Chunk file names under a data dir's `chunks/`.
func chunkFilesUnder(_ dataDir: String) -> [String] {
    let dir = dataDir + "/chunks"
    return ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).flatMap { sub in
        ((try? FileManager.default.contentsOfDirectory(atPath: dir + "/" + sub)) ?? []).filter { $0.count == 64 }
    }
}

@Suite(.serialized, .ownThread()) struct FolderFetchInPlaceTests {
    @Test("A file received into a folder is fetched straight into its hidden temp file: bit-identical, and no chunk file is written for it",
          .ownThread(timeLimit: .minutes(3)))
    func receivedWithoutChunkFiles() throws {
        let p = try StagingCluster(bandwidthA: "1GB/s")
        try p.drop("big.bin", size: 40 << 20, seed: 71)
        try eventually(90, "big.bin on B\n\(p.logs)") { p.same("big.bin") }
        #expect(chunkFilesUnder(p.b.dataDir).isEmpty, "no chunk file on B")
        #expect(chunkFilesUnder(p.a.dataDir).isEmpty, "no chunk file on A either: its folder file backs the put")
        #expect(p.backed(p.b)["chunk_files_released"] as? Int == 0, "none written and released: \(p.backed(p.b))")
        #expect(p.stagingFiles.isEmpty)
        #expect(p.b.blobCounter("chunks_fetched") == 20)
        #expect(p.b.terminate() == 0)
        let v = try Meshnode.run(["verify", "--data", p.b.dataDir])
        #expect(v.status == 0, "\(v)")
    }

    @Test("kill -9 of the receiver mid-fetch: no partial file is visible, the store verifies, and after a restart the file completes",
          .ownThread(timeLimit: .minutes(4)))
    func receiverKilledMidFetch() throws {
        let p = try StagingCluster(bandwidthA: "6MB/s")
        try p.drop("big.bin", size: 48 << 20, seed: 72)
        try eventually(60, "B fetching into its staging file\n\(p.logs)") { !p.stagingFiles.isEmpty && p.b.blobCounter("chunks_fetched") >= 4 }
        p.b.kill9()
        #expect(!FileManager.default.fileExists(atPath: p.recv + "/big.bin"), "no partial file visible")
        #expect(p.stagingFiles.count == 1)
        let v = try Meshnode.run(["verify", "--data", p.b.dataDir])
        #expect(v.status == 0, "\(v)")
        try p.b.start(config: p.configB, join: [p.a.address])
        try eventually(120, "big.bin on B after the restart\n\(p.logs)") { p.same("big.bin") }
        try eventually(10, "the staging file gone") { p.stagingFiles.isEmpty }
        let refetched = p.b.blobCounter("chunks_fetched")
        print("chunks fetched after the restart: \(refetched) of 24")
        #expect(refetched < 24, "the chunks staged before the kill were kept")
        #expect(chunkFilesUnder(p.b.dataDir).isEmpty)
        #expect(p.b.terminate() == 0)
        let again = try Meshnode.run(["verify", "--data", p.b.dataDir])
        #expect(again.status == 0, "\(again)")
    }

    @Test("A receiver mid-fetch serves the chunks it has to another peer, from its staging file",
          .ownThread(timeLimit: .minutes(4)))
    func partialReceiverServes() throws {
        let p = try StagingCluster(bandwidthA: "6MB/s", extra: 1)
        let c = p.cluster.nodes[2]
        try p.drop("big.bin", size: 48 << 20, seed: 73)
        try eventually(60, "B half-way\n\(p.logs)") { !p.stagingFiles.isEmpty && p.b.blobCounter("chunks_fetched") >= 8 }
        p.a.kill9()  // from now on only B holds any of it
        try p.cluster.writeConfig(trusted: p.cluster.nodes.map(\.id))
        try c.start(config: p.cluster.configPath, join: [p.b.address])
        try eventually(60, "C fetching from B alone\n\(p.logs)") { c.blobCounter("chunks_fetched") >= 8 }
        #expect(!FileManager.default.fileExists(atPath: p.recv + "/big.bin"))
        try p.a.start(config: p.configA, join: [p.b.address])
        try eventually(120, "big.bin on B\n\(p.logs)") { p.same("big.bin") }
        #expect(chunkFilesUnder(p.b.dataDir).isEmpty)
    }
}
