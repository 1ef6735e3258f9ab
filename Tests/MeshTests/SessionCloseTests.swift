import Foundation
import Testing
@testable import Gossip
@testable import Mesh
@testable import Store

/// A node and a `WirePeer` it trusts.
private func nodeAndWirePeer(configure: (inout MeshNodeOptions) -> Void = { _ in }) throws -> (InProcessNode, WirePeer) {
    let wireID = NodeIdentity.generate(), nodeID = NodeIdentity.generate()
    let policy = AdmissionPolicy(trustedNodes: [wireID.nodeID, nodeID.nodeID])
    let n = try InProcessNode(name: "n", identity: nodeID, join: [], admission: policy, configure: configure)
    return (n, try WirePeer(identity: wireID))
}

private let unknownItem = ContentID(digest: Bytes32(w0: 7, w1: 7, w2: 7, w3: 7))

@Suite(.serialized, .ownThread()) struct SessionCloseTests {
    /// PROTOCOL §8.4 and §9.3: a clean close teaches the path nothing. A peer that opens a
    /// session per request and closes each cleanly used to teach the node a lifetime of about
    /// a millisecond (its FIN was taken for a middlebox reset). A reset still teaches one.
    @Test(.ownThread(timeLimit: .minutes(2))) func aPeerThatClosesASessionPerRequestCleanlyTeachesNoLifetimeButAResetDoes() throws {
        let (n, wire) = try nodeAndWirePeer()
        defer { n.stop(); wire.stop() }
        let peer = wire.identity.nodeID
        for k in 0..<6 {
            let s = try wire.connect(to: n.address)
            try wire.send(s, .wantRecipe(requestID: UInt32(k + 1), contentID: unknownItem))
            _ = try wire.waitFor(BlobMessage.Tag.error.rawValue, on: s)
            try wire.shutdown(s)
            #expect(wire.ended.value[s] == true, "the node answered session \(s)'s close with its own")
        }
        try eventually(10, "the node has closed every session") { (try? n.onLoop { $0.sessionCount }) == 0 }
        let (path, rejected, successors, dialled) = try n.onLoop {
            ($0.paths[peer], $0.runtime.rejected, $0.runtime.successorSessions, $0.runtime.sessionsEstablished["direct"])
        }
        #expect(path?.typicalLifetimeSeconds == nil, "learned \(String(describing: path))")
        #expect(path?.pendingLifetimes.isEmpty ?? true)
        #expect((path?.resets ?? 0) == 0)
        #expect(rejected.isEmpty, "clean closes are not counted as dropped input: \(rejected)")
        #expect(successors == 0 && dialled == nil, "the node opened no session of its own")
        // The budget check that opens successors finds no lifetime, so it opens none.
        _ = try wire.connect(to: n.address)
        #expect(try n.onLoop { $0.pathBudget(peer) } == nil)

        // A session reset under the node is the path's doing once the next session is up.
        let r = try wire.connect(to: n.address)
        Thread.sleep(forTimeInterval: 0.3)
        try wire.reset(r)
        _ = try wire.connect(to: n.address)
        try eventually(10, "the node learned a lifetime from the reset") {
            (try? n.onLoop { $0.paths[peer]?.typicalLifetimeSeconds }) != nil
        }
        let life = try n.onLoop { $0.paths[peer]?.typicalLifetimeSeconds } ?? 0
        #expect(life >= 0.25 && life < 10, "learned \(life) s")
    }

    /// The node closes cleanly itself: a session it drains after a newer one replaced it, and
    /// every session when it stops, end with its `close` (PROTOCOL §8.4), not a bare FIN.
    @Test(.ownThread(timeLimit: .minutes(2))) func aNodeEndsDrainedSessionsAndItsSessionsAtStopWithAClose() throws {
        let (n, wire) = try nodeAndWirePeer { $0.sessionDrainTimeout = .milliseconds(500) }
        var stopped = false
        defer { if !stopped { n.stop() }; wire.stop() }
        let old = try wire.connect(to: n.address)
        let new = try wire.connect(to: n.address)
        // The node keeps the newer session; the older drains and is closed at the next sweep (5 s).
        try wire.waitEnded(old, timeout: 15)
        #expect(wire.ended.value[old] == true, "the drained session ended with the node's close")
        #expect(wire.ended.value[new] == nil)
        n.stop()
        stopped = true
        try wire.waitEnded(new, timeout: 10)
        #expect(wire.ended.value[new] == true, "the stopping node closed its session cleanly")
    }

    /// Idle sessions are closed cleanly, so a peer fetching item after item from a node that
    /// closes idle sessions quickly learns no lifetime, and opens no successor sessions while
    /// a slow transfer runs. (The node's FIN used to teach the fetcher a lifetime of 1-6 s.)
    @Test(.ownThread(timeLimit: .minutes(3))) func aNodeClosingIdleSessionsCleanlyTeachesItsPeerNoLifetimeAndNoSuccessors() throws {
        let ids = (0..<2).map { _ in NodeIdentity.generate() }
        let policy = AdmissionPolicy(trustedNodes: Set(ids.map(\.nodeID)))
        let server = try InProcessNode(name: "server", identity: ids[0], join: [], admission: policy, configure: {
            $0.sessionIdleTimeout = .milliseconds(300)
            $0.blob.bandwidth = BandwidthConfig(globalBytesPerSecond: 1_000_000)
            // No push-to-2 `take` (its dial would race the fetcher's: two sessions per item).
            $0.pushCopies = 0
        })
        defer { server.stop() }
        let fetcher = try InProcessNode(name: "fetcher", identity: ids[1], join: [server.address], admission: policy)
        defer { fetcher.stop() }
        try eventually(20, "the two nodes see each other") { server.states().count == 2 && fetcher.states().count == 2 }
        for (k, size) in [200_000, 200_000, 4_000_000].enumerated() {
            let path = try makeFile(in: server.dir, name: "src-\(k)", size: size, seed: UInt64(40 + k))
            let entry = try Store.open(dataDir: server.dir).ingest(path: path, name: "item\(k).npz", signer: server.identity).entry
            server.loop.post { [node = server.node!] in node.announce(entry) }
            try eventually(60, "the fetcher holds item \(k)") { fetcher.isComplete(entry.contentID) }
            try expectSameContent(fetcher, entry.contentID, as: path)
            if k < 2 {
                try eventually(20, "the server closed the idle session") {
                    (try? server.onLoop { $0.sessionCount }) == 0 && (try? fetcher.onLoop { $0.sessionCount }) == 0
                }
            }
        }
        let (path, successors, established) = try fetcher.onLoop {
            ($0.paths[ids[0].nodeID], $0.runtime.successorSessions, $0.runtime.sessionsEstablished.values.reduce(0, +))
        }
        #expect(path?.typicalLifetimeSeconds == nil, "learned \(String(describing: path))")
        #expect(successors == 0)
        #expect(established <= 4, "\(established) sessions for 3 items")
    }

    /// PROTOCOL §8.3: every type but 0x01, 0x02, 0x10-0x18 and 0x20-0x21 is reserved and closes the
    /// session, counted once. 0x18-0x1f used to be taken for chunk exchange (counted as
    /// `malformed_blob_message`, session left open), and each unknown type was counted twice.
    @Test(.ownThread(timeLimit: .minutes(3))) func everyReservedMessageTypeClosesTheSessionAndIsCountedOnce() throws {
        let (n, wire) = try nodeAndWirePeer()
        defer { n.stop(); wire.stop() }
        let reserved = [0x00] + Array(0x03...0x0f) + Array(0x19...0x1f) + Array(0x22...0xff)
        #expect(reserved.count == 256 - 1 - 1 - 9 - 2)
        for (k, t) in reserved.enumerated() {
            let s = try wire.connect(to: n.address)
            try wire.send(s, UInt8(t), [1, 2, 3])
            try wire.waitEnded(s)
            #expect(wire.ended.value[s] == false, "type 0x\(String(t, radix: 16)) ends the session at once, not cleanly")
            let rejected = try n.onLoop { $0.runtime.rejected }
            #expect(rejected["unknown_message_type"] == UInt64(k + 1), "type 0x\(String(t, radix: 16)): \(rejected)")
            #expect(rejected.count == 1, "\(rejected)")
        }
        // The allocated types keep the session open.
        let s = try wire.connect(to: n.address)
        let piece = BlobMessage.chunkPiece(requestID: 9, index: 0, chunkBytes: UInt32(BlobMessage.pieceBytes + 1),
                                           offset: UInt32(BlobMessage.pieceBytes), data: [1])
        try wire.send(s, piece)  // an answer to nothing: ignored
        try wire.send(s, .wantRecipe(requestID: 1, contentID: unknownItem))
        _ = try wire.waitFor(BlobMessage.Tag.error.rawValue, on: s)
        #expect(wire.ended.value[s] == nil)
    }

    /// PROTOCOL §8.1, §8.3: keepalives are empty frames outside the AEAD, so sealed frames
    /// around them keep their counters in step.
    @Test(.ownThread(timeLimit: .minutes(1))) func keepalivesBetweenSealedFramesUseNoNonce() throws {
        let (n, wire) = try nodeAndWirePeer()
        defer { n.stop(); wire.stop() }
        let s = try wire.connect(to: n.address)
        for k in 1...3 {
            try wire.loop.execute {
                let c = try wire.session(s).connection
                for _ in 0..<k { try c.stream.write(FrameDecoder.header(length: 0)) }
            }
            try wire.send(s, .wantRecipe(requestID: UInt32(k), contentID: unknownItem))
        }
        try eventually(10, "three answers") { wire.received.value.filter { $0.type == BlobMessage.Tag.error.rawValue }.count == 3 }
        #expect(wire.ended.value[s] == nil)
        #expect(try n.onLoop { $0.runtime.rejected }.isEmpty)
    }

    /// PROTOCOL §8.2: a handshake frame over its message's maximum is refused and counted once.
    @Test(.ownThread(timeLimit: .minutes(1))) func aHelloOneByteOverItsMaximumIsRefusedAndCountedOnce() throws {
        let (n, wire) = try nodeAndWirePeer()
        defer { n.stop(); wire.stop() }
        var h = SessionHandshake(role: .initiator, signer: wire.identity, verifier: Ed25519Verifier(),
                                 credential: [UInt8](repeating: 1, count: SessionHandshake.maxCredentialBytes)) { _, _ in true }
        let hello = h.start()
        #expect(hello.count == 360)
        let closed = Waiter<MeshError?>()
        let address = n.address
        try wire.loop.execute {
            TCPStream.connect(loop: wire.loop, to: SocketAddress(ip: address.host, port: address.port)!) { r in
                guard let stream = try? r.get() else { return closed.fulfill(nil) }
                stream.onClose = { closed.fulfill($0) }
                stream.startReading()
                try? stream.write(FrameDecoder.header(length: 361) + hello + [0])
            }
        }
        #expect(try closed.wait(10, "the node to close")?.code == .eof)
        try eventually(5, "counted") { (try? n.onLoop { $0.runtime.rejected["malformed"] }) == 1 }
        #expect(try n.onLoop { $0.runtime.rejected } == ["malformed": 1])
    }
}
