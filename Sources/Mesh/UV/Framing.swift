// Length-prefixed frames over any ByteStream, with limits, backpressure and dead-peer detection.

/// Limits for a framed connection. Units are in the names.
///
/// The timer defaults are the protocol's (docs/PROTOCOL.md §8.1): a keepalive after 2 s of
/// sending nothing, and the connection closed after 8 s of receiving nothing.
public struct FrameLimits: Sendable, Equatable {
    /// Largest payload accepted or sent. A larger announced length closes the connection.
    public var maxFrameBytes: Int = 16 << 20
    /// Cap on bytes queued for sending; beyond it `send` throws `stream.write_buffer_full`.
    public var maxWriteQueueBytes: Int = 32 << 20
    /// Close the connection when nothing at all was received for this long.
    public var idleTimeout: Duration = FrameLimits.protocolIdleTimeout
    /// Send an empty keepalive frame when nothing was sent for this long (keeps a healthy but
    /// quiet peer from hitting its idle timeout). Must be well under the peer's `idleTimeout`.
    public var keepaliveInterval: Duration = FrameLimits.protocolKeepaliveInterval

    /// PROTOCOL §8.1: a node that has sent no frame for this long sends a keepalive.
    public static let protocolKeepaliveInterval: Duration = .seconds(2)
    /// PROTOCOL §8.1: a node closes a connection on which no byte arrived for this long.
    public static let protocolIdleTimeout: Duration = .seconds(8)
    /// PROTOCOL §8.1: how late (at most, on a host that is not overloaded) a keepalive or an
    /// idle close may come after its deadline. Never early.
    public static let timerToleranceMs: UInt64 = 250

    public init() {}
    public init(maxFrameBytes: Int = 16 << 20, maxWriteQueueBytes: Int = 32 << 20,
                idleTimeout: Duration = FrameLimits.protocolIdleTimeout,
                keepaliveInterval: Duration = FrameLimits.protocolKeepaliveInterval) {
        self.maxFrameBytes = maxFrameBytes
        self.maxWriteQueueBytes = maxWriteQueueBytes
        self.idleTimeout = idleTimeout
        self.keepaliveInterval = keepaliveInterval
    }
}

/// Counters shared by the framed connections of one listener or one node (loop thread only).
public final class FrameCounters: @unchecked Sendable {
    public var connectionsOpened = 0
    public var connectionsClosed = 0
    public var framesReceived = 0
    public var framesSent = 0
    public var bytesReceived = 0
    public var bytesSent = 0
    public var keepalivesSent = 0
    /// Connections closed because the peer announced a frame over `maxFrameBytes`.
    public var oversizedFrames = 0
    /// Connections whose peer closed in the middle of a frame.
    public var truncatedFrames = 0
    /// Connections closed because nothing arrived within `idleTimeout`.
    public var idleTimeouts = 0
    /// Sends refused because the write queue was full.
    public var writeQueueFull = 0
    /// Connections closed by a read/write error (reset, broken pipe, process exit...).
    public var streamErrors = 0
    public init() {}
}

/// Incremental decoder of `u32 big-endian length || payload` frames. Pure and total: any byte
/// sequence either yields frames, waits for more, or fails with `frameTooLarge`.
///
/// Two ways to drive it:
/// - `consume(_:)` parses from caller-owned bytes up to the end of at most one frame and says
///   how many bytes it used; payload bytes are copied once, straight into the frame's array.
///   Because it never reads past the frame it returns, a limit changed between frames (512 B
///   during the handshake, 16 MiB after it) applies exactly from the next frame on.
/// - `feed(_:)` + `next()`: convenience that keeps unparsed bytes internally.
public struct FrameDecoder: Sendable {
    /// The largest payload accepted; may be changed between frames.
    public var maxFrameBytes: Int {
        didSet { precondition(maxFrameBytes >= 0 && maxFrameBytes <= Int(UInt32.max)) }
    }
    private var header: [UInt8] = []
    private var payload: [UInt8] = []
    private var payloadLength = -1  // -1: reading a header
    private var failure: MeshError?
    private var pending: [UInt8] = []  // feed/next only
    private var pendingStart = 0

    public init(maxFrameBytes: Int) {
        precondition(maxFrameBytes >= 0 && maxFrameBytes <= Int(UInt32.max))
        self.maxFrameBytes = maxFrameBytes
        header.reserveCapacity(4)
    }

    /// True while part of a frame (some header bytes, or a header and part of its payload) has
    /// been consumed: a stream ending now ends mid-frame (`truncated_frame`).
    public var hasPartialFrame: Bool { !header.isEmpty || payloadLength >= 0 || pending.count > pendingStart }

