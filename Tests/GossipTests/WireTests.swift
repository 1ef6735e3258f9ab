import Testing
@testable import Gossip

@Suite struct WireTests {
    static let sampleMessages: [Message] = [
        .ping(seq: 1, target: nodeID(2), updates: [makeNode(1).selfUpdate(),
                                                    MemberUpdate(state: .suspect, node: nodeID(3), incarnation: 4, accuser: nodeID(1))],
              adverts: [EntryRef(origin: nodeID(5), sequence: 9)]),
        .ack(seq: 2, updates: [MemberUpdate(state: .dead, node: nodeID(3), incarnation: 4, accuser: nodeID(1)),
                               MemberUpdate(state: .left, node: nodeID(6), incarnation: 1)], adverts: []),
        .pingReq(seq: 3, target: nodeID(4), address: PeerAddress(host: "::1", port: 9), updates: []),
        .nack(seq: 4),
        .join(updates: [makeNode(1).selfUpdate()]),
        .memberSync(wantReply: true, updates: [makeNode(2).selfUpdate()]),
        .entries(treePush: true, entries: [entry(origin: 1, seq: 1), entry(origin: 2, seq: 7)]),
        .digest(Digest(bucketsLog2: 2, bucketHashes: [1, 2, 3, 4], originCount: 9, memberHash: 5, memberCount: 6)),
        .vector(VectorMessage(wantReply: false, bucketsLog2: 3, buckets: [1, 7], pairs: [EntryRef(origin: nodeID(1), sequence: 3)])),
        .pull([PullRange(origin: nodeID(1), fromSequence: 2, toSequence: 5)]),
    ]

    @Test func everyMessageTypeRoundTrips() {
        for (k, m) in Self.sampleMessages.enumerated() {
            let env = Envelope(sender: nodeID(1), incarnation: 3, counter: UInt64(k + 1), message: m)
            let bytes = env.encode(signer: FakeSigner(nodeID: nodeID(1)))
            #expect(Envelope.decode(bytes, verifier: FakeVerifier()) == .success(env))
        }
    }

    @Test func envelopeLayoutMatchesTheSpec() {
        let env = Envelope(sender: nodeID(1), incarnation: 0x0102, counter: 0x0304, message: .nack(seq: 0xAABBCCDD))
        let b = env.encode(signer: FakeSigner(nodeID: nodeID(1)))
        #expect(b.count == Envelope.overheadBytes + 4)
        #expect(Array(b[0..<4]) == [0x4D, 0x4E, 1, 4])
        #expect(Array(b[4..<36]) == nodeID(1).key.bytes)
        #expect(Array(b[36..<44]) == [0, 0, 0, 0, 0, 0, 1, 2])
        #expect(Array(b[44..<52]) == [0, 0, 0, 0, 0, 0, 3, 4])
        #expect(Array(b[52..<56]) == [0xAA, 0xBB, 0xCC, 0xDD])
        let signed = SigningDomain.gossipMessage + Array(b[0..<56])
        #expect(Signature(bytes: Array(b[56...])) == FakeSigner(nodeID: nodeID(1)).sign(signed))
    }

    @Test func tamperedDatagramFailsTheSignatureCheck() {
        var a = makeNode(0)
        _ = a.start(seeds: [], now: .zero)
        var b = Envelope(sender: nodeID(1), incarnation: 1, counter: 1, message: .join(updates: [makeNode(1).selfUpdate()]))
            .encode(signer: FakeSigner(nodeID: nodeID(1)))
        b[50] ^= 0x40  // the counter: still decodes, no longer matches the signature
        #expect(a.onDatagram(b, from: address(1), now: .zero).rejections == [.badSignature])
        #expect(a.memberCount == 0)  // a forged introduction admits no one
    }

    @Test func unknownSenderIsRefusedBeforeAnySignatureIsChecked() {
        struct CountingVerifier: SignatureVerifier {
            final class Box: @unchecked Sendable { var n = 0 }
            let box = Box()
            func verify(_ s: Signature, of m: [UInt8], by id: NodeID) -> Bool { box.n += 1; return FakeVerifier().verify(s, of: m, by: id) }
        }
        let v = CountingVerifier()
        var a = GossipNode(config: GossipConfig(), signer: FakeSigner(nodeID: nodeID(0)), verifier: v,
                           trust: .keys([nodeID(0)]), address: address(0), seed: 1)
        _ = a.start(seeds: [], now: .zero)
        let noIntro = Envelope(sender: nodeID(1), incarnation: 1, counter: 1, message: .nack(seq: 1)).encode(signer: FakeSigner(nodeID: nodeID(1)))
        let untrusted = Envelope(sender: nodeID(2), incarnation: 1, counter: 1, message: .join(updates: [makeNode(2).selfUpdate()]))
            .encode(signer: FakeSigner(nodeID: nodeID(2)))
        #expect(a.onDatagram(noIntro, from: address(1), now: .zero).rejections == [.unknownSender])
        #expect(a.onDatagram(untrusted, from: address(2), now: .zero).rejections == [.untrustedKey])
        #expect(v.box.n == 0)
    }

