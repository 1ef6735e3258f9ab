// uv_stream_t wrappers: TCP and pipes (Unix sockets, child stdio), listeners, connect, resolve.
import CLibUV
#if canImport(Glibc)
import Glibc
#endif

/// Default cap on bytes queued for writing on one stream (backpressure beyond it).
public let defaultMaxWriteQueueBytes = 32 << 20

/// A libuv stream (TCP or pipe) implementing `ByteStream`.
public class UVStream: LoopHandle, ByteStream, @unchecked Sendable {
    public var onRead: ((UnsafeRawBufferPointer) -> Void)?
    public var onDrain: (() -> Void)?
    public var onClose: ((MeshError?) -> Void)?
    public private(set) var writeQueueBytes = 0
    public var maxWriteQueueBytes = defaultMaxWriteQueueBytes
    public var peerDescription: String = "?"
    /// Total bytes read from / written to the kernel.
    public private(set) var bytesRead: UInt64 = 0
    public private(set) var bytesWritten: UInt64 = 0

    /// Why the stream closed; nil when closed locally with `close()`.
    public private(set) var closeReason: MeshError?
    private var reading = false
    private var pushback: [UInt8] = []
    static let readBufferBytes = 256 << 10
    private var readBuffer: UnsafeMutableRawPointer?

    var stream: UnsafeMutablePointer<uv_stream_t> { raw.assumingMemoryBound(to: uv_stream_t.self) }

    public var isOpen: Bool { state == .open }

    /// Bytes to deliver through `onRead` before anything else read from the kernel (used when a
    /// handshake, such as SOCKS5, read past its end).
    func unread(_ bytes: [UInt8]) { pushback = bytes + pushback }

    public func startReading() {
        loop.assertInLoop("startReading")
        guard state == .open, !reading else { return }
        reading = true
        if !pushback.isEmpty {
            let bytes = pushback
            pushback = []
            bytes.withUnsafeBytes { onRead?($0) }
            guard state == .open, reading else { return }
        }
        let rc = uv_read_start(stream, { h, _, buf in
            guard let me: UVStream = LoopHandle.owner(UnsafeMutableRawPointer(h)), let buf else { return }
            if me.readBuffer == nil { me.readBuffer = .allocate(byteCount: UVStream.readBufferBytes, alignment: 16) }
            buf.pointee = uv_buf_init(me.readBuffer!.assumingMemoryBound(to: CChar.self), UInt32(UVStream.readBufferBytes))
        }, { s, n, buf in
            guard let me: UVStream = LoopHandle.owner(UnsafeMutableRawPointer(s)) else { return }
            if n > 0, let base = buf?.pointee.base {
                me.bytesRead += UInt64(n)
                me.onRead?(UnsafeRawBufferPointer(start: base, count: n))
            } else if n < 0 {
                if Int32(n) == UV_EOF.rawValue {
                    me.close(error: MeshError(.eof, "\(me.peerDescription) closed the connection"))
                } else {
                    me.close(error: .uv(Int32(n), "read from \(me.peerDescription)"))
                }
            }
        })
        if rc != 0 { close(error: .uv(rc, "uv_read_start \(peerDescription)")) }
    }

    public func stopReading() {
        loop.assertInLoop("stopReading")
        guard state == .open, reading else { return }
        reading = false
        uv_read_stop(stream)
    }

    /// Throws unless a write of `total` bytes may be queued now.
    private func checkWritable(_ total: Int) throws(MeshError) {
        guard state == .open else { throw closeReason ?? MeshError(.closed, "write to closed stream \(peerDescription)") }
        guard total <= Int(UInt32.max) else {
            throw MeshError(.writeBufferFull, "a single write of \(total) bytes is larger than 4 GiB", hint: "split it")
        }
        if writeQueueBytes > 0 && writeQueueBytes + total > maxWriteQueueBytes {
            throw MeshError(.writeBufferFull, "write queue to \(peerDescription) is full (\(writeQueueBytes) bytes queued, limit \(maxWriteQueueBytes))", hint: "wait for onDrain")
        }
    }

