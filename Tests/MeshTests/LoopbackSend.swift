import Glibc
@testable import Gossip

/// `a` as an IPv4 socket address (tests send to loopback only).
func socketAddress(_ a: PeerAddress) -> sockaddr_in {
    var sa = sockaddr_in()
    sa.sin_family = sa_family_t(AF_INET)
    sa.sin_port = in_port_t(a.port.bigEndian)
    inet_pton(AF_INET, a.host, &sa.sin_addr)
    return sa
}

/// Sends `bytes` as one UDP datagram on `fd` to `a`.
func sendDatagram(fd: Int32, _ bytes: [UInt8], to a: PeerAddress) {
    var sa = socketAddress(a)
    _ = bytes.withUnsafeBytes { buf in
        withUnsafePointer(to: &sa) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                sendto(fd, buf.baseAddress, buf.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
    }
}
