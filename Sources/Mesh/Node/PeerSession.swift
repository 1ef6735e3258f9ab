import Gossip

/// One authenticated, encrypted session with a peer over any framed byte stream
/// (docs/PROTOCOL.md §8): the handshake, then sealed, typed messages.
///
/// Loop-confined. Created either by dialling (initiator) or by accepting (responder);
/// reports `onEstablished` once, then `onMessage` per message, `onClosing` once if the session
/// is ended on purpose by either side (a clean close, §8.4), then `onClose` once.
public final class PeerSession: @unchecked Sendable {
    // @unchecked: loop-confined like every handle it owns.

    /// Message types inside sealed frames (§8.3).
    public enum MessageType: UInt8, Sendable {
        case gossip = 0x01
        /// The sender ends the session on purpose; nothing follows it (§8.4). Handled here.
        case close = 0x02
    }

    public enum Direction: String, Sendable { case outbound, inbound }

    public let connection: FramedConnection
    public let direction: Direction
    /// The peer's listen address as the dialler meant it (outbound), or the TCP source (inbound).
    public let remote: PeerAddress
    /// How the stream was made: "direct", "ssh", "socks5", "inbound".
    public let via: String
    public private(set) var peer: NodeID?
    public private(set) var peerCredential: [UInt8] = []
    public private(set) var established = false
    public let openedAt: Instant
    public private(set) var bytesSent: UInt64 = 0
    public private(set) var bytesReceived: UInt64 = 0

    public var onEstablished: ((PeerSession) -> Void)?
    /// A message arrived: its type byte and body. Types ≥ 0x10 are chunk exchange (§9).
    /// `close` (0x02) is handled by the session itself and never delivered.
    public var onMessage: ((PeerSession, UInt8, ArraySlice<UInt8>) -> Void)?
    /// The session has started a clean close (this side sent `close`, or the peer's arrived):
    /// send nothing more on it. Called once, before `onClose`.
    public var onClosing: ((PeerSession) -> Void)?
    /// The session ended: `nil` when closed locally, else why (counted by reason). After a
    /// clean close (`endedCleanly`) the reason is only how the stream went down.
    public var onClose: ((PeerSession, SessionCloseReason?) -> Void)?

    /// This side sent `close` (§8.4).
    public private(set) var closeSent = false
    /// The peer's `close` arrived (§8.4).
    public private(set) var closeReceived = false
    /// The session was ended on purpose by one side: whatever happens to the stream after the
    /// `close`, the end says nothing about the path (no lifetime is learned from it).
    public var endedCleanly: Bool { closeSent || closeReceived }
    /// A clean close is under way: the session takes no new messages.
    public var isClosing: Bool { closeSent || closeReceived }

    /// How long a node that sent `close` waits for the peer's `close` (or the end of the
    /// stream) before it closes the connection anyway; also the longest wait for its own
    /// last frames to drain (PROTOCOL §8.4).
    public static let closeWait: Duration = .seconds(10)

    private var handshake: SessionHandshake?
    private var channel: SecureChannel?
    private var closed = false
    private var pending: [OutgoingFrame] = []
    private var pendingBytes = 0

    /// Frames queued before the session is up, at most this many bytes (older ones are dropped).
    public static let maxPendingBytes = 4 << 20
    /// The frame limit during the handshake (PROTOCOL §8.1); each handshake message has its own,
    /// smaller maximum (`SessionHandshake.maxHelloBytes`...), checked by the handshake.
    public static let maxHandshakeFrameBytes = 512

    public init(connection: FramedConnection, direction: Direction, remote: PeerAddress, via: String,
                handshake: consuming SessionHandshake, now: Instant) {
        self.connection = connection
        self.direction = direction
        self.remote = remote
        self.via = via
        self.openedAt = now
        self.handshake = consume handshake
    }

    /// Starts reading; the initiator sends its hello.
    public func start() {
        // Weak: a session may be dropped by its owner while its connection still holds
        // frames from the same read; those are then ignored.
        connection.onFrame = { [weak self] frame in self?.received(frame) }
        connection.onClose = { [weak self] error in
            self?.finish(error.map { .stream($0) })
        }
        // Until the peer has proved who it is, no frame may be larger than a handshake
        // frame (PROTOCOL §8.1): a 4-byte header from anyone must not make us allocate or
        // buffer megabytes. Raised to the full limit once the session is up.
        connection.maxFrameBytes = Self.maxHandshakeFrameBytes
        connection.start()
        if direction == .outbound {
            var h = handshake.take()!
            let hello = h.start()
            handshake = consume h
            sendRaw(hello)
        }
    }

    /// Sends one message; queued (bounded) until the session is established. Dropped once the
    /// session is closing or closed.
    public func send(_ type: UInt8, _ body: [UInt8]) {
        guard !closed, !closeSent else { return }
        let frame = OutgoingFrame(messageCapacity: 1 + body.count)
        frame.append(type)
        frame.append(body)
        send(frame: frame)
    }

    /// Sends one message built in `frame` (its first message byte is the type); the frame is
    /// encrypted in place and written without a copy. The caller must not touch it again.
    public func send(frame: OutgoingFrame) {
        guard !closed, !closeSent, frame.messageCount > 0 else { return }
        guard let channel else {
            pending.append(frame)
            pendingBytes += frame.messageCount
            while pendingBytes > Self.maxPendingBytes, !pending.isEmpty {
                pendingBytes -= pending.removeFirst().messageCount
            }
            return
        }
        do {
            try channel.seal(frame: frame)
            bytesSent += UInt64(frame.messageCount)
            try connection.send(frame: frame)
        } catch let e as SessionError {
            close(reason: .session(e))
        } catch {
            close(reason: .stream(error as? MeshError ?? MeshError(.closed, "\(error)")))
        }
    }

