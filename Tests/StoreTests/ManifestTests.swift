import Foundation
import Store
import TestSupport
import Testing

@Suite("Manifest tables")
struct ManifestTests {
    func remoteEntry(_ signer: NodeIdentity, seq: UInt64, name: String = "remote.npz",
                     content: ContentID = ContentID(digest: Bytes32(w0: 1, w1: 2, w2: 3, w3: 4))) -> ManifestEntry {
        ManifestEntry(origin: signer.nodeID, sequence: seq, contentID: content, sizeBytes: 10,
                      chunkSizeBytes: 65536, type: .npz, createdAtMs: 1_700_000_000_000, name: name).signed(by: signer)
    }

    @Test("Remote entries are inserted once, duplicates are no-ops, and bad signatures are refused")
    func remoteEntries() throws {
        let f = try Fixture()
        let peer = NodeIdentity.generate()
        let e = remoteEntry(peer, seq: 1)
        let v = Ed25519Verifier()
        #expect(try f.store.insertRemoteEntry(e, verifier: v) == .inserted)
        #expect(try f.store.insertRemoteEntry(e, verifier: v) == .duplicate)
        var forged = e
        forged.name = "evil"
        #expect(try f.store.insertRemoteEntry(forged, verifier: v) == .badSignature)
        #expect(try f.store.entry(origin: peer.nodeID, sequence: 1) == e)
        #expect(try f.store.highestSequence(origin: peer.nodeID) == 1)
        #expect(try f.store.originSummary()[peer.nodeID] == 1)
        let items = try f.store.items()
        #expect(items.count == 1)
        #expect(items[0].isComplete == false)  // no recipe, no chunks yet
        #expect(try f.store.entries(origin: peer.nodeID, after: 0, limit: 10) == [e])
    }

    @Test("Exporting an item whose entry arrived before its chunk list says it is incomplete")
    func entryWithoutRecipe() throws {
        let f = try Fixture()
        let peer = NodeIdentity.generate()
        #expect(try f.store.insertRemoteEntry(remoteEntry(peer, seq: 1), verifier: Ed25519Verifier()) == .inserted)
        let e = try #require(meshError { try f.store.export(try f.store.resolve("remote.npz"), to: f.dir.sub("x")) })
        #expect(e.code == .incomplete)
        #expect(!FS.exists(f.dir.sub("x")))
    }

    @Test("A different entry with the same origin and sequence is kept as fork evidence")
    func fork() throws {
        let f = try Fixture()
        let peer = NodeIdentity.generate()
        let a = remoteEntry(peer, seq: 3, name: "one")
        let b = remoteEntry(peer, seq: 3, name: "two")
        #expect(try f.store.insertRemoteEntry(a, verifier: Ed25519Verifier()) == .inserted)
        #expect(try f.store.insertRemoteEntry(b, verifier: Ed25519Verifier()) == .fork(existing: a))
        #expect(try f.store.insertRemoteEntry(b, verifier: Ed25519Verifier()) == .fork(existing: a))
        let forks = try f.store.forks()
        #expect(forks.count == 1)
        #expect(forks[0].first == a.encoded && forks[0].second == b.encoded)
        #expect(try f.store.entry(origin: peer.nodeID, sequence: 3) == a)
        #expect(try f.store.status().forks == 1)
    }

    @Test("Own entries learned back from peers move the local sequence past them")
    func ownSequenceRecovers() throws {
        let f = try Fixture()
        let mine = remoteEntry(f.identity, seq: 7)
        #expect(try f.store.insertRemoteEntry(mine, verifier: Ed25519Verifier()) == .inserted)
        let file = f.dir.sub("x")
        try writePseudoRandomFile(file, size: 10, seed: 1)
        #expect(try f.store.ingest(path: file, signer: f.identity).entry.sequence == 8)
    }

