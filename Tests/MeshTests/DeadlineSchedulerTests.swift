import Foundation
import Testing
@testable import Mesh

@Suite struct DeadlineSchedulerTests {
    @Test func deadlinesFireInOrderAndReschedulingOrCancellingTakesEffect() throws {
        try withLoop { loop in
            let fired = Locked<[String]>([])
            let done = Waiter<Void>()
            let s = try loop.execute {
                let s = try DeadlineScheduler<String>(loop: loop)
                s.onFire = { id in
                    fired.mutate { $0.append(id) }
                    if id == "last" { done.fulfill(()) }
                }
                let now = loop.nowMilliseconds
                try s.schedule("c", atMilliseconds: now + 60)
                try s.schedule("a", atMilliseconds: now + 20)
                try s.schedule("b", atMilliseconds: now + 40)
                try s.schedule("moved", atMilliseconds: now + 10)
                try s.schedule("moved", atMilliseconds: now + 50)  // replaces +10
                try s.schedule("cancelled", atMilliseconds: now + 30)
                s.cancel("cancelled")
                try s.schedule("past", atMilliseconds: now > 5 ? now - 5 : 0)
                try s.schedule("last", after: .milliseconds(100))
                #expect(s.count == 6)
                return s
            }
            try done.wait()
            #expect(fired.value == ["past", "a", "b", "moved", "c", "last"])
            try loop.execute {
                #expect(s.count == 0)
                s.close()
            }
        }
    }

    @Test func manyReschedulesKeepMemoryBoundedAndFireOncePerID() throws {
        try withLoop { loop in
            let fired = Locked<[Int: Int]>([:])
            let s = try loop.execute {
                let s = try DeadlineScheduler<Int>(loop: loop) { id in fired.mutate { $0[id, default: 0] += 1 } }
                for round in 0..<200 {
                    for id in 0..<50 { try s.schedule(id, after: .milliseconds(Int64(20 + round % 7))) }
                }
                return s
            }
            #expect(eventually { fired.value.count == 50 })
            Thread.sleep(forTimeInterval: 0.1)
            #expect(fired.value.values.allSatisfy { $0 == 1 })
            try loop.execute { s.close() }
        }
    }
}
