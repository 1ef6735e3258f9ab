import Foundation
#if canImport(Glibc)
import Glibc
#endif

public struct TestFileError: Error, CustomStringConvertible {
    public let description: String
}

/// Writes `size` deterministic pseudo-random bytes to `path` (created or truncated, mode 0644),
/// 1 MiB at a time. The bytes are the native-endian words of a xorshift64 stream started from
/// `seed`: the same seed always gives the same bytes, and a shorter file is a prefix of a longer one.
/// Fast and incompressible enough for chunking and transfer tests; not for anything cryptographic.
public func writePseudoRandomFile(_ path: String, size: Int, seed: UInt64) throws {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    guard fd >= 0 else { throw TestFileError(description: "cannot create \(path): \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var state = seed &+ 0x9E37_79B9_7F4A_7C15
    let block = 1 << 20
    var buf = [UInt64](repeating: 0, count: block / 8)
    var left = size
    while left > 0 {
        buf.withUnsafeMutableBufferPointer { words in
            for i in 0..<words.count {
                state ^= state << 13
                state ^= state >> 7
                state ^= state << 17
                words[i] = state
            }
        }
        let n = min(block, left)
        var done = 0
        while done < n {
            let w = buf.withUnsafeBytes { write(fd, $0.baseAddress! + done, n - done) }
            guard w > 0 else { throw TestFileError(description: "cannot write \(path): \(String(cString: strerror(errno)))") }
            done += w
        }
        left -= n
    }
}
