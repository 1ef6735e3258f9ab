import Foundation
import Gossip
import TestSupport
import Testing
@testable import Mesh

@Suite struct UDPTests {
    @Test func datagramsArriveWithTheirSenderAddress() throws {
        try withLoop { loop in
            let got = Waiter<([UInt8], SocketAddress)>()
            let (a, b) = try loop.execute {
                let a = try UDPSocket(loop: loop, bind: loopback())
                let b = try UDPSocket(loop: loop, bind: loopback())
                try b.startReceiving { bytes, from in got.fulfill((Array(bytes), from)) }
                return (a, b)
            }
            #expect(a.localAddress.port != 0)
            #expect(a.localAddress.port != b.localAddress.port)
            try loop.execute { try a.send([1, 2, 3], to: b.localAddress) }
            let (bytes, from) = try got.wait()
            #expect(bytes == [1, 2, 3])
            #expect(from == a.localAddress)
            try loop.execute {
                #expect(b.stats.datagramsReceived == 1)
                #expect(a.stats.datagramsSent == 1)
                a.close(); b.close()
            }
        }
    }

    @Test func oversizedDatagramsAreRefusedOnSendAndDroppedOnReceive() throws {
        try withLoop { loop in
            let got = Waiter<[UInt8]>()
            let (big, small) = try loop.execute {
                let big = try UDPSocket(loop: loop, bind: loopback(), maxDatagramBytes: 4096)
                let small = try UDPSocket(loop: loop, bind: loopback(), maxDatagramBytes: 100)
                try small.startReceiving { bytes, _ in got.fulfill(Array(bytes)) }
                return (big, small)
            }
            try loop.execute {
                #expect(throws: MeshError.self) { try small.send([UInt8](repeating: 0, count: 101), to: big.localAddress) }
                try big.send([UInt8](repeating: 7, count: 101), to: small.localAddress)  // too long for `small`
                try big.send([UInt8](repeating: 9, count: 100), to: small.localAddress)  // exactly the limit
            }
            #expect(try got.wait() == [UInt8](repeating: 9, count: 100))
            try loop.execute {
                #expect(small.stats.droppedTruncated == 1)
                #expect(small.stats.sendsRefused == 1)
                #expect(small.stats.datagramsReceived == 1)
                big.close(); small.close()
            }
        }
    }

    @Test func bindingAPortInUseFailsWithAClearError() throws {
        try withLoop { loop in
            try loop.execute {
                let a = try UDPSocket(loop: loop, bind: loopback())
                do {
                    _ = try UDPSocket(loop: loop, bind: a.localAddress)
                    Issue.record("second bind succeeded")
                } catch {
                    #expect((error as? MeshError)?.code.rawValue == "uv.EADDRINUSE")
                    #expect("\(error)".contains("bind UDP 127.0.0.1:"))
                }
                a.close()
            }
        }
    }
}

/// An echo server: every frame received is sent back.
final class FrameEchoServer: @unchecked Sendable {
    let listener: TCPListener
    let counters = FrameCounters()
    var connections: [ObjectIdentifier: FramedConnection] = [:]
    init(loop: EventLoop, limits: FrameLimits = FrameLimits()) throws {
        listener = try TCPListener(loop: loop, bind: loopback())
        listener.onAccept = { [weak self] stream in
            guard let self else { return stream.close() }
            let c = FramedConnection(stream: stream, limits: limits, counters: self.counters)
            let id = ObjectIdentifier(c)
            self.connections[id] = c
            c.onFrame = { [unowned c] f in try? c.send(f) }
            c.onClose = { [weak self] _ in self?.connections[id] = nil }
            c.start()
        }
    }
    var address: SocketAddress { listener.localAddress }
    func close() {
        listener.close()
        connections.values.forEach { $0.close() }
    }
}

