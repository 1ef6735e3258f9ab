import Foundation
@testable import Mesh

/// An external program started by a test (microsocks, sshd...), stopped by PID.
final class ChildFixture: @unchecked Sendable {
    let pid: pid_t
    let argv: [String]
    let logPath: String

    /// Starts `argv` with stdout and stderr appended to `logPath`, stdin from /dev/null.
    init(_ argv: [String], logPath: String) throws {
        self.argv = argv
        self.logPath = logPath
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, logPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var cargs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer { cargs.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, argv[0], &actions, nil, &cargs, environ)
        guard rc == 0 else { throw FixtureError("cannot start \(argv[0]): \(String(cString: strerror(rc)))") }
        self.pid = pid
    }

    var isRunning: Bool {
        var status: Int32 = 0
        return waitpid(pid, &status, WNOHANG) == 0
    }

    private var stopped = false

    /// Records that the caller reaped the child itself (so `stop` must not signal a reused PID).
    func markReaped() { stopped = true }

    /// SIGTERM, then SIGKILL after `grace`; reaps the child. Idempotent.
    func stop(grace: Double = 2) {
        guard !stopped else { return }
        stopped = true
        kill(pid, SIGTERM)
        let deadline = Date().addingTimeInterval(grace)
        var status: Int32 = 0
        while Date() < deadline {
            if waitpid(pid, &status, WNOHANG) != 0 { return }
            usleep(10_000)
        }
        kill(pid, SIGKILL)
        waitpid(pid, &status, 0)
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    deinit { stop() }
}

struct FixtureError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// A raw TCP socket bound to 127.0.0.1 on a port the kernel picked; the caller closes `fd`.
func boundLoopbackSocket() -> (fd: Int32, port: UInt16) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var sa = sockaddr_in()
    sa.sin_family = sa_family_t(AF_INET)
    sa.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
    _ = withUnsafeMutablePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
    return (fd, UInt16(bigEndian: sa.sin_port))
}

/// A currently free TCP port on 127.0.0.1 (bound to port 0, then released).
func freeLoopbackPort() -> UInt16 {
    let (fd, port) = boundLoopbackSocket()
    close(fd)
    return port
}

/// Polls until something accepts TCP connections on 127.0.0.1:`port`.
func waitForTCPPort(_ port: UInt16, timeout: Double = 10) -> Bool {
    eventually(timeout) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        sa.sin_port = port.bigEndian
        return withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } } == 0
    }
}

/// A raw byte echo server on the loop (not framed): what a SOCKS5/SSH tunnel connects to.
final class ByteEchoServer: @unchecked Sendable {
    let listener: TCPListener
    var streams: [ObjectIdentifier: TCPStream] = [:]
    init(loop: EventLoop, bind: SocketAddress = loopback()) throws {
        listener = try TCPListener(loop: loop, bind: bind)
        listener.onAccept = { [weak self] s in
            guard let self else { return s.close() }
            let id = ObjectIdentifier(s)
            self.streams[id] = s
            s.onRead = { [unowned s] b in try? s.write([b]) }
            s.onClose = { [weak self] _ in self?.streams[id] = nil }
            s.startReading()
        }
    }
    var port: UInt16 { listener.localAddress.port }
    func close() {
        listener.close()
        streams.values.forEach { $0.close() }
    }
}

/// Sends `payload` over `stream`, collects the same number of bytes back, closes the stream.
func echoRoundTrip(loop: EventLoop, stream: any ByteStream, payload: [UInt8], done: Waiter<[UInt8]>) {
    var got: [UInt8] = []
    stream.onRead = { b in
        got.append(contentsOf: b)
        if got.count >= payload.count {
            done.fulfill(got)
            stream.close()
        }
    }
    stream.onClose = { e in if got.count < payload.count { done.fulfill(got) } }
    stream.startReading()
    try? stream.write(payload)
}
