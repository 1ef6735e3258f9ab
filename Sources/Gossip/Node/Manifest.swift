/// The replicated manifest as one node holds it: verified entries by origin and
/// sequence, the per-origin maximum contiguous sequence, incrementally maintained
/// bucket hashes of that vector (for the anti-entropy digest), and fork evidence.
public struct Manifest: Sendable {
    /// The digest resolution kept incrementally: 2^7 = 128 buckets; coarser digests fold these.
    public static let maxBucketsLog2 = 7

    struct OriginLog: Sendable {
        var entries: [UInt64: ManifestEntry] = [:]
        var maxContiguous: UInt64 = 0
        var maxSeen: UInt64 = 0
        /// What the origin's latest compaction entry (at `compactionSequence`) voids
        /// (docs/PROTOCOL.md §4.5). Those sequences count as held for `maxContiguous`.
        var compacted = ManifestEntry.Compaction(ranges: [])
        var compactionSequence: UInt64 = 0
        /// Whether that compaction's dependencies are held; until they are, tombstones in its
        /// ranges are kept.
        var dependenciesMet = true

        func isVoid(_ e: ManifestEntry) -> Bool {
            compacted.contains(e.sequence) && (e.tombstone == nil || dependenciesMet)
        }
    }

    private(set) var logs: [NodeID: OriginLog] = [:]
    /// Origins whose latest compaction waits for another origin's log: dependency → waiters.
    private var waitingOn: [NodeID: Set<NodeID>] = [:]
    /// Entries dropped by compactions since the last `takeCompacted()` (the shell deletes them).
    private var compactedOut: [ManifestEntry] = []
    private(set) var bucketHashes = [UInt64](repeating: 0, count: 1 << maxBucketsLog2)
    public private(set) var forks: [(ManifestEntry, ManifestEntry)] = []
    private var forkKeys: Set<EntryRef> = []
    public private(set) var count = 0

    public init() {}

    /// `compacted`: the entry lies in a range its origin compacted; it is not kept.
    public enum Insert: Equatable { case added, duplicate, fork, compacted }

    public var originCount: Int { logs.count }

    /// The 7-bit bucket of an origin: the top bits of its key.
    @inline(__always) static func bucket(_ origin: NodeID, log2: Int) -> Int {
        log2 == 0 ? 0 : Int(origin.key.w0 >> UInt64(64 - log2))
    }

    @inline(__always) static func pairHash(_ origin: NodeID, _ seq: UInt64) -> UInt64 {
        SplitMix64.mix(origin.key.w0 ^ SplitMix64.mix(origin.key.w1 ^ SplitMix64.mix(origin.key.w2 ^ SplitMix64.mix(origin.key.w3 ^ seq))))
    }

    public func contains(_ ref: EntryRef) -> Bool { logs[ref.origin]?.entries[ref.sequence] != nil }
    public func entry(_ ref: EntryRef) -> ManifestEntry? { logs[ref.origin]?.entries[ref.sequence] }
    public func maxContiguous(_ origin: NodeID) -> UInt64 { logs[origin]?.maxContiguous ?? 0 }

    /// Inserts an already verified entry.
    public mutating func insert(_ e: ManifestEntry, maxForks: Int) -> (Insert, ManifestEntry?) {
        var log = logs[e.origin] ?? OriginLog()
        if log.entries[e.sequence] == nil, log.isVoid(e) { return (.compacted, nil) }
        if let old = log.entries[e.sequence] {
            if old == e { return (.duplicate, nil) }
            let key = EntryRef(origin: e.origin, sequence: e.sequence)
            if forkKeys.contains(key) || forks.count >= maxForks { return (.duplicate, nil) }
            forkKeys.insert(key)
            forks.append((old, e))
            return (.fork, old)
        }
        let isNewOrigin = logs[e.origin] == nil
        log.entries[e.sequence] = e
        log.maxSeen = max(log.maxSeen, e.sequence)
        count += 1
        if let c = e.compaction, e.sequence > log.compactionSequence {
            log.compacted = c
            log.compactionSequence = e.sequence
            log.dependenciesMet = dependenciesMet(c, of: e.origin)
            if !log.dependenciesMet {
                for d in c.dependencies { waitingOn[d.origin, default: []].insert(e.origin) }
            }
            dropVoid(&log)
        }
        let before = log.maxContiguous
        advance(&log)
        if log.maxContiguous != before {
            let b = Self.bucket(e.origin, log2: Self.maxBucketsLog2)
            if before > 0 || !isNewOrigin { bucketHashes[b] ^= Self.pairHash(e.origin, before) }
            bucketHashes[b] ^= Self.pairHash(e.origin, log.maxContiguous)
        } else if isNewOrigin {
            // A new origin whose first entry is not 1: it counts as (origin, 0).
            bucketHashes[Self.bucket(e.origin, log2: Self.maxBucketsLog2)] ^= Self.pairHash(e.origin, 0)
        }
        logs[e.origin] = log
        if log.maxContiguous != before, let waiters = waitingOn[e.origin] { recheck(waiters) }
        return (.added, nil)
    }

    /// Entries dropped by compactions since the last call, for the shell to delete.
    public mutating func takeCompacted() -> [ManifestEntry] {
        defer { compactedOut = [] }
        return compactedOut
    }

    /// The origin's latest applied compaction (docs/PROTOCOL.md §4.5), if any, and its sequence.
    public func compaction(of origin: NodeID) -> (ManifestEntry.Compaction, sequence: UInt64)? {
        guard let l = logs[origin], l.compactionSequence > 0 else { return nil }
        return (l.compacted, l.compactionSequence)
    }