@Suite(.ownThread(timeLimit: .minutes(2))) struct TCPFramingTests {
    @Test func framesRoundTripThroughAnEchoServerIncludingLargeAndEmptyOnes() throws {
        try withLoop { loop in
            let received = Locked<[[UInt8]]>([])
            let done = Waiter<Void>()
            let big = (0..<(3 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 7) }
            let frames: [[UInt8]] = [[1], Array("hello".utf8), big, [0, 0, 0, 0]]
            let server = try loop.execute { try FrameEchoServer(loop: loop) }
            let client = Locked<FramedConnection?>(nil)
            try loop.execute {
                TCPStream.connect(loop: loop, to: server.address) { r in
                    guard case .success(let s) = r else { Issue.record("connect failed"); return done.fulfill(()) }
                    let c = FramedConnection(stream: s)
                    client.mutate { $0 = c }
                    c.onFrame = { f in
                        if received.mutate({ $0.append(f); return $0.count }) == frames.count { done.fulfill(()) }
                    }
                    c.start()
                    for f in frames { try! c.send(f) }
                    try! c.send([])  // keepalive: consumed, never delivered
                }
            }
            try done.wait(20)
            #expect(received.value == frames)
            try loop.execute {
                #expect(server.counters.framesReceived == 4)
                client.value?.close()
                server.close()
            }
        }
    }

    @Test func anOversizedFrameClosesOnlyThatConnectionAndIsCounted() throws {
        try withLoop { loop in
            let limits = FrameLimits(maxFrameBytes: 1024)
            let server = try loop.execute { try FrameEchoServer(loop: loop, limits: limits) }
            let closed = Waiter<MeshError?>()
            try loop.execute {
                TCPStream.connect(loop: loop, to: server.address) { r in
                    let s = try! r.get()
                    s.onClose = { closed.fulfill($0) }
                    s.startReading()
                    try! s.write(FrameDecoder.header(length: 1025) + [1, 2, 3])
                }
            }
            let reason = try closed.wait()
            #expect(reason?.code == .eof)  // the server hung up on us
            #expect(try loop.execute { server.counters.oversizedFrames } == 1)
            // The server still serves others.
            let echoed = Waiter<[UInt8]>()
            try loop.execute {
                TCPStream.connect(loop: loop, to: server.address) { r in
                    let c = FramedConnection(stream: try! r.get())
                    c.onFrame = { echoed.fulfill($0); c.close() }
                    c.start()
                    try! c.send([42])
                }
            }
            #expect(try echoed.wait() == [42])
            try loop.execute { server.close() }
        }
    }

    @Test func randomGarbageNeverCrashesTheServer() throws {
        try withLoop { loop in
            let limits = FrameLimits(maxFrameBytes: 4096)
            let server = try loop.execute { try FrameEchoServer(loop: loop, limits: limits) }
            var rng = SystemRandomNumberGenerator()
            for round in 0..<20 {
                let junk = (0..<(1 + round * 97)).map { _ in UInt8.random(in: 0...255, using: &rng) }
                let closed = Waiter<Void>()
                try loop.execute {
                    TCPStream.connect(loop: loop, to: server.address) { r in
                        let s = try! r.get()
                        s.startReading()
                        try! s.write(junk)
                        // Half the time hang up right away (truncated frame), else let the server act.
                        if round % 2 == 0 {
                            s.onClose = { _ in closed.fulfill(()) }
                            s.close()
                        } else {
                            let t = try! LoopTimer(loop: loop)
                            t.onFire = { s.close(); t.close(); closed.fulfill(()) }
                            t.start(after: .milliseconds(50))
                        }
                    }
                }
                try closed.wait()
            }
            #expect(eventually { (try? loop.execute { server.connections.isEmpty }) == true })
            try loop.execute { server.close() }
        }
    }

    @Test func aSilentPeerIsCutOffAfterTheIdleTimeout() throws {
        try withLoop { loop in
            let limits = FrameLimits(idleTimeout: .milliseconds(300), keepaliveInterval: .seconds(60))
            let server = try loop.execute { try FrameEchoServer(loop: loop, limits: limits) }
            let closed = Waiter<MeshError?>()
            let holder = Locked<TCPStream?>(nil)
            try loop.execute {
                TCPStream.connect(loop: loop, to: server.address) { r in
                    let s = try! r.get()  // raw stream: never sends a byte
                    holder.mutate { $0 = s }
                    s.onClose = { closed.fulfill($0) }
                    s.startReading()
                }
            }
            #expect(try closed.wait()?.code == .eof)
            #expect(try loop.execute { server.counters.idleTimeouts } == 1)
            try loop.execute { server.close() }
        }
    }

    @Test func keepalivesKeepAQuietButHealthyConnectionOpen() throws {
        try withLoop { loop in
            let limits = FrameLimits(idleTimeout: .milliseconds(1000), keepaliveInterval: .milliseconds(100))
            let server = try loop.execute { try FrameEchoServer(loop: loop, limits: limits) }
            let client = Locked<FramedConnection?>(nil)
            try loop.execute {
                TCPStream.connect(loop: loop, to: server.address) { r in
                    let c = FramedConnection(stream: try! r.get(), limits: limits)
                    client.mutate { $0 = c }
                    c.start()
                }
            }
            Thread.sleep(forTimeInterval: 2.5)  // 2.5 idle timeouts of silence from the application
            try loop.execute {
                #expect(client.value?.isOpen == true)
                #expect(server.connections.count == 1)
                #expect(server.counters.idleTimeouts == 0)
                #expect((client.value?.counters.keepalivesSent ?? 0) >= 3)
                client.value?.close()
                server.close()
            }
        }
    }

    @Test func aFullWriteQueueRefusesWritesAndDrainsWhenThePeerReads() throws {
        try withLoop { loop in
            let target = 64 << 20  // far more than loopback socket buffers hold
            let stalled = Waiter<Void>()
            let drained = Waiter<Void>()
            let refusals = Locked(0)
            let received = Locked(0)
            let peer = Locked<TCPStream?>(nil)
            let sender = Locked<TCPStream?>(nil)
            let listener = try loop.execute { try TCPListener(loop: loop, bind: loopback()) }
            try loop.execute {
                listener.onAccept = { s in peer.mutate { $0 = s } }  // accepted but not reading yet
                TCPStream.connect(loop: loop, to: listener.localAddress) { r in
                    let s = try! r.get()
                    sender.mutate { $0 = s }
                    s.maxWriteQueueBytes = 1 << 20
                    let chunk = [UInt8](repeating: 1, count: 256 << 10)
                    var accepted = 0
                    func pump() {
                        while accepted < target {
                            do { try s.write(chunk); accepted += chunk.count } catch {
                                #expect(error.code == .writeBufferFull)
                                refusals.mutate { $0 += 1 }
                                return
                            }
                        }
                    }
                    s.onDrain = {
                        if accepted >= target { drained.fulfill(()) } else { pump() }
                    }
                    pump()
                    // Once writes stop draining for a while, the peer's buffers are full.
                    let t = try! LoopTimer(loop: loop)
                    var last = -1
                    t.onFire = {
                        if accepted == last { stalled.fulfill(()); t.close() }
                        last = accepted
                    }
                    t.start(after: .milliseconds(100), repeating: .milliseconds(100))
                }
            }
            try stalled.wait()
            try loop.execute {
                #expect(sender.value!.writeQueueBytes > 0)
                #expect(refusals.value >= 1)
                let p = peer.value!
                p.onRead = { b in received.mutate { $0 += b.count } }
                p.startReading()
            }
            try drained.wait(30)
            #expect(eventually { received.value == target })
            try loop.execute {
                sender.value?.close(); peer.value?.close(); listener.close()
            }
        }
    }

    @Test func connectingToAClosedPortFailsFastWithConnectionRefused() throws {
        try withLoop { loop in
            let result = Waiter<MeshError?>()
            try loop.execute {
                // Find a free port, then close it.
                let l = try TCPListener(loop: loop, bind: loopback())
                let addr = l.localAddress
                l.close()
                TCPStream.connect(loop: loop, to: addr) { r in
                    if case .failure(let e) = r { result.fulfill(e) } else { result.fulfill(nil) }
                }
            }
            #expect(try result.wait()?.code.rawValue == "uv.ECONNREFUSED")
        }
    }

    @Test func connectGivesUpAfterItsTimeoutWhenThePeerNeverAnswers() throws {
        // A listener whose accept queue is full: Linux drops further SYNs, so connect hangs.
        let (fd, port) = boundLoopbackSocket()
        defer { close(fd) }
        _ = listen(fd, 0)
        try withLoop { loop in
            let results = Locked<[MeshError.Code?]>([])
            let all = Waiter<Void>()
            try loop.execute {
                var held: [TCPStream] = []
                for _ in 0..<4 {
                    TCPStream.connect(loop: loop, to: loopback(port), timeout: .milliseconds(500)) { r in
                        switch r {
                        case .success(let s): held.append(s)
                        case .failure(let e): results.mutate { $0.append(e.code) }
                        }
                        if held.count + results.value.count == 4 {
                            held.forEach { $0.close() }
                            all.fulfill(())
                        }
                    }
                }
            }
            try all.wait()
            #expect(results.value.contains(.connectTimeout))
        }
    }

    @Test func connectingByHostNameResolvesIt() throws {
        try withLoop { loop in
            let server = try loop.execute { try FrameEchoServer(loop: loop) }
            let result = Waiter<Result<TCPStream, MeshError>>()
            try loop.execute {
                TCPStream.connect(loop: loop, to: Endpoint(host: "localhost", port: server.address.port)) { result.fulfill($0) }
            }
            let s = try result.wait().get()
            try loop.execute { s.close(); server.close() }
        }
    }
}

