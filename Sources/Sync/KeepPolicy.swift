import Gossip

/// How much history a node keeps, and for how long data lives (the config's
/// `keep_versions` and `retention`). Local policy: it decides what this node keeps and
/// what it stamps into the entries it originates, never what other nodes hold.
public struct KeepPolicy: Sendable, Equatable {
    public static let defaultKeepVersions = 3

    /// Versions kept per name, by type (`keep_versions`); the rest use `defaultKeepVersions`.
    public var keepVersions: [ItemType: Int]
    /// Retention by type (`retention`), in milliseconds: a version put now expires this
    /// long after its creation. Types without an entry never expire.
    public var retentionMs: [ItemType: Int64]

    public init(keepVersions: [ItemType: Int] = [:], retentionMs: [ItemType: Int64] = [:]) {
        self.keepVersions = keepVersions
        self.retentionMs = retentionMs
    }

    public func keepVersions(for type: ItemType) -> Int { max(1, keepVersions[type] ?? Self.defaultKeepVersions) }

    /// The `expires_ms` a new version of this type gets, or 0 for never.
    public func expiresAtMs(type: ItemType, createdAtMs: Int64) -> Int64 {
        guard let r = retentionMs[type], r > 0 else { return 0 }
        let (sum, overflow) = createdAtMs.addingReportingOverflow(r)
        return overflow ? Int64.max : max(1, sum)
    }
}

extension Catalog {
    /// The versions of `name` whose content this node keeps: the newest
    /// `keepVersions(for: type)` live versions, newest first (the current one first).
    /// The type is the newest put's.
    public func keptVersions(of name: String, policy: KeepPolicy, nowMs: Int64) -> [Version] {
        let all = versions(of: name, nowMs: nowMs)
        guard let newest = all.last else { return [] }
        let k = policy.keepVersions(for: newest.entry.type)
        var out = [Version]()
        for v in all.reversed() where v.state == .live {
            out.append(v)
            if out.count >= k { break }
        }
        return out
    }

    /// Every content some kept version references: what GC must leave in place.
    public func keptContents(policy: KeepPolicy, nowMs: Int64) -> Set<ContentID> {
        var out = Set<ContentID>()
        for n in histories.keys {
            for v in keptVersions(of: n, policy: policy, nowMs: nowMs) { out.insert(v.entry.contentID) }
        }
        return out
    }

    /// Every content any put references (kept or not).
    public var allContents: Set<ContentID> {
        var out = Set<ContentID>()
        for h in histories.values { for e in h.puts { out.insert(e.contentID) } }
        return out
    }
}
