// The CLI side of the control socket: a small blocking client (no event loop needed).
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A blocking control-protocol client for the CLI.
///
/// Each `call` sends one request and waits for its response; the connection is reused across
/// calls. Not thread-safe: use one client per thread.
public final class ControlClient {
    public let socketPath: String
    /// How long to wait for the node to accept the connection.
    public var connectTimeout: Duration = .seconds(2)
    /// How long to wait for a response once the request is sent.
    public var responseTimeout: Duration = .seconds(60)
    private var fd: Int32 = -1
    private var buffer: [UInt8] = []

    public init(socketPath: String) {
        self.socketPath = socketPath
    }

    /// A client for the node using `dataDirectory`.
    public convenience init(dataDirectory: String) {
        self.init(socketPath: ControlProtocol.socketPath(dataDirectory: dataDirectory))
    }

    deinit { disconnect() }

    /// Sends `verb` with `args` and returns the result, or throws the node's error (its code,
    /// message and hint), or `control.no_node` when no node is running.
    public func call(_ verb: String, args: [String: JSONValue] = [:]) throws(MeshError) -> JSONValue {
        switch try send(ControlRequest(verb: verb, args: args)) {
        case .success(let v): return v
        case .failure(let e): throw e
        }
    }

    /// Sends a request and returns the response (success or the node's error).
    public func send(_ request: ControlRequest) throws(MeshError) -> ControlResponse {
        // A reused connection the node has closed (idle timeout, restart) reads as EOF: reconnect.
        if fd >= 0, poll(fd, events: Int16(POLLIN), timeout: .zero) { disconnect() }
        if fd < 0 { try connect() }
        guard var line = try? JSONEncoder().encode(request) else {
            throw MeshError(.controlBadRequest, "cannot encode the request")
        }
        line.append(UInt8(ascii: "\n"))
        do {
            try writeAll(Array(line))
            let response = try ControlResponse(jsonLine: try readLine())
            if case .failure(let e) = response, e.code == .controlLineTooLong { disconnect() }  // the node hangs up
            return response
        } catch {
            disconnect()
            throw error
        }
    }

    /// Closes the connection (the next call reconnects).
    public func disconnect() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
        buffer = []
    }

    private func noNode(_ why: String) -> MeshError {
        MeshError(.controlNoNode, "no node is running (no control socket at \(socketPath))", hint: why)
    }

    private func connect() throws(MeshError) {
        guard socketPath.utf8.count <= UnixSocketPath.maxPathBytes else {
            throw MeshError(.controlIO, "control socket path \(socketPath) is too long", hint: "use a shorter data directory path")
        }
        var st = stat()
        if lstat(socketPath, &st) != 0 {
            throw noNode("start one with `meshnode run --data DIR`")
        }
        guard (st.st_mode & S_IFMT) == S_IFSOCK else {
            throw MeshError(.controlIO, "\(socketPath) exists but is not a socket", hint: "is --data the node's data directory?")
        }
        let s = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard s >= 0 else { throw MeshError(.controlIO, "socket(): \(String(cString: strerror(errno)))") }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { $0.copyBytes(from: Array(socketPath.utf8)) }
        // A Unix-socket connect either completes at once or fails; EAGAIN means the node's
        // backlog is full, so retry until the connect timeout.
        let deadline = ContinuousClock.now + connectTimeout
        while true {
            let rc = withUnsafePointer(to: &addr) { p in
                p.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(s, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            if rc == 0 { break }
            let e = errno
            if e == EINTR { continue }
            if e == EAGAIN || e == EINPROGRESS {
                guard ContinuousClock.now < deadline else {
                    Glibc.close(s)
                    throw MeshError(.controlTimeout, "the node did not accept a control connection within \(connectTimeout)", hint: "it may be overloaded; try again")
                }
                usleep(10_000)
                continue
            }
            Glibc.close(s)
            switch e {
            case ECONNREFUSED:
                throw noNode("the socket file is stale (the node exited uncleanly); start a node with `meshnode run`")
            case ENOENT:
                throw noNode("start one with `meshnode run --data DIR`")
            case EACCES, EPERM:
                throw MeshError(.controlIO, "permission denied on \(socketPath)", hint: "run as the user that runs the node")
            default:
                throw MeshError(.controlIO, "connect to \(socketPath): \(String(cString: strerror(e)))")
            }
        }
        fd = s
    }

    private func poll(_ s: Int32, events: Int16, timeout: Duration) -> Bool {
        var p = pollfd(fd: s, events: events, revents: 0)
        let ms = Int32(min(timeout.milliseconds, UInt64(Int32.max)))
        while true {
            let r = Glibc.poll(&p, 1, ms)
            if r < 0 && errno == EINTR { continue }
            return r > 0
        }
    }

    private func writeAll(_ bytes: [UInt8]) throws(MeshError) {
        var off = 0
        while off < bytes.count {
            let n = bytes[off...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n > 0 {
                off += n
            } else if n < 0 && (errno == EAGAIN || errno == EINTR) {
                guard poll(fd, events: Int16(POLLOUT), timeout: responseTimeout) else {
                    throw MeshError(.controlTimeout, "the node stopped reading control requests", hint: "it may be stuck; check its log")
                }
            } else {
                throw MeshError(.controlIO, "sending to the node failed: \(String(cString: strerror(errno)))", hint: "did the node just stop?")
            }
        }
    }

    private func readLine() throws(MeshError) -> [UInt8] {
        let deadline = ContinuousClock.now + responseTimeout
        var chunk = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            if let nl = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = Array(buffer[..<nl])
                buffer.removeSubrange(...nl)
                return line
            }
            guard buffer.count <= ControlProtocol.maxResponseLineBytes else {
                throw MeshError(.controlBadResponse, "control response longer than \(ControlProtocol.maxResponseLineBytes) bytes")
            }
            let left = deadline - ContinuousClock.now
            guard left > .zero, poll(fd, events: Int16(POLLIN), timeout: left) else {
                throw MeshError(.controlTimeout, "the node did not answer within \(responseTimeout)", hint: "it may be busy or stuck; check its log")
            }
            let n = chunk.withUnsafeMutableBytes { Glibc.recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 {
                buffer.append(contentsOf: chunk[..<n])
            } else if n == 0 {
                throw MeshError(.controlIO, "the node closed the control connection before answering", hint: "did it just stop? check its log")
            } else if errno != EAGAIN && errno != EINTR {
                throw MeshError(.controlIO, "reading from the node failed: \(String(cString: strerror(errno)))")
            }
        }
    }
}
