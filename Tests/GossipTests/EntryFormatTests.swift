import Testing
@testable import Gossip

@Suite("Manifest entries, version 1 and 2")
struct EntryFormatTests {
    let origin = nodeID(3)

    func put(format: UInt8 = 2, seq: UInt64 = 1, hlc: UInt64 = 5 << 16, name: String = "m.pt", chunk: UInt32 = 4096) -> ManifestEntry {
        ManifestEntry(format: format, origin: origin, sequence: seq, hlc: hlc, contentID: ContentID(digest: Bytes32(w0: 1, w1: 2, w2: 3, w3: 4)),
                      sizeBytes: 10_000, chunkSizeBytes: chunk, type: .checkpoint, flags: 0, createdAtMs: 5, expiresAtMs: 99,
                      name: name).signed(by: FakeSigner(nodeID: origin))
    }

    @Test("A version-2 put round-trips byte for byte, and every truncation is refused")
    func v2PutRoundTrips() throws {
        let e = put()
        let bytes = e.encoded
        let back = try ManifestEntry.decode(bytes)
        #expect(back == e)
        #expect(back.encoded == bytes)
        #expect(back.put?.expiresAtMs == 99)
        #expect(back.verify(with: FakeVerifier()))
        for cut in 0..<bytes.count { #expect(throws: DecodeError.self) { try ManifestEntry.decode(Array(bytes[0..<cut])) } }
        #expect(throws: DecodeError.trailingBytes(1)) { try ManifestEntry.decode(bytes + [0]) }
    }

    @Test("A version-1 put keeps its encoding and signature domain, and gets its clock from created_ms")
    func v1PutKeepsItsEncoding() throws {
        let e = put(format: 1)
        let bytes = e.encoded
        #expect(bytes[0] == 1)
        #expect(bytes.count == 1 + 1 + 32 + 8 + 32 + 8 + 4 + 1 + 8 + 2 + 4 + 64)
        let back = try ManifestEntry.decode(bytes)
        #expect(back.encoded == bytes)
        #expect(back.hlc == HybridLogicalClock.fromWallClock(ms: 5))
        #expect(back.signedBytes.starts(with: SigningDomain.manifestEntry))
        #expect(put().signedBytes.starts(with: SigningDomain.manifestEntryV2))
    }

    @Test("Tombstones of both scopes round-trip")
    func tombstonesRoundTrip() throws {
        for scope in [ManifestEntry.Tombstone.Scope.name, .version(EntryRef(origin: nodeID(9), sequence: 4))] {
            let t = ManifestEntry(origin: origin, sequence: 2, hlc: 7 << 16,
                                  payload: .tombstone(.init(scope: scope, name: "games/a.db", createdAtMs: 7))).signed(by: FakeSigner(nodeID: origin))
            let back = try ManifestEntry.decode(t.encoded)
            #expect(back == t)
            #expect(back.kind == .tombstone)
            #expect(back.name == "games/a.db")
            #expect(back.put == nil)
        }
    }

    @Test("An entry of an unknown kind is kept verbatim, so it can be relayed and verified")
    func unknownKindsAreKeptVerbatim() throws {
        let u = ManifestEntry(origin: origin, sequence: 3, hlc: 1, payload: .unknown(kind: 77, body: [1, 2, 3])).signed(by: FakeSigner(nodeID: origin))
        let back = try ManifestEntry.decode(u.encoded)
        #expect(back == u)
        #expect(back.kind == nil)
        #expect(back.kindCode == 77)
        #expect(back.verify(with: FakeVerifier()))
    }

    @Test("Chunk sizes outside 4 KiB … 64 MiB are refused at decode, in both versions", arguments: [UInt32(100), UInt32(4095), UInt32((64 << 20) + 1), UInt32(128 << 20)])
    func outOfRangeChunkSizesAreRefused(_ size: UInt32) {
        for f: UInt8 in [1, 2] {
            #expect(throws: DecodeError.invalid(field: "entry.chunkSize")) { try ManifestEntry.decode(put(format: f, chunk: size).encoded) }
        }
    }

    @Test("Kind 0, a bad tombstone scope, reserved put flags and an empty name are refused")
    func invalidBodiesAreRefused() {
        var bytes = put().encoded
        bytes[1] = 0
        #expect(throws: DecodeError.self) { try ManifestEntry.decode(bytes) }
        let flagged = ManifestEntry(origin: origin, sequence: 1, hlc: 1, contentID: ContentID(digest: .zero), sizeBytes: 0,
                                    chunkSizeBytes: 4096, type: .other, flags: 0x80, createdAtMs: 0, name: "x")
        #expect(throws: DecodeError.invalid(field: "entry.flags")) { try ManifestEntry.decode(flagged.encoded) }
        let unnamed = ManifestEntry(origin: origin, sequence: 1, hlc: 1, payload: .tombstone(.init(scope: .name, name: "", createdAtMs: 0)))
        #expect(throws: DecodeError.invalid(field: "tombstone.name")) { try ManifestEntry.decode(unnamed.encoded) }
    }

    @Test("The order key sorts by clock, then origin bytes, then sequence")
    func orderKeySortsByClockOriginSequence() {
        let a = OrderKey(hlc: 1, origin: nodeID(2), sequence: 9)
        let b = OrderKey(hlc: 2, origin: nodeID(1), sequence: 1)
        #expect(a < b)
        let lo = min(nodeID(1), nodeID(2)), hi = max(nodeID(1), nodeID(2))
        #expect(OrderKey(hlc: 5, origin: lo, sequence: 9) < OrderKey(hlc: 5, origin: hi, sequence: 1))
        #expect(OrderKey(hlc: 5, origin: lo, sequence: 1) < OrderKey(hlc: 5, origin: lo, sequence: 2))
    }

    @Test("A hybrid logical clock never goes backwards, whatever the wall clock does")
    func hybridLogicalClockIsMonotonic() {
        var highest: UInt64 = 0
        for wall in [Int64(1000), 1000, 999, 5, 2000, 2000, 1_999] {
            let next = HybridLogicalClock.next(wallMs: wall, after: highest)
            #expect(next > highest)
            #expect(HybridLogicalClock.wallMs(of: next) >= min(wall, HybridLogicalClock.wallMs(of: highest)))
            highest = next
        }
        #expect(HybridLogicalClock.next(wallMs: 3000, after: highest) == HybridLogicalClock.fromWallClock(ms: 3000))
        #expect(HybridLogicalClock.fromWallClock(ms: -5) == 0)
    }
}
