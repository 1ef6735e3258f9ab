// Errors raised by the Mesh runtime: one struct, a stable code, a one-line message and a hint.
import CLibUV

@_exported import Store

extension MeshError {
    /// Wraps a libuv status code; `operation` names what was being done ("bind 127.0.0.1:7000").
    public static func uv(_ status: Int32, _ operation: String, hint: String? = nil) -> MeshError {
        let name = String(cString: uv_err_name(status))
        let text = String(cString: uv_strerror(status))
        return MeshError(Code("uv.\(name)"), "\(operation): \(text)", hint: hint, uvStatus: status)
    }

    /// The libuv error name of a status (`ECONNREFUSED`), for matching.
    public static func uvName(_ status: Int32) -> String { String(cString: uv_err_name(status)) }
}

extension MeshError.Code {
    // Streams and framing.
    public static let closed = Self("stream.closed")
    public static let eof = Self("stream.eof")
    public static let frameTooLarge = Self("stream.frame_too_large")
    public static let writeBufferFull = Self("stream.write_buffer_full")
    public static let idleTimeout = Self("stream.idle_timeout")
    public static let connectTimeout = Self("stream.connect_timeout")
    public static let invalidAddress = Self("address.invalid")
    public static let resolveFailed = Self("address.resolve_failed")
    public static let datagramTooLarge = Self("udp.datagram_too_large")
    // Processes.
    public static let spawnFailed = Self("process.spawn_failed")
    public static let processExited = Self("process.exited")
}
