import Gossip
import Mesh
import Store
import Sync

/// What `ls --json` needs to state a broadcast item's delivery (`Delivery.report`): every
/// node's stated facts (from the store's entries), node names (the store's members and its own
/// name, and the running node's list when one runs), and the roles each
/// type's placement rule admits (from the running node; none known when no node runs).
struct DeliveryContext {
    var facts: [NodeID: NodeFacts]
    var names: [NodeID: String]
    var policy: PlacementPolicy?

    init(_ store: Store, _ holdings: Holdings, dataDir: String) {
        facts = holdings.allFacts.mapValues { r in
            var f = NodeFacts(r.facts)
            if f.roles == [NodeConfig().role] { f.roles = [] }  // the default role: none stated
            return f
        }
        names = [:]
        for p in (try? store.peers()) ?? [] where !p.name.isEmpty { names[p.nodeID] = p.name }
        if let me = try? store.loadIdentity(), !store.config.name.isEmpty { names[me.nodeID] = store.config.name }
        let client = ControlClient(dataDirectory: dataDir)
        if let v = try? client.call("peers"), let rows = try? v.decode(as: [PeerRow].self) {
            for r in rows where !r.name.isEmpty {
                if let id = NodeID(r.id) { names[id] = r.name }
            }
        }
        if let v = try? client.call("policy"), case .object(let o) = v, case .object(let roles)? = o["placement_roles"] {
            var p = PlacementPolicy()
            for (k, list) in roles {
                guard let t = ItemType(name: k), case .array(let a) = list else { continue }
                p.rules[t] = PlacementRule(roles: a.compactMap(\.stringValue))
            }
            policy = p
        }
    }

    func name(_ n: NodeID) -> String { names[n] ?? n.description }

    func fill(_ j: inout MeshnodeCommand.ItemJSON, _ e: ManifestEntry, _ holdings: Holdings) {
        let r = Delivery.report(type: e.type, facts: facts, holders: holdings.holders(of: e.contentID), policy: policy)
        j.delivered = r.delivered.map(name)
        j.skipped = r.skipped.map { .init(node: name($0.node), reason: $0.reason.rawValue) }
        j.pending = r.pending.map(name)
    }
}
