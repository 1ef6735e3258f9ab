// The request head of HTTP/1.x (RFC 9112 §2-§5), parsed totally: any byte string is a
// complete head, "need more", or refused with a reason. Pure; no I/O.

/// A parsed request line and header fields.
public struct HTTPRequestHead: Sendable, Equatable {
    public var method: String
    /// The request target as sent (origin-form `/path?query`, or `*`).
    public var target: String
    /// `target` without its query.
    public var path: String
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    public var minorVersion: Int
    /// Field names lowercased, in the order received.
    public var headers: [(name: String, value: String)]

    public func header(_ name: String) -> String? {
        let n = name.lowercased()
        return headers.first { $0.name == n }?.value
    }

    public static func == (a: Self, b: Self) -> Bool {
        a.method == b.method && a.target == b.target && a.minorVersion == b.minorVersion
            && a.headers.map(\.name) == b.headers.map(\.name) && a.headers.map(\.value) == b.headers.map(\.value)
    }
}

/// Why a request head was refused; each maps to a response status and a counted reason.
public enum HTTPHeadProblem: Error, Sendable, Equatable {
    /// Not HTTP/1.x at all, or a malformed request line or field (answered 400).
    case malformed(String)
    /// Longer than the limit before its end (answered 431).
    case tooLarge
    /// A well-formed request for an HTTP version other than 1.x (answered 505).
    case unsupportedVersion(String)
}

/// The parser's verdict on the bytes received so far.
public enum HTTPHeadParse: Sendable, Equatable {
    case needMore
    /// The head, and how many bytes it took (its terminating empty line included).
    case complete(HTTPRequestHead, consumed: Int)
    case refused(HTTPHeadProblem)
}

public enum HTTPRequestParser {
    /// At most this many header fields.
    public static let maxHeaderFields = 100
    public static let maxMethodBytes = 16

    /// Parses `bytes` (everything received on the connection so far) as a request head of at
    /// most `maxHeadBytes` bytes. Garbage is refused as soon as it can be told apart from the
    /// start of a request, without waiting for more bytes.
    public static func parse(_ bytes: [UInt8], maxHeadBytes: Int) -> HTTPHeadParse {
        // A line is ended by CRLF, or by a bare LF (RFC 9112 §2.2 allows accepting it).
        var lines: [ArraySlice<UInt8>] = []
        var lineStart = 0
        var end: Int?
        var i = 0
        while i < bytes.count {
            if i >= maxHeadBytes { return .refused(.tooLarge) }
            let b = bytes[i]
            if b == 0x0A {
                var line = bytes[lineStart..<i]
                if line.last == 0x0D { line = line.dropLast() }
                if line.isEmpty && !lines.isEmpty {
                    end = i + 1
                    break
                }
                if line.isEmpty {
                    // RFC 9112 §2.2: empty lines before the request line are ignored (at most a few).
                    if lineStart > 4 { return .refused(.malformed("empty lines before the request line")) }
                } else {
                    lines.append(line)
                    if lines.count > maxHeaderFields + 1 { return .refused(.tooLarge) }
                }
                lineStart = i + 1
            } else if b == 0x0D {
                // A CR anywhere but right before LF is refused (RFC 9112 §2.2).
                if i + 1 < bytes.count && bytes[i + 1] != 0x0A { return .refused(.malformed("a CR not followed by LF")) }
            } else if b < 0x20 && b != 0x09 || b == 0x7F {
                return .refused(.malformed("control byte 0x\(String(b, radix: 16)) in the request head"))
            }
            i += 1
        }
        // Refuse a request line that cannot become one, before it is complete.
        if lines.isEmpty {
            if let problem = requestLinePrefixProblem(bytes[lineStart...]) { return .refused(.malformed(problem)) }
        }
        guard let end else { return bytes.count > maxHeadBytes ? .refused(.tooLarge) : .needMore }
        guard let first = lines.first else { return .refused(.malformed("no request line")) }
        let head: HTTPRequestHead
        switch requestLine(first) {
        case .failure(let p): return .refused(p)
        case .success(let (method, target, minor)):
            var headers: [(name: String, value: String)] = []
            for line in lines.dropFirst() {
                switch field(line) {
                case .failure(let p): return .refused(p)
                case .success(let f): headers.append(f)
                }
            }
            let path = target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? target
            head = HTTPRequestHead(method: method, target: target, path: path, minorVersion: minor, headers: headers)
        }
        // RFC 9112 §3.2: a 1.1 request without exactly one Host field is answered 400.
        if head.minorVersion == 1 && head.headers.filter({ $0.name == "host" }).count != 1 {
            return .refused(.malformed("an HTTP/1.1 request needs exactly one Host field"))
        }
        return .complete(head, consumed: end)
    }

