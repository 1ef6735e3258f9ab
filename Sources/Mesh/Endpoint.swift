// HOST:PORT as written in configs and on command lines.

/// A host and port as a user writes it: `10.0.0.5:7000`, `gpu-3.example:7000`, `[::1]:7000`.
///
/// The host is kept as text (a name or an IP literal); resolving it is the runtime's job.
public struct Endpoint: Hashable, Sendable, CustomStringConvertible {
    public var host: String
    public var port: UInt16

    public init(host: String, port: UInt16) {
        self.host = host
        self.port = port
    }

    /// Parses `HOST:PORT` or `[IPV6]:PORT`. Port 0 is allowed (bind to any free port).
    /// Returns nil on anything else, including an empty host or an unbracketed IPv6 address.
    public init?(_ text: String) {
        guard let parsed = try? Endpoint.parse(text) else { return nil }
        self = parsed
    }

    /// Parses like `init?(_:)` but says what is wrong.
    public static func parse(_ text: String) throws(MeshError) -> Endpoint {
        func bad(_ why: String) -> MeshError {
            MeshError(.invalidAddress, "invalid address \"\(text)\": \(why)", hint: "write HOST:PORT, e.g. 10.0.0.5:7000 or [::1]:7000")
        }
        let host: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { throw bad("missing ']'") }
            host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { throw bad("expected ':' after ']'") }
            portText = rest.dropFirst()
            guard host.contains(":") else { throw bad("brackets are only for IPv6 addresses") }
        } else {
            guard let colon = text.lastIndex(of: ":") else { throw bad("missing ':PORT'") }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
            if host.contains(":") { throw bad("an IPv6 address must be in brackets") }
        }
        guard !host.isEmpty else { throw bad("empty host") }
        guard !host.contains(where: { $0 == " " || $0 == "/" || $0 == "\t" }) else { throw bad("host contains whitespace or '/'") }
        guard !portText.isEmpty, portText.allSatisfy({ $0.isASCII && $0.isNumber }), portText.count <= 5,
              let port = Int(portText), port <= 65535
        else { throw bad("port must be an integer 0-65535") }
        return Endpoint(host: String(host), port: UInt16(port))
    }

    /// `host:port`, with brackets around an IPv6 host.
    public var description: String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
}

#if canImport(Glibc)
import Glibc
#endif

extension Endpoint {
    /// True for a loopback host: an IPv4 literal in 127.0.0.0/8, `::1`, an IPv4-mapped
    /// `::ffff:127.x.y.z`, or the name `localhost` (which every resolver maps to loopback).
    public static func isLoopback(host: String) -> Bool {
        if host.lowercased() == "localhost" { return true }
        var v4 = in_addr()
        if inet_pton(AF_INET, host, &v4) == 1 {
            return UInt32(bigEndian: v4.s_addr) >> 24 == 127
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, host, &v6) == 1 {
            let b = withUnsafeBytes(of: &v6) { Array($0) }
            if b[0..<15].allSatisfy({ $0 == 0 }) && b[15] == 1 { return true }
            if b[0..<10].allSatisfy({ $0 == 0 }) && b[10] == 0xff && b[11] == 0xff && b[12] == 127 { return true }
        }
        return false
    }
}
