import Foundation
import Logging
import TestSupport
import Testing
@testable import Gossip
@testable import Mesh
@testable import Store

/// One in-process node: its own loop thread, store and identity, on a loopback port.
final class InProcessNode: @unchecked Sendable {
    let loop: EventLoop
    let dir: String
    let identity: NodeIdentity
    var node: MeshNode!

    init(name: String, identity: NodeIdentity = .generate(), join: [PeerAddress], admission: AdmissionPolicy,
         dataDir: String? = nil, listen: PeerAddress = PeerAddress(host: "127.0.0.1", port: 0), chunkSizeBytes: UInt32 = 64 << 10,
         tune: (inout GossipConfig) -> Void = { _ in }, configure: (inout MeshNodeOptions) -> Void = { _ in },
         logHandler: (any LogHandler)? = nil) throws {
        self.identity = identity
        if let dataDir {
            dir = dataDir
        } else {
            dir = NSTemporaryDirectory() + "meshnode-test-\(name)-\(UUID().uuidString.prefix(8))"
            _ = try Store.initialize(dataDir: dir, name: name, chunkSizeBytes: chunkSizeBytes, identity: identity)
        }
        loop = try EventLoop(name: "node-\(name)")
        var opts = MeshNodeOptions(listen: listen, join: join)
        opts.gossip.name = name
        opts.gossip.probeIntervalMs = 200
        opts.gossip.probeTimeoutMs = 100
        opts.gossip.antiEntropyIntervalMs = 2000
        tune(&opts.gossip)
        opts.admission = admission
        configure(&opts)
        var logger = logHandler.map { h in Logger(label: "test.\(name)", factory: { _ in h }) } ?? Logger(label: "test.\(name)")
        logger.logLevel = .warning
        let o = opts, d = dir, id = identity, l = loop, lg = logger
        // The node's store connection is created on, and confined to, the loop thread.
        node = try loop.execute { try MeshNode(loop: l, store: try Store.open(dataDir: d), identity: id, options: o, logger: lg) }
    }

    var address: PeerAddress { try! loop.execute { [node] in node!.gossip.address } }

    func states() -> [NodeID: MemberState] {
        (try? loop.execute { [node] in
            Dictionary(uniqueKeysWithValues: node!.gossip.memberSnapshots().map { ($0.node, $0.state) })
        }) ?? [:]
    }

    /// Entries held, holder records and node facts (PROTOCOL §4.6–4.7, which every node writes
    /// about itself) not counted.
    func entryCount() -> Int {
        (try? loop.execute { [node] in node!.gossip.entries.filter { $0.holding == nil && $0.nodeFacts == nil }.count }) ?? 0
    }

    private var stopped = false
    nonisolated(unsafe) static var leaked: [MeshNode?] = []

    /// Leaves gracefully and deletes the data dir (unless `keepData`).
    func stop(keepData: Bool = false) {
        guard !stopped else { return }
        stopped = true
        let done = Waiter<Void>()
        let t0 = Date()
        loop.post { [node] in node!.stop { done.fulfill(()) } }
        if (try? done.wait(10, "node stop")) == nil { print("STOP-DIAG: \(identity.nodeID.short) stop did not complete in 10 s") }
        if !loop.shutdown(timeout: .seconds(10)) {
            print("STOP-DIAG: \(identity.nodeID.short) loop did not shut down; keeping the node alive")
            Self.leaked.append(node)
        }
        if Date().timeIntervalSince(t0) > 2 { print("STOP-DIAG: \(identity.nodeID.short) stop took \(Date().timeIntervalSince(t0)) s") }
        if !keepData { try? FileManager.default.removeItem(atPath: dir) }
    }

    /// Stops without telling anyone, as a crash would (the data dir stays).
    func crash() {
        guard !stopped else { return }
        stopped = true
        let done = Waiter<Void>()
        loop.post { [node] in
            node!.closeEverything()
            done.fulfill(())
        }
        _ = try? done.wait(10, "node crash")
        _ = loop.shutdown(timeout: .seconds(10))
    }

