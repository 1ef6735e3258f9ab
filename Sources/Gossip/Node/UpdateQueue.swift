/// The piggyback buffer for membership updates (SWIM's dissemination component).
///
/// One pending update per node (a newer one replaces it). Each update is sent at most
/// `limit` times; updates sent fewer times go first, newest first among equals
/// (memberlist's TransmitLimitedQueue). Bounded by `capacity`.
struct UpdateQueue: Sendable {
    private struct Item: Sendable {
        var update: MemberUpdate
        var size: Int
        var transmits: Int
        var generation: UInt64
    }

    private var items: [NodeID: Item] = [:]
    /// Bucket t holds (node, generation) of items sent t times; stale generations are skipped.
    private var buckets: [[(NodeID, UInt64)]] = [[]]
    private var generation: UInt64 = 0
    private var stale = 0
    let capacity: Int

    init(capacity: Int) { self.capacity = capacity }

    var count: Int { items.count }
    var isEmpty: Bool { items.isEmpty }

    func pending(for node: NodeID) -> MemberUpdate? { items[node]?.update }

    mutating func enqueue(_ u: MemberUpdate) {
        if items[u.node] != nil { stale += 1 }
        if items[u.node] == nil && items.count >= capacity { return }
        generation &+= 1
        items[u.node] = Item(update: u, size: u.encodedSize, transmits: 0, generation: generation)
        buckets[0].append((u.node, generation))
        if stale > 4 * max(64, items.count) { compact() }
    }

    private mutating func compact() {
        var nb = [[(NodeID, UInt64)]](repeating: [], count: buckets.count)
        for (id, it) in items.sorted(by: { $0.value.generation < $1.value.generation }) { nb[it.transmits].append((id, it.generation)) }
        buckets = nb
        stale = 0
    }

    /// Takes updates totalling at most `budget` encoded bytes, skipping `exclude`,
    /// and counts one transmission for each; those at `limit` are dropped.
    mutating func take(budget: Int, limit: Int, exclude: NodeID? = nil) -> [MemberUpdate] {
        if items.isEmpty { return [] }
        var out = [MemberUpdate]()
        var left = budget
        var moved = [(NodeID, UInt64, Int)]()
        var t = 0
        while t < buckets.count && left > 41 {
            var keep = [(NodeID, UInt64)]()
            while let (id, gen) = buckets[t].popLast() {
                guard let it = items[id], it.generation == gen else { stale = max(0, stale - 1); continue }
                if id == exclude || it.size > left {
                    keep.append((id, gen))
                    if left <= 41 { break }
                    continue
                }
                out.append(it.update)
                left -= it.size
                moved.append((id, gen, t + 1))
                if left <= 41 { break }
            }
            buckets[t].append(contentsOf: keep.reversed())
            t += 1
        }
        for (id, gen, nt) in moved {
            if nt >= limit {
                items[id] = nil
                continue
            }
            items[id]!.transmits = nt
            while buckets.count <= nt { buckets.append([]) }
            buckets[nt].append((id, gen))
        }
        return out
    }
}

/// The newest entry id of recently active origins, advertised on probe traffic (the lazy half of HYBRID).
struct AdvertQueue: Sendable {
    private var items: [(ref: EntryRef, transmits: Int)] = []
    let capacity: Int

    init(capacity: Int) { self.capacity = capacity }

    var isEmpty: Bool { items.isEmpty }

    /// Advertises the newest sequence of `r.origin` (replacing an older advert of the
    /// same origin): one id per active origin reveals every gap below it.
    mutating func add(_ r: EntryRef) {
        if let k = items.firstIndex(where: { $0.ref.origin == r.origin }) {
            if items[k].ref.sequence > r.sequence { return }
            items.remove(at: k)
        }
        if items.count >= capacity { items.removeFirst() }
        items.append((r, 0))
    }

    /// Up to `n` ids, least advertised (then newest) first; each counts one transmission.
    mutating func take(_ n: Int, limit: Int) -> [EntryRef] {
        if items.isEmpty || n <= 0 { return [] }
        let order = items.indices.sorted { (items[$0].transmits, -$0) < (items[$1].transmits, -$1) }
        var out = [EntryRef]()
        for i in order.prefix(n) {
            out.append(items[i].ref)
            items[i].transmits += 1
        }
        items.removeAll { $0.transmits >= limit }
        return out
    }
}
