import Foundation
import TestSupport
import Testing
@testable import Gossip
@testable import Mesh
@testable import Store

/// The health rules, one component at a time, then a real node's report.
@Suite struct HealthRuleTests {
    static let gauges = StoreGauges(schemaVersion: Schema.currentVersion, items: 4, chunks: 9, chunkBytes: 1000, outboxRows: 0,
                                    oldestOutboxEnqueuedMs: nil)

    func inputs(store: StoreGauges = gauges, freePercent: Double = 50) -> HealthInputs {
        HealthInputs(store: .success(store), expectedSchemaVersion: Schema.currentVersion,
                     disk: .success(DiskSpace(totalBytes: 1_000_000, freeBytes: UInt64(freePercent * 10_000))), nowMs: 1_000_000_000)
    }

    @Test func aQuietNodeIsHealthyInEveryComponent() {
        let r = HealthChecks.report(inputs())
        #expect(r.status == .healthy)
        #expect(Set(r.components.keys) == Set(HealthReport.componentOrder))
        #expect(r.components.values.allSatisfy { $0.status == .healthy && !$0.reason.isEmpty && !$0.reason.contains("\n") })
        #expect(r.components["breakers"] == ComponentHealth(.healthy, "no breakers open"))
    }

    @Test func theNodeIsAsHealthyAsItsWorstComponent() {
        var i = inputs(freePercent: 5)
        #expect(HealthChecks.report(i).status == .degraded)
        i.lastNoSpaceAgoSeconds = 10
        #expect(HealthChecks.report(i).status == .unhealthy)
        #expect(HealthChecks.report(i).components["store"]?.status == .healthy)
    }

    @Test func diskFreeSpaceBelowTenPercentIsDegradedAndBelowTwoOrAFullDiskUnhealthy() {
        #expect(HealthChecks.disk(inputs(freePercent: 10.5)).status == .healthy)
        #expect(HealthChecks.disk(inputs(freePercent: 9.9)).status == .degraded)
        #expect(HealthChecks.disk(inputs(freePercent: 1.9)).status == .unhealthy)
        var i = inputs(freePercent: 50)
        i.lastNoSpaceAgoSeconds = 30
        #expect(HealthChecks.disk(i) == ComponentHealth(.unhealthy, "no space left on device 30 s ago"))
        i.lastNoSpaceAgoSeconds = HealthThresholds.noSpaceRecentSeconds + 1
        #expect(HealthChecks.disk(i).status == .healthy)
        i.disk = .failure(MeshError(.ioError, "statvfs failed"))
        #expect(HealthChecks.disk(i).status == .degraded)
        #expect(HealthChecks.disk(inputs(freePercent: 5)).reason == "5.0 % free (48.8 KiB of 976.6 KiB): below 10 %")
    }

    @Test func gossipIsDegradedAloneWithSeedsOrMostlySuspectAndUnhealthyWhileLeaving() {
        var i = inputs()
        #expect(HealthChecks.gossip(i) == ComponentHealth(.healthy, "alone (no seeds configured)"))
        i.seedsConfigured = 2
        #expect(HealthChecks.gossip(i).status == .degraded)
        i.membersAlive = 3
        i.membersSuspect = 1
        #expect(HealthChecks.gossip(i) == ComponentHealth(.healthy, "3 alive, 1 suspect, 0 dead"))
        i.membersSuspect = 3
        #expect(HealthChecks.gossip(i).status == .degraded)
        i.stopping = true
        #expect(HealthChecks.gossip(i) == ComponentHealth(.unhealthy, "leaving the mesh: the node is shutting down"))
    }

    @Test func stalledOrAbandonedTransfersAreDegraded() {
        var i = inputs()
        i.transfersActive = 2
        #expect(HealthChecks.transfers(i) == ComponentHealth(.healthy, "2 in flight, 0 queued"))
        i.transfersStalled = 1
        #expect(HealthChecks.transfers(i).status == .degraded)
        #expect(HealthChecks.transfers(i).reason.contains("no progress for 60 s"))
        i.transfersStalled = 0
        i.transfersAbandoned = 1
        #expect(HealthChecks.transfers(i).status == .degraded)
    }

