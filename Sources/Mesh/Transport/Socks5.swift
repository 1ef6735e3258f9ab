// SOCKS5 client: RFC 1928 CONNECT with RFC 1929 username/password authentication.
// A sans-IO handshake state machine plus the libuv glue that runs it over a TCPStream.

/// What to ask the proxy to connect to.
public struct Socks5Target: Hashable, Sendable, CustomStringConvertible {
    public enum Host: Hashable, Sendable {
        case ipv4([UInt8])
        case ipv6([UInt8])
        /// A host name, resolved by the proxy (1-255 bytes).
        case domain(String)
    }
    public var host: Host
    public var port: UInt16

    public init(host: Host, port: UInt16) {
        self.host = host
        self.port = port
    }

    /// IP literals become `.ipv4`/`.ipv6`; anything else is sent as a domain name for the proxy
    /// to resolve (which is what lets a peer be named by its tailnet name).
    public init(_ endpoint: Endpoint) {
        if let a = SocketAddress(endpoint) {
            host = a.family == .ipv4 ? .ipv4(a.ip) : .ipv6(a.ip)
        } else {
            host = .domain(endpoint.host)
        }
        port = endpoint.port
    }

    public var description: String {
        switch host {
        case .ipv4(let b): return "\(b.map(String.init).joined(separator: ".")):\(port)"
        case .ipv6(let b): return (SocketAddress(ip: "::", port: port).map { var a = $0; a.ip = b; return a.description }) ?? "[ipv6]:\(port)"
        case .domain(let d): return "\(d):\(port)"
        }
    }
}

/// RFC 1929 credentials.
public struct Socks5Credentials: Hashable, Sendable {
    public var username: String
    public var password: String
    public init(username: String, password: String) {
        self.username = username
        self.password = password
    }
}

extension MeshError.Code {
    public static let socks5BadArgument = Self("socks5.bad_argument")
    public static let socks5Protocol = Self("socks5.protocol_error")
    public static let socks5NoAcceptableMethod = Self("socks5.no_acceptable_method")
    public static let socks5AuthFailed = Self("socks5.auth_failed")
    public static let socks5GeneralFailure = Self("socks5.general_failure")
    public static let socks5NotAllowed = Self("socks5.not_allowed")
    public static let socks5NetworkUnreachable = Self("socks5.network_unreachable")
    public static let socks5HostUnreachable = Self("socks5.host_unreachable")
    public static let socks5ConnectionRefused = Self("socks5.connection_refused")
    public static let socks5TTLExpired = Self("socks5.ttl_expired")
    public static let socks5CommandNotSupported = Self("socks5.command_not_supported")
    public static let socks5AddressTypeNotSupported = Self("socks5.address_type_not_supported")
    public static let socks5Timeout = Self("socks5.timeout")
}

/// The client side of a SOCKS5 CONNECT handshake, without I/O.
///
/// Usage: send `start()`'s bytes to the proxy; feed every byte received to `receive(_:)` and send
/// what it returns, until it returns `.connected` (the tunnel is open; `leftover` are bytes the
/// target already sent) or throws a `MeshError` whose code names the failure.
public struct Socks5Handshake: Sendable {
    public enum Step: Equatable, Sendable {
        /// Send these bytes to the proxy, then keep feeding replies.
        case send([UInt8])
        /// Waiting for more bytes from the proxy.
        case needMore
        /// The proxy connected to the target. `bound` is the proxy's outgoing address as it
        /// reported it; `leftover` are bytes after the reply (already from the target).
        case connected(bound: Socks5Target, leftover: [UInt8])
    }

    private enum Phase { case initial, awaitMethod, awaitAuth, awaitReply, done, failed }

    public let target: Socks5Target
    public let credentials: Socks5Credentials?
    private var phase = Phase.initial
    private var buffer: [UInt8] = []
    /// Largest reply we accept (domain reply: 4 + 1 + 255 + 2).
    static let maxReplyBytes = 262

    public init(target: Socks5Target, credentials: Socks5Credentials? = nil) throws(MeshError) {
        if case .domain(let d) = target.host, d.utf8.isEmpty || d.utf8.count > 255 {
            throw MeshError(.socks5BadArgument, "SOCKS5 target host name must be 1-255 bytes, got \(d.utf8.count)")
        }
        if case .ipv4(let b) = target.host, b.count != 4 { throw MeshError(.socks5BadArgument, "IPv4 address must be 4 bytes") }
        if case .ipv6(let b) = target.host, b.count != 16 { throw MeshError(.socks5BadArgument, "IPv6 address must be 16 bytes") }
        if let c = credentials {
            guard (1...255).contains(c.username.utf8.count), (1...255).contains(c.password.utf8.count) else {
                throw MeshError(.socks5BadArgument, "SOCKS5 username and password must each be 1-255 bytes (RFC 1929)")
            }
        }
        self.target = target
        self.credentials = credentials
    }

