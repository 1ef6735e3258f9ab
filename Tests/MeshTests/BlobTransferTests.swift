import Foundation
import TestSupport
import Testing
@testable import Gossip
@testable import Mesh
@testable import Store

/// Writes `size` seeded pseudo-random bytes to `<dir>/<name>` and returns its path.
func makeFile(in dir: String, name: String, size: Int, seed: UInt64) throws -> String {
    let path = dir + "/" + name
    try writePseudoRandomFile(path, size: size, seed: seed)
    return path
}

/// A cluster of in-process nodes that trust each other.
final class InProcessCluster {
    let ids: [NodeIdentity]
    let policy: AdmissionPolicy
    var nodes: [InProcessNode] = []

    /// `spares` extra identities are trusted from the start, for nodes a test adds later.
    init(size: Int, spares: Int = 0, configure: (Int, inout MeshNodeOptions) -> Void = { _, _ in }) throws {
        ids = (0..<(size + spares)).map { _ in NodeIdentity.generate() }
        policy = AdmissionPolicy(trustedNodes: Set(ids.map(\.nodeID)))
        for i in 0..<size {
            let join = nodes.first.map { [$0.address] } ?? []
            nodes.append(try InProcessNode(name: "n\(i)", identity: ids[i], join: join, admission: policy,
                                           configure: { configure(i, &$0) }))
        }
        try eventually(30, "all \(size) alive") { self.nodes.allSatisfy { n in n.states().count == size && n.states().values.allSatisfy { $0 == .alive } } }
    }

    func stop() { for n in nodes { n.stop() } }

    /// Starts spare identity `k` (0-based among the spares) as a new node joining the cluster.
    func addSpare(_ k: Int, configure: (inout MeshNodeOptions) -> Void = { _ in }) throws -> InProcessNode {
        let id = ids[ids.count - 1 - k]
        let n = try InProcessNode(name: "spare\(k)", identity: id, join: [nodes[0].address], admission: policy, configure: configure)
        nodes.append(n)
        return n
    }

    /// Ingests a file on node `i` through a second store handle and announces it.
    func put(on i: Int, size: Int, seed: UInt64, name: String = "item.npz") throws -> (ManifestEntry, String) {
        let n = nodes[i]
        let path = try makeFile(in: n.dir, name: "src-\(name)", size: size, seed: seed)
        let entry = try Store.open(dataDir: n.dir).ingest(path: path, name: name, signer: n.identity).entry
        n.loop.post { [node = n.node!] in node.announce(entry) }
        return (entry, path)
    }
}

/// Exports `id` from `node` and compares it with `original`.
func expectSameContent(_ node: InProcessNode, _ id: ContentID, as original: String) throws {
    let store = try Store.open(dataDir: node.dir)
    let out = node.dir + "/export-\(id.short)"
    _ = try store.export(try store.resolve(id.description), to: out)
    #expect(FileManager.default.contentsEqual(atPath: out, andPath: original), "\(node.identity.nodeID.short) exported different bytes")
    try? FileManager.default.removeItem(atPath: out)
}

