import Dispatch
import Gossip
import Store

/// Threads for chunk I/O, so that hashing, `fsync` and file reads never run on the loop.
///
/// Each worker is a serial queue with its own `Store` handle (its own SQLite connection),
/// used only on that queue. Results come back on the caller's loop through `loop.post`.
final class BlobWorkers: @unchecked Sendable {
    // @unchecked: `stores[i]` is only touched on `queues[i]`; `next` only on the loop.
    private let queues: [DispatchQueue]
    private let stores: [Store]
    private let loop: EventLoop
    private var next = 0

    init(loop: EventLoop, dataDir: String, count: Int = 2) throws(MeshError) {
        self.loop = loop
        var q = [DispatchQueue]()
        var s = [Store]()
        for i in 0..<max(1, count) {
            q.append(DispatchQueue(label: "meshnode.blob.\(i)", qos: .utility))
            s.append(try Store.open(dataDir: dataDir))
        }
        queues = q
        stores = s
    }

    private func pick() -> Int {
        next = (next + 1) % queues.count
        return next
    }

    /// Verifies `bytes` against `hash` and stores the chunk crash-safely; `done` runs on the loop.
    func write(_ hash: ChunkHash, _ bytes: [UInt8], done: @escaping @Sendable (MeshError?) -> Void) {
        let i = pick()
        queues[i].async { [self] in
            var failure: MeshError?
            do throws(MeshError) { try stores[i].writeChunk(hash, bytes: bytes) } catch { failure = error }
            let f = failure
            loop.post { done(f) }
        }
    }

    /// Reads (and verifies) a stored chunk; `done` runs on the loop.
    func read(_ hash: ChunkHash, done: @escaping @Sendable (Result<[UInt8], MeshError>) -> Void) {
        let i = pick()
        queues[i].async { [self] in
            let r: Result<[UInt8], MeshError>
            do throws(MeshError) { r = .success(try stores[i].readChunk(hash)) } catch { r = .failure(error) }
            loop.post { done(r) }
        }
    }

    /// Waits for queued work to finish (shutdown).
    func drain() { for q in queues { q.sync {} } }
}