    @Test func replayedDatagramIsRejectedButReorderingWithinTheWindowIsAccepted() {
        var a = makeNode(0)
        _ = a.start(seeds: [], now: .zero)
        func msg(_ c: UInt64) -> [UInt8] {
            Envelope(sender: nodeID(1), incarnation: 1, counter: c, message: .join(updates: [makeNode(1).selfUpdate()]))
                .encode(signer: FakeSigner(nodeID: nodeID(1)))
        }
        #expect(a.onDatagram(msg(10), from: address(1), now: .zero).rejections.isEmpty)
        #expect(a.onDatagram(msg(10), from: address(1), now: .zero).rejections == [.replayed])
        #expect(a.onDatagram(msg(8), from: address(1), now: .zero).rejections.isEmpty)
        #expect(a.onDatagram(msg(8), from: address(1), now: .zero).rejections == [.replayed])
        #expect(a.onDatagram(msg(200), from: address(1), now: .zero).rejections.isEmpty)
        #expect(a.onDatagram(msg(100), from: address(1), now: .zero).rejections == [.replayed])  // outside the window
        // An older incarnation is a replay too.
        let old = Envelope(sender: nodeID(1), incarnation: 0, counter: 500, message: .nack(seq: 1)).encode(signer: FakeSigner(nodeID: nodeID(1)))
        #expect(a.onDatagram(old, from: address(1), now: .zero).rejections == [.replayed])
    }

    @Test func oversizedDatagramIsRejectedWithoutDecoding() {
        var a = makeNode(0)
        _ = a.start(seeds: [], now: .zero)
        #expect(a.onDatagram([UInt8](repeating: 0x4D, count: 1201), from: address(1), now: .zero).rejections == [.oversized])
        #expect(a.onFrame([UInt8](repeating: 0, count: (1 << 20) + 1), from: address(1), now: .zero).rejections == [.oversized])
    }

    @Test func decodersAreTotalOverRandomTruncatedAndMutatedBytes() {
        var a = makeNode(0)
        _ = a.start(seeds: [], now: .zero)
        var rng = SplitMix64(seed: 42)
        var inputs = 0
        // Random bytes, sometimes with a valid header prefix.
        for _ in 0..<1500 {
            var b = (0..<rng.below(1300)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            if rng.below(2) == 0 && b.count > 4 { b[0] = 0x4D; b[1] = 0x4E; b[2] = 1; b[3] = UInt8(rng.below(12)) }
            let out = a.onDatagram(b, from: address(1), now: .zero)
            #expect(out.rejections.count == 1)
            inputs += 1
        }
        // Every truncation and many single-byte mutations of every valid message type.
        for (k, m) in Self.sampleMessages.enumerated() {
            let good = Envelope(sender: nodeID(1), incarnation: 1, counter: UInt64(k + 1), message: m).encode(signer: FakeSigner(nodeID: nodeID(1)))
            for cut in 0..<good.count {
                let out = a.onFrame(Array(good[0..<cut]), from: address(1), now: .zero)
                #expect(out.rejections.count == 1)
            }
            for _ in 0..<200 {
                var b = good
                b[rng.below(b.count)] ^= UInt8(1 + rng.below(255))
                _ = a.onFrame(b, from: address(1), now: .zero)  // must not crash; may be accepted only if still validly signed
                inputs += 1
            }
        }
        // Payload decoders directly, without the signature gate.
        for t in UInt8(0)...12 {
            for _ in 0..<300 {
                let b = (0..<rng.below(300)).map { _ in UInt8(truncatingIfNeeded: rng.next() % 4) }
                _ = try? Wire.decodePayload(type: t, b)
            }
        }
        #expect(inputs > 1500)
        #expect(a.memberCount <= 1)
    }

    @Test func peerAddressParsesAndPrintsIPv6InBrackets() {
        #expect(PeerAddress("10.0.0.1:7946") == PeerAddress(host: "10.0.0.1", port: 7946))
        #expect(PeerAddress("[::1]:7946") == PeerAddress(host: "::1", port: 7946))
        #expect(PeerAddress(host: "fe80::1", port: 1).description == "[fe80::1]:1")
        #expect(PeerAddress("gpu-7.example.org:22")?.host == "gpu-7.example.org")
        for bad in ["", ":1", "host", "host:", "host:70000", "::1:80", "[::1]", "[]:1", "a b:1", "[1.2.3.4]:5"] {
            #expect(PeerAddress(bad) == nil, "\(bad) should not parse")
        }
        let p = PeerAddress("[2001:db8::2]:65535")!
        #expect(PeerAddress(p.description) == p)
    }

    @Test func instantArithmeticUsesNanoseconds() {
        let t = Instant.milliseconds(1500)
        #expect(t.advanced(byMs: 500) == .milliseconds(2000))
        #expect(t + .milliseconds(250) == .milliseconds(1750))
        #expect(Instant.milliseconds(2000) - t == 500_000_000)
    }
}
