import Foundation
import TestSupport
import Testing
@testable import Gossip
@testable import Mesh
@testable import Store

@Suite(.serialized, .ownThread()) struct FetchAfterCollectionTests {
    /// A collection that read the pins just before a fetch began may delete the recipe (and the
    /// chunks only it referenced) that the fetch goes on with. The fetch must store the recipe
    /// again and fetch what the record lacks, or the record never shows the item complete and
    /// the fetch goes round for ever.
    @Test(.ownThread(timeLimit: .minutes(2))) func aFetchWhoseStoredRecipeACollectionDeletedStoresItAgainAndCompletes() throws {
        let c = try InProcessCluster(size: 2) { i, o in
            if i == 0 { o.blob.bandwidth = BandwidthConfig(globalBytesPerSecond: 3_000_000) }
        }
        defer { c.stop() }
        let receiver = c.nodes[1]
        let (entry, path) = try c.put(on: 0, size: 6 << 20, seed: 44)
        try eventually(30, "the receiver is fetching") {
            (try? receiver.onLoop { n in n.blobs!.transfers().contains { $0.id == "\(entry.contentID)" && $0.doneBytes > 1 << 20 } }) ?? false
        }
        // What a collection would do: the recipe's rows go, then the chunks nothing references.
        let store = try Store.open(dataDir: receiver.dir)
        let db = try Database(path: "\(receiver.dir)/\(Store.databaseFileName)")
        // The running node writes chunk records all the while: wait for it as the store does.
        try db.exec("PRAGMA busy_timeout = \(Store.busyTimeoutMs)")
        try db.exec("BEGIN IMMEDIATE")
        try db.query("DELETE FROM recipe_chunks WHERE content_id = ?", [.blob(entry.contentID.digest.bytes)])
        try db.query("DELETE FROM recipes WHERE content_id = ?", [.blob(entry.contentID.digest.bytes)])
        try db.exec("COMMIT")
        let r = try store.collectGarbage(GarbageCollectionOptions(policy: KeepPolicy()))
        #expect(r.chunksDeleted > 0)
        try eventually(60, "the item completes on the receiver") { receiver.isComplete(entry.contentID) }
        try expectSameContent(receiver, entry.contentID, as: path)
        #expect(try store.verify().ok)
    }
}
