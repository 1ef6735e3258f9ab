import Foundation
import TestSupport
import Testing
@testable import Gossip
@testable import Mesh

/// The metrics server against well-behaved and hostile clients, over real loopback sockets.
@Suite(.serialized, .ownThread()) struct HTTPServerTests {
    /// Runs `body` with a server on a fresh loop (port chosen by the kernel), then closes it.
    func withServer(_ limits: HTTPServer.Limits = HTTPServer.Limits(),
                    handler: @escaping @Sendable (HTTPRequestHead) -> HTTPResponse = { _ in HTTPResponse(status: 200, text: "hello") },
                    _ body: (EventLoop, HTTPServer, UInt16) throws -> Void) throws {
        try withLoop { loop in
            let server = try loop.execute { try HTTPServer(loop: loop, bind: loopback(), limits: limits, handler: handler) }
            defer {
                try? loop.execute { server.close() }
                Thread.sleep(forTimeInterval: 0.05)
            }
            try body(loop, server, server.localAddress.port)
        }
    }

    func counters(_ loop: EventLoop, _ s: HTTPServer) -> HTTPServer.Counters { (try? loop.execute { s.counters }) ?? .init() }

    @Test(.ownThread(timeLimit: .minutes(1))) func aGETIsAnsweredByTheHandlerAndTheConnectionIsClosed() throws {
        let seen = Locked<[String]>([])
        try withServer(handler: { head in
            seen.mutate { $0.append("\(head.method) \(head.path) \(head.header("Host") ?? "-")") }
            return HTTPResponse(status: 200, text: "hello")
        }) { _, _, port in
            let c = try RawTCPClient(port: port)
            c.send("GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nUser-Agent: t\r\n\r\n")
            let (bytes, closed) = c.readUntilClosed(timeout: 5)
            #expect(closed)
            let r = try #require(RawHTTPResponse(bytes))
            #expect(r.status == 200)
            #expect(r.text == "hello\n")
            #expect(r.headers["content-length"] == "6")
            #expect(r.headers["connection"] == "close")
            #expect(seen.value == ["GET /metrics a"])
        }
    }

    @Test(.ownThread(timeLimit: .minutes(1))) func aHEADGetsTheHeadersOfTheGETWithoutTheBody() throws {
        try withServer { _, _, port in
            let c = try RawTCPClient(port: port)
            c.send("HEAD / HTTP/1.0\r\n\r\n")
            let (bytes, closed) = c.readUntilClosed(timeout: 5)
            #expect(closed)
            let r = try #require(RawHTTPResponse(bytes))
            #expect(r.headers["content-length"] == "6")
            #expect(r.body.isEmpty)
        }
    }

    @Test(.ownThread(timeLimit: .minutes(1))) func garbageIsAnswered400AtOnceClosedAndCounted() throws {
        let rejected = Locked<[String]>([])
        try withServer { loop, server, port in
            try loop.execute { server.onRejected = { reason, _, _ in rejected.mutate { $0.append(reason.rawValue) } } }
            for garbage: [UInt8] in [[0x16, 0x03, 0x01, 0x02, 0x00], Array("\u{1}\u{2}hello".utf8), Array("GET/ HTTP/1.1\r\n\r\n".utf8),
                                     Array("GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n".utf8), Array("GET / HTTP/1.1\r\n\r\n".utf8)] {
                let c = try RawTCPClient(port: port)
                c.send(garbage)
                // Well within the 5 s request timeout: refused as soon as it is seen to be garbage.
                let (bytes, closed) = c.readUntilClosed(timeout: 3)
                #expect(closed, "\(garbage)")
                #expect(RawHTTPResponse(bytes)?.status == 400, "\(garbage): \(String(decoding: bytes, as: UTF8.self))")
            }
            #expect(counters(loop, server).rejected["http_bad_request"] == 5)
            #expect(rejected.value == Array(repeating: "http_bad_request", count: 5))
        }
    }

    @Test(.ownThread(timeLimit: .minutes(1))) func aHeadOverEightKiBIsAnswered431AndClosed() throws {
        try withServer { loop, server, port in
            let c = try RawTCPClient(port: port)
            c.send("GET /metrics HTTP/1.1\r\nHost: a\r\nX-Big: " + String(repeating: "a", count: 9000) + "\r\n\r\n")
            let (bytes, closed) = c.readUntilClosed(timeout: 5)
            #expect(closed)
            #expect(RawHTTPResponse(bytes)?.status == 431)
            // A head of exactly 8 KiB is still served.
            let line = "GET /metrics HTTP/1.1\r\nHost: a\r\nX-Big: "
            let fill = 8192 - line.utf8.count - 4
            let ok = try RawTCPClient(port: port)
            ok.send(line + String(repeating: "b", count: fill) + "\r\n\r\n")
            #expect(RawHTTPResponse(ok.readUntilClosed(timeout: 5).bytes)?.status == 200)
            #expect(counters(loop, server).rejected["http_head_too_large"] == 1)
        }
    }

    @Test(.ownThread(timeLimit: .minutes(1))) func aSlowlorisClientIsAnswered408WhenItsRequestTimeEnds() throws {
        var limits = HTTPServer.Limits()
        limits.requestTimeout = .milliseconds(600)
        try withServer(limits) { loop, server, port in
            let c = try RawTCPClient(port: port)
            let start = Date()
            var closed = false
            var received: [UInt8] = []
            // One byte every 100 ms, for up to 3 s: never a complete head.
            for b in Array("GET /metrics HTTP/1.1\r\nHost: a\r\nX-Slow: ".utf8) + Array(repeating: UInt8(ascii: "z"), count: 30) {
                if !c.send([b]) { break }
                let r = c.readUntilClosed(timeout: 0.1)
                received += r.bytes
                if r.closed {
                    closed = true
                    break
                }
            }
            let elapsed = Date().timeIntervalSince(start)
            #expect(closed, "the server kept a slow client for \(elapsed) s")
            // (libuv starts a timer from the loop's cached time, which may be a little behind
            // the clock: the close can come a few ms before 0.6 s by an outside clock.)
            #expect(elapsed >= 0.55, "closed after \(elapsed) s, before its request timeout")
            #expect(RawHTTPResponse(received)?.status == 408)
            #expect(counters(loop, server).rejected["http_request_timeout"] == 1)
            // An idle connection that sends nothing at all is closed the same way.
            let idle = try RawTCPClient(port: port)
            #expect(idle.closedWithin(5))
        }
    }

    @Test(.ownThread(timeLimit: .minutes(1))) func connectionsBeyondTheLimitAreClosedAtOnceAndCounted() throws {
        var limits = HTTPServer.Limits()
        limits.maxConnections = 4
        try withServer(limits) { loop, server, port in
            var idle = try (0..<4).map { _ in try RawTCPClient(port: port) }
            #expect(eventually(5) { (try? loop.execute { server.connectionCount }) == 4 })
            let extra = try RawTCPClient(port: port)
            // Closed at once, long before the 5 s request timeout, with nothing written.
            let r = extra.readUntilClosed(timeout: 2)
            #expect(r.closed && r.bytes.isEmpty)
            #expect(counters(loop, server).rejected["http_too_many_connections"] == 1)
            // A slot that frees up serves again.
            idle.removeLast()
            #expect(eventually(5) { (try? loop.execute { server.connectionCount }) == 3 })
            let next = try RawTCPClient(port: port)
            next.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            #expect(RawHTTPResponse(next.readUntilClosed(timeout: 5).bytes)?.status == 200)
            _ = idle
        }
    }

    @Test(.ownThread(timeLimit: .minutes(1))) func aLargeResponseReachesASlowReaderWholeWithOnePieceQueuedAtATime() throws {
        let body = (0..<(3 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        try withServer(handler: { _ in HTTPResponse(status: 200, contentType: "application/octet-stream", body: body) }) { loop, server, port in
            let c = try RawTCPClient(port: port)
            c.send("GET /big HTTP/1.1\r\nHost: a\r\n\r\n")
            let (bytes, closed) = c.readUntilClosed(timeout: 30, readBytes: 32 << 10, pauseSeconds: 0.002)
            #expect(closed)
            let r = try #require(RawHTTPResponse(bytes))
            #expect(r.body == body)
            let peak = counters(loop, server).peakWriteQueueBytes
            #expect(peak > 0 && peak <= HTTPServer.Limits().writePieceBytes, "peak queue \(peak) bytes")
        }
    }

    @Test(.ownThread(timeLimit: .minutes(1))) func aClientThatNeverReadsItsResponseIsDisconnectedAtTheResponseTimeout() throws {
        var limits = HTTPServer.Limits()
        limits.responseTimeout = .milliseconds(500)
        let body = [UInt8](repeating: 0x61, count: 48 << 20)  // more than the socket buffers hold
        try withServer(limits, handler: { _ in HTTPResponse(status: 200, body: body) }) { loop, server, port in
            let c = try RawTCPClient(port: port)
            var small: Int32 = 4096
            setsockopt(c.fd, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<Int32>.size))
            c.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            #expect(eventually(10) { (try? loop.execute { server.counters.responses[200] }) == 1 })
            #expect(eventually(10) { (try? loop.execute { server.connectionCount }) == 0 })
            #expect(counters(loop, server).rejected["http_response_timeout"] == 1)
            _ = c
        }
    }

    @Test(.ownThread(timeLimit: .minutes(1))) func seededRandomBytesAreEachAnsweredOrClosedAndTheServerGoesOn() throws {
        var limits = HTTPServer.Limits()
        limits.requestTimeout = .milliseconds(300)
        try withServer(limits) { loop, server, port in
            var rng = SplitMix64(seed: 13)
            for i in 0..<40 {
                let n = Int(rng.next() % 600)
                var bytes = (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                // Half of them start like a request, so that the parser goes past the request line.
                if i % 2 == 0 { bytes = Array("GET / HTTP/1.1\r\n".utf8) + bytes }
                let c = try RawTCPClient(port: port)
                c.send(bytes)
                let (reply, closed) = c.readUntilClosed(timeout: 5)
                #expect(closed, "input \(i) left open")
                if !reply.isEmpty { #expect(RawHTTPResponse(reply) != nil, "input \(i): not an HTTP response") }
            }
            let ok = try RawTCPClient(port: port)
            ok.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            #expect(RawHTTPResponse(ok.readUntilClosed(timeout: 5).bytes)?.status == 200)
            let rejected = counters(loop, server).rejected.values.reduce(0, +)
            #expect(rejected >= 20, "\(counters(loop, server).rejected)")
        }
    }
}

/// The request-head parser alone: total on any input, strict where RFC 9112 says so.
@Suite struct HTTPRequestParserTests {
    func parse(_ s: String, max: Int = 8192) -> HTTPHeadParse { HTTPRequestParser.parse(Array(s.utf8), maxHeadBytes: max) }

    @Test func aCompleteHeadIsParsedWithItsFieldsAndLength() throws {
        let text = "GET /metrics?a=b HTTP/1.1\r\nHost: x:9946\r\nAccept:  text/plain \r\n\r\nEXTRA"
        guard case .complete(let h, let consumed) = parse(text) else { Issue.record("\(parse(text))"); return }
        #expect(h.method == "GET" && h.path == "/metrics" && h.target == "/metrics?a=b" && h.minorVersion == 1)
        #expect(h.header("accept") == "text/plain")
        #expect(consumed == text.utf8.count - 5)
    }

    @Test func bareLineFeedsAndHTTP10WithoutHostAreAccepted() {
        guard case .complete(let h, _) = parse("GET / HTTP/1.0\n\n") else { Issue.record("refused"); return }
        #expect(h.minorVersion == 0)
    }

    @Test func anIncompleteHeadNeedsMoreAndAStartOfGarbageIsRefusedAtOnce() {
        #expect(parse("GET /metr") == .needMore)
        #expect(parse("GET / HTTP/1.1\r\nHost: a\r\n") == .needMore)
        #expect(parse("") == .needMore)
        if case .refused(.malformed) = parse("\u{16}\u{3}\u{1}") {} else { Issue.record("TLS hello not refused") }
        if case .refused(.malformed) = parse("G(T") {} else { Issue.record("bad method byte not refused") }
        if case .refused(.malformed) = parse(String(repeating: "A", count: 17)) {} else { Issue.record("long method not refused") }
        if case .refused(.malformed) = parse("GET /\u{0}") {} else { Issue.record("NUL not refused") }
    }

    @Test func malformedHeadsAreRefusedWithAReason() {
        for bad in ["GET / HTTP/1.1\r\n\r\n",                      // no Host
                    "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",  // two Hosts
                    "GET  / HTTP/1.1\r\nHost: a\r\n\r\n",            // two spaces
                    "GET metrics HTTP/1.1\r\nHost: a\r\n\r\n",       // not origin-form
                    "GET / HTTP/1.1\r\nHost : a\r\n\r\n",            // space before the colon
                    "GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n",
                    "GET / HTTP/1.1\r\nHost: a\r\n\tfolded\r\n\r\n",
                    "GET / HTTP/1.1\rHost: a\r\n\r\n",               // lone CR
                    "GET / HTTP/x.y\r\n\r\n", "GET / FTP/1.1\r\n\r\n"] {
            if case .refused(.malformed) = parse(bad) {} else { Issue.record("accepted: \(bad.debugDescription) → \(parse(bad))") }
        }
        #expect(parse("GET / HTTP/2.0\r\n\r\n") == .refused(.unsupportedVersion("HTTP/2.0")))
    }

    @Test func theHeadLimitIsExact() {
        let line = "GET / HTTP/1.1\r\nHost: a\r\nX: "
        let exact = line + String(repeating: "b", count: 100 - line.utf8.count - 4) + "\r\n\r\n"
        #expect(exact.utf8.count == 100)
        if case .complete = parse(exact, max: 100) {} else { Issue.record("a 100-byte head refused at a 100-byte limit") }
        #expect(parse(exact, max: 99) == .refused(.tooLarge))
        #expect(parse(line + String(repeating: "b", count: 200), max: 100) == .refused(.tooLarge))
        let manyFields = "GET / HTTP/1.1\r\n" + String(repeating: "A: b\r\n", count: 101) + "\r\n"
        #expect(parse(manyFields) == .refused(.tooLarge))
    }

    @Test func anyByteStringGetsAVerdictAndOnlyHeadsThatEndAreComplete() {
        var rng = SplitMix64(seed: 7)
        for _ in 0..<5000 {
            let n = Int(rng.next() % 300)
            var bytes = (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next() % 4 == 0 ? 10 : rng.next()) }
            if rng.next() % 2 == 0 { bytes = Array("GET / HTTP/1.1\r\nHost: h\r\n".utf8) + bytes }
            if case .complete(_, let consumed) = HTTPRequestParser.parse(bytes, maxHeadBytes: 256) {
                #expect(consumed <= bytes.count && consumed <= 256 && bytes[consumed - 1] == 10)
            }
        }
    }
}
