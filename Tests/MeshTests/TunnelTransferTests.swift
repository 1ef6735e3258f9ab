import Foundation
import TestSupport
import Testing
@testable import Gossip
@testable import Mesh
@testable import Store

/// Real OpenSSH and SOCKS5 servers between real nodes.
@Suite(.serialized, .ownThread()) struct TunnelTransferTests {
    /// n0 is reached directly; n1 only through `ssh -W` via a real sshd; n2 only through a real
    /// SOCKS5 proxy (microsocks). Every node's `hosts` says so, and a 200 MB item put on n0
    /// reaches n1 and n2 intact.
    @Test(.ownThread(timeLimit: .minutes(4))) func aPeerBehindSSHAndOneBehindSOCKS5TakePartAndReplicateTwoHundredMegabytes() throws {
        let sshd = try SSHDFixture()
        defer { sshd.stop() }
        let socks = try MicrosocksFixture()
        defer { socks.stop() }
        let ids = (0..<3).map { _ in NodeIdentity.generate() }
        let policy = AdmissionPolicy(trustedNodes: Set(ids.map(\.nodeID)))
        let ports = (0..<3).map { _ in freeLoopbackPort() }
        let addr = ports.map { PeerAddress(host: "127.0.0.1", port: $0) }
        let viaSSH = HostConfig(address: Endpoint(host: "127.0.0.1", port: ports[1]), ssh: sshd.sshOptions())
        let viaSOCKS = HostConfig(address: Endpoint(host: "127.0.0.1", port: ports[2]), socks5: Socks5Settings(proxy: socks.endpoint))
        func hosts(for i: Int) -> [String: HostConfig] {
            var h: [String: HostConfig] = [:]
            if i != 1 { h["\(ids[1].nodeID)"] = viaSSH }
            if i != 2 { h["\(ids[2].nodeID)"] = viaSOCKS }
            return h
        }
        var nodes: [InProcessNode] = []
        defer { for n in nodes { n.stop() } }
        for i in 0..<3 {
            // Everyone joins through n0 directly; n0 learns n1 and n2 from them.
            nodes.append(try InProcessNode(name: "n\(i)", identity: ids[i], join: i == 0 ? [] : [addr[0]], admission: policy,
                                           listen: addr[i], chunkSizeBytes: 1 << 20, configure: { $0.hosts = hosts(for: i) }))
        }
        try eventually(60, "all three alive in every view") {
            nodes.allSatisfy { n in n.states().count == 3 && n.states().values.allSatisfy { $0 == .alive } }
        }
        let path = try makeFile(in: nodes[0].dir, name: "src.bin", size: 200_000_000, seed: 5)
        let entry = try Store.open(dataDir: nodes[0].dir).ingest(path: path, name: "checkpoint.pt", signer: nodes[0].identity).entry
        nodes[0].loop.post { [node = nodes[0].node!] in node.announce(entry) }
        for n in nodes.dropFirst() {
            try eventually(180, "\(n.identity.nodeID.short) holds the 200 MB item") { n.isComplete(entry.contentID) }
            try expectSameContent(n, entry.contentID, as: path)
        }
        // Traffic to n1 and n2 really went through the tunnels.
        let via = try nodes[0].onLoop { $0.runtime.sessionsEstablished }
        #expect((via["ssh"] ?? 0) > 0, "sessions by route: \(via)")
        #expect((via["socks5"] ?? 0) > 0, "sessions by route: \(via)")
        let fromN2 = try nodes[2].onLoop { $0.runtime.sessionsEstablished }
        #expect((fromN2["ssh"] ?? 0) > 0 || (fromN2["inbound"] ?? 0) > 0, "n2's sessions: \(fromN2)")
        // The tunnel to n1 ends on n1's loopback, so those sessions skip the second cipher
        // pass; the SOCKS5 ones do not.
        let ciphers = try nodes[0].onLoop { $0.runtime.sessionsByCipher }
        #expect((ciphers["ssh-tunnel"] ?? 0) > 0, "n0's sessions by cipher: \(ciphers)")
        #expect((ciphers["ssh-tunnel"] ?? 0) <= (via["ssh"] ?? 0), "only sessions through ssh: \(ciphers) vs \(via)")
        #expect((ciphers["aes-256-gcm"] ?? 0) + (ciphers["chacha20-poly1305"] ?? 0) > 0, "n0's sessions by cipher: \(ciphers)")
    }

    /// `a` reaches `b` through `ssh -W` to b's loopback address. The session skips its own
    /// cipher (suite `ssh-tunnel`) only when both ends allow it; with `session_encryption:
    /// always` on either end it stays AES-256-GCM (or ChaCha20), and an item arrives intact
    /// either way.
    @Test(.ownThread(timeLimit: .minutes(3)), arguments: [(true, true), (false, true), (true, false)])
    func theSSHTunnelSuiteIsUsedOnlyWhenBothEndsAllowIt(dialerAllows: Bool, responderAllows: Bool) throws {
        let sshd = try SSHDFixture()
        defer { sshd.stop() }
        let ids = (0..<2).map { _ in NodeIdentity.generate() }
        let policy = AdmissionPolicy(trustedNodes: Set(ids.map(\.nodeID)))
        let ports = (0..<2).map { _ in freeLoopbackPort() }
        let b = try InProcessNode(name: "b", identity: ids[1], join: [], admission: policy,
                                  listen: PeerAddress(host: "127.0.0.1", port: ports[1]), chunkSizeBytes: 1 << 20,
                                  configure: { $0.allowSSHTunnelSuite = responderAllows })
        defer { b.stop() }
        let a = try InProcessNode(name: "a", identity: ids[0], join: [b.address], admission: policy,
                                  listen: PeerAddress(host: "127.0.0.1", port: ports[0]), chunkSizeBytes: 1 << 20, configure: {
            $0.hosts = ["\(ids[1].nodeID)": HostConfig(address: Endpoint(host: "127.0.0.1", port: ports[1]), ssh: sshd.sshOptions())]
            $0.allowSSHTunnelSuite = dialerAllows
        })
        defer { a.stop() }
        try eventually(60, "a and b alive in each other's view") {
            a.states().count == 2 && b.states().count == 2 && (a.states().values.allSatisfy { $0 == .alive })
        }
        let path = try makeFile(in: b.dir, name: "src.bin", size: 5_000_000, seed: 9)
        let entry = try Store.open(dataDir: b.dir).ingest(path: path, name: "five.bin", signer: b.identity).entry
        b.loop.post { [node = b.node!] in node.announce(entry) }
        try eventually(60, "a holds the item") { a.isComplete(entry.contentID) }
        try expectSameContent(a, entry.contentID, as: path)
        let byRoute = try a.onLoop { $0.runtime.sessionsEstablished }
        #expect((byRoute["ssh"] ?? 0) > 0, "a's sessions by route: \(byRoute)")
        let atA = try a.onLoop { $0.runtime.sessionsByCipher }
        let atB = try b.onLoop { $0.runtime.sessionsByCipher }
        if dialerAllows && responderAllows {
            #expect((atA["ssh-tunnel"] ?? 0) > 0, "a: \(atA)")
            #expect((atB["ssh-tunnel"] ?? 0) > 0, "b: \(atB)")
        } else {
            #expect(atA["ssh-tunnel"] == nil, "a: \(atA)")
            #expect(atB["ssh-tunnel"] == nil, "b: \(atB)")
        }
    }
}

