import Testing
@testable import Gossip

/// Details docs/PROTOCOL.md states exactly, because an implementation written from it
/// alone has to guess them otherwise.
@Suite struct SpecDetailTests {
    func envelope(from i: Int, incarnation: UInt64 = 1, counter: UInt64, _ m: Message) -> [UInt8] {
        Envelope(sender: nodeID(i), incarnation: incarnation, counter: counter, message: m).encode(signer: FakeSigner(nodeID: nodeID(i)))
    }

    /// Node 0 started, with nodes `others` admitted (each by a join at incarnation 1).
    func node(knowing others: [Int]) -> GossipNode {
        var a = makeNode(0)
        _ = a.start(seeds: [], now: .zero)
        for i in others {
            _ = a.onDatagram(envelope(from: i, counter: 1, .join(updates: [makeNode(i).selfUpdate()])), from: address(i), now: .zero)
        }
        return a
    }

    func sentEnvelopes(_ out: [Directive]) -> [Envelope] {
        out.sends.compactMap { if case let .success(e) = Envelope.decode($0.bytes, verifier: FakeVerifier()) { e } else { nil } }
    }

    /// §5.3: `counter` is 1, 2, 3, … within one incarnation and starts again at 1 with the next.
    @Test func theMessageCounterRestartsAtOneWithEachNewIncarnation() {
        var a = node(knowing: [1])
        var out = a.onTimer(.probe, now: .milliseconds(900))
        out += a.onTimer(.antiEntropy, now: .milliseconds(1000))
        let before = sentEnvelopes(out)
        #expect(before.count >= 2)
        #expect(before.allSatisfy { $0.incarnation == 1 })
        #expect(before.last!.counter > 1)
        // Accused at its own incarnation: it refutes at 2, and its next message is number 1 of 2.
        let accusation = MemberUpdate(state: .suspect, node: nodeID(0), incarnation: 1, accuser: nodeID(1))
        out = a.onDatagram(envelope(from: 1, counter: 2, .ping(seq: 1, target: nodeID(0), updates: [accusation], adverts: [])),
                           from: address(1), now: .milliseconds(1100))
        #expect(a.incarnation == 2)
        let after = sentEnvelopes(out)
        #expect(after.map(\.counter) == Array(1...UInt64(after.count)))
        #expect(after.allSatisfy { $0.incarnation == 2 })
    }

    /// §5.2 step 9: a ping for another node is counted as `wrongTarget`, not answered, and
    /// nothing in it is applied.
    @Test func aPingForAnotherNodeIsCountedAsWrongTargetAndNothingInItIsApplied() {
        var a = node(knowing: [1])
        let stranger = makeNode(3).selfUpdate()
        let advert = EntryRef(origin: nodeID(1), sequence: 5)
        let out = a.onDatagram(envelope(from: 1, counter: 2, .ping(seq: 1, target: nodeID(9), updates: [stranger], adverts: [advert])),
                               from: address(1), now: .milliseconds(10))
        #expect(out.rejections == [.wrongTarget])
        #expect(a.counters.rejected[.wrongTarget] == 1)
        #expect(out.sends.isEmpty)
        #expect(a.memberState(nodeID(3)) == nil)
    }

    /// §5.4: `member_count` counts every member in the sender's table, in any state, and itself.
    @Test func theDigestsMemberCountIncludesEveryStateAndTheSender() {
        var a = node(knowing: [1, 2, 3])
        let dead = MemberUpdate(state: .dead, node: nodeID(3), incarnation: 1, accuser: nodeID(1))
        _ = a.onDatagram(envelope(from: 1, counter: 2, .ping(seq: 1, target: nodeID(0), updates: [dead], adverts: [])),
                         from: address(1), now: .milliseconds(10))
        #expect(a.memberState(nodeID(3)) == .dead)
        let out = a.onTimer(.antiEntropy, now: .milliseconds(20))
        let digests = out.messages.compactMap { if case let .digest(d) = $0.message { d } else { nil } }
        #expect(digests.map(\.memberCount) == [4])
    }

    /// §3: a receiver accepts 4096 ≤ chunk_size ≤ 67108864 and refuses anything else, at decode.
    @Test func anEntryWhoseChunkSizeIsOutOfRangeDoesNotDecode() throws {
        func withChunkSize(_ c: UInt32) -> ManifestEntry {
            var e = entry(origin: 1, seq: 1)
            e.chunkSizeBytes = c
            return e.signed(by: FakeSigner(nodeID: nodeID(1)))
        }
        for bad: UInt32 in [0, 1, 100, 4095, 67_108_865, 128 << 20, .max] {
            #expect(throws: DecodeError.invalid(field: "entry.chunkSize")) { try ManifestEntry.decode(withChunkSize(bad).encoded) }
            #expect(withChunkSize(bad).invalidField == "entry.chunkSize")
        }
        for good: UInt32 in [4096, 2 << 20, 67_108_864] {
            #expect(try ManifestEntry.decode(withChunkSize(good).encoded) == withChunkSize(good))
            #expect(withChunkSize(good).invalidField == nil)
        }
    }

    /// §5.2 step 3: a message carrying such an entry does not decode: `malformed`, nothing stored.
    @Test func entriesWithAnOutOfRangeChunkSizeAreCountedMalformedAndNotStored() {
        var a = node(knowing: [1])
        for (k, c) in ([100, 128 << 20] as [UInt32]).enumerated() {
            var e = entry(origin: 1, seq: UInt64(k + 1))
            e.chunkSizeBytes = c
            let out = a.onDatagram(envelope(from: 1, counter: UInt64(2 + k), .entries(treePush: true, entries: [e.signed(by: FakeSigner(nodeID: nodeID(1)))])),
                                   from: address(1), now: .milliseconds(10))
            #expect(out.rejections == [.malformed])
            #expect(out.persistedEntries.isEmpty)
        }
        #expect(a.counters.rejected[.malformed] == 2)
        #expect(a.manifest.count == 0)
    }

    /// §7.2: children at offsets ≥ n are skipped (not wrapped), and an origin outside the
    /// ring is rooted at `mix(first 8 bytes of its id, big-endian) mod n`.
    @Test func thePushTreeSkipsOffsetsAtOrBeyondNAndRootsAnOutsideOriginByItsBigEndianFirstWord() {
        let a = node(knowing: [1, 2, 3, 4])
        let ring = ([0, 1, 2, 3, 4].map(nodeID)).sorted()
        let n = ring.count
        let me = ring.firstIndex(of: nodeID(0))!
        var skippedAll = 0
        for o in 100..<140 {
            let origin = nodeID(o)
            let first8 = origin.key.bytes.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            let root = Int(SplitMix64.mix(first8) % UInt64(n))
            let r = (me - root + n) % n
            let expected = Set([r * 2 + 1, r * 2 + 2].filter { $0 < n }.map { ring[(root + $0) % n] }.filter { $0 != nodeID(0) })
            if expected.isEmpty { skippedAll += 1 }
            var g = a
            let e = entry(origin: o, seq: 1)
            let out = g.onDatagram(envelope(from: 1, counter: UInt64(10 + o), .entries(treePush: true, entries: [e])), from: address(1),
                                   now: .milliseconds(10))
            let pushedTo = out.messages.filter { if case .entries(true, _) = $0.message { true } else { false } }.map(\.to)
            #expect(Set(pushedTo) == Set(expected.map { id in address([0, 1, 2, 3, 4].first { nodeID($0) == id }!) }),
                    "origin \(o): root \(root), offset \(r)")
        }
        #expect(skippedAll > 0, "no origin put node 0 at a leaf: the skip rule went untested")
    }
}