    func onLoop<T: Sendable>(_ body: @escaping @Sendable (MeshNode) throws -> T) throws -> T {
        try loop.execute { [node] in try body(node!) }
    }

    func isComplete(_ id: ContentID) -> Bool { (try? Store.open(dataDir: dir).isComplete(id)) == true }

    func blobCounters() -> BlobCounters { (try? onLoop { $0.blobs?.counters ?? BlobCounters() }) ?? BlobCounters() }
}

func eventually(_ seconds: Double = 20, _ what: String, _ condition: () -> Bool) throws {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if condition() { return }
        Thread.sleep(forTimeInterval: 0.05)
    }
    throw Waiter<Void>.Timeout(what: what)
}

@Suite(.serialized, .ownThread()) struct MeshNodeTests {
    /// Puts a small file through a second store handle (as `meshnode put` does) and announces it.
    func put(_ bytes: [UInt8], name: String, on n: InProcessNode) throws -> ManifestEntry {
        let path = n.dir + "/input-" + name
        _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
        let other = try Store.open(dataDir: n.dir)
        let entry = try other.ingest(path: path, name: name, signer: n.identity).entry
        n.loop.post { [node = n.node!] in node.announce(entry) }
        return entry
    }

    @Test(.ownThread(timeLimit: .minutes(1))) func threeTrustedNodesJoinReplicateAnEntryAndSeeALeave() throws {
        let ids = (0..<3).map { _ in NodeIdentity.generate() }
        let policy = AdmissionPolicy(trustedNodes: Set(ids.map(\.nodeID)))
        let a = try InProcessNode(name: "a", identity: ids[0], join: [], admission: policy)
        defer { a.stop() }
        let b = try InProcessNode(name: "b", identity: ids[1], join: [a.address], admission: policy)
        defer { b.stop() }
        let c = try InProcessNode(name: "c", identity: ids[2], join: [a.address], admission: policy)
        var cStopped = false
        defer { if !cStopped { c.stop() } }

        for n in [a, b, c] {
            try eventually(20, "\(n.identity.nodeID.short) sees 3 alive") {
                let s = n.states()
                return s.count == 3 && s.values.allSatisfy { $0 == .alive }
            }
        }

        let entry = try put(Array(repeating: 7, count: 100_000), name: "games.db.bin", on: b)
        for n in [a, c] {
            try eventually(10, "entry reaches \(n.identity.nodeID.short)") { n.entryCount() == 1 }
            let stored = try Store.open(dataDir: n.dir).items()
            #expect(stored.map(\.entry) == [entry])
        }

        c.stop()
        cStopped = true
        for n in [a, b] {
            try eventually(10, "\(n.identity.nodeID.short) sees c leave") { n.states()[ids[2].nodeID] == .left }
        }
    }

    @Test(.ownThread(timeLimit: .minutes(1))) func aNodeWithAnUntrustedKeyIsNeverAdmitted() throws {
        let ids = (0..<2).map { _ in NodeIdentity.generate() }
        let policy = AdmissionPolicy(trustedNodes: Set(ids.map(\.nodeID)))
        let a = try InProcessNode(name: "a", identity: ids[0], join: [], admission: policy)
        defer { a.stop() }
        let b = try InProcessNode(name: "b", identity: ids[1], join: [a.address], admission: policy)
        defer { b.stop() }
        let rogue = try InProcessNode(name: "rogue", join: [a.address], admission: AdmissionPolicy(trustedNodes: Set(ids.map(\.nodeID))))
        defer { rogue.stop() }
        try eventually(20, "a and b see each other") { a.states().count == 2 && b.states().count == 2 }
        Thread.sleep(forTimeInterval: 2)
        #expect(a.states()[rogue.identity.nodeID] == nil)
        #expect(b.states()[rogue.identity.nodeID] == nil)
        let rejected = try a.loop.execute { [node = a.node!] in node.gossip.counters.rejectedTotal + node.runtime.rejected.values.reduce(0, +) }
        #expect(rejected > 0)
    }
}