    /// Bytes consumed or fed but not yet returned as frames.
    public var bufferedBytes: Int { header.count + (payloadLength >= 0 ? 4 + payload.count : 0) + pending.count - pendingStart }

    /// Parses `bytes` until one frame is complete or the bytes run out. Returns the bytes used
    /// and the frame (possibly empty: a keepalive), if one completed.
    public mutating func consume(_ bytes: UnsafeRawBufferPointer) throws(MeshError) -> (consumed: Int, frame: [UInt8]?) {
        if let failure { throw failure }
        var i = 0
        let n = bytes.count
        while i < n {
            if payloadLength < 0 {
                let take = min(4 - header.count, n - i)
                header.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[i..<(i + take)]))
                i += take
                guard header.count == 4 else { break }
                let len = Int(header[0]) << 24 | Int(header[1]) << 16 | Int(header[2]) << 8 | Int(header[3])
                header.removeAll(keepingCapacity: true)
                guard len <= maxFrameBytes else {
                    let e = MeshError(.frameTooLarge, "peer announced a \(len)-byte frame, over the \(maxFrameBytes)-byte limit")
                    failure = e
                    throw e
                }
                if len == 0 { return (i, []) }
                payloadLength = len
                payload = []
                // One allocation for the whole frame: growing a 2 MiB chunk frame by doubling
                // would copy it again. A header alone can make us allocate at most
                // `maxFrameBytes`, which is 512 B until the peer has proved who it is.
                payload.reserveCapacity(len)
            } else {
                let take = min(payloadLength - payload.count, n - i)
                payload.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[i..<(i + take)]))
                i += take
                if payload.count == payloadLength {
                    let frame = payload
                    payload = []
                    payloadLength = -1
                    return (i, frame)
                }
            }
        }
        return (i, nil)
    }

    /// Keeps `bytes` for `next()`.
    public mutating func feed(_ bytes: UnsafeRawBufferPointer) {
        if pendingStart > 0 && pendingStart >= pending.count / 2 {
            pending.removeFirst(pendingStart)
            pendingStart = 0
        }
        pending.append(contentsOf: bytes)
    }

    public mutating func feed(_ bytes: [UInt8]) { bytes.withUnsafeBytes { feed($0) } }

    /// The next complete frame's payload (possibly empty) from fed bytes, nil if more bytes are
    /// needed; throws `stream.frame_too_large` at an oversized header.
    public mutating func next() throws(MeshError) -> [UInt8]? {
        guard pendingStart < pending.count else { return nil }
        let result: Result<(consumed: Int, frame: [UInt8]?), MeshError> = pending.withUnsafeBytes { all in
            do throws(MeshError) {
                return .success(try consume(UnsafeRawBufferPointer(rebasing: all[pendingStart...])))
            } catch { return .failure(error) }
        }
        let (used, frame) = try result.get()
        pendingStart += used
        if pendingStart == pending.count {
            pending.removeAll(keepingCapacity: pending.capacity <= 1 << 20)
            pendingStart = 0
        }
        return frame
    }

    /// The 4-byte header for a payload of `length` bytes.
    public static func header(length: Int) -> [UInt8] {
        [UInt8(truncatingIfNeeded: length >> 24), UInt8(truncatingIfNeeded: length >> 16),
         UInt8(truncatingIfNeeded: length >> 8), UInt8(truncatingIfNeeded: length)]
    }
}

/// A connection carrying length-prefixed frames over any `ByteStream` (TCP, SSH pipe, SOCKS5).
///
/// Wire format: each frame is a 4-byte big-endian unsigned payload length followed by the payload.
/// A zero-length frame is a keepalive: sent automatically when idle, consumed silently.
/// A peer announcing more than `maxFrameBytes` is cut off (counted in `oversizedFrames`); a peer
/// silent for `idleTimeout` is cut off (`idleTimeouts`). Loop thread only.
///
/// Both timers run on one one-shot libuv timer armed for the earlier deadline
/// (`lastWrite + keepaliveInterval`, `lastRead + idleTimeout`), so each fires when it is due
/// (PROTOCOL §8.1), not on the next tick of a coarse period. Traffic only moves the deadlines
/// later: a timer that fires early finds nothing due and re-arms.
public final class FramedConnection: @unchecked Sendable {
    public let stream: any ByteStream
    public let limits: FrameLimits
    public let counters: FrameCounters
    /// Called with each non-empty frame's payload, handed over (the callee may decrypt it in
    /// place without a copy).
    public var onFrame: ((consuming [UInt8]) -> Void)?
    /// Called when the write queue drained after being non-empty (retry refused sends here).
    public var onDrain: (() -> Void)?
    /// Called once when the connection closed: nil if closed locally, else the reason.
    public var onClose: ((MeshError?) -> Void)?

