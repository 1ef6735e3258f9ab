// The fixed label sets of the node's metrics. A label value outside its set is exported as
// `other`, so a new reason in the code can never grow the number of series without bound.
import Gossip

/// Why a chunk request (`get`, PROTOCOL §9) failed: `meshnode_p2p_request_errors_total{reason}`.
public enum P2PRequestError: String, CaseIterable, Sendable {
    /// No answer within `requestTimeout` of its last sign of progress.
    case timeout
    /// The peer answered with an `error` message (not held, busy, bad request...).
    case errorReply = "error_reply"
    /// The session carrying it ended without a clean close.
    case sessionClosed = "session_closed"
    /// The connection it was queued for could not be made.
    case dialFailed = "dial_failed"
    /// It could not be handed to any session.
    case sendFailed = "send_failed"
    /// A chunk arrived that does not match its hash.
    case corruptChunk = "corrupt_chunk"
    /// A large chunk's pieces did not fit together.
    case inconsistentPieces = "inconsistent_pieces"
    /// A verified chunk could not be written here (disk full, I/O error).
    case writeFailed = "write_failed"
}

/// The reasons `meshnode status` counts dropped inputs under (`rejected`), as label values of
/// `meshnode_rejected_total{reason}`.
public enum RejectReasonLabels {
    /// The reasons the node counts, from every layer. A reason not listed here is exported
    /// as `other` (and the `MetricsTests` source scan fails, so that it gets listed).
    public static let known: [String] = {
        var r = RejectReason.allCases.map { MeshNode.snakeCase($0.rawValue) }
        r += mesh + session + stream + http
        var seen = Set<String>()
        return r.filter { seen.insert($0).inserted }
    }()

    /// Counted by the node itself (`MeshNode.count`) and by the stream layer.
    static let mesh = [
        "too_many_sessions", "connect_failed", "malformed_blob_message", "bad_recipe", "inconsistent_chunk_pieces",
        "corrupt_chunk", "oversized_datagram", "truncated_frame", "oversized_frame", "unknown_message_type",
    ]

    /// `SessionError.reason` (a handshake or session frame refused).
    static let session = [
        "malformed", "unsupported_version", "protocol_violation", "wrong_peer", "untrusted_key", "bad_signature",
        "no_common_cipher", "key_exchange_failed", "frame_authentication_failed", "counter_exhausted",
    ]

    /// Stream failures a session can end with (`MeshError.code`); other `uv.*` codes are `other`.
    static let stream = [
        "stream.idle_timeout", "stream.write_buffer_full", "stream.connect_timeout", "process.exited",
        "uv.ECONNRESET", "uv.ETIMEDOUT", "uv.EPIPE", "uv.ECONNREFUSED", "uv.ECONNABORTED", "uv.ENETUNREACH",
        "uv.EHOSTUNREACH", "uv.ENOBUFS",
        "ssh.auth_failed", "ssh.host_key_unknown", "ssh.host_key_changed", "ssh.connection_refused", "ssh.timeout",
        "ssh.resolve_failed", "ssh.forward_failed", "ssh.connection_lost", "ssh.key_unusable", "ssh.failed",
        "socks5.protocol_error", "socks5.no_acceptable_method", "socks5.auth_failed", "socks5.general_failure",
        "socks5.not_allowed", "socks5.network_unreachable", "socks5.host_unreachable", "socks5.connection_refused",
        "socks5.ttl_expired", "socks5.command_not_supported", "socks5.address_type_not_supported", "socks5.timeout",
    ]

    /// The HTTP server's refusals (`HTTPServer`).
    static let http = [
        "http_bad_request", "http_head_too_large", "http_request_timeout", "http_response_timeout",
        "http_too_many_connections", "http_unsupported_version",
    ]
}

/// Member states, as `meshnode_members{state}` labels them.
public enum MemberStateLabels {
    public static let all = ["alive", "suspect", "dead", "left"]
}

/// Transfer states, as `meshnode_transfers_in_flight{state}` labels them (`TransferRow.state`).
public enum TransferStateLabels {
    public static let all = ["queued", "finding", "fetching", "abandoned"]
}

/// How sessions were made, as `meshnode_sessions_established_total{route}` labels them.
public enum RouteLabels {
    public static let all = ["direct", "ssh", "socks5", "inbound"]
}
