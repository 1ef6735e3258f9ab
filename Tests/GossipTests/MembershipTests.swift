import Testing
@testable import Gossip

@Suite struct MembershipTests {
    @Test func nodesJoinThroughOneSeedAndAllSeeEachOtherAlive() {
        var net = Net.cluster(6)
        net.run(ms: 10_000)
        for i in 0..<6 {
            let g = net.nodes[i]!
            #expect(g.aliveMembers.count == 5, "n\(i) sees \(g.aliveMembers.count) alive")
        }
    }

    @Test func pingIsAnsweredWithAnAckCarryingTheSameSequence() {
        var a = makeNode(0), b = makeNode(1)
        _ = a.start(seeds: [], now: .zero)
        _ = b.start(seeds: [], now: .zero)
        // b introduces itself to a with a ping that carries its own alive record.
        var env = Envelope(sender: nodeID(1), incarnation: 1, counter: 1,
                           message: .ping(seq: 77, target: nodeID(0), updates: [b.selfUpdate()], adverts: []))
        let out = a.onDatagram(env.encode(signer: FakeSigner(nodeID: nodeID(1))), from: address(1), now: .milliseconds(10))
        let acks = out.messages.filter { if case .ack(77, _, _) = $0.message { true } else { false } }
        #expect(acks.count == 1)
        #expect(acks.first?.to == address(1))
        #expect(out.transitions.contains { $0.node == nodeID(1) && $0.to == .alive && $0.from == nil })
        // A ping meant for someone else is refused.
        env.counter = 2
        env.message = .ping(seq: 78, target: nodeID(9), updates: [], adverts: [])
        let out2 = a.onDatagram(env.encode(signer: FakeSigner(nodeID: nodeID(1))), from: address(1), now: .milliseconds(20))
        #expect(out2.rejections == [.wrongTarget])
    }

    @Test func unknownSenderWithoutAnIntroductionIsRejected() {
        var a = makeNode(0)
        _ = a.start(seeds: [], now: .zero)
        let env = Envelope(sender: nodeID(5), incarnation: 1, counter: 1, message: .nack(seq: 1))
        let out = a.onDatagram(env.encode(signer: FakeSigner(nodeID: nodeID(5))), from: address(5), now: .zero)
        #expect(out.rejections == [.unknownSender])
        #expect(a.memberCount == 0)
    }

    @Test func anUntrustedSenderIsRejectedAsAnUntrustedKeyAndNeverAdmitted() {
        var a = makeNode(0, trust: .keys([nodeID(0), nodeID(1)]))
        _ = a.start(seeds: [], now: .zero)
        let intruder = makeNode(7)
        let env = Envelope(sender: nodeID(7), incarnation: 1, counter: 1, message: .join(updates: [intruder.selfUpdate()]))
        let out = a.onDatagram(env.encode(signer: FakeSigner(nodeID: nodeID(7))), from: address(7), now: .zero)
        #expect(out.rejections == [.untrustedKey])
        #expect(a.memberCount == 0)
        #expect(out.sends.isEmpty)
    }

    @Test func credentialIsHandedToTheTrustPolicy() {
        let policy = TrustPolicy { _, cred in cred == [1, 2, 3] }
        var a = makeNode(0, trust: policy)
        _ = a.start(seeds: [], now: .zero)
        var good = makeNode(1).selfUpdate()
        good.credential = [1, 2, 3]
        var bad = makeNode(2).selfUpdate()
        bad.credential = [9]
        let e1 = Envelope(sender: nodeID(1), incarnation: 1, counter: 1, message: .join(updates: [good]))
        let e2 = Envelope(sender: nodeID(2), incarnation: 1, counter: 1, message: .join(updates: [bad]))
        _ = a.onDatagram(e1.encode(signer: FakeSigner(nodeID: nodeID(1))), from: address(1), now: .zero)
        let out = a.onDatagram(e2.encode(signer: FakeSigner(nodeID: nodeID(2))), from: address(2), now: .zero)
        #expect(a.memberState(nodeID(1)) == .alive)
        #expect(a.memberState(nodeID(2)) == nil)
        #expect(out.rejections == [.untrustedKey])
    }

    @Test func suspectMemberRefutesWithHigherIncarnation() {
        var net = Net.cluster(3)
        net.run(ms: 5000)
        let inc = net.nodes[1]!.incarnation
        // Node 2 hears (from node 0) that node 1 is suspect; node 1 hears it too.
        let accusation = MemberUpdate(state: .suspect, node: nodeID(1), incarnation: inc, accuser: nodeID(0))
        let env = Envelope(sender: nodeID(0), incarnation: net.nodes[0]!.incarnation, counter: 1_000_000,
                           message: .memberSync(wantReply: false, updates: [accusation]))
        let out = net.nodes[1]!.onDatagram(env.encode(signer: FakeSigner(nodeID: nodeID(0))), from: address(0), now: net.now)
        #expect(out.persistedIncarnations == [inc + 1])
        #expect(net.nodes[1]!.incarnation == inc + 1)
        #expect(net.nodes[1]!.counters.refutations == 1)
        net.handle(1, out)
        net.run(ms: 5000)
        #expect(net.nodes[0]!.memberState(nodeID(1)) == .alive)
        #expect(net.nodes[2]!.memberState(nodeID(1)) == .alive)
        #expect(net.nodes[0]!.memberSnapshots().first { $0.node == nodeID(1) }?.incarnation == inc + 1)
    }

