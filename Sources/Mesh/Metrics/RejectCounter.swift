// The one list of names under which a node counts what it refuses. `meshnode status --json`
// (`rejected`), the `reason` label of `meshnode_rejected_total` and the `reason` of every
// "dropped input" log line all take their names from here, and docs/PROTOCOL.md Appendix B
// lists exactly these names (a test compares the two).
import Gossip

/// Why a node dropped an input, refused a peer or ended a session abnormally: every name a
/// node counts under. Names are lower snake case; the transport failures that are the node's
/// own error codes keep their dotted form (`stream.idle_timeout`, `uv.ECONNRESET`).
public enum RejectCounter: String, CaseIterable, Sendable {
    // Gossip envelopes and member records (§5, §6): every `RejectReason` of the gossip core.
    case oversized
    case oversizedDatagram = "oversized_datagram"
    case malformed
    case unsupportedVersion = "unsupported_version"
    case fromSelf = "from_self"
    case unknownSender = "unknown_sender"
    case badSignature = "bad_signature"
    case tooManyMembers = "too_many_members"
    case replayed
    case wrongTarget = "wrong_target"
    case overloaded
    // Entries (§7).
    case untrustedOrigin = "untrusted_origin"
    case badEntrySignature = "bad_entry_signature"
    case notSenderOrigin = "not_sender_origin"
    // Admission (§10), for gossip members and session handshakes alike.
    case untrustedKey = "untrusted_key"
    case revoked
    case malformedCertificate = "malformed_certificate"
    case certificateWrongSubject = "certificate_wrong_subject"
    case certificateUnknownAuthority = "certificate_unknown_authority"
    case certificateBadSignature = "certificate_bad_signature"
    case certificateNotYetValid = "certificate_not_yet_valid"
    case certificateExpired = "certificate_expired"
    // Streams and sessions (§8).
    case oversizedFrame = "oversized_frame"
    case truncatedFrame = "truncated_frame"
    case idleTimeout = "stream.idle_timeout"
    case wrongPeer = "wrong_peer"
    case noCommonCipher = "no_common_cipher"
    case keyExchangeFailed = "key_exchange_failed"
    case frameAuthenticationFailed = "frame_authentication_failed"
    case counterExhausted = "counter_exhausted"
    case protocolViolation = "protocol_violation"
    case unknownMessageType = "unknown_message_type"
    // Chunk exchange (§9).
    case malformedBlobMessage = "malformed_blob_message"
    case badRecipe = "bad_recipe"
    case corruptChunk = "corrupt_chunk"
    case inconsistentChunkPieces = "inconsistent_chunk_pieces"
    // Push-to-2 (§9.5).
    case malformedCustodyMessage = "malformed_custody_message"
    case badTakeSignature = "bad_take_signature"
    // Local: limits and transports of this node, not part of the wire protocol.
    case tooManySessions = "too_many_sessions"
    case connectFailed = "connect_failed"
    case writeBufferFull = "stream.write_buffer_full"
    case connectTimeout = "stream.connect_timeout"
    case processExited = "process.exited"
    case uvECONNRESET = "uv.ECONNRESET"
    case uvETIMEDOUT = "uv.ETIMEDOUT"
    case uvEPIPE = "uv.EPIPE"
    case uvECONNREFUSED = "uv.ECONNREFUSED"
    case uvECONNABORTED = "uv.ECONNABORTED"
    case uvENETUNREACH = "uv.ENETUNREACH"
    case uvEHOSTUNREACH = "uv.EHOSTUNREACH"
    case uvENOBUFS = "uv.ENOBUFS"
    case sshAuthFailed = "ssh.auth_failed"
    case sshHostKeyUnknown = "ssh.host_key_unknown"
    case sshHostKeyChanged = "ssh.host_key_changed"
    case sshConnectionRefused = "ssh.connection_refused"
    case sshTimeout = "ssh.timeout"
    case sshResolveFailed = "ssh.resolve_failed"
    case sshForwardFailed = "ssh.forward_failed"
    case sshConnectionLost = "ssh.connection_lost"
    case sshKeyUnusable = "ssh.key_unusable"
    case sshFailed = "ssh.failed"
    case socks5ProtocolError = "socks5.protocol_error"
    case socks5NoAcceptableMethod = "socks5.no_acceptable_method"
    case socks5AuthFailed = "socks5.auth_failed"
    case socks5GeneralFailure = "socks5.general_failure"
    case socks5NotAllowed = "socks5.not_allowed"
    case socks5NetworkUnreachable = "socks5.network_unreachable"
    case socks5HostUnreachable = "socks5.host_unreachable"
    case socks5ConnectionRefused = "socks5.connection_refused"
    case socks5TTLExpired = "socks5.ttl_expired"
    case socks5CommandNotSupported = "socks5.command_not_supported"
    case socks5AddressTypeNotSupported = "socks5.address_type_not_supported"
    case socks5Timeout = "socks5.timeout"
    case httpBadRequest = "http_bad_request"
    case httpHeadTooLarge = "http_head_too_large"
    case httpRequestTimeout = "http_request_timeout"
    case httpResponseTimeout = "http_response_timeout"
    case httpTooManyConnections = "http_too_many_connections"
    case httpUnsupportedVersion = "http_unsupported_version"
    /// A stream failure with no name of its own above (its error code is in the log line).
    case other
}

extension RejectCounter {
    /// The gossip core's reason, under the same name (`RejectReason`'s raw values are names of
    /// this list; `RejectCounterTests` checks every one).
    public init(_ reason: RejectReason) {
        self = RejectCounter(rawValue: reason.rawValue) ?? .other
    }

    /// How a session or stream that ended with `code` is counted: its own name when the list has
    /// one, else `other`.
    public init(streamFailure code: MeshError.Code) {
        self = RejectCounter(rawValue: code.rawValue) ?? .other
    }

    /// Every name, in the order of the list: the fixed label set of `meshnode_rejected_total`.
    public static var names: [String] { allCases.map(\.rawValue) }
}
