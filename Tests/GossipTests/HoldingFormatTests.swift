import Testing
@testable import Gossip

/// Holder records (kind 4) and node facts (kind 5): docs/PROTOCOL.md §4.6, §4.7.
@Suite("Holder records and node facts: encoding and decoder rules")
struct HoldingFormatTests {
    let origin = nodeID(5)

    func content(_ i: UInt64) -> ContentID { ContentID(digest: Bytes32(w0: i, w1: 7, w2: 7, w3: 7)) }

    func entry(_ p: ManifestEntry.Payload, seq: UInt64 = 4) -> ManifestEntry {
        ManifestEntry(origin: origin, sequence: seq, hlc: 9 << 16, payload: p).signed(by: FakeSigner(nodeID: origin))
    }

    /// The bytes of a version-2 entry of `kind` with this body, signed.
    func raw(kind: UInt8, body: [UInt8]) -> [UInt8] {
        var w = ByteWriter()
        w.u8(2); w.u8(kind); w.bytes32(origin.key); w.u64(4); w.u64(9 << 16); w.blob16(body)
        w.raw(Signature.zero.bytes)
        return w.bytes
    }

    @Test("A holder record round-trips byte for byte, sorted, and every truncation is refused")
    func holdingRoundTrips() throws {
        let h = ManifestEntry.Holding(held: [content(3), content(1), content(3)], dropped: [content(2), content(1)])
        #expect(h.held == [content(1), content(3)])
        #expect(h.dropped == [content(2)], "an id in both lists counts as held")
        let e = entry(.holding(h))
        let bytes = e.encoded
        #expect(bytes.count == 1 + 1 + 32 + 8 + 8 + 2 + (2 + 2 * 32 + 2 + 32) + 64)
        let back = try ManifestEntry.decode(bytes)
        #expect(back == e)
        #expect(back.kind == .holding && back.kindCode == 4)
        #expect(back.encoded == bytes)
        #expect(back.verify(with: FakeVerifier()))
        #expect(back.name == "" && back.put == nil)
        for cut in 0..<bytes.count { #expect(throws: DecodeError.self) { try ManifestEntry.decode(Array(bytes[0..<cut])) } }
    }

    @Test("A full holder record of 120 ids fits the body")
    func fullHoldingFits() throws {
        let h = ManifestEntry.Holding(held: (1...60).map { content($0) }, dropped: (61...120).map { content($0) })
        #expect(h.invalidField == nil)
        let e = entry(.holding(h))
        #expect(try ManifestEntry.decode(e.encoded) == e)
        #expect(e.encoded.count - 1 - 1 - 32 - 8 - 8 - 2 - 64 == 2 + 2 + 120 * 32)
    }

    @Test("A holder record that is empty, too long, unsorted, repeated or in both lists is malformed", arguments: [
        ("empty", [], []),
        ("unsorted held", [2, 1], []),
        ("repeated dropped", [], [4, 4]),
        ("in both lists", [1, 2], [2]),
        ("121 ids", Array(1...61), Array(62...121)),
    ] as [(String, [UInt64], [UInt64])])
    func holdingRules(_ what: String, _ held: [UInt64], _ dropped: [UInt64]) {
        var b = ByteWriter()
        b.u16(UInt16(held.count)); for c in held { b.bytes32(content(c).digest) }
        b.u16(UInt16(dropped.count)); for c in dropped { b.bytes32(content(c).digest) }
        #expect(throws: DecodeError.self, "\(what)") { try ManifestEntry.decode(raw(kind: 4, body: b.bytes)) }
        #expect(ManifestEntry.Holding(unchecked: held.map(content), dropped: dropped.map(content)).invalidField != nil, "\(what)")
    }

    @Test("A holder record with bytes after its lists is malformed")
    func holdingTrailing() {
        var b = ByteWriter()
        b.u16(1); b.bytes32(content(1).digest); b.u16(0); b.u8(0)
        #expect(throws: DecodeError.trailingBytes(1)) { try ManifestEntry.decode(raw(kind: 4, body: b.bytes)) }
    }

    @Test("Node facts round-trip byte for byte with every field, and every truncation is refused")
    func factsRoundTrip() throws {
        let f = ManifestEntry.NodeFacts(roles: ["training", "storage"], ephemeral: true, excluded: true, full: false,
                                        diskTotalBytes: 1 << 40, diskUsedBytes: 3 << 30, diskFreeBytes: (1 << 40) - (5 << 30),
                                        nfsGroup: "gh200-a")
        let e = entry(.nodeFacts(f))
        let bytes = e.encoded
        #expect(bytes.count == 1 + 1 + 32 + 8 + 8 + 2 + (1 + 24 + 1 + (2 + 8) + (2 + 7) + (2 + 7)) + 64)
        let back = try ManifestEntry.decode(bytes)
        #expect(back == e)
        #expect(back.kind == .nodeFacts && back.kindCode == 5)
        #expect(back.nodeFacts == f)
        #expect(back.verify(with: FakeVerifier()))
        for cut in 0..<bytes.count { #expect(throws: DecodeError.self) { try ManifestEntry.decode(Array(bytes[0..<cut])) } }
        #expect(try ManifestEntry.decode(entry(.nodeFacts(ManifestEntry.NodeFacts(roles: []))).encoded).nodeFacts?.roles == [],
                "no roles and no group are allowed")
    }

    @Test("Node facts with unknown flags, an empty, long or repeated role, too many roles or a long group are malformed", arguments: [
        ("flag bit 3", UInt8(8), ["a"], "g"),
        ("empty role", 0, [""], ""),
        ("33-byte role", 0, [String(repeating: "r", count: 33)], ""),
        ("repeated role", 0, ["a", "a"], ""),
        ("17 roles", 0, (0..<17).map { "r\($0)" }, ""),
        ("65-byte group", 0, [], String(repeating: "g", count: 65)),
    ] as [(String, UInt8, [String], String)])
    func factsRules(_ what: String, _ flags: UInt8, _ roles: [String], _ group: String) {
        var b = ByteWriter()
        b.u8(flags); b.u64(1); b.u64(1); b.u64(1)
        b.u8(UInt8(roles.count)); for r in roles { b.string16(r) }
        b.string16(group)
        #expect(throws: DecodeError.self, "\(what)") { try ManifestEntry.decode(raw(kind: 5, body: b.bytes)) }
        if flags == 0 { #expect(ManifestEntry.NodeFacts(roles: roles, nfsGroup: group).invalidField != nil, "\(what)") }
    }

    @Test("Node facts carry an optional 16-byte policy hash: with it they round-trip, 1 to 15 or 17 bytes after the group are malformed")
    func factsPolicyHash() throws {
        let hash = (0..<16).map { UInt8($0 * 7) }
        let f = ManifestEntry.NodeFacts(roles: ["storage"], diskTotalBytes: 1 << 30, nfsGroup: "", policyHash: hash)
        let e = entry(.nodeFacts(f))
        #expect(e.encoded.count == entry(.nodeFacts(ManifestEntry.NodeFacts(roles: ["storage"], diskTotalBytes: 1 << 30))).encoded.count + 16)
        #expect(try ManifestEntry.decode(e.encoded).nodeFacts?.policyHash == hash)
        #expect(try ManifestEntry.decode(entry(.nodeFacts(ManifestEntry.NodeFacts(roles: []))).encoded).nodeFacts?.policyHash == nil)
        for extra in [1, 15, 17] {
            var b = ByteWriter()
            b.u8(0); b.u64(1); b.u64(1); b.u64(1); b.u8(0); b.string16("")
            b.raw([UInt8](repeating: 9, count: extra))
            #expect(throws: DecodeError.self, "\(extra) bytes") { try ManifestEntry.decode(raw(kind: 5, body: b.bytes)) }
        }
        #expect(ManifestEntry.NodeFacts(roles: [], policyHash: [1, 2]).invalidField == "node_facts.policy_hash")
    }

    @Test("Kinds from 6 on are still unknown: kept verbatim, no effect")
    func kindSixIsUnknown() throws {
        let e = try ManifestEntry.decode(raw(kind: 6, body: [1, 2, 3]))
        #expect(e.kind == nil)
        #expect(e.payload == .unknown(kind: 6, body: [1, 2, 3]))
    }
}
