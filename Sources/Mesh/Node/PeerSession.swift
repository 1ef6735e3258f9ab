import Gossip

/// One authenticated, encrypted session with a peer over any framed byte stream
/// (docs/PROTOCOL.md §8): the handshake, then sealed, typed messages.
///
/// Loop-confined. Created either by dialling (initiator) or by accepting (responder);
/// reports `onEstablished` once, then `onMessage` per message, then `onClose` once.
public final class PeerSession: @unchecked Sendable {
    // @unchecked: loop-confined like every handle it owns.

    /// Message types inside sealed frames (§8.3).
    public enum MessageType: UInt8, Sendable {
        case gossip = 0x01
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
    public var onMessage: ((PeerSession, UInt8, ArraySlice<UInt8>) -> Void)?
    /// The session ended: `nil` when closed locally, else why (counted by reason).
    public var onClose: ((PeerSession, SessionCloseReason?) -> Void)?

    private var handshake: SessionHandshake?
    private var channel: SecureChannel?
    private var closed = false
    private var pending: [OutgoingFrame] = []
    private var pendingBytes = 0

    /// Frames queued before the session is up, at most this many bytes (older ones are dropped).
    public static let maxPendingBytes = 4 << 20
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

    /// Sends one message; queued (bounded) until the session is established.
    public func send(_ type: UInt8, _ body: [UInt8]) {
        guard !closed else { return }
        let frame = OutgoingFrame(messageCapacity: 1 + body.count)
        frame.append(type)
        frame.append(body)
        send(frame: frame)
    }

    /// Sends one message built in `frame` (its first message byte is the type); the frame is
    /// encrypted in place and written without a copy. The caller must not touch it again.
    public func send(frame: OutgoingFrame) {
        guard !closed, frame.messageCount > 0 else { return }
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

    public func close() { close(reason: nil) }

    public func close(reason: SessionCloseReason?) {
        guard !closed else { return }
        closed = true
        pending = []
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
            onMessage?(self, frame[0], frame[1..<n])
            return
        }
        guard frame.count <= Self.maxHandshakeFrameBytes else {
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

    /// A metric-friendly name.
    public var reason: String {
        switch self {
        case .session(let e): e.reason
        case .stream(let e): e.code.rawValue
        case .replaced: "replaced"
        case .unknownMessageType: "unknown_message_type"
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
