import Foundation
import Testing
@testable import Mesh

@Suite struct EventLoopTests {
    @Test func postedClosuresRunOnTheLoopThreadInOrder() throws {
        try withLoop { loop in
            let seen = Locked<[Int]>([])
            let onLoop = Locked(true)
            for i in 0..<100 {
                loop.post {
                    if !loop.isInLoopThread { onLoop.mutate { $0 = false } }
                    seen.mutate { $0.append(i) }
                }
            }
            let count = try loop.execute { seen.value.count }
            #expect(count == 100)
            #expect(seen.value == Array(0..<100))
            #expect(onLoop.value)
            #expect(!loop.isInLoopThread)
        }
    }

    @Test func postsFromManyThreadsAllRun() throws {
        try withLoop { loop in
            let total = Locked(0)
            DispatchQueue.concurrentPerform(iterations: 8) { _ in
                for _ in 0..<500 { loop.post { total.mutate { $0 += 1 } } }
            }
            #expect(eventually { total.value == 4000 })
        }
    }

    @Test func executeRethrowsErrorsFromTheLoop() throws {
        try withLoop { loop in
            #expect(throws: MeshError.self) {
                try loop.execute { throw MeshError(.closed, "boom") }
            }
        }
    }

    @Test func postAfterShutdownIsRefusedAndShutdownIsIdempotent() throws {
        let loop = try EventLoop()
        #expect(loop.shutdown())
        #expect(loop.post {} == false)
        #expect(loop.shutdown())
        #expect(throws: MeshError.self) { try loop.execute { 1 } }
    }

    @Test func stopClosesAndCountsHandlesTheOwnerForgot() throws {
        let loop = try EventLoop()
        try loop.execute {
            let t = try LoopTimer(loop: loop)
            t.start(after: .seconds(60))
        }
        #expect(loop.shutdown())
        #expect(loop.leakedHandleCount == 1)
    }

    @Test func oneShotTimerFiresOnceAndRepeatingTimerRepeatsUntilStopped() throws {
        try withLoop { loop in
            let once = Locked(0)
            let rep = Locked(0)
            let done = Waiter<Void>()
            try loop.execute {
                let a = try LoopTimer(loop: loop) { once.mutate { $0 += 1 } }
                a.start(after: .milliseconds(10))
                let b = try LoopTimer(loop: loop)
                b.onFire = {
                    if rep.mutate({ $0 += 1; return $0 }) == 5 {
                        b.stop()
                        #expect(!b.isActive)
                        // Let the one-shot prove it does not fire again.
                        let c = try! LoopTimer(loop: loop)
                        c.onFire = { a.close(); b.close(); c.close(); done.fulfill(()) }
                        c.start(after: .milliseconds(50))
                    }
                }
                b.start(after: .milliseconds(5), repeating: .milliseconds(5))
            }
            try done.wait()
            #expect(once.value == 1)
            #expect(rep.value == 5)
        }
    }

    @Test func rearmingATimerReplacesItsSchedule() throws {
        try withLoop { loop in
            let fired = Waiter<UInt64>()
            let t0 = Locked<UInt64>(0)
            try loop.execute {
                let t = try LoopTimer(loop: loop)
                t.onFire = { fired.fulfill(loop.nowMilliseconds); t.close() }
                t.start(after: .milliseconds(20))
                t.start(after: .milliseconds(200))  // re-armed before it fired
                t0.mutate { $0 = loop.nowMilliseconds }
            }
            let at = try fired.wait()
            #expect(at - t0.value >= 190)
        }
    }

    @Test func signalsAreDeliveredAsCallbacksOnTheLoop() throws {
        try withLoop { loop in
            let got = Waiter<Int32>()
            let watchers = try loop.execute {
                try SignalWatcher.watch(loop: loop, [SIGUSR2]) { sig in
                    #expect(loop.isInLoopThread)
                    got.fulfill(sig)
                }
            }
            kill(getpid(), SIGUSR2)  // process-directed: worker threads block signals
            #expect(try got.wait() == SIGUSR2)
            try loop.execute { watchers.forEach { $0.close() } }
        }
    }
}
