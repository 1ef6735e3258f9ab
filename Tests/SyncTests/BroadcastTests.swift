import Gossip
import Testing
@testable import Sync

@Suite("Broadcast: every eligible node is a target; delivery per node from replicated state")
struct BroadcastTests {
    let policy = PlacementPolicy(rules: [
        .game: PlacementRule(roles: ["training", "storage"], minCopies: 2, maxCopies: 2),
        .other: PlacementRule(maxCopies: 1),
    ])

    func cluster(_ n: Int, roles: (Int) -> [String] = { _ in ["training"] }) -> [NodeID: NodeFacts] {
        var out = [NodeID: NodeFacts]()
        for i in 0..<n { out[nid(i)] = NodeFacts(roles: roles(i), diskTotalBytes: 100 << 30) }
        return out
    }

    @Test("A broadcast put's targets are every eligible node, whatever max_copies says")
    func broadcastIgnoresMaxCopies() {
        let facts = cluster(6)
        #expect(Placement.targets(cid(1), type: .game, alive: facts, policy: policy).count == 2)
        #expect(Set(Placement.targets(cid(1), type: .game, broadcast: true, alive: facts, policy: policy)) == Set(facts.keys))
        #expect(Placement.targets(cid(1), type: .other, broadcast: true, alive: facts, policy: policy).count == 6)
    }

    @Test("A broadcast still skips excluded, full and other-role nodes, and counts an NFS group once")
    func broadcastSkipsIneligibleNodes() {
        var facts = cluster(7) { $0 == 3 ? ["selfplay"] : ["training"] }
        facts[nid(0)]!.excluded = true
        facts[nid(1)]!.full = true
        facts[nid(5)]!.nfsGroup = "nfs"
        facts[nid(6)]!.nfsGroup = "nfs"
        let t = Placement.targets(cid(4), type: .game, broadcast: true, alive: facts, policy: policy)
        #expect(t.count == 3)
        #expect(Set(t).isSuperset(of: [nid(2), nid(4)]))
        #expect(t.filter { $0 == nid(5) || $0 == nid(6) }.count == 1)
    }

    @Test("Every eligible node decides to fetch a broadcast item that max_copies would have left to others")
    func everyEligibleNodeFetchesABroadcast() {
        var facts = cluster(5)
        facts[nid(4)]!.excluded = true
        let plain = (0..<4).filter { Placement.fetchDecision(cid(7), types: [.game], me: nid($0), alive: facts, policy: policy) == .fetch }
        #expect(plain.count == 2)
        for i in 0..<4 {
            #expect(Placement.fetchDecision(cid(7), types: [.game], broadcast: true, me: nid(i), alive: facts, policy: policy) == .fetch)
        }
        #expect(Placement.fetchDecision(cid(7), types: [.game], broadcast: true, me: nid(4), alive: facts, policy: policy) == .notTarget)
    }

    @Test("A fetch asks gossip's hints first, then every complete holder on record, never itself, each once")
    func fetchSourcesIncludeEveryHolder() {
        let s = Placement.fetchSources(hints: [nid(0), nid(3)], holders: [nid(3), nid(2), nid(1), nid(9)], me: nid(9))
        #expect(s == [nid(0), nid(3)] + [nid(1), nid(2)].sorted())
        #expect(Placement.fetchSources(hints: [], holders: [nid(4)], me: nid(0)) == [nid(4)])
    }

    @Test("Delivery lists holders as delivered, the excluded, full and other-role nodes as skipped with their reason, the rest pending")
    func deliveryReport() {
        var facts = cluster(6) { $0 == 3 ? ["selfplay"] : ["training"] }
        facts[nid(1)]!.excluded = true
        facts[nid(2)]!.full = true
        facts[nid(2)]!.excluded = false
        let r = Delivery.report(type: .game, facts: facts, holders: [nid(0), nid(5), nid(7)], policy: policy)
        #expect(r.delivered == [nid(0), nid(5), nid(7)].sorted())
        #expect(r.skipped.map(\.node) == [nid(1), nid(2), nid(3)].sorted())
        let reasons = Dictionary(uniqueKeysWithValues: r.skipped.map { ($0.node, $0.reason) })
        #expect(reasons[nid(1)] == .excluded && reasons[nid(2)] == .full && reasons[nid(3)] == .notEligible)
        #expect(r.pending == [nid(4)])
        // A holder counts as delivered even if it has since become full; no policy known: roles are not checked.
        facts[nid(0)]!.full = true
        let loose = Delivery.report(type: .game, facts: facts, holders: [nid(0)], policy: nil)
        #expect(loose.delivered == [nid(0)])
        #expect(loose.pending == [nid(3), nid(4), nid(5)].sorted())
    }
}
