import Gossip
import Testing
@testable import Sync

func nid(_ i: Int) -> NodeID {
    let a = SplitMix64.mix(UInt64(i) &+ 777)
    return NodeID(key: Bytes32(w0: a, w1: SplitMix64.mix(a), w2: UInt64(i), w3: 1))
}

func cid(_ i: Int) -> ContentID { ContentID(digest: Bytes32(w0: UInt64(i), w1: 2, w2: 3, w3: 4)) }

func putEntry(_ origin: Int, _ seq: UInt64, hlc: UInt64, name: String = "model.onnx", content: Int? = nil, type: ItemType = .model,
              expires: Int64 = 0) -> ManifestEntry {
    ManifestEntry(origin: nid(origin), sequence: seq, hlc: hlc, contentID: cid(content ?? Int(seq) * 100 + origin), sizeBytes: 10,
                  chunkSizeBytes: 4096, type: type, createdAtMs: Int64(hlc >> 16), expiresAtMs: expires, name: name)
}

func tombstone(_ origin: Int, _ seq: UInt64, hlc: UInt64, name: String = "model.onnx", version: EntryRef? = nil) -> ManifestEntry {
    ManifestEntry(origin: nid(origin), sequence: seq, hlc: hlc,
                  payload: .tombstone(.init(scope: version.map { .version($0) } ?? .name, name: name, createdAtMs: Int64(hlc >> 16))))
}

@Suite("Catalog: versions, deletes and retention of names")
struct CatalogTests {
    @Test("The newest put of a name is its current version, and older ones stay listed with stable numbers")
    func newestPutIsCurrent() {
        let c = Catalog([putEntry(1, 1, hlc: 10), putEntry(2, 1, hlc: 30), putEntry(1, 2, hlc: 20)])
        let vs = c.versions(of: "model.onnx", nowMs: 0)
        #expect(vs.map(\.number) == [1, 2, 3])
        #expect(vs.map(\.entry.hlc) == [10, 20, 30])
        #expect(c.current("model.onnx", nowMs: 0)?.entry.origin == nid(2))
        #expect(c.version("model.onnx", number: 2, nowMs: 0)?.entry.hlc == 20)
    }

    @Test("Any arrival order gives the same catalog")
    func arrivalOrderDoesNotMatter() {
        let es = [putEntry(1, 1, hlc: 10), putEntry(2, 1, hlc: 10), putEntry(3, 1, hlc: 9), tombstone(3, 2, hlc: 9 << 1),
                  putEntry(1, 2, hlc: 40), tombstone(2, 2, hlc: 41, version: EntryRef(origin: nid(1), sequence: 2))]
        var rng = SplitMix64(seed: 7)
        let reference = Catalog(es).versions(of: "model.onnx", nowMs: 0)
        for _ in 0..<50 {
            let shuffled = es.shuffled(using: &rng)
            let c = Catalog(shuffled + shuffled)  // duplicates change nothing
            #expect(c.versions(of: "model.onnx", nowMs: 0) == reference)
        }
    }

    @Test("Concurrent puts with the same clock resolve by origin bytes, the loser stays a version")
    func concurrentPutsResolveByOrigin() {
        let c = Catalog([putEntry(1, 1, hlc: 50), putEntry(2, 1, hlc: 50)])
        let winner = max(nid(1), nid(2))
        #expect(c.current("model.onnx", nowMs: 0)?.entry.origin == winner)
        #expect(c.versions(of: "model.onnx", nowMs: 0).count == 2)
    }

    @Test("A name tombstone deletes every earlier version; a later put makes the name live again")
    func nameTombstoneDeletesEarlierVersions() {
        var c = Catalog([putEntry(1, 1, hlc: 10), putEntry(1, 2, hlc: 20), tombstone(2, 1, hlc: 25)])
        #expect(c.current("model.onnx", nowMs: 0) == nil)
        #expect(c.liveNames(nowMs: 0).isEmpty)
        #expect(c.versions(of: "model.onnx", nowMs: 0).allSatisfy { $0.state == .deleted })
        c.insert(putEntry(3, 1, hlc: 30))
        #expect(c.current("model.onnx", nowMs: 0)?.number == 3)
        #expect(c.versions(of: "model.onnx", nowMs: 0).map(\.state) == [.deleted, .deleted, .live])
    }

