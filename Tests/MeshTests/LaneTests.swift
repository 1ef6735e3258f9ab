import Foundation
import TestSupport
import Testing

/// The `.ownThread` trait that keeps heavy tests off Swift concurrency's cooperative pool.
@Suite struct LaneTests {
    static let narrow = Lane("lane-tests", width: 1)
    static let inside = Locked(0)
    static let mostInside = Locked(0)

    @Test(.ownThread(narrow)) func aCaseRunsOnItsLanesOwnThread() {
        #expect(Lane.ofCurrentThread == "lane-tests")
    }

    @Test func withoutTheTraitACaseRunsOnTheCooperativePool() {
        #expect(Lane.ofCurrentThread == nil)
    }

    @Test(.ownThread(narrow), arguments: 0..<6)
    func aLaneOfWidthOneRunsOneCaseAtATime(_ i: Int) {
        let now = Self.inside.mutate { n in
            n += 1
            return n
        }
        Self.mostInside.mutate { $0 = max($0, now) }
        usleep(20_000)
        Self.inside.mutate { $0 -= 1 }
        #expect(Self.mostInside.value == 1)
    }

    static let timeLimitIssues = Locked<[String]>([])

    /// The limit's issue is caught here (and checked by the next test) so that it does not fail the run.
    @Test(.compactMapIssues { issue in
              let text = "\(issue)"
              guard text.contains("time limit exceeded") else { return issue }
              LaneTests.timeLimitIssues.mutate { $0.append(text) }
              return nil
          },
          .ownThread(narrow, timeLimit: .milliseconds(300)))
    func aCaseStillRunningPastItsLimitIsReportedAndThenAwaited() {
        // The watchdog runs on the cooperative pool, which a busy run may hold for a while: wait
        // (up to 60 s) for its report instead of assuming when it comes.
        let deadline = Date().addingTimeInterval(60)
        while Self.timeLimitIssues.value.isEmpty && Date() < deadline { usleep(20_000) }
        #expect(Self.timeLimitIssues.value.count == 1)
    }

    static let queue = Lane("lane-tests-queue", width: 1)

    /// Four cases of 0.8 s share one slot, so the last one waits 2.4 s before it starts; a 2 s
    /// limit measured from the start of the wait would fail it.
    @Test(.ownThread(queue, timeLimit: .seconds(2)), arguments: 0..<4)
    func waitingForASlotDoesNotCountAgainstTheLimit(_ i: Int) {
        usleep(800_000)
    }
}
