import Foundation
@testable import Mesh

/// A value produced on the loop thread and awaited (with a deadline) by the test thread.
final class Waiter<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: T?
    private let sem = DispatchSemaphore(value: 0)

    func fulfill(_ v: T) {
        lock.lock()
        let first = value == nil
        if first { value = v }
        lock.unlock()
        if first { sem.signal() }
    }

    struct Timeout: Error, CustomStringConvertible {
        let what: String
        var description: String { "timed out waiting for \(what)" }
    }

    /// Waits up to `seconds`; throws on timeout.
    func wait(_ seconds: Double = 10, _ what: String = "result") throws -> T {
        if sem.wait(timeout: .now() + seconds) == .timedOut { throw Timeout(what: what) }
        sem.signal()
        lock.lock()
        defer { lock.unlock() }
        return value!
    }
}

/// Thread-safe box for values mutated on the loop and read by the test.
final class Locked<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var v: T
    init(_ v: T) { self.v = v }
    var value: T {
        lock.lock(); defer { lock.unlock() }
        return v
    }
    func mutate<R>(_ f: (inout T) -> R) -> R {
        lock.lock(); defer { lock.unlock() }
        return f(&v)
    }
}

/// Runs `body` with a fresh loop and shuts it down afterwards, checking no handle leaked.
func withLoop(_ body: (EventLoop) throws -> Void) throws {
    let loop = try EventLoop(name: "test-loop")
    var failure: (any Error)?
    do { try body(loop) } catch { failure = error }
    // Give close callbacks a moment, then stop.
    let stopped = loop.shutdown(timeout: .seconds(10))
    if let failure { throw failure }
    guard stopped else { throw MeshError(.init("test.loop_stuck"), "loop did not stop") }
    guard loop.leakedHandleCount == 0 else {
        throw MeshError(.init("test.leak"), "\(loop.leakedHandleCount) handle(s) left open at shutdown")
    }
}

/// Polls `condition` until true or the deadline.
func eventually(_ seconds: Double = 10, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if condition() { return true }
        usleep(10_000)
    }
    return condition()
}

func loopback(_ port: UInt16 = 0) -> SocketAddress { SocketAddress(ip: "127.0.0.1", port: port)! }

/// A temporary directory removed by `cleanup()`; short path so Unix socket paths fit.
struct TempDir {
    let path: String
    init() {
        var template = Array("/tmp/mesh-XXXXXX".utf8CString)
        let p = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        path = String(cString: p!)
    }
    func cleanup() { try? FileManager.default.removeItem(atPath: path) }
    func file(_ name: String) -> String { path + "/" + name }
}
