import CoreMetrics
import Foundation
import TestSupport
import Testing
@testable import Gossip
@testable import Mesh
@testable import Store

/// The series of `name` (with `labels`, e.g. `{state="alive"}`) in a text exposition.
func metricValue(_ exposition: String, _ series: String) -> Double? {
    for line in exposition.split(separator: "\n") where !line.hasPrefix("#") {
        let parts = line.split(separator: " ")
        if parts.count == 2, parts[0] == series { return Double(parts[1]) }
    }
    return nil
}

@Suite struct MetricsRegistryTests {
    @Test func scrapeTimeCountersFollowTheirSourceAndNeverGoDown() {
        let m = MetricsRegistry()
        var source: UInt64 = 5
        var byReason: [String: UInt64] = ["timeout": 2]
        m.counter("t_events_total", "Events.") { source }
        m.counters("t_errors_total", "Errors.", label: "reason", values: ["timeout", "closed"]) { byReason }
        var text = String(decoding: m.exposition(), as: UTF8.self)
        #expect(metricValue(text, "t_events_total") == 5)
        #expect(metricValue(text, #"t_errors_total{reason="timeout"}"#) == 2)
        #expect(metricValue(text, #"t_errors_total{reason="closed"}"#) == 0)
        #expect(metricValue(text, #"t_errors_total{reason="other"}"#) == 0)
        source = 3  // a source that went back (a reset) does not make the counter go down
        byReason = ["timeout": 4, "made_up_reason": 7, "another_one": 1]
        text = String(decoding: m.exposition(), as: UTF8.self)
        #expect(metricValue(text, "t_events_total") == 5)
        #expect(metricValue(text, #"t_errors_total{reason="timeout"}"#) == 4)
        // Reasons outside the fixed set add up under `other`; no new series appear.
        #expect(metricValue(text, #"t_errors_total{reason="other"}"#) == 8)
        #expect(!text.contains("made_up_reason"))
        source = 9
        text = String(decoding: m.exposition(), as: UTF8.self)
        #expect(metricValue(text, "t_events_total") == 9)
    }

    @Test func labeledGaugesReportEveryValueOfTheirSetAndZeroForMissingOnes() {
        let m = MetricsRegistry()
        m.gauges("t_members", "Members.", label: "state", values: MemberStateLabels.all) { ["alive": 3, "suspect": 1] }
        let text = String(decoding: m.exposition(), as: UTF8.self)
        #expect(metricValue(text, #"t_members{state="alive"}"#) == 3)
        #expect(metricValue(text, #"t_members{state="dead"}"#) == 0)
        #expect(text.contains("# HELP t_members Members."))
        #expect(text.contains("# TYPE t_members gauge"))
    }

    @Test func theSyncHistogramHasBucketsFrom50MillisecondsToOneHour() {
        #expect(SyncDurationBuckets.seconds.first == 0.05 && SyncDurationBuckets.seconds.last == 3600)
        #expect(SyncDurationBuckets.seconds == SyncDurationBuckets.seconds.sorted())
    }

    /// Every reason the code counts is a `RejectCounter` (the fixed label set), never a bare string
    /// that could drift from it. Scans the sources for `count("...")` and `reject("...")`.
    @Test func everyReasonTheCodeCountsIsInTheFixedLabelSet() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let sources = root.appendingPathComponent("Sources/Mesh")
        let files = FileManager.default.enumerator(atPath: sources.path)?.compactMap { $0 as? String }.filter { $0.hasSuffix(".swift") } ?? []
        #expect(files.count > 20)
        let pattern = try NSRegularExpression(pattern: #"(?:\bcount|\breject)\("([a-z0-9_.A-Z]+)""#)
        var found = Set<String>()
        for f in files {
            let text = try String(contentsOfFile: sources.appendingPathComponent(f).path, encoding: .utf8)
            for m in pattern.matches(in: text, range: NSRange(text.startIndex..., in: text)) {
                found.insert(String(text[Range(m.range(at: 1), in: text)!]))
            }
        }
        #expect(found.isEmpty, "counted by a string, not a RejectCounter: \(found.sorted())")
    }
}