    @Test("A recipe is accepted only if it recomputes its content id; chunks then arrive verified")
    func recipesAndChunks() throws {
        let src = try Fixture(label: "src")
        let dst = try Fixture(label: "dst")
        let file = src.dir.sub("data.npz")
        try writePseudoRandomFile(file, size: 3 * 65536 + 100, seed: 4)
        let r = try src.store.ingest(path: file, signer: src.identity)
        let recipe = try #require(try src.store.recipe(r.entry.contentID))
        // A tampered chunk list is refused.
        var bad = recipe.chunks
        bad.swapAt(0, 1)
        #expect(throws: MeshError.self) {
            try dst.store.insertRecipe(contentID: r.entry.contentID, sizeBytes: recipe.sizeBytes,
                                       chunkSizeBytes: recipe.chunkSizeBytes, chunks: bad)
        }
        #expect(throws: MeshError.self) {
            try dst.store.insertRecipe(contentID: r.entry.contentID, sizeBytes: recipe.sizeBytes + 1,
                                       chunkSizeBytes: recipe.chunkSizeBytes, chunks: recipe.chunks)
        }
        #expect(try dst.store.recipe(r.entry.contentID) == nil)
        // The real one is accepted; the entry arrives; chunks are then missing until written.
        try dst.store.insertRecipe(contentID: r.entry.contentID, sizeBytes: recipe.sizeBytes,
                                   chunkSizeBytes: recipe.chunkSizeBytes, chunks: recipe.chunks)
        #expect(try dst.store.insertRemoteEntry(r.entry, verifier: Ed25519Verifier()) == .inserted)
        #expect(try dst.store.missingChunks(r.entry.contentID) == recipe.chunks)
        #expect(try dst.store.items().first?.isComplete == false)
        let early = dst.dir.sub("early.npz")
        #expect(meshError { try dst.store.export(try dst.store.resolve("data.npz"), to: early) }?.code == .incomplete)
        #expect(!FS.exists(early))
        // A chunk with the wrong bytes is refused and not stored.
        var wrong = try src.store.readChunk(recipe.chunks[0])
        wrong[0] ^= 0xff
        #expect(throws: MeshError.self) { try dst.store.writeChunk(recipe.chunks[0], bytes: wrong) }
        #expect(!dst.store.hasChunk(recipe.chunks[0]))
        // One chunk alone, the rest as a batch; a batch with one bad chunk stores nothing.
        try dst.store.writeChunk(recipe.chunks[0], bytes: try src.store.readChunk(recipe.chunks[0]))
        var batch = try recipe.chunks.dropFirst().map { (hash: $0, bytes: try src.store.readChunk($0)) }
        var spoiled = batch
        spoiled[1].bytes[5] ^= 1
        #expect(throws: MeshError.self) { try dst.store.writeChunks(spoiled) }
        #expect(!dst.store.hasChunk(recipe.chunks[1]))
        #expect(try dst.store.missingChunks(r.entry.contentID)?.count == 3)
        try dst.store.writeChunks(batch)
        batch.removeAll()
        #expect(try dst.store.missingChunks(r.entry.contentID) == [])
        #expect(try dst.store.isComplete(r.entry.contentID))
        let out = dst.dir.sub("out.npz")
        try dst.store.export(try dst.store.resolve("data.npz"), to: out)
        #expect(try hashOfFile(out) == hashOfFile(file))
        #expect(try dst.store.verify().ok)
    }

    @Test("The spot outbox survives a reopen, keeps the first enqueue time and lists the oldest first")
    func outbox() throws {
        let f = try Fixture()
        let a = ContentID(digest: Bytes32(bytes: [UInt8](repeating: 1, count: 32))!)
        let b = ContentID(digest: Bytes32(bytes: [UInt8](repeating: 2, count: 32))!)
        try f.store.enqueueOutbox(OutboxItem(contentID: b, type: .game, sizeBytes: 10, enqueuedMs: 2000))
        try f.store.enqueueOutbox(OutboxItem(contentID: a, type: .npz, sizeBytes: 20, enqueuedMs: 1000))
        try f.store.enqueueOutbox(OutboxItem(contentID: a, type: .npz, sizeBytes: 20, enqueuedMs: 3000))  // idempotent
        let reopened = try Store.open(dataDir: f.dataDir)
        #expect(try reopened.outboxCount() == 2)
        let items = try reopened.outboxItems()
        #expect(items.map(\.contentID) == [a, b])
        #expect(items[0] == OutboxItem(contentID: a, type: .npz, sizeBytes: 20, enqueuedMs: 1000))
        #expect(try reopened.gauges().oldestOutboxEnqueuedMs == 1000)
        try reopened.removeOutbox(a)
        try reopened.removeOutbox(b)
        #expect(try reopened.outboxCount() == 0)
    }

    @Test("Peers are upserted, listed and removed, and survive a reopen")
    func peers() throws {
        let f = try Fixture()
        let id = NodeIdentity.generate().nodeID
        try f.store.upsertPeer(PeerRecord(nodeID: id, name: "gpu1", address: "10.0.0.1:7946", state: "alive",
                                          incarnation: 1, lastSeenMs: 10, role: "worker"))
        try f.store.upsertPeer(PeerRecord(nodeID: id, name: "gpu1", address: "10.0.0.1:7946", state: "suspect",
                                          incarnation: 2, lastSeenMs: 20, role: "worker"))
        let again = try Store.open(dataDir: f.dataDir)
        let peers = try again.peers()
        #expect(peers.count == 1)
        #expect(peers[0].state == "suspect" && peers[0].incarnation == 2)
        try again.removePeer(id)
        #expect(try again.peers().isEmpty)
    }
}