@Suite struct UnixSocketTests {
    @Test func theControlSocketIsCreatedOwnerOnlyAndRemovedOnClose() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let path = dir.file("control.sock")
        try withLoop { loop in
            let l = try loop.execute { try UnixListener(loop: loop, path: path) }
            var st = stat()
            #expect(stat(path, &st) == 0)
            #expect(st.st_mode & 0o777 == 0o600)
            let echoed = Waiter<[UInt8]>()
            try loop.execute {
                l.onAccept = { s in
                    s.onRead = { b in try? s.write(Array(b)) }
                    s.startReading()
                }
                PipeStream.connect(loop: loop, path: path) { r in
                    let c = try! r.get()
                    c.onRead = { b in echoed.fulfill(Array(b)); c.close() }
                    c.startReading()
                    try! c.write([9, 8, 7])
                }
            }
            #expect(try echoed.wait() == [9, 8, 7])
            try loop.execute { l.close() }
        }
        #expect(access(path, F_OK) != 0)
    }

    @Test func aStaleSocketFileIsReplacedButALiveServerIsNot() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let path = dir.file("c.sock")
        // Make a stale socket: bound, never listening, then the fd closed.
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        #expect(rc == 0)
        close(fd)
        #expect(access(path, F_OK) == 0)
        try withLoop { loop in
            try loop.execute {
                let l = try UnixListener(loop: loop, path: path)
                do {
                    _ = try UnixListener(loop: loop, path: path)
                    Issue.record("second listener on a live socket succeeded")
                } catch {
                    #expect((error as? MeshError)?.code.rawValue == "unix.in_use")
                }
                l.close()
            }
        }
    }
}

