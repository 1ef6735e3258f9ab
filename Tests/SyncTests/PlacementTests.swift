import Gossip
import Testing
@testable import Sync

@Suite("Placement: targets and the drop rule, without a coordinator")
struct PlacementTests {
    let policy = PlacementPolicy(rules: [
        .game: PlacementRule(roles: ["training", "storage"], minCopies: 2, maxCopies: 3),
        .model: PlacementRule(roles: ["selfplay", "training"]),
    ])

    func cluster(_ n: Int, roles: (Int) -> [String] = { _ in ["training"] }) -> [NodeID: NodeFacts] {
        var out = [NodeID: NodeFacts]()
        for i in 0..<n { out[nid(i)] = NodeFacts(roles: roles(i), diskTotalBytes: 100 << 30) }
        return out
    }

    @Test("Targets depend only on the facts: every node computes the same list")
    func targetsAreDeterministic() {
        let facts = cluster(8)
        let t = Placement.targets(cid(1), type: .game, alive: facts, policy: policy)
        #expect(t.count == 3)
        for _ in 0..<20 {
            let copy = Dictionary(uniqueKeysWithValues: facts.shuffled().map { ($0.key, $0.value) })
            #expect(Placement.targets(cid(1), type: .game, alive: copy, policy: policy) == t)
        }
        // Different items spread over different nodes.
        let firsts = Set((0..<50).map { Placement.targets(cid($0), type: .game, alive: facts, policy: policy)[0] })
        #expect(firsts.count >= 5)
    }

    @Test("Excluded nodes, nodes of other roles and full nodes are never targets; a type without a rule goes everywhere")
    func ineligibleNodesAreNeverTargets() {
        var facts = cluster(6) { $0 < 3 ? ["training"] : ["selfplay"] }
        facts[nid(0)]!.excluded = true
        facts[nid(1)]!.full = true
        let t = Placement.targets(cid(9), type: .game, alive: facts, policy: policy)
        #expect(t == [nid(2)])
        #expect(Set(Placement.targets(cid(9), type: .model, alive: facts, policy: policy)) == Set((2..<6).map(nid)))
        #expect(Placement.targets(cid(9), type: .npz, alive: facts, policy: policy).count == 4)  // no rule: every node but the excluded and the full one
    }

    @Test("An NFS group counts as one candidate, and one holder in it serves the group")
    func nfsGroupCountsOnce() {
        var facts = cluster(5)
        for i in 0..<3 { facts[nid(i)]!.nfsGroup = "gh200" }
        let t = Placement.targets(cid(3), type: .model, alive: facts, policy: policy)
        #expect(t.count == 3)  // one of the group + the two others
        #expect(t.filter { facts[$0]!.nfsGroup == "gh200" }.count == 1)
        #expect(Placement.countedCopies(holders: [nid(0), nid(1), nid(2)], alive: facts) == 1)
    }

    @Test("When a holder dies, the next node in rank becomes a target")
    func nextInRankReplacesADeadTarget() {
        var facts = cluster(6)
        let t = Placement.targets(cid(5), type: .game, alive: facts, policy: policy)
        facts[t[0]] = nil
        let after = Placement.targets(cid(5), type: .game, alive: facts, policy: policy)
        #expect(after.count == 3)
        #expect(Array(after.prefix(2)) == Array(t.suffix(2)))
    }

