import Testing
@testable import Gossip
@testable import MeshSim
@testable import Sync
@Test func placementDebugTmp() {
    var o = SimOptions.defaults(for: .broadcast, seed: 3)
    o.durationS = 30
    let sim = Simulator(options: o)
    let r = sim.run()
    print(r.livenessViolations.prefix(3))
    print(sim.placementWork.policy)
    for (i, d) in sim.placementWork.disks.enumerated() { print("n\(i)", d.roles, d.ephemeral, d.nfsGroup, d.excluded, "up", sim.nodes[i].up, "full", sim.placementWork.stores[i].full, "room", sim.roomBytes(i) >> 20, "over", sim.overCapBytes(i) >> 20) }
    for c in sim.placementWork.order {
        let item = sim.placementWork.contents[c]!
        let (h, w) = sim.copies(item)
        guard h < w else { continue }
        print("item", c.short, item.type, item.sizeBytes >> 20, "origin n\(item.origin)", "holders", sim.completeCopies(c).sorted())
        for i in sim.nodes.indices where sim.nodes[i].up {
            let facts = sim.placementFacts(i, full: false)
            let t = Placement.targets(c, type: item.type, broadcast: item.broadcast, alive: facts, policy: sim.placementWork.policy).compactMap { sim.idIndex[$0] }
            let d = Placement.fetchDecision(c, types: [item.type], broadcast: item.broadcast, me: sim.nodes[i].id, alive: facts, policy: sim.placementWork.policy, sizeBytes: item.sizeBytes, roomBytes: sim.roomBytes(i))
            print("  n\(i) could \(sim.couldTake(i, item)) holds \(sim.placementWork.stores[i].held[c] != nil) decision \(d) targets \(t) evicted \(sim.placementWork.stores[i].evicted.contains(c)) recordHolders \(sim.placementWork.holdings[i].holders(of: c).compactMap { sim.idIndex[$0] }.sorted()) fullSeen \(facts.filter { $0.value.full }.compactMap { sim.idIndex[$0.key] }.sorted())")
        }
        break
    }
}
