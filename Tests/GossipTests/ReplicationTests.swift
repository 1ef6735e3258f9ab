import Testing
@testable import Gossip

@Suite struct ReplicationTests {
    @Test func localEntryIsPushedAtOnceToTwoNeighbours() {
        var net = Net.cluster(8)
        net.run(ms: 8000)
        let e = entry(origin: 3, seq: 1)
        let out = net.nodes[3]!.onLocalEntry(e, now: net.now)
        let pushes = out.messages.filter { if case .entries(true, _) = $0.message { true } else { false } }
        #expect(pushes.count == 2)
        #expect(Set(pushes.map(\.to)).count == 2)
    }

    @Test func newEntryReachesEveryNodeThroughTheTreeWithOneCopyEach() {
        var net = Net.cluster(10)
        net.run(ms: 10_000)
        net.log = [:]
        net.handle(4, net.nodes[4]!.onLocalEntry(entry(origin: 4, seq: 1), now: net.now))
        net.run(ms: 200)  // 40 hops' worth of 5 ms links: far more than the tree depth
        for i in 0..<10 { #expect(net.nodes[i]!.manifest.count == 1, "n\(i) lacks the entry") }
        let treeSends = net.log.values.flatMap { $0.messages }.filter { if case .entries(true, _) = $0.message { true } else { false } }
        #expect(treeSends.count == 9)
        let dups = (0..<10).map { net.nodes[$0]!.counters.entriesDuplicate }.reduce(0, +)
        #expect(dups == 0)
    }

    @Test func relayedEntryWithABadSignatureIsDroppedAndCounted() {
        var net = Net.cluster(2)
        net.run(ms: 3000)
        var bad = entry(origin: 1, seq: 1)
        bad.name = "tampered"
        let env = Envelope(sender: nodeID(1), incarnation: net.nodes[1]!.incarnation, counter: 1_000_000,
                           message: .entries(treePush: true, entries: [bad]))
        let out = net.nodes[0]!.onDatagram(env.encode(signer: FakeSigner(nodeID: nodeID(1))), from: address(1), now: net.now)
        #expect(out.rejections == [.badEntrySignature])
        #expect(net.nodes[0]!.manifest.count == 0)
        #expect(out.persistedEntries.isEmpty)
    }

    @Test func entryFromAnUntrustedOriginIsDroppedAndCounted() {
        var a = makeNode(0, trust: .keys([nodeID(0), nodeID(1)]))
        _ = a.start(seeds: [], now: .zero)
        let intro = Envelope(sender: nodeID(1), incarnation: 1, counter: 1, message: .join(updates: [makeNode(1).selfUpdate()]))
        _ = a.onDatagram(intro.encode(signer: FakeSigner(nodeID: nodeID(1))), from: address(1), now: .zero)
        let foreign = entry(origin: 9, seq: 1)
        let env = Envelope(sender: nodeID(1), incarnation: 1, counter: 2, message: .entries(treePush: false, entries: [foreign]))
        let out = a.onDatagram(env.encode(signer: FakeSigner(nodeID: nodeID(1))), from: address(1), now: .zero)
        #expect(out.rejections == [.untrustedOrigin])
        #expect(a.manifest.count == 0)
    }

    @Test func forkIsDetectedReportedAndBothEntriesKeptAsEvidence() {
        var net = Net.cluster(2)
        net.run(ms: 3000)
        let a = entry(origin: 1, seq: 1, name: "a")
        let b = entry(origin: 1, seq: 1, name: "b")
        let env = Envelope(sender: nodeID(1), incarnation: net.nodes[1]!.incarnation, counter: 1_000_000,
                           message: .entries(treePush: false, entries: [a, b]))
        let out = net.nodes[0]!.onDatagram(env.encode(signer: FakeSigner(nodeID: nodeID(1))), from: address(1), now: net.now)
        #expect(out.forks.count == 1)
        #expect(out.forks.first.map { $0.0 == a && $0.1 == b } == true)
        let g = net.nodes[0]!
        #expect(g.manifest.forks.count == 1)
        #expect(g.manifest.entry(EntryRef(origin: nodeID(1), sequence: 1)) == a)
        #expect(g.counters.forks == 1)
    }

    @Test func digestFitsOneDatagramAtAnyManifestSize() {
        var a = makeNode(0), b = makeNode(1)
        _ = a.start(seeds: [], now: .zero)
        _ = b.start(seeds: [], now: .zero)
        for o in 0..<3000 { _ = a.manifest.insert(entry(origin: 100 + o, seq: 1), maxForks: 8) }
        let intro = Envelope(sender: nodeID(1), incarnation: 1, counter: 1, message: .join(updates: [b.selfUpdate()]))
        _ = a.onDatagram(intro.encode(signer: FakeSigner(nodeID: nodeID(1))), from: address(1), now: .zero)
        var out = [Directive]()
        a.sendDigest(to: nodeID(1), now: .zero, out: &out)
        let digests = out.sends.filter { s in
            if case let .success(e) = Envelope.decode(s.bytes, verifier: FakeVerifier()), case .digest = e.message { return true }
            return false
        }
        #expect(digests.count == 1)
        #expect(digests[0].bytes.count <= 1200)
        #expect(digests[0].via == .datagram)
    }

    @Test func antiEntropyRepairCostFollowsTheDifferenceNotTheManifestSize() {
        var net = Net.cluster(2)
        net.run(ms: 3000)
        // 2000 entries from 400 origins on both; 3 more on node 1 only.
        for o in 0..<400 {
            for s in 1...5 {
                let e = entry(origin: 1000 + o, seq: UInt64(s))
                _ = net.nodes[0]!.manifest.insert(e, maxForks: 8)
                _ = net.nodes[1]!.manifest.insert(e, maxForks: 8)
            }
        }
        for s in 6...8 { _ = net.nodes[1]!.manifest.insert(entry(origin: 1000, seq: UInt64(s)), maxForks: 8) }
        net.log = [:]
        var out = [Directive]()
        net.nodes[0]!.sendDigest(to: nodeID(1), now: net.now, out: &out)
        net.handle(0, out)
        net.run(ms: 500)
        #expect(net.nodes[0]!.manifest.count == 2003)
        let bytes = net.log.values.flatMap { $0.sends }.map(\.bytes.count).reduce(0, +)
        let repairEntries = net.nodes[1]!.counters.repairEntriesSent
        #expect(repairEntries == 3)
        // A few datagrams for digest, vectors of the mismatching bucket and the 3 entries,
        // against ~400 KB for the whole manifest.
        #expect(bytes < 8000, "repair moved \(bytes) bytes")
    }

    @Test func gapBelowAFreshEntryIsPulledOnlyIfItStaysOpen() {
        var net = Net.cluster(3)
        net.run(ms: 5000)
        // Node 0 holds #1..#3 of origin 2; node 1 receives only #3.
        for s in 1...3 { _ = net.nodes[0]!.manifest.insert(entry(origin: 2, seq: UInt64(s)), maxForks: 8) }
        var sent = [Directive]()
        net.nodes[0]!.sendEntries([entry(origin: 2, seq: 3)], to: nodeID(1), now: net.now, out: &sent)
        let out = net.nodes[1]!.onDatagram(sent.sends.last!.bytes, from: address(0), now: net.now)
        // #1 and #2 may still be on their way down the tree: no pull yet.
        #expect(!out.messages.contains { if case .pull = $0.message { true } else { false } })
        net.handle(1, out)
        net.log = [:]
        net.run(ms: 3000)
        let pulls = net.log[1, default: []].messages.filter { if case .pull = $0.message { true } else { false } }
        #expect(!pulls.isEmpty)
        #expect(net.nodes[1]!.manifest.maxContiguous(nodeID(2)) == 3)
    }

    @Test func acceptedEntryIsPersistedAndItsBlobRequested() {
        var net = Net.cluster(3)
        net.run(ms: 5000)
        let e = entry(origin: 2, seq: 1)
        net.handle(2, net.nodes[2]!.onLocalEntry(e, now: net.now))
        net.run(ms: 100)
        let fetches = net.log.values.joined().compactMap { if case let .fetch(c, h) = $0 { (c, h) } else { nil } }
        #expect(fetches.contains { $0.0 == e.contentID && $0.1.contains(nodeID(2)) })
        #expect(net.log[0]!.persistedEntries.contains(e))
        #expect(net.log[2]!.persistedEntries.isEmpty)  // the Store already has its own entry
    }

    @Test func manifestBucketHashesAreOrderIndependent() {
        var a = Manifest(), b = Manifest()
        let es = (0..<50).flatMap { o in (1...3).map { entry(origin: o, seq: UInt64($0)) } }
        for e in es { _ = a.insert(e, maxForks: 1) }
        for e in es.reversed() { _ = b.insert(e, maxForks: 1) }
        #expect(a.digestHashes(log2: 7) == b.digestHashes(log2: 7))
        #expect(a.digestHashes(log2: 2) == b.digestHashes(log2: 2))
        _ = b.insert(entry(origin: 7, seq: 4), maxForks: 1)
        let d = zip(a.digestHashes(log2: 4), b.digestHashes(log2: 4)).filter { $0 != $1 }.count
        #expect(d == 1)
    }
}
