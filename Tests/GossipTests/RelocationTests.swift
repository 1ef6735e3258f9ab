import Testing
@testable import Gossip

/// A node that restarts on another address (a new port, a new host IP) announces it in its
/// own `alive` record at its new incarnation. Implicit liveness (§6.1) must never stop that
/// record's address, name, role and credential from being taken, whatever arrives first.
@Suite struct RelocationTests {
    let moved = PeerAddress(host: "10.0.1.1", port: 8000)

    /// Node 0 started, with node 1 admitted at `address(1)`, incarnation 1.
    func nodeKnowingOne() -> GossipNode {
        var a = makeNode(0)
        _ = a.start(seeds: [], now: .zero)
        let intro = makeNode(1).selfUpdate()
        _ = a.onDatagram(envelope(from: 1, incarnation: 1, counter: 1, .join(updates: [intro])), from: address(1), now: .milliseconds(1))
        #expect(a.members[nodeID(1)]?.address == address(1))
        return a
    }

    func envelope(from i: Int, incarnation: UInt64, counter: UInt64, _ m: Message) -> [UInt8] {
        Envelope(sender: nodeID(i), incarnation: incarnation, counter: counter, message: m).encode(signer: FakeSigner(nodeID: nodeID(i)))
    }

    /// Node 1's own alive record after a restart on `moved`.
    func movedRecord(incarnation: UInt64 = 2, name: String = "n1-again") -> MemberUpdate {
        MemberUpdate(state: .alive, node: nodeID(1), incarnation: incarnation, address: moved, name: name, role: "worker",
                     credential: [7])
    }

    func lastTransition(of i: Int, in out: [Directive]) -> MemberTransition? { out.transitions.last { $0.node == nodeID(i) } }

    @Test func aMemberThatRestartsOnANewAddressIsAnsweredThereAtOnce() {
        var a = nodeKnowingOne()
        let ping = envelope(from: 1, incarnation: 2, counter: 1,
                            .ping(seq: 5, target: nodeID(0), updates: [movedRecord()], adverts: []))
        let out = a.onDatagram(ping, from: moved, now: .milliseconds(100))
        let m = a.members[nodeID(1)]!
        #expect(m.address == moved)
        #expect(m.incarnation == 2)
        #expect(m.name == "n1-again" && m.role == "worker" && m.credential == [7])
        #expect(out.messages.filter { if case .ack(5, _, _) = $0.message { true } else { false } }.map(\.to) == [moved])
        // The shell follows the move (its own address maps are fed by these transitions), and
        // is never told the old address with the new incarnation.
        #expect(lastTransition(of: 1, in: out)?.address == moved)
        #expect(out.transitions.filter { $0.node == nodeID(1) }.allSatisfy { $0.address == moved })
        #expect(lastTransition(of: 1, in: out)?.incarnation == 2)
        #expect(a.addressIndex[moved] == nodeID(1) && a.addressIndex[address(1)] == nil)
    }

    @Test func anAliveRecordAtTheIncarnationAnEarlierMessageImpliedStillMovesTheMember() {
        var a = nodeKnowingOne()
        // The restarted node's first message carries no member records (a digest): it makes
        // node 1 alive at incarnation 2 by itself, with nothing to say about its address.
        let digest = Digest(bucketsLog2: 0, bucketHashes: [0], originCount: 0, memberHash: 0, memberCount: 2)
        let first = a.onDatagram(envelope(from: 1, incarnation: 2, counter: 1, .digest(digest)), from: moved, now: .milliseconds(100))
        #expect(first.rejections.isEmpty)
        #expect(a.members[nodeID(1)]?.incarnation == 2)
        // Then its alive record at that same incarnation: the address in it is newer than ours.
        let ping = envelope(from: 1, incarnation: 2, counter: 2,
                            .ping(seq: 6, target: nodeID(0), updates: [movedRecord()], adverts: []))
        let out = a.onDatagram(ping, from: moved, now: .milliseconds(200))
        #expect(a.members[nodeID(1)]?.address == moved)
        #expect(a.members[nodeID(1)]?.name == "n1-again")
        #expect(out.messages.filter { if case .ack(6, _, _) = $0.message { true } else { false } }.map(\.to) == [moved])
        #expect(lastTransition(of: 1, in: out)?.address == moved)
        // A relayed copy of the old record (incarnation 1) changes nothing any more.
        var stale = makeNode(1).selfUpdate()
        stale.incarnation = 2
        let relay = makeNode(2).selfUpdate()
        _ = a.onDatagram(envelope(from: 2, incarnation: 1, counter: 1, .join(updates: [relay])), from: address(2), now: .milliseconds(250))
        _ = a.onDatagram(envelope(from: 2, incarnation: 1, counter: 2, .memberSync(wantReply: false, updates: [stale])),
                         from: address(2), now: .milliseconds(300))
        #expect(a.members[nodeID(1)]?.address == moved)
    }

