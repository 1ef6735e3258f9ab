import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A TCP forwarder on loopback that resets every connection it carries after a random
/// 4–8 s, like the middleboxes between rented GPU hosts. Threads, blocking sockets; all
/// traffic stays on 127.0.0.1. `stop()` (or deinit) closes everything.
final class ResetProxy: @unchecked Sendable {
    let port: UInt16
    let targetPort: UInt16
    private let listenFD: Int32
    private let lock = NSLock()
    private var open: [Int32] = []
    private var stopped = false
    private var rng: UInt64
    private(set) var connections = 0
    private(set) var resets = 0
    let minLifetime: Double
    let maxLifetime: Double

    init(targetPort: UInt16, seed: UInt64, minLifetime: Double = 4, maxLifetime: Double = 8) throws {
        self.targetPort = targetPort
        self.minLifetime = minLifetime
        self.maxLifetime = maxLifetime
        rng = seed | 1
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var sa = Self.loopback(0)
        let rc = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard rc == 0, listen(fd, 64) == 0 else { throw FixtureError("reset proxy: bind/listen failed: \(errno)") }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        listenFD = fd
        port = UInt16(bigEndian: sa.sin_port)
        Thread.detachNewThread { [self] in acceptLoop() }
    }

    deinit { stop() }

    static func loopback(_ port: UInt16) -> sockaddr_in {
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_port = port.bigEndian
        sa.sin_addr.s_addr = inet_addr("127.0.0.1")
        return sa
    }

    private func nextLifetime() -> Double {
        lock.lock()
        defer { lock.unlock() }
        rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17
        return minLifetime + Double(rng % 10_000) / 10_000 * (maxLifetime - minLifetime)
    }

    private func acceptLoop() {
        while true {
            let c = accept(listenFD, nil, nil)
            if c < 0 {
                lock.lock(); let s = stopped; lock.unlock()
                if s { return }
                continue
            }
            let u = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var sa = Self.loopback(targetPort)
            let rc = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(u, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            if rc != 0 { close(c); close(u); continue }
            lock.lock()
            if stopped { lock.unlock(); close(c); close(u); return }
            open += [c, u]
            connections += 1
            lock.unlock()
            let life = nextLifetime()
            Thread.detachNewThread { [self] in pump(c, u) }
            Thread.detachNewThread { [self] in pump(u, c) }
            Thread.detachNewThread { [self] in
                Thread.sleep(forTimeInterval: life)
                reset(c, u)
            }
        }
    }

    private func pump(_ from: Int32, _ to: Int32) {
        var buf = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = buf.withUnsafeMutableBytes { read(from, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            var off = 0
            while off < n {
                let w = buf.withUnsafeBytes { write(to, $0.baseAddress! + off, n - off) }
                if w <= 0 { return }
                off += w
            }
        }
        shutdown(to, Int32(SHUT_WR))
    }

    /// Resets both sides (SO_LINGER 0 then close sends RST).
    private func reset(_ a: Int32, _ b: Int32) {
        lock.lock()
        guard open.contains(a) else { lock.unlock(); return }
        open.removeAll { $0 == a || $0 == b }
        resets += 1
        lock.unlock()
        var l = linger(l_onoff: 1, l_linger: 0)
        for fd in [a, b] {
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, socklen_t(MemoryLayout<linger>.size))
            shutdown(fd, Int32(SHUT_RDWR))
            close(fd)
        }
    }

    var resetCount: Int { lock.lock(); defer { lock.unlock() }; return resets }

    func stop() {
        lock.lock()
        if stopped { lock.unlock(); return }
        stopped = true
        let fds = open
        open = []
        lock.unlock()
        shutdown(listenFD, Int32(SHUT_RDWR))
        close(listenFD)
        for fd in fds { shutdown(fd, Int32(SHUT_RDWR)); close(fd) }
    }
}
