// The node side of the control socket: runs on the event loop.
import Foundation

/// Serves the control protocol on a Unix socket (mode 0600) on the loop.
///
/// The daemon supplies `handler`, called on the loop thread once per request; it must call
/// `respond` exactly once (now or later, e.g. after a transfer finished). Requests on one
/// connection are answered in order, one at a time.
public final class ControlServer: @unchecked Sendable {
    public typealias Handler = (_ request: ControlRequest, _ respond: @escaping (ControlResponse) -> Void) -> Void

    public let path: String
    public let loop: EventLoop
    private let listener: UnixListener
    private var handler: Handler?
    private var connections: [ObjectIdentifier: Connection] = [:]
    /// Requests that could not be decoded (counted).
    public private(set) var badRequests = 0
    /// Connections refused because `maxConnections` were open.
    public private(set) var refusedConnections = 0

    /// Binds `path` (see `UnixListener` for stale-socket handling). Loop thread only.
    public init(loop: EventLoop, path: String, handler: @escaping Handler) throws(MeshError) {
        self.loop = loop
        self.path = path
        self.handler = handler
        listener = try UnixListener(loop: loop, path: path)
        listener.onAccept = { [weak self] stream in
            guard let self else { return stream.close() }
            guard self.connections.count < ControlProtocol.maxConnections else {
                self.refusedConnections += 1
                return stream.close()
            }
            let c = Connection(server: self, stream: stream)
            self.connections[ObjectIdentifier(c)] = c
            c.start()
        }
    }

    /// Open control connections.
    public var connectionCount: Int { connections.count }

    /// Stops listening, closes every connection and removes the socket file.
    public func close() {
        listener.close()
        for c in connections.values { c.stream.close() }
        handler = nil
    }

    fileprivate func dispatch(_ request: ControlRequest, _ respond: @escaping (ControlResponse) -> Void) {
        guard let handler else {
            return respond(.failure(MeshError(.closed, "the node is shutting down")))
        }
        handler(request, respond)
    }

    fileprivate func badRequest() { badRequests += 1 }
    fileprivate func remove(_ c: Connection) { connections[ObjectIdentifier(c)] = nil }

    fileprivate final class Connection {
        weak var server: ControlServer?
        let loop: EventLoop
        let stream: PipeStream
        var buffer: [UInt8] = []
        var pending: [ControlRequest?] = []  // nil: an undecodable line, answered with an error
        var busy = false
        var idleTimer: LoopTimer?

        init(server: ControlServer, stream: PipeStream) {
            self.server = server
            self.loop = server.loop
            self.stream = stream
        }

        func start() {
            stream.onRead = { [unowned self] bytes in self.received(bytes) }
            stream.onClose = { [self] _ in
                self.idleTimer?.close()
                self.idleTimer = nil
                self.server?.remove(self)
            }
            if let t = try? LoopTimer(loop: loop) {
                idleTimer = t
                t.onFire = { [unowned self] in if !self.busy { self.stream.close() } }
                t.start(after: ControlProtocol.idleTimeout)
            }
            stream.startReading()
        }

        func received(_ bytes: UnsafeRawBufferPointer) {
            idleTimer?.start(after: ControlProtocol.idleTimeout)
            let scanFrom = buffer.count
            buffer.append(contentsOf: bytes)
            var searchStart = scanFrom
            while let nl = buffer[searchStart...].firstIndex(of: UInt8(ascii: "\n")) {
                if nl > ControlProtocol.maxRequestLineBytes { return tooLong() }
                let line = buffer[..<nl]
                if !line.allSatisfy({ $0 == 32 || $0 == 13 || $0 == 9 }) {
                    let req = try? JSONDecoder().decode(ControlRequest.self, from: Data(line))
                    if req == nil { server?.badRequest() }
                    pending.append(req)
                }
                buffer.removeSubrange(...nl)
                searchStart = 0
            }
            if buffer.count > ControlProtocol.maxRequestLineBytes { return tooLong() }
            if pending.count >= ControlProtocol.maxPipelinedRequests { stream.stopReading() }
            next()
        }

        /// Answers with an error, then closes the connection once that is written.
        func tooLong() {
            server?.badRequest()
            buffer = []
            pending = []
            stream.stopReading()
            let e = MeshError(.controlLineTooLong, "control request longer than \(ControlProtocol.maxRequestLineBytes) bytes")
            try? stream.write(Array((ControlResponse.failure(e).jsonLine + "\n").utf8))
            stream.onDrain = { [unowned self] in self.stream.close() }
            if stream.writeQueueBytes == 0 { stream.close() }
        }

        func next() {
            guard !busy, !pending.isEmpty, stream.isOpen else { return }
            let req = pending.removeFirst()
            guard let req else {
                write(.failure(MeshError(.controlBadRequest, "control request is not a JSON object with a \"verb\" string",
                                         hint: "send one line like {\"verb\":\"status\",\"args\":{}}")))
                return next()
            }
            guard let server else { return stream.close() }
            busy = true
            var answered = false
            server.dispatch(req) { [weak self] response in
                guard let self else { return }
                precondition(!answered, "control handler answered \(req.verb) twice")
                answered = true
                self.loop.assertInLoop("control respond")
                self.busy = false
                self.write(response)
                if self.pending.count < ControlProtocol.maxPipelinedRequests { self.stream.startReading() }
                self.next()
            }
        }

        func write(_ r: ControlResponse) {
            guard stream.isOpen else { return }
            var line = r.jsonLine
            line.append("\n")
            stream.maxWriteQueueBytes = ControlProtocol.maxResponseLineBytes + 1
            try? stream.write(Array(line.utf8))
        }
    }
}
