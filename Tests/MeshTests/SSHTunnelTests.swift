import Foundation
import TestSupport
import Testing
@testable import Mesh

@Suite struct SSHArgumentTests {
    @Test func theCommandLineKeepsBatchModeFirstAndUserOptionsBeforeDefaults() {
        var o = SSHOptions(host: "gpu-3", port: 2222, user: "ubuntu", keyPath: "/k", extraArguments: ["-o", "ConnectTimeout=3"])
        o.strictHostKeyChecking = "accept-new"
        let a = SSHTunnel.arguments(o, target: Endpoint("10.0.0.5:7000")!)
        #expect(Array(a.prefix(4)) == ["-o", "BatchMode=yes", "-o", "ConnectTimeout=3"])
        #expect(a.suffix(4) == ["-W", "10.0.0.5:7000", "--", "gpu-3"])
        #expect(a.contains("StrictHostKeyChecking=accept-new"))
        #expect(a.contains("IdentitiesOnly=yes"))
        let i = a.firstIndex(of: "-p")!
        #expect(a[i + 1] == "2222")
        let l = a.firstIndex(of: "-l")!
        #expect(a[l + 1] == "ubuntu")
    }

    @Test func sshStderrMapsToClearErrors() {
        let o = SSHOptions(host: "h", port: 22)
        let t = Endpoint("127.0.0.1:7000")!
        func code(_ stderr: String, status: Int64 = 255) -> MeshError.Code? {
            SSHTunnel.mapExit(ProcessExit(status: status, signal: 0, stderr: stderr, stoppedByUs: false), options: o, target: t)?.code
        }
        #expect(code("root@127.0.0.1: Permission denied (publickey).") == .sshAuthFailed)
        #expect(code("No ED25519 host key is known for [127.0.0.1]:2222 and you have requested strict checking.\nHost key verification failed.") == .sshHostKeyUnknown)
        #expect(code("@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\nHost key verification failed.") == .sshHostKeyChanged)
        #expect(code("ssh: connect to host h port 22: Connection refused") == .sshConnectionRefused)
        #expect(code("ssh: connect to host h port 22: Connection timed out") == .sshTimeout)
        #expect(code("ssh: Could not resolve hostname h: Name or service not known") == .sshResolveFailed)
        #expect(code("channel 0: open failed: connect failed: Connection refused\nstdio forwarding failed") == .sshForwardFailed)
        #expect(code("Timeout, server h not responding.") == .sshConnectionLost)
        #expect(code("something new") == .sshFailed)
        #expect(code("", status: 0) == .eof)
    }
}

@Suite(.serialized, .ownThread(timeLimit: .minutes(2))) struct SSHTunnelIntegrationTests {
    func open(_ loop: EventLoop, _ o: SSHOptions, _ target: Endpoint, payload: [UInt8]) throws -> (got: [UInt8], closeReason: MeshError?) {
        let done = Waiter<[UInt8]>()
        let closed = Waiter<MeshError?>()
        try loop.execute {
            let s = try SSHTunnel.open(loop: loop, options: o, target: target)
            echoRoundTrip(loop: loop, stream: s, payload: payload, done: done)
            let inner = s.onClose
            s.onClose = { e in inner?(e); closed.fulfill(e) }
        }
        let got = try done.wait(20, "echo through ssh")
        return (got, try closed.wait(20, "tunnel close"))
    }

    @Test func bytesRoundTripThroughARealSSHTunnelToAnEchoServer() throws {
        let sshd = try SSHDFixture()
        defer { sshd.stop() }
        try withLoop { loop in
            let echo = try loop.execute { try ByteEchoServer(loop: loop) }
            let payload = (0..<(2 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 13) }
            let (got, reason) = try open(loop, sshd.sshOptions(), Endpoint(host: "127.0.0.1", port: echo.port), payload: payload)
            #expect(got == payload, "sshd log: \(sshd.log)")
            #expect(reason == nil)  // we closed it
            try loop.execute { echo.close() }
        }
    }

    @Test func framedConnectionsWorkOverAnSSHTunnelLikeOverTCP() throws {
        let sshd = try SSHDFixture()
        defer { sshd.stop() }
        try withLoop { loop in
            let server = try loop.execute { try FrameEchoServer(loop: loop) }
            let got = Waiter<[UInt8]>()
            let closed = Waiter<MeshError?>()
            let conn = try loop.execute {
                let s = try SSHTunnel.open(loop: loop, options: sshd.sshOptions(), target: server.address.endpoint)
                let c = FramedConnection(stream: s)
                c.onFrame = { got.fulfill($0) }
                c.onClose = { closed.fulfill($0) }
                c.start()
                try c.send(Array("over ssh".utf8))
                return c
            }
            #expect(try got.wait(20) == Array("over ssh".utf8))
            try loop.execute { conn.close(); server.close() }
            #expect(try closed.wait() == nil)  // ssh exits asynchronously; wait before stopping the loop
        }
    }

    @Test func aWrongKeyIsReportedAsAnAuthenticationFailure() throws {
        let sshd = try SSHDFixture()
        defer { sshd.stop() }
        let other = TempDir()
        defer { other.cleanup() }
        try SSHDFixture.run(["/usr/bin/ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", other.file("k")])
        try withLoop { loop in
            var o = sshd.sshOptions()
            o.keyPath = other.file("k")
            let (_, reason) = try open(loop, o, Endpoint(host: "127.0.0.1", port: 9), payload: [1])
            #expect(reason?.code == .sshAuthFailed, "\(String(describing: reason))")
            #expect(reason?.hint?.contains("authorized_keys") == true)
        }
    }

    @Test func anUntrustedHostKeyIsRefusedInBatchMode() throws {
        let sshd = try SSHDFixture()
        defer { sshd.stop() }
        try withLoop { loop in
            var o = sshd.sshOptions()
            o.knownHostsFile = "/dev/null"
            let (_, reason) = try open(loop, o, Endpoint(host: "127.0.0.1", port: 9), payload: [1])
            #expect(reason?.code == .sshHostKeyUnknown, "\(String(describing: reason))")
        }
    }

    @Test func anUnreachableTargetBehindTheServerIsAForwardFailure() throws {
        let sshd = try SSHDFixture()
        defer { sshd.stop() }
        try withLoop { loop in
            let (_, reason) = try open(loop, sshd.sshOptions(), Endpoint(host: "127.0.0.1", port: freeLoopbackPort()), payload: [1])
            #expect(reason?.code == .sshForwardFailed, "\(String(describing: reason))")
        }
    }

    @Test func aClosedSSHPortIsAConnectionRefused() throws {
        try withLoop { loop in
            var o = SSHOptions(host: "127.0.0.1", port: freeLoopbackPort(), extraArguments: ["-F", "/dev/null"])
            o.knownHostsFile = "/dev/null"
            let (_, reason) = try open(loop, o, Endpoint(host: "127.0.0.1", port: 9), payload: [1])
            #expect(reason?.code == .sshConnectionRefused, "\(String(describing: reason))")
        }
    }
}
