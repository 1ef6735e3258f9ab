#if canImport(Glibc)
import Glibc
#endif

/// The one error type meshnode shows to people: what is wrong, and what to do about it.
///
/// It renders on a single line as `meshnode: error: <message> — <hint>` and maps to a
/// distinct process exit status per `Code` (documented in README.md, "Exit codes").
public struct MeshError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The kind of failure: a stable name for programs, tests and counters. Each code has
    /// an exit status (`exitStatus`); other modules add codes in extensions (the runtime's
    /// `stream.*`, `uv.*`, `config.*`, `control.*`).
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public init(_ raw: String) { self.rawValue = raw }
        public var description: String { rawValue }

        /// Anything without a more specific code (a bug, an unexpected system error).
        public static let internalError = Code("internalError")
        /// The data dir has no identity or store yet (`meshnode init` was not run).
        public static let notInitialized = Code("notInitialized")
        /// `init` found an identity already there and refused to overwrite it.
        public static let alreadyInitialized = Code("alreadyInitialized")
        /// An input file does not exist.
        public static let fileNotFound = Code("fileNotFound")
        /// An input file exists but cannot be read (permissions, a directory, I/O error).
        public static let fileUnreadable = Code("fileUnreadable")
        /// No item matches the id or name given.
        public static let unknownItem = Code("unknownItem")
        /// A name or id prefix matches several different items.
        public static let ambiguousName = Code("ambiguousName")
        /// The store was written by a newer meshnode (schema version too high).
        public static let schemaTooNew = Code("schemaTooNew")
        /// Stored bytes do not match their hash, or a recipe/entry does not verify.
        public static let corrupt = Code("corrupt")
        /// The file system is full.
        public static let noSpace = Code("noSpace")
        /// Another I/O failure (permissions on the data dir, read-only file system, ...).
        public static let ioError = Code("ioError")
        /// SQLite reported an error.
        public static let databaseError = Code("databaseError")
        /// A value supplied by the user or a peer is not acceptable (bad name, bad type, ...).
        public static let invalidInput = Code("invalidInput")
        /// The item is known but its content has not fully arrived on this node yet.
        public static let incomplete = Code("incomplete")

        /// The store's codes, in exit-status order.
        public static let storeCodes: [Code] = [
            .internalError, .notInitialized, .alreadyInitialized, .fileNotFound, .fileUnreadable, .unknownItem,
            .ambiguousName, .schemaTooNew, .corrupt, .noSpace, .ioError, .databaseError, .invalidInput, .incomplete,
        ]

        private static let statuses: [String: Int32] = [
            "internalError": 1, "notInitialized": 3, "alreadyInitialized": 4, "fileNotFound": 5, "fileUnreadable": 6,
            "unknownItem": 7, "ambiguousName": 8, "schemaTooNew": 9, "corrupt": 10, "noSpace": 11, "ioError": 12,
            "databaseError": 13, "invalidInput": 14, "incomplete": 15,
        ]

        /// The process exit status for this code (README.md, "Exit codes"). 0 is success,
        /// 1 unexpected failures, 64 argument-parser usage errors; 16 configuration errors,
        /// 17 "no node is running", 18 other control-socket failures, 19 network failures.
        public var exitStatus: Int32 {
            if let s = Self.statuses[rawValue] { return s }
            if rawValue.hasPrefix("config.") { return 16 }
            if rawValue == "control.no_node" { return 17 }
            if rawValue.hasPrefix("control.") { return 18 }
            if rawValue.hasPrefix("stream.") || rawValue.hasPrefix("uv.") || rawValue.hasPrefix("address.")
                || rawValue.hasPrefix("socks5.") || rawValue.hasPrefix("ssh.") { return 19 }
            return 1
        }
    }

    public var code: Code
    /// What is wrong, in one line, without a trailing period.
    public var message: String
    /// What to do about it, in one line (nil when there is nothing useful to say).
    public var hint: String?
    /// The libuv status when the error came from libuv (a negative errno).
    public var uvStatus: Int32?

    public init(_ code: Code, _ message: String, hint: String? = nil, uvStatus: Int32? = nil) {
        self.code = code
        self.message = message
        self.hint = hint
        self.uvStatus = uvStatus
    }

    /// `<message> — <hint>`, always one line.
    public var description: String {
        let line = (hint?.isEmpty ?? true) ? message : "\(message) — \(hint!)"
        return String(line.map { $0 == "\n" || $0 == "\r" ? " " : $0 })
    }

    /// How the CLI prints it: `meshnode: error: <message> — <hint>`.
    public var line: String { "meshnode: error: " + description }

    /// Maps an `errno` from an operation on `path` to the right code and a readable line.
    public static func posix(_ err: Int32, _ what: String, path: String) -> MeshError {
        let reason = String(cString: strerror(err))
        switch err {
        case ENOSPC, EDQUOT:
            return MeshError(.noSpace, "no space left on device while \(what) \(path)",
                             hint: "free some space (or use a bigger disk) and run the command again")
        case ENOENT:
            return MeshError(.fileNotFound, "\(path) does not exist (\(what))", hint: "check the path")
        case EACCES, EPERM:
            return MeshError(.fileUnreadable, "permission denied while \(what) \(path)",
                             hint: "check the file's permissions and owner")
        case EROFS:
            return MeshError(.ioError, "read-only file system while \(what) \(path)",
                             hint: "use a writable location")
        default:
            return MeshError(.ioError, "\(what) \(path) failed: \(reason)", hint: "check the disk and the path")
        }
    }
}
