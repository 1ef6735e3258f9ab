import Gossip
import Testing
@testable import Sync

@Suite("Eviction: which complete copies a node lets go of")
struct EvictionTests {
    let policy = PlacementPolicy(rules: [.game: PlacementRule(roles: ["training", "storage"], minCopies: 2, maxCopies: 2)])

    func cluster(_ n: Int, roles: (Int) -> [String] = { _ in ["training"] }) -> [NodeID: NodeFacts] {
        var out = [NodeID: NodeFacts]()
        for i in 0..<n { out[nid(i)] = NodeFacts(roles: roles(i), diskTotalBytes: 100 << 30) }
        return out
    }

    func held(_ c: Int, size: UInt64 = 100, origin: Bool = false, folder: Bool = false, kept: Bool = true, wanted: Int64 = 0) -> Eviction.Held {
        Eviction.Held(contentID: cid(c), type: .game, sizeBytes: size, originatedHere: origin, folderBacked: folder,
                      kept: kept, lastWantedMs: wanted)
    }

    @Test("A node that is not a target drops its copy once every target holds it, and not before")
    func notTargetDropsOncePlacementIsMet() {
        let facts = cluster(5) { $0 == 0 ? ["selfplay"] : ["training"] }
        let me = nid(0)
        let t = Placement.targets(cid(1), type: .game, alive: facts, policy: policy)
        #expect(!t.contains(me))
        let early = Eviction.decide(me: me, held: [held(1)], policy: policy, alive: facts,
                                    holders: [cid(1): [me, t[0]]], overCapBytes: 0)
        #expect(early.release.isEmpty)
        let met = Eviction.decide(me: me, held: [held(1)], policy: policy, alive: facts,
                                  holders: [cid(1): Set(t + [me])], overCapBytes: 0)
        #expect(met.contents == [cid(1)])
        #expect(met.release.first?.1 == .notTarget)
        #expect(met.notTargetBytes == 100)
        // A target never drops.
        let asTarget = Eviction.decide(me: t[0], held: [held(1)], policy: policy, alive: facts,
                                       holders: [cid(1): Set(t + [me])], overCapBytes: 0)
        #expect(asTarget.release.isEmpty)
    }

    @Test("Without placement nothing is dropped for not being a target, and nothing at all under the cap")
    func nothingWithoutPlacementUnderTheCap() {
        let facts = cluster(4)
        let all = Set(facts.keys)
        let d = Eviction.decide(me: nid(0), held: (0..<10).map { held($0) }, policy: nil, alive: facts,
                                holders: Dictionary(uniqueKeysWithValues: (0..<10).map { (cid($0), all) }), overCapBytes: 0)
        #expect(d.release.isEmpty)
    }

    @Test("A broadcast item is never dropped for not being a target")
    func broadcastIsNotDroppedAsNotTarget() {
        let facts = cluster(5) { $0 == 0 ? ["selfplay"] : ["training"] }
        var h = held(1)
        h.broadcast = true
        let d = Eviction.decide(me: nid(0), held: [h], policy: policy, alive: facts,
                                holders: [cid(1): Set(facts.keys)], overCapBytes: 0)
        #expect(d.release.isEmpty)
    }

    @Test("Folder-backed contents are never released")
    func folderBackedStays() {
        let facts = cluster(5) { $0 == 0 ? ["selfplay"] : ["training"] }
        let d = Eviction.decide(me: nid(0), held: [held(1, folder: true)], policy: policy, alive: facts,
                                holders: [cid(1): Set(facts.keys)], overCapBytes: 1 << 40)
        #expect(d.release.isEmpty)
    }

    @Test("Over the cap a node evicts the unkept first, then the oldest wanted, and stops once under it")
    func evictionOrder() {
        let facts = cluster(4)
        let all = Set(facts.keys)
        // Pick a node that ranks last for every content, so each has copies ranked above it.
        let contents = (0..<40).filter { c in
            let ranks = all.map { Placement.rank(cid(c), type: .model, node: $0, facts: facts[$0]!, policy: PlacementPolicy()) }
            return ranks.min()!.node == nid(0)
        }
        #expect(contents.count >= 4)
        let hs = contents.enumerated().map { i, c in
            Eviction.Held(contentID: cid(c), type: .model, sizeBytes: 100, kept: i != 2, lastWantedMs: Int64(1000 - i))
        }
        let holders = Dictionary(uniqueKeysWithValues: contents.map { (cid($0), all) })
        let d = Eviction.decide(me: nid(0), held: hs.shuffled(), policy: nil, alive: facts, holders: holders, overCapBytes: 150)
        #expect(d.release.map(\.1) == [.evicted, .evicted])
        #expect(d.contents == [cid(contents[2]), cid(contents[contents.count - 1])])
        #expect(d.evictedBytes == 200)
    }