    @Test("A tombstone is never undone by an older put that arrives late")
    func olderPutCannotUndoATombstone() {
        var c = Catalog([tombstone(2, 1, hlc: 25)])
        c.insert(putEntry(1, 1, hlc: 20))
        #expect(c.current("model.onnx", nowMs: 0) == nil)
    }

    @Test("A version tombstone deletes one version, and the previous live one becomes current")
    func versionTombstoneDeletesOneVersion() {
        let c = Catalog([putEntry(1, 1, hlc: 10), putEntry(1, 2, hlc: 20),
                         tombstone(2, 1, hlc: 30, version: EntryRef(origin: nid(1), sequence: 2))])
        #expect(c.current("model.onnx", nowMs: 0)?.number == 1)
        #expect(c.versions(of: "model.onnx", nowMs: 0).map(\.state) == [.live, .deleted])
    }

    @Test("A version past its expires_ms is expired and no longer current; the next expiry is reported")
    func expiredVersionsAreNotCurrent() {
        let c = Catalog([putEntry(1, 1, hlc: 10, expires: 1_000), putEntry(1, 2, hlc: 20, expires: 2_000)])
        #expect(c.current("model.onnx", nowMs: 500)?.number == 2)
        #expect(c.nextExpiry(after: 500) == 1_000)
        #expect(c.current("model.onnx", nowMs: 1_500)?.number == 2)
        #expect(c.versions(of: "model.onnx", nowMs: 1_500).map(\.state) == [.expired, .live])
        #expect(c.current("model.onnx", nowMs: 2_000) == nil)
    }

    @Test("keep_versions bounds the kept contents per name; deleted and expired versions are not kept")
    func keepVersionsBoundsKeptContents() {
        let es = (1...5).map { putEntry(1, UInt64($0), hlc: UInt64($0) * 10) } + [tombstone(2, 1, hlc: 45, version: EntryRef(origin: nid(1), sequence: 4))]
        let c = Catalog(es)
        let kept = c.keptContents(policy: KeepPolicy(keepVersions: [.model: 3]), nowMs: 0)
        #expect(kept == [cid(501), cid(301), cid(201)])
        #expect(c.keptContents(policy: KeepPolicy(keepVersions: [.model: 1]), nowMs: 0) == [cid(501)])
    }

    @Test("Retention stamps expires_ms from the creation time and the type")
    func retentionStampsExpiry() {
        let p = KeepPolicy(retentionMs: [.game: 30 * 86_400_000])
        #expect(p.expiresAtMs(type: .game, createdAtMs: 1_000) == 1_000 + 30 * 86_400_000)
        #expect(p.expiresAtMs(type: .npz, createdAtMs: 1_000) == 0)
    }
}

@Suite("Keeper: what a node keeps as entries arrive")
struct KeeperTests {
    @Test("New versions are wanted; versions pushed out of keep_versions are released")
    func versionsOutsideTheWindowAreReleased() {
        var k = Keeper(policy: KeepPolicy(keepVersions: [.model: 2]), nowMs: 0)
        #expect(k.insert(putEntry(1, 1, hlc: 10), nowMs: 0).wanted.map(\.contentID) == [cid(101)])
        #expect(k.insert(putEntry(1, 2, hlc: 20), nowMs: 0).wanted.map(\.contentID) == [cid(201)])
        let c = k.insert(putEntry(1, 3, hlc: 30), nowMs: 0)
        #expect(c.wanted.map(\.contentID) == [cid(301)])
        #expect(c.released == [cid(101)])
        #expect(k.keptContents == [cid(201), cid(301)])
    }

