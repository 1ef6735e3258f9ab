import Foundation
import Testing
@testable import Gossip
@testable import Mesh
@testable import Store

/// Two trusted nodes whose stores cut files into `chunkSizeBytes` chunks.
private func twoNodes(chunkSizeBytes: UInt32, configure: @escaping (Int, inout MeshNodeOptions) -> Void = { _, _ in })
    throws -> (InProcessNode, InProcessNode) {
    let ids = (0..<2).map { _ in NodeIdentity.generate() }
    let policy = AdmissionPolicy(trustedNodes: Set(ids.map(\.nodeID)))
    let a = try InProcessNode(name: "a", identity: ids[0], join: [], admission: policy, chunkSizeBytes: chunkSizeBytes,
                              configure: { configure(0, &$0) })
    let b = try InProcessNode(name: "b", identity: ids[1], join: [a.address], admission: policy, chunkSizeBytes: chunkSizeBytes,
                              configure: { configure(1, &$0) })
    try eventually(20, "a and b see each other") { a.states().count == 2 && b.states().count == 2 }
    return (a, b)
}

/// Ingests `size` seeded bytes on `n` and announces them.
private func put(on n: InProcessNode, size: Int, seed: UInt64) throws -> (ManifestEntry, String) {
    let path = try makeFile(in: n.dir, name: "src-\(seed)", size: size, seed: seed)
    let entry = try Store.open(dataDir: n.dir).ingest(path: path, name: "big-\(seed).ckpt", signer: n.identity).entry
    n.loop.post { [node = n.node!] in node.announce(entry) }
    return (entry, path)
}

/// PROTOCOL §9.2: every chunk size `meshnode init` accepts replicates; chunks over 8 MiB travel
/// as `chunk_piece`s. Stores with 16 MiB chunks used to have their recipes refused (the decoder
/// stopped at 8 MiB) and their chunks could not be sent at all (over the 16 MiB frame limit).
@Suite(.serialized, .ownThread()) struct LargeChunkTests {
    func replicates(chunkSizeBytes: Int, size: Int, seed: UInt64) throws {
        let (a, b) = try twoNodes(chunkSizeBytes: UInt32(chunkSizeBytes))
        defer { a.stop(); b.stop() }
        let (entry, path) = try put(on: a, size: size, seed: seed)
        #expect(entry.chunkSizeBytes == UInt32(chunkSizeBytes))
        try eventually(120, "b holds the item") { b.isComplete(entry.contentID) }
        try expectSameContent(b, entry.contentID, as: path)
        let chunks = (size + chunkSizeBytes - 1) / chunkSizeBytes
        #expect(a.blobCounters().chunksServed == UInt64(chunks))
        #expect(b.blobCounters().bytesFetched == UInt64(size))
        #expect(b.blobCounters().strikes.isEmpty)
        let rejected = try b.onLoop { $0.runtime.rejected }
        #expect(rejected.isEmpty, "\(rejected)")
    }

    /// 3 chunks: two of 16 MiB and one of 9 MiB, each sent as 2 pieces.
    @Test(.ownThread(timeLimit: .minutes(3))) func aStoreWithSixteenMebibyteChunksReplicates() throws {
        try replicates(chunkSizeBytes: 16 << 20, size: (32 << 20) + (9 << 20), seed: 61)
    }

    /// 2 chunks: one of 64 MiB (8 pieces) and one of 3 MiB (one plain `chunk`).
    @Test(.ownThread(timeLimit: .minutes(3))) func aStoreWithSixtyFourMebibyteChunksReplicates() throws {
        try replicates(chunkSizeBytes: 64 << 20, size: (64 << 20) + (3 << 20), seed: 62)
    }

    /// PROTOCOL §9.2: pieces that do not fit together are a strike against their sender and the
    /// chunk is fetched elsewhere; the item arrives intact. A test peer announces the item
    /// complete and answers every `get` with a broken piece set for each chunk: chunk 0 begun
    /// twice, chunk 1 begun past its start, chunk 2 announced at the wrong length.
    @Test(.ownThread(timeLimit: .minutes(4))) func piecesThatDoNotFitTogetherAreAStrikeAndTheChunkComesFromElsewhere() throws {
        let wire = try WirePeer(name: "liar")
        defer { wire.stop() }
        let (a, b) = try twoNodes(chunkSizeBytes: 16 << 20) { i, o in
            o.admission = AdmissionPolicy(trustedNodes: o.admission.trustedNodes.union([wire.identity.nodeID]))
            // 48 MiB take 48 s, and the first chunk 16 s: the liar gets its requests long before.
            if i == 0 { o.blob.bandwidth = BandwidthConfig(globalBytesPerSecond: 1_000_000) }
        }
        defer { a.stop(); b.stop() }
        let p = BlobMessage.pieceBytes
        let junk = [UInt8](repeating: 0x5a, count: p)
        let asked = Locked<Set<UInt32>>([])
        wire.onMessage = { _, s, type, body in
            guard type == BlobMessage.Tag.get.rawValue, let m = try? BlobMessage.decode([type] + body),
                  case .get(let rid, _, let indices, _) = m else { return }
            asked.mutate { $0.formUnion(indices) }
            for i in indices {
                func piece(_ total: Int, _ offset: Int) {
                    let bytes = BlobMessage.chunkPiece(requestID: rid, index: i, chunkBytes: UInt32(total), offset: UInt32(offset),
                                                       data: Array(junk.prefix(min(p, total - offset)))).encoded
                    s.send(bytes[0], Array(bytes[1...]))
                }
                switch i % 3 {
                case 0: piece(16 << 20, 0); piece(16 << 20, 0)
                case 1: piece(16 << 20, p)
                default: piece((16 << 20) - 4096, 0)
                }
            }
        }
        let (entry, path) = try put(on: a, size: 48 << 20, seed: 63)
        try eventually(30, "b has the recipe and fetches from a") {
            (try? b.onLoop { $0.blobs?.transfers().first?.state }) == "fetching"
        }
        let s = try wire.connect(to: b.address)
        let all = ChunkBitmap.make(count: 3) { _ in true }
        try wire.send(s, .have(requestID: 0, contentID: entry.contentID, chunkCount: 3, bitmap: all))
        let struck = (try? eventually(30, "the liar is struck") { (b.blobCounters().strikes[wire.identity.nodeID.short] ?? 0) > 0 }) != nil
        guard struck else {
            // Say what b was doing, so that a failure explains itself.
            let state = try b.onLoop { n -> String in
                let requests = n.blobs!.requests.values.map { "\($0.source.short): \($0.kind)" }
                let sources = n.blobs!.downloads.values.first?.scheduler.map { s in s.sourceIDs.map { "\($0.short): \(String(describing: s.stats($0)))" } }
                return "transfers \(n.blobs!.transfers()), requests \(requests), sources \(String(describing: sources)), rejected \(n.runtime.rejected)"
            }
            Issue.record("the liar was never struck; b: \(state); the liar got message types \(wire.received.value.map(\.type))")
            return
        }
        try eventually(150, "b holds the item") { b.isComplete(entry.contentID) }
        try expectSameContent(b, entry.contentID, as: path)
        let counters = b.blobCounters()
        let strikes = counters.strikes[wire.identity.nodeID.short] ?? 0
        let rejected = try b.onLoop { $0.runtime.rejected }
        #expect(rejected["inconsistent_chunk_pieces"] == strikes, "\(rejected), \(strikes) strikes")
        // One strike per broken chunk (three strikes drop the liar, §9.3).
        #expect(strikes >= UInt64(asked.value.count) && strikes <= 3, "\(strikes) strikes for chunks \(asked.value.sorted())")
        #expect(counters.strikes[a.identity.nodeID.short] == nil)
        #expect(counters.corruptChunks == 0)
        #expect(try Store.open(dataDir: b.dir).verify().ok)
    }
}