    @Test("A non-target origin drops its copy once the targets hold it; a target never drops")
    func originDropsOncePlacementIsMet() {
        let facts = cluster(6) { $0 == 0 ? ["selfplay"] : ["training"] }
        let t = Placement.targets(cid(7), type: .game, alive: facts, policy: policy)
        let origin = nid(0)
        #expect(!Placement.mayDrop(cid(7), type: .game, me: origin, alive: facts, holders: [origin], policy: policy, evicting: false))
        #expect(!Placement.mayDrop(cid(7), type: .game, me: origin, alive: facts, holders: [origin, t[0]], policy: policy, evicting: false))
        let all = Set(t + [origin])
        #expect(Placement.mayDrop(cid(7), type: .game, me: origin, alive: facts, holders: all, policy: policy, evicting: false))
        for x in t { #expect(!Placement.mayDrop(cid(7), type: .game, me: x, alive: facts, holders: all, policy: policy, evicting: false)) }
    }

    @Test("Ephemeral holders never count toward min_copies")
    func ephemeralHoldersDoNotCount() {
        var facts = cluster(4)
        facts[nid(1)]!.ephemeral = true
        facts[nid(2)]!.ephemeral = true
        #expect(Placement.countedCopies(holders: [nid(1), nid(2), nid(3)], alive: facts) == 1)
    }

    @Test("When the best-ranked max_copies nodes are ephemeral, the next durable nodes are targets until min_copies durable ones are")
    func ephemeralTargetsDoNotUseUpTheDurableCopies() {
        let p = PlacementPolicy(rules: [.npz: PlacementRule(minCopies: 2, maxCopies: 2)])
        var facts = cluster(6)
        let first = Placement.targets(cid(9), type: .npz, alive: facts, policy: p)
        #expect(first.count == 2)
        for t in first { facts[t]!.ephemeral = true }
        let t = Placement.targets(cid(9), type: .npz, alive: facts, policy: p)
        // The two ephemeral nodes stay targets (max_copies), and two durable ones join them.
        #expect(t.count == 4 && Array(t.prefix(2)) == first)
        #expect(t.dropFirst(2).allSatisfy { facts[$0]!.durable })
        #expect(Placement.countedCopies(holders: Set(t), alive: facts) == 2)
        // With one durable node among the first two, only one more is added.
        facts[first[1]]!.ephemeral = false
        #expect(Placement.targets(cid(9), type: .npz, alive: facts, policy: p).count == 3)
        // Fewer durable nodes than min_copies: every one of them, no more.
        for (id, _) in facts where !first.contains(id) { facts[id]!.ephemeral = true }
        facts[first[1]]!.ephemeral = false
        #expect(Placement.targets(cid(9), type: .npz, alive: facts, policy: p) == first)
    }

    @Test("However stale the views, nodes that drop at once never leave fewer than min_copies of the copies that were there",
          arguments: 0..<200)
    func simultaneousDropsKeepMinCopies(seed: Int) {
        var rng = SplitMix64(seed: UInt64(seed))
        let n = 3 + rng.below(8)
        var facts = [NodeID: NodeFacts]()
        for i in 0..<n {
            facts[nid(i)] = NodeFacts(roles: rng.below(4) == 0 ? ["selfplay"] : ["training"], nfsGroup: "",
                                      excluded: rng.below(8) == 0, diskTotalBytes: UInt64(1 + rng.below(4)) << 40,
                                      full: rng.below(5) == 0)
        }
        let rule = PlacementRule(roles: ["training"], minCopies: 1 + rng.below(3), maxCopies: rng.below(2) == 0 ? nil : 1 + rng.below(4))
        let pol = PlacementPolicy(rules: [.game: rule])
        let holders = Set(facts.keys.filter { _ in rng.below(2) == 0 })
        var dropped = Set<NodeID>()
        for h in holders {
            // Each node sees a possibly stale world: some others missing, some "full" flags flipped.
            var view = facts
            for k in facts.keys where k != h && rng.below(4) == 0 { view[k] = nil }
            for k in view.keys where rng.below(6) == 0 { view[k]!.full.toggle() }
            if Placement.mayDrop(cid(seed), type: .game, me: h, alive: view, holders: holders, policy: pol, evicting: rng.below(2) == 0) {
                dropped.insert(h)
            }
        }
        let remaining = holders.subtracting(dropped)
        let durableBefore = holders.filter { facts[$0]!.durable }.count
        #expect(remaining.count >= min(rule.minCopies, durableBefore), "seed \(seed): \(holders.count) holders, \(dropped.count) dropped")
        if !holders.isEmpty { #expect(!remaining.isEmpty, "seed \(seed): the last copy was dropped") }
    }

    // MARK: - Fetching

    @Test("Without a placement policy every node fetches every kept item, as before placement")
    func noPolicyFetchesEverything() {
        let facts = cluster(4) { $0 < 2 ? ["training"] : ["storage"] }
        for i in 0..<4 {
            #expect(Placement.fetchDecision(cid(3), types: [.game], me: nid(i), alive: facts, policy: nil) == .fetch)
        }
    }

    @Test("With a policy exactly the targets fetch, and a node of another role does not")
    func onlyTargetsFetch() {
        let p = PlacementPolicy(rules: [.game: PlacementRule(roles: ["storage"], minCopies: 2, maxCopies: 2)])
        let facts = cluster(5) { $0 < 2 ? ["training"] : ["storage"] }
        for item in 0..<20 {
            let fetching = Set((0..<5).filter { Placement.fetchDecision(cid(item), types: [.game], me: nid($0), alive: facts, policy: p) == .fetch }.map(nid))
            #expect(fetching == Set(Placement.targets(cid(item), type: .game, alive: facts, policy: p)))
            #expect(fetching.count == 2 && !fetching.contains(nid(0)) && !fetching.contains(nid(1)))
            #expect(Placement.fetchDecision(cid(item), types: [.game], me: nid(0), alive: facts, policy: p) == .notTarget)
        }
    }

    @Test("When a target dies the next-ranked eligible node becomes one and fetches")
    func aDeadTargetsPlaceGoesToTheNext() {
        let p = PlacementPolicy(rules: [.game: PlacementRule(roles: ["storage"], minCopies: 2, maxCopies: 2)])
        var facts = cluster(5) { $0 < 2 ? ["training"] : ["storage"] }
        let before = Placement.targets(cid(7), type: .game, alive: facts, policy: p)
        let third = Set((2..<5).map(nid)).subtracting(before).first!
        #expect(Placement.fetchDecision(cid(7), types: [.game], me: third, alive: facts, policy: p) == .notTarget)
        facts[before[0]] = nil
        #expect(Placement.fetchDecision(cid(7), types: [.game], me: third, alive: facts, policy: p) == .fetch)
        #expect(Placement.fetchDecision(cid(7), types: [.game], me: before[1], alive: facts, policy: p) == .fetch)
    }

    @Test("A full node fetches nothing, even without a policy, and its place goes to another node")
    func aFullNodeFetchesNothing() {
        let p = PlacementPolicy(rules: [.game: PlacementRule(roles: ["storage"], maxCopies: 1)])
        var facts = cluster(3) { _ in ["storage"] }
        let first = Placement.targets(cid(4), type: .game, alive: facts, policy: p)[0]
        facts[first]!.full = true
        #expect(Placement.fetchDecision(cid(4), types: [.game], me: first, alive: facts, policy: p) == .full)
        #expect(Placement.fetchDecision(cid(4), types: [.game], me: first, alive: facts, policy: nil) == .full)
        let next = Placement.targets(cid(4), type: .game, alive: facts, policy: p)
        #expect(next.count == 1 && next[0] != first)
        #expect(Placement.fetchDecision(cid(4), types: [.game], me: next[0], alive: facts, policy: p) == .fetch)
    }

    @Test("A node stating no roles is eligible for every type; an unknown type or a type without a rule is fetched")
    func noRolesAndUnknownTypes() {
        let p = PlacementPolicy(rules: [.game: PlacementRule(roles: ["storage"])])
        let facts = cluster(3) { $0 == 0 ? [] : ["training"] }
        #expect(Placement.fetchDecision(cid(5), types: [.game], me: nid(0), alive: facts, policy: p) == .fetch)
        #expect(Placement.fetchDecision(cid(5), types: [.game], me: nid(1), alive: facts, policy: p) == .notTarget)
        #expect(Placement.fetchDecision(cid(5), types: [], me: nid(1), alive: facts, policy: p) == .fetch)
        #expect(Placement.fetchDecision(cid(5), types: [.model], me: nid(1), alive: facts, policy: p) == .fetch)
        #expect(Placement.fetchDecision(cid(5), types: [.model, .game], me: nid(1), alive: facts, policy: p) == .fetch)
    }

    @Test("A content larger than the room left under the cap, fetches under way counted, is not fetched; one that fits is")
    func aContentThatDoesNotFitUnderTheCapIsNotFetched() {
        let p = PlacementPolicy(rules: [.game: PlacementRule(roles: ["storage"])])
        let facts = cluster(3) { _ in ["storage"] }
        // Not full, but 100 bytes of room: two 60-byte fetches at once would take it over.
        #expect(Placement.fetchDecision(cid(6), types: [.game], me: nid(0), alive: facts, policy: p, sizeBytes: 60, roomBytes: 100) == .fetch)
        #expect(Placement.fetchDecision(cid(7), types: [.game], me: nid(0), alive: facts, policy: p, sizeBytes: 60, roomBytes: 40) == .full)
        #expect(Placement.fetchDecision(cid(7), types: [.game], me: nid(0), alive: facts, policy: nil, sizeBytes: 60, roomBytes: 40) == .full)
        // Without a size or a room, only the full flag counts, as before.
        #expect(Placement.fetchDecision(cid(7), types: [.game], me: nid(0), alive: facts, policy: p, sizeBytes: 60) == .fetch)
    }

    @Test("An item is under min_copies while fewer alive durable eligible nodes than its rule asks hold it")
    func underMinCopiesCountsOnlyAliveDurableEligibleHolders() {
        // 0, 1 storage; 2 training; 3 storage but ephemeral; games need 2 copies on training or storage nodes.
        var facts = cluster(5) { $0 == 2 ? ["training"] : ($0 == 4 ? ["selfplay"] : ["storage"]) }
        facts[nid(3)]!.ephemeral = true
        let kept = [Placement.Kept(contentID: cid(1), type: .game), Placement.Kept(contentID: cid(2), type: .game),
                    Placement.Kept(contentID: cid(3), type: .game), Placement.Kept(contentID: cid(4), type: .other),
                    Placement.Kept(contentID: cid(1), type: .other)]
        let holders: [ContentID: Set<NodeID>] = [
            cid(1): [nid(0), nid(2)],          // two eligible durable copies: met
            cid(2): [nid(0), nid(3), nid(4)],  // ephemeral and ineligible copies do not count
            cid(3): [nid(0), nid(9)],          // a holder that is not alive does not count
            cid(4): [nid(4)],                  // no rule: min 1 anywhere
        ]
        let under = Placement.underMinCopies(kept, holders: { holders[$0] ?? [] }, alive: facts, policy: policy)
        #expect(under == [cid(2), cid(3)].sorted())
        // Without a policy the default rule asks for one alive durable copy.
        let none = Placement.underMinCopies(kept, holders: { holders[$0] ?? [] }, alive: facts, policy: PlacementPolicy())
        #expect(none.isEmpty)
        #expect(Placement.underMinCopies([Placement.Kept(contentID: cid(5), type: .game)], holders: { _ in [] },
                                         alive: facts, policy: PlacementPolicy()) == [cid(5)])
    }