    @Test func failedProbeAsksKOthersThenSuspectsThenDeclaresDead() {
        var c = GossipConfig()
        c.indirectChecks = 3
        var net = Net.cluster(6, config: c)
        net.run(ms: 8000)
        #expect(net.nodes[0]!.aliveMembers.count == 5)
        net.blocked = [5]  // node 5 crashes
        net.log = [:]
        net.run(ms: 3000)
        let pingReqs = net.log.values.joined().map { [$0] }.flatMap { $0.messages }.filter {
            if case let .pingReq(_, t, _, _) = $0.message { t == nodeID(5) } else { false }
        }
        #expect(!pingReqs.isEmpty)
        let (_, hi) = c.suspicionTimeoutsMs(members: 6)
        net.run(ms: hi + 5000)
        for i in 0..<5 {
            #expect(net.nodes[i]!.memberState(nodeID(5)) == .dead, "n\(i) sees n5 as \(String(describing: net.nodes[i]!.memberState(nodeID(5))))")
        }
        let trans = net.log.values.joined().map { [$0] }.flatMap { $0.transitions }.filter { $0.node == nodeID(5) }
        #expect(trans.contains { $0.to == .suspect })
        #expect(trans.contains { $0.to == .dead })
    }

    @Test func suspicionTimeoutShrinksWithIndependentConfirmations() {
        let c = GossipConfig()
        let n = 100
        let (lo, hi) = c.suspicionTimeoutsMs(members: n)
        #expect(c.suspicionTimeoutMs(members: n, confirmations: 0) == hi)
        #expect(c.suspicionTimeoutMs(members: n, confirmations: c.suspicionConfirmations) == lo)
        var last = Int64.max
        for k in 0...c.suspicionConfirmations {
            let t = c.suspicionTimeoutMs(members: n, confirmations: k)
            #expect(t < last)
            last = t
        }
        // Scales with log(n).
        #expect(c.suspicionTimeoutsMs(members: 1000).min > c.suspicionTimeoutsMs(members: 10).min)
        #expect(c.retransmitLimit(members: 1000) > c.retransmitLimit(members: 5))
    }

    @Test func deadMemberIsRetriedAndRejoinsWhenThePartitionHeals() {
        var net = Net.cluster(4)
        net.run(ms: 6000)
        net.blocked = [3]
        net.run(ms: 40_000)
        #expect(net.nodes[0]!.memberState(nodeID(3)) == .dead)
        net.blocked = []
        net.run(ms: 15_000)
        for i in 0..<4 {
            #expect(net.nodes[i]!.aliveMembers.count == 3, "n\(i) sees \(net.nodes[i]!.aliveMembers.count) alive")
        }
    }