    /// The greeting: version 5 and the methods we offer (no-auth, plus user/pass when we have
    /// credentials).
    public mutating func start() -> [UInt8] {
        precondition(phase == .initial, "start() called twice")
        phase = .awaitMethod
        return credentials == nil ? [5, 1, 0x00] : [5, 2, 0x00, 0x02]
    }

    /// Feeds bytes from the proxy.
    public mutating func receive(_ bytes: some Sequence<UInt8>) throws(MeshError) -> Step {
        guard phase != .failed else { throw MeshError(.socks5Protocol, "SOCKS5 handshake already failed") }
        guard phase != .done else { return .connected(bound: target, leftover: Array(bytes)) }
        buffer.append(contentsOf: bytes)
        do {
            return try advance()
        } catch {
            phase = .failed
            throw error
        }
    }

    private mutating func advance() throws(MeshError) -> Step {
        switch phase {
        case .awaitMethod:
            guard buffer.count >= 2 else { return .needMore }
            guard buffer[0] == 5 else { throw notSocks5(buffer[0]) }
            let method = buffer[1]
            buffer.removeFirst(2)
            switch method {
            case 0x00:
                phase = .awaitReply
                return .send(request())
            case 0x02:
                guard let c = credentials else {
                    throw MeshError(.socks5Protocol, "SOCKS5 proxy chose username/password authentication, which we did not offer")
                }
                phase = .awaitAuth
                let u = Array(c.username.utf8), p = Array(c.password.utf8)
                return .send([1, UInt8(u.count)] + u + [UInt8(p.count)] + p)
            case 0xFF:
                throw MeshError(.socks5NoAcceptableMethod,
                                credentials == nil ? "SOCKS5 proxy requires authentication" : "SOCKS5 proxy accepts none of our authentication methods",
                                hint: credentials == nil ? "set socks5.username and socks5.password for this host" : "check the proxy's configuration")
            default:
                throw MeshError(.socks5Protocol, "SOCKS5 proxy chose authentication method \(method), which we did not offer")
            }
        case .awaitAuth:
            guard buffer.count >= 2 else { return .needMore }
            guard buffer[0] == 1 else { throw MeshError(.socks5Protocol, "SOCKS5 proxy sent username/password reply version \(buffer[0]), expected 1") }
            let status = buffer[1]
            buffer.removeFirst(2)
            guard status == 0 else {
                throw MeshError(.socks5AuthFailed, "SOCKS5 proxy rejected username \"\(credentials?.username ?? "")\"", hint: "check socks5.username and socks5.password")
            }
            phase = .awaitReply
            return .send(request())
        case .awaitReply:
            guard buffer.count >= 5 else { return .needMore }
            guard buffer[0] == 5 else { throw notSocks5(buffer[0]) }
            let rep = buffer[1]
            guard buffer[2] == 0 else { throw MeshError(.socks5Protocol, "SOCKS5 reply has a non-zero reserved byte") }
            let addrLen: Int
            switch buffer[3] {
            case 1: addrLen = 4
            case 4: addrLen = 16
            case 3: addrLen = 1 + Int(buffer[4])
            default: throw MeshError(.socks5Protocol, "SOCKS5 reply has unknown address type \(buffer[3])")
            }
            let total = 4 + addrLen + 2
            // A failure reply may be cut short by a proxy that closes right away; report the code.
            if rep != 0 { throw Self.replyError(rep, target: target) }
            guard buffer.count >= total else { return .needMore }
            let addr = Array(buffer[4..<(4 + addrLen)])
            let port = UInt16(buffer[4 + addrLen]) << 8 | UInt16(buffer[5 + addrLen])
            let host: Socks5Target.Host
            switch buffer[3] {
            case 1: host = .ipv4(addr)
            case 4: host = .ipv6(addr)
            default: host = .domain(String(decoding: addr.dropFirst(), as: UTF8.self))
            }
            let leftover = Array(buffer[total...])
            buffer = []
            phase = .done
            return .connected(bound: Socks5Target(host: host, port: port), leftover: leftover)
        case .initial:
            throw MeshError(.socks5Protocol, "SOCKS5 proxy sent data before our greeting")
        case .done, .failed:
            return .needMore
        }
    }

    private func notSocks5(_ v: UInt8) -> MeshError {
        MeshError(.socks5Protocol, "proxy answered with version \(v), not SOCKS5", hint: "is socks5.proxy a SOCKS5 proxy (not HTTP or SOCKS4)?")
    }

    /// The CONNECT request.
    func request() -> [UInt8] {
        var out: [UInt8] = [5, 1, 0]
        switch target.host {
        case .ipv4(let b): out += [1] + b
        case .ipv6(let b): out += [4] + b
        case .domain(let d):
            let u = Array(d.utf8)
            out += [3, UInt8(u.count)] + u
        }
        out += [UInt8(target.port >> 8), UInt8(target.port & 0xFF)]
        return out
    }

