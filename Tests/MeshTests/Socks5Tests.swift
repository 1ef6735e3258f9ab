import Foundation
import TestSupport
import Testing
@testable import Mesh

@Suite struct Socks5HandshakeTests {
    let ipv4Target = Socks5Target(host: .ipv4([10, 0, 0, 5]), port: 7000)

    @Test func theGreetingOffersNoAuthAndUserPassOnlyWithCredentials() throws {
        var a = try Socks5Handshake(target: ipv4Target)
        #expect(a.start() == [5, 1, 0])
        var b = try Socks5Handshake(target: ipv4Target, credentials: .init(username: "u", password: "p"))
        #expect(b.start() == [5, 2, 0, 2])
    }

    @Test func connectRequestsEncodeIPv4IPv6AndDomainNames() throws {
        func request(_ t: Socks5Target) throws -> [UInt8] {
            var h = try Socks5Handshake(target: t)
            _ = h.start()
            guard case .send(let r) = try h.receive([5, 0]) else { throw FixtureError("no request") }
            return r
        }
        #expect(try request(ipv4Target) == [5, 1, 0, 1, 10, 0, 0, 5, 0x1B, 0x58])
        let v6 = Socks5Target(Endpoint("[::1]:443")!)
        #expect(try request(v6) == [5, 1, 0, 4] + [UInt8](repeating: 0, count: 15) + [1, 0x01, 0xBB])
        let name = Socks5Target(Endpoint("gpu-3.tail:7000")!)
        #expect(try request(name) == [5, 1, 0, 3, 10] + Array("gpu-3.tail".utf8) + [0x1B, 0x58])
    }

    @Test func userPassAuthIsSentAndASuccessfulReplyConnectsEvenOneByteAtATime() throws {
        var h = try Socks5Handshake(target: ipv4Target, credentials: .init(username: "alice", password: "s3cret"))
        _ = h.start()
        #expect(try h.receive([5]) == .needMore)
        #expect(try h.receive([2]) == .send([1, 5] + Array("alice".utf8) + [6] + Array("s3cret".utf8)))
        #expect(try h.receive([1]) == .needMore)
        guard case .send = try h.receive([0]) else { Issue.record("no request after auth"); return }
        let reply: [UInt8] = [5, 0, 0, 1, 127, 0, 0, 1, 0x30, 0x39, 0xAA, 0xBB]
        var last: Socks5Handshake.Step = .needMore
        for b in reply.prefix(10) { last = try h.receive([b]) }
        #expect(last == .connected(bound: Socks5Target(host: .ipv4([127, 0, 0, 1]), port: 12345), leftover: []))
        var h2 = try Socks5Handshake(target: ipv4Target)
        _ = h2.start()
        _ = try h2.receive([5, 0])
        #expect(try h2.receive(reply) == .connected(bound: Socks5Target(host: .ipv4([127, 0, 0, 1]), port: 12345), leftover: [0xAA, 0xBB]))
    }

    @Test func everyReplyCodeMapsToItsOwnClearError() throws {
        let expected: [UInt8: MeshError.Code] = [
            1: .socks5GeneralFailure, 2: .socks5NotAllowed, 3: .socks5NetworkUnreachable, 4: .socks5HostUnreachable,
            5: .socks5ConnectionRefused, 6: .socks5TTLExpired, 7: .socks5CommandNotSupported,
            8: .socks5AddressTypeNotSupported, 9: .socks5Protocol,
        ]
        for (rep, code) in expected {
            var h = try Socks5Handshake(target: ipv4Target)
            _ = h.start()
            _ = try h.receive([5, 0])
            #expect(throws: MeshError.self) { _ = try h.receive([5, rep, 0, 1]) ; _ = try h.receive([0]) }
            var h2 = try Socks5Handshake(target: ipv4Target)
            _ = h2.start()
            _ = try h2.receive([5, 0])
            do {
                _ = try h2.receive([5, rep, 0, 1, 0, 0, 0, 0, 0, 0])
                Issue.record("reply \(rep) accepted")
            } catch {
                #expect(error.code == code)
                #expect(error.message.contains("10.0.0.5:7000") || rep == 7)
            }
        }
    }

