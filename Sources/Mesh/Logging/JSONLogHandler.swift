// `--log-format json`: one JSON object per line, for journald, Loki and the like.
import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// How `meshnode run` writes its log lines (on stderr).
public enum LogFormat: String, Sendable, CaseIterable {
    /// swift-log's `StreamLogHandler`: `2026-11-20T10:11:12+0000 info meshnode: key=value message`.
    case text
    /// `JSONLogHandler`: one JSON object per line.
    case json
}

/// Writes each log event as one line holding one JSON object:
///
/// ```json
/// {"ts":"2026-11-20T10:11:12.345Z","level":"info","msg":"node started","logger":"meshnode","id":"3qvt4ndaemjm"}
/// ```
///
/// `ts` is RFC 3339 in UTC with milliseconds, `level` swift-log's level name, `msg` the message,
/// `logger` the logger's label, then every metadata key (the handler's own, its metadata
/// provider's, then the event's, later ones winning) as a top-level key, with `error` when the
/// event carries one. A metadata key equal to one of the four fixed keys is written as
/// `meta_<key>`. Values are strings, except metadata arrays and dictionaries, which stay JSON
/// arrays and objects. A line is written with one `write(2)` under a lock, so lines from several
/// threads never interleave.
public struct JSONLogHandler: LogHandler {
    public let label: String
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    private let sink: @Sendable (String) -> Void

    /// A handler writing to `sink` (each call gets one complete line, newline included).
    public init(label: String, metadataProvider: Logger.MetadataProvider? = nil, sink: @escaping @Sendable (String) -> Void) {
        self.label = label
        self.metadataProvider = metadataProvider
        self.sink = sink
    }

    /// A handler writing to standard error.
    public static func standardError(label: String) -> JSONLogHandler {
        JSONLogHandler(label: label, sink: StandardErrorLines.write)
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var all = metadata
        if let p = metadataProvider?.get() { all.merge(p) { $1 } }
        if let m = event.metadata { all.merge(m) { $1 } }
        var line = "{\"ts\":"
        Self.appendString(Self.timestamp(), to: &line)
        line += ",\"level\":"
        Self.appendString(event.level.rawValue, to: &line)
        line += ",\"msg\":"
        Self.appendString(event.message.description, to: &line)
        line += ",\"logger\":"
        Self.appendString(label, to: &line)
        if let error = event.error, all["error"] == nil { all["error"] = .string("\(error)") }
        for key in all.keys.sorted() {
            line += ","
            Self.appendString(Self.reserved.contains(key) ? "meta_" + key : key, to: &line)
            line += ":"
            Self.append(all[key]!, to: &line)
        }
        line += "}\n"
        sink(line)
    }

    static let reserved: Set<String> = ["ts", "level", "msg", "logger"]

    static func append(_ v: Logger.Metadata.Value, to out: inout String) {
        switch v {
        case .string(let s): appendString(s, to: &out)
        case .stringConvertible(let c): appendString(c.description, to: &out)
        case .array(let a):
            out += "["
            for (i, e) in a.enumerated() {
                if i > 0 { out += "," }
                append(e, to: &out)
            }
            out += "]"
        case .dictionary(let d):
            out += "{"
            for (i, k) in d.keys.sorted().enumerated() {
                if i > 0 { out += "," }
                appendString(k, to: &out)
                out += ":"
                append(d[k]!, to: &out)
            }
            out += "}"
        }
    }

    /// A JSON string literal (RFC 8259 §7): quote, backslash and control characters escaped.
    static func appendString(_ s: String, to out: inout String) {
        out.unicodeScalars.append("\"")
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where u.value < 0x20 || u.value == 0x2028 || u.value == 0x2029:
                let hex = String(u.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(u)
            }
        }
        out.unicodeScalars.append("\"")
    }

    /// Now, as RFC 3339 UTC with milliseconds: `2026-11-20T10:11:12.345Z`.
    static func timestamp() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return timestamp(seconds: Int(ts.tv_sec), milliseconds: Int(ts.tv_nsec / 1_000_000))
    }

    static func timestamp(seconds: Int, milliseconds: Int) -> String {
        var t = time_t(seconds)
        var tm = tm()
        gmtime_r(&t, &tm)
        func pad(_ v: Int32, _ n: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, n - s.count)) + s
        }
        return "\(pad(tm.tm_year + 1900, 4))-\(pad(tm.tm_mon + 1, 2))-\(pad(tm.tm_mday, 2))T"
            + "\(pad(tm.tm_hour, 2)):\(pad(tm.tm_min, 2)):\(pad(tm.tm_sec, 2)).\(pad(Int32(milliseconds), 3))Z"
    }
}

/// Whole lines to standard error: one `write(2)` each (looping only on a short write), under
/// a lock, so that concurrent lines never interleave.
enum StandardErrorLines {
    private static let lock = NSLock()

    @Sendable static func write(_ line: String) {
        var bytes = Array(line.utf8)
        lock.lock()
        defer { lock.unlock() }
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeMutableBytes { Glibc.write(2, $0.baseAddress! + off, $0.count - off) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }
            off += n
        }
    }
}

extension LogFormat {
    /// Bootstraps swift-log (once per process) with this format at `level`, on stderr.
    public func bootstrap(level: Logger.Level) {
        switch self {
        case .text:
            LoggingSystem.bootstrap { label in
                var h = StreamLogHandler.standardError(label: label)
                h.logLevel = level
                return h
            }
        case .json:
            LoggingSystem.bootstrap { label in
                var h = JSONLogHandler.standardError(label: label)
                h.logLevel = level
                return h
            }
        }
    }
}
