import Gossip
import Store
import Sync

extension MeshNode {
    /// Folds an entry that is now stored into the keeper; fetches what it newly wants, and
    /// stops fetching what it released, which GC then reclaims (MeshNode+GC.swift).
    func keep(_ e: ManifestEntry) {
        let factsBefore = e.nodeFacts != nil ? holdings.facts(of: e.origin)?.facts : nil
        holdings.insert(e)
        if e.origin != identity.nodeID, case .holding(let h) = e.payload {
            for c in h.held { blobs?.holderAppeared(c, e.origin) }  // a fetch under way asks it too
            spotHoldersAppeared(h.held, e.origin)
        }
        if let f = e.nodeFacts, e.origin != identity.nodeID {
            // Only facts that rank or admit nodes re-evaluate placement: used and free disk move
            // all the time and change no target (the weight is the disk's total).
            if let after = holdings.facts(of: e.origin)?.facts, Self.placementRelevant(factsBefore) != Self.placementRelevant(after) {
                placementInputsChanged()
            }
            checkPolicyAgreement(e.origin, f)
        }
        guard e.put != nil || e.tombstone != nil else { return }
        applyKeeperChange(keeper.insert(e, nowMs: WallClock.nowMs(), isComplete: storeCompleteness))
        folders?.nameChanged(e.name)
    }

    /// The part of a node's facts placement reads (Placement.rank, targets, countedCopies).
    static func placementRelevant(_ f: ManifestEntry.NodeFacts?) -> [String] {
        guard let f else { return [] }
        return f.roles + ["|\(f.ephemeral)|\(f.excluded)|\(f.full)|\(f.diskTotalBytes)|\(f.nfsGroup)"]
    }

    /// Re-evaluates retention expiries (housekeeping).
    func refreshKeeper() {
        applyKeeperChange(keeper.refresh(nowMs: WallClock.nowMs(), isComplete: storeCompleteness))
    }

    /// A download finished: an older version kept only until this one arrived may go now.
    func contentCompleted(_ id: ContentID) {
        holdingsMayHaveChanged([id])
        custodyCompleted(id)
        applyKeeperChange(keeper.completed(id, nowMs: WallClock.nowMs(), isComplete: storeCompleteness))
    }

    /// What the keeper asks about completeness: the store's record.
    var storeCompleteness: Keeper.Completeness {
        let store = self.store
        return { (try? store.isComplete($0)) == true }
    }

    /// The keep policy a `meshnode put` through this node should stamp (retention by type).
    func policyJSON() -> JSONValue {
        var retention: [String: JSONValue] = [:]
        for (t, ms) in keeper.policy.retentionMs { retention[t.description] = .int(ms) }
        var versions: [String: JSONValue] = [:]
        for (t, n) in keeper.policy.keepVersions { versions[t.description] = .int(Int64(n)) }
        var out: [String: JSONValue] = ["retention_ms": .object(retention), "keep_versions": .object(versions)]
        // The roles each type's placement rule admits (for `ls --json`'s delivery of broadcast items).
        if let p = options.placement {
            var roles: [String: JSONValue] = [:]
            for (t, r) in p.rules { roles[t.description] = .array(r.roles.map { .string($0) }) }
            out["placement_roles"] = .object(roles)
        }
        return .object(out)
    }
}