    /// A write request's callback: `size` bytes left the queue.
    fileprivate func writeFinished(size: Int, status: Int32) {
        writeQueueBytes -= size
        if status < 0 {
            if status != UV_ECANCELED.rawValue { close(error: .uv(status, "write to \(peerDescription)")) }
            return
        }
        bytesWritten += UInt64(size)
        if writeQueueBytes == 0, state == .open { onDrain?() }
    }

    public func write(_ parts: [UnsafeRawBufferPointer]) throws(MeshError) {
        loop.assertInLoop("write")
        var total = 0
        for p in parts { total += p.count }
        try checkWritable(total)
        if total == 0 { return }
        // One allocation holds the uv_write_t and the payload; freed in the write callback.
        let reqSize = (MemoryLayout<uv_write_t>.size + 15) & ~15
        let mem = UnsafeMutableRawPointer.allocate(byteCount: reqSize + total, alignment: 16)
        var off = reqSize
        for p in parts where p.count > 0 {
            (mem + off).copyMemory(from: p.baseAddress!, byteCount: p.count)
            off += p.count
        }
        let req = mem.assumingMemoryBound(to: uv_write_t.self)
        req.pointee.data = UnsafeMutableRawPointer(bitPattern: total)  // remember the size
        var buf = uv_buf_init((mem + reqSize).assumingMemoryBound(to: CChar.self), UInt32(total))
        writeQueueBytes += total
        let rc = uv_write(req, stream, &buf, 1) { req, status in
            guard let req else { return }
            let size = Int(bitPattern: req.pointee.data)
            let me: UVStream? = LoopHandle.owner(UnsafeMutableRawPointer(req.pointee.handle))
            UnsafeMutableRawPointer(req).deallocate()
            me?.writeFinished(size: size, status: status)
        }
        if rc != 0 {
            writeQueueBytes -= total
            mem.deallocate()
            let err = MeshError.uv(rc, "write to \(peerDescription)")
            close(error: err)
            throw err
        }
    }

    /// Zero-copy: libuv writes straight from the frame's memory; the request keeps the frame
    /// alive (retained through `req->data`) until the write callback releases it.
    public func write(frame: OutgoingFrame) throws(MeshError) {
        loop.assertInLoop("write")
        let total = frame.count
        try checkWritable(total)
        if total == 0 { return }
        let req = UnsafeMutablePointer<uv_write_t>.allocate(capacity: 1)
        req.pointee.data = Unmanaged.passRetained(frame).toOpaque()
        var buf = uv_buf_init(UnsafeMutableRawPointer(mutating: frame.bytes.baseAddress!).assumingMemoryBound(to: CChar.self),
                              UInt32(total))
        writeQueueBytes += total
        let rc = uv_write(req, stream, &buf, 1) { req, status in
            guard let req else { return }
            let frame = Unmanaged<OutgoingFrame>.fromOpaque(req.pointee.data!).takeRetainedValue()
            let me: UVStream? = LoopHandle.owner(UnsafeMutableRawPointer(req.pointee.handle))
            req.deallocate()
            me?.writeFinished(size: frame.count, status: status)
        }
        if rc != 0 {
            writeQueueBytes -= total
            Unmanaged<OutgoingFrame>.fromOpaque(req.pointee.data!).release()
            req.deallocate()
            let err = MeshError.uv(rc, "write to \(peerDescription)")
            close(error: err)
            throw err
        }
    }

    public func close(error: MeshError) {
        guard state == .open else { return }
        closeReason = error
        close()
    }

    func setCloseReason(_ error: MeshError) { closeReason = error }

    override func didClose() {
        let cb = onClose
        onRead = nil
        onDrain = nil
        onClose = nil
        if let readBuffer { readBuffer.deallocate() }
        readBuffer = nil
        cb?(closeReason)
    }
}

/// A TCP connection.
public final class TCPStream: UVStream, @unchecked Sendable {
    var tcp: UnsafeMutablePointer<uv_tcp_t> { raw.assumingMemoryBound(to: uv_tcp_t.self) }

    init(loop: EventLoop) throws(MeshError) {
        super.init(loop: loop, size: MemoryLayout<uv_tcp_t>.size)
        let rc = uv_tcp_init(loop.uv, tcp)
        guard rc == 0 else { throw MeshError.uv(rc, "uv_tcp_init") }
        adopt()
    }

