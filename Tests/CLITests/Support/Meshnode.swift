import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Finds and runs the `meshnode` binary built next to the test bundle.
enum Meshnode {
    /// `<dir of this test executable>/meshnode`, e.g. `.build/debug/meshnode`.
    /// `MESHNODE_BIN` overrides it (to test an installed or release binary).
    static let binaryPath: String = {
        if let p = ProcessInfo.processInfo.environment["MESHNODE_BIN"], !p.isEmpty { return p }
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buf, buf.count - 1)
        precondition(n > 0, "cannot read /proc/self/exe")
        let exe = String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        var dir = (exe as NSString).deletingLastPathComponent
        // On Linux the bundle is `<dir>/meshnodePackageTests.xctest`; on Darwin one level deeper.
        while !FileManager.default.isExecutableFile(atPath: dir + "/meshnode") && dir != "/" {
            dir = (dir as NSString).deletingLastPathComponent
        }
        return dir + "/meshnode"
    }()

    /// Runs `meshnode args...` with the progress bar off and `HOME` pointed away from the real one.
    static func run(_ args: [String], environment: [String: String] = [:], timeoutSeconds: Double = 60) throws -> CommandResult {
        try Subprocess.run([binaryPath] + args, environment: defaultEnvironment.merging(environment) { $1 },
                           timeoutSeconds: timeoutSeconds)
    }

    /// Starts `meshnode args...` without waiting (for kill tests and long-running nodes).
    static func spawn(_ args: [String], environment: [String: String] = [:]) throws -> ChildProcess {
        try Subprocess.spawn([binaryPath] + args, environment: defaultEnvironment.merging(environment) { $1 })
    }

    static let defaultEnvironment = ["MESHNODE_NO_PROGRESS": "1", "HOME": "/nonexistent-meshnode-test-home"]
}

/// Parses stdout as JSON.
func parseJSON(_ text: String) throws -> Any {
    try JSONSerialization.jsonObject(with: Data(text.utf8))
}
