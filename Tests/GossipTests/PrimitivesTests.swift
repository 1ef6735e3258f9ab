import Testing
@testable import Gossip

@Suite struct PrimitivesTests {
    @Test func base32RoundTripsEveryLength() {
        for n in 0..<40 {
            let b = (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
            #expect(Base32.decode(Base32.encode(b)) == b)
        }
    }

    @Test func nodeIDPrintsAs52CharactersAndParsesBack() throws {
        let id = NodeID(key: Bytes32(w0: 1, w1: 2, w2: 3, w3: .max))
        #expect(id.description.count == 52)
        #expect(NodeID(id.description) == id)
        #expect(NodeID(id.description.uppercased()) == id)
        #expect(id.short.count == NodeID.shortLength)
        #expect(NodeID("not-a-node-id") == nil)
    }

    @Test func bytes32BytesAreBigEndianWireOrder() {
        let b = Array(0..<32).map(UInt8.init)
        let v = Bytes32(bytes: b)!
        #expect(v.bytes == b)
        #expect(v.w0 == 0x0001020304050607)
        #expect(Bytes32(hex: v.hex) == v)
    }

    @Test func manifestEntryRoundTripsAndRejectsTrailingBytes() throws {
        let e = ManifestEntry(origin: NodeID(key: .zero), sequence: 7, contentID: ContentID(digest: Bytes32(w0: 9, w1: 0, w2: 0, w3: 1)),
                              sizeBytes: 123, chunkSizeBytes: 2 << 20, type: .npz, createdAtMs: 1_700_000_000_000, name: "a/b.npz")
        let bytes = e.encoded
        #expect(try ManifestEntry.decode(bytes) == e)
        #expect(throws: DecodeError.trailingBytes(1)) { try ManifestEntry.decode(bytes + [0]) }
        for cut in 0..<bytes.count { #expect(throws: DecodeError.self) { try ManifestEntry.decode(Array(bytes[0..<cut])) } }
    }
}