@Suite struct NodeSocketsTests {
    @Test func tcpAndUDPShareOnePortEvenWhenAskedForPortZero() throws {
        try withLoop { loop in
            try loop.execute {
                var all: [NodeSockets] = []
                for _ in 0..<5 {
                    let s = try NodeSockets.bind(loop: loop, listen: Endpoint("127.0.0.1:0")!)
                    #expect(s.tcp.localAddress.port == s.udp.localAddress.port)
                    #expect(s.localAddress.port != 0)
                    all.append(s)
                }
                #expect(Set(all.map(\.localAddress.port)).count == 5)
                // A fixed port in use fails with the port named.
                do throws(MeshError) {
                    _ = try NodeSockets.bind(loop: loop, listen: all[0].localAddress.endpoint)
                    Issue.record("bound a port in use")
                } catch {
                    #expect(error.code.rawValue == "uv.EADDRINUSE")
                }
                do throws(MeshError) {
                    _ = try NodeSockets.bind(loop: loop, listen: Endpoint("localhost:0")!)
                    Issue.record("bound a host name")
                } catch {
                    #expect(error.code == .invalidAddress)
                }
                all.forEach { $0.close() }
            }
        }
    }
}

@Suite struct LogThrottleTests {
    @Test func aFloodFromOnePeerLogsOncePerIntervalWithTheSuppressedCount() {
        var t = LogThrottle<String>(interval: .seconds(60))
        #expect(t.admit("peerA/bad_signature", nowMilliseconds: 0) == 0)
        for ms in stride(from: UInt64(1), to: 60_000, by: 1000) { #expect(t.admit("peerA/bad_signature", nowMilliseconds: ms) == nil) }
        #expect(t.admit("peerB/bad_signature", nowMilliseconds: 1) == 0)  // other keys are independent
        #expect(t.admit("peerA/bad_signature", nowMilliseconds: 60_000) == 60)
        var small = LogThrottle<Int>(interval: .seconds(1), maxKeys: 3)
        for k in 0..<100 { _ = small.admit(k, nowMilliseconds: 0) }
        #expect(small.trackedKeys <= 3)
    }
}

@Suite struct FrameDecoderTests {
    @Test func framesSplitAtEveryPossibleByteBoundaryDecodeTheSame() throws {
        let frames: [[UInt8]] = [[], [1], Array(repeating: 7, count: 300), [2, 3]]
        var wire: [UInt8] = []
        for f in frames { wire += FrameDecoder.header(length: f.count) + f }
        for split in 0...wire.count {
            var d = FrameDecoder(maxFrameBytes: 1000)
            var out: [[UInt8]] = []
            d.feed(Array(wire[..<split]))
            while let f = try d.next() { out.append(f) }
            d.feed(Array(wire[split...]))
            while let f = try d.next() { out.append(f) }
            #expect(out == frames)
            #expect(d.bufferedBytes == 0)
        }
    }

