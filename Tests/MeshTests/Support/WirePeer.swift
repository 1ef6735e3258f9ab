import Foundation
@testable import Gossip
@testable import Mesh
@testable import Store

/// A peer that speaks the session protocol (PROTOCOL §8) to a node from a test, on its own
/// loop: it dials, completes the handshake, sends and records typed messages, and ends each
/// session the way a test wants (a clean `close`, a TCP reset, or nothing at all). Each
/// `connect` makes one new session; the previous one is left as it is.
final class WirePeer: @unchecked Sendable {
    let loop: EventLoop
    let identity: NodeIdentity
    /// Every message received, in order, on any session: (session number, type, body).
    let received = Locked<[(session: Int, type: UInt8, body: [UInt8])]>([])
    /// Sessions that ended, by number: whether the node's `close` had arrived first.
    let ended = Locked<[Int: Bool]>([:])
    /// Called on the loop for every message (for a test that answers requests).
    var onMessage: ((Int, PeerSession, UInt8, [UInt8]) -> Void)?
    private(set) var sessions: [PeerSession] = []

    init(name: String = "wire", identity: NodeIdentity = .generate()) throws {
        self.identity = identity
        loop = try EventLoop(name: "wire-\(name)")
    }

    /// Opens a session to `address` and waits until it is established; returns its number.
    @discardableResult
    func connect(to address: PeerAddress, timeout: Double = 10) throws -> Int {
        let up = Waiter<Result<Int, MeshError>>()
        try loop.execute {
            TCPStream.connect(loop: self.loop, to: SocketAddress(ip: address.host, port: address.port)!) { r in
                switch r {
                case .failure(let e): up.fulfill(.failure(e))
                case .success(let stream):
                    let hs = SessionHandshake(role: .initiator, signer: self.identity, verifier: Ed25519Verifier()) { _, _ in true }
                    // Room for a test that answers with many 8 MiB pieces at once.
                    let limits = FrameLimits(maxWriteQueueBytes: 128 << 20)
                    let s = PeerSession(connection: FramedConnection(stream: stream, limits: limits), direction: .outbound, remote: address,
                                        via: "wire", handshake: hs, now: MeshNode.now())
                    let number = self.sessions.count
                    self.sessions.append(s)
                    s.onEstablished = { _ in up.fulfill(.success(number)) }
                    s.onMessage = { [weak self] s, type, body in
                        guard let self else { return }
                        self.received.mutate { $0.append((number, type, Array(body))) }
                        self.onMessage?(number, s, type, Array(body))
                    }
                    s.onClose = { [weak self] s, reason in
                        self?.ended.mutate { $0[number] = s.closeReceived }
                        if !s.established { up.fulfill(.failure(MeshError(.closed, "closed in the handshake: \(reason.map { "\($0)" } ?? "locally")"))) }
                    }
                    s.start()
                }
            }
        }
        return try up.wait(timeout, "a session with \(address)").get()
    }

    func session(_ n: Int) throws -> PeerSession { try loop.execute { self.sessions[n] } }

    /// Sends one message (type byte and body) on session `n`.
    func send(_ n: Int, _ type: UInt8, _ body: [UInt8] = []) throws {
        try loop.execute { self.sessions[n].send(type, body) }
    }

    func send(_ n: Int, _ m: BlobMessage) throws {
        let bytes = m.encoded
        try send(n, bytes[0], Array(bytes[1...]))
    }

    /// Ends session `n` cleanly (PROTOCOL §8.4) and waits until it is over.
    func shutdown(_ n: Int, timeout: Double = 15) throws {
        try loop.execute { self.sessions[n].shutdown() }
        try waitEnded(n, timeout: timeout)
    }

    /// Resets session `n`'s TCP connection (RST, as a middlebox does) and waits until it is over.
    func reset(_ n: Int, timeout: Double = 10) throws {
        try loop.execute {
            guard let tcp = self.sessions[n].connection.stream as? TCPStream else { return }
            tcp.reset()
        }
        try waitEnded(n, timeout: timeout)
    }

    func waitEnded(_ n: Int, timeout: Double = 10) throws {
        guard eventually(timeout, { self.ended.value[n] != nil }) else { throw Waiter<Void>.Timeout(what: "session \(n) to end") }
    }

    /// Waits for a message of `type` on session `n`, returning its body.
    func waitFor(_ type: UInt8, on n: Int, timeout: Double = 10) throws -> [UInt8] {
        var found: [UInt8]?
        _ = eventually(timeout) {
            found = self.received.value.first { $0.session == n && $0.type == type }?.body
            return found != nil
        }
        guard let found else { throw Waiter<Void>.Timeout(what: "message type 0x\(String(type, radix: 16)) on session \(n)") }
        return found
    }

    /// Closes every session at once and stops the loop.
    func stop() {
        try? loop.execute { for s in self.sessions { s.close() } }
        _ = loop.shutdown(timeout: .seconds(10))
    }
}
