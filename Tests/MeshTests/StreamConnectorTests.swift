import Foundation
import TestSupport
import Testing
@testable import Mesh

@Suite(.serialized, .ownThread(timeLimit: .minutes(2))) struct StreamConnectorTests {
    @Test func directSOCKS5AndSSHRoutesAllCarryTheSameFramedConversation() throws {
        let socks = try MicrosocksFixture()
        defer { socks.stop() }
        let sshd = try SSHDFixture()
        defer { sshd.stop() }
        try withLoop { loop in
            let server = try loop.execute { try FrameEchoServer(loop: loop) }
            let routes: [(String, HostConfig.Route)] = [
                ("direct", .direct),
                ("socks5", .socks5(Socks5Settings(proxy: socks.endpoint))),
                ("ssh", .ssh(sshd.sshOptions())),
            ]
            for (name, route) in routes {
                let echoed = Waiter<Result<[UInt8], MeshError>>()
                let closed = Waiter<Void>()
                let payload = Array("hello via \(name)".utf8) + [UInt8](repeating: 1, count: 300_000)
                try loop.execute {
                    StreamConnector.connect(loop: loop, to: server.address.endpoint, route: route, timeout: .seconds(10)) { r in
                        switch r {
                        case .failure(let e): echoed.fulfill(.failure(e)); closed.fulfill(())
                        case .success(let stream):
                            let c = FramedConnection(stream: stream)
                            c.onFrame = { f in echoed.fulfill(.success(f)); c.close() }
                            c.onClose = { e in
                                if let e { echoed.fulfill(.failure(e)) }
                                closed.fulfill(())
                            }
                            c.start()
                            try! c.send(payload)
                        }
                    }
                }
                #expect(try echoed.wait(20, name).get() == payload, "\(name)")
                try closed.wait(20, "\(name) close")
            }
            try loop.execute { server.close() }
        }
    }
}

@Suite(.ownThread(timeLimit: .minutes(2))) struct IdleLoopTests {
    @Test func anIdleLoopWithTimersSleepsInsteadOfPolling() throws {
        try withLoop { loop in
            @Sendable func threadCPU() -> Double {
                var ts = timespec()
                clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
                return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
            }
            let (timer, before) = try loop.execute {
                let t = try LoopTimer(loop: loop) {}
                t.start(after: .seconds(1), repeating: .seconds(1))
                return (t, threadCPU())
            }
            Thread.sleep(forTimeInterval: 1.5)
            let after = try loop.execute { threadCPU() }
            // A busy loop would burn ~1.5 s of CPU here.
            #expect(after - before < 0.2, "loop thread used \(after - before) s of CPU while idle")
            try loop.execute { timer.close() }
        }
    }
}