    @Test func aLengthOverTheLimitIsAnErrorEvenBeforeThePayloadArrives() {
        var d = FrameDecoder(maxFrameBytes: 10)
        d.feed([0, 0, 0, 11])
        #expect(throws: MeshError.self) { _ = try d.next() }
        var ok = FrameDecoder(maxFrameBytes: 10)
        ok.feed([0, 0, 0, 10] + [UInt8](repeating: 0, count: 9))
        #expect((try? ok.next()) == .some(nil))  // waits for the last byte
    }

    @Test func closingFromInsideOnFrameStopsDelivery() throws {
        try withLoop { loop in
            let server = try loop.execute { try FrameEchoServer(loop: loop) }
            let delivered = Locked(0)
            let closed = Waiter<Void>()
            try loop.execute {
                TCPStream.connect(loop: loop, to: server.address) { r in
                    let s = try! r.get()
                    let c = FramedConnection(stream: s)
                    c.onFrame = { _ in delivered.mutate { $0 += 1 }; c.close() }
                    c.onClose = { _ in closed.fulfill(()) }
                    c.start()
                    // Ten frames in one write: the echo comes back in (at most) a few reads.
                    var batch: [UInt8] = []
                    for i in 0..<10 { batch += FrameDecoder.header(length: 1) + [UInt8(i)] }
                    try! s.write(batch)
                }
            }
            try closed.wait()
            #expect(delivered.value == 1)
            try loop.execute { server.close() }
        }
    }
}

@Suite struct UDPFuzzTests {
    @Test func randomDatagramsOfAnySizeNeverHurtTheReceiver() throws {
        try withLoop { loop in
            let received = Locked(0)
            let (rx, tx) = try loop.execute {
                let rx = try UDPSocket(loop: loop, bind: loopback(), maxDatagramBytes: 1400)
                let tx = try UDPSocket(loop: loop, bind: loopback(), maxDatagramBytes: UDPSocket.absoluteMaxDatagramBytes)
                try rx.startReceiving { b, _ in
                    precondition(b.count <= 1400)
                    received.mutate { $0 += 1 }
                }
                return (rx, tx)
            }
            // Small batches so the receiver (same loop) drains its socket buffer in between.
            for batch in 0..<30 {
                try loop.execute {
                    var rng = SplitMix64(seed: UInt64(batch))
                    for _ in 0..<10 {
                        let n = Int.random(in: 0...8000, using: &rng)
                        try? tx.send((0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }, to: rx.localAddress)
                    }
                }
                usleep(5000)
            }
            #expect(eventually { (try? loop.execute { rx.stats.datagramsReceived + rx.stats.droppedTruncated }) ?? 0 >= 250 })
            try loop.execute {
                #expect(rx.stats.droppedTruncated > 0)
                #expect(rx.stats.datagramsReceived == received.value)
                rx.close(); tx.close()
            }
        }
    }
}

@Suite struct FrameLimitChangeTests {
    /// A server whose connections accept `initialLimit` bytes until the first frame, then
    /// `raisedLimit` (like PROTOCOL.md §8.1: 512 during the handshake, 16 MiB after).
    final class Server: @unchecked Sendable {
        let listener: TCPListener
        let counters = FrameCounters()
        var frames: [Int] = []
        var conns: [FramedConnection] = []
        var closeReasons: [MeshError?] = []
        init(loop: EventLoop, raisedLimit: Int?) throws {
            listener = try TCPListener(loop: loop, bind: loopback())
            listener.onAccept = { [unowned self] s in
                let c = FramedConnection(stream: s, limits: FrameLimits(maxFrameBytes: 16 << 20), counters: self.counters)
                c.maxFrameBytes = 512
                c.onFrame = { [weak self, unowned c] f in
                    self?.frames.append(f.count)
                    if let raisedLimit { c.maxFrameBytes = raisedLimit }
                }
                c.onClose = { [weak self] e in self?.closeReasons.append(e) }
                self.conns.append(c)
                c.start()
            }
        }
    }

