import Foundation
import Store
import TestSupport
import Testing

/// What the store refuses whatever path an entry takes (docs/PROTOCOL.md §3, §4), and the
/// fork evidence it keeps.
@Suite("Entry validity, fork evidence and members' credentials")
struct EntryEvidenceTests {
    func entry(_ signer: NodeIdentity, seq: UInt64, name: String = "remote.npz", chunkSize: UInt32 = 65536,
               content: UInt64 = 1) -> ManifestEntry {
        ManifestEntry(origin: signer.nodeID, sequence: seq, contentID: ContentID(digest: Bytes32(w0: content, w1: 2, w2: 3, w3: 4)),
                      sizeBytes: 10, chunkSizeBytes: chunkSize, type: .npz, createdAtMs: 1_700_000_000_000, name: name).signed(by: signer)
    }

    @Test("An entry with a chunk size outside 4 KiB … 64 MiB is refused even when it never went through the decoder")
    func chunkSizeOutOfRange() throws {
        let f = try Fixture()
        let peer = NodeIdentity.generate()
        for (seq, size) in [(1, 100), (2, 4095), (3, (64 << 20) + 1), (4, 128 << 20)] as [(UInt64, UInt32)] {
            #expect(try f.store.insertRemoteEntry(entry(peer, seq: seq, chunkSize: size), verifier: Ed25519Verifier())
                    == .invalid(field: "entry.chunkSize"), "chunk size \(size)")
        }
        #expect(try f.store.items().isEmpty)
        for (seq, size) in [(5, 4096), (6, 64 << 20)] as [(UInt64, UInt32)] {
            #expect(try f.store.insertRemoteEntry(entry(peer, seq: seq, chunkSize: size), verifier: Ed25519Verifier()) == .inserted)
        }
        #expect(try f.store.items().count == 2)
        // `init --chunk-size` has the same bounds: the constants live in one place.
        #expect(Chunking.minChunkSizeBytes == ManifestEntry.minChunkSizeBytes && Chunking.maxChunkSizeBytes == ManifestEntry.maxChunkSizeBytes)
        for bad in [Chunking.minChunkSizeBytes - 1, Chunking.maxChunkSizeBytes + 1] {
            let d = TestDir("init-bad-chunk")
            #expect(meshError { _ = try Store.initialize(dataDir: d.sub("data"), name: "x", chunkSizeBytes: bad) }?.code == .invalidInput)
        }
    }

    @Test("A store from an earlier version holding entries with an out-of-range chunk size opens and lists without them")
    func migrationDropsOutOfRangeEntries() throws {
        let f = try Fixture()
        let peer = NodeIdentity.generate()
        let good = entry(peer, seq: 1)
        #expect(try f.store.insertRemoteEntry(good, verifier: Ed25519Verifier()) == .inserted)
        // What an earlier version stored when a peer sent one, at schema version 5 (before migration 6 dropped such entries).
        let bad = entry(peer, seq: 2, chunkSize: 100)
        do {
            let db = try Database(path: "\(f.dataDir)/manifest.sqlite")
            try db.query("""
                INSERT INTO items(origin, sequence, kind, content_id, name, type, size_bytes, chunk_size, created_ms,
                                  signature, encoded, received_at_ms) VALUES(?, 2, 1, ?, 'bad', 3, 10, 100, 0, ?, ?, 0)
                """, [.blob(peer.nodeID.key.bytes), .blob(bad.contentID.digest.bytes), .blob(bad.signature.bytes), .blob(bad.encoded)])
            // Version 5 had no credential column for peers.
            try db.exec("ALTER TABLE peers DROP COLUMN credential")
            try db.query("""
                INSERT INTO peers(node_id, name, address, state, incarnation, last_seen_ms, role, updated_ms)
                VALUES(?, 'gpu1', '10.0.0.1:7946', 'alive', 3, 0, '', 0)
                """, [.blob(peer.nodeID.key.bytes)])
            // Nor the tables of later migrations (7: chunk backings).
            try db.exec("DROP TABLE chunk_backings")
            try db.exec("PRAGMA user_version = 5")
        }
        let reopened = try Store.open(dataDir: f.dataDir)
        #expect(try reopened.schemaVersion() == Schema.currentVersion)
        #expect(try reopened.items().map(\.entry) == [good])
        #expect(try reopened.peers().map(\.credential) == [[]])
    }

    @Test("A member's credential is kept with it, so that a restarted node still admits it")
    func peerCredential() throws {
        let f = try Fixture()
        let id = NodeIdentity.generate().nodeID
        try f.store.upsertPeer(PeerRecord(nodeID: id, name: "spot-7", address: "10.0.0.7:7946", state: "alive", incarnation: 2,
                                          lastSeenMs: 1, role: "selfplay", credential: [1, 2, 3]))
        #expect(try Store.open(dataDir: f.dataDir).peers().map(\.credential) == [[1, 2, 3]])
        try f.store.upsertPeer(PeerRecord(nodeID: id, name: "spot-7", address: "10.0.0.7:7946", state: "alive", incarnation: 3,
                                          lastSeenMs: 2, role: "selfplay", credential: [4]))
        #expect(try Store.open(dataDir: f.dataDir).peers().map(\.credential) == [[4]])
    }

    @Test("A fork reported by the gossip layer is kept once, in either order, and survives reopening")
    func forkEvidence() throws {
        let f = try Fixture()
        let peer = NodeIdentity.generate()
        let a = entry(peer, seq: 4, name: "one", content: 1)
        let b = entry(peer, seq: 4, name: "two", content: 2)
        #expect(try f.store.insertRemoteEntry(a, verifier: Ed25519Verifier()) == .inserted)
        #expect(try f.store.recordFork(a, b, verifier: Ed25519Verifier(), nowMs: 1234))
        #expect(try !f.store.recordFork(a, b, verifier: Ed25519Verifier()))
        #expect(try !f.store.recordFork(b, a, verifier: Ed25519Verifier()))
        // The same pair met through the store's own check is not a second fork either.
        #expect(try f.store.insertRemoteEntry(b, verifier: Ed25519Verifier()) == .fork(existing: a))
        let reopened = try Store.open(dataDir: f.dataDir)
        let forks = try reopened.forks()
        #expect(forks.count == 1)
        #expect(forks.first?.firstEntry == a && forks.first?.secondEntry == b)
        #expect(forks.first?.origin == peer.nodeID && forks.first?.sequence == 4 && forks.first?.detectedMs == 1234)
        #expect(try reopened.status().forks == 1)
        #expect(try reopened.entry(origin: peer.nodeID, sequence: 4) == a)
    }

    @Test("What is not a fork is refused as evidence")
    func notAFork() throws {
        let f = try Fixture()
        let peer = NodeIdentity.generate(), other = NodeIdentity.generate()
        let a = entry(peer, seq: 1, name: "one")
        var forged = entry(peer, seq: 1, name: "two")
        forged.name = "three"  // signature no longer matches
        for (x, y) in [(a, a), (a, entry(peer, seq: 2, name: "two")), (a, entry(other, seq: 1, name: "two")), (a, forged)] {
            #expect(meshError { try f.store.recordFork(x, y, verifier: Ed25519Verifier()) }?.code == .invalidInput)
        }
        #expect(try f.store.forks().isEmpty)
    }
}