    @Test func authFailureNoAcceptableMethodAndNonSocksAnswersAreErrors() throws {
        var h = try Socks5Handshake(target: ipv4Target, credentials: .init(username: "u", password: "p"))
        _ = h.start()
        _ = try h.receive([5, 2])
        #expect(throws: MeshError.self) { _ = try h.receive([1, 1]) }
        do {
            var h = try Socks5Handshake(target: ipv4Target)
            _ = h.start()
            _ = try h.receive([5, 0xFF])
            Issue.record("accepted 0xFF")
        } catch { #expect(error.code == .socks5NoAcceptableMethod) }
        do {
            var h = try Socks5Handshake(target: ipv4Target)
            _ = h.start()
            _ = try h.receive(Array("HTTP/1.1 400 Bad Request\r\n".utf8))
            Issue.record("accepted HTTP")
        } catch { #expect(error.code == .socks5Protocol) }
        do {
            var h = try Socks5Handshake(target: ipv4Target)
            _ = h.start()
            _ = try h.receive([5, 2])  // user/pass chosen but never offered
            Issue.record("accepted unoffered method")
        } catch { #expect(error.code == .socks5Protocol) }
    }

    @Test func arbitraryRepliesNeverCrashTheStateMachine() throws {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            var h = try Socks5Handshake(target: ipv4Target, credentials: .init(username: "u", password: "p"))
            _ = h.start()
            for _ in 0..<4 {
                let junk = (0..<Int.random(in: 0...20, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
                do { _ = try h.receive(junk) } catch { break }
            }
        }
    }

    @Test func badArgumentsAreRejectedUpFront() {
        #expect(throws: MeshError.self) { try Socks5Handshake(target: Socks5Target(host: .domain(String(repeating: "a", count: 256)), port: 1)) }
        #expect(throws: MeshError.self) { try Socks5Handshake(target: ipv4Target, credentials: .init(username: "", password: "p")) }
    }
}

@Suite(.serialized, .ownThread(timeLimit: .minutes(2))) struct Socks5IntegrationTests {
    func roundTrip(loop: EventLoop, proxy: Endpoint, target: Endpoint, credentials: Socks5Credentials? = nil) throws -> Result<[UInt8], MeshError> {
        let payload = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let connected = Waiter<Result<TCPStream, MeshError>>()
        try loop.execute {
            Socks5Connector.connect(loop: loop, proxy: proxy, target: target, credentials: credentials, timeout: .seconds(5)) { connected.fulfill($0) }
        }
        switch try connected.wait() {
        case .failure(let e): return .failure(e)
        case .success(let s):
            let done = Waiter<[UInt8]>()
            try loop.execute { echoRoundTrip(loop: loop, stream: s, payload: payload, done: done) }
            let got = try done.wait(20)
            #expect(got == payload)
            return .success(got)
        }
    }

    @Test func connectsThroughMicrosocksToIPv4IPv6AndDomainTargets() throws {
        let socks = try MicrosocksFixture()
        defer { socks.stop() }
        try withLoop { loop in
            let (v4, v6) = try loop.execute {
                (try ByteEchoServer(loop: loop), try ByteEchoServer(loop: loop, bind: SocketAddress(ip: "::1", port: 0)!))
            }
            #expect(try roundTrip(loop: loop, proxy: socks.endpoint, target: Endpoint(host: "127.0.0.1", port: v4.port)).get().count == 100_000)
            #expect(try roundTrip(loop: loop, proxy: socks.endpoint, target: Endpoint(host: "::1", port: v6.port)).get().count == 100_000)
            #expect(try roundTrip(loop: loop, proxy: socks.endpoint, target: Endpoint(host: "localhost", port: v4.port)).get().count == 100_000)
            try loop.execute { v4.close(); v6.close() }
        }
    }

    @Test func usernamePasswordAuthWorksAndWrongCredentialsFailClearly() throws {
        let socks = try MicrosocksFixture(username: "mesh", password: "pa55word")
        defer { socks.stop() }
        try withLoop { loop in
            let echo = try loop.execute { try ByteEchoServer(loop: loop) }
            let target = Endpoint(host: "127.0.0.1", port: echo.port)
            #expect(try roundTrip(loop: loop, proxy: socks.endpoint, target: target, credentials: .init(username: "mesh", password: "pa55word")).get().count == 100_000)
            let wrong = try roundTrip(loop: loop, proxy: socks.endpoint, target: target, credentials: .init(username: "mesh", password: "nope"))
            guard case .failure(let e) = wrong else { Issue.record("wrong password accepted"); return }
            #expect(e.code == .socks5AuthFailed)
            let none = try roundTrip(loop: loop, proxy: socks.endpoint, target: target)
            guard case .failure(let e2) = none else { Issue.record("no credentials accepted"); return }
            #expect(e2.code == .socks5NoAcceptableMethod)
            #expect(e2.hint?.contains("socks5.username") == true)
            try loop.execute { echo.close() }
        }
    }

    @Test func aRefusedTargetAndADeadProxyAreReportedAsSuch() throws {
        let socks = try MicrosocksFixture()
        defer { socks.stop() }
        try withLoop { loop in
            let closedPort = freeLoopbackPort()
            let r = try roundTrip(loop: loop, proxy: socks.endpoint, target: Endpoint(host: "127.0.0.1", port: closedPort))
            guard case .failure(let e) = r else { Issue.record("connected to a closed port"); return }
            #expect(e.code == .socks5ConnectionRefused)
            let r2 = try roundTrip(loop: loop, proxy: Endpoint(host: "127.0.0.1", port: freeLoopbackPort()), target: Endpoint(host: "127.0.0.1", port: 1))
            guard case .failure(let e2) = r2 else { Issue.record("connected through a dead proxy"); return }
            #expect(e2.code.rawValue == "uv.ECONNREFUSED")
            #expect(e2.message.contains("cannot reach SOCKS5 proxy"))
        }
    }

    @Test func aProxyThatNeverAnswersTimesOut() throws {
        try withLoop { loop in
            let held = Locked<[TCPStream]>([])
            let silent = try loop.execute {
                let l = try TCPListener(loop: loop, bind: loopback())
                l.onAccept = { s in held.mutate { $0.append(s) }; s.startReading() }
                return l
            }
            let result = Waiter<Result<TCPStream, MeshError>>()
            try loop.execute {
                Socks5Connector.connect(loop: loop, proxy: silent.localAddress.endpoint, target: Endpoint(host: "127.0.0.1", port: 1),
                                        timeout: .milliseconds(300)) { result.fulfill($0) }
            }
            guard case .failure(let e) = try result.wait() else { Issue.record("handshake succeeded"); return }
            #expect(e.code == .socks5Timeout)
            try loop.execute { silent.close(); held.value.forEach { $0.close() } }
        }
    }
}

@Suite struct Socks5LeftoverTests {
    @Test func bytesTheTargetSentWithTheReplyAreDeliveredByTheFirstRead() throws {
        try withLoop { loop in
            // A fake proxy that answers the CONNECT with the reply and the target's greeting in one write.
            let accepted = Locked<[TCPStream]>([])
            let proxy = try loop.execute {
                let l = try TCPListener(loop: loop, bind: loopback())
                l.onAccept = { s in
                    accepted.mutate { $0.append(s) }
                    var got: [UInt8] = []
                    var stage = 0
                    s.onRead = { b in
                        got += b
                        if stage == 0, got.count >= 3 {
                            got.removeFirst(3)
                            stage = 1
                            try? s.write([5, 0])
                        }
                        if stage == 1, got.count >= 10 {
                            stage = 2
                            try? s.write([5, 0, 0, 1, 127, 0, 0, 1, 0x1F, 0x90] + Array("HELLO".utf8))
                        }
                    }
                    s.onClose = { _ in }
                    s.startReading()
                }
                return l
            }
            let got = Waiter<[UInt8]>()
            let holder = Locked<TCPStream?>(nil)
            try loop.execute {
                Socks5Connector.connect(loop: loop, proxy: proxy.localAddress.endpoint, target: Endpoint("10.1.2.3:7000")!) { r in
                    let s = try! r.get()
                    holder.mutate { $0 = s }
                    s.onRead = { b in got.fulfill(Array(b)) }
                    s.startReading()
                }
            }
            #expect(try got.wait() == Array("HELLO".utf8))
            try loop.execute {
                holder.value?.close()
                proxy.close()
                accepted.value.forEach { $0.close() }
            }
        }
    }
}
