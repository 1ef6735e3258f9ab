import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A blocking TCP client on the test thread, for speaking raw bytes to a server on the loop.
final class RawTCPClient {
    let fd: Int32

    init(port: UInt16, host: String = "127.0.0.1") throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        inet_pton(AF_INET, host, &sa.sin_addr)
        sa.sin_port = port.bigEndian
        let rc = withUnsafePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else {
            let e = errno
            Glibc.close(fd)
            throw FixtureError("connect to \(host):\(port): \(String(cString: strerror(e)))")
        }
    }

    deinit { Glibc.close(fd) }

    /// Sends everything (false if the peer is gone).
    @discardableResult
    func send(_ bytes: [UInt8]) -> Bool {
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + off, $0.count - off, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return false }
            off += n
        }
        return true
    }

    @discardableResult
    func send(_ text: String) -> Bool { send(Array(text.utf8)) }

    /// Reads until the peer closes or `timeout` passes, at most `limit` bytes, pausing
    /// `pauseSeconds` between reads of at most `readBytes` (a slow reader).
    func readUntilClosed(timeout: Double, limit: Int = 256 << 20, readBytes: Int = 64 << 10,
                         pauseSeconds: Double = 0) -> (bytes: [UInt8], closed: Bool) {
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: readBytes)
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline && out.count < limit {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ms = Int32(max(1, min(200, deadline.timeIntervalSinceNow * 1000)))
            guard poll(&p, 1, ms) > 0 else { continue }
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
            if n == 0 { return (out, true) }
            if n < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                return (out, true)  // a reset is a close too
            }
            out += buf[0..<n]
            if pauseSeconds > 0 { Thread.sleep(forTimeInterval: pauseSeconds) }
        }
        return (out, false)
    }

    /// Whether the peer has closed the connection within `timeout` (reading and dropping bytes).
    func closedWithin(_ timeout: Double) -> Bool { readUntilClosed(timeout: timeout).closed }
}

/// An HTTP response as the test client saw it.
struct RawHTTPResponse {
    var status: Int
    var headers: [String: String]
    var body: [UInt8]

    /// Parses `HTTP/1.1 NNN ...` + headers + body; nil if `bytes` is no HTTP response.
    init?(_ bytes: [UInt8]) {
        guard let end = bytes.indices.dropLast(3).first(where: { bytes[$0..<($0 + 4)].elementsEqual([13, 10, 13, 10]) }) else { return nil }
        let head = String(decoding: bytes[..<end], as: UTF8.self).components(separatedBy: "\r\n")
        let parts = head[0].split(separator: " ")
        guard parts.count >= 2, parts[0] == "HTTP/1.1", let s = Int(parts[1]) else { return nil }
        status = s
        headers = [:]
        for line in head.dropFirst() {
            guard let c = line.firstIndex(of: ":") else { continue }
            headers[line[..<c].lowercased()] = line[line.index(after: c)...].trimmingCharacters(in: .whitespaces)
        }
        body = Array(bytes[(end + 4)...])
    }

    var text: String { String(decoding: body, as: UTF8.self) }
}
