// One config file for the whole cluster: every node reads the same `hosts` list, finds its own
// entry there by name (or node id), takes its settings from it and skips it as a peer.
import Gossip

extension NodeConfig {
    /// The `hosts` key of the node named `name` (or with id `id`): the id's entry first, then the name's.
    public func ownHostKey(name: String, id: NodeID?) -> String? {
        if let id, hosts[id.description] != nil { return id.description }
        return hosts[name] != nil ? name : nil
    }

    /// This config as it applies to the node named `name` (with id `id`, when known).
    ///
    /// Its own `hosts` entry (by id, else by name) is taken out of `hosts` (it is not a peer),
    /// its `address` out of `join`, and its settings apply to this node. Precedence, highest first:
    /// flags > `MESHNODE_*` environment > the file's top level > this node's `hosts` entry > defaults.
    /// So a top-level `role` (or `roles`), `ephemeral`, `nfs_group`, `max_disk_usage` or
    /// `bandwidth.KEY` beats the entry's (per bandwidth key). The entry's `address` becomes the
    /// address this node advertises (unless `--advertise`), and its `listen` when the top level,
    /// `--listen` and `MESHNODE_LISTEN` give none: that address when `isLocalAddress` says it is
    /// one of this host's (`LocalAddresses.isLocal`; a NATed public address is not), else 0.0.0.0
    /// on its port. With no entry for this node, the config is returned unchanged.
    public func forNode(named name: String, id: NodeID? = nil,
                        isLocalAddress: (String) -> Bool = LocalAddresses.isLocal) -> NodeConfig {
        guard let key = ownHostKey(name: name, id: id), let own = hosts[key] else { return self }
        var c = self
        c.hosts[key] = nil
        c.ownHostKey = key
        func given(_ k: String) -> Bool { givenKeys.contains(k) }
        if !given("role") && !given("roles") {
            if let roles = own.roles, let first = roles.first {
                c.roles = roles
                c.role = first
            } else if let role = own.role {
                c.role = role
                c.roles = []
            }
        }
        if !given("ephemeral"), let e = own.ephemeral { c.ephemeral = e }
        if !given("nfs_group"), let g = own.nfsGroup { c.nfsGroup = g }
        if !given("max_disk_usage"), let m = own.maxDiskUsagePercent { c.maxDiskUsagePercent = m }
        if let b = own.bandwidth {
            if !given("bandwidth.global"), own.bandwidthKeys.contains("bandwidth.global") { c.bandwidth.globalBytesPerSecond = b.globalBytesPerSecond }
            if !given("bandwidth.per_peer"), own.bandwidthKeys.contains("bandwidth.per_peer") { c.bandwidth.perPeerBytesPerSecond = b.perPeerBytesPerSecond }
            if !given("bandwidth.max_concurrent_transfers"), own.bandwidthKeys.contains("bandwidth.max_concurrent_transfers") {
                c.bandwidth.maxConcurrentTransfers = b.maxConcurrentTransfers
            }
        }
        if let a = own.address {
            c.join.removeAll { $0 == a }
            c.ownAddress = a
            if !given("listen") {
                c.listen = isLocalAddress(a.host) ? a : Endpoint(host: "0.0.0.0", port: a.port)
            }
        }
        return c
    }
}