    @Test func aJoinFromAMovedMemberIsAnsweredAtItsNewAddress() {
        var a = nodeKnowingOne()
        let out = a.onDatagram(envelope(from: 1, incarnation: 2, counter: 1, .join(updates: [movedRecord()])), from: moved,
                               now: .milliseconds(100))
        #expect(a.members[nodeID(1)]?.address == moved)
        let syncs = out.messages.filter { if case .memberSync = $0.message { true } else { false } }
        #expect(!syncs.isEmpty)
        #expect(syncs.allSatisfy { $0.to == moved })
    }

    @Test func aMemberSyncFromAMovedMemberMovesIt() {
        var a = nodeKnowingOne()
        let out = a.onDatagram(envelope(from: 1, incarnation: 2, counter: 1, .memberSync(wantReply: true, updates: [movedRecord()])),
                               from: moved, now: .milliseconds(100))
        #expect(a.members[nodeID(1)]?.address == moved)
        #expect(out.sends.allSatisfy { $0.to == moved })
        #expect(!out.sends.isEmpty)
    }

    @Test func aMemberDeclaredDeadAtItsNewIncarnationIsToldSoAtItsNewAddress() {
        var a = nodeKnowingOne()
        let relay = makeNode(2).selfUpdate()
        _ = a.onDatagram(envelope(from: 2, incarnation: 1, counter: 1, .join(updates: [relay])), from: address(2), now: .milliseconds(10))
        // Implied alive at 2 (old address), then declared dead at 2 by node 2: pings to the
        // old address could not reach it.
        let digest = Digest(bucketsLog2: 0, bucketHashes: [0], originCount: 0, memberHash: 0, memberCount: 3)
        _ = a.onDatagram(envelope(from: 1, incarnation: 2, counter: 1, .digest(digest)), from: moved, now: .milliseconds(20))
        let dead = MemberUpdate(state: .dead, node: nodeID(1), incarnation: 2, accuser: nodeID(2))
        _ = a.onDatagram(envelope(from: 2, incarnation: 1, counter: 2, .ping(seq: 1, target: nodeID(0), updates: [dead], adverts: [])),
                         from: address(2), now: .milliseconds(30))
        #expect(a.memberState(nodeID(1)) == .dead)
        // Its own record at that incarnation: the address is taken, the verdict stays (only a
        // refutation at a higher incarnation revives it), and the answer goes where it listens,
        // with the accusation first so that it refutes at once.
        let ping = envelope(from: 1, incarnation: 2, counter: 2,
                            .ping(seq: 9, target: nodeID(0), updates: [movedRecord()], adverts: []))
        let out = a.onDatagram(ping, from: moved, now: .milliseconds(40))
        #expect(a.memberState(nodeID(1)) == .dead)
        #expect(a.members[nodeID(1)]?.address == moved)
        let ack = out.messages.first { if case .ack(9, _, _) = $0.message { true } else { false } }
        #expect(ack?.to == moved)
        if case let .ack(_, ups, _)? = ack?.message {
            #expect(ups.first?.node == nodeID(1) && ups.first?.state == .dead)
        }
    }

