// Running blocking work (hashing, fsync, SQLite) off the loop thread and back.
import CLibUV

extension EventLoop {
    /// Runs `work` on libuv's thread pool (`uv_queue_work`; 4 threads unless `UV_THREADPOOL_SIZE`
    /// says otherwise, shared with DNS resolution), then `completion` with its result on the loop
    /// thread. Use it for anything that may block: hashing a file, fsync, a slow SQLite write.
    /// Loop thread only. Pending work keeps the loop running until it finishes, so keep each
    /// piece bounded (e.g. hash one chunk per call, not a 10 GB file).
    public func offload<T: Sendable>(_ work: @escaping @Sendable () -> T, completion: @escaping (T) -> Void) {
        assertInLoop("offload")
        let job = OffloadJob(work: work, completion: completion)
        let req = UnsafeMutablePointer<uv_work_t>.allocate(capacity: 1)
        req.pointee.data = Unmanaged.passRetained(job).toOpaque()
        let rc = uv_queue_work(uv, req, { req in
            guard let req else { return }
            Unmanaged<AnyOffloadJob>.fromOpaque(req.pointee.data).takeUnretainedValue().runWork()
        }, { req, _ in
            guard let req else { return }
            let job = Unmanaged<AnyOffloadJob>.fromOpaque(req.pointee.data).takeRetainedValue()
            req.deallocate()
            job.complete()
        })
        if rc != 0 {
            // Cannot happen for a valid loop; run inline rather than lose the work.
            Unmanaged<AnyOffloadJob>.fromOpaque(req.pointee.data).release()
            req.deallocate()
            job.runWork()
            job.complete()
        }
    }
}

class AnyOffloadJob: @unchecked Sendable {
    func runWork() {}
    func complete() {}
}

/// `work` runs on a pool thread, `completion` later on the loop; the result is handed over
/// through libuv's happens-before (work callback → after-work callback).
private final class OffloadJob<T: Sendable>: AnyOffloadJob, @unchecked Sendable {
    let work: @Sendable () -> T
    var completion: ((T) -> Void)?
    var result: T?
    init(work: @escaping @Sendable () -> T, completion: @escaping (T) -> Void) {
        self.work = work
        self.completion = completion
    }
    override func runWork() { result = work() }
    override func complete() {
        let c = completion
        completion = nil
        if let result { c?(result) }
    }
}
