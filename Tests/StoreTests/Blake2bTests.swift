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
