import Foundation
import TestSupport
import Testing

/// Per-peer circuit breakers between real processes (docs/RUNTIME.md, "Circuit breakers"): a
/// peer that serves corrupt chunks is cut off after the threshold, is sent nothing until the
/// recovery time has passed, and `meshnode breaker reset` closes its breaker.
@Suite(.serialized, .ownThread()) struct BreakerCLITests {
    @Test(.ownThread(timeLimit: .minutes(3)))
    func aPeerServingCorruptChunksIsCutOffAfterTheThresholdAndSentNothingUntilRecovery() throws {
        let c = try TestCluster(size: 2)
        let n1 = c.nodes[0], n2 = c.nodes[1]
        // n1 fetches; n2 serves every chunk with a byte flipped.
        try c.writeConfig(trusted: c.nodes.map(\.id), extra: "breaker: {failure_threshold: 3, recovery_timeout: 10s, half_open_requests: 1}",
                          to: c.root.sub("n1.yaml"))
        try n1.start(config: c.root.sub("n1.yaml"), extra: ["--metrics-listen", "\(n1.ip):9946"])
        try n2.start(config: c.configPath, join: [n1.address], environment: ["MESHNODE_TEST_CORRUPT_SERVING": "1"])
        try eventually(30, "2 alive") { c.allSeeAlive(2) }
        for i in 0..<4 {
            let f = c.root.sub("item\(i).bin")
            try writePseudoRandomFile(f, size: 5 << 20, seed: UInt64(60 + i))
            _ = try n2.put(f, name: "item\(i).bin")
        }
        func breaker() -> [String: Any]? { n1.peers()[n2.name]?["breaker"] as? [String: Any] }
        func served() -> Int? { (n2.nodeStatus()?["blobs"] as? [String: Any])?["chunks_served"] as? Int }
        try eventually(30, "n1 opens n2's breaker\n\(c.dumpLogs())") { breaker()?["state"] as? String == "open" }
        #expect(n1.logs.contains("circuit open for \(n2.name)"), "\(n1.logs)")
        #expect((breaker()?["last_failure"] as? String) == "corrupt_chunk")
        let metrics = httpGet(host: n1.ip, port: 9946, path: "/metrics")?.body ?? ""
        #expect(metrics.contains("meshnode_circuit_open_peers 1"), "\(metrics.split(separator: "\n").filter { $0.contains("circuit") })")
        let health = try Meshnode.run(["health", "--json", "--data", n1.dataDir])
        #expect(health.status == 1 && health.stdout.contains("breaker(s) open"), "\(health)")
        let table = try Meshnode.run(["peers", "--data", n1.dataDir])
        #expect(table.stdout.contains("BREAKER") && table.stdout.contains("open ("), "\(table)")

        // While open: answers to requests sent before it opened may still arrive; then nothing.
        Thread.sleep(forTimeInterval: 1.5)
        let before = try #require(served())
        let opens = try #require(breaker()?["opens"] as? Int)
        // A new item only n2 holds: n1 asks n2 nothing about it while the breaker is open.
        let f = c.root.sub("item4.bin")
        try writePseudoRandomFile(f, size: 5 << 20, seed: 64)
        _ = try n2.put(f, name: "item4.bin")
        Thread.sleep(forTimeInterval: 4)
        if breaker()?["state"] as? String == "open", breaker()?["opens"] as? Int == opens {
            #expect(served() == before, "n2 was asked for chunks while its breaker was open")
        }
        // After the recovery time one trial goes (for the new item: every older item's fetch
        // has struck n2 off already), fails, and opens it again.
        try eventually(30, "a failed trial opens it again\n\(c.dumpLogs())") { (breaker()?["opens"] as? Int ?? 0) > opens }
        #expect((served() ?? 0) > before, "the trial reached n2")

        let reset = try Meshnode.run(["breaker", "reset", n2.name, "--json", "--data", n1.dataDir])
        #expect(reset.status == 0 && reset.stdout.contains("\"reset\":true") || reset.stdout.contains("\"reset\": true"), "\(reset)")
        let list = try Meshnode.run(["breaker", "--data", n1.dataDir])
        #expect(list.status == 0 && list.stdout.contains(n2.name), "\(list)")
        let unknown = try Meshnode.run(["breaker", "reset", "nobody", "--data", n1.dataDir])
        #expect(unknown.status != 0 && unknown.stderr.contains("no peer named nobody"), "\(unknown)")
    }
}