    /// The entries of `origin`'s log held here, by sequence.
    public func entries(of origin: NodeID) -> [ManifestEntry] {
        guard let l = logs[origin] else { return [] }
        return l.entries.keys.sorted().map { l.entries[$0]! }
    }

    /// Every origin's latest compaction sequence (0: none).
    public var compactionSequences: [NodeID: UInt64] {
        logs.compactMapValues { $0.compactionSequence > 0 ? $0.compactionSequence : nil }
    }

    private func dependenciesMet(_ c: ManifestEntry.Compaction, of origin: NodeID) -> Bool {
        c.dependencies.allSatisfy { (logs[$0.origin]?.maxContiguous ?? 0) >= $0.sequence }
    }

    /// Moves `maxContiguous` over held entries and compacted sequences (whole ranges at once).
    private func advance(_ log: inout OriginLog) {
        while true {
            let next = log.maxContiguous + 1
            if log.entries[next] != nil { log.maxContiguous = next; continue }
            if let r = log.compacted.ranges.first(where: { $0.contains(next) }) { log.maxContiguous = r.upperBound; continue }
            break
        }
    }

    /// Drops the held entries the log's compaction voids.
    private mutating func dropVoid(_ log: inout OriginLog) {
        for r in log.compacted.ranges {
            let seqs = r.count <= log.entries.count ? Array(r) : log.entries.keys.filter { r.contains($0) }
            for s in seqs {
                guard let e = log.entries[s], log.isVoid(e) else { continue }
                log.entries[s] = nil
                count -= 1
                compactedOut.append(e)
            }
        }
    }

    /// Dependencies may be met now: drop what those compactions were holding back.
    private mutating func recheck(_ waiters: Set<NodeID>) {
        for o in waiters.sorted() {
            guard var l = logs[o], !l.dependenciesMet, dependenciesMet(l.compacted, of: o) else { continue }
            l.dependenciesMet = true
            for d in l.compacted.dependencies { waitingOn[d.origin]?.remove(o) }
            dropVoid(&l)
            logs[o] = l
        }
        for (k, v) in waitingOn where v.isEmpty { waitingOn[k] = nil }
    }

    /// Takes back a fork kept from before a restart (`held` is in the manifest, `other` is
    /// not): it is evidence again, and `insert` of `other` is then a duplicate, not a new fork.
    public mutating func restoreFork(_ held: ManifestEntry, _ other: ManifestEntry, maxForks: Int) {
        let key = EntryRef(origin: held.origin, sequence: held.sequence)
        guard other.origin == held.origin, other.sequence == held.sequence, other != held,
              !forkKeys.contains(key), forks.count < maxForks else { return }
        forkKeys.insert(key)
        forks.append((held, other))
    }

    /// Bucket hashes folded to 2^log2 buckets.
    public func digestHashes(log2: Int) -> [UInt64] {
        var out = [UInt64](repeating: 0, count: 1 << log2)
        let shift = Self.maxBucketsLog2 - log2
        for (i, h) in bucketHashes.enumerated() { out[i >> shift] ^= h }
        return out
    }

    /// The digest resolution for this manifest: about four origins per bucket.
    public var preferredBucketsLog2: Int {
        var b = 0
        while b < Self.maxBucketsLog2 && (1 << b) * 4 < logs.count { b += 1 }
        return b
    }

    /// Exact (origin, maxContiguous) pairs of the origins in these buckets.
    public func vector(log2: Int, buckets: Set<Int>) -> [EntryRef] {
        var out = [EntryRef]()
        for (o, l) in logs where buckets.contains(Self.bucket(o, log2: log2)) {
            out.append(EntryRef(origin: o, sequence: l.maxContiguous))
        }
        out.sort { $0.origin < $1.origin }
        return out
    }

    /// Entries a peer lacks, given its vector for these buckets: every held entry
    /// above its max contiguous sequence, in origin then sequence order, at most `limit`.
    public func entriesMissing(from theirs: [EntryRef], log2: Int, buckets: Set<Int>, limit: Int) -> [ManifestEntry] {
        var their = [NodeID: UInt64]()
        for p in theirs { their[p.origin] = p.sequence }
        var out = [ManifestEntry]()
        for o in logs.keys.sorted() where buckets.contains(Self.bucket(o, log2: log2)) {
            let l = logs[o]!
            let have = their[o] ?? 0
            if l.maxSeen <= have { continue }
            var s = have + 1
            while s <= l.maxSeen {
                if let r = l.compacted.ranges.first(where: { $0.contains(s) }), l.entries[s] == nil {
                    s = r.upperBound + 1  // compacted: nothing there to send
                    continue
                }
                if let e = l.entries[s] {
                    out.append(e)
                    if out.count >= limit { return out }
                }
                s += 1
            }
        }
        return out
    }

    public func entries(origin: NodeID, from: UInt64, to: UInt64, limit: Int) -> [ManifestEntry] {
        guard let l = logs[origin], from <= to else { return [] }
        var out = [ManifestEntry]()
        var s = from
        while s <= min(to, l.maxSeen) && out.count < limit {
            if let e = l.entries[s] { out.append(e) }
            s += 1
        }
        return out
    }

    /// Every entry, in origin then sequence order.
    public var allEntries: [ManifestEntry] {
        var out = [ManifestEntry]()
        out.reserveCapacity(count)
        for o in logs.keys.sorted() {
            let l = logs[o]!
            for s in l.entries.keys.sorted() { out.append(l.entries[s]!) }
        }
        return out
    }

    /// The per-origin max contiguous sequences.
    public var versionVector: [NodeID: UInt64] { logs.mapValues(\.maxContiguous) }
}
