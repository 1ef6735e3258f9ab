// Errors raised by the Mesh runtime: one struct, a stable code, a one-line message and a hint.
import CLibUV

/// An error from the Mesh runtime (event loop, sockets, tunnels, config, control socket).
///
/// `code` is stable and meant for programs and tests; `message` says in one line what is wrong,
/// `hint` what to do about it. `description` joins them for logs and the CLI.
public struct MeshError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A stable, dotted error code such as `socks5.auth_failed` or `uv.ECONNREFUSED`.
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public init(_ raw: String) { self.rawValue = raw }
        public var description: String { rawValue }
    }

    public var code: Code
    public var message: String
    public var hint: String?
    /// The libuv error number when the error came from libuv (negative errno on Unix).
    public var uvStatus: Int32?

    public init(_ code: Code, _ message: String, hint: String? = nil, uvStatus: Int32? = nil) {
        self.code = code
        self.message = message
        self.hint = hint
        self.uvStatus = uvStatus
    }

    public var description: String {
        if let hint { return "\(message) (\(hint))" }
        return message
    }

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