    @Test("A content this node put is not evicted before every target holds it")
    func originatedWaitsForPlacement() {
        let facts = cluster(5) { $0 == 0 ? ["selfplay"] : ["training"] }
        let me = nid(0)
        let t = Placement.targets(cid(3), type: .game, alive: facts, policy: policy)
        let others = Set(facts.keys).subtracting(t).subtracting([me])
        // Two copies elsewhere, ranked above, but not on the targets.
        let hs: Set<NodeID> = Set([me]).union(others)
        let d = Eviction.decide(me: me, held: [held(3, origin: true)], policy: policy, alive: facts,
                                holders: [cid(3): hs], overCapBytes: 1 << 40)
        #expect(d.release.isEmpty)
    }

    @Test("Over random clusters, views and holdings: never the last copy, never below min_copies durable holders, deterministic",
          arguments: 0..<300)
    func neverTheLastCopy(seed: Int) {
        var rng = SplitMix64(seed: UInt64(seed))
        let n = 2 + rng.below(7)
        var facts = [NodeID: NodeFacts]()
        for i in 0..<n {
            facts[nid(i)] = NodeFacts(roles: rng.below(3) == 0 ? ["selfplay"] : ["training"], ephemeral: rng.below(5) == 0,
                                      excluded: rng.below(8) == 0, diskTotalBytes: UInt64(1 + rng.below(4)) << 40,
                                      full: rng.below(4) == 0)
        }
        let rule = PlacementRule(roles: ["training"], minCopies: 1 + rng.below(3), maxCopies: rng.below(2) == 0 ? nil : 1 + rng.below(4))
        let pol: PlacementPolicy? = rng.below(3) == 0 ? nil : PlacementPolicy(rules: [.game: rule])
        let effectiveMin = (pol ?? PlacementPolicy()).rule(for: .game).minCopies
        let contents = (0..<8).map { cid(seed * 100 + $0) }
        var holders = [ContentID: Set<NodeID>]()
        for c in contents { holders[c] = Set(facts.keys.filter { _ in rng.below(2) == 0 }) }
        // Every holder decides at once, each with a possibly stale view of who is alive.
        var remaining = holders
        for me in facts.keys.sorted() {
            var view = facts
            for k in facts.keys where k != me && rng.below(4) == 0 { view[k] = nil }
            let mine = contents.filter { holders[$0]!.contains(me) }.map {
                Eviction.Held(contentID: $0, type: .game, sizeBytes: UInt64(1 + rng.below(1000)), originatedHere: rng.below(4) == 0,
                              folderBacked: rng.below(6) == 0, kept: rng.below(2) == 0, lastWantedMs: Int64(rng.below(100)))
            }
            let over = rng.below(2) == 0 ? UInt64(rng.below(5000)) : 0
            let d = Eviction.decide(me: me, held: mine, policy: pol, alive: view, holders: holders, overCapBytes: over)
            #expect(d == Eviction.decide(me: me, held: mine.reversed(), policy: pol, alive: view, holders: holders, overCapBytes: over))
            for (c, _) in d.release {
                #expect(mine.contains { $0.contentID == c && !$0.folderBacked })
                remaining[c]!.remove(me)
            }
        }
        for c in contents {
            let before = holders[c]!, after = remaining[c]!
            if !before.isEmpty { #expect(!after.isEmpty, "seed \(seed): the last copy of a content went") }
            let durableBefore = before.filter { facts[$0]!.durable }.count
            let durableAfter = after.filter { facts[$0]!.durable }.count
            if durableAfter < durableBefore {
                #expect(durableAfter >= effectiveMin, "seed \(seed): \(durableBefore) durable holders fell to \(durableAfter) < \(effectiveMin)")
            }
        }
    }
}

@Suite("Eviction: a full node keeps what it is a target for")
struct EvictionFullNodeTests {
    @Test("A full node under no space pressure drops no copy it would be a target for if it were not full")
    func aFullNodeKeepsItsTargetCopies() {
        let p = PlacementPolicy(rules: [.game: PlacementRule(minCopies: 1, maxCopies: 2)])
        var facts = [NodeID: NodeFacts]()
        for i in 0..<4 { facts[nid(i)] = NodeFacts(roles: [], diskTotalBytes: 100 << 30) }
        let t = Placement.targets(cid(3), type: .game, alive: facts, policy: p)
        let me = t[1]  // one better-ranked holder above it: min_copies is met without it
        let all = Set(facts.keys)
        facts[me]!.full = true
        let held = [Eviction.Held(contentID: cid(3), type: .game, sizeBytes: 1 << 20)]
        #expect(Eviction.decide(me: me, held: held, policy: p, alive: facts, holders: [cid(3): all], overCapBytes: 0).release.isEmpty)
        // Over the cap it may still evict it (better-ranked copies or not is mayDrop's concern).
        let d = Eviction.decide(me: me, held: held, policy: p, alive: facts, holders: [cid(3): all], overCapBytes: 1)
        #expect(d.release.allSatisfy { $0.1 == .evicted })
    }
}