/// PROTOCOL §9.3: a recipe that can never be accepted is not asked for again and again.
@Suite(.serialized, .ownThread()) struct RefusedRecipeTests {
    /// The only holder answers with a recipe whose chunk size is out of range (4095 bytes): the
    /// node counts it, does not ask that peer again, gives the item up and says so; asked for
    /// the item again, it tries once more. It used to ask every 10 s for ever.
    @Test(.ownThread(timeLimit: .minutes(2))) func anUnacceptableRecipeIsNotAskedForAgainAndTheItemIsGivenUpVisibly() throws {
        let wire = try WirePeer(name: "old")
        defer { wire.stop() }
        let me = NodeIdentity.generate()
        let n = try InProcessNode(name: "n", identity: me, join: [],
                                  admission: AdmissionPolicy(trustedNodes: [me.nodeID, wire.identity.nodeID]))
        defer { n.stop() }
        wire.onMessage = { _, s, type, body in
            guard type == BlobMessage.Tag.wantRecipe.rawValue, let m = try? BlobMessage.decode([type] + body),
                  case .wantRecipe(let rid, let c) = m else { return }
            let bytes = BlobMessage.recipe(requestID: rid, contentID: c, sizeBytes: 5000, chunkSizeBytes: 4095,
                                           chunks: [ChunkHash(digest: .zero), ChunkHash(digest: .zero)]).encoded
            s.send(bytes[0], Array(bytes[1...]))
        }
        _ = try wire.connect(to: n.address)
        let item = ContentID(digest: Bytes32(w0: 3, w1: 1, w2: 4, w3: 1))
        let peer = wire.identity.nodeID
        try n.onLoop { $0.blobs!.want(item, holders: [peer], reason: .replication) }
        try eventually(15, "the item is given up") { (try? n.onLoop { $0.blobs?.transfers().first?.state }) == "abandoned" }
        func asked() -> Int { wire.received.value.filter { $0.type == BlobMessage.Tag.wantRecipe.rawValue }.count }
        Thread.sleep(forTimeInterval: 3)
        #expect(asked() == 1, "asked \(asked()) times for a recipe it refused")
        #expect(n.blobCounters().itemsAbandoned == 1)
        #expect(try n.onLoop { $0.runtime.rejected["malformed_blob_message"] } == 1)

        // Someone asks for the item: one more try, and the waiter is told why it failed.
        let done = Waiter<MeshError?>()
        try n.onLoop { $0.blobs!.whenComplete(item) { done.fulfill($0) } }
        let error = try done.wait(15, "the waiting request to fail")
        #expect(error?.message.contains("gave up fetching") == true, "\(String(describing: error))")
        #expect(asked() == 2)
        #expect(n.blobCounters().itemsAbandoned == 2)
    }
}

@Suite struct FetchWindowTests {
    /// PROTOCOL §9.3: at most 8 chunks in flight per source, at most 128 MiB (but 2 chunks).
    @Test func theWindowShrinksForLargeChunksButNeverBelowTwo() {
        #expect(BlobService.windowChunks(chunkSizeBytes: 2 << 20, configured: 8) == 8)
        #expect(BlobService.windowChunks(chunkSizeBytes: 16 << 20, configured: 8) == 8)
        #expect(BlobService.windowChunks(chunkSizeBytes: 32 << 20, configured: 8) == 4)
        #expect(BlobService.windowChunks(chunkSizeBytes: 64 << 20, configured: 8) == 2)
        #expect(BlobService.windowChunks(chunkSizeBytes: 64 << 20, configured: 1) == 1)
    }
}
