import Foundation
import TestSupport
import Testing
@testable import Mesh

@Suite(.ownThread(timeLimit: .minutes(2))) struct FaultProxyTests {
    @Test func bytesPassThroughUntilTheProxyResetsTheConnection() throws {
        try withLoop { loop in
            let echo = try loop.execute { try ByteEchoServer(loop: loop) }
            let proxy = try loop.execute {
                try FaultProxy(loop: loop, listen: loopback(), target: Endpoint(host: "127.0.0.1", port: echo.port),
                               resetAfter: .milliseconds(300)...(.milliseconds(400)), seed: 9)
            }
            let echoed = Waiter<[UInt8]>()
            let closed = Waiter<(MeshError?, UInt64)>()
            let start = EventLoop.monotonicNanoseconds
            try loop.execute {
                TCPStream.connect(loop: loop, to: proxy.localAddress) { r in
                    let s = try! r.get()
                    var got: [UInt8] = []
                    s.onRead = { b in
                        got += b
                        if got.count == 100_000 { echoed.fulfill(got) }
                    }
                    s.onClose = { e in closed.fulfill((e, EventLoop.monotonicNanoseconds)) }
                    s.startReading()
                    try! s.write([UInt8](repeating: 3, count: 100_000))
                }
            }
            #expect(try echoed.wait() == [UInt8](repeating: 3, count: 100_000))
            let (reason, at) = try closed.wait()
            #expect(reason?.code.rawValue == "uv.ECONNRESET")  // a reset, not an orderly close
            let lived = Double(at - start) / 1e9
            #expect(lived >= 0.29, "reset after \(lived) s")
            #expect(try loop.execute { proxy.stats.resets } == 1)
            try loop.execute { proxy.close(); echo.close() }
            #expect(eventually { (try? loop.execute { proxy.connectionCount }) == 0 })
        }
    }

    @Test func aBlackholeIsOnlyDetectedByTheIdleTimeout() throws {
        try withLoop { loop in
            let server = try loop.execute { try FrameEchoServer(loop: loop) }
            let proxy = try loop.execute { try FaultProxy(loop: loop, listen: loopback(), target: server.address.endpoint) }
            let first = Waiter<Void>()
            let closed = Waiter<MeshError?>()
            let conn = Locked<FramedConnection?>(nil)
            let limits = FrameLimits(idleTimeout: .milliseconds(600), keepaliveInterval: .milliseconds(100))
            try loop.execute {
                TCPStream.connect(loop: loop, to: proxy.localAddress) { r in
                    let c = FramedConnection(stream: try! r.get(), limits: limits)
                    conn.mutate { $0 = c }
                    c.onFrame = { _ in first.fulfill(()) }
                    c.onClose = { closed.fulfill($0) }
                    c.start()
                    try! c.send([1])
                }
            }
            try first.wait()
            try loop.execute { proxy.blackhole = true }
            #expect(try closed.wait()?.code == .idleTimeout)
            #expect(try loop.execute { proxy.stats.bytesDropped } > 0)
            try loop.execute { proxy.close(); server.close() }
            #expect(eventually { (try? loop.execute { proxy.connectionCount + server.connections.count }) == 0 })
        }
    }

    @Test func refusingNewConnectionsResetsThem() throws {
        try withLoop { loop in
            let echo = try loop.execute { try ByteEchoServer(loop: loop) }
            let proxy = try loop.execute {
                let p = try FaultProxy(loop: loop, listen: loopback(), target: Endpoint(host: "127.0.0.1", port: echo.port))
                p.acceptNew = false
                return p
            }
            let closed = Waiter<MeshError?>()
            try loop.execute {
                TCPStream.connect(loop: loop, to: proxy.localAddress) { r in
                    switch r {
                    case .failure(let e): closed.fulfill(e)
                    case .success(let s):
                        s.onClose = { closed.fulfill($0) }
                        s.startReading()
                    }
                }
            }
            #expect(try closed.wait()?.code.rawValue == "uv.ECONNRESET")
            try loop.execute { proxy.close(); echo.close() }
        }
    }
}
