import Gossip
import Testing
@testable import Sync

/// Push-to-2 (`Custody.custodians`) and the spot outbox (`SafetyTracker`): who an origin asks
/// to take a copy at once, and when its own item stops being at risk.
@Suite("Custody: custodians for push-to-2, and the outbox of items at risk")
struct CustodyTests {
    /// Node 0 is the origin (ephemeral unless said otherwise); 1…n-1 durable with 100 GiB free.
    func cluster(_ n: Int, ephemeral: Set<Int> = [0]) -> [NodeID: NodeFacts] {
        var out = [NodeID: NodeFacts]()
        for i in 0..<n {
            out[nid(i)] = NodeFacts(ephemeral: ephemeral.contains(i), diskTotalBytes: 200 << 30, diskFreeBytes: 100 << 30)
        }
        return out
    }

    func view(_ alive: [NodeID: NodeFacts], rtt: [Int: Int64] = [:], avoid: Set<Int> = []) -> SafetyTracker.View {
        SafetyTracker.View(me: nid(0), alive: alive, rttNs: Dictionary(uniqueKeysWithValues: rtt.map { (nid($0.key), $0.value) }),
                           avoid: Set(avoid.map(nid)))
    }

    func at(_ s: Double) -> Instant { Instant(nanoseconds: Int64(s * 1e9)) }

    func asks(_ d: [SafetyTracker.Directive]) -> [NodeID] {
        d.compactMap { if case let .ask(_, n) = $0 { n } else { nil } }
    }

    // MARK: - Custody.custodians

