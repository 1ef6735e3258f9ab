import Foundation
import Logging
import TestSupport
import Testing
@testable import Gossip
@testable import Mesh
@testable import Store
#if canImport(Glibc)
import Glibc
#endif

/// Keeps every log line (level, message and metadata) for a test to look at.
final class CapturedLog: LogHandler, @unchecked Sendable {
    private let lock = NSLock()
    private var captured: [String] = []
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .info
    var metadataProvider: Logger.MetadataProvider?

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?, source: String, file: String,
             function: String, line: UInt) {
        let meta = (metadata ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        lock.lock()
        captured.append("\(level) \(message) \(meta)")
        lock.unlock()
    }

    var lines: [String] {
        lock.lock()
        defer { lock.unlock() }
        return captured
    }
}

/// A peer played by the test: an identity of its own, gossip envelopes signed by it and sent
/// as UDP datagrams from an ephemeral loopback socket.
final class ScriptedPeer {
    let identity: NodeIdentity
    private var counter: UInt64 = 0
    let fd: Int32

    init(identity: NodeIdentity = .generate()) {
        self.identity = identity
        fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
    }

    deinit { close(fd) }

    /// Its own alive record (it never answers: the address is a black hole).
    func aliveRecord(credential: [UInt8] = []) -> MemberUpdate {
        MemberUpdate(state: .alive, node: identity.nodeID, incarnation: 1, address: PeerAddress(host: "127.0.0.1", port: 9),
                     name: "scripted", credential: credential)
    }

    func send(_ m: Message, to a: PeerAddress) {
        counter += 1
        let bytes = Envelope(sender: identity.nodeID, incarnation: 1, counter: counter, message: m).encode(signer: identity)
        sendDatagram(fd: fd, bytes, to: a)
    }

    func join(_ a: PeerAddress, credential: [UInt8] = []) { send(.join(updates: [aliveRecord(credential: credential)]), to: a) }

    func entry(seq: UInt64, name: String, chunkSize: UInt32 = 65536) -> ManifestEntry {
        ManifestEntry(origin: identity.nodeID, sequence: seq, contentID: ContentID(digest: Blake2b256.hash(Array(name.utf8))),
                      sizeBytes: 1000, chunkSizeBytes: chunkSize, type: .other, createdAtMs: 1_700_000_000_000, name: name)
            .signed(by: identity)
    }
}

@Suite(.serialized, .ownThread()) struct NodeEvidenceTests {
    @Test(.ownThread(timeLimit: .minutes(1))) func anEntryWithAnOutOfRangeChunkSizeIsCountedMalformedAndLoggedByTheNode() throws {
        let peer = ScriptedPeer()
        let log = CapturedLog()
        let a = try InProcessNode(name: "a", join: [], admission: AdmissionPolicy(trustedNodes: [peer.identity.nodeID]), logHandler: log)
        defer { a.stop() }
        peer.join(a.address)
        try eventually(10, "the scripted peer admitted") { a.states()[peer.identity.nodeID] == .alive }
        peer.send(.entries(treePush: true, entries: [peer.entry(seq: 1, name: "tiny-chunks", chunkSize: 100)]), to: a.address)
        peer.send(.entries(treePush: true, entries: [peer.entry(seq: 2, name: "huge-chunks", chunkSize: 128 << 20)]), to: a.address)
        try eventually(10, "two malformed inputs counted") { ((try? a.onLoop { $0.nodeStatus().rejected["malformed"] }) ?? nil) == 2 }
        #expect(log.lines.contains { $0.contains("dropped input") && $0.contains("reason=malformed") }, "\(log.lines)")
        #expect(a.entryCount() == 0)
        #expect(try Store.open(dataDir: a.dir).items().isEmpty)
    }

    @Test(.ownThread(timeLimit: .minutes(1))) func aForkIsCountedOnceKeptAsEvidenceAndStillKnownAfterARestart() throws {
        let peer = ScriptedPeer()
        let identity = NodeIdentity.generate()
        let policy = AdmissionPolicy(trustedNodes: [peer.identity.nodeID])
        let log = CapturedLog()
        let a = try InProcessNode(name: "a", identity: identity, join: [], admission: policy, logHandler: log)
        var aStopped = false
        defer { if !aStopped { a.stop() } }
        peer.join(a.address)
        try eventually(10, "the scripted peer admitted") { a.states()[peer.identity.nodeID] == .alive }
        // Two different entries, both validly signed by their origin, with one sequence number.
        let held = peer.entry(seq: 1, name: "games-a.db"), other = peer.entry(seq: 1, name: "games-b.db")
        peer.send(.entries(treePush: false, entries: [held]), to: a.address)
        try eventually(10, "the first entry stored") { a.entryCount() == 1 }
        peer.send(.entries(treePush: false, entries: [other]), to: a.address)
        try eventually(10, "the fork kept") { ((try? Store.open(dataDir: a.dir).forks().count) ?? 0) == 1 }
        Thread.sleep(forTimeInterval: 0.5)
        #expect(try a.onLoop { $0.nodeStatus().forks } == 1)
        let kept = try Store.open(dataDir: a.dir).forks()
        #expect(kept.map(\.firstEntry) == [held] && kept.map(\.secondEntry) == [other])
        #expect(try Store.open(dataDir: a.dir).status().forks == 1)
        #expect(try Store.open(dataDir: a.dir).items().map(\.entry) == [held])
        #expect(log.lines.contains { $0.contains("fork") && $0.contains("games-b.db") }, "\(log.lines)")

        // After a restart the evidence is still there, and the other entry arriving again is
        // neither a new fork nor counted again.
        a.crash()
        aStopped = true
        let again = try InProcessNode(name: "a", identity: identity, join: [], admission: policy, dataDir: a.dir)
        defer { again.stop() }
        #expect(try again.onLoop { $0.gossip.manifest.forks.count } == 1)
        peer.join(again.address)
        peer.send(.entries(treePush: false, entries: [other]), to: again.address)
        try eventually(10, "the entry arrives again") {
            ((try? again.onLoop { $0.gossip.counters.entriesDuplicate }) ?? 0) >= 1
        }
        #expect(try again.onLoop { $0.nodeStatus().forks } == 0)
        #expect(try Store.open(dataDir: again.dir).forks().count == 1)
    }
}

