// Many named deadlines on one libuv timer: what a sans-IO `setTimer(id, at:)` directive needs.

/// Keeps any number of named deadlines and fires them in order using a single `LoopTimer`
/// armed for the earliest one. Setting an id again replaces its deadline; `cancel` removes it.
/// Deadlines are in the loop's monotonic milliseconds (`loop.nowMilliseconds`); one in the past
/// fires on the next loop iteration. Loop thread only.
public final class DeadlineScheduler<ID: Hashable>: @unchecked Sendable {
    public let loop: EventLoop
    /// Called with each id whose deadline passed (in deadline order; ties in scheduling order).
    public var onFire: ((ID) -> Void)?
    /// Cap on pending deadlines; `schedule` beyond it throws.
    public let maxPending: Int

    private let timer: LoopTimer
    private var deadlines: [ID: (at: UInt64, seq: UInt64)] = [:]
    private var heap: [(at: UInt64, seq: UInt64, id: ID)] = []  // lazy: stale entries skipped
    private var seq: UInt64 = 0
    private var armedAt: UInt64?

    public init(loop: EventLoop, maxPending: Int = 1 << 16, onFire: ((ID) -> Void)? = nil) throws(MeshError) {
        self.loop = loop
        self.maxPending = maxPending
        self.onFire = onFire
        timer = try LoopTimer(loop: loop)
        timer.onFire = { [unowned self] in self.fireDue() }
    }

    /// Pending deadlines.
    public var count: Int { deadlines.count }

    /// The deadline of `id`, if scheduled.
    public func deadline(of id: ID) -> UInt64? { deadlines[id]?.at }

    /// Schedules (or reschedules) `id` at `atMilliseconds` on the loop clock.
    public func schedule(_ id: ID, atMilliseconds at: UInt64) throws(MeshError) {
        loop.assertInLoop("DeadlineScheduler.schedule")
        if deadlines[id] == nil && deadlines.count >= maxPending {
            throw MeshError(.init("timer.too_many"), "more than \(maxPending) timers pending")
        }
        seq += 1
        deadlines[id] = (at, seq)
        push((at, seq, id))
        if heap.count > 4 * max(deadlines.count, 16) { compact() }
        arm()
    }

    /// Schedules `id` after `delay` from now.
    public func schedule(_ id: ID, after delay: Duration) throws(MeshError) {
        try schedule(id, atMilliseconds: loop.nowMilliseconds + delay.milliseconds)
    }

    /// Removes `id`'s deadline, if any.
    public func cancel(_ id: ID) {
        deadlines[id] = nil
        if deadlines.isEmpty {
            heap.removeAll(keepingCapacity: true)
            timer.stop()
            armedAt = nil
        }
    }

    /// Cancels everything and closes the underlying timer.
    public func close() {
        deadlines = [:]
        heap = []
        onFire = nil
        timer.close()
    }

    private func fireDue() {
        armedAt = nil
        let now = loop.nowMilliseconds
        while let top = heap.first, top.at <= now {
            popTop()
            guard let d = deadlines[top.id], d.seq == top.seq else { continue }  // stale
            deadlines[top.id] = nil
            onFire?(top.id)
            if timer.isClosed { return }
        }
        arm()
    }

    private func arm() {
        while let top = heap.first, deadlines[top.id]?.seq != top.seq { popTop() }
        guard let top = heap.first else {
            timer.stop()
            armedAt = nil
            return
        }
        if armedAt == top.at { return }
        armedAt = top.at
        let now = loop.nowMilliseconds
        timer.start(after: .milliseconds(Int64(top.at > now ? top.at - now : 0)))
    }

    private func compact() {
        heap = deadlines.map { ($0.value.at, $0.value.seq, $0.key) }
        heap.sort { less($0, $1) }  // a sorted array is a valid heap
    }

    private func less(_ a: (at: UInt64, seq: UInt64, id: ID), _ b: (at: UInt64, seq: UInt64, id: ID)) -> Bool {
        a.at != b.at ? a.at < b.at : a.seq < b.seq
    }

    private func push(_ e: (at: UInt64, seq: UInt64, id: ID)) {
        heap.append(e)
        var i = heap.count - 1
        while i > 0 {
            let p = (i - 1) / 2
            guard less(heap[i], heap[p]) else { break }
            heap.swapAt(i, p)
            i = p
        }
    }

    private func popTop() {
        let last = heap.removeLast()
        guard !heap.isEmpty else { return }
        heap[0] = last
        var i = 0
        while true {
            let l = 2 * i + 1, r = l + 1
            var m = i
            if l < heap.count, less(heap[l], heap[m]) { m = l }
            if r < heap.count, less(heap[r], heap[m]) { m = r }
            if m == i { break }
            heap.swapAt(i, m)
            i = m
        }
    }
}
