import Foundation
import TestSupport
import Testing
@testable import Mesh

@Suite(.ownThread(timeLimit: .minutes(2))) struct ProcessStreamTests {
    @Test func framesRoundTripThroughACatChildLikeThroughATunnel() throws {
        try withLoop { loop in
            let got = Locked<[[UInt8]]>([])
            let done = Waiter<Void>()
            let closed = Waiter<MeshError?>()
            let payloads: [[UInt8]] = [[1, 2, 3], [UInt8](repeating: 5, count: 1 << 20), Array("end".utf8)]
            let conn = try loop.execute {
                let p = try ProcessStream(loop: loop, executable: "cat", arguments: [])
                let c = FramedConnection(stream: p)
                c.onFrame = { f in if got.mutate({ $0.append(f); return $0.count }) == payloads.count { done.fulfill(()) } }
                c.onClose = { closed.fulfill($0) }
                c.start()
                for f in payloads { try c.send(f) }
                return c
            }
            try done.wait(20)
            #expect(got.value == payloads)
            let pid = try loop.execute { (conn.stream as! ProcessStream).pid }
            #expect(pid > 0)
            try loop.execute { conn.close() }
            #expect(try closed.wait() == nil)
            #expect(eventually { kill(pid, 0) != 0 })  // the child is gone
        }
    }

    @Test func aFailingChildClosesTheStreamWithItsStatusAndStderr() throws {
        try withLoop { loop in
            let closed = Waiter<MeshError?>()
            try loop.execute {
                let p = try ProcessStream(loop: loop, executable: "sh", arguments: ["-c", "echo 'something broke' >&2; exit 3"])
                p.onClose = { closed.fulfill($0) }
                p.onRead = { _ in }
                p.startReading()
            }
            let e = try closed.wait()
            #expect(e?.code == .processExited)
            #expect(e?.message == "process exited with status 3: something broke")
        }
    }

    @Test func aCustomExitMapperTurnsStderrIntoAClearError() throws {
        try withLoop { loop in
            let closed = Waiter<MeshError?>()
            try loop.execute {
                let p = try ProcessStream(loop: loop, executable: "sh", arguments: ["-c", "echo 'Permission denied (publickey).' >&2; exit 255"])
                p.mapExit = { e in
                    e.stderr.contains("Permission denied") ? MeshError(.init("ssh.auth_failed"), "auth failed") : nil
                }
                p.onClose = { closed.fulfill($0) }
                p.startReading()
            }
            #expect(try closed.wait()?.code.rawValue == "ssh.auth_failed")
        }
    }

    @Test func closingEscalatesToSIGKILLForAChildThatIgnoresSIGTERM() throws {
        try withLoop { loop in
            let closed = Waiter<MeshError?>()
            let started = Waiter<Void>()
            let p = try loop.execute {
                let p = try ProcessStream(loop: loop, executable: "sh", arguments: ["-c", "trap '' TERM; echo ready; sleep 30"])
                p.exitGrace = .milliseconds(300)
                p.onClose = { closed.fulfill($0) }
                p.onRead = { _ in started.fulfill(()) }
                p.startReading()
                return p
            }
            try started.wait()
            let pid = try loop.execute { p.pid }
            #expect(kill(pid, 0) == 0)
            try loop.execute { p.close() }
            #expect(try closed.wait() == nil)
            #expect(eventually { kill(pid, 0) != 0 })
            #expect(try loop.execute { p.exit?.signal } == SIGKILL)
        }
    }

    @Test func writingToAChildThatExitedClosesTheStreamInsteadOfKillingUs() throws {
        try withLoop { loop in
            let closed = Waiter<MeshError?>()
            try loop.execute {
                let p = try ProcessStream(loop: loop, executable: "sh", arguments: ["-c", "exec 0<&-; echo bye >&2; exit 1"])
                let chunk = [UInt8](repeating: 0, count: 1 << 16)
                let t = try LoopTimer(loop: loop)
                t.onFire = { try? p.write(chunk) }
                t.start(after: .milliseconds(1), repeating: .milliseconds(1))
                p.onClose = { t.close(); closed.fulfill($0) }
                p.onRead = { _ in }
                p.startReading()
            }
            let e = try closed.wait()
            #expect(e?.code == .processExited)
        }
    }

    @Test func aMissingExecutableFailsToSpawnWithAHint() throws {
        try withLoop { loop in
            try loop.execute {
                do {
                    _ = try ProcessStream(loop: loop, executable: "/nonexistent/ssh", arguments: [])
                    Issue.record("spawn succeeded")
                } catch {
                    #expect((error as? MeshError)?.code == .spawnFailed)
                    #expect((error as? MeshError)?.hint?.contains("installed") == true)
                }
            }
        }
    }
}
