import CBlake2b
import Foundation
import Gossip
import Testing
@testable import Store

@Suite("BLAKE2b-256")
struct Blake2bTests {
    @Test("the C implementation is the one in use, because it agrees with libsodium")
    func ownImplementationIsInUse() {
        #expect(Blake2b256.implementation == "meshnode")
    }

    @Test("it gives libsodium's digest for every length up to 1 KiB and around each block boundary up to 64 KiB")
    func agreesWithLibsodiumOnEveryLength() {
        var rng = SplitMix64(seed: 0x0b1a_2b2b)
        var input = [UInt8](repeating: 0, count: 65_536 + 129)
        for i in input.indices { input[i] = UInt8(truncatingIfNeeded: rng.next()) }
        var lengths = Array(0...1024)
        for block in stride(from: 1024, through: 65_536, by: 128) { lengths += [block - 1, block, block + 1] }
        input.withUnsafeBytes { all in
            for n in lengths {
                let raw = UnsafeRawBufferPointer(rebasing: all[0..<n])
                #expect(Blake2b256.ownDigest(raw) == Blake2b256.sodiumDigest(raw), "length \(n)")
            }
        }
    }

    @Test("a whole 2 MiB chunk at an odd address hashes as libsodium hashes it")
    func agreesOnAChunkAtAnUnalignedAddress() {
        var rng = SplitMix64(seed: 7)
        let bytes = (0..<(2 << 20) + 3).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        bytes.withUnsafeBytes { all in
            let raw = UnsafeRawBufferPointer(rebasing: all[3...])
            #expect(Blake2b256.ownDigest(raw) == Blake2b256.sodiumDigest(raw))
        }
    }

    @Test("four lanes give each buffer's own digest, with every instruction set this CPU has, for lengths 0 to 1 KiB, block edges and odd addresses",
          .enabled(if: meshnode_blake2b_x4_level() > 0, "this CPU has no AVX2: the four-lane code is never used here"))
    func fourLanesAgreeWithOneAtATime() throws {
        let level = Int(meshnode_blake2b_x4_level())
        #expect(Blake2b256.lanes(forChunkBytes: 2 << 20) == 4)
        #expect(Blake2b256.lanes(forChunkBytes: 64 << 20) == 1, "64 MiB chunks one at a time (memory)")
        var rng = SplitMix64(seed: 0x4a4e)
        let stride = 4 * 1024 + 3  // odd, so lanes 1 and 3 start at odd addresses
        var input = [UInt8](repeating: 0, count: 4 * stride + 8)
        for i in input.indices { input[i] = UInt8(truncatingIfNeeded: rng.next()) }
        var lengths = Array(0...300)
        for block in Swift.stride(from: 384, through: 4096, by: 128) { lengths += [block - 1, block, block + 1] }
        input.withUnsafeBytes { all in
            for isa in 1...level {
                for n in lengths {
                    let parts = (0..<4).map { k in UnsafeRawBufferPointer(rebasing: all[(k * stride + k)..<(k * stride + k + n)]) }
                    #expect(Blake2b256.fourLaneDigests(parts, level: Int32(isa)) == parts.map(Blake2b256.ownDigest), "level \(isa), length \(n)")
                }
            }
        }
    }

    @Test("hashing buffers together gives each one's digest in order, for any count, and with lengths mixed")
    func equalLengthHashingKeepsOrder() {
        var rng = SplitMix64(seed: 99)
        let chunks = (0..<7).map { _ in (0..<(64 << 10)).map { _ in UInt8(truncatingIfNeeded: rng.next()) } }
        for count in 0...7 {
            let got = withRawBuffers(Array(chunks.prefix(count))) { Blake2b256.hash(many: $0) }
            #expect(got == chunks.prefix(count).map { Blake2b256.hash($0) }, "\(count) buffers")
        }
        let mixed = [chunks[0], Array(chunks[1].prefix(100)), chunks[2], chunks[3], Array(chunks[4].prefix(100)), chunks[5], chunks[6]]
        #expect(withRawBuffers(mixed) { Blake2b256.hash(many: $0) } == mixed.map { Blake2b256.hash($0) })
    }

    @Test("a 2 MiB chunk hashed in a group of four gives libsodium's digest")
    func groupedChunkAgreesWithLibsodium() {
        var rng = SplitMix64(seed: 11)
        let chunks = (0..<4).map { _ in (0..<(2 << 20)).map { _ in UInt8(truncatingIfNeeded: rng.next()) } }
        let got = withRawBuffers(chunks) { Blake2b256.hash(many: $0) }
        for (k, c) in chunks.enumerated() {
            #expect(got[k] == Bytes32(bytes: c.withUnsafeBytes { Blake2b256.sodiumDigest($0) }), "lane \(k)")
        }
    }

    @Test("RFC 7693 Appendix A: BLAKE2b-512 of \"abc\"")
    func rfcVector() {
        var out = [UInt8](repeating: 0, count: 64)
        let abc: [UInt8] = Array("abc".utf8)
        abc.withUnsafeBytes { raw in
            out.withUnsafeMutableBufferPointer { o in _ = meshnode_blake2b(o.baseAddress!, 64, raw.baseAddress, raw.count) }
        }
        #expect(out.map { String(format: "%02x", $0) }.joined() ==
            "ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d1"
            + "7d87c5392aab792dc252d5de4533cc9518d38aa8dbf1925ab92386edd4009923")
    }

    @Test("the empty file's content id is the one PROTOCOL §3 gives")
    func emptyContentID() {
        var header = Array("meshnode/content/v1".utf8) + [0]
        header += [UInt8](repeating: 0, count: 8) + [0x00, 0x20, 0x00, 0x00]
        #expect(Blake2b256.hash(header).hex == "774659ac0c3da5d32a281074b18e3d53b9e29d61125ff9bfc6e182529f1081c5")
    }
}

/// Runs `body` with raw views of each array (kept alive for the call).
func withRawBuffers<R>(_ arrays: [[UInt8]], _ body: ([UnsafeRawBufferPointer]) -> R) -> R {
    func go(_ i: Int, _ acc: [UnsafeRawBufferPointer]) -> R {
        if i == arrays.count { return body(acc) }
        return arrays[i].withUnsafeBytes { go(i + 1, acc + [$0]) }
    }
    return go(0, [])
}