    func run(raisedLimit: Int?, wire: [UInt8], closeAfterWrite: Bool = false) throws -> (frames: [Int], counters: FrameCounters, reasons: [MeshError?]) {
        var out: ([Int], FrameCounters, [MeshError?]) = ([], FrameCounters(), [])
        try withLoop { loop in
            let server = try loop.execute { try Server(loop: loop, raisedLimit: raisedLimit) }
            let client = Locked<TCPStream?>(nil)
            try loop.execute {
                TCPStream.connect(loop: loop, to: server.listener.localAddress) { r in
                    let s = try! r.get()
                    client.mutate { $0 = s }
                    s.onRead = { _ in }
                    s.startReading()
                    try! s.write(wire)  // everything in one write: it arrives in as few reads as possible
                    if closeAfterWrite { s.close() }
                }
            }
            _ = eventually(5) { (try? loop.execute { server.closeReasons.count == 1 || server.frames.count == 2 }) == true }
            Thread.sleep(forTimeInterval: 0.1)
            out = try loop.execute {
                client.value?.close()
                server.conns.forEach { $0.close() }
                server.listener.close()
                return (server.frames, server.counters, server.closeReasons)
            }
        }
        return out
    }

    @Test func aLimitRaisedAfterTheFirstFrameAppliesToTheNextFrameInTheSameRead() throws {
        let wire = FrameDecoder.header(length: 100) + [UInt8](repeating: 1, count: 100)
            + FrameDecoder.header(length: 100_000) + [UInt8](repeating: 2, count: 100_000)
        let raised = try run(raisedLimit: 16 << 20, wire: wire)
        #expect(raised.frames == [100, 100_000])
        #expect(raised.counters.oversizedFrames == 0)
        let kept = try run(raisedLimit: nil, wire: wire)
        #expect(kept.frames == [100])
        #expect(kept.counters.oversizedFrames == 1)
    }

    @Test func aPeerHangingUpMidFrameIsCountedAsTruncated() throws {
        let wire = FrameDecoder.header(length: 100) + [UInt8](repeating: 1, count: 10)
        let r = try run(raisedLimit: nil, wire: wire, closeAfterWrite: true)
        #expect(r.frames.isEmpty)
        #expect(r.counters.truncatedFrames == 1)
        #expect(r.reasons.first??.code == .eof)
    }
}
