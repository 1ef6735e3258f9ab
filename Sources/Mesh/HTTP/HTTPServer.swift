// A small HTTP/1.1 server on the node's libuv loop, for `/metrics` and `/health`: one request
// per connection, every limit enforced, any input answered or closed and counted.

/// Serves one request per connection (`Connection: close`) with a synchronous handler.
///
/// Loop-confined like every handle. Limits: a request head of at most `maxHeadBytes` (else
/// 431), complete within `requestTimeout` of the accept (else 408), at most `maxConnections`
/// open at once (more are closed at once); the response is written in `writePieceBytes`
/// pieces, each after the previous one drained, and a client that does not take it within
/// `responseTimeout` is disconnected. Garbage is answered 400 and closed. Every refusal is
/// reported through `onRejected` by a fixed reason (`http_bad_request`, `http_head_too_large`,
/// `http_request_timeout`, `http_too_many_connections`, `http_response_timeout`,
/// `http_unsupported_version`).
public final class HTTPServer: @unchecked Sendable {
    // @unchecked: loop-confined.
    public struct Limits: Sendable {
        public var maxHeadBytes = 8 << 10
        public var requestTimeout: Duration = .seconds(5)
        public var responseTimeout: Duration = .seconds(10)
        public var maxConnections = 16
        public var writePieceBytes = 64 << 10
        public init() {}
    }

    /// What the server did, for tests and `status`.
    public struct Counters: Sendable, Equatable {
        public var accepted: UInt64 = 0
        /// Responses written (fully or not), by status code.
        public var responses: [Int: UInt64] = [:]
        /// Refusals by reason (the `onRejected` reasons).
        public var rejected: [String: UInt64] = [:]
        /// The most bytes ever queued on one connection (at most `writePieceBytes`).
        public var peakWriteQueueBytes = 0
    }

    public typealias Handler = (HTTPRequestHead) -> HTTPResponse

    public let loop: EventLoop
    public let limits: Limits
    public fileprivate(set) var counters = Counters()
    /// Called on every refusal with its reason, the client's address and a detail.
    public var onRejected: ((_ reason: RejectCounter, _ peer: String, _ detail: String) -> Void)?
    public var localAddress: SocketAddress { listener.localAddress }
    public var connectionCount: Int { connections.count }

    private let listener: TCPListener
    private var handler: Handler?
    private var connections: [ObjectIdentifier: Connection] = [:]

    /// Binds `address` and listens (port 0 picks a free port). Loop thread only.
    public init(loop: EventLoop, bind address: SocketAddress, limits: Limits = Limits(), handler: @escaping Handler) throws(MeshError) {
        loop.assertInLoop("HTTPServer.init")
        self.loop = loop
        self.limits = limits
        self.handler = handler
        listener = try TCPListener(loop: loop, bind: address, backlog: 64)
        listener.onAccept = { [weak self] stream in
            guard let self else { return stream.close() }
            self.counters.accepted += 1
            guard self.connections.count < self.limits.maxConnections else {
                self.reject(.httpTooManyConnections, stream, "\(self.limits.maxConnections) connections already open")
                return stream.close()
            }
            let c = Connection(server: self, stream: stream)
            self.connections[ObjectIdentifier(c)] = c
            c.start()
        }
    }

    /// Stops listening and closes every connection.
    public func close() {
        listener.close()
        for c in Array(connections.values) { c.close() }
        handler = nil
    }

    fileprivate func reject(_ reason: RejectCounter, _ stream: TCPStream, _ detail: String) {
        counters.rejected[reason.rawValue, default: 0] += 1
        onRejected?(reason, stream.peerDescription, detail)
    }

    fileprivate func responded(_ status: Int) { counters.responses[status, default: 0] += 1 }
    fileprivate func remove(_ c: Connection) { connections[ObjectIdentifier(c)] = nil }

    fileprivate func handle(_ head: HTTPRequestHead) -> HTTPResponse {
        guard let handler else { return HTTPResponse(status: 503, text: "shutting down") }
        return handler(head)
    }

