import Testing
@testable import Gossip

/// Compaction entries (docs/PROTOCOL.md §4.5) as the manifest applies them.
@Suite("Compaction: an origin voids sequences of its own log")
struct CompactionTests {
    static let a = nodeID(1), b = nodeID(2)

    static func put(_ o: NodeID, _ seq: UInt64, hlc: UInt64, name: String = "games/g.db") -> ManifestEntry {
        ManifestEntry(origin: o, sequence: seq, hlc: hlc, contentID: ContentID(digest: Bytes32(w0: seq, w1: hlc, w2: 1, w3: 2)),
                      sizeBytes: 10, chunkSizeBytes: 4096, type: .game, createdAtMs: Int64(hlc >> 16), name: name)
    }

    static func tomb(_ o: NodeID, _ seq: UInt64, hlc: UInt64, name: String = "games/g.db") -> ManifestEntry {
        ManifestEntry(origin: o, sequence: seq, hlc: hlc, payload: .tombstone(.init(scope: .name, name: name, createdAtMs: Int64(hlc >> 16))))
    }

    static func compaction(_ o: NodeID, _ seq: UInt64, _ ranges: [ClosedRange<UInt64>], deps: [EntryRef] = []) -> ManifestEntry {
        ManifestEntry(origin: o, sequence: seq, hlc: seq << 20, payload: .compaction(.init(ranges: ranges, dependencies: deps)))
            .signed(by: FakeSigner(nodeID: o))
    }

    @Test("A compaction entry encodes, signs and decodes back, and every broken rule is refused at decode")
    func encodingAndDecodeRules() throws {
        let c = Self.compaction(Self.a, 9, [1...2, 4...4], deps: [EntryRef(origin: Self.b, sequence: 3)])
        let back = try ManifestEntry.decode(c.encoded)
        #expect(back == c && back.compaction?.ranges == [1...2, 4...4] && back.kind == .compaction)
        #expect(back.verify(with: FakeVerifier()) && back.invalidField == nil)
        let bad: [(ManifestEntry.Compaction, String)] = [
            (.init(ranges: [2...3, 3...4]), "overlapping ranges"),
            (.init(ranges: [4...5, 1...2]), "descending ranges"),
            (.init(ranges: [0...2]), "sequence 0"),
            (.init(ranges: [1...9]), "a range reaching the entry's own sequence"),
            (.init(ranges: [], dependencies: [EntryRef(origin: Self.a, sequence: 1)]), "a dependency on itself"),
            (.init(ranges: [], dependencies: [EntryRef(origin: Self.b, sequence: 0)]), "a dependency on sequence 0"),
            (.init(ranges: (0..<65).map { UInt64(2 * $0 + 1)...UInt64(2 * $0 + 1) }), "65 ranges"),
        ]
        for (body, why) in bad {
            let seq: UInt64 = body.ranges.count > 64 ? 200 : 9
            let e = ManifestEntry(origin: Self.a, sequence: seq, hlc: 1 << 20, payload: .compaction(body)).signed(by: FakeSigner(nodeID: Self.a))
            #expect(e.invalidField != nil, "\(why)")
            #expect(throws: DecodeError.self, "\(why)") { _ = try ManifestEntry.decode(e.encoded) }
        }
        // A range whose first is above its last (not even constructible in memory): patch the
        // bytes of a valid [2...3] (the body starts at offset 52: u16 count, then first, last).
        var bytes = Self.compaction(Self.a, 9, [2...3]).encoded
        bytes[61] = 3
        bytes[69] = 2
        #expect(throws: DecodeError.self) { _ = try ManifestEntry.decode(bytes) }
        bytes[61] = 2
        bytes[69] = 3
        #expect(try ManifestEntry.decode(bytes).compaction?.ranges == [2...3], "the patch offsets are right")
    }

    @Test("Compacted puts are dropped, later copies are refused, and the version vector counts the ranges as held")
    func compactedPutsGoAndStayGone() {
        var m = Manifest()
        for s in 1...4 as ClosedRange<UInt64> { _ = m.insert(Self.put(Self.a, s, hlc: s << 16), maxForks: 8) }
        let (r, _) = m.insert(Self.compaction(Self.a, 5, [1...2]), maxForks: 8)
        #expect(r == .added)
        #expect(Set(m.takeCompacted().map(\.sequence)) == [1, 2])
        #expect(!m.contains(EntryRef(origin: Self.a, sequence: 1)) && m.contains(EntryRef(origin: Self.a, sequence: 3)))
        #expect(m.maxContiguous(Self.a) == 5)
        #expect(m.insert(Self.put(Self.a, 1, hlc: 1 << 16), maxForks: 8).0 == .compacted)
        #expect(m.takeCompacted().isEmpty)

        // A node that never held 1 and 2 gets only what is left, and ends with the same digest.
        var fresh = Manifest()
        let sent = m.entriesMissing(from: [], log2: 0, buckets: [0], limit: 100)
        #expect(sent.map(\.sequence) == [3, 4, 5])
        for e in sent.reversed() { _ = fresh.insert(e, maxForks: 8) }
        #expect(fresh.maxContiguous(Self.a) == 5)
        #expect(fresh.digestHashes(log2: 0) == m.digestHashes(log2: 0))
    }

