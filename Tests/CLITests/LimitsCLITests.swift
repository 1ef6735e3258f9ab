import Foundation
import TestSupport
import Testing
@testable import Gossip
@testable import Store

/// Sizes and bounds that docs/PROTOCOL.md states, as the CLI applies them.
@Suite("meshnode limits", .ownThread(timeLimit: .minutes(2)))
struct LimitsCLITests {
    @Test("admit with the longest name and role writes a 221-byte certificate (PROTOCOL §10)")
    func longestCertificate() throws {
        let dir = TestDir("admit-size")
        let key = dir.sub("authority.key"), out = dir.sub("node.cert")
        let a = try Meshnode.run(["authority", "init", "--out", key])
        try #require(a.status == 0, "\(a)")
        let subject = NodeIdentity.generate().nodeID
        let r = try Meshnode.run(["admit", "\(subject)", "--authority", key, "--name", String(repeating: "n", count: 48),
                                  "--role", String(repeating: "r", count: 16), "--serial", "18446744073709551615", "-o", out])
        try #require(r.status == 0, "\(r)")
        let hex = try String(contentsOfFile: out, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let bytes = try #require(Hex.decode(hex))
        #expect(bytes.count == 221)
        #expect(bytes.count == Certificate.maxEncodedBytes)
        #expect(try Certificate.decode(bytes).subject == subject)
        let tooLong = try Meshnode.run(["admit", "\(subject)", "--authority", key, "--role", String(repeating: "r", count: 17)])
        #expect(tooLong.status == 14, "\(tooLong)")
    }

    @Test("init --chunk-size accepts exactly 4 KiB … 64 MiB, the range receivers accept (PROTOCOL §3)")
    func chunkSizeBounds() throws {
        for (size, status) in [("4095", 14), ("4KiB", 0), ("64MiB", 0), ("67108865", 14), ("128MiB", 14)] as [(String, Int32)] {
            let dir = TestDir("init-chunk")
            let r = try Meshnode.run(["init", "--data", dir.sub("data"), "--name", "n", "--chunk-size", size])
            #expect(r.status == status, "--chunk-size \(size): \(r)")
        }
    }
}