    /// The remote address (nil once closed or if unknown).
    public var remoteAddress: SocketAddress? {
        SocketAddress.fetch { uv_tcp_getpeername(tcp, $0, $1) }
    }

    /// The local address.
    public var localAddress: SocketAddress? {
        SocketAddress.fetch { uv_tcp_getsockname(tcp, $0, $1) }
    }

    /// Closes the connection abortively: the peer sees a TCP reset (RST) instead of an orderly
    /// FIN, like a middlebox killing the flow. `onClose` follows with `error` (or nil).
    public func reset(error: MeshError? = nil) {
        loop.assertInLoop("reset")
        guard state == .open else { return }
        if let error { setCloseReason(error) }
        state = .closing
        willClose()
        if uv_tcp_close_reset(tcp, LoopHandle.closeCallback) != 0 {
            uv_close(handle, LoopHandle.closeCallback)
        }
    }

    /// Disables Nagle (on by default for streams this module creates).
    public func setNoDelay(_ on: Bool) { uv_tcp_nodelay(tcp, on ? 1 : 0) }

    /// Enables kernel TCP keepalive probes after `idle` (a backstop; frame-level idle detection is
    /// what detects dead peers within seconds).
    public func setKeepAlive(idle: Duration?) {
        if let idle { uv_tcp_keepalive(tcp, 1, UInt32(max(1, idle.milliseconds / 1000))) } else { uv_tcp_keepalive(tcp, 0, 0) }
    }

    /// Connects to `address`, giving up after `timeout`. `completion` runs once on the loop.
    /// With `from`, the socket is bound to that local IP (port 0) first, so that the
    /// connection leaves from the node's own listen address on a multi-homed host.
    public static func connect(loop: EventLoop, to address: SocketAddress, from local: SocketAddress? = nil,
                               timeout: Duration = .seconds(10),
                               completion: @escaping (Result<TCPStream, MeshError>) -> Void) {
        loop.assertInLoop("TCPStream.connect")
        let conn: TCPStream
        do { conn = try TCPStream(loop: loop) } catch { return completion(.failure(error)) }
        if var local, local.family == address.family {
            local.port = 0
            let rc = local.withSockaddr { uv_tcp_bind(conn.tcp, $0, 0) }
            if rc != 0 {
                conn.close()
                return completion(.failure(.uv(rc, "bind outgoing connection to \(local)")))
            }
        }
        conn.peerDescription = address.description
        conn.setNoDelay(true)
        let op = ConnectOperation(stream: conn, completion: completion)
        do {
            let timer = try LoopTimer(loop: loop)
            op.timer = timer
            timer.onFire = { [weak op] in
                op?.finish(.failure(MeshError(.connectTimeout, "connect to \(address) timed out after \(timeout)", hint: "is the peer up and reachable?")))
            }
            timer.start(after: timeout)
        } catch {
            conn.close()
            return completion(.failure(error))
        }
        let req = UnsafeMutablePointer<uv_connect_t>.allocate(capacity: 1)
        req.pointee.data = Unmanaged.passRetained(op).toOpaque()
        let rc = address.withSockaddr { sa in
            uv_tcp_connect(req, conn.tcp, sa) { req, status in
                guard let req else { return }
                let op = Unmanaged<ConnectOperation>.fromOpaque(req.pointee.data).takeRetainedValue()
                req.deallocate()
                if status == 0 {
                    op.finish(.success(()))
                } else {
                    op.finish(.failure(.uv(status, "connect to \(op.stream.peerDescription)", hint: "is the peer up and reachable?")))
                }
            }
        }
        if rc != 0 {
            Unmanaged<ConnectOperation>.fromOpaque(req.pointee.data).release()
            req.deallocate()
            op.finish(.failure(.uv(rc, "connect to \(address)")))
        }
    }

