// The control protocol spoken over DATA/control.sock between the CLI and a running node.
import Foundation

/// Control protocol constants and message shapes.
///
/// Wire format: newline-delimited JSON over a Unix stream socket (mode 0600). Each request is one
/// line `{"verb": "peers", "args": {...}}` (`args` optional, an object). Each request gets exactly
/// one response line, in order: `{"ok": true, "result": ...}` or
/// `{"ok": false, "error": {"code": "...", "message": "...", "hint": "..."}}`.
/// A connection may carry several requests in sequence.
public enum ControlProtocol {
    /// The socket's file name inside the data directory.
    public static let socketFileName = "control.sock"
    /// Longest request line the server accepts (bytes, without the newline). Longer: an error
    /// response, then the connection is closed.
    public static let maxRequestLineBytes = 1 << 20
    /// Longest response line the client accepts.
    public static let maxResponseLineBytes = 64 << 20
    /// Requests a connection may have queued before the server stops reading from it.
    public static let maxPipelinedRequests = 16
    /// Concurrent control connections; more are closed at once.
    public static let maxConnections = 64
    /// A connection with no request in flight is closed after this long.
    public static let idleTimeout: Duration = .seconds(300)

    /// The socket path for a data directory.
    public static func socketPath(dataDirectory: String) -> String {
        (dataDirectory.hasSuffix("/") ? dataDirectory : dataDirectory + "/") + socketFileName
    }
}

/// One request.
public struct ControlRequest: Equatable, Sendable, Codable {
    public var verb: String
    public var args: [String: JSONValue]

    public init(verb: String, args: [String: JSONValue] = [:]) {
        self.verb = verb
        self.args = args
    }

    enum CodingKeys: String, CodingKey { case verb, args }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        verb = try c.decode(String.self, forKey: .verb)
        args = try c.decodeIfPresent([String: JSONValue].self, forKey: .args) ?? [:]
    }
}

/// One response: a result or an error.
public enum ControlResponse: Equatable, Sendable {
    case success(JSONValue)
    case failure(MeshError)

    /// The response as one JSON line (without the newline).
    public var jsonLine: String {
        let v: JSONValue
        switch self {
        case .success(let r): v = .object(["ok": .bool(true), "result": r])
        case .failure(let e):
            var err: [String: JSONValue] = ["code": .string(e.code.rawValue), "message": .string(e.message)]
            if let h = e.hint { err["hint"] = .string(h) }
            v = .object(["ok": .bool(false), "error": .object(err)])
        }
        return v.description
    }

    /// Parses a response line.
    public init(jsonLine: some Collection<UInt8>) throws(MeshError) {
        guard let v = try? JSONDecoder().decode(JSONValue.self, from: Data(jsonLine)), let ok = v["ok"]?.boolValue else {
            throw MeshError(.controlBadResponse, "the node sent a malformed control response", hint: "are the CLI and the node the same version?")
        }
        if ok {
            self = .success(v["result"] ?? .null)
        } else {
            let e = v["error"]
            self = .failure(MeshError(MeshError.Code(e?["code"]?.stringValue ?? "control.error"),
                                      e?["message"]?.stringValue ?? "the node reported an error without a message",
                                      hint: e?["hint"]?.stringValue))
        }
    }
}

extension MeshError.Code {
    /// No node is running (no control socket, or a stale one).
    public static let controlNoNode = Self("control.no_node")
    public static let controlTimeout = Self("control.timeout")
    public static let controlBadRequest = Self("control.bad_request")
    public static let controlBadResponse = Self("control.bad_response")
    public static let controlUnknownVerb = Self("control.unknown_verb")
    public static let controlLineTooLong = Self("control.line_too_long")
    public static let controlIO = Self("control.io")
}
