// One libuv loop on one dedicated thread. The only thing that crosses threads is `post`.
import CLibUV
import Foundation
import Logging

/// A libuv event loop running on its own dedicated thread.
///
/// Threading model:
/// - Every handle (timers, sockets, streams, processes) belongs to one loop and must be created,
///   used and closed on that loop's thread. Their methods check this with `assertInLoop()`.
/// - Other threads (Swift tasks, the main thread, tests) talk to the loop only through `post`
///   (fire and forget) or `execute` (blocking, returns a value). Both enqueue the closure under a
///   lock and wake the loop with `uv_async_send`, the one libuv call that is thread-safe.
/// - `uv_run` never runs inside a Swift Task; an idle loop sleeps in epoll and uses no CPU.
///
/// Process-wide effect: `init` sets SIGPIPE to ignored (writes to a dead child's pipe then fail
/// with EPIPE on that stream instead of killing the process).
///
/// Lifecycle: `init` starts the thread. `requestStop()` (any thread, including the loop's own)
/// closes every remaining handle (counting each as a leak: owners should close their handles
/// first) and lets `uv_run` return; `shutdown()` additionally waits for the thread to finish.
public final class EventLoop: @unchecked Sendable {
    /// The libuv loop. Only touch it on the loop thread.
    let uv: UnsafeMutablePointer<uv_loop_t>
    private let wakeup: UnsafeMutablePointer<uv_async_t>
    private let lock = NSLock()
    private var queue: [@Sendable () -> Void] = []
    private var stopRequested = false
    private var acceptingPosts = true
    private let finished = DispatchSemaphore(value: 0)
    private var threadID: pthread_t?
    private var thread: Thread?
    private let name: String
    let logger: Logger

    /// Handles currently open on this loop (loop thread only).
    public internal(set) var openHandleCount = 0
    /// Handles that were still open when the loop stopped and had to be closed by it.
    /// Anything but 0 is an ownership bug in the caller.
    public private(set) var leakedHandleCount = 0

    /// Creates the loop and starts its thread.
    public init(name: String = "mesh-loop", logger: Logger? = nil) throws(MeshError) {
        self.name = name
        self.logger = logger ?? Logger(label: "mesh.\(name)")
        // Writing to a pipe whose reader died (an exited ssh) must be an EPIPE error on that
        // stream, not a process-killing signal. Sockets use MSG_NOSIGNAL already; pipes cannot.
        signal(SIGPIPE, SIG_IGN)
        uv = .allocate(capacity: 1)
        let rc = uv_loop_init(uv)
        guard rc == 0 else {
            uv.deallocate()
            throw MeshError.uv(rc, "uv_loop_init")
        }
        wakeup = .allocate(capacity: 1)
        let rc2 = uv_async_init(uv, wakeup) { async in
            guard let data = async?.pointee.data else { return }
            Unmanaged<EventLoop>.fromOpaque(data).takeUnretainedValue().drain()
        }
        guard rc2 == 0 else {
            uv_loop_close(uv)
            uv.deallocate()
            wakeup.deallocate()
            throw MeshError.uv(rc2, "uv_async_init")
        }
        // The async handle refers to the loop without retaining it: the loop object outlives
        // its thread because `shutdown` (or the thread itself) holds a reference.
        wakeup.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        let t = Thread { [self] in self.threadMain() }
        t.name = name
        t.stackSize = 1 << 20
        thread = t
        t.start()
    }

    deinit {
        precondition(acceptingPosts == false, "EventLoop \(name) deallocated while running: call shutdown()")
        uv.deallocate()
        wakeup.deallocate()
    }

    private func threadMain() {
        // Holds the loop alive for as long as the thread runs.
        withExtendedLifetime(self) {
            lock.lock()
            threadID = pthread_self()
            lock.unlock()
            drain()  // run anything posted before the thread started
            uv_run(uv, UV_RUN_DEFAULT)
            // uv_run returns only after requestStop closed the async handle and all others.
            var rc = uv_loop_close(uv)
            if rc != 0 {
                // Handles that are inactive but unclosed do not keep uv_run alive: close them now.
                closeAllHandles()
                uv_run(uv, UV_RUN_DEFAULT)
                rc = uv_loop_close(uv)
                if rc != 0 { logger.error("uv_loop_close failed: \(MeshError.uvName(rc))") }
            }
            lock.lock()
            acceptingPosts = false
            let leftover = queue
            queue = []
            lock.unlock()
            _ = leftover  // closures posted after stop are dropped, never run off-thread
            finished.signal()
        }
    }

