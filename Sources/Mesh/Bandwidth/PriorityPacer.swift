// A shared upload limit handed out by priority: pure, time passed in.

/// The node's global upload bucket, shared among the sessions that have a message ready, in the
/// order `PriorityScheduler` picks: each waiting sender holds a ticket with its message's size
/// and priority; `grant` says which tickets may send now (each taking its bytes from the bucket,
/// which may go into debt by one message) and how long until the next may.
///
/// Without a bucket (no global limit) every ticket is granted at once.
public struct PriorityPacer<Ticket: Hashable & Sendable>: Sendable {
    public private(set) var bucket: TokenBucket?
    public private(set) var scheduler: PriorityScheduler
    private var queues: [[(ticket: Ticket, bytes: Int)]] = [[], [], [], []]

    public init(bucket: TokenBucket?, scheduler: PriorityScheduler = PriorityScheduler()) {
        self.bucket = bucket
        self.scheduler = scheduler
    }

    /// Tickets waiting, all classes.
    public var waitingCount: Int { queues.reduce(0) { $0 + $1.count } }

    /// Queues a sender with `bytes` to send at `priority`.
    public mutating func submit(_ ticket: Ticket, bytes: Int, priority: TransferPriority) {
        queues[Int(priority.rawValue)].append((ticket, max(0, bytes)))
    }

    /// Drops a ticket that will not send (its session closed).
    public mutating func cancel(_ ticket: Ticket) {
        for i in queues.indices { queues[i].removeAll { $0.ticket == ticket } }
    }

    /// The tickets that may send now, in order, and the nanoseconds until the next waiting one
    /// may (nil: none waits).
    public mutating func grant(nowNanoseconds now: UInt64) -> (granted: [Ticket], waitNanoseconds: UInt64?) {
        var granted = [Ticket]()
        while true {
            guard queues.contains(where: { !$0.isEmpty }) else {
                _ = scheduler.next(headBytes: [nil, nil, nil, nil])  // idle: no class keeps credit
                return (granted, nil)
            }
            if bucket != nil {
                bucket!.refill(nowNanoseconds: now)
                let wait = bucket!.waitNanoseconds
                if wait > 0 { return (granted, wait) }
            }
            guard let p = scheduler.next(headBytes: queues.map { $0.first?.bytes }) else { return (granted, nil) }
            let t = queues[Int(p.rawValue)].removeFirst()
            if bucket != nil { _ = bucket!.reserve(t.bytes, nowNanoseconds: now) }
            granted.append(t.ticket)
        }
    }
}
