import Foundation
import Gossip
import Store
import TestSupport
import Testing

@Suite("Broadcast put: the flag is signed into the entry and survives the wire")
struct BroadcastPutTests {
    @Test("A broadcast put carries the flag through encode and decode; the same content put again without it is a new version")
    func broadcastFlagIsStoredAndAFlipMakesANewVersion() throws {
        let f = try Fixture()
        let file = f.dir.sub("w.bin")
        try writePseudoRandomFile(file, size: 100_000, seed: 3)
        let b = try f.store.ingest(path: file, name: "w.bin", type: .other, broadcast: true, signer: f.identity)
        #expect(b.isNewEntry && b.entry.isBroadcast && b.entry.put?.flags == ManifestEntry.Put.broadcastFlag)
        let decoded = try ManifestEntry.decode(b.entry.encoded)
        #expect(decoded.isBroadcast && decoded == b.entry)
        #expect(try f.store.entry(contentID: b.entry.contentID)?.isBroadcast == true)
        let same = try f.store.ingest(path: file, name: "w.bin", type: .other, broadcast: true, signer: f.identity)
        #expect(!same.isNewEntry && same.entry == b.entry)
        let plain = try f.store.ingest(path: file, name: "w.bin", type: .other, signer: f.identity)
        #expect(plain.isNewEntry && !plain.entry.isBroadcast && plain.entry.sequence == b.entry.sequence + 1)
    }
}