    @Test("A newer compaction supersedes the older, which is void itself and refused if it comes late")
    func compactionsAreCumulative() {
        var m = Manifest()
        for s in 1...3 as ClosedRange<UInt64> { _ = m.insert(Self.put(Self.a, s, hlc: s << 16), maxForks: 8) }
        let c4 = Self.compaction(Self.a, 4, [1...1]), c6 = Self.compaction(Self.a, 6, [1...2, 4...5])
        _ = m.insert(c6, maxForks: 8)
        #expect(m.insert(c4, maxForks: 8).0 == .compacted)
        #expect(m.compaction(of: Self.a)?.sequence == 6)
        #expect(m.entries(of: Self.a).map(\.sequence) == [3, 6])
        #expect(m.maxContiguous(Self.a) == 6)
    }

    @Test("A compacted tombstone stays until the receiver holds the compactions it depends on")
    func tombstonesWaitForTheirDependencies() {
        var m = Manifest()
        let p = Self.put(Self.b, 1, hlc: 1 << 16), t = Self.tomb(Self.a, 1, hlc: 2 << 16)
        _ = m.insert(p, maxForks: 8)
        _ = m.insert(t, maxForks: 8)
        let ca = Self.compaction(Self.a, 2, [1...1], deps: [EntryRef(origin: Self.b, sequence: 2)])
        _ = m.insert(ca, maxForks: 8)
        #expect(m.contains(t.ref) && m.takeCompacted().isEmpty, "b's compaction is not here yet: the tombstone still deletes p")
        _ = m.insert(Self.compaction(Self.b, 2, [1...1]), maxForks: 8)
        #expect(Set(m.takeCompacted().map(\.ref)) == [p.ref, t.ref])
        #expect(m.entries(of: Self.a).map(\.sequence) == [2] && m.entries(of: Self.b).map(\.sequence) == [2])
    }

    /// The resurrection hazard: a's tombstone deletes b's put; both origins compact. Whatever
    /// order a receiver gets the four entries in, once it has seen the put deleted it never
    /// sees it live again, and every order ends in the same state.
    @Test("In every arrival order a deleted put never comes back, and every order ends alike")
    func noArrivalOrderResurrectsADeletedPut() {
        let p = Self.put(Self.b, 1, hlc: 1 << 16), t = Self.tomb(Self.a, 1, hlc: 2 << 16)
        let cb = Self.compaction(Self.b, 2, [1...1])
        let ca = Self.compaction(Self.a, 2, [1...1], deps: [EntryRef(origin: Self.b, sequence: 2)])
        var finals = Set<[EntryRef]>()
        for order in permutations([p, t, cb, ca]) {
            var m = Manifest()
            var seenDeleted = false
            for e in order {
                _ = m.insert(e, maxForks: 8)
                _ = m.takeCompacted()
                let live = m.contains(p.ref) && !m.contains(t.ref)
                if m.contains(p.ref) && m.contains(t.ref) { seenDeleted = true }
                #expect(!(seenDeleted && live), "order \(order.map { "\($0.origin == Self.a ? "a" : "b")\($0.sequence)" })")
            }
            finals.insert(m.allEntries.map(\.ref))
            #expect(m.maxContiguous(Self.a) == 2 && m.maxContiguous(Self.b) == 2)
        }
        #expect(finals == [[ca.ref, cb.ref].sorted { $0.origin < $1.origin }])
    }

    @Test("A node restarted with a compaction and the entries it voids deletes them at start")
    func restoredCompactionIsAppliedAtStart() {
        var restore = GossipDurableState()
        let own = nodeID(7)
        restore.entries = [Self.put(own, 1, hlc: 1 << 16), Self.put(own, 2, hlc: 2 << 16), Self.compaction(own, 3, [1...1])]
        restore.entriesVerified = true
        var n = makeNode(7, restore: restore)
        let out = n.start(seeds: [], now: Instant(nanoseconds: 0))
        let gone = out.compactMap { if case .compacted(let es) = $0 { es } else { nil } }.flatMap { $0 }
        #expect(gone.map(\.sequence) == [1])
        #expect(n.manifest.entries(of: own).map(\.sequence) == [2, 3])
        #expect(n.counters.entriesCompacted == 1)
    }
}

func permutations<T>(_ xs: [T]) -> [[T]] {
    guard xs.count > 1 else { return [xs] }
    var out = [[T]]()
    for i in xs.indices {
        var rest = xs
        let x = rest.remove(at: i)
        for p in permutations(rest) { out.append([x] + p) }
    }
    return out
}
