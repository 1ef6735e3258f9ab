import CSodium
import Foundation
import Store
import Testing

/// A temporary directory removed when the value is released.
final class TempDir {
    let path: String

    init(_ label: String = "store") {
        var template = Array("/tmp/meshnode-\(label)-XXXXXX".utf8CString)
        let p = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(p != nil, "mkdtemp failed")
        path = String(cString: p!)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    func sub(_ name: String) -> String { "\(path)/\(name)" }
}

/// Writes `size` pseudo-random bytes to `path`, determined by `seed` (ChaCha20 via
/// libsodium's deterministic generator), 1 MiB at a time.
func writeRandomFile(_ path: String, size: Int, seed: UInt64) throws {
    Sodium.ensureInitialized()
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    guard fd >= 0 else { throw MeshError(.ioError, "cannot create \(path)", hint: "") }
    defer { close(fd) }
    let block = 1 << 20
    var buf = [UInt8](repeating: 0, count: block)
    var written = 0
    var index: UInt64 = 0
    while written < size {
        var s = [UInt8](repeating: 0, count: 32)
        for k in 0..<8 {
            s[k] = UInt8(truncatingIfNeeded: seed >> UInt64(8 * k))
            s[8 + k] = UInt8(truncatingIfNeeded: index >> UInt64(8 * k))
        }
        let n = min(block, size - written)
        buf.withUnsafeMutableBufferPointer { randombytes_buf_deterministic($0.baseAddress!, n, s) }
        let w = buf.withUnsafeBytes { write(fd, $0.baseAddress!, n) }
        precondition(w == n)
        written += n
        index += 1
    }
}

/// BLAKE2b-256 of a whole file (tests only: reads it into memory).
func hashOfFile(_ path: String) throws -> Bytes32 {
    let data = try Data(contentsOf: URL(fileURLWithPath: path))
    return data.withUnsafeBytes { Blake2b256.hash($0) }
}

func readBytes(_ path: String) throws -> [UInt8] {
    Array(try Data(contentsOf: URL(fileURLWithPath: path)))
}

/// Flips one bit of the byte at `offset` in place.
func flipByte(_ path: String, at offset: Int) {
    let fd = open(path, O_RDWR)
    precondition(fd >= 0)
    defer { close(fd) }
    var b: UInt8 = 0
    precondition(pread(fd, &b, 1, off_t(offset)) == 1)
    b ^= 0x01
    precondition(pwrite(fd, &b, 1, off_t(offset)) == 1)
}

/// A fresh store in a temp dir, with its identity.
struct Fixture {
    let dir: TempDir
    let store: Store
    let identity: NodeIdentity
    var dataDir: String { dir.sub("data") }

    init(chunkSizeBytes: UInt32 = 64 * 1024, label: String = "store") throws {
        dir = TempDir(label)
        (store, identity) = try Store.initialize(dataDir: dir.sub("data"), name: "test", chunkSizeBytes: chunkSizeBytes)
    }
}

/// Runs `body` and returns the `MeshError` it threw (nil if it succeeded or threw something else).
func meshError(_ body: () throws -> Void) -> MeshError? {
    do {
        try body()
        return nil
    } catch {
        return error as? MeshError
    }
}
