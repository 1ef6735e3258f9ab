import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A temporary directory, `/tmp/meshnode-<label>-XXXXXX`, removed (with everything in it)
/// when the value is released.
public final class TestDir {
    public let path: String

    public init(_ label: String) {
        var template = Array("/tmp/meshnode-\(label)-XXXXXX".utf8CString)
        let p = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(p != nil, "mkdtemp failed")
        path = String(cString: p!)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    /// `<path>/<name>`.
    public func sub(_ name: String) -> String { "\(path)/\(name)" }
}
