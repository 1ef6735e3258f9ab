import Gossip
import Logging
import Store
import Sync

/// Whether the nodes agree on `placement:` (docs/SYNC.md, "Policy agreement"). Placement is
/// computed by every node from the same facts, so it only works if every node has the same
/// rules; each states a hash of its own in its node facts (PROTOCOL §4.7 `policy_hash`).
///
/// Fetching goes on under a disagreement (an extra copy is harmless), but dropping and
/// eviction stop while any alive member states a different hash: with different rules two
/// holders could each rank the other above itself and both let go of the last copies.
struct PolicyAgreementState {
    /// (node, hash) pairs already warned about, so a mismatch is logged once per change.
    var warned: Set<[UInt8]> = []
    /// Eviction passes that released nothing because the policies disagreed.
    var suspendedPasses: UInt64 = 0
    /// This node's own hash, computed once (the rules do not change while it runs).
    var ownHash: [UInt8]?
}

extension MeshNode {
    /// This node's `policy_hash`: the first 16 bytes of BLAKE2b-256 over
    /// `PlacementPolicy.canonicalBytes` (the empty policy without `placement:`).
    var placementPolicyHash: [UInt8] {
        if let h = policyAgreement.ownHash { return h }
        let h = Array(Blake2b256.hash((options.placement ?? PlacementPolicy()).canonicalBytes).bytes
            .prefix(ManifestEntry.NodeFacts.policyHashBytes))
        policyAgreement.ownHash = h
        return h
    }

    /// The alive or suspect members whose stated policy hash differs from this node's
    /// (members that state none, older nodes, are not counted).
    func policyMismatches() -> [NodeID] {
        let mine = placementPolicyHash
        return gossip.memberSnapshots().filter { m in
            guard !m.isSelf, m.state == .alive || m.state == .suspect,
                  let h = holdings.facts(of: m.node)?.facts.policyHash else { return false }
            return h != mine
        }.map(\.node).sorted()
    }

    /// A member's facts arrived: warn once if its placement rules differ from this node's.
    func checkPolicyAgreement(_ origin: NodeID, _ facts: ManifestEntry.NodeFacts) {
        guard let theirs = facts.policyHash else { return }
        let mine = placementPolicyHash
        guard theirs != mine else { return }
        guard policyAgreement.warned.insert(origin.key.bytes + theirs).inserted else { return }
        let name = gossip.memberName(origin) ?? origin.short
        logger.warning("placement rules differ from \(name)'s: give every node the same placement: (one cluster file); dropping and eviction wait until they agree",
                       metadata: ["peer": "\(name)", "peer_id": "\(origin)", "policy_hash": "\(Hex.encode(mine))",
                                  "peer_policy_hash": "\(Hex.encode(theirs))"])
    }
}
