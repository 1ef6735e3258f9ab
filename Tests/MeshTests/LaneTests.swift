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

    /// Catches the time-limit issue (so that it does not fail the run) and keeps it for the test.
    static func catchTimeLimitIssue(_ issue: Issue) -> Issue? {
        let text = "\(issue)"
        guard text.contains("time limit exceeded") else { return issue }
        timeLimitIssues.mutate { $0.append(text) }
        return nil
    }

    /// Waits (up to 60 s) until the watchdog has reported for `test`: it runs on the global
    /// executor, which a busy run may hold for a while, so the report's time is not assumed.
    static func expectTimeLimitReport(for test: String) {
        let reported = { timeLimitIssues.value.contains { $0.contains(test) } }
        let deadline = Date().addingTimeInterval(60)
        while !reported() && Date() < deadline { usleep(20_000) }
        #expect(reported())
    }

    @Test(.compactMapIssues(LaneTests.catchTimeLimitIssue), .ownThread(narrow, timeLimit: .milliseconds(300)))
    func aCaseStillRunningPastItsLimitIsReportedAndThenAwaited() {
        Self.expectTimeLimitReport(for: "aCaseStillRunningPastItsLimitIsReportedAndThenAwaited")
    }

    /// The trait on both the suite and the test: the suite's takes the slot and the thread, and
    /// the test's limit still fires although the body blocks that thread.
    @Suite(.ownThread(LaneTests.narrow)) struct OnSuiteAndTest {
        @Test(.compactMapIssues(LaneTests.catchTimeLimitIssue), .ownThread(LaneTests.narrow, timeLimit: .milliseconds(300)))
        func theTestsOwnLimitStillApplies() {
            #expect(Lane.ofCurrentThread == "lane-tests")
            LaneTests.expectTimeLimitReport(for: "theTestsOwnLimitStillApplies")
        }
    }

    static let queue = Lane("lane-tests-queue", width: 1)

    /// Eight cases of 0.3 s share one slot, so the last one waits 2.1 s before it starts; a 2 s
    /// limit measured from the start of the wait would fail it, while each case has 1.7 s of
    /// slack for a loaded machine.
    @Test(.ownThread(queue, timeLimit: .seconds(2)), arguments: 0..<8)
    func waitingForASlotDoesNotCountAgainstTheLimit(_ i: Int) {
        usleep(300_000)
    }
}
