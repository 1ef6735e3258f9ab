import Foundation
import TestSupport
import Testing
@testable import Gossip
@testable import Mesh
@testable import Store
#if canImport(Glibc)
import Glibc
#endif

/// The rows of docs/PROTOCOL.md Appendix B: (name, section) in the order written.
private func specCounterRows() throws -> [(name: String, section: String)] {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    let text = try String(contentsOf: root.appendingPathComponent("docs/PROTOCOL.md"), encoding: .utf8)
    guard let start = text.range(of: "\n## Appendix B. Counters\n") else { return [] }
    let rest = text[start.upperBound...]
    let body = rest.range(of: "\n## ").map { rest[..<$0.lowerBound] } ?? rest
    var rows: [(String, String)] = []
    for line in body.split(separator: "\n") where line.hasPrefix("| `") {
        let cells = line.split(separator: "|", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        guard cells.count == 5, cells[1].hasPrefix("`"), cells[1].hasSuffix("`") else { continue }
        rows.append((String(cells[1].dropFirst().dropLast()), cells[2]))
    }
    return rows
}

/// Sends `bytes` as one UDP datagram from an ephemeral loopback socket.
private func sendDatagram(_ bytes: [UInt8], to a: PeerAddress) {
    let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
    defer { close(fd) }
    sendDatagram(fd: fd, bytes, to: a)
}

/// Connects over TCP, writes `bytes`, then closes the connection (a FIN).
private func sendOverTCP(_ bytes: [UInt8], to a: PeerAddress) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var sa = socketAddress(a)
    let ok = withUnsafePointer(to: &sa) { p in
        p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard ok == 0 else { return }
    _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    Thread.sleep(forTimeInterval: 0.1)
}

private func u32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8(v >> 16 & 0xff), UInt8(v >> 8 & 0xff), UInt8(v & 0xff)] }

struct RejectCounterTests {
    /// Issue 9 item 8: the spec and the node named counters differently (`badSignature` in the
    /// text, `bad_signature` in `status`) and the spec left several out. Appendix B is now the
    /// one list, and it is exactly `RejectCounter`.
    @Test func theSpecsCounterTableListsExactlyTheNamesTheNodeCountsUnder() throws {
        let rows = try specCounterRows()
        #expect(rows.count > 40, "Appendix B not found or not parsed: \(rows.count) rows")
        let names = rows.map(\.name)
        #expect(Set(names).count == names.count, "listed twice: \(Dictionary(grouping: names, by: { $0 }).filter { $1.count > 1 }.keys.sorted())")
        let doc = Set(names), code = Set(RejectCounter.names)
        #expect(code.subtracting(doc).isEmpty, "in the code, not in PROTOCOL.md Appendix B: \(code.subtracting(doc).sorted())")
        #expect(doc.subtracting(code).isEmpty, "in PROTOCOL.md Appendix B, not in the code: \(doc.subtracting(code).sorted())")
        #expect(names == RejectCounter.names, "the table and the code list the names in another order")
        for (name, section) in rows {
            let ok = section == "local" || section.split(separator: ",").allSatisfy { $0.trimmingCharacters(in: .whitespaces).hasPrefix("§") }
            #expect(ok, "\(name): section \"\(section)\"")
        }
    }