    fileprivate final class Connection {
        /// Weak: a connection's close callback may run after the server is gone.
        weak var server: HTTPServer?
        let limits: Limits
        let loop: EventLoop
        let stream: TCPStream
        var buffer: [UInt8] = []
        var timer: LoopTimer?
        var pending: [UInt8] = []
        var sent = 0
        var responding = false

        init(server: HTTPServer, stream: TCPStream) {
            self.server = server
            limits = server.limits
            loop = server.loop
            self.stream = stream
        }

        func start() {
            stream.maxWriteQueueBytes = limits.writePieceBytes
            stream.onRead = { [unowned self] bytes in self.received(bytes) }
            stream.onDrain = { [unowned self] in self.writeNext() }
            stream.onClose = { [self] _ in
                self.timer?.close()
                self.timer = nil
                self.server?.remove(self)
            }
            do {
                let t = try LoopTimer(loop: loop) { [unowned self] in self.timedOut() }
                t.start(after: limits.requestTimeout)
                timer = t
            } catch {
                return stream.close()
            }
            stream.startReading()
        }

        func close() { stream.close() }

        func received(_ bytes: UnsafeRawBufferPointer) {
            guard !responding, let server else { return }
            let limit = limits.maxHeadBytes
            buffer.append(contentsOf: bytes.prefix(limit + 1 - min(limit + 1, buffer.count)))
            // Parse when a line may have ended, when a byte no head may hold arrived, while the
            // request line is still short (so garbage is refused at once), or at the limit; not
            // on every byte of a slow client.
            let refusable = bytes.contains { ($0 < 0x20 && $0 != 0x09 && $0 != 0x0D) || $0 == 0x7F }  // LF included
            guard refusable || buffer.count <= 32 || buffer.count > limit else { return }
            switch HTTPRequestParser.parse(buffer, maxHeadBytes: limit) {
            case .needMore:
                return
            case .complete(let head, _):
                var r = server.handle(head)
                if head.method == "HEAD" { r.omitBody = true }
                respond(r)
            case .refused(.tooLarge):
                server.reject(.httpHeadTooLarge, stream, "request head over \(limit) bytes")
                respond(HTTPResponse(status: 431, text: "request head larger than \(limit) bytes"))
            case .refused(.unsupportedVersion(let v)):
                server.reject(.httpUnsupportedVersion, stream, v)
                respond(HTTPResponse(status: 505, text: "\(v) is not supported; use HTTP/1.1"))
            case .refused(.malformed(let why)):
                server.reject(.httpBadRequest, stream, why)
                respond(HTTPResponse(status: 400, text: "bad request: \(why)"))
            }
        }

        func timedOut() {
            if responding {
                server?.reject(.httpResponseTimeout, stream, "the response was not taken within \(limits.responseTimeout)")
                return stream.close()
            }
            server?.reject(.httpRequestTimeout, stream, "no complete request within \(limits.requestTimeout) (\(buffer.count) bytes)")
            respond(HTTPResponse(status: 408, text: "no complete request within \(limits.requestTimeout)"))
        }

        /// Sends `r` and closes once it is written; reads nothing more.
        func respond(_ r: HTTPResponse) {
            guard !responding, stream.isOpen else { return }
            responding = true
            buffer = []
            stream.stopReading()
            server?.responded(r.status)
            pending = r.serialized()
            timer?.start(after: limits.responseTimeout)
            writeNext()
        }

        /// Writes the next piece; called again from `onDrain`, so at most one piece is queued.
        func writeNext() {
            guard responding, stream.isOpen, stream.writeQueueBytes == 0 else { return }
            guard sent < pending.count else { return stream.close() }
            let n = min(limits.writePieceBytes, pending.count - sent)
            let range = sent..<(sent + n)
            sent += n
            let ok = pending.withUnsafeBytes { all -> Bool in
                do { try stream.write([UnsafeRawBufferPointer(rebasing: all[range])]) } catch { return false }
                return true
            }
            if !ok { return stream.close() }
            if let server { server.counters.peakWriteQueueBytes = max(server.counters.peakWriteQueueBytes, stream.writeQueueBytes) }
        }
    }
}