    @Test("The canonical rules are the same however they were written, and differ when any rule does")
    func canonicalRulesIgnoreOrderAndRepeats() {
        let a = PlacementPolicy(rules: [
            .game: PlacementRule(roles: ["training", "storage"], minCopies: 2, maxCopies: 3),
            .model: PlacementRule(roles: ["selfplay", "training"]),
        ])
        let b = PlacementPolicy(rules: [
            .model: PlacementRule(roles: ["training", "selfplay", "training"]),
            .game: PlacementRule(roles: ["storage", "training"], minCopies: 2, maxCopies: 3),
        ])
        #expect(a.canonicalBytes == b.canonicalBytes)
        var c = a
        c.rules[.game]!.minCopies = 3
        #expect(c.canonicalBytes != a.canonicalBytes)
        var d = a
        d.rules[.game]!.maxCopies = nil
        #expect(d.canonicalBytes != a.canonicalBytes)
        // No rules: the prefix and a zero count.
        #expect(PlacementPolicy().canonicalBytes == Array("meshnode/placement/v1".utf8) + [0, 0])
        // game (1): 2 roles "storage" < "training"; min 2; max 3.
        let game = PlacementPolicy(rules: [.game: PlacementRule(roles: ["training", "storage"], minCopies: 2, maxCopies: 3)])
        #expect(game.canonicalBytes == Array("meshnode/placement/v1".utf8) + [0, 1, 1, 2, 0, 7] + Array("storage".utf8)
                + [0, 8] + Array("training".utf8) + [0, 2, 0, 3])
    }
}
