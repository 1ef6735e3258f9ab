// The node's listening sockets: TCP and UDP on the same port number.

/// A TCP listener and a UDP socket bound to the same address and port, as the node's `listen`
/// setting requires (UDP for gossip datagrams, TCP for everything larger and for tunnels).
public struct NodeSockets: @unchecked Sendable {
    public let tcp: TCPListener
    public let udp: UDPSocket

    /// The bound address (with the real port when `listen` asked for port 0).
    public var localAddress: SocketAddress { tcp.localAddress }

    /// Binds TCP first, then UDP on the port TCP got. With port 0, a port whose UDP side is
    /// taken is given back and another one tried (up to `attempts` times). `listen.host` must be
    /// an IP literal (`0.0.0.0`, `::`, `10.0.0.5`). Loop thread only.
    public static func bind(loop: EventLoop, listen: Endpoint, maxDatagramBytes: Int = 8192, backlog: Int32 = 128,
                            attempts: Int = 8) throws(MeshError) -> NodeSockets {
        guard let address = SocketAddress(listen) else {
            throw MeshError(.invalidAddress, "listen address \(listen) is not an IP address",
                            hint: "use an IP such as 0.0.0.0:\(listen.port) or [::]:\(listen.port)")
        }
        var lastError: MeshError?
        for _ in 0..<max(1, attempts) {
            let tcp = try TCPListener(loop: loop, bind: address, backlog: backlog)
            var udpAddress = address
            udpAddress.port = tcp.localAddress.port
            do {
                let udp = try UDPSocket(loop: loop, bind: udpAddress, maxDatagramBytes: maxDatagramBytes)
                return NodeSockets(tcp: tcp, udp: udp)
            } catch {
                tcp.close()
                lastError = error
                if address.port != 0 { break }
            }
        }
        throw lastError ?? MeshError(.invalidAddress, "cannot bind \(listen)")
    }

    /// Closes both sockets.
    public func close() {
        tcp.close()
        udp.close()
    }
}
