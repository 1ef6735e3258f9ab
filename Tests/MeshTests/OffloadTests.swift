import Foundation
import Testing
@testable import Mesh

@Suite struct OffloadTests {
    @Test func workRunsOffTheLoopAndItsResultComesBackOnTheLoop() throws {
        try withLoop { loop in
            let results = Locked<[Int]>([])
            let workOnLoop = Locked(false)
            let completionOffLoop = Locked(false)
            let done = Waiter<Void>()
            try loop.execute {
                for i in 0..<32 {
                    loop.offload({ () -> Int in
                        if loop.isInLoopThread { workOnLoop.mutate { $0 = true } }
                        usleep(2000)  // blocking work
                        return i * i
                    }, completion: { r in
                        if !loop.isInLoopThread { completionOffLoop.mutate { $0 = true } }
                        if results.mutate({ $0.append(r); return $0.count }) == 32 { done.fulfill(()) }
                    })
                }
            }
            try done.wait()
            #expect(results.value.sorted() == (0..<32).map { $0 * $0 })
            #expect(!workOnLoop.value)
            #expect(!completionOffLoop.value)
        }
    }

    @Test func theLoopKeepsServingWhileWorkBlocks() throws {
        try withLoop { loop in
            let ticks = Locked(0)
            let done = Waiter<Void>()
            let timer = try loop.execute {
                let t = try LoopTimer(loop: loop) { ticks.mutate { $0 += 1 } }
                t.start(after: .milliseconds(10), repeating: .milliseconds(10))
                loop.offload({ usleep(300_000); return 1 }, completion: { _ in done.fulfill(()) })
                return t
            }
            try done.wait()
            #expect(ticks.value >= 3)  // the timer kept firing during the 300 ms of blocking work
            try loop.execute { timer.close() }
        }
    }
}