    /// The error for a non-zero REP code (RFC 1928 §6).
    public static func replyError(_ rep: UInt8, target: Socks5Target) -> MeshError {
        let t = target.description
        switch rep {
        case 1: return MeshError(.socks5GeneralFailure, "SOCKS5 proxy: general failure connecting to \(t)")
        case 2: return MeshError(.socks5NotAllowed, "SOCKS5 proxy: connection to \(t) not allowed by its rules", hint: "check the proxy's ACLs")
        case 3: return MeshError(.socks5NetworkUnreachable, "SOCKS5 proxy: network unreachable for \(t)")
        case 4: return MeshError(.socks5HostUnreachable, "SOCKS5 proxy: host \(t) unreachable", hint: "is the peer up and its address right?")
        case 5: return MeshError(.socks5ConnectionRefused, "SOCKS5 proxy: \(t) refused the connection", hint: "is meshnode running on the peer at that port?")
        case 6: return MeshError(.socks5TTLExpired, "SOCKS5 proxy: TTL expired connecting to \(t)")
        case 7: return MeshError(.socks5CommandNotSupported, "SOCKS5 proxy does not support CONNECT")
        case 8: return MeshError(.socks5AddressTypeNotSupported, "SOCKS5 proxy does not support the address type of \(t)", hint: "try an IP address instead of a name, or the reverse")
        default: return MeshError(.socks5Protocol, "SOCKS5 proxy: unknown failure code \(rep) connecting to \(t)")
        }
    }
}

/// Opens TCP connections through a SOCKS5 proxy.
public enum Socks5Connector {
    /// Connects to `proxy`, runs the handshake for `target` and hands back the TCP stream, now a
    /// byte stream to the target. The whole operation (TCP connect + handshake) is bounded by
    /// `timeout`. `completion` runs once on the loop. Loop thread only.
    public static func connect(loop: EventLoop, proxy: Endpoint, target: Endpoint, credentials: Socks5Credentials? = nil,
                               timeout: Duration = .seconds(10),
                               completion: @escaping (Result<TCPStream, MeshError>) -> Void) {
        loop.assertInLoop("Socks5Connector.connect")
        var handshake: Socks5Handshake
        do { handshake = try Socks5Handshake(target: Socks5Target(target), credentials: credentials) } catch {
            return completion(.failure(error))
        }
        let op = Op(completion: completion)
        do {
            let t = try LoopTimer(loop: loop)
            op.timer = t
            // Strong: the timer keeps the operation alive until it finishes (finish closes it).
            t.onFire = { [op] in
                op.finish(.failure(MeshError(.socks5Timeout, "SOCKS5 handshake with \(proxy) for \(target) did not finish within \(timeout)", hint: "is \(proxy) a working SOCKS5 proxy?")))
            }
            t.start(after: timeout)
        } catch {
            return completion(.failure(error))
        }
        TCPStream.connect(loop: loop, to: proxy, timeout: timeout) { [op] result in
            guard op.completion != nil else {
                if case .success(let s) = result { s.close() }
                return
            }
            switch result {
            case .failure(let e):
                op.finish(.failure(MeshError(e.code, "cannot reach SOCKS5 proxy: \(e.message)", hint: "is the proxy at \(proxy) running?", uvStatus: e.uvStatus)))
            case .success(let s):
                op.stream = s
                s.peerDescription = "\(target) via SOCKS5 \(proxy)"
                s.onClose = { [weak op] err in
                    op?.finish(.failure(err.map { MeshError($0.code, "SOCKS5 proxy closed the connection during the handshake: \($0.message)") }
                        ?? MeshError(.closed, "closed during the SOCKS5 handshake")))
                }
                s.onRead = { [weak op, weak s] bytes in
                    guard let op, let s else { return }
                    do throws(MeshError) {
                        switch try handshake.receive(bytes) {
                        case .needMore: break
                        case .send(let out): try s.write(out)
                        case .connected(_, let leftover):
                            s.stopReading()
                            if !leftover.isEmpty { s.unread(leftover) }
                            op.finish(.success(s))
                        }
                    } catch {
                        op.finish(.failure(error))
                    }
                }
                do throws(MeshError) { try s.write(handshake.start()) } catch {
                    return op.finish(.failure(error))
                }
                s.startReading()
            }
        }
    }

    private final class Op {
        var completion: ((Result<TCPStream, MeshError>) -> Void)?
        var timer: LoopTimer?
        var stream: TCPStream?
        init(completion: @escaping (Result<TCPStream, MeshError>) -> Void) { self.completion = completion }

        func finish(_ r: Result<TCPStream, MeshError>) {
            guard let c = completion else { return }
            completion = nil
            timer?.close()
            timer = nil
            if let s = stream {
                s.onRead = nil
                s.onClose = nil
                if case .failure = r { s.close() }
            }
            stream = nil
            c(r)
        }
    }
}