    private var decoder: FrameDecoder
    private var timer: LoopTimer?
    private var lastReadMs: UInt64
    private var lastWriteMs: UInt64
    private var closed = false
    /// Set by `finishSending()`: no frame, not even a keepalive, goes out any more.
    private var sendingFinished = false
    /// When set, the connection is closed at this time even if its queue has not drained.
    private var closeDeadlineMs: UInt64?
    /// Close as soon as the write queue is empty (`closeWhenFlushed`).
    private var closeWhenDrained = false

    public var loop: EventLoop { stream.loop }
    /// The largest frame accepted from the peer from the next frame on (e.g. 512 during a
    /// handshake, then 16 MiB). Starts at `limits.maxFrameBytes`.
    public var maxFrameBytes: Int {
        get { decoder.maxFrameBytes }
        set { decoder.maxFrameBytes = newValue }
    }
    public var isOpen: Bool { !closed && stream.isOpen }
    public var peerDescription: String { stream.peerDescription }
    public var writeQueueBytes: Int { stream.writeQueueBytes }

    /// Wraps `stream` (which must be open and not yet reading). Call `start()` after setting the
    /// callbacks.
    public init(stream: any ByteStream, limits: FrameLimits = FrameLimits(), counters: FrameCounters = FrameCounters()) {
        self.stream = stream
        self.limits = limits
        self.counters = counters
        decoder = FrameDecoder(maxFrameBytes: limits.maxFrameBytes)
        stream.maxWriteQueueBytes = limits.maxWriteQueueBytes
        lastReadMs = stream.loop.nowMilliseconds
        lastWriteMs = lastReadMs
    }

    /// Starts reading frames and the idle/keepalive timer.
    public func start() {
        loop.assertInLoop("FramedConnection.start")
        guard !closed else { return }
        counters.connectionsOpened += 1
        stream.onRead = { [unowned self] bytes in self.received(bytes) }
        stream.onDrain = { [unowned self] in self.drained() }
        stream.onClose = { [self] err in self.streamClosed(err) }  // strong: keeps self until closed
        let now = loop.nowMilliseconds
        lastReadMs = now
        lastWriteMs = now
        if let t = try? LoopTimer(loop: loop) {
            timer = t
            t.onFire = { [unowned self] in self.timerFired() }
            armTimer(now: now)
        }
        stream.startReading()
    }

    /// Queues one frame. Throws `stream.frame_too_large` for a payload over `maxFrameBytes`,
    /// `stream.write_buffer_full` when the queue is full (retry after `onDrain`), or the close
    /// reason once closed.
    public func send(_ payload: [UInt8]) throws(MeshError) {
        let err: MeshError? = payload.withUnsafeBytes { p in
            do throws(MeshError) { try send(p) } catch { return error }
            return nil
        }
        if let err { throw err }
    }

    /// Queues one frame from raw bytes (copied).
    public func send(_ payload: UnsafeRawBufferPointer) throws(MeshError) {
        try checkSize(payload.count)
        let frame = OutgoingFrame(messageCapacity: payload.count)
        frame.append(payload)
        try send(frame: frame)
    }

    private func checkSize(_ count: Int) throws(MeshError) {
        guard count <= limits.maxFrameBytes else {
            throw MeshError(.frameTooLarge, "frame of \(count) bytes exceeds the \(limits.maxFrameBytes)-byte limit")
        }
    }

    /// Queues `frame` (its message after the headroom) as one frame, writing its length
    /// prefix; the stream sends it without copying. Same errors as `send(_:)`.
    public func send(frame: OutgoingFrame) throws(MeshError) {
        guard !sendingFinished else {
            throw MeshError(.closed, "\(peerDescription): this side has finished sending on the connection")
        }
        try checkSize(frame.messageCount)
        frame.writeLengthPrefix()
        do {
            try stream.write(frame: frame)
        } catch {
            if error.code == .writeBufferFull { counters.writeQueueFull += 1 }
            throw error
        }
        counters.framesSent += 1
        counters.bytesSent += frame.count
        lastWriteMs = loop.nowMilliseconds
    }

    /// Closes the connection; `onClose(nil)` follows.
    public func close() { stream.close() }

