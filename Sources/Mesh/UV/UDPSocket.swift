// UDP socket for gossip datagrams.
import CLibUV

/// A bound UDP socket on the loop.
///
/// Datagrams longer than `maxDatagramBytes` are dropped on receive (the kernel truncates them into
/// our buffer; libuv flags that) and refused on send; both are counted in `stats`.
public final class UDPSocket: LoopHandle, @unchecked Sendable {
    /// The most a UDP payload over IPv4 can hold.
    public static let absoluteMaxDatagramBytes = 65_507

    /// Counters (loop thread only).
    public struct Stats: Sendable, Equatable {
        public var datagramsReceived = 0
        public var bytesReceived = 0
        public var datagramsSent = 0
        public var bytesSent = 0
        /// Received datagrams dropped because they were longer than `maxDatagramBytes`.
        public var droppedTruncated = 0
        /// Receive errors reported by the kernel.
        public var receiveErrors = 0
        /// Sends refused: too large, socket buffer full (EAGAIN) or other errors.
        public var sendsRefused = 0
    }

    public let maxDatagramBytes: Int
    /// The bound address, with the real port when bound to port 0.
    public private(set) var localAddress: SocketAddress
    public private(set) var stats = Stats()
    /// Called on the loop with each datagram (bytes valid only during the call) and its sender.
    public var onDatagram: ((UnsafeRawBufferPointer, SocketAddress) -> Void)?

    private var buffer: UnsafeMutableRawPointer
    var udp: UnsafeMutablePointer<uv_udp_t> { raw.assumingMemoryBound(to: uv_udp_t.self) }

    /// Binds to `address` (port 0 picks a free port). Loop thread only.
    public init(loop: EventLoop, bind address: SocketAddress, maxDatagramBytes: Int = 8192) throws(MeshError) {
        precondition(maxDatagramBytes > 0 && maxDatagramBytes <= Self.absoluteMaxDatagramBytes)
        self.maxDatagramBytes = maxDatagramBytes
        localAddress = address
        // One spare byte so that a datagram of exactly max+1 bytes is detected even if the
        // kernel does not report truncation.
        buffer = .allocate(byteCount: maxDatagramBytes + 1, alignment: 16)
        super.init(loop: loop, size: MemoryLayout<uv_udp_t>.size)
        loop.assertInLoop("UDPSocket.init")
        var rc = uv_udp_init(loop.uv, udp)
        guard rc == 0 else { throw MeshError.uv(rc, "uv_udp_init") }
        adopt()
        rc = address.withSockaddr { uv_udp_bind(udp, $0, address.family == .ipv6 ? UV_UDP_IPV6ONLY.rawValue : 0) }
        guard rc == 0 else {
            close()
            throw MeshError.uv(rc, "bind UDP \(address)", hint: "is another process using this port?")
        }
        if let a = SocketAddress.fetch({ uv_udp_getsockname(udp, $0, $1) }) { localAddress = a }
    }

    deinit { buffer.deallocate() }

    /// Starts delivering datagrams to `handler`.
    public func startReceiving(_ handler: @escaping (UnsafeRawBufferPointer, SocketAddress) -> Void) throws(MeshError) {
        loop.assertInLoop("UDPSocket.startReceiving")
        onDatagram = handler
        let rc = uv_udp_recv_start(udp, { h, _, buf in
            guard let me: UDPSocket = LoopHandle.owner(UnsafeMutableRawPointer(h)), let buf else { return }
            buf.pointee = uv_buf_init(me.buffer.assumingMemoryBound(to: CChar.self), UInt32(me.maxDatagramBytes + 1))
        }, { h, n, buf, addr, flags in
            guard let me: UDPSocket = LoopHandle.owner(UnsafeMutableRawPointer(h)) else { return }
            if n < 0 {
                me.stats.receiveErrors += 1
                return
            }
            // n == 0 with no address: nothing more to read (libuv's way of returning the buffer).
            guard let addr, let sender = SocketAddress(addr) else { return }
            if flags & UInt32(UV_UDP_PARTIAL.rawValue) != 0 || n > me.maxDatagramBytes {
                me.stats.droppedTruncated += 1
                return
            }
            me.stats.datagramsReceived += 1
            me.stats.bytesReceived += n
            me.onDatagram?(UnsafeRawBufferPointer(start: me.buffer, count: n), sender)
        })
        guard rc == 0 else { throw MeshError.uv(rc, "uv_udp_recv_start") }
    }

    /// Sends one datagram now (non-blocking `uv_udp_try_send`). Throws if it is larger than
    /// `maxDatagramBytes` or the kernel refuses it (e.g. EAGAIN when the socket buffer is full:
    /// gossip is loss-tolerant, so the caller just counts it).
    public func send(_ bytes: UnsafeRawBufferPointer, to address: SocketAddress) throws(MeshError) {
        loop.assertInLoop("UDPSocket.send")
        guard state == .open else { throw MeshError(.closed, "UDP socket is closed") }
        guard bytes.count <= maxDatagramBytes else {
            stats.sendsRefused += 1
            throw MeshError(.datagramTooLarge, "datagram of \(bytes.count) bytes exceeds the \(maxDatagramBytes)-byte limit", hint: "send it over TCP")
        }
        var buf = uv_buf_init(UnsafeMutablePointer(mutating: bytes.baseAddress?.assumingMemoryBound(to: CChar.self)), UInt32(bytes.count))
        let rc = address.withSockaddr { uv_udp_try_send(udp, &buf, 1, $0) }
        guard rc >= 0 else {
            stats.sendsRefused += 1
            throw MeshError.uv(rc, "send UDP to \(address)")
        }
        stats.datagramsSent += 1
        stats.bytesSent += bytes.count
    }

    /// Sends one datagram; see `send(_:to:)`.
    public func send(_ bytes: [UInt8], to address: SocketAddress) throws(MeshError) {
        let err: MeshError? = bytes.withUnsafeBytes { p in
            do throws(MeshError) { try send(p, to: address) } catch { return error }
            return nil
        }
        if let err { throw err }
    }

    override func didClose() { onDatagram = nil }
}
