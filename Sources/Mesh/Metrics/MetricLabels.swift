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