/// Opens a TCP connection to `a`, sends one frame (u32 big-endian length, then `payload`), and
/// waits (at most 5 s) for the node to close it.
func sendFrameAndAwaitClose(_ payload: [UInt8], to a: PeerAddress) throws {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw FixtureError("socket: \(errno)") }
    defer { close(fd) }
    var tv = timeval(tv_sec: 5, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    var sa = sockaddr_in()
    sa.sin_family = sa_family_t(AF_INET)
    sa.sin_port = in_port_t(a.port.bigEndian)
    inet_pton(AF_INET, a.host, &sa.sin_addr)
    let rc = withUnsafePointer(to: &sa) { p in
        p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard rc == 0 else { throw FixtureError("connect: \(errno)") }
    let n = UInt32(payload.count)
    let frame = [UInt8(n >> 24), UInt8((n >> 16) & 255), UInt8((n >> 8) & 255), UInt8(n & 255)] + payload
    _ = frame.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    var buf = [UInt8](repeating: 0, count: 512)
    while read(fd, &buf, buf.count) > 0 {}
}

/// Every refused admission, by gossip or by session handshake, is counted and logged under
/// its docs/PROTOCOL.md §10 reason, once.
@Suite(.serialized, .ownThread()) struct AdmissionReasonTests {
    @Test(.ownThread(timeLimit: .minutes(1))) func everyRefusalIsCountedAndLoggedUnderItsReasonForGossipAndSessions() throws {
        let authority = NodeIdentity.generate(), rogue = NodeIdentity.generate()
        let now = WallClock.nowMs()
        func cert(_ p: ScriptedPeer, by a: NodeIdentity = authority, serial: UInt64 = 1, issued: Int64 = now - 1000,
                  expires: Int64 = now + 3_600_000, subject: NodeID? = nil) -> Certificate {
            Certificate(authority: a.nodeID, subject: subject ?? p.identity.nodeID, serial: serial, issuedAtMs: issued, expiresAtMs: expires)
                .signed(by: a)
        }
        let revokedNode = ScriptedPeer()
        let policy = AdmissionPolicy(authorities: [authority.nodeID], revokedSerials: [.init(authority: authority.nodeID, serial: 4242)],
                                     revokedNodes: [revokedNode.identity.nodeID])
        let log = CapturedLog()
        let a = try InProcessNode(name: "a", join: [], admission: policy, logHandler: log)
        defer { a.stop() }

        let admitted = ScriptedPeer(), untrusted = ScriptedPeer(), malformed = ScriptedPeer(), wrongSubject = ScriptedPeer()
        let unknownAuthority = ScriptedPeer(), badSignature = ScriptedPeer(), notYetValid = ScriptedPeer(), expired = ScriptedPeer()
        let revokedSerial = ScriptedPeer()
        var tampered = cert(badSignature)
        tampered.expiresAtMs += 86_400_000
        let credentials: [(ScriptedPeer, [UInt8], String?)] = [
            (admitted, cert(admitted).encoded, nil),
            (untrusted, [], "untrusted_key"),
            (malformed, [1, 2, 3], "malformed_certificate"),
            (wrongSubject, cert(wrongSubject, subject: NodeIdentity.generate().nodeID).encoded, "certificate_wrong_subject"),
            (unknownAuthority, cert(unknownAuthority, by: rogue).encoded, "certificate_unknown_authority"),
            (badSignature, tampered.encoded, "certificate_bad_signature"),
            (notYetValid, cert(notYetValid, issued: now + 3_600_000, expires: now + 7_200_000).encoded, "certificate_not_yet_valid"),
            (expired, cert(expired, issued: now - 7_200_000, expires: now - 3_600_000).encoded, "certificate_expired"),
            (revokedSerial, cert(revokedSerial, serial: 4242).encoded, "revoked"),
            (revokedNode, cert(revokedNode).encoded, "revoked"),
        ]
        for (p, c, _) in credentials { p.join(a.address, credential: c) }
        func rejected() -> [String: UInt64] { (try? a.onLoop { $0.nodeStatus().rejected }) ?? [:] }
        var expected = [String: UInt64]()
        for case let (_, _, reason?) in credentials { expected[reason, default: 0] += 1 }
        try eventually(10, "every gossip refusal counted: \(rejected())") {
            expected.allSatisfy { rejected()[$0.key] == $0.value }
        }
        #expect(a.states()[admitted.identity.nodeID] == .alive)
        #expect(a.states().count == 2)  // itself and the one admitted peer
        for reason in expected.keys {
            #expect(log.lines.contains { $0.contains("dropped input") && $0.contains("reason=\(reason)") }, "no log line for \(reason)")
        }

        // The same rule in the session handshake, counted there under the same names, once
        // (not also as a generic refusal when the session closes).
        for (p, c) in [(expired, cert(expired, issued: now - 7_200_000, expires: now - 3_600_000).encoded), (untrusted, [])] {
            var hello = SessionHandshake(role: .initiator, signer: p.identity, verifier: Ed25519Verifier(), credential: c) { _, _ in true }
            try sendFrameAndAwaitClose(hello.start(), to: a.address)
        }
        expected["certificate_expired"]! += 1
        expected["untrusted_key"]! += 1
        try eventually(10, "the session refusals counted: \(rejected())") {
            rejected()["certificate_expired"] == expected["certificate_expired"] && rejected()["untrusted_key"] == expected["untrusted_key"]
        }
        Thread.sleep(forTimeInterval: 0.3)
        for (reason, n) in expected { #expect(rejected()[reason] == n, "\(reason): \(rejected())") }
        #expect(log.lines.contains { $0.contains("reason=certificate_expired") && $0.contains("session handshake") }, "\(log.lines)")
    }
}

@Suite(.serialized, .ownThread()) struct RestoredAdmissionTests {
    /// A member admitted by certificate is restored with that certificate after a restart: the
    /// node's periodic re-check of every member (the first one a few seconds after start) keeps
    /// it, instead of dropping it as an untrusted key for want of a credential.
    @Test(.ownThread(timeLimit: .minutes(1))) func aMemberAdmittedByCertificateSurvivesTheRecheckAfterARestart() throws {
        let authority = NodeIdentity.generate(), identity = NodeIdentity.generate()
        let peer = ScriptedPeer()
        let now = WallClock.nowMs()
        let cert = Certificate(authority: authority.nodeID, subject: peer.identity.nodeID, serial: 9, issuedAtMs: now - 1000,
                               expiresAtMs: now + 3_600_000).signed(by: authority)
        let policy = AdmissionPolicy(authorities: [authority.nodeID])
        let a = try InProcessNode(name: "a", identity: identity, join: [], admission: policy)
        peer.join(a.address, credential: cert.encoded)
        try eventually(10, "the certified peer admitted") { a.states()[peer.identity.nodeID] == .alive }
        a.crash()
        let again = try InProcessNode(name: "a", identity: identity, join: [], admission: policy, dataDir: a.dir)
        defer { again.stop() }
        #expect(again.states()[peer.identity.nodeID] == .alive)
        // The first housekeeping pass (5 s after start) re-checks every member. (The scripted
        // peer never answers probes, so it may be suspect or dead by then: but still a member.)
        Thread.sleep(forTimeInterval: 6.5)
        #expect(again.states()[peer.identity.nodeID] != nil)
        #expect(try again.onLoop { $0.nodeStatus().rejected["untrusted_key"] } == nil)
    }
}
