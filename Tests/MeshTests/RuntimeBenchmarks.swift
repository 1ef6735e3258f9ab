import Foundation
import TestSupport
import Testing
@testable import Mesh

/// Throughput of framed streams; prints numbers, asserts only correctness.
/// Run with: MESH_BENCH=1 swift test -c release --filter RuntimeBenchmarks
@Suite(.serialized, .ownThread(), .enabled(if: ProcessInfo.processInfo.environment["MESH_BENCH"] != nil))
struct RuntimeBenchmarks {
    /// Sends `totalBytes` in `frameBytes` frames over a stream from `open` to a counting server;
    /// returns bytes per second.
    func measure(_ label: String, totalBytes: Int, frameBytes: Int = 1 << 20,
                 open: @escaping @Sendable (EventLoop, Endpoint, @escaping (any ByteStream) -> Void) -> Void) throws -> Double {
        var rate = 0.0
        try withLoop { loop in
            let done = Waiter<UInt64>()
            let received = Locked(0)
            let start = Locked<UInt64>(0)
            let listener = try loop.execute {
                let l = try TCPListener(loop: loop, bind: loopback())
                l.onAccept = { s in
                    let c = FramedConnection(stream: s, limits: FrameLimits(maxFrameBytes: 16 << 20))
                    c.onFrame = { f in
                        if received.mutate({ $0 += f.count; return $0 }) >= totalBytes {
                            done.fulfill(EventLoop.monotonicNanoseconds)
                            c.close()
                        }
                    }
                    c.start()
                }
                return l
            }
            let frame = [UInt8](repeating: 0xA5, count: frameBytes)
            let sender = Locked<FramedConnection?>(nil)
            try loop.execute {
                open(loop, listener.localAddress.endpoint) { stream in
                    let c = FramedConnection(stream: stream, limits: FrameLimits(maxWriteQueueBytes: 8 << 20))
                    sender.mutate { $0 = c }
                    var sent = 0
                    func pump() {
                        while sent < totalBytes {
                            do { try c.send(frame) } catch { return }
                            sent += frame.count
                        }
                    }
                    c.onDrain = { pump() }
                    c.start()
                    start.mutate { $0 = EventLoop.monotonicNanoseconds }
                    pump()
                }
            }
            let end = try done.wait(300, label)
            rate = Double(totalBytes) / (Double(end - start.value) / 1e9)
            print("BENCH \(label): \(totalBytes >> 20) MiB in \(String(format: "%.2f", Double(end - start.value) / 1e9)) s = \(String(format: "%.0f", rate / 1e6)) MB/s")
            try loop.execute {
                sender.value?.close()
                listener.close()
            }
            Thread.sleep(forTimeInterval: 0.5)  // let ssh exit
        }
        return rate
    }

    @Test func framedThroughputDirectAndThroughSSHAgainstScp() throws {
        let direct = try measure("direct TCP framed", totalBytes: 2 << 30) { loop, target, cb in
            TCPStream.connect(loop: loop, to: target) { cb(try! $0.get()) }
        }
        let sshd = try SSHDFixture()
        defer { sshd.stop() }
        let viaSSH = try measure("ssh -W framed", totalBytes: 512 << 20) { loop, target, cb in
            cb(try! SSHTunnel.open(loop: loop, options: sshd.sshOptions(), target: target))
        }
        // scp of the same amount through the same sshd.
        let dir = TempDir()
        defer { dir.cleanup() }
        let src = dir.file("src.bin")
        _ = FileManager.default.createFile(atPath: src, contents: Data(repeating: 0xA5, count: 512 << 20))
        let o = sshd.sshOptions()
        let t0 = Date()
        try SSHDFixture.run(["/usr/bin/scp", "-q", "-F", "/dev/null", "-P", String(o.port), "-i", o.keyPath!, "-o", "BatchMode=yes",
                             "-o", "UserKnownHostsFile=\(o.knownHostsFile!)", src, "\(o.user!)@127.0.0.1:\(dir.file("dst.bin"))"])
        let scp = Double(512 << 20) / Date().timeIntervalSince(t0)
        print("BENCH scp: \(String(format: "%.0f", scp / 1e6)) MB/s; direct/scp = \(String(format: "%.2f", direct / scp)); ssh-tunnel/scp = \(String(format: "%.2f", viaSSH / scp))")
    }

    @Test func a50MBPerSecondLimitHoldsOverA20SecondRealTransfer() throws {
        let bytes = 1_000_000_000  // 20 s at 50 MB/s
        let seconds = try PacedSenderTests().run(globalBytesPerSecond: 50_000_000, perPeerBytesPerSecond: nil,
                                                 connections: 1, perConnectionBytes: bytes)
        let rate = Double(bytes) / seconds
        print("BENCH paced 50 MB/s: \(bytes / 1_000_000) MB in \(String(format: "%.2f", seconds)) s = \(String(format: "%.1f", rate / 1e6)) MB/s (\(String(format: "%+.1f", (rate / 50e6 - 1) * 100))%)")
        #expect(abs(rate / 50e6 - 1) < 0.10)
    }
}