@Suite(.serialized, .ownThread()) struct BlobTransferTests {
    /// An item whose only holder lost its chunks (as when a spot host vanishes before anyone
    /// copied them) cannot progress; with one download slot, it gives the slot to the next item
    /// after `stalledAfter` instead of blocking every later item.
    @Test(.ownThread(timeLimit: .minutes(2))) func anItemThatCannotProgressGivesItsSlotToTheNextOne() throws {
        let c = try InProcessCluster(size: 2) { i, o in
            if i == 1 {
                o.blob.maxConcurrentDownloads = 1
                o.blob.stalledAfter = .seconds(2)
            }
        }
        defer { c.stop() }
        // The origin keeps the orphan's recipe but loses every chunk before announcing it.
        let origin = c.nodes[0]
        let orphanFile = try makeFile(in: origin.dir, name: "src-orphan", size: 4 << 20, seed: 31)
        let orphan = try Store.open(dataDir: origin.dir).ingest(path: orphanFile, name: "orphan.npz", signer: origin.identity).entry
        let chunks = origin.dir + "/chunks"
        var removed = 0
        for f in FileManager.default.subpaths(atPath: chunks) ?? [] {
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: chunks + "/" + f, isDirectory: &isDir), !isDir.boolValue {
                try FileManager.default.removeItem(atPath: chunks + "/" + f)
                removed += 1
            }
        }
        #expect(removed > 0)
        origin.loop.post { [node = origin.node!] in node.announce(orphan) }
        try eventually(30, "n1 is fetching the orphan") { (try? c.nodes[1].onLoop { $0.blobs?.transfers().count ?? 0 }) == 1 }
        let (next, path) = try c.put(on: 0, size: 4 << 20, seed: 32, name: "next.npz")
        try eventually(60, "the next item arrives although the orphan held the only slot") { c.nodes[1].isComplete(next.contentID) }
        try expectSameContent(c.nodes[1], next.contentID, as: path)
        #expect(!c.nodes[1].isComplete(orphan.contentID))
        let counters = c.nodes[1].blobCounters()
        #expect(counters.itemsRequeued >= 1)
        // The origin answered every request for a chunk it lacks at once ("not held") and went on
        // serving the same session: nothing waited for a timeout.
        #expect(counters.requestsTimedOut == 0)
    }

    /// Chunks that fail at once (not held) must not stall the rest of a session's queue: every
    /// one of 8 indices asked in one `get` is answered, although only 3 reads run at a time.
    @Test(.ownThread(timeLimit: .minutes(2))) func everyChunkAskedForIsAnsweredEvenWhenNoneIsHeld() throws {
        let c = try InProcessCluster(size: 2)
        defer { c.stop() }
        let origin = c.nodes[0]
        let file = try makeFile(in: origin.dir, name: "src-gone", size: 1 << 20, seed: 33)
        let entry = try Store.open(dataDir: origin.dir).ingest(path: file, name: "gone.npz", signer: origin.identity).entry
        try FileManager.default.removeItem(atPath: origin.dir + "/chunks")
        let ask = BlobMessage.get(requestID: 7, contentID: entry.contentID, indices: Array(0..<8))
        var w = ByteWriter(capacity: 64)
        ask.encode(into: &w)
        let bytes = w.bytes
        let to = origin.identity.nodeID
        #expect(try c.nodes[1].onLoop { $0.send(bytes[0], Array(bytes[1...]), toNode: to) })
        try eventually(30, "8 refusals") { origin.blobCounters().chunksRefused == 8 }
        #expect(origin.blobCounters().chunksServed == 0)
    }

    @Test(.ownThread(timeLimit: .minutes(2))) func aNewItemReplicatesToEveryNodeByteForByte() throws {
        let c = try InProcessCluster(size: 3)
        defer { c.stop() }
        let (entry, path) = try c.put(on: 0, size: 6 << 20 + 12345, seed: 1)
        for n in c.nodes.dropFirst() {
            try eventually(60, "\(n.identity.nodeID.short) holds the item") { n.isComplete(entry.contentID) }
            try expectSameContent(n, entry.contentID, as: path)
        }
        let holders = try c.nodes[1].onLoop { $0.blobs!.knownHolders(entry.contentID) }
        #expect(holders.contains(c.ids[0].nodeID) && holders.contains(c.ids[1].nodeID))
    }

    @Test(.ownThread(timeLimit: .minutes(2))) func aLateJoinerFetchesFromSeveralHoldersAtOnce() throws {
        let c = try InProcessCluster(size: 3, spares: 1)
        defer { c.stop() }
        let (entry, path) = try c.put(on: 0, size: 12 << 20, seed: 2)
        for n in c.nodes { try eventually(60, "replicated") { n.isComplete(entry.contentID) } }
        let before = c.nodes.map { $0.blobCounters().bytesServed }
        let late = try c.addSpare(0)
        try eventually(60, "the late joiner holds the item") { late.isComplete(entry.contentID) }
        try expectSameContent(late, entry.contentID, as: path)
        let served = zip(c.nodes.prefix(3), before).map { $0.blobCounters().bytesServed - $1 }
        #expect(served.filter { $0 > 0 }.count >= 2, "chunks came from \(served)")
        #expect(served.reduce(0, +) >= UInt64(12 << 20))
        // Endgame duplicates are counted apart: every chunk is fetched once in the counters.
        #expect(late.blobCounters().bytesFetched == UInt64(12 << 20))
    }

    @Test(.ownThread(timeLimit: .minutes(2))) func aPeerServingCorruptChunksIsStruckAndTheItemStillArrivesIntact() throws {
        // n1 serves every chunk with a flipped byte.
        let c = try InProcessCluster(size: 3, spares: 1) { i, o in o.blob.testCorruptServing = (i == 1) }
        defer { c.stop() }
        let (entry, path) = try c.put(on: 0, size: 4 << 20, seed: 3)
        try eventually(60, "n1 and n2 hold the item") { c.nodes[1].isComplete(entry.contentID) && c.nodes[2].isComplete(entry.contentID) }
        let late = try c.addSpare(0)
        try eventually(60, "the late joiner holds the item") { late.isComplete(entry.contentID) }
        try expectSameContent(late, entry.contentID, as: path)
        let counters = late.blobCounters()
        let bad = c.ids[1].nodeID.short
        #expect((counters.strikes[bad] ?? 0) > 0, "strikes: \(counters.strikes)")
        #expect(counters.strikes.keys.allSatisfy { $0 == bad }, "only the corrupting peer is struck: \(counters.strikes)")
        let report = try Store.open(dataDir: late.dir).verify()
        #expect(report.ok)
    }

    @Test(.ownThread(timeLimit: .minutes(2))) func aReceiverThatCrashesMidTransferResumesWithoutRefetchingVerifiedChunks() throws {
        // The source serves slowly (4 MB/s) so that the crash lands mid-transfer.
        let c = try InProcessCluster(size: 2) { i, o in
            if i == 0 { o.blob.bandwidth = BandwidthConfig(globalBytesPerSecond: 4_000_000) }
        }
        defer { c.stop() }
        let size = 16 << 20
        let (entry, path) = try c.put(on: 0, size: size, seed: 4)
        let receiver = c.nodes[1]
        try eventually(30, "part of the item arrived") { receiver.blobCounters().chunksFetched >= 40 }
        receiver.crash()
        let store = try Store.open(dataDir: receiver.dir)
        let recipe = try #require(try store.recipe(entry.contentID))
        let presentAtCrash = recipe.chunks.filter { store.hasChunk($0) }.count
        #expect(presentAtCrash > 0 && presentAtCrash < recipe.chunks.count)
        let servedBefore = c.nodes[0].blobCounters().chunksServed

        let restarted = try InProcessNode(name: "n1b", identity: c.ids[1], join: [c.nodes[0].address], admission: c.policy,
                                          dataDir: receiver.dir)
        c.nodes[1] = restarted
        try eventually(60, "the restarted receiver completes the item") { restarted.isComplete(entry.contentID) }
        try expectSameContent(restarted, entry.contentID, as: path)
        let servedAfterRestart = c.nodes[0].blobCounters().chunksServed - servedBefore
        let missing = UInt64(recipe.chunks.count - presentAtCrash)
        // Chunks already verified at the crash are never asked for again; what was in flight
        // when the receiver died (at most one window per stream) may be sent twice.
        #expect(servedAfterRestart <= missing + UInt64(FetchScheduler.Config().windowChunks), "served \(servedAfterRestart) for \(missing) missing")
    }
}

@Suite(.serialized, .ownThread()) struct PartialHolderTests {
    /// n1 is still receiving the item (slowly, from n0) when n2 asks for it: n1 serves the
    /// chunks it already has, before it holds the item complete.
    @Test(.ownThread(timeLimit: .minutes(2))) func aPeerStillReceivingAnItemServesTheChunksItAlreadyHas() throws {
        let c = try InProcessCluster(size: 2, spares: 1) { i, o in
            if i == 0 { o.blob.bandwidth = BandwidthConfig(globalBytesPerSecond: 3_000_000) }
        }
        defer { c.stop() }
        let (entry, path) = try c.put(on: 0, size: 12 << 20, seed: 7)
        let middle = c.nodes[1]
        try eventually(30, "n1 has part of the item") { middle.blobCounters().chunksFetched >= 30 }
        #expect(!middle.isComplete(entry.contentID))
        let late = try c.addSpare(0)
        try eventually(30, "n1 serves the late joiner before completing") {
            middle.blobCounters().chunksServed > 0 && !middle.isComplete(entry.contentID)
        }
        try eventually(90, "the late joiner completes") { late.isComplete(entry.contentID) }
        try expectSameContent(late, entry.contentID, as: path)
    }
}