    /// True when called on this loop's thread.
    public var isInLoopThread: Bool {
        lock.lock()
        defer { lock.unlock() }
        guard let threadID else { return false }
        return pthread_equal(threadID, pthread_self()) != 0
    }

    /// Traps if not called on the loop thread (a threading bug: handles are loop-confined).
    @inline(__always)
    public func assertInLoop(_ what: @autoclosure () -> String = "", file: StaticString = #fileID, line: UInt = #line) {
        #if DEBUG
        if !isInLoopThread {
            assertionFailure("\(what()) must run on the EventLoop thread \(name)", file: file, line: line)
        }
        #endif
    }

    /// Runs `body` on the loop thread soon. Thread-safe. Returns false (and drops `body`) when
    /// the loop has stopped.
    @discardableResult
    public func post(_ body: @escaping @Sendable () -> Void) -> Bool {
        lock.lock()
        guard acceptingPosts, !stopRequested else {
            lock.unlock()
            return false
        }
        queue.append(body)
        lock.unlock()
        uv_async_send(wakeup)
        return true
    }

    /// Runs `body` on the loop thread and waits for its result. Runs inline when already on the
    /// loop thread. Throws `stream.closed` if the loop has stopped.
    public func execute<T: Sendable>(_ body: @escaping @Sendable () throws -> T) throws -> T {
        if isInLoopThread { return try body() }
        let slot = ResultSlot<T>()
        let posted = post {
            slot.result = Result { try body() }
            slot.done.signal()
        }
        guard posted else { throw MeshError(.closed, "event loop \(name) has stopped") }
        slot.done.wait()
        return try slot.result!.get()
    }

    private func drain() {
        lock.lock()
        let work = queue
        queue = []
        lock.unlock()
        for body in work { body() }
    }

    /// Asks the loop to stop: from the loop thread, closes every open handle now; from another
    /// thread, posts that. Non-blocking. Idempotent.
    public func requestStop() {
        lock.lock()
        if stopRequested || !acceptingPosts {
            lock.unlock()
            return
        }
        // Let this one closure through even though stop is being requested.
        queue.append { [self] in self.stopOnLoop() }
        stopRequested = true
        lock.unlock()
        uv_async_send(wakeup)
    }

    private func stopOnLoop() {
        drain()  // nothing is accepted after stopRequested; run what got in before it
        closeAllHandles()
    }

    private func closeAllHandles() {
        let context = Unmanaged.passUnretained(self).toOpaque()
        uv_walk(uv, { handle, arg in
            guard let handle, let arg, uv_is_closing(handle) == 0 else { return }
            let loop = Unmanaged<EventLoop>.fromOpaque(arg).takeUnretainedValue()
            if UnsafeMutableRawPointer(handle) == UnsafeMutableRawPointer(loop.wakeup) {
                uv_close(handle, nil)
                return
            }
            if let data = handle.pointee.data {
                let owner = Unmanaged<LoopHandle>.fromOpaque(data).takeUnretainedValue()
                loop.leakedHandleCount += 1
                loop.logger.warning("closing a handle left open at loop stop: \(type(of: owner))")
                owner.close()
            } else {
                uv_close(handle, nil)
            }
        }, context)
    }

    /// Stops the loop and waits (up to `timeout`) for its thread to finish. Must not be called on
    /// the loop thread (use `requestStop` there). Returns false on timeout.
    @discardableResult
    public func shutdown(timeout: Duration = .seconds(10)) -> Bool {
        precondition(!isInLoopThread, "EventLoop.shutdown() called on its own thread; use requestStop()")
        requestStop()
        let ms = Int(timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
        if finished.wait(timeout: .now() + .milliseconds(ms)) == .timedOut { return false }
        finished.signal()  // let later callers of shutdown() return at once too
        thread = nil
        return true
    }

    /// The loop's cached monotonic time in milliseconds (updated once per loop iteration).
    public var nowMilliseconds: UInt64 { uv_now(uv) }

    /// High-resolution monotonic time in nanoseconds (any thread).
    public static var monotonicNanoseconds: UInt64 { uv_hrtime() }
}

extension Duration {
    /// Whole milliseconds, rounded up, clamped at 0.
    var milliseconds: UInt64 {
        let (s, atto) = components
        if s < 0 { return 0 }
        return UInt64(s) * 1000 + UInt64((atto + 999_999_999_999_999) / 1_000_000_000_000_000)
    }
}

private final class ResultSlot<T>: @unchecked Sendable {
    var result: Result<T, any Error>?
    let done = DispatchSemaphore(value: 0)
}
