// Whether an IP address is one of this host's own (so that a node can bind it).
#if canImport(Glibc)
import Glibc
#endif

public enum LocalAddresses {
    /// True for a loopback address (all of 127/8, ::1) and for an address of one of this host's
    /// interfaces (getifaddrs); false for anything else, host names included.
    public static func isLocal(_ host: String) -> Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        if inet_pton(AF_INET, host, &v4) == 1 {
            if UInt32(bigEndian: v4.s_addr) >> 24 == 127 { return true }
        } else if inet_pton(AF_INET6, host, &v6) == 1 {
            if host == "::1" { return true }
        } else {
            return false
        }
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0, let first = list else { return false }
        defer { freeifaddrs(list) }
        var p: UnsafeMutablePointer<ifaddrs>? = first
        while let a = p {
            defer { p = a.pointee.ifa_next }
            guard let sa = a.pointee.ifa_addr else { continue }
            var buf = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
            switch Int32(sa.pointee.sa_family) {
            case AF_INET:
                var sin = UnsafeRawPointer(sa).load(as: sockaddr_in.self).sin_addr
                guard inet_ntop(AF_INET, &sin, &buf, socklen_t(buf.count)) != nil else { continue }
            case AF_INET6:
                var sin6 = UnsafeRawPointer(sa).load(as: sockaddr_in6.self).sin6_addr
                guard inet_ntop(AF_INET6, &sin6, &buf, socklen_t(buf.count)) != nil else { continue }
            default: continue
            }
            let text = String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if text == host { return true }
        }
        return false
    }
}