    @Test func aRecentStoreWriteErrorIsDegradedAndAnUnreadableOrNewerStoreUnhealthy() {
        var i = inputs()
        i.storeWriteErrors = 2
        i.lastStoreWriteError = "disk I/O error"
        i.lastStoreWriteErrorAgoSeconds = 12
        #expect(HealthChecks.store(i) == ComponentHealth(.degraded, "2 write error(s), the last 12 s ago: disk I/O error"))
        i.lastStoreWriteErrorAgoSeconds = HealthThresholds.storeWriteErrorRecentSeconds + 1
        #expect(HealthChecks.store(i).status == .healthy)
        var g = Self.gauges
        g.schemaVersion += 1
        #expect(HealthChecks.store(inputs(store: g)).status == .unhealthy)
        i.store = .failure(MeshError(.databaseError, "database is locked"))
        #expect(HealthChecks.store(i).status == .unhealthy)
        #expect(HealthChecks.outbox(i).status == .degraded)
    }

    @Test func anOutboxRowPendingTenMinutesIsDegradedAndAFullOutboxUnhealthy() {
        var g = Self.gauges
        g.outboxRows = 3
        g.oldestOutboxEnqueuedMs = 1_000_000_000 - 5_000
        #expect(HealthChecks.outbox(inputs(store: g)) == ComponentHealth(.healthy, "3 items at risk (no durable copy yet), the oldest for 5 s"))
        g.oldestOutboxEnqueuedMs = 1_000_000_000 - 601_000
        #expect(HealthChecks.outbox(inputs(store: g)).status == .degraded)
        g.outboxRows = Store.maxOutboxRows
        #expect(HealthChecks.outbox(inputs(store: g)).status == .unhealthy)
    }

    @Test func statusesMapToExitCodesAndHTTPStatuses() throws {
        #expect(HealthStatus.allCases.map(\.exitStatus) == [0, 1, 2])
        #expect(HealthStatus.allCases.map(\.httpStatus) == [200, 200, 503])
        let r = HealthChecks.report(inputs(freePercent: 5))
        let json = try #require(try JSONSerialization.jsonObject(with: Data(r.jsonText.utf8)) as? [String: Any])
        #expect(json["status"] as? String == "degraded")
        let disk = try #require((json["components"] as? [String: Any])?["disk"] as? [String: Any])
        #expect(disk["status"] as? String == "degraded" && (disk["reason"] as? String)?.isEmpty == false)
        #expect(try JSONDecoder().decode(HealthReport.self, from: Data(r.jsonText.utf8)) == r)
        #expect(r.text.hasPrefix("degraded\n  store      healthy    "))
    }
}

@Suite(.serialized, .ownThread()) struct NodeHealthTests {
    @Test(.ownThread(timeLimit: .minutes(1))) func aFullDiskMakesTheNodeUnhealthyAndHealthAnswers503() throws {
        let n = try InProcessNode(name: "full", join: [], admission: AdmissionPolicy())
        defer { n.stop() }
        #expect(try n.onLoop { $0.healthReport().status } == .healthy)
        let port = try n.onLoop { node -> UInt16 in
            try node.startHTTP(.at(Endpoint(host: "127.0.0.1", port: 0)))
            node.noteStoreWriteError(MeshError(.noSpace, "no space left on device while writing the manifest database"))
            return node.httpAddress!.port
        }
        let report = try n.onLoop { $0.healthReport() }
        #expect(report.status == .unhealthy)
        #expect(report.components["disk"]?.status == .unhealthy)
        #expect(report.components["store"]?.status == .degraded)
        let c = try RawTCPClient(port: port)
        c.send("GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        let r = try #require(RawHTTPResponse(c.readUntilClosed(timeout: 10).bytes))
        #expect(r.status == 503)
        #expect(try JSONDecoder().decode(HealthReport.self, from: Data(r.body)).status == .unhealthy)
        let text = try n.onLoop { String(decoding: $0.metricsExposition(), as: UTF8.self) }
        #expect(metricValue(text, #"meshnode_health{component="disk"}"#) == 2)
        #expect(metricValue(text, "meshnode_store_write_errors_total") == 1)
    }

    @Test(.ownThread(timeLimit: .minutes(1))) func aNodeWhoseSeedsDoNotAnswerHasDegradedGossip() throws {
        let n = try InProcessNode(name: "lonely", join: [PeerAddress(host: "127.0.0.1", port: freeLoopbackPort())],
                                  admission: AdmissionPolicy())
        defer { n.stop() }
        let r = try n.onLoop { $0.healthReport() }
        #expect(r.components["gossip"]?.status == .degraded)
        #expect(r.status == .degraded)
    }
}