    /// Connects to `endpoint`, resolving a host name first (trying each address in turn).
    public static func connect(loop: EventLoop, to endpoint: Endpoint, from local: SocketAddress? = nil,
                               timeout: Duration = .seconds(10),
                               completion: @escaping (Result<TCPStream, MeshError>) -> Void) {
        if let literal = SocketAddress(endpoint) {
            return connect(loop: loop, to: literal, from: local, timeout: timeout, completion: completion)
        }
        DNSResolver.resolve(loop: loop, host: endpoint.host, port: endpoint.port) { result in
            switch result {
            case .failure(let e): completion(.failure(e))
            case .success(let addrs):
                func attempt(_ i: Int, lastError: MeshError?) {
                    guard i < addrs.count else {
                        return completion(.failure(lastError ?? MeshError(.resolveFailed, "\(endpoint.host) has no address")))
                    }
                    connect(loop: loop, to: addrs[i], from: local, timeout: timeout) { r in
                        switch r {
                        case .success(let s):
                            s.peerDescription = endpoint.description
                            completion(.success(s))
                        case .failure(let e): attempt(i + 1, lastError: e)
                        }
                    }
                }
                attempt(0, lastError: nil)
            }
        }
    }
}

private final class ConnectOperation {
    let stream: TCPStream
    var timer: LoopTimer?
    var completion: ((Result<TCPStream, MeshError>) -> Void)?
    init(stream: TCPStream, completion: @escaping (Result<TCPStream, MeshError>) -> Void) {
        self.stream = stream
        self.completion = completion
    }
    func finish(_ r: Result<Void, MeshError>) {
        timer?.close()
        timer = nil
        guard let completion else { return }
        self.completion = nil
        switch r {
        case .success: completion(.success(stream))
        case .failure(let e):
            stream.close()  // cancels a pending connect (its callback then gets ECANCELED)
            completion(.failure(e))
        }
    }
}

/// A pipe stream: a Unix-domain socket connection or one end of a child process's stdio.
public final class PipeStream: UVStream, @unchecked Sendable {
    var pipe: UnsafeMutablePointer<uv_pipe_t> { raw.assumingMemoryBound(to: uv_pipe_t.self) }

    init(loop: EventLoop) throws(MeshError) {
        super.init(loop: loop, size: MemoryLayout<uv_pipe_t>.size)
        let rc = uv_pipe_init(loop.uv, pipe, 0)
        guard rc == 0 else { throw MeshError.uv(rc, "uv_pipe_init") }
        adopt()
    }

    /// Connects to the Unix-domain socket at `path`. `completion` runs once on the loop.
    public static func connect(loop: EventLoop, path: String, completion: @escaping (Result<PipeStream, MeshError>) -> Void) {
        loop.assertInLoop("PipeStream.connect")
        let p: PipeStream
        do { p = try PipeStream(loop: loop) } catch { return completion(.failure(error)) }
        p.peerDescription = path
        final class Op { let p: PipeStream; let c: (Result<PipeStream, MeshError>) -> Void; init(_ p: PipeStream, _ c: @escaping (Result<PipeStream, MeshError>) -> Void) { self.p = p; self.c = c } }
        let req = UnsafeMutablePointer<uv_connect_t>.allocate(capacity: 1)
        req.pointee.data = Unmanaged.passRetained(Op(p, completion)).toOpaque()
        uv_pipe_connect(req, p.pipe, path) { req, status in
            guard let req else { return }
            let op = Unmanaged<Op>.fromOpaque(req.pointee.data).takeRetainedValue()
            req.deallocate()
            if status == 0 { op.c(.success(op.p)) } else {
                op.p.close()
                op.c(.failure(.uv(status, "connect to \(op.p.peerDescription)")))
            }
        }
    }
}

protocol AcceptingHandle: AnyObject { func accept(status: Int32) }

/// A listening stream socket (TCP or Unix-domain) that hands accepted connections to `onAccept`.
public class StreamListener<Client: UVStream>: LoopHandle, AcceptingHandle, @unchecked Sendable {
    /// Called on the loop with each accepted connection (not yet reading).
    public var onAccept: ((Client) -> Void)?
    /// Accept failures (e.g. EMFILE), counted; the listener keeps running.
    public private(set) var acceptErrors = 0