@Suite(.serialized, .ownThread()) struct FlakyLinkTests {
    /// Every TCP connection between the two nodes goes through a proxy that resets it after
    /// a random 4–8 s. The source serves at 10 MB/s, so the 100 MB transfer spans several
    /// resets; it must still arrive intact.
    @Test(.ownThread(timeLimit: .minutes(4))) func oneHundredMegabytesReplicateThroughAProxyThatResetsEveryConnection() throws {
        let ids = (0..<2).map { _ in NodeIdentity.generate() }
        let policy = AdmissionPolicy(trustedNodes: Set(ids.map(\.nodeID)))
        let ports = (0..<2).map { _ in freeLoopbackPort() }
        let proxyLoop = try EventLoop(name: "reset-proxies")
        defer { _ = proxyLoop.shutdown() }
        let (toA, toB) = try proxyLoop.execute { () throws -> (FaultProxy, FaultProxy) in
            let any = SocketAddress(ip: "127.0.0.1", port: 0)!
            return (try FaultProxy(loop: proxyLoop, listen: any, target: Endpoint(host: "127.0.0.1", port: ports[0]),
                                   resetAfter: .seconds(4)...(.seconds(8)), seed: 11),
                    try FaultProxy(loop: proxyLoop, listen: any, target: Endpoint(host: "127.0.0.1", port: ports[1]),
                                   resetAfter: .seconds(4)...(.seconds(8)), seed: 12))
        }
        defer { proxyLoop.post { toA.close(); toB.close() } }
        let a = try InProcessNode(name: "a", identity: ids[0], join: [], admission: policy,
                                  listen: PeerAddress(host: "127.0.0.1", port: ports[0]), chunkSizeBytes: 1 << 20, configure: {
            $0.hosts = ["\(ids[1].nodeID)": HostConfig(address: Endpoint(host: "127.0.0.1", port: toB.localAddress.port))]
            $0.blob.bandwidth = BandwidthConfig(globalBytesPerSecond: 10_000_000)
        })
        defer { a.stop() }
        let b = try InProcessNode(name: "b", identity: ids[1], join: [a.address], admission: policy,
                                  listen: PeerAddress(host: "127.0.0.1", port: ports[1]), chunkSizeBytes: 1 << 20, configure: {
            $0.hosts = ["\(ids[0].nodeID)": HostConfig(address: Endpoint(host: "127.0.0.1", port: toA.localAddress.port))]
        })
        defer { b.stop() }
        try eventually(30, "a and b see each other") { a.states().count == 2 && b.states().count == 2 }
        let path = try makeFile(in: a.dir, name: "src.bin", size: 100_000_000, seed: 6)
        let entry = try Store.open(dataDir: a.dir).ingest(path: path, name: "games.db.npz", signer: a.identity).entry
        a.loop.post { [node = a.node!] in node.announce(entry) }
        try eventually(180, "b holds the item despite the resets") { b.isComplete(entry.contentID) }
        try expectSameContent(b, entry.contentID, as: path)
        let (resets, accepted) = try proxyLoop.execute { (toA.stats.resets + toB.stats.resets, toA.stats.accepted + toB.stats.accepted) }
        #expect(resets >= 1, "the proxies reset \(resets) connections")
        // b learned the path's lifetime from the resets and opened successors ahead of them.
        let (learned, successors) = try b.onLoop { ($0.paths[ids[0].nodeID], $0.runtime.successorSessions) }
        let life = try #require(learned?.typicalLifetimeSeconds, "no lifetime learned")
        #expect(life >= 3 && life <= 9, "learned lifetime \(life) s")
        #expect(successors > 0)
        #expect(b.blobCounters().bytesFetched <= entry.sizeBytes + UInt64(4 << 20), "refetched \(b.blobCounters().bytesFetched - entry.sizeBytes) bytes")
        print("reset proxy: \(accepted) connections, \(resets) resets; b fetched \(b.blobCounters().bytesFetched) bytes for \(entry.sizeBytes)")
    }
}