    @Test("A tombstone releases the name's contents; a content shared with another kept name stays kept")
    func tombstoneReleasesUnsharedContents() {
        var k = Keeper(nowMs: 0)
        _ = k.insert(putEntry(1, 1, hlc: 10, name: "a", content: 7), nowMs: 0)
        _ = k.insert(putEntry(1, 2, hlc: 11, name: "b", content: 7), nowMs: 0)
        _ = k.insert(putEntry(1, 3, hlc: 12, name: "a", content: 8), nowMs: 0)
        let c = k.insert(tombstone(2, 1, hlc: 20, name: "a"), nowMs: 0)
        #expect(c.released == [cid(8)])
        #expect(k.isKept(cid(7)))
        #expect(!k.isKept(cid(8)))
    }

    @Test("A late older version that falls outside the window is never wanted")
    func lateOlderVersionIsNotWanted() {
        var k = Keeper(policy: KeepPolicy(keepVersions: [.model: 1]), nowMs: 0)
        _ = k.insert(putEntry(1, 2, hlc: 20), nowMs: 0)
        #expect(k.insert(putEntry(1, 1, hlc: 10), nowMs: 0).isEmpty)
    }

    @Test("Expiry releases a version when the node refreshes past its expires_ms")
    func expiryReleasesOnRefresh() {
        var k = Keeper(nowMs: 0)
        _ = k.insert(putEntry(1, 1, hlc: 10, expires: 1000), nowMs: 0)
        #expect(k.refresh(nowMs: 999).isEmpty)
        #expect(k.refresh(nowMs: 1000).released == [cid(101)])
    }
}

@Suite("Keeper: a newer version not yet here never costs the last complete one")
struct KeeperFallbackTests {
    @Test("With keep_versions 1, the old version stays kept until the new one is complete here")
    func oldVersionStaysUntilTheNewOneIsComplete() {
        var complete: Set<ContentID> = [cid(101)]
        let isComplete: Keeper.Completeness = { complete.contains($0) }
        var k = Keeper(policy: KeepPolicy(keepVersions: [.model: 1]), nowMs: 0)
        _ = k.insert(putEntry(1, 1, hlc: 10), nowMs: 0, isComplete: isComplete)
        let c = k.insert(putEntry(1, 2, hlc: 20), nowMs: 0, isComplete: isComplete)
        #expect(c.wanted.map(\.contentID) == [cid(201)])
        #expect(c.released.isEmpty, "version 1 released before version 2 arrived")
        #expect(k.isKept(cid(101)) && k.isKept(cid(201)))
        complete.insert(cid(201))
        let done = k.completed(cid(201), nowMs: 0, isComplete: isComplete)
        #expect(done.released == [cid(101)])
        #expect(!k.isKept(cid(101)))
    }

    @Test("A name whose newest version is already complete keeps no fallback")
    func noFallbackWhenTheNewestIsHere() {
        var k = Keeper(policy: KeepPolicy(keepVersions: [.model: 1]), nowMs: 0)
        _ = k.insert(putEntry(1, 1, hlc: 10), nowMs: 0)
        #expect(k.insert(putEntry(1, 2, hlc: 20), nowMs: 0).released == [cid(101)])
    }

    @Test("A deleted name keeps nothing, fallback or not")
    func tombstoneDropsTheFallback() {
        let isComplete: Keeper.Completeness = { $0 == cid(101) }
        var k = Keeper(policy: KeepPolicy(keepVersions: [.model: 1]), nowMs: 0)
        _ = k.insert(putEntry(1, 1, hlc: 10), nowMs: 0, isComplete: isComplete)
        _ = k.insert(putEntry(1, 2, hlc: 20), nowMs: 0, isComplete: isComplete)
        let c = k.insert(tombstone(2, 1, hlc: 30), nowMs: 0, isComplete: isComplete)
        #expect(Set(c.released) == [cid(101), cid(201)])
        #expect(k.keptContents.isEmpty)
    }
}
