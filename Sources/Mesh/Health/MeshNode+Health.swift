// The node's health report: what `meshnode health` and `GET /health` show.
import Foundation
import Gossip
import Store

extension MeshNode {
    /// Gathers the health rules' inputs now and applies them (loop thread).
    public func healthReport() -> HealthReport {
        HealthChecks.report(healthInputs())
    }

    func healthInputs() -> HealthInputs {
        let now = Self.now()
        let slow = slowGauges()
        var i = HealthInputs(store: slow.store, expectedSchemaVersion: Schema.currentVersion,
                             disk: DiskSpace.of(store.dataDir), nowMs: WallClock.nowMs())
        let o = observability
        i.storeWriteErrors = o.storeWriteErrors
        if let e = o.lastStoreWriteError {
            i.lastStoreWriteErrorAgoSeconds = Double(now - e.at) / 1e9
            i.lastStoreWriteError = e.message
        }
        i.lastNoSpaceAgoSeconds = o.lastNoSpaceAt.map { Double(now - $0) / 1e9 }
        for m in gossip.memberSnapshots() where !m.isSelf {
            switch m.state {
            case .alive: i.membersAlive += 1
            case .suspect: i.membersSuspect += 1
            case .dead: i.membersDead += 1
            default: break
            }
        }
        i.seedsConfigured = options.join.count
        i.stopping = stopping
        if let blobs {
            i.transfersActive = blobs.activeDownloads
            i.transfersQueued = blobs.queuedDownloads
            i.transfersAbandoned = blobs.abandonedDownloads
            i.transfersStalled = blobs.stalledDownloads(olderThanSeconds: HealthThresholds.transferStalledSeconds, now: now)
            i.breakersOpen = blobs.openBreakers
        }
        return i
    }
}

extension HealthReport {
    /// `{"components":{...},"status":"..."}`, keys sorted.
    public var jsonText: String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        return String(decoding: (try? enc.encode(self)) ?? Data(), as: UTF8.self)
    }

    /// One line per component for people: `store      healthy    schema 3, 12 items, 40 chunks`.
    public var text: String {
        var lines = [status.rawValue]
        let names = Self.componentOrder + components.keys.filter { !Self.componentOrder.contains($0) }.sorted()
        for n in names {
            guard let c = components[n] else { continue }
            lines.append("  " + n.padding(toLength: 11, withPad: " ", startingAt: 0)
                         + c.status.rawValue.padding(toLength: 11, withPad: " ", startingAt: 0) + c.reason)
        }
        return lines.joined(separator: "\n") + "\n"
    }
}
