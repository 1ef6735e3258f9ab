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

/// A temporary directory removed (with everything in it) when released.
final class TestDir {
    let path: String

    init(_ label: String = "cli") {
        var template = Array("/tmp/meshnode-\(label)-XXXXXX".utf8CString)
        let p = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(p != nil, "mkdtemp failed")
        path = String(cString: p!)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    func sub(_ name: String) -> String { "\(path)/\(name)" }
}

/// Writes `size` deterministic pseudo-random bytes (xorshift, seeded) to `path`.
func writePseudoRandomFile(_ path: String, size: Int, seed: UInt64) throws {
    guard let f = fopen(path, "wb") else { throw NSError(domain: "test", code: 1) }
    defer { fclose(f) }
    var state = seed &+ 0x9E37_79B9_7F4A_7C15
    let block = 1 << 20
    var buf = [UInt64](repeating: 0, count: block / 8)
    var left = size
    while left > 0 {
        for i in 0..<buf.count {
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            buf[i] = state
        }
        let n = min(block, left)
        _ = buf.withUnsafeBytes { fwrite($0.baseAddress!, 1, n, f) }
        left -= n
    }
}

/// A small seeded generator (SplitMix64) for reproducible random delays.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Parses stdout as JSON.
func parseJSON(_ text: String) throws -> Any {
    try JSONSerialization.jsonObject(with: Data(text.utf8))
}
