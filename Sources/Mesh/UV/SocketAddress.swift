// A resolved IPv4/IPv6 socket address.
import CLibUV
#if canImport(Glibc)
import Glibc
#endif

/// A numeric IPv4 or IPv6 address and port (a `sockaddr_in`/`sockaddr_in6`).
public struct SocketAddress: Hashable, Sendable, CustomStringConvertible {
    public enum Family: Sendable { case ipv4, ipv6 }

    /// The address bytes (4 or 16) in network order.
    public var ip: [UInt8]
    public var port: UInt16
    /// IPv6 scope id (link-local); 0 otherwise.
    public var scopeID: UInt32 = 0

    public var family: Family { ip.count == 4 ? .ipv4 : .ipv6 }

    /// Parses a numeric IP literal (no name resolution).
    public init?(ip text: String, port: UInt16) {
        var a4 = sockaddr_in()
        if uv_ip4_addr(text, Int32(port), &a4) == 0 {
            self.init(storage: a4)
            return
        }
        var a6 = sockaddr_in6()
        if uv_ip6_addr(text, Int32(port), &a6) == 0 {
            self.init(storage: a6)
            return
        }
        return nil
    }

    /// Parses a numeric endpoint (`127.0.0.1:7000`, `[::1]:7000`); nil if the host is not an IP literal.
    public init?(_ endpoint: Endpoint) {
        self.init(ip: endpoint.host, port: endpoint.port)
    }

    init(storage a: sockaddr_in) {
        var addr = a.sin_addr
        ip = withUnsafeBytes(of: &addr) { Array($0) }
        port = UInt16(bigEndian: a.sin_port)
    }

    init(storage a: sockaddr_in6) {
        var addr = a.sin6_addr
        ip = withUnsafeBytes(of: &addr) { Array($0) }
        port = UInt16(bigEndian: a.sin6_port)
        scopeID = a.sin6_scope_id
    }

    /// Decodes a `sockaddr*` from libuv; nil for non-IP families.
    /// The address a libuv `getsockname`/`getpeername`-style call writes (nil when it fails):
    /// `query(sockaddr, &length)` returns 0 on success.
    static func fetch(_ query: (UnsafeMutablePointer<sockaddr>, UnsafeMutablePointer<Int32>) -> Int32) -> SocketAddress? {
        var storage = sockaddr_storage()
        var len = Int32(MemoryLayout<sockaddr_storage>.size)
        return withUnsafeMutablePointer(to: &storage) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                query(sa, &len) == 0 ? SocketAddress(UnsafePointer(sa)) : nil
            }
        }
    }

    init?(_ sa: UnsafePointer<sockaddr>?) {
        guard let sa else { return nil }
        switch Int32(sa.pointee.sa_family) {
        case AF_INET:
            self.init(storage: UnsafeRawPointer(sa).loadUnaligned(as: sockaddr_in.self))
        case AF_INET6:
            self.init(storage: UnsafeRawPointer(sa).loadUnaligned(as: sockaddr_in6.self))
        default:
            return nil
        }
    }

    /// Calls `body` with a `sockaddr*` for this address.
    func withSockaddr<R>(_ body: (UnsafePointer<sockaddr>) throws -> R) rethrows -> R {
        if ip.count == 4 {
            var a = sockaddr_in()
            a.sin_family = sa_family_t(AF_INET)
            a.sin_port = port.bigEndian
            withUnsafeMutableBytes(of: &a.sin_addr) { $0.copyBytes(from: ip) }
            return try withUnsafePointer(to: &a) { try $0.withMemoryRebound(to: sockaddr.self, capacity: 1, body) }
        } else {
            var a = sockaddr_in6()
            a.sin6_family = sa_family_t(AF_INET6)
            a.sin6_port = port.bigEndian
            a.sin6_scope_id = scopeID
            withUnsafeMutableBytes(of: &a.sin6_addr) { $0.copyBytes(from: ip) }
            return try withUnsafePointer(to: &a) { try $0.withMemoryRebound(to: sockaddr.self, capacity: 1, body) }
        }
    }

    /// The IP literal without port or brackets.
    public var host: String {
        var buf = [CChar](repeating: 0, count: 64)
        withSockaddr { sa in
            if ip.count == 4 {
                _ = UnsafeRawPointer(sa).withMemoryRebound(to: sockaddr_in.self, capacity: 1) { uv_ip4_name($0, &buf, buf.count) }
            } else {
                _ = UnsafeRawPointer(sa).withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { uv_ip6_name($0, &buf, buf.count) }
            }
        }
        return String(decoding: buf.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public var endpoint: Endpoint { Endpoint(host: host, port: port) }

    public var description: String { endpoint.description }
}