    @Test func gracefulLeaveIsAnnouncedAndSeenAsLeft() {
        var net = Net.cluster(4)
        net.run(ms: 6000)
        let out = net.nodes[2]!.leave(now: net.now)
        #expect(!out.sends.isEmpty)
        net.handle(2, out)
        net.run(ms: 3000)
        for i in [0, 1, 3] { #expect(net.nodes[i]!.memberState(nodeID(2)) == .left) }
    }

    @Test func restartContinuesAboveTheLastIncarnationAndIsAliveAgain() {
        var net = Net.cluster(3)
        net.run(ms: 5000)
        let inc = net.nodes[2]!.incarnation
        let restored = GossipDurableState(lastIncarnation: inc, knownPeers: net.nodes[2]!.memberSnapshots().filter { !$0.isSelf })
        var fresh = makeNode(2, restore: restored)
        let out = fresh.start(seeds: [address(0)], now: net.now)
        #expect(out.persistedIncarnations.first == inc + 1)
        net.nodes[2] = fresh
        net.handle(2, out)
        net.run(ms: 5000)
        #expect(net.nodes[0]!.memberSnapshots().first { $0.node == nodeID(2) }?.incarnation == inc + 1)
        #expect(net.nodes[0]!.memberState(nodeID(2)) == .alive)
    }

    @Test func streamOnlyPeerGetsEveryMessageOverTheStream() {
        var c = GossipConfig()
        c.streamOnlyPeers = [address(1)]
        var net = Net()
        net.add(0, makeNode(0, config: c))
        net.add(1, makeNode(1))
        net.handle(0, net.nodes[0]!.start(seeds: [address(1)], now: net.now))
        net.handle(1, net.nodes[1]!.start(seeds: [], now: net.now))
        net.run(ms: 5000)
        let toOne = net.log[0]!.sends.filter { $0.to == address(1) }
        #expect(!toOne.isEmpty)
        #expect(toOne.allSatisfy { $0.via == .stream })
        #expect(net.nodes[0]!.memberState(nodeID(1)) == .alive)
        #expect(net.nodes[1]!.memberState(nodeID(0)) == .alive)
    }

    @Test func datagramsNeverExceedTheSizeCap() {
        var net = Net.cluster(12)
        net.run(ms: 10_000)
        for (_, ds) in net.log {
            for s in ds.sends where s.via == .datagram { #expect(s.bytes.count <= 1200) }
        }
    }

    @Test func revalidatingAfterATrustChangeDropsMembersNoLongerAdmitted() {
        var net = Net.cluster(3)
        net.run(ms: 5000)
        let out = net.nodes[0]!.revalidate(trust: .keys([nodeID(0), nodeID(1)]), now: net.now)
        #expect(out.transitions.map(\.node) == [nodeID(2)])
        #expect(net.nodes[0]!.memberState(nodeID(2)) == nil)
        #expect(net.nodes[0]!.memberState(nodeID(1)) == .alive)
    }

    @Test func peerSwitchedToStreamOnlyAtRuntimeGetsStreamsFromThenOn() {
        var net = Net.cluster(2)
        net.run(ms: 3000)
        net.nodes[0]!.setStreamOnly(address(1), true)
        net.log = [:]
        net.run(ms: 3000)
        let toOne = net.log[0, default: []].sends.filter { $0.to == address(1) }
        #expect(!toOne.isEmpty)
        #expect(toOne.allSatisfy { $0.via == .stream })
        #expect(net.nodes[0]!.memberState(nodeID(1)) == .alive)
    }

    @Test func restoredEntriesWithABadSignatureAreDroppedUnlessMarkedVerified() {
        var bad = entry(origin: 1, seq: 1)
        bad.name = "tampered"
        let good = entry(origin: 1, seq: 2)
        let a = makeNode(0, restore: GossipDurableState(lastIncarnation: 3, entries: [bad, good]))
        #expect(a.manifest.count == 1)
        #expect(a.incarnation == 4)
        let b = makeNode(0, restore: GossipDurableState(entries: [bad, good], entriesVerified: true))
        #expect(b.manifest.count == 2)
    }

    @Test func intermediaryRelaysTheTargetsAckForAPingReq() {
        var net = Net.cluster(3)
        net.run(ms: 5000)
        // Node 0 asks node 1 to probe node 2 on its behalf.
        var out = [Directive]()
        let m2 = net.nodes[0]!.members[nodeID(2)]!
        net.nodes[0]!.send(.pingReq(seq: 4242, target: nodeID(2), address: m2.address, updates: []), toMember: nodeID(1), now: net.now, out: &out)
        net.handle(0, out)
        net.log = [:]
        net.run(ms: 100)
        let relayed = net.log[1, default: []].messages.filter { if case .ack(4242, _, _) = $0.message { true } else { false } }
        #expect(relayed.count == 1)
        #expect(relayed.first?.to == address(0))
        #expect(net.log[1, default: []].messages.contains { if case let .ping(_, t, _, _) = $0.message { t == nodeID(2) } else { false } })
    }

    @Test func pendingIndirectProbesAreBoundedAndExcessIsRejectedAsOverloaded() {
        var c = GossipConfig()
        c.maxPendingIndirectProbes = 4
        var net = Net.cluster(3, config: c)
        net.run(ms: 5000)
        net.blocked = [2]  // the target never answers, so requests stay pending
        var rejected = 0
        for k in 0..<10 {
            let env = Envelope(sender: nodeID(0), incarnation: net.nodes[0]!.incarnation, counter: 1_000_000 + UInt64(k),
                               message: .pingReq(seq: UInt32(k), target: nodeID(2), address: address(2), updates: []))
            let out = net.nodes[1]!.onDatagram(env.encode(signer: FakeSigner(nodeID: nodeID(0))), from: address(0), now: net.now)
            rejected += out.rejections.filter { $0 == .overloaded }.count
        }
        #expect(rejected == 6)
        #expect(net.nodes[1]!.pendingIndirect.count == 4)
    }

    @Test func failedProbesRaiseLocalHealthAndSuccessfulOnesLowerIt() {
        var net = Net.cluster(4)
        net.run(ms: 5000)
        #expect(net.nodes[0]!.localHealth == 0)
        net.blocked = [1, 2, 3]  // node 0 is cut off: every probe fails, and no nack comes back
        net.run(ms: 6000)
        let raised = net.nodes[0]!.localHealth
        #expect(raised >= 2)
        #expect(raised <= GossipConfig().maxLocalHealth)
        net.blocked = []
        net.run(ms: 60_000)
        #expect(net.nodes[0]!.localHealth < raised)
    }

    @Test func messagesToASuspectCarryTheAccusationFirstSoItCanRefute() {
        var net = Net.cluster(3)
        net.run(ms: 5000)
        let inc = net.nodes[0]!.members[nodeID(2)]!.incarnation
        var out = [Directive]()
        net.nodes[0]!.setState(nodeID(2), .suspect, incarnation: inc, now: net.now, out: &out, accuser: nodeID(0))
        let ups = net.nodes[0]!.piggyback(for: nodeID(2), budget: 1000, forceSelf: false)
        #expect(ups.first?.state == .suspect)
        #expect(ups.first?.node == nodeID(2))
    }
}