    /// tchar (RFC 9110 §5.6.2).
    static func isToken(_ b: UInt8) -> Bool {
        switch b {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            return "!#$%&'*+-.^_`|~".utf8.contains(b)
        }
    }

    /// Why the first bytes of a request line cannot start one (nil: they still may).
    static func requestLinePrefixProblem(_ s: ArraySlice<UInt8>) -> String? {
        var methodBytes = 0
        for b in s {
            if b == 0x20 { return methodBytes == 0 ? "the request line starts with a space" : nil }
            guard isToken(b) else { return "byte 0x\(String(b, radix: 16)) in the method" }
            methodBytes += 1
            if methodBytes > maxMethodBytes { return "a method longer than \(maxMethodBytes) bytes" }
        }
        return nil
    }

    static func requestLine(_ line: ArraySlice<UInt8>) -> Result<(String, String, Int), HTTPHeadProblem> {
        let parts = line.split(separator: 0x20, omittingEmptySubsequences: false)
        guard parts.count == 3 else { return .failure(.malformed("the request line is not METHOD TARGET VERSION")) }
        let (m, t, v) = (parts[0], parts[1], parts[2])
        guard !m.isEmpty, m.count <= maxMethodBytes, m.allSatisfy(isToken) else { return .failure(.malformed("bad method")) }
        // origin-form or asterisk-form; visible ASCII only (RFC 3986 characters are a subset).
        guard t.first == UInt8(ascii: "/") || (t.count == 1 && t.first == UInt8(ascii: "*")),
              t.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            return .failure(.malformed("bad request target"))
        }
        let version = Array(v)
        let prefix = Array("HTTP/".utf8)
        guard version.count == 8, Array(version[0..<5]) == prefix, version[6] == UInt8(ascii: "."),
              (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(version[5]),
              (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(version[7]) else {
            return .failure(.malformed("bad HTTP version"))
        }
        let text = String(decoding: version, as: UTF8.self)
        guard version[5] == UInt8(ascii: "1"), version[7] <= UInt8(ascii: "1") else { return .failure(.unsupportedVersion(text)) }
        return .success((String(decoding: m, as: UTF8.self), String(decoding: t, as: UTF8.self), Int(version[7] - UInt8(ascii: "0"))))
    }

    static func field(_ line: ArraySlice<UInt8>) -> Result<(name: String, value: String), HTTPHeadProblem> {
        if line.first == 0x20 || line.first == 0x09 { return .failure(.malformed("obsolete line folding")) }
        guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else { return .failure(.malformed("a header field without a colon")) }
        let name = line[line.startIndex..<colon]
        // No whitespace between the name and the colon (RFC 9112 §5.1).
        guard !name.isEmpty, name.allSatisfy(isToken) else { return .failure(.malformed("bad header field name")) }
        var value = line[(colon + 1)...]
        while let f = value.first, f == 0x20 || f == 0x09 { value = value.dropFirst() }
        while let l = value.last, l == 0x20 || l == 0x09 { value = value.dropLast() }
        return .success((String(decoding: name, as: UTF8.self).lowercased(), String(decoding: value, as: UTF8.self)))
    }
}