    @Test func aRelayedAliveRecordNeverPairsAnImpliedIncarnationWithAnOlderAddress() {
        var a = nodeKnowingOne()
        let digest = Digest(bucketsLog2: 0, bucketHashes: [0], originCount: 0, memberHash: 0, memberCount: 2)
        _ = a.onDatagram(envelope(from: 1, incarnation: 2, counter: 1, .digest(digest)), from: moved, now: .milliseconds(100))
        #expect(a.members[nodeID(1)]?.incarnation == 2)
        // Node 2 joins: the list it gets holds node 1 as last announced (incarnation 1, old
        // address), not "alive at 2 at the old address", which would beat node 1's own record.
        let out = a.onDatagram(envelope(from: 2, incarnation: 1, counter: 1, .join(updates: [makeNode(2).selfUpdate()])),
                               from: address(2), now: .milliseconds(200))
        let about1 = out.messages.flatMap { m -> [MemberUpdate] in
            if case let .memberSync(_, ups) = m.message { ups } else { [] }
        }.filter { $0.node == nodeID(1) && $0.state == .alive }
        #expect(about1.count == 1)
        #expect(about1.first?.incarnation == 1 && about1.first?.address == address(1))
        // Nor does it gossip such a record when implicit liveness brings a dead member back.
        #expect(a.updates.pending(for: nodeID(1)).map { $0.incarnation < 2 || $0.address == moved } ?? true)
    }

    @Test func afterARestartAMembersOwnRecordAtTheRestoredIncarnationStillMovesIt() {
        // The shell persisted node 1 at incarnation 2 with the address it had then (possibly
        // one learnt with an older incarnation): node 1's own record at 2 must still win.
        let known = MemberSnapshot(restoring: nodeID(1), address: address(1), incarnation: 2, name: "n1", role: "")
        var a = makeNode(0, restore: GossipDurableState(lastIncarnation: 4, knownPeers: [known]))
        _ = a.start(seeds: [], now: .zero)
        let ping = envelope(from: 1, incarnation: 2, counter: 1,
                            .ping(seq: 4, target: nodeID(0), updates: [movedRecord()], adverts: []))
        let out = a.onDatagram(ping, from: moved, now: .milliseconds(10))
        #expect(a.members[nodeID(1)]?.address == moved)
        #expect(out.messages.filter { if case .ack(4, _, _) = $0.message { true } else { false } }.map(\.to) == [moved])
    }

    @Test func anUnknownSenderIsAdmittedAtTheAddressInItsOwnRecord() {
        var a = makeNode(0)
        _ = a.start(seeds: [], now: .zero)
        let out = a.onDatagram(envelope(from: 1, incarnation: 2, counter: 1,
                                        .ping(seq: 3, target: nodeID(0), updates: [movedRecord()], adverts: [])),
                               from: PeerAddress(host: "10.9.9.9", port: 40000), now: .milliseconds(5))
        #expect(a.members[nodeID(1)]?.address == moved)
        #expect(out.messages.filter { if case .ack(3, _, _) = $0.message { true } else { false } }.map(\.to) == [moved])
    }

    /// The reported failure: a member killed and started again on another address, with
    /// the member list it had persisted, with or without a seed to join through.
    @Test(arguments: [false, true])
    func aClusterMemberRestartedOnANewAddressIsAliveInEveryViewAgain(joinsThroughASeed: Bool) {
        var net = Net.cluster(3)
        net.run(ms: 5000)
        for i in 0..<3 { #expect(net.nodes[i]!.aliveMembers.count == 2) }
        let inc = net.nodes[2]!.incarnation
        let restored = GossipDurableState(lastIncarnation: inc, knownPeers: net.nodes[2]!.memberSnapshots().filter { !$0.isSelf })
        let newAddress = PeerAddress(host: "10.0.2.2", port: 9000)
        var fresh = makeNode(2, restore: restored, at: newAddress)
        net.moved[2] = newAddress
        let out = fresh.start(seeds: joinsThroughASeed ? [address(0)] : [], now: net.now)
        net.nodes[2] = fresh
        net.handle(2, out)
        net.run(ms: 8000)
        for i in 0..<2 {
            let g = net.nodes[i]!
            let snap = g.memberSnapshots().first { $0.node == nodeID(2) }
            #expect(snap?.state == .alive, "n\(i) sees n2 as \(String(describing: snap?.state))")
            #expect(snap?.address == newAddress, "n\(i) has n2 at \(String(describing: snap?.address))")
            #expect(snap?.incarnation == inc + 1)
        }
        let back = net.nodes[2]!.memberSnapshots().filter { !$0.isSelf }
        #expect(back.count == 2)
        #expect(back.allSatisfy { $0.state == .alive && $0.lastHeard != nil }, "\(back.map { ($0.node.short, $0.state, $0.lastHeard as Any) })")
    }
}