@Suite(.serialized, .ownThread()) struct NodeMetricsTests {
    @Test(.ownThread(timeLimit: .minutes(2))) func twoNodesInOneProcessKeepSeparateRegistries() throws {
        let c = try InProcessCluster(size: 2)
        defer { c.stop() }
        try c.nodes[0].onLoop { node in
            CoreMetrics.Counter(label: "t_only_on_node_zero_total", factory: node.observability.metrics.factory).increment(by: 3)
        }
        let texts = try c.nodes.map { n in try n.onLoop { String(decoding: $0.metricsExposition(), as: UTF8.self) } }
        for t in texts { #expect(metricValue(t, #"meshnode_members{state="alive"}"#) == 1, "\(t)") }
        #expect(metricValue(texts[0], "t_only_on_node_zero_total") == 3)
        #expect(!texts[1].contains("t_only_on_node_zero_total"))
    }

    @Test(.ownThread(timeLimit: .minutes(2))) func aReplicatedItemIsCountedAndItsSyncDurationRecorded() throws {
        let c = try InProcessCluster(size: 2)
        defer { c.stop() }
        let (entry, _) = try c.put(on: 0, size: 1 << 20, seed: 41)
        try eventually(30, "the item complete on n1") { c.nodes[1].isComplete(entry.contentID) }
        try eventually(10, "the counters on n1") {
            let t = (try? c.nodes[1].onLoop { String(decoding: $0.metricsExposition(), as: UTF8.self) }) ?? ""
            return metricValue(t, "meshnode_sync_duration_seconds_count") == 1
                && metricValue(t, "meshnode_chunk_bytes_received_total") == Double(1 << 20)
                && metricValue(t, "meshnode_items_completed_total") == 1
        }
        let receiver = try c.nodes[1].onLoop { String(decoding: $0.metricsExposition(), as: UTF8.self) }
        let sender = try c.nodes[0].onLoop { String(decoding: $0.metricsExposition(), as: UTF8.self) }
        #expect(metricValue(sender, "meshnode_chunk_bytes_sent_total") == Double(1 << 20))
        // Announced and fetched within the hour, and the sum is the one observation.
        #expect(metricValue(receiver, #"meshnode_sync_duration_seconds_bucket{le="3600.0"}"#) == 1)
        let sum = try #require(metricValue(receiver, "meshnode_sync_duration_seconds_sum"))
        #expect(sum >= 0 && sum < 60)
        #expect((metricValue(receiver, "meshnode_gossip_messages_received_total") ?? 0) > 0)
        #expect((metricValue(receiver, "meshnode_gossip_bytes_received_total") ?? 0) > 0)
        // The store numbers are at most 2 s old.
        try eventually(10, "the store gauges") {
            let t = (try? c.nodes[1].onLoop { String(decoding: $0.metricsExposition(), as: UTF8.self) }) ?? ""
            return metricValue(t, "meshnode_items") == 1 && metricValue(t, "meshnode_store_chunk_bytes") == Double(1 << 20)
                && metricValue(t, "meshnode_names") == 1
        }
        if let promtool = ["/usr/bin/promtool", "/usr/local/bin/promtool"].first(where: FileManager.default.isExecutableFile) {
            try checkWithPromtool(promtool, receiver)
        }
    }

    func checkWithPromtool(_ promtool: String, _ exposition: String) throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let path = dir.path + "/metrics.txt"
        try exposition.write(toFile: path, atomically: true, encoding: .utf8)
        let log = dir.path + "/promtool.log"
        let p = try ChildFixture(["/bin/sh", "-c", "\(promtool) check metrics < \(path)"], logPath: log)
        var status: Int32 = 0
        #expect(eventually(30) { waitpid(p.pid, &status, WNOHANG) == p.pid })
        p.markReaped()
        #expect(status == 0, "promtool: \(p.log)")
    }

    @Test(.ownThread(timeLimit: .minutes(1))) func theNodeServesMetricsAndHealthAndRefusesOtherPathsAndMethods() throws {
        let n = try InProcessNode(name: "web", join: [], admission: AdmissionPolicy())
        defer { n.stop() }
        let port = try n.onLoop { node -> UInt16 in
            try node.startHTTP(.at(Endpoint(host: "127.0.0.1", port: 0)))
            return node.httpAddress!.port
        }
        func get(_ request: String) throws -> RawHTTPResponse? {
            let c = try RawTCPClient(port: port)
            c.send(request)
            return RawHTTPResponse(c.readUntilClosed(timeout: 10).bytes)
        }
        let metrics = try #require(try get("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"))
        #expect(metrics.status == 200)
        #expect(metrics.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8")
        #expect(metricValue(metrics.text, "meshnode_circuit_open_peers") == 0)
        #expect(metricValue(metrics.text, "meshnode_items_under_min_copies") == 0)
        #expect(metricValue(metrics.text, "meshnode_outbox_pending_items") == 0)
        #expect((metricValue(metrics.text, "meshnode_disk_total_bytes") ?? 0) > 0)
        let health = try #require(try get("GET /health HTTP/1.1\r\nHost: x\r\n\r\n"))
        #expect(health.status == 200)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(health.body)) as? [String: Any])
        #expect(json["status"] as? String == "healthy")
        #expect(Set((json["components"] as? [String: Any])?.keys.map { $0 } ?? []) == Set(HealthReport.componentOrder))
        #expect(try get("GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")?.status == 404)
        let post = try get("POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        #expect(post?.status == 405 && post?.headers["allow"] == "GET, HEAD")
        // The server's refusals are the node's dropped inputs, as `status` counts them.
        _ = try get("\u{0}\u{1}\u{2}")
        let rejected = try n.onLoop { $0.nodeStatus().rejected }
        #expect(rejected["http_bad_request"] == 1)
    }

    @Test(.ownThread(timeLimit: .minutes(1))) func aTakenConfiguredAddressIsAnErrorAndATakenDefaultOneAWarning() throws {
        let (fd, port) = boundLoopbackSocket()
        defer { close(fd) }
        #expect(listen(fd, 4) == 0)
        let n = try InProcessNode(name: "taken", join: [], admission: AdmissionPolicy())
        defer { n.stop() }
        let taken = Endpoint(host: "127.0.0.1", port: port)
        let error = try n.onLoop { node -> MeshError? in
            do throws(MeshError) { try node.startHTTP(.at(taken)) } catch { return error }
            return nil
        }
        let e = try #require(error)
        #expect(e.message.contains("127.0.0.1:\(port)") && e.message.contains("in use"), "\(e)")
        #expect(e.hint?.contains("metrics_listen") == true)
        // Not configured: the default address being taken does not stop the node.
        let served = try n.onLoop { node -> Bool in
            try node.startHTTP(nil, defaultEndpoint: taken)
            return node.httpAddress != nil
        }
        #expect(!served)
        // `off` serves nothing.
        #expect(try n.onLoop { node in try node.startHTTP(.off); return node.httpAddress == nil })
    }
}