    /// This side will send nothing more: later `send`s throw and no keepalive goes out
    /// (PROTOCOL §8.4: nothing follows a `close`). Reading and the idle timeout go on.
    public func finishSending() {
        sendingFinished = true
    }

    /// Closes the connection once everything queued has been handed to the kernel (so the last
    /// frames go out before an orderly FIN), or after `timeout` at the latest.
    public func closeWhenFlushed(within timeout: Duration) {
        loop.assertInLoop("FramedConnection.closeWhenFlushed")
        guard !closed, stream.isOpen else { return }
        if stream.writeQueueBytes == 0 { return stream.close() }
        closeWhenDrained = true
        let deadline = loop.nowMilliseconds + timeout.milliseconds
        closeDeadlineMs = min(closeDeadlineMs ?? deadline, deadline)
        armTimer(now: loop.nowMilliseconds)
    }

    /// Closes the connection `timeout` from now unless it has closed by then (for example a
    /// peer that never answers a `close`).
    public func closeAfter(_ timeout: Duration) {
        loop.assertInLoop("FramedConnection.closeAfter")
        guard !closed, stream.isOpen else { return }
        let deadline = loop.nowMilliseconds + timeout.milliseconds
        closeDeadlineMs = min(closeDeadlineMs ?? deadline, deadline)
        armTimer(now: loop.nowMilliseconds)
    }

    private func drained() {
        if closeWhenDrained, !closed, stream.isOpen { return stream.close() }
        onDrain?()
    }

    /// Closes the connection because of `error`; `onClose(error)` follows.
    public func close(error: MeshError) { stream.close(error: error) }

    private func received(_ bytes: UnsafeRawBufferPointer) {
        lastReadMs = loop.nowMilliseconds
        counters.bytesReceived += bytes.count
        var rest = bytes
        do {
            // One frame at a time, so that onFrame may change `maxFrameBytes` (or close) before
            // the next header is looked at.
            while !rest.isEmpty, !closed, stream.isOpen {
                let (used, frame) = try decoder.consume(rest)
                rest = UnsafeRawBufferPointer(rebasing: rest[used...])
                guard let frame else { break }
                if frame.isEmpty { continue }  // keepalive
                counters.framesReceived += 1
                onFrame?(consume frame)
            }
        } catch {
            counters.oversizedFrames += 1
            // Counted; the owner decides how loudly to log (rate-limited per peer).
            loop.logger.debug("closing \(peerDescription): \(error.message)")
            stream.close(error: error)
        }
    }

    /// The earliest deadline: the idle close, the next keepalive (while this side still sends),
    /// and a requested close.
    private func nextDeadline() -> UInt64 {
        var next = lastReadMs &+ limits.idleTimeout.milliseconds
        if !sendingFinished { next = min(next, lastWriteMs &+ limits.keepaliveInterval.milliseconds) }
        if let closeDeadlineMs { next = min(next, closeDeadlineMs) }
        return next
    }

    private func armTimer(now: UInt64) {
        guard let timer, !closed else { return }
        let at = nextDeadline()
        timer.start(after: .milliseconds(at > now ? at - now : 0))
    }

    private func timerFired() {
        guard !closed, stream.isOpen else { return }
        let now = loop.nowMilliseconds
        if let closeDeadlineMs, now >= closeDeadlineMs {
            stream.close()
            return
        }
        if now &- lastReadMs >= limits.idleTimeout.milliseconds {
            counters.idleTimeouts += 1
            stream.close(error: MeshError(.idleTimeout, "\(peerDescription) sent nothing for \(limits.idleTimeout)", hint: "the peer or the path to it is dead"))
            return
        }
        if !sendingFinished, now &- lastWriteMs >= limits.keepaliveInterval.milliseconds {
            if stream.writeQueueBytes == 0 {
                do {
                    try stream.write(FrameDecoder.header(length: 0))
                    counters.keepalivesSent += 1
                } catch {}
            }
            // A frame still being written counts as sending: the peer is receiving its bytes.
            lastWriteMs = now
        }
        armTimer(now: now)
    }

    private func streamClosed(_ err: MeshError?) {
        guard !closed else { return }
        closed = true
        counters.connectionsClosed += 1
        if err?.code == .eof && decoder.hasPartialFrame { counters.truncatedFrames += 1 }
        if let err, err.code != .eof, err.code != .frameTooLarge, err.code != .idleTimeout { counters.streamErrors += 1 }
        timer?.close()
        timer = nil
        let cb = onClose
        onFrame = nil
        onDrain = nil
        onClose = nil
        cb?(err)
    }
}
