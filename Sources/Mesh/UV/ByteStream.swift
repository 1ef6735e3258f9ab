// The byte-stream abstraction shared by direct TCP, SSH pipes, SOCKS5-over-TCP and Unix sockets.

/// A bidirectional, ordered byte stream on an `EventLoop`: a TCP connection, a Unix-domain
/// connection, a child process's stdin/stdout (an `ssh -W` tunnel), or TCP through SOCKS5.
///
/// Everything is loop-confined: call methods and receive callbacks on `loop`'s thread.
///
/// Contract:
/// - Reading starts with `startReading()`; `onRead` then receives bytes that are valid only for
///   the duration of the call (copy what you keep). `stopReading()` pauses (read backpressure).
/// - `write` copies the bytes and queues them. When the queue already holds bytes and adding these
///   would exceed `maxWriteQueueBytes`, it throws `stream.write_buffer_full` and queues nothing:
///   wait for `onDrain` (queue empty again) and retry. An empty queue always accepts one write.
/// - `onClose` runs exactly once, after the stream is fully closed, with `nil` if `close()` was
///   called locally, or the reason otherwise (`stream.eof` when the peer closed, a libuv error,
///   a process exit...). No callback runs after it.
public protocol ByteStream: AnyObject {
    var loop: EventLoop { get }
    var onRead: ((UnsafeRawBufferPointer) -> Void)? { get set }
    var onDrain: (() -> Void)? { get set }
    var onClose: ((MeshError?) -> Void)? { get set }
    /// Bytes queued for writing and not yet handed to the kernel.
    var writeQueueBytes: Int { get }
    var maxWriteQueueBytes: Int { get set }
    /// True until close starts (locally or because of an error).
    var isOpen: Bool { get }
    /// Who is on the other end, for logs (`127.0.0.1:7000`, `ssh gpu-3 -W 10.0.0.5:7000`).
    var peerDescription: String { get }
    func startReading()
    func stopReading()
    /// Queues the concatenation of `parts` as one write.
    func write(_ parts: [UnsafeRawBufferPointer]) throws(MeshError)
    /// Queues `frame.bytes` as one write, without copying where the stream can (it keeps the
    /// frame alive until the kernel has the bytes). Same queue limits as `write(_:)`.
    func write(frame: OutgoingFrame) throws(MeshError)
    /// Closes locally; `onClose(nil)` follows.
    func close()
    /// Closes because of `error`; `onClose(error)` follows.
    func close(error: MeshError)
}

extension ByteStream {
    /// Default: copies, like `write(_:)`.
    public func write(frame: OutgoingFrame) throws(MeshError) { try write([frame.bytes]) }

    /// Queues `bytes`.
    public func write(_ bytes: [UInt8]) throws(MeshError) {
        let error: MeshError? = bytes.withUnsafeBytes { p in
            do throws(MeshError) { try write([p]) } catch { return error }
            return nil
        }
        if let error { throw error }
    }
}
