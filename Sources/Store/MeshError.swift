#if canImport(Glibc)
import Glibc
#endif

/// The one error type meshnode shows to people: what is wrong, and what to do about it.
///
/// It renders on a single line as `meshnode: error: <message> — <hint>` and maps to a
/// distinct process exit status per `Code` (documented in README.md, "Exit codes").
public struct MeshError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The kind of failure; each has its own exit status.
    public enum Code: String, Sendable, CaseIterable {
        /// Anything without a more specific code (a bug, an unexpected system error).
        case internalError
        /// The data dir has no identity or store yet (`meshnode init` was not run).
        case notInitialized
        /// `init` found an identity already there and refused to overwrite it.
        case alreadyInitialized
        /// An input file does not exist.
        case fileNotFound
        /// An input file exists but cannot be read (permissions, a directory, I/O error).
        case fileUnreadable
        /// No item matches the id or name given.
        case unknownItem
        /// A name or id prefix matches several different items.
        case ambiguousName
        /// The store was written by a newer meshnode (schema version too high).
        case schemaTooNew
        /// Stored bytes do not match their hash, or a recipe/entry does not verify.
        case corrupt
        /// The file system is full.
        case noSpace
        /// Another I/O failure (permissions on the data dir, read-only file system, ...).
        case ioError
        /// SQLite reported an error.
        case databaseError
        /// A value supplied by the user or a peer is not acceptable (bad name, bad type, ...).
        case invalidInput
        /// The item is known (its entry arrived) but its content is not all here yet.
        case incomplete

        /// The process exit status for this code. 0 is success, 1 is reserved for
        /// unexpected failures and 64 is argument-parser usage errors.
        public var exitStatus: Int32 {
            switch self {
            case .internalError: 1
            case .notInitialized: 3
            case .alreadyInitialized: 4
            case .fileNotFound: 5
            case .fileUnreadable: 6
            case .unknownItem: 7
            case .ambiguousName: 8
            case .schemaTooNew: 9
            case .corrupt: 10
            case .noSpace: 11
            case .ioError: 12
            case .databaseError: 13
            case .invalidInput: 14
            case .incomplete: 15
            }
        }
    }

    public var code: Code
    /// What is wrong, in one line, without a trailing period.
    public var message: String
    /// What to do about it, in one line.
    public var hint: String

    public init(_ code: Code, _ message: String, hint: String) {
        self.code = code
        self.message = message
        self.hint = hint
    }

    /// `meshnode: error: <message> — <hint>`, guaranteed to be a single line.
    public var description: String {
        let line = hint.isEmpty ? "meshnode: error: \(message)" : "meshnode: error: \(message) — \(hint)"
        return String(line.map { $0 == "\n" || $0 == "\r" ? " " : $0 })
    }

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
