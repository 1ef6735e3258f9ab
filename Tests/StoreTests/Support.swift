import Foundation
import Store
import TestSupport
import Testing

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
    let dir: TestDir
    let store: Store
    let identity: NodeIdentity
    var dataDir: String { dir.sub("data") }

    init(chunkSizeBytes: UInt32 = 64 * 1024, label: String = "store") throws {
        dir = TestDir(label)
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