    @Test("Custodians are durable members other than me, never excluded, full or avoided ones")
    func custodiansAreDurableAndEligible() {
        var facts = cluster(8, ephemeral: [0, 1, 2])
        facts[nid(3)]!.excluded = true
        facts[nid(4)]!.full = true
        let c = Custody.custodians(cid(1), type: .game, me: nid(0), alive: facts, rttNs: [:], policy: nil,
                                   avoid: [nid(5)], count: 10)
        #expect(Set(c) == [nid(6), nid(7)])
        // Asked from a durable node, it is still never among its own custodians.
        let fromDurable = Custody.custodians(cid(1), type: .game, me: nid(6), alive: facts, rttNs: [:], policy: nil,
                                             avoid: [], count: 10)
        #expect(Set(fromDurable) == [nid(5), nid(7)])
        #expect(Custody.custodians(cid(1), type: .game, me: nid(0), alive: facts, rttNs: [:], policy: nil, avoid: [], count: 0).isEmpty)
        #expect(Custody.custodians(cid(1), type: .game, me: nid(0), alive: cluster(3, ephemeral: [0, 1, 2]), rttNs: [:],
                                   policy: nil, avoid: [], count: 2).isEmpty)
    }

    @Test("Placement's targets come first, then the lowest RTT (unknown last), then the most free disk, then the node id")
    func custodiansAreOrderedByTargetsThenRttThenFreeDisk() {
        // Games go to storage nodes: 1 and 2 are targets, 3…6 are not.
        let policy = PlacementPolicy(rules: [.game: PlacementRule(roles: ["storage"], minCopies: 2, maxCopies: 2)])
        var facts = cluster(7)
        for i in 1...2 { facts[nid(i)]!.roles = ["storage"] }
        for i in 3...6 { facts[nid(i)]!.roles = ["selfplay"] }
        facts[nid(6)]!.diskFreeBytes = 900 << 30
        facts[nid(5)]!.diskFreeBytes = 10 << 30
        let rtt: [NodeID: Int64] = [nid(1): 50_000_000, nid(2): 5_000_000, nid(3): 1_000_000, nid(4): 9_000_000,
                                    nid(5): 9_000_000]
        let c = Custody.custodians(cid(2), type: .game, me: nid(0), alive: facts, rttNs: rtt, policy: policy, avoid: [], count: 10)
        // Targets by RTT (2 before 1, though 3 is nearer than both), then the others by RTT:
        // 3, then 4 and 5 tie on RTT and 4 has more free disk, then 6 whose RTT is unknown.
        #expect(c == [nid(2), nid(1), nid(3), nid(4), nid(5), nid(6)])
        #expect(Custody.custodians(cid(2), type: .game, me: nid(0), alive: facts, rttNs: rtt, policy: policy, avoid: [], count: 2)
                    == [nid(2), nid(1)])
        // Equal on everything: the node id decides, the same on every call.
        let flat = cluster(5)
        let byID = Custody.custodians(cid(3), type: .npz, me: nid(0), alive: flat, rttNs: [:], policy: nil, avoid: [], count: 4)
        #expect(byID == [nid(1), nid(2), nid(3), nid(4)].sorted())
        // Without an RTT, more free disk wins.
        var disks = cluster(4)
        disks[nid(3)]!.diskFreeBytes = 150 << 30
        #expect(Custody.custodians(cid(3), type: .npz, me: nid(0), alive: disks, rttNs: [:], policy: nil, avoid: [], count: 1) == [nid(3)])
    }

    // MARK: - SafetyTracker: an ephemeral origin

    @Test("An ephemeral origin's item asks two custodians at once and stays at risk until a durable node other than itself holds it")
    func ephemeralItemStaysTrackedUntilADurableHolderIsSeen() {
        var facts = cluster(5, ephemeral: [0, 4])
        let v = view(facts, rtt: [1: 1_000_000, 2: 2_000_000, 3: 3_000_000])
        var t = SafetyTracker()
        let d = t.originated(cid(1), type: .game, sizeBytes: 1 << 20, durableHere: false, nowMs: 5_000, now: at(1), view: v)
        #expect(d == [.ask(cid(1), custodian: nid(1)), .ask(cid(1), custodian: nid(2))])
        #expect(t.tracked[cid(1)] != nil)
        #expect(t.atRiskBytes == 1 << 20 && t.oldestEnqueuedMs == 5_000)
        // The same item originated again is neither tracked twice nor asked again.
        #expect(t.originated(cid(1), type: .game, sizeBytes: 1 << 20, durableHere: false, nowMs: 6_000, now: at(1.5), view: v).isEmpty)
        // An ephemeral holder, the origin itself, and a node not alive in the view do not make it safe.
        #expect(t.holderSeen(cid(1), nid(4), now: at(2), view: v).isEmpty)
        #expect(t.holderSeen(cid(1), nid(0), now: at(2), view: v).isEmpty)
        #expect(t.holderSeen(cid(1), nid(9), now: at(2), view: v).isEmpty)
        #expect(t.replied(cid(1), from: nid(1), .accepted, now: at(2), view: v).isEmpty)
        #expect(t.tracked[cid(1)]?.asked[nid(1)]?.accepted == true)
        #expect(t.tick(now: at(3), view: v).isEmpty)
        #expect(t.tracked[cid(1)] != nil)
        // A durable holder (a holder record, or a custodian's `complete`).
        #expect(t.holderSeen(cid(1), nid(3), now: at(4), view: v) == [.safe(cid(1), by: nid(3))])
        #expect(t.tracked.isEmpty && t.atRiskBytes == 0 && t.oldestEnqueuedMs == nil)
        // A reply after it is safe changes nothing.
        #expect(t.replied(cid(1), from: nid(2), .complete, now: at(5), view: v).isEmpty)

        // `complete` from a custodian is enough; so is a holder record read at a tick.
        _ = t.originated(cid(2), type: .game, sizeBytes: 10, durableHere: false, nowMs: 0, now: at(6), view: v)
        #expect(t.replied(cid(2), from: nid(2), .complete, now: at(7), view: v) == [.safe(cid(2), by: nid(2))])
        _ = t.originated(cid(3), type: .game, sizeBytes: 10, durableHere: false, nowMs: 0, now: at(8), view: v)
        #expect(t.tick(now: at(9), view: v, holders: { $0 == cid(3) ? [nid(4), nid(3)] : [] }) == [.safe(cid(3), by: nid(3))])
        // With a node stated ephemeral since, its `complete` no longer counts.
        _ = t.originated(cid(4), type: .game, sizeBytes: 10, durableHere: false, nowMs: 0, now: at(10), view: v)
        facts[nid(1)]!.ephemeral = true
        #expect(t.replied(cid(4), from: nid(1), .complete, now: at(11), view: view(facts)).isEmpty)
        #expect(t.tracked[cid(4)] != nil)
    }

    @Test("A refusal asks the next custodian at once")
    func refusalAsksTheNext() {
        let v = view(cluster(5), rtt: [1: 1, 2: 2, 3: 3, 4: 4])
        var t = SafetyTracker()
        #expect(asks(t.originated(cid(1), type: .npz, sizeBytes: 10, durableHere: false, nowMs: 0, now: at(0), view: v)) == [nid(1), nid(2)])
        #expect(t.replied(cid(1), from: nid(1), .refused, now: at(0.1), view: v) == [.ask(cid(1), custodian: nid(3))])
        #expect(t.tracked[cid(1)]?.failed == [nid(1)])
        #expect(Set(t.tracked[cid(1)]!.asked.keys) == [nid(2), nid(3)])
        #expect(t.replied(cid(1), from: nid(3), .refused, now: at(0.2), view: v) == [.ask(cid(1), custodian: nid(4))])
    }

    @Test("An ask with no reply within the accept timeout, or accepted but not complete in time for its size, gives way to the next custodian")
    func timeoutsAskTheNext() {
        var cfg = SafetyTracker.Config()
        cfg.acceptTimeoutNs = 10_000_000_000
        cfg.completeTimeoutNs = 60_000_000_000
        cfg.assumedBytesPerSecond = 1 << 20
        let v = view(cluster(6), rtt: [1: 1, 2: 2, 3: 3, 4: 4, 5: 5])
        var t = SafetyTracker(config: cfg)
        _ = t.originated(cid(1), type: .npz, sizeBytes: 30 << 20, durableHere: false, nowMs: 0, now: at(0), view: v)
        #expect(t.replied(cid(1), from: nid(1), .accepted, now: at(0.1), view: v).isEmpty)
        // Node 2 never answers: failed at 10 s, replaced by node 3.
        #expect(t.tick(now: at(9.9), view: v).isEmpty)
        #expect(t.tick(now: at(10), view: v) == [.ask(cid(1), custodian: nid(3))])
        #expect(t.tracked[cid(1)]?.failed == [nid(2)])
        // Node 1 accepted: it has 60 s plus 30 MiB at 1 MiB/s = 90 s.
        #expect(t.replied(cid(1), from: nid(3), .accepted, now: at(10.1), view: v).isEmpty)
        #expect(t.tick(now: at(89.9), view: v).isEmpty)
        #expect(t.tick(now: at(90), view: v) == [.ask(cid(1), custodian: nid(4))])
        #expect(t.tracked[cid(1)]?.failed == [nid(1), nid(2)])
        // A late `complete` from a custodian given up on still makes it safe.
        #expect(t.replied(cid(1), from: nid(1), .complete, now: at(91), view: v) == [.safe(cid(1), by: nid(1))])
    }

    @Test("A custodian that is no longer alive gives way to the next at the next tick")
    func deadCustodianAsksTheNext() {
        var facts = cluster(5)
        let v = view(facts, rtt: [1: 1, 2: 2, 3: 3, 4: 4])
        var t = SafetyTracker()
        _ = t.originated(cid(1), type: .npz, sizeBytes: 10, durableHere: false, nowMs: 0, now: at(0), view: v)
        #expect(t.replied(cid(1), from: nid(2), .accepted, now: at(0.1), view: v).isEmpty)
        facts[nid(2)] = nil
        #expect(t.tick(now: at(1), view: view(facts, rtt: [1: 1, 3: 3, 4: 4])) == [.ask(cid(1), custodian: nid(3))])
        #expect(t.tracked[cid(1)]?.failed == [nid(2)])
    }

    @Test("When every candidate has failed, the failures are forgiven and the best are asked again")
    func failuresAreForgivenWhenNoCandidateIsLeft() {
        let v = view(cluster(3), rtt: [1: 1, 2: 2])
        var t = SafetyTracker()
        _ = t.originated(cid(1), type: .npz, sizeBytes: 10, durableHere: false, nowMs: 0, now: at(0), view: v)
        #expect(t.replied(cid(1), from: nid(1), .refused, now: at(0.1), view: v).isEmpty)
        #expect(t.tick(now: at(20), view: v) == [.ask(cid(1), custodian: nid(1)), .ask(cid(1), custodian: nid(2))])
        #expect(t.tracked[cid(1)]?.failed == [])
        // No durable member at all: nothing to ask, still at risk; asked once one appears.
        var lonely = SafetyTracker()
        let alone = view(cluster(2, ephemeral: [0, 1]))
        #expect(lonely.originated(cid(2), type: .npz, sizeBytes: 10, durableHere: false, nowMs: 0, now: at(0), view: alone).isEmpty)
        #expect(lonely.tick(now: at(1), view: alone).isEmpty)
        #expect(lonely.tick(now: at(2), view: v) == [.ask(cid(2), custodian: nid(1)), .ask(cid(2), custodian: nid(2))])
    }

    @Test("A refusal from the only custodian left is asked again at the next tick, not at once (no ask storm at round-trip speed)")
    func aLoneRefusingCustodianWaitsForTheNextTick() {
        let v = view(cluster(2))
        var t = SafetyTracker()
        #expect(asks(t.originated(cid(1), type: .npz, sizeBytes: 10, durableHere: false, nowMs: 0, now: at(0), view: v)) == [nid(1)])
        // Before the fix the refusal was forgiven at once and node 1 asked again, refusing
        // again one round trip later, until its facts said full.
        #expect(t.replied(cid(1), from: nid(1), .refused, now: at(0.001), view: v).isEmpty)
        #expect(t.tracked[cid(1)]?.failed == [nid(1)] && t.tracked[cid(1)]?.asked.isEmpty == true)
        #expect(t.tick(now: at(1), view: v) == [.ask(cid(1), custodian: nid(1))])
        #expect(t.tracked[cid(1)]?.failed == [])
    }

    @Test("With push_copies 0 nothing is asked, yet an ephemeral origin's item is still at risk")
    func pushCopiesZeroAsksNothing() {
        var cfg = SafetyTracker.Config()
        cfg.pushCopies = 0
        var t = SafetyTracker(config: cfg)
        let v = view(cluster(4))
        #expect(t.originated(cid(1), type: .npz, sizeBytes: 10, durableHere: false, nowMs: 0, now: at(0), view: v).isEmpty)
        #expect(t.tick(now: at(100), view: v).isEmpty)
        #expect(t.tracked[cid(1)] != nil)
        #expect(t.holderSeen(cid(1), nid(2), now: at(101), view: v) == [.safe(cid(1), by: nid(2))])
    }

    // MARK: - SafetyTracker: a durable origin, restarts, releases

    @Test("A durable origin offers its item to two custodians once and tracks nothing; known durable holders count toward the two")
    func durableOriginOffersOnceAndTracksNothing() {
        let facts = cluster(5, ephemeral: [])
        let v = view(facts, rtt: [1: 1, 2: 2, 3: 3, 4: 4])
        var t = SafetyTracker()
        #expect(asks(t.originated(cid(1), type: .npz, sizeBytes: 10, durableHere: true, nowMs: 0, now: at(0), view: v)) == [nid(1), nid(2)])
        #expect(t.tracked.isEmpty)
        #expect(t.tick(now: at(100), view: v).isEmpty)
        #expect(t.replied(cid(1), from: nid(1), .refused, now: at(101), view: v).isEmpty)
        // One durable holder known already: one more is asked, not that one.
        #expect(asks(t.originated(cid(2), type: .npz, sizeBytes: 10, durableHere: true, nowMs: 0, now: at(0), view: v, heldBy: [nid(1)]))
                    == [nid(2)])
        // An ephemeral origin whose bytes a durable node already holds: not at risk.
        let ev = view(cluster(5), rtt: [1: 1, 2: 2, 3: 3, 4: 4])
        var e = SafetyTracker()
        #expect(asks(e.originated(cid(3), type: .npz, sizeBytes: 10, durableHere: false, nowMs: 0, now: at(0), view: ev, heldBy: [nid(2)]))
                    == [nid(1)])
        #expect(e.tracked.isEmpty)
        // …but an ephemeral holder does not count.
        var facts2 = cluster(5)
        facts2[nid(4)]!.ephemeral = true
        #expect(asks(e.originated(cid(4), type: .npz, sizeBytes: 10, durableHere: false, nowMs: 0, now: at(0), view: view(facts2), heldBy: [nid(4)]))
                    .count == 2)
        #expect(e.tracked[cid(4)] != nil)
    }

    @Test("Items restored from the outbox after a restart keep their age and are asked again at the first tick")
    func restoredItemsAreAskedAgain() {
        let v = view(cluster(4), rtt: [1: 1, 2: 2, 3: 3])
        var before = SafetyTracker()
        _ = before.originated(cid(1), type: .game, sizeBytes: 7, durableHere: false, nowMs: 1_234, now: at(0), view: v)
        _ = before.replied(cid(1), from: nid(1), .refused, now: at(0.1), view: v)
        _ = before.replied(cid(1), from: nid(2), .accepted, now: at(0.1), view: v)
        #expect(!before.tracked[cid(1)]!.failed.isEmpty && !before.tracked[cid(1)]!.asked.isEmpty)
        // The shell persisted `tracked`; the process was killed and starts again (a new clock).
        var after = SafetyTracker(restoring: Array(before.tracked.values))
        #expect(after.tracked[cid(1)]?.asked.isEmpty == true && after.tracked[cid(1)]?.failed.isEmpty == true)
        #expect(after.oldestEnqueuedMs == 1_234 && after.atRiskBytes == 7)
        #expect(after.tick(now: at(0.5), view: v) == [.ask(cid(1), custodian: nid(1)), .ask(cid(1), custodian: nid(2))])
        #expect(after.holderSeen(cid(1), nid(1), now: at(1), view: v) == [.safe(cid(1), by: nid(1))])
    }

    @Test("An item no longer kept is released: safe by nobody, and removed")
    func releasedItemsAreSafeByNobody() {
        let v = view(cluster(3))
        var t = SafetyTracker()
        _ = t.originated(cid(1), type: .game, sizeBytes: 7, durableHere: false, nowMs: 0, now: at(0), view: v)
        #expect(t.released(cid(1)) == [.safe(cid(1), by: nil)])
        #expect(t.tracked.isEmpty)
        #expect(t.released(cid(1)).isEmpty)
        #expect(t.tick(now: at(100), view: v).isEmpty)
    }
}