    var stream: UnsafeMutablePointer<uv_stream_t> { raw.assumingMemoryBound(to: uv_stream_t.self) }

    func makeClient() throws(MeshError) -> Client { fatalError("abstract") }

    func listen(backlog: Int32) throws(MeshError) {
        let rc = uv_listen(stream, backlog) { server, status in
            guard let me = LoopHandle.owner(UnsafeMutableRawPointer(server), as: LoopHandle.self) as? AcceptingHandle else { return }
            me.accept(status: status)
        }
        guard rc == 0 else { throw MeshError.uv(rc, "listen") }
    }

    func accept(status: Int32) {
        guard status == 0 else {
            acceptErrors += 1
            loop.logger.warning("accept failed: \(MeshError.uvName(status))")
            return
        }
        let client: Client
        do { client = try makeClient() } catch {
            acceptErrors += 1
            return
        }
        let rc = uv_accept(stream, client.stream)
        guard rc == 0 else {
            acceptErrors += 1
            client.close()
            return
        }
        configure(client)
        if let onAccept { onAccept(client) } else { client.close() }
    }

    func configure(_ client: Client) {}

    override func didClose() { onAccept = nil }
}

/// A TCP listener.
public final class TCPListener: StreamListener<TCPStream>, @unchecked Sendable {
    /// The bound address (with the real port when bound to port 0).
    public private(set) var localAddress: SocketAddress

    /// Binds and listens on `address` (port 0 picks a free port; see `localAddress`). Loop thread only.
    public init(loop: EventLoop, bind address: SocketAddress, backlog: Int32 = 128) throws(MeshError) {
        localAddress = address
        super.init(loop: loop, size: MemoryLayout<uv_tcp_t>.size)
        loop.assertInLoop("TCPListener.init")
        let tcp = raw.assumingMemoryBound(to: uv_tcp_t.self)
        var rc = uv_tcp_init(loop.uv, tcp)
        guard rc == 0 else { throw MeshError.uv(rc, "uv_tcp_init") }
        adopt()
        rc = address.withSockaddr { uv_tcp_bind(tcp, $0, address.family == .ipv6 ? UV_TCP_IPV6ONLY.rawValue : 0) }
        if rc == 0 {
            do { try listen(backlog: backlog) } catch {
                close()
                throw MeshError.uv(error.uvStatus ?? -1, "listen on TCP \(address)", hint: "is another process using this port?")
            }
        } else {
            close()
            throw MeshError.uv(rc, "bind TCP \(address)", hint: "is another process using this port?")
        }
        if let a = SocketAddress.fetch({ uv_tcp_getsockname(tcp, $0, $1) }) { localAddress = a }
    }

    override func makeClient() throws(MeshError) -> TCPStream { try TCPStream(loop: loop) }
    override func configure(_ client: TCPStream) {
        client.setNoDelay(true)
        client.peerDescription = client.remoteAddress?.description ?? "?"
    }
}

/// A Unix-domain stream socket server, created with mode 0600 (owner only).
public final class UnixListener: StreamListener<PipeStream>, @unchecked Sendable {
    public let path: String

    /// Binds `path` (after removing a stale socket file left by a dead process), makes it 0600
    /// before accepting anything, and listens. Fails if a live server already answers at `path`.
    public init(loop: EventLoop, path: String, backlog: Int32 = 16) throws(MeshError) {
        self.path = path
        super.init(loop: loop, size: MemoryLayout<uv_pipe_t>.size)
        loop.assertInLoop("UnixListener.init")
        let pipe = raw.assumingMemoryBound(to: uv_pipe_t.self)
        var rc = uv_pipe_init(loop.uv, pipe, 0)
        guard rc == 0 else { throw MeshError.uv(rc, "uv_pipe_init") }
        adopt()
        do { try UnixSocketPath.removeIfStale(path) } catch {
            close()
            throw error
        }
        rc = uv_pipe_bind(pipe, path)
        guard rc == 0 else {
            close()
            throw MeshError.uv(rc, "bind Unix socket \(path)")
        }
        ownsPath = true
        // A socket that is bound but not yet listening refuses connections, so tightening the
        // mode here leaves no window in which another user could connect.
        guard chmod(path, 0o600) == 0 else {
            let e = errno
            close()
            throw MeshError(.init("unix.chmod_failed"), "chmod 0600 \(path) failed: \(String(cString: strerror(e)))")
        }
        do { try listen(backlog: backlog) } catch {
            close()
            throw error
        }
    }