    /// The cipher suite the session runs with, once established.
    public var cipher: CipherSuite? { channel?.suite }

    public var writeQueueBytes: Int { connection.writeQueueBytes }
    public var isOpen: Bool { !closed && connection.isOpen }

    /// Closes the connection at once, without a `close` message (errors, a node going down hard).
    /// The peer sees the stream end without a clean close.
    public func close() { close(reason: nil) }

    /// Ends the session on purpose (PROTOCOL §8.4): sends `close` as this side's last frame,
    /// keeps reading until the peer's `close` or the end of the stream (at most `closeWait`),
    /// then closes the connection. A session still in its handshake is simply closed.
    public func shutdown() {
        guard !closed else { return }
        guard established else { return close() }
        guard !closeSent else { return }
        sendClose()
        if closeReceived {
            connection.closeWhenFlushed(within: Self.closeWait)
        } else {
            connection.closeAfter(Self.closeWait)
        }
    }

    /// Seals and sends `close`, then sends nothing more.
    private func sendClose() {
        let first = !isClosing
        let frame = OutgoingFrame(messageCapacity: 1)
        frame.append(MessageType.close.rawValue)
        send(frame: frame)
        closeSent = true
        connection.finishSending()
        if first { notifyClosing() }
    }

    private func notifyClosing() {
        let cb = onClosing
        onClosing = nil
        cb?(self)
    }

    /// The peer's `close` arrived: answer with ours (unless sent already) and close the
    /// connection as soon as it has gone out.
    private func closeArrived(_ body: ArraySlice<UInt8>) {
        guard body.isEmpty else {
            return close(reason: .session(.protocolViolation("close message with a \(body.count)-byte body")))
        }
        guard !closeReceived else { return }
        let first = !isClosing
        closeReceived = true
        if !closeSent { sendClose() }
        if first { notifyClosing() }
        guard !closed else { return }
        connection.closeWhenFlushed(within: Self.closeWait)
    }

    public func close(reason: SessionCloseReason?) {
        guard !closed else { return }
        closed = true
        pending = []
        onClosing = nil
        let cb = onClose
        onClose = nil
        connection.onClose = nil
        connection.onFrame = nil
        connection.close()
        cb?(self, reason)
    }

    private func finish(_ reason: SessionCloseReason?) {
        guard !closed else { return }
        closed = true
        onClosing = nil
        let cb = onClose
        onClose = nil
        cb?(self, reason)
    }

    private func sendRaw(_ frame: [UInt8]) {
        do { try connection.send(frame) } catch { close(reason: .stream(error)) }
    }

    private func received(_ frame: consuming [UInt8]) {
        guard !closed else { return }
        bytesReceived += UInt64(frame.count)
        if let channel {
            let n: Int
            do { n = try channel.open(inPlace: &frame) } catch { return close(reason: .session(error)) }
            guard n > 0 else { return close(reason: .session(.malformed("empty message"))) }
            // Nothing the peer sends after its `close` counts (§8.4).
            guard !closeReceived else { return }
            if frame[0] == MessageType.close.rawValue { return closeArrived(frame[1..<n]) }
            onMessage?(self, frame[0], frame[1..<n])
            return
        }
        guard frame.count <= SessionHandshake.maxHandshakeFrameBytes else {
            return close(reason: .session(.malformed("handshake frame of \(frame.count) bytes")))
        }
        var h = handshake.take()!
        let step: SessionHandshake.Step
        do {
            step = try h.receive(frame)
        } catch {
            return close(reason: .session(error))
        }
        switch step {
        case .send(let reply):
            handshake = consume h
            sendRaw(reply)
        case .established(let ch, let peer, let credential, let final):
            _ = consume h
            if let final { sendRaw(final) }
            channel = ch
            connection.maxFrameBytes = connection.limits.maxFrameBytes
            self.peer = peer
            peerCredential = credential
            established = true
            let queued = pending
            pending = []
            pendingBytes = 0
            onEstablished?(self)
            for f in queued { send(frame: f) }
        }
    }
}

/// Why a session ended.
public enum SessionCloseReason: Sendable, CustomStringConvertible {
    case session(SessionError)
    case stream(MeshError)
    case replaced
    case unknownMessageType(UInt8)

    /// A name for the log: `counter`'s, but a stream failure's own error code even when the
    /// counter list has no name for it.
    public var reason: String {
        switch self {
        case .stream(let e): e.code.rawValue
        case .replaced: "replaced"
        default: counter.rawValue
        }
    }

    /// The name an abnormal end is counted under (a replaced session is not counted: `other`).
    public var counter: RejectCounter {
        switch self {
        case .session(let e): e.counter
        case .stream(let e): RejectCounter(streamFailure: e.code)
        case .replaced: .other
        case .unknownMessageType: .unknownMessageType
        }
    }

    public var description: String {
        switch self {
        case .session(let e): e.description
        case .stream(let e): e.description
        case .replaced: "replaced by a newer session"
        case .unknownMessageType(let t): "unknown message type 0x\(String(t, radix: 16))"
        }
    }
}
