import Foundation
import Testing

/// A lane: a named number of slots that heavy tests share.
///
/// Every test in this package is synchronous. Swift Testing runs such a body on Swift
/// concurrency's cooperative pool, which has one thread per core, and a body that blocks (waiting
/// for child processes, or simulating for a minute) holds its thread all that time. On a 2-core CI
/// machine two long tests then starve everything else, including the task that enforces
/// `.timeLimit`: a 0.3 s test was once failed for "exceeding" 60 s because it waited 80 s for a
/// thread. Heavy tests therefore take a slot in a lane, run on a thread of their own, and have
/// their time limit measured from the moment they hold their slot (see `OwnThreadTrait`).
public struct Lane: Sendable {
    public let name: String
    let slots: Slots

    public init(_ name: String, width: Int) {
        self.name = name
        slots = Slots(width: max(1, width))
    }

    /// Tests that start processes, event loops, servers or move large files. They spend most of
    /// their time waiting, so two run at once even on a single core, and one per core above that.
    public static let integration = Lane("integration", width: max(2, ProcessInfo.processInfo.activeProcessorCount))

    /// CPU-bound tests (the simulations): one at a time, so they leave the other cores to the
    /// integration tests, whose timeouts assume they get some CPU.
    public static let cpu = Lane("cpu", width: 1)

    /// The name of the lane whose thread the caller is on, nil on any other thread.
    public static var ofCurrentThread: String? { Thread.current.threadDictionary[threadKey] as? String }

    static let threadKey = "meshnode.test-lane"
}

/// A counting semaphore whose waiters suspend instead of blocking a thread.
actor Slots {
    private var free: Int
    private var waiters: [CheckedContinuation<Void, Never>] = []

    init(width: Int) { free = width }

    func acquire() async {
        if free > 0 {
            free -= 1
            return
        }
        await withCheckedContinuation { waiters.append($0) }
    }

    func release() {
        if waiters.isEmpty {
            free += 1
        } else {
            waiters.removeFirst().resume()
        }
    }
}

/// A task executor with one thread of its own, for one test case.
final class ThreadExecutor: TaskExecutor, @unchecked Sendable {
    private let lane: String
    private let condition = NSCondition()
    private var jobs: [UnownedJob] = []
    private var stopping = false
    private var running = false

    init(lane: String) {
        self.lane = lane
        condition.lock()
        startThreadLocked()
        condition.unlock()
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        condition.lock()
        jobs.append(job)
        // A job that arrives after the thread has wound down still runs, on a fresh thread.
        if !running { startThreadLocked() }
        condition.signal()
        condition.unlock()
    }

    /// Lets the thread end once it has run every job it was given.
    func shutdown() {
        condition.lock()
        stopping = true
        condition.signal()
        condition.unlock()
    }

    private func startThreadLocked() {
        running = true
        let thread = Thread { [self] in
            Thread.current.threadDictionary[Lane.threadKey] = lane
            runJobs()
        }
        thread.stackSize = 8 << 20
        thread.start()
    }

    private func runJobs() {
        while true {
            condition.lock()
            while jobs.isEmpty && !stopping { condition.wait() }
            if jobs.isEmpty {
                running = false
                condition.unlock()
                return
            }
            let job = jobs.removeFirst()
            condition.unlock()
            job.runSynchronously(on: asUnownedTaskExecutor())
        }
    }
}

/// Runs each test case on a thread of its own after taking a slot in `lane`, and records an issue
/// if the case is still running `timeLimit` after it got its slot.
///
/// Use it instead of `.timeLimit` on heavy tests: Swift Testing starts a time limit's clock before
/// a case has a thread, so waiting behind other tests counts against it. The body is synchronous
/// and cannot be cancelled, so a case past its limit is reported and then awaited; the bounds that
/// end it are the timeouts inside the test (every child process is waited for with one).
///
/// On a suite it applies to every test case in it. A case that gets the trait twice (from its suite
/// and itself) takes one slot and one thread, from the outer trait (Swift Testing applies a suite's
/// traits outside a test's own), and every time limit given applies. Both must name the same lane;
/// a different inner lane is reported as an issue, since its width would not be honoured.
public struct OwnThreadTrait: TestTrait, SuiteTrait, TestScoping {
    public let lane: Lane
    public let timeLimit: Duration?

    public var isRecursive: Bool { true }

    /// The lane whose slot the current task holds, if any.
    @TaskLocal static var heldLane: String?

    public func provideScope(for test: Test, testCase: Test.Case?,
                             performing function: @Sendable () async throws -> Void) async throws {
        // Suites and the test function as a whole pass through; each case takes its own slot.
        guard testCase != nil else { return try await function() }
        if let held = Self.heldLane {
            if held != lane.name {
                Issue.record("'\(test.name)' asks for lane '\(lane.name)' inside lane '\(held)': give the suite and the test the same lane",
                             sourceLocation: test.sourceLocation)
            }
            return try await watched(function, on: nil, test: test)
        }
        await lane.slots.acquire()
        let executor = ThreadExecutor(lane: lane.name)
        do {
            try await Self.$heldLane.withValue(lane.name) {
                try await watched(function, on: executor, test: test)
            }
        } catch {
            executor.shutdown()
            await lane.slots.release()
            throw error
        }
        executor.shutdown()
        await lane.slots.release()
    }

    /// Runs `function` (on `executor` if given, else where the caller runs) beside a watchdog.
    ///
    /// The watchdog runs on the global concurrent executor and reports from there: a nested trait's
    /// caller is on the case's own thread, which the synchronous body blocks, so neither the
    /// watchdog nor this function's loop could run there until the body ended.
    private func watched(_ function: @Sendable () async throws -> Void, on executor: ThreadExecutor?,
                         test: Test) async throws {
        // The group awaits every child before it returns, so `function` does not outlive this call.
        try await withoutActuallyEscaping(function) { function in
            try await withThrowingTaskGroup(of: Bool.self) { group in
                if let timeLimit {
                    let lane = lane.name
                    group.addTask(executorPreference: globalConcurrentExecutor) {
                        do { try await Task.sleep(for: timeLimit) } catch { return false }  // cancelled: the body ended
                        Issue.record("""
                            time limit exceeded: '\(test.name)' still running \(timeLimit) after it got a \
                            slot in lane '\(lane)'; waiting for it to end
                            """, sourceLocation: test.sourceLocation)
                        return false
                    }
                }
                group.addTask(executorPreference: executor) {
                    try await function()
                    return true
                }
                // Wait for the body (rethrowing its error); the watchdog reports by itself.
                while let isBody = try await group.next() {
                    if isBody {
                        group.cancelAll()
                        return
                    }
                }
            }
        }
    }
}

extension Trait where Self == OwnThreadTrait {
    /// Runs each test case on its own thread, one of `lane`'s slots at a time, and fails it if it
    /// runs longer than `timeLimit` once it has its slot. See `OwnThreadTrait`.
    public static func ownThread(_ lane: Lane = .integration, timeLimit: Duration? = nil) -> Self {
        OwnThreadTrait(lane: lane, timeLimit: timeLimit)
    }
}

extension Duration {
    /// `n` minutes, to write time limits the way `.timeLimit(.minutes(n))` does.
    public static func minutes(_ n: Int) -> Duration { .seconds(60 * n) }
}
