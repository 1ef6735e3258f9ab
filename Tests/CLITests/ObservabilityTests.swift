import Foundation
import TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

enum PrometheusBinaries {
    static let prometheus = "/usr/bin/prometheus"
    static let promtool = "/usr/bin/promtool"
    static var available: Bool { FileManager.default.isExecutableFile(atPath: prometheus) }
    static var promtoolAvailable: Bool { FileManager.default.isExecutableFile(atPath: promtool) }
}

/// Metrics, health, logs and the systemd unit, against real `meshnode run` processes.
@Suite(.serialized, .ownThread()) struct ObservabilityTests {
    @Test(.ownThread(timeLimit: .minutes(3)),
          .enabled(if: PrometheusBinaries.available, "needs /usr/bin/prometheus (Debian's prometheus package; scripts/apt-deps.sh installs it)"))
    func aRealPrometheusScrapesANodeAndSeesItsPeerAlive() throws {
        let c = try TestCluster(size: 2)
        let n1 = c.nodes[0]
        try n1.start(config: c.configPath, extra: ["--metrics-listen", "\(n1.ip):9946"])
        try c.nodes[1].start(config: c.configPath, join: [n1.address], extra: ["--metrics-listen", "off"])
        try eventually(30, "2 alive\n\(c.dumpLogs())") { c.allSeeAlive(2) }

        let dir = c.root.sub("prometheus")
        try FileManager.default.createDirectory(atPath: dir + "/data", withIntermediateDirectories: true)
        let config = """
            global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}
            scrape_configs:
              - job_name: meshnode
                static_configs: [{targets: ['\(n1.ip):9946']}]
            """
        try config.write(toFile: dir + "/prometheus.yml", atomically: true, encoding: .utf8)
        let webIP = "\(c.subnet).200", webPort = 9090
        let prom = try Subprocess.spawn([
            PrometheusBinaries.prometheus, "--config.file=\(dir)/prometheus.yml", "--storage.tsdb.path=\(dir)/data",
            "--web.listen-address=\(webIP):\(webPort)", "--log.level=warn", "--storage.tsdb.retention.time=1h",
        ])
        defer {
            prom.kill(SIGTERM)
            prom.wait(timeoutSeconds: 15)
        }
        func query(_ q: String) -> String? {
            let encoded = q.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? q
            guard let r = httpGet(host: webIP, port: webPort, path: "/api/v1/query?query=\(encoded)", timeout: 5), r.status == 200,
                  let j = try? parseJSON(r.body) as? [String: Any], let data = j["data"] as? [String: Any],
                  let result = data["result"] as? [[String: Any]], let value = result.first?["value"] as? [Any] else { return nil }
            return value.last as? String
        }
        try eventually(90, "Prometheus reports the member alive\nprometheus: \(prom.result.stderr.suffix(2000))") {
            if let s = prom.poll() { throw TestFailure("prometheus exited with \(s): \(prom.result.stderr)") }
            return query(#"meshnode_members{state="alive"}"#) == "1"
        }
        #expect(query(#"up{job="meshnode"}"#) == "1")
        #expect(query("meshnode_circuit_open_peers") == "0")
        #expect(query("meshnode_items_under_min_copies") == "0")
        #expect(query("meshnode_outbox_pending_items") == "0")
        #expect((Double(query("meshnode_gossip_messages_received_total") ?? "0") ?? 0) > 0)
    }

    @Test(.ownThread(timeLimit: .minutes(2)),
          .enabled(if: PrometheusBinaries.promtoolAvailable, "needs /usr/bin/promtool (Debian's prometheus package)"))
    func aRunningNodesExpositionPassesPromtool() throws {
        let c = try TestCluster(size: 2)
        let n1 = c.nodes[0]
        try n1.start(config: c.configPath, extra: ["--metrics-listen", "\(n1.ip):9946"])
        try c.nodes[1].start(config: c.configPath, join: [n1.address], extra: ["--metrics-listen", "off"])
        try eventually(30, "2 alive") { c.allSeeAlive(2) }
        let f = c.root.sub("item.bin")
        try writePseudoRandomFile(f, size: 300_000, seed: 5)
        let id = try c.nodes[1].put(f, name: "item.bin")
        try eventually(30, "the item on n1") { n1.holdsComplete(id) }
        let r = try #require(httpGet(host: n1.ip, port: 9946, path: "/metrics"))
        #expect(r.status == 200)
        #expect(r.body.contains("meshnode_sync_duration_seconds_count 1"))
        let path = c.root.sub("metrics.txt")
        try r.body.write(toFile: path, atomically: true, encoding: .utf8)
        let check = try Subprocess.shell("\(PrometheusBinaries.promtool) check metrics < \(path)")
        #expect(check.status == 0, "\(check)")
    }

    @Test(.ownThread(timeLimit: .minutes(2))) func healthExits0WhenHealthy1WhenItsSeedsAreUnreachableAnd17WithNoNode() throws {
        let c = try TestCluster(size: 2)
        let alone = c.nodes[0], lonely = c.nodes[1]
        try alone.start(config: c.configPath, extra: ["--metrics-listen", "\(alone.ip):9946"])
        let h = try Meshnode.run(["health", "--data", alone.dataDir])
        #expect(h.status == 0, "\(h)")
        #expect(h.stdout.hasPrefix("healthy\n") && h.stdout.contains("breakers   healthy    no breakers open"))
        let j = try Meshnode.run(["health", "--data", alone.dataDir, "--json"])
        let json = try #require(try parseJSON(j.stdout) as? [String: Any])
        #expect(json["status"] as? String == "healthy")
        #expect((json["components"] as? [String: Any])?.count == 6)
        let web = try #require(httpGet(host: alone.ip, port: 9946, path: "/health"))
        #expect(web.status == 200)
        #expect((try parseJSON(web.body) as? [String: Any])?["status"] as? String == "healthy")

        // A seed nobody answers at: gossip is degraded, and so is the node.
        try lonely.start(config: c.configPath, join: ["\(c.subnet).99:7946"], extra: ["--metrics-listen", "off"])
        let d = try Meshnode.run(["health", "--data", lonely.dataDir])
        #expect(d.status == 1, "\(d)")
        #expect(d.stdout.contains("gossip     degraded   alone: no member reachable through 1 seed(s)"))

        #expect(alone.terminate() == 0)
        let none = try Meshnode.run(["health", "--data", alone.dataDir])
        #expect(none.status == 17)
        #expect(none.stderrLines.count == 1 && none.stderr.hasPrefix("meshnode: error: no node is running"), "\(none)")
    }

    @Test(.ownThread(timeLimit: .minutes(2))) func aTakenMetricsAddressStopsTheNodeWithOneLineOnlyWhenItWasConfigured() throws {
        let c = try TestCluster(size: 1)
        let n = c.nodes[0]
        let held = try #require(listeningSocket(host: n.ip, port: 9946))
        defer { close(held.fd) }
        let child = try Meshnode.spawn(["run", "--data", n.dataDir, "--config", c.configPath, "--listen", n.address,
                                        "--metrics-listen", "\(n.ip):9946"])
        let status = child.wait(timeoutSeconds: 20)
        let lines = child.result.stderrLines.filter { $0.hasPrefix("meshnode: error:") }
        #expect(status != 0 && status < 128, "\(child.result)")
        #expect(lines.count == 1, "\(child.result.stderr)")
        #expect(lines.first?.contains("\(n.ip):9946") == true && lines.first?.contains("metrics_listen") == true, "\(lines)")

        // Not configured: the default address (127.0.0.1:9946) taken is a warning, and the node runs.
        let holdDefault = listeningSocket(host: "127.0.0.1", port: 9946)
        defer { if let holdDefault { close(holdDefault.fd) } }
        try n.start(config: c.configPath)
        if holdDefault != nil {
            try eventually(10, "the warning") { n.logs.contains("not serving /metrics and /health: cannot listen on 127.0.0.1:9946") }
        }
        #expect(try Meshnode.run(["health", "--data", n.dataDir]).status == 0)
    }

    @Test(.ownThread(timeLimit: .minutes(2))) func logFormatJSONWritesOneParsableObjectPerLineWithItsMetadata() throws {
        let c = try TestCluster(size: 2)
        let n1 = c.nodes[0]
        try n1.start(config: c.configPath, extra: ["--log-format", "json", "--metrics-listen", "off"])
        try c.nodes[1].start(config: c.configPath, join: [n1.address], extra: ["--metrics-listen", "off"])
        try eventually(30, "2 alive") { c.allSeeAlive(2) }
        try eventually(10, "the member line") { n1.logs.contains("\"msg\":\"member alive\"") }
        #expect(n1.terminate() == 0, "\(n1.logs)")
        let lines = n1.logs.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
        #expect(lines.count >= 4)
        var objects: [[String: Any]] = []
        for l in lines {
            let o = try #require(try parseJSON(String(l)) as? [String: Any], "not JSON: \(l)")
            for k in ["ts", "level", "msg", "logger"] { #expect(o[k] is String, "\(k) missing in \(l)") }
            #expect((o["ts"] as? String)?.hasSuffix("Z") == true)
            objects.append(o)
        }
        let started = try #require(objects.first { $0["msg"] as? String == "node started" })
        #expect(started["listen"] as? String == n1.address)
        #expect((started["id"] as? String)?.isEmpty == false)
        let member = try #require(objects.first { $0["msg"] as? String == "member alive" })
        #expect(member["name"] as? String == "n2")
        #expect(member["level"] as? String == "info" && member["logger"] as? String == "meshnode")
    }

    @Test(.ownThread(timeLimit: .minutes(1)),
          .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/systemd-analyze"), "needs systemd-analyze"))
    func theSystemdUnitPassesSystemdAnalyzeVerify() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let unit = try String(contentsOf: root.appendingPathComponent("contrib/meshnode.service"), encoding: .utf8)
        for needed in ["KillSignal=SIGTERM", "TimeoutStopSec=40", "Restart=always", "RestartSec=2", "User=meshnode",
                       "ReadWritePaths=/var/lib/meshnode", "LimitNOFILE="] {
            #expect(unit.contains(needed), "\(needed) missing")
        }
        // verify checks that ExecStart's binary exists: point it at the one under test.
        let dir = TestDir("unit")
        let path = dir.sub("meshnode.service")
        try unit.replacingOccurrences(of: "/usr/local/bin/meshnode", with: Meshnode.binaryPath)
            .write(toFile: path, atomically: true, encoding: .utf8)
        let r = try Subprocess.run(["/usr/bin/systemd-analyze", "verify", path], timeoutSeconds: 30)
        #expect(r.status == 0, "\(r)")
    }
}
