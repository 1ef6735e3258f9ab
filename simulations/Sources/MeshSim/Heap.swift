import Gossip

/// One scheduled thing in virtual time. Ties break on `seq` (insertion order), which
/// makes a run a pure function of its seed.
struct Event {
    enum Kind: UInt8 { case deliver, timer, action }
    var t: Int64
    var seq: UInt64
    var kind: Kind
    var node: Int32
    var aux: Int32 = 0
    var gen: UInt64 = 0
    var from: Int32 = -1
    var stream = false
    var bytes: [UInt8] = []
}

/// A binary min-heap on (t, seq).
struct EventHeap {
    private var a: [Event] = []
    var count: Int { a.count }
    var isEmpty: Bool { a.isEmpty }
    var peekTime: Int64? { a.first?.t }

    @inline(__always) private static func less(_ x: Event, _ y: Event) -> Bool { x.t < y.t || (x.t == y.t && x.seq < y.seq) }

    mutating func push(_ e: Event) {
        a.append(e)
        var i = a.count - 1
        while i > 0 {
            let p = (i - 1) / 2
            if Self.less(a[i], a[p]) { a.swapAt(i, p); i = p } else { break }
        }
    }

    mutating func pop() -> Event? {
        guard !a.isEmpty else { return nil }
        a.swapAt(0, a.count - 1)
        let top = a.removeLast()
        var i = 0
        let n = a.count
        while true {
            let l = 2 * i + 1, r = l + 1
            var m = i
            if l < n && Self.less(a[l], a[m]) { m = l }
            if r < n && Self.less(a[r], a[m]) { m = r }
            if m == i { break }
            a.swapAt(i, m)
            i = m
        }
        return top
    }
}
