import Foundation
import TestSupport
import Testing
@testable import Mesh

@Suite(.ownThread(timeLimit: .minutes(2))) struct ControlTests {
    /// A server with a few verbs: echo, later (answers after 50 ms), never (does not answer).
    func startServer(_ loop: EventLoop, _ path: String) throws -> ControlServer {
        try loop.execute {
            try ControlServer(loop: loop, path: path) { req, respond in
                switch req.verb {
                case "echo": respond(.success(.object(req.args)))
                case "later":
                    let t = try! LoopTimer(loop: loop)
                    t.onFire = { t.close(); respond(.success(.string("done \(req.args["n"]?.intValue ?? -1)"))) }
                    t.start(after: .milliseconds(50))
                case "never": break
                default: respond(.failure(MeshError(.controlUnknownVerb, "unknown verb \(req.verb)", hint: "try status")))
                }
            }
        }
    }

    @Test func requestsGetResultsAndErrorsKeepTheirCodeMessageAndHint() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let path = ControlProtocol.socketPath(dataDirectory: dir.path)
        try withLoop { loop in
            let server = try startServer(loop, path)
            var st = stat()
            #expect(stat(path, &st) == 0 && st.st_mode & 0o777 == 0o600)
            let client = ControlClient(socketPath: path)
            let r = try client.call("echo", args: ["x": .int(1), "s": .string("ä\n\"q\""), "l": .array([.bool(true), .null, .double(1.5)])])
            #expect(r == .object(["x": .int(1), "s": .string("ä\n\"q\""), "l": .array([.bool(true), .null, .double(1.5)])]))
            do throws(MeshError) {
                _ = try client.call("bogus")
                Issue.record("unknown verb succeeded")
            } catch {
                #expect(error.code == .controlUnknownVerb)
                #expect(error.message == "unknown verb bogus")
                #expect(error.hint == "try status")
            }
            // Later answers arrive in order on the same connection.
            for n in 0..<3 {
                #expect(try client.call("later", args: ["n": .int(Int64(n))]) == .string("done \(n)"))
            }
            client.disconnect()
            try loop.execute { server.close() }
        }
        #expect(access(path, F_OK) != 0)
    }

    @Test func withNoNodeTheClientSaysSoAlsoForAStaleSocketFile() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let path = ControlProtocol.socketPath(dataDirectory: dir.path)
        let expected = "no node is running (no control socket at \(path))"
        do {
            _ = try ControlClient(socketPath: path).call("status")
            Issue.record("connected to nothing")
        } catch {
            #expect(error.code == .controlNoNode)
            #expect(error.message == expected)
        }
        // A stale socket: bound by a process that is gone.
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        close(fd)
        do {
            _ = try ControlClient(socketPath: path).call("status")
            Issue.record("connected to a stale socket")
        } catch {
            #expect(error.code == .controlNoNode)
            #expect(error.message == expected)
            #expect(error.hint?.contains("stale") == true)
        }
        // And a node can start over the stale file.
        try withLoop { loop in
            let server = try startServer(loop, path)
            #expect(try ControlClient(socketPath: path).call("echo") == .object([:]))
            try loop.execute { server.close() }
        }
    }

    @Test func malformedLinesGetAnErrorAndTheConnectionKeepsWorking() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let path = dir.file("c.sock")
        try withLoop { loop in
            let server = try startServer(loop, path)
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(fd) }
            var addr = sockaddr_un()
            addr.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &addr.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
            #expect(withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } } == 0)
            let msg = "not json\n{\"verb\": 5}\n\n{\"verb\":\"echo\",\"args\":{\"a\":1}}\n"
            _ = msg.withCString { send(fd, $0, strlen($0), 0) }
            var got = ""
            var buf = [UInt8](repeating: 0, count: 4096)
            let deadline = Date().addingTimeInterval(10)
            while got.filter({ $0 == "\n" }).count < 3 && Date() < deadline {
                let n = recv(fd, &buf, buf.count, 0)
                if n <= 0 { break }
                got += String(decoding: buf[..<n], as: UTF8.self)
            }
            let lines = got.split(separator: "\n").map(String.init)
            #expect(lines.count == 3)
            #expect(lines.prefix(2).allSatisfy { $0.contains("\"code\":\"control.bad_request\"") && $0.contains("\"ok\":false") })
            #expect(lines.last == "{\"ok\":true,\"result\":{\"a\":1}}")
            #expect(try loop.execute { server.badRequests } == 2)
            try loop.execute { server.close() }
        }
    }

    @Test func anOverlongRequestIsRefusedAndTheConnectionClosed() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let path = dir.file("c.sock")
        try withLoop { loop in
            let server = try startServer(loop, path)
            let huge = "{\"verb\":\"echo\",\"args\":{\"x\":\"" + String(repeating: "a", count: ControlProtocol.maxRequestLineBytes + 10) + "\"}}"
            let client = ControlClient(socketPath: path)
            do throws(MeshError) {
                _ = try client.call("echo", args: ["x": .string(huge)])
                Issue.record("overlong request accepted")
            } catch {
                // Either the error line arrives before the close, or the write fails on the closed socket.
                #expect([.controlIO, .controlLineTooLong].contains(error.code))
            }
            #expect(try client.call("echo") == .object([:]))  // reconnects
            try loop.execute { server.close() }
        }
    }

    @Test func aNodeThatNeverAnswersTimesOutTheClient() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let path = dir.file("c.sock")
        try withLoop { loop in
            let server = try startServer(loop, path)
            let client = ControlClient(socketPath: path)
            client.responseTimeout = .milliseconds(300)
            do throws(MeshError) {
                _ = try client.call("never")
                Issue.record("got an answer")
            } catch {
                #expect(error.code == .controlTimeout)
            }
            try loop.execute { server.close() }
        }
    }

    @Test func aSecondNodeCannotTakeOverALiveControlSocket() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let path = dir.file("c.sock")
        try withLoop { loop in
            let server = try startServer(loop, path)
            do {
                _ = try startServer(loop, path)
                Issue.record("second server started")
            } catch {
                #expect((error as? MeshError)?.code.rawValue == "unix.in_use")
            }
            // The failed start must not have removed the running node's socket.
            Thread.sleep(forTimeInterval: 0.05)
            #expect(try ControlClient(socketPath: path).call("echo") == .object([:]))
            try loop.execute { server.close() }
        }
    }

    /// A raw client: connects, sends `text`, reads `lines` response lines (or until EOF/timeout).
    func raw(_ path: String, send text: String, lines: Int, closeAfterSend: Bool = false) -> [String] {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
        guard withUnsafePointer(to: &addr, { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }) == 0 else { return [] }
        let bytes = Array(text.utf8)
        var off = 0
        while off < bytes.count {
            let n = bytes[off...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { break }
            off += n
        }
        if closeAfterSend { return [] }
        var tv = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var got = ""
        var buf = [UInt8](repeating: 0, count: 65536)
        while got.filter({ $0 == "\n" }).count < lines {
            let n = recv(fd, &buf, buf.count, 0)
            if n <= 0 { break }
            got += String(decoding: buf[..<n], as: UTF8.self)
        }
        return got.split(separator: "\n").map(String.init)
    }

    @Test func manyPipelinedRequestsAreAllAnsweredInOrder() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let path = dir.file("c.sock")
        try withLoop { loop in
            let server = try startServer(loop, path)
            let n = 40  // over maxPipelinedRequests (16): reading pauses and resumes
            let text = (0..<n).map { "{\"verb\":\"later\",\"args\":{\"n\":\($0)}}\n" }.joined()
            let lines = raw(path, send: text, lines: n)
            #expect(lines.count == n)
            #expect(lines == (0..<n).map { "{\"ok\":true,\"result\":\"done \($0)\"}" })
            try loop.execute { server.close() }
        }
    }

    @Test func aClientThatLeavesBeforeItsAnswerDoesNotHurtTheServer() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let path = dir.file("c.sock")
        try withLoop { loop in
            let server = try startServer(loop, path)
            for _ in 0..<5 { _ = raw(path, send: "{\"verb\":\"later\"}\n", lines: 0, closeAfterSend: true) }
            Thread.sleep(forTimeInterval: 0.2)  // the answers are due after 50 ms
            #expect(eventually { (try? loop.execute { server.connectionCount }) == 0 })
            #expect(try ControlClient(socketPath: path).call("echo") == .object([:]))
            try loop.execute { server.close() }
        }
    }

    @Test func aNodeWhoseBacklogIsFullTimesOutTheConnectInsteadOfHanging() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let path = dir.file("c.sock")
        // A listener that never accepts, with the smallest backlog, filled by other clients.
        let l = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(l) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(l, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        _ = listen(l, 0)
        var fillers: [Int32] = []
        defer { fillers.forEach { close($0) } }
        for _ in 0..<4 {
            let f = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            fillers.append(f)
            _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(f, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        }
        let client = ControlClient(socketPath: path)
        client.connectTimeout = .milliseconds(300)
        client.responseTimeout = .milliseconds(300)
        do throws(MeshError) {
            _ = try client.call("status")
            Issue.record("got an answer from a listener that never accepts")
        } catch {
            #expect(error.code == .controlTimeout)
        }
    }
}
