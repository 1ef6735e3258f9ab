import Gossip

/// Items waiting for a download slot, first come first served, with O(1) membership: a
/// receive folder can queue tens of thousands of items, and the fetch loop asks "is this one
/// waiting?" for every download on every tick.
struct WaitQueue {
    private var order: [(ContentID, UInt64)] = []
    private var head = 0
    /// Each member with the generation of its newest `append`, so that a removed and
    /// re-appended item is served at its new place, not at its old one.
    private var members: [ContentID: UInt64] = [:]
    private var generation: UInt64 = 0

    var count: Int { members.count }
    var isEmpty: Bool { members.isEmpty }
    func contains(_ c: ContentID) -> Bool { members[c] != nil }

    /// Appends `c` at the back (a no-op if it already waits).
    mutating func append(_ c: ContentID) {
        guard members[c] == nil else { return }
        generation += 1
        members[c] = generation
        order.append((c, generation))
    }

    mutating func remove(_ c: ContentID) { members[c] = nil }

    /// The item waiting longest, if any.
    var first: ContentID? {
        mutating get {
            skipStale()
            return head < order.count ? order[head].0 : nil
        }
    }

    /// Takes the item waiting longest.
    @discardableResult
    mutating func removeFirst() -> ContentID {
        skipStale()
        let (c, _) = order[head]
        head += 1
        members[c] = nil
        compact()
        return c
    }

    private mutating func skipStale() {
        while head < order.count, members[order[head].0] != order[head].1 { head += 1 }
    }

    private mutating func compact() {
        if head > 1024, head * 2 > order.count {
            order.removeFirst(head)
            head = 0
        }
    }
}
