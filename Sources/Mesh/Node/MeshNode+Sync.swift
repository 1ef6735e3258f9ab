import Gossip
import Store
import Sync

extension MeshNode {
    /// Folds an entry that is now stored into the keeper; fetches what it newly wants.
    /// (What it releases is reclaimed by GC; a download already running finishes.)
    func keep(_ e: ManifestEntry) {
        let change = keeper.insert(e, nowMs: WallClock.nowMs())
        for w in change.wanted where w.origin != identity.nodeID {
            blobs?.want(w.contentID, holders: [w.origin], reason: .replication, entry: w)
        }
        folders?.nameChanged(e.name)
    }

    /// Re-evaluates retention expiries (housekeeping).
    func refreshKeeper() {
        _ = keeper.refresh(nowMs: WallClock.nowMs())
    }

    /// The keep policy a `meshnode put` through this node should stamp (retention by type).
    func policyJSON() -> JSONValue {
        var retention: [String: JSONValue] = [:]
        for (t, ms) in keeper.policy.retentionMs { retention[t.description] = .int(ms) }
        var versions: [String: JSONValue] = [:]
        for (t, n) in keeper.policy.keepVersions { versions[t.description] = .int(Int64(n)) }
        return .object(["retention_ms": .object(retention), "keep_versions": .object(versions)])
    }
}