    override func makeClient() throws(MeshError) -> PipeStream { try PipeStream(loop: loop) }
    override func configure(_ client: PipeStream) { client.peerDescription = "control client" }

    /// Set once we created the socket file; only then is it ours to remove.
    private var ownsPath = false

    override func didClose() {
        super.didClose()
        if ownsPath { unlink(path) }
    }
}

/// Helpers for Unix socket files.
public enum UnixSocketPath {
    /// The largest path a `sockaddr_un` holds on this platform, minus the terminator.
    public static let maxPathBytes = MemoryLayout.size(ofValue: sockaddr_un().sun_path) - 1

    /// Removes `path` if it is a socket nobody listens on; throws if a server answers there, or
    /// if it is not a socket.
    public static func removeIfStale(_ path: String) throws(MeshError) {
        guard path.utf8.count <= maxPathBytes else {
            throw MeshError(.init("unix.path_too_long"), "socket path \(path) is longer than \(maxPathBytes) bytes", hint: "use a shorter data directory path")
        }
        var st = stat()
        guard lstat(path, &st) == 0 else { return }
        guard (st.st_mode & S_IFMT) == S_IFSOCK else {
            throw MeshError(.init("unix.path_in_use"), "\(path) exists and is not a socket", hint: "remove it or choose another data directory")
        }
        switch probe(path) {
        case 0:
            throw MeshError(.init("unix.in_use"), "another process is already listening on \(path)", hint: "is a node already running with this data directory?")
        default:
            unlink(path)
        }
    }

    /// Tries a blocking connect: 0 if something accepts, else the errno.
    static func probe(_ path: String) -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return errno }
        defer { Glibc.close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { buf in
            let bytes = Array(path.utf8.prefix(buf.count - 1))
            buf.copyBytes(from: bytes)
        }
        let rc = withUnsafePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        return rc == 0 ? 0 : errno
    }
}

/// Asynchronous DNS resolution with `uv_getaddrinfo` (runs on libuv's thread pool).
public enum DNSResolver {
    /// Resolves `host` to socket addresses with `port`, TCP, IPv4 and IPv6. Loop thread only.
    public static func resolve(loop: EventLoop, host: String, port: UInt16,
                               completion: @escaping (Result<[SocketAddress], MeshError>) -> Void) {
        loop.assertInLoop("DNSResolver.resolve")
        final class Op { let c: (Result<[SocketAddress], MeshError>) -> Void; let host: String; init(_ c: @escaping (Result<[SocketAddress], MeshError>) -> Void, _ h: String) { self.c = c; host = h } }
        let req = UnsafeMutablePointer<uv_getaddrinfo_t>.allocate(capacity: 1)
        req.pointee.data = Unmanaged.passRetained(Op(completion, host)).toOpaque()
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        let rc = uv_getaddrinfo(loop.uv, req, { req, status, res in
            guard let req else { return }
            let op = Unmanaged<Op>.fromOpaque(req.pointee.data).takeRetainedValue()
            req.deallocate()
            defer { if let res { uv_freeaddrinfo(res) } }
            guard status == 0 else {
                return op.c(.failure(.uv(status, "resolve \(op.host)", hint: "check the host name")))
            }
            var out: [SocketAddress] = []
            var p = res
            while let ai = p {
                if let a = SocketAddress(UnsafePointer(ai.pointee.ai_addr)), !out.contains(a) { out.append(a) }
                p = ai.pointee.ai_next
            }
            op.c(out.isEmpty ? .failure(MeshError(.resolveFailed, "\(op.host) has no IP address")) : .success(out))
        }, host, String(port), &hints)
        if rc != 0 {
            let op = Unmanaged<Op>.fromOpaque(req.pointee.data).takeRetainedValue()
            req.deallocate()
            op.c(.failure(.uv(rc, "resolve \(host)")))
        }
    }
}
