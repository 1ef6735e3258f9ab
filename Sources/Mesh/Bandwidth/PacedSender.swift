// Applies bandwidth limits to frames sent on a FramedConnection, on the loop.

/// A `BandwidthLimiter` shared by every paced sender of a node (loop thread only).
public final class SharedBandwidthLimiter<Peer: Hashable & Sendable>: @unchecked Sendable {
    public var limiter: BandwidthLimiter<Peer>
    public init(_ limiter: BandwidthLimiter<Peer>) { self.limiter = limiter }
}

/// Sends frames on one connection no faster than the node's global and per-peer limits allow,
/// and no faster than the connection drains (its write queue is kept under `lowWaterBytes`).
///
/// `enqueue` accepts frames up to `maxQueuedBytes`; beyond that it throws
/// `stream.write_buffer_full` (retry on `onIdle`). It chains itself into `connection.onDrain`
/// (keeping a handler set before it), so set your own `onDrain` first. Waits for tokens are slept on a
/// `LoopTimer`; nothing polls. Loop thread only. Close it (or its connection) when done.
public final class PacedSender<Peer: Hashable & Sendable>: @unchecked Sendable {
    public let connection: FramedConnection
    public let peer: Peer
    public let bandwidth: SharedBandwidthLimiter<Peer>
    /// Frames are handed to the connection only while its write queue holds less than this.
    public var lowWaterBytes = 1 << 20
    /// Cap on bytes waiting in this sender.
    public var maxQueuedBytes = 32 << 20
    /// Called when the queue became empty (everything handed to the connection); never from
    /// inside `enqueue`.
    public var onIdle: (() -> Void)?

    private var queue: [[UInt8]] = []
    private var head = 0
    public private(set) var queuedBytes = 0
    private var headReserved = false
    private var timer: LoopTimer?
    private var closed = false

    public init(connection: FramedConnection, peer: Peer, bandwidth: SharedBandwidthLimiter<Peer>) throws(MeshError) {
        self.connection = connection
        self.peer = peer
        self.bandwidth = bandwidth
        let t = try LoopTimer(loop: connection.loop)
        timer = t
        t.onFire = { [unowned self] in
            self.waitingForTokens = false
            self.pump()
        }
        let previous = connection.onDrain
        connection.onDrain = { [weak self] in
            previous?()
            self?.pump()
        }
    }

    /// Queues a frame.
    public func enqueue(_ frame: [UInt8]) throws(MeshError) {
        connection.loop.assertInLoop("PacedSender.enqueue")
        guard !closed, connection.isOpen else { throw MeshError(.closed, "connection to \(connection.peerDescription) is closed") }
        guard queuedBytes == 0 || queuedBytes + frame.count <= maxQueuedBytes else {
            throw MeshError(.writeBufferFull, "paced queue to \(connection.peerDescription) is full (\(queuedBytes) bytes)")
        }
        queue.append(frame)
        queuedBytes += frame.count
        if queue.count - head == 1 {
            inEnqueue = true
            pump()
            inEnqueue = false
        }
    }

    private var inEnqueue = false
    private var waitingForTokens = false
    private var pumping = false

    /// Drops queued frames and releases the timer (the connection stays open).
    public func close() {
        closed = true
        queue = []
        head = 0
        queuedBytes = 0
        onIdle = nil
        timer?.close()
        timer = nil
    }

    private func pump() {
        guard !closed, !pumping, !waitingForTokens else { return }
        pumping = true
        defer { pumping = false }
        while head < queue.count {
            guard connection.isOpen else { return close() }
            if connection.writeQueueBytes >= lowWaterBytes { return }  // resumed by onDrain
            let frame = queue[head]
            if !headReserved {
                let wait = bandwidth.limiter.reserve(frame.count + 4, peer: peer, nowNanoseconds: EventLoop.monotonicNanoseconds)
                headReserved = true
                if wait > 0 {
                    waitingForTokens = true
                    timer?.start(after: .nanoseconds(Int64(min(wait, UInt64(Int64.max)))))
                    return
                }
            }
            do throws(MeshError) {
                try connection.send(frame)
            } catch {
                if error.code == .writeBufferFull { return }  // onDrain resumes
                return close()
            }
            headReserved = false
            queue[head] = []
            head += 1
            queuedBytes -= frame.count
        }
        queue.removeAll(keepingCapacity: true)
        head = 0
        // Not from inside enqueue: the caller is enqueuing right now, and re-entering it from
        // its own call would be a surprise.
        if !inEnqueue {
            pumping = false
            onIdle?()
        }
    }
}