    /// Every reason the spec's text names with an arrow ("→ `name`", §5.2, §7.1, §10) is a
    /// listed counter: no camelCase or unlisted name survives in the prose.
    @Test func everyReasonNamedInTheSpecsTextIsAListedCounter() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let text = try String(contentsOf: root.appendingPathComponent("docs/PROTOCOL.md"), encoding: .utf8)
        let pattern = try NSRegularExpression(pattern: #"→ (?:refused, )?`([A-Za-z_.]+)`"#)
        let found = Set(pattern.matches(in: text, range: NSRange(text.startIndex..., in: text)).map {
            String(text[Range($0.range(at: 1), in: text)!])
        })
        #expect(found.isSuperset(of: ["oversized", "malformed", "unsupported_version", "from_self", "unknown_sender", "bad_signature",
                                      "too_many_members", "replayed", "untrusted_origin", "bad_entry_signature", "revoked",
                                      "certificate_expired"]), "\(found.sorted())")
        #expect(found.subtracting(RejectCounter.names).isEmpty, "not in Appendix B: \(found.subtracting(RejectCounter.names).sorted())")
    }

    @Test func everyGossipRejectReasonIsCountedUnderItsOwnListedName() {
        for r in RejectReason.allCases {
            #expect(RejectCounter(rawValue: r.rawValue) != nil, "\(r) (\(r.rawValue)) is not a RejectCounter")
            #expect(RejectCounter(r).rawValue == r.rawValue)
        }
        for r in AdmissionPolicy.Rejection.allCases {
            #expect(RejectCounter(RejectReason(r)).rawValue == r.rawValue, "§10 reason \(r.rawValue)")
        }
    }

    @Test func everyNameIsSnakeCaseOrANodeErrorCode() throws {
        let snake = try NSRegularExpression(pattern: #"^[a-z][a-z0-9]*(_[a-z0-9]+)*$"#)
        let code = try NSRegularExpression(pattern: #"^(stream|process|ssh|socks5)\.[a-z0-9_]+$|^uv\.E[A-Z]+$"#)
        for n in RejectCounter.names {
            let r = NSRange(n.startIndex..., in: n)
            #expect(snake.firstMatch(in: n, range: r) != nil || code.firstMatch(in: n, range: r) != nil, "\(n)")
        }
    }

    @Test func sessionAndStreamEndsAreCountedUnderListedNames() {
        let peer = NodeIdentity.generate().nodeID
        let errors: [SessionError] = [.malformed("x"), .unsupportedVersion(2), .protocolViolation("x"), .wrongPeer(expected: peer, actual: peer),
                                      .notAdmitted(peer), .badSignature(peer), .noCommonCipher, .keyExchangeFailed, .authenticationFailed,
                                      .counterExhausted]
        #expect(errors.map(\.reason) == ["malformed", "unsupported_version", "protocol_violation", "wrong_peer", "untrusted_key",
                                         "bad_signature", "no_common_cipher", "key_exchange_failed", "frame_authentication_failed",
                                         "counter_exhausted"])
        #expect(SessionCloseReason.stream(MeshError(.idleTimeout, "idle")).counter == .idleTimeout)
        #expect(SessionCloseReason.stream(MeshError(.init("uv.ECONNRESET"), "reset")).counter == .uvECONNRESET)
        #expect(SessionCloseReason.stream(MeshError(.init("uv.EWHATEVER"), "?")).counter == .other)
        #expect(SessionCloseReason.stream(MeshError(.init("uv.EWHATEVER"), "?")).reason == "uv.EWHATEVER", "the log keeps the code")
        #expect(SessionCloseReason.unknownMessageType(0x20).counter == .unknownMessageType)
    }
}

@Suite(.serialized, .ownThread()) struct StatusRejectionNameTests {
    /// `status --json`'s `rejected` takes its keys from `RejectCounter` only, from every layer:
    /// the gossip core, the node's own counting, the UDP socket and the stream framing.
    @Test(.ownThread(timeLimit: .minutes(1))) func theRejectionKeysStatusEmitsAreAllListedCounters() throws {
        let n = try InProcessNode(name: "names", join: [], admission: AdmissionPolicy())
        defer { n.stop() }
        let a = n.address
        sendDatagram([1, 2, 3], to: a)                                   // malformed
        sendDatagram([UInt8](repeating: 0x4d, count: 1500), to: a)       // oversized_datagram
        let stranger = NodeIdentity.generate()
        sendDatagram(Envelope(sender: stranger.nodeID, incarnation: 1, counter: 1, message: .nack(seq: 1)).encode(signer: stranger), to: a)
        sendOverTCP(u32(1 << 20) + [0], to: a)                           // oversized_frame (over 512 before the handshake)
        sendOverTCP(u32(100) + [1, 2, 3], to: a)                         // truncated_frame
        sendOverTCP(u32(3) + [1, 2, 3], to: a)                           // malformed hello
        try eventually(10, "every input counted") {
            let r = (try? n.onLoop { $0.nodeStatus().rejected }) ?? [:]
            return ["malformed", "oversized_datagram", "unknown_sender", "oversized_frame", "truncated_frame"].allSatisfy { r[$0] != nil }
        }
        // And every reason the gossip core and the node count, as `status` reports them.
        let status = try n.onLoop { node -> [String: UInt64] in
            for r in RejectReason.allCases { node.gossip.counters.rejected[r, default: 0] += 1 }
            for c in RejectCounter.allCases { node.count(c, peer: "test") }
            return node.nodeStatus().rejected
        }
        let keys = Set(status.keys)
        #expect(keys.subtracting(RejectCounter.names).isEmpty, "not listed: \(keys.subtracting(RejectCounter.names).sorted())")
        #expect(keys == Set(RejectCounter.names))
        #expect(!keys.contains("badSignature") && !keys.contains("fromSelf"))
        // `/metrics` labels its rejections with the same names.
        let text = try n.onLoop { String(decoding: $0.metricsExposition(), as: UTF8.self) }
        for name in RejectCounter.names {
            #expect(metricValue(text, "meshnode_rejected_total{reason=\"\(name)\"}") == Double(status[name] ?? 0), "\(name)")
        }
        #expect(metricValue(text, "meshnode_rejected_total{reason=\"bad_signature\"}") ?? 0 >= 1)
    }
}
