import Foundation
import TestSupport
import Testing
@testable import Mesh

@Suite(.serialized, .ownThread(timeLimit: .minutes(2))) struct PacedSenderTests {
    /// Sends `perConnectionBytes` on each of `connections` connections through one shared
    /// limiter; returns the seconds until the receiver had everything.
    func run(globalBytesPerSecond: Int64?, perPeerBytesPerSecond: Int64?, connections: Int, perConnectionBytes: Int) throws -> Double {
        var seconds = 0.0
        try withLoop { loop in
            let total = connections * perConnectionBytes
            let received = Locked(0)
            let done = Waiter<UInt64>()
            let server = try loop.execute {
                let l = try TCPListener(loop: loop, bind: loopback())
                var conns: [FramedConnection] = []
                l.onAccept = { s in
                    let c = FramedConnection(stream: s)
                    conns.append(c)
                    c.onFrame = { f in
                        if received.mutate({ $0 += f.count; return $0 }) == total {
                            done.fulfill(EventLoop.monotonicNanoseconds)
                            conns.forEach { $0.close() }
                        }
                    }
                    c.start()
                }
                return l
            }
            let start = EventLoop.monotonicNanoseconds
            let senders = Locked<[PacedSender<Int>]>([])
            try loop.execute {
                let shared = SharedBandwidthLimiter(BandwidthLimiter<Int>(globalBytesPerSecond: globalBytesPerSecond,
                                                                          perPeerBytesPerSecond: perPeerBytesPerSecond,
                                                                          nowNanoseconds: EventLoop.monotonicNanoseconds))
                for peer in 0..<connections {
                    TCPStream.connect(loop: loop, to: server.localAddress) { r in
                        let c = FramedConnection(stream: try! r.get())
                        c.start()
                        let p = try! PacedSender(connection: c, peer: peer, bandwidth: shared)
                        senders.mutate { $0.append(p) }
                        let frame = [UInt8](repeating: UInt8(peer), count: 256 << 10)
                        var left = perConnectionBytes
                        func refill() {
                            while left > 0 {
                                let n = min(left, frame.count)
                                do { try p.enqueue(n == frame.count ? frame : Array(frame.prefix(n))) } catch { return }
                                left -= n  // enqueue never calls onIdle re-entrantly
                            }
                        }
                        p.onIdle = { refill() }
                        refill()
                    }
                }
            }
            let end = try done.wait(60, "paced transfer")
            seconds = Double(end - start) / 1e9
            try loop.execute {
                senders.value.forEach { $0.close(); $0.connection.close() }
                server.close()
            }
        }
        return seconds
    }

    @Test func aGlobalLimitIsNeverExceededOnARealConnection() throws {
        // 40 MB at 20 MB/s with a 2 MB burst: at least (40 - 2) / 20 = 1.9 s.
        let s = try run(globalBytesPerSecond: 20_000_000, perPeerBytesPerSecond: nil, connections: 1, perConnectionBytes: 40_000_000)
        #expect(s >= 1.9 * 0.95, "took \(s) s")
        #expect(s < 30)
    }

    @Test func twoConnectionsShareTheGlobalLimitAndEachKeepsItsPeerLimit() throws {
        // Global 20 MB/s, per peer 8 MB/s: two peers are capped at 16 MB/s together.
        // 2 × 16 MB at 16 MB/s (bursts 2 × 0.8 MB + 2 MB) takes at least ~1.7 s.
        let s = try run(globalBytesPerSecond: 20_000_000, perPeerBytesPerSecond: 8_000_000, connections: 2, perConnectionBytes: 16_000_000)
        #expect(s >= (16_000_000.0 - 800_000) / 8_000_000 * 0.95, "took \(s) s")
        #expect(s < 30)
    }

    @Test func withoutLimitsFramesFlowAsFastAsTheConnectionDrains() throws {
        let s = try run(globalBytesPerSecond: nil, perPeerBytesPerSecond: nil, connections: 2, perConnectionBytes: 20_000_000)
        #expect(s < 30)
    }
}
