// Base class for every libuv handle owned by Swift.
import CLibUV

/// A libuv handle owned by a Swift object.
///
/// Ownership: while the handle is open, libuv's `handle->data` holds a retained reference to this
/// object (`Unmanaged.passRetained`), so the object lives at least until the handle is closed even
/// if the caller drops it. The close callback releases that reference and frees the handle memory
/// (in `deinit`). `deinit` asserts the handle was closed. Callbacks are cleared on close so that
/// closures capturing the object cannot keep it alive.
///
/// All methods must be called on the owning loop's thread.
public class LoopHandle: @unchecked Sendable {
    public let loop: EventLoop
    let raw: UnsafeMutableRawPointer

    enum State { case uninitialized, open, closing, closed }
    var state: State = .uninitialized

    var handle: UnsafeMutablePointer<uv_handle_t> { raw.assumingMemoryBound(to: uv_handle_t.self) }

    init(loop: EventLoop, size: Int) {
        self.loop = loop
        raw = .allocate(byteCount: size, alignment: 16)
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: size)
    }

    /// Call right after the `uv_*_init` call succeeded.
    func adopt() {
        handle.pointee.data = Unmanaged.passRetained(self).toOpaque()
        state = .open
        loop.openHandleCount += 1
    }

    /// True once `close()` was called (or the handle never opened).
    public var isClosed: Bool { state != .open }

    /// Closes the handle. The object's close notification runs from libuv's close callback, on a
    /// later loop iteration. Idempotent.
    public func close() {
        loop.assertInLoop("close()")
        guard state == .open else { return }
        state = .closing
        willClose()
        uv_close(handle, LoopHandle.closeCallback)
    }

    /// The close callback shared by every handle: releases the owner and reports the close.
    static let closeCallback: uv_close_cb = { h in
        guard let h, let data = h.pointee.data else { return }
        let owner = Unmanaged<LoopHandle>.fromOpaque(data).takeRetainedValue()
        h.pointee.data = nil
        owner.state = .closed
        owner.loop.openHandleCount -= 1
        owner.didClose()
    }

    /// Hook: called synchronously by `close()` before `uv_close`.
    func willClose() {}
    /// Hook: called from the close callback; subclasses report closure and drop callbacks here.
    func didClose() {}

    deinit {
        assert(state == .closed || state == .uninitialized, "\(type(of: self)) deallocated with its libuv handle open")
        raw.deallocate()
    }

    /// The Swift owner of a libuv handle or request pointer (`data` is the first field of both).
    @inline(__always)
    static func owner<T: AnyObject>(_ p: UnsafeMutableRawPointer?, as: T.Type = T.self) -> T? {
        guard let p, let data = p.assumingMemoryBound(to: UnsafeMutableRawPointer?.self).pointee else { return nil }
        return Unmanaged<T>.fromOpaque(data).takeUnretainedValue()
    }
}

/// A timer on the loop: one-shot or repeating, re-armable, millisecond resolution.
public final class LoopTimer: LoopHandle, @unchecked Sendable {
    /// Called on the loop thread each time the timer fires.
    public var onFire: (() -> Void)?

    var timer: UnsafeMutablePointer<uv_timer_t> { raw.assumingMemoryBound(to: uv_timer_t.self) }

    /// Creates a stopped timer. Loop thread only.
    public init(loop: EventLoop, onFire: (() -> Void)? = nil) throws(MeshError) {
        super.init(loop: loop, size: MemoryLayout<uv_timer_t>.size)
        loop.assertInLoop("LoopTimer.init")
        let rc = uv_timer_init(loop.uv, timer)
        guard rc == 0 else { throw MeshError.uv(rc, "uv_timer_init") }
        adopt()
        self.onFire = onFire
    }

    /// (Re)arms the timer to fire after `delay`, then every `repeating` if given. Re-arming a
    /// running timer replaces its schedule.
    public func start(after delay: Duration, repeating: Duration? = nil) {
        loop.assertInLoop("LoopTimer.start")
        guard state == .open else { return }
        uv_timer_start(timer, { t in
            guard let me: LoopTimer = LoopHandle.owner(UnsafeMutableRawPointer(t)) else { return }
            me.onFire?()
        }, delay.milliseconds, repeating?.milliseconds ?? 0)
    }

    /// Stops the timer; it can be started again.
    public func stop() {
        loop.assertInLoop("LoopTimer.stop")
        guard state == .open else { return }
        uv_timer_stop(timer)
    }

    /// True while armed.
    public var isActive: Bool { state == .open && uv_is_active(handle) != 0 }

    override func didClose() { onFire = nil }
}

/// Delivers process signals (e.g. SIGINT, SIGTERM) as callbacks on the loop thread.
public final class SignalWatcher: LoopHandle, @unchecked Sendable {
    public let signal: Int32
    /// Called on the loop thread with the signal number.
    public var onSignal: ((Int32) -> Void)?

    var sig: UnsafeMutablePointer<uv_signal_t> { raw.assumingMemoryBound(to: uv_signal_t.self) }

    /// Starts watching `signal`. Loop thread only.
    public init(loop: EventLoop, signal: Int32, onSignal: @escaping (Int32) -> Void) throws(MeshError) {
        self.signal = signal
        super.init(loop: loop, size: MemoryLayout<uv_signal_t>.size)
        loop.assertInLoop("SignalWatcher.init")
        var rc = uv_signal_init(loop.uv, sig)
        guard rc == 0 else { throw MeshError.uv(rc, "uv_signal_init") }
        adopt()
        self.onSignal = onSignal
        rc = uv_signal_start(sig, { s, signum in
            guard let me: SignalWatcher = LoopHandle.owner(UnsafeMutableRawPointer(s)) else { return }
            me.onSignal?(signum)
        }, signal)
        guard rc == 0 else {
            close()
            throw MeshError.uv(rc, "uv_signal_start(\(signal))")
        }
    }

    /// Watches each of `signals` (default SIGINT and SIGTERM) with one handler.
    public static func watch(loop: EventLoop, _ signals: [Int32] = [SIGINT, SIGTERM], onSignal: @escaping (Int32) -> Void) throws(MeshError) -> [SignalWatcher] {
        var out: [SignalWatcher] = []
        for s in signals {
            do { out.append(try SignalWatcher(loop: loop, signal: s, onSignal: onSignal)) } catch {
                out.forEach { $0.close() }
                throw error
            }
        }
        return out
    }

    override func didClose() { onSignal = nil }
}
