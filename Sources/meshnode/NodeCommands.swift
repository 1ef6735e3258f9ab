// Verbs that talk to a running node through its control socket.
import ArgumentParser
import Foundation
import Gossip
import Mesh

extension MeshnodeCommand {
    struct Peers: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List the mesh members the running node knows, with their state.",
            discussion: "Needs a running node (`meshnode run`); exits non-zero when none is running.")

        @OptionGroup var options: DataOptions
        @Flag(help: "Print JSON: an array of members with name, id, address, state, ...") var json = false

        func run() throws {
            try runReportingErrors { () throws(MeshError) in
                let client = ControlClient(dataDirectory: options.dataDir)
                let result = try client.call("peers")
                let rows: [PeerRow]
                do { rows = try result.decode(as: [PeerRow].self) } catch {
                    throw MeshError(.controlBadResponse, "the node sent an unexpected peers list", hint: "are the CLI and node the same version?")
                }
                if json {
                    let enc = JSONEncoder()
                    enc.outputFormatting = [.prettyPrinted, .sortedKeys]
                    FileHandleOut.stdout(String(decoding: (try? enc.encode(rows)) ?? Data(), as: UTF8.self) + "\n")
                } else {
                    FileHandleOut.stdout(Self.table(rows))
                }
            }
        }

        static func table(_ rows: [PeerRow]) -> String {
            let header = ["NAME", "ID", "ADDRESS", "STATE", "INC", "LAST HEARD", "RTT", "BREAKER", "ROLES", "DISK USED/TOTAL", "FREE", "FLAGS"]
            var lines = [header]
            for r in rows where r.seed != true {
                let heard = r.isSelf ? "-" : r.lastHeardMsAgo.map { Self.ago($0) } ?? "never"
                let rtt = r.rttMs.map { String(format: "%.1fms", $0) } ?? "-"
                let roles = r.roles.map { $0.isEmpty ? "-" : $0.joined(separator: ",") } ?? r.role
                let disk = r.diskTotalBytes.map { "\(formatBytes(r.diskUsedBytes ?? 0))/\(formatBytes($0))" } ?? "?"
                let free = r.diskFreeBytes.map { formatBytes($0) } ?? "?"
                var flags = [String]()
                if r.ephemeral == true { flags.append("ephemeral") }
                if r.excluded == true { flags.append("excluded") }
                if r.full == true { flags.append("full") }
                if let g = r.nfsGroup, !g.isEmpty { flags.append("nfs:\(g)") }
                if r.policyMismatch == true { flags.append("other-placement") }
                let breaker = r.isSelf ? "-" : r.breaker.map { b in
                    b.state == "open" ? "open (\(Int((b.recoversInSeconds ?? 0).rounded(.up)))s)" : b.state
                } ?? "closed"
                lines.append([r.name + (r.isSelf ? " (self)" : ""), r.idShort, r.address, r.state, "\(r.incarnation)", heard, rtt,
                              breaker, roles, disk, free, flags.isEmpty ? "-" : flags.joined(separator: " ")])
            }
            let widths = header.indices.map { i in lines.map { $0[i].count }.max() ?? 0 }
            let seeds = rows.filter { $0.seed == true }.map { "seed \($0.address) not joined: \($0.lastError ?? "not joined yet")\n" }
            return lines.map { l in
                l.indices.map { i in l[i].padding(toLength: widths[i], withPad: " ", startingAt: 0) }.joined(separator: "  ")
                    .trimmingCharacters(in: .whitespaces)
            }.joined(separator: "\n") + "\n" + seeds.joined()
        }

        static func ago(_ ms: Int64) -> String {
            if ms < 1000 { return "\(ms)ms ago" }
            if ms < 120_000 { return "\(ms / 1000)s ago" }
            return "\(ms / 60_000)m ago"
        }
    }
}

/// Asks a running node, if any, to announce the entry `meshnode put` just stored (HYBRID push).
/// Returns false when no node is running; the entry then spreads when one starts.
func announceToRunningNode(dataDir: String, sequence: UInt64) -> Result<Bool, MeshError> {
    let client = ControlClient(dataDirectory: dataDir)
    do {
        _ = try client.call("announce", args: ["sequence": .int(Int64(sequence))])
        return .success(true)
    } catch {
        if error.code == .controlNoNode { return .success(false) }
        return .failure(error)
    }
}

/// The keep policy of the node running on `dataDir` (its `retention`, which a put stamps into
/// the entry), or the defaults when none runs.
func runningNodePolicy(dataDir: String) -> KeepPolicy {
    guard let v = try? ControlClient(dataDirectory: dataDir).call("policy"), case .object(let o) = v else { return KeepPolicy() }
    var p = KeepPolicy()
    if case .object(let r)? = o["retention_ms"] {
        for (k, ms) in r { if let t = ItemType(name: k), let n = ms.intValue { p.retentionMs[t] = n } }
    }
    if case .object(let r)? = o["keep_versions"] {
        for (k, n) in r { if let t = ItemType(name: k), let n = n.intValue { p.keepVersions[t] = Int(n) } }
    }
    return p
}

/// What a running node says about itself, for `meshnode status`.
struct RunningNode: Encodable {
    let status: NodeStatus

    func encode(to encoder: any Encoder) throws { try status.encode(to: encoder) }

    var rows: [[String]] {
        let s = status
        let members = ["alive", "suspect", "dead", "left"].map { "\(s.members[$0] ?? 0) \($0)" }.joined(separator: ", ")
        let rejected = s.rejected.isEmpty ? "none" : s.rejected.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        let gc: [[String]] = s.gc.map { [["gc", Self.gcLine($0)]] } ?? []
        let placement: [[String]] = s.placement.map { [["placement", Self.placementLine($0)]] } ?? []
        let spot: [[String]] = s.spot.map { [["spot", Self.spotLine($0)]] } ?? []
        let open = (s.breakers ?? [:]).filter { $0.value.state != "closed" }.sorted { $0.key < $1.key }
        let breakers: [[String]] = [["breakers", open.isEmpty ? "all closed" : open.map { name, b in
            "\(name) \(b.state)" + (b.lastFailure.map { " (\($0))" } ?? "") + (b.recoversInSeconds.map { ", trials in \(Int($0.rounded(.up))) s" } ?? "")
        }.joined(separator: "; ") + " (`meshnode breaker reset PEER` closes one)"]]
        let base: [[String]] = [
            ["running", "yes, up \(Int(s.uptimeSeconds))s, listening on \(s.listen) (advertised \(s.advertise)), incarnation \(s.incarnation)"],
            ["members", members],
            ["gossip", "\(s.messagesSent) messages sent, \(s.messagesReceived) received, \(s.sessions) sessions"],
            ["sessions", s.sessionsByRoute.isEmpty ? "none yet" :
                "opened by route: " + s.sessionsByRoute.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
                + "; by cipher: " + s.sessionsByCipher.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")],
            ["rejected", rejected],
        ] + (s.seedsUnjoined ?? []).map { ["seed", "\($0.address) not joined: \($0.lastError)"] } + [
            ["chunks", "\(s.blobs.chunksFetched) fetched (\(formatBytes(s.blobs.bytesFetched))), \(s.blobs.chunksServed) served (\(formatBytes(s.blobs.bytesServed))), \(s.blobs.corruptChunks) corrupt"],
            ["strikes", s.blobs.strikes.isEmpty ? "none" : s.blobs.strikes.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")],
        ]
        return base + breakers + placement + spot + gc + (s.transfers.isEmpty ? [["transfers", "none in flight"]] : s.transfers.map { t in
            let pct = t.sizeBytes > 0 ? Double(t.doneBytes) * 100 / Double(t.sizeBytes) : 0
            return ["transfer", "\(String(t.id.prefix(12))) \(t.name) \(t.state): \(formatBytes(t.doneBytes)) of \(formatBytes(t.sizeBytes)) "
                + "(\(String(format: "%.0f", pct))%) at \(formatBytes(UInt64(t.rateBytesPerSecond)))/s from \(t.sources) sources"]
        })
    }
}

extension RunningNode {
    /// Push-to-2 and the items at risk, on one line of `status`.
    static func spotLine(_ p: SpotStatus) -> String {
        var parts = [p.ephemeral ? "ephemeral" : "durable"]
        if p.atRiskItems > 0 {
            parts.append("\(p.atRiskItems) items at risk (\(formatBytes(p.atRiskBytes)), the oldest for \(Int(p.oldestAtRiskSeconds ?? 0)) s)")
        } else if p.ephemeral {
            parts.append("nothing at risk")
        }
        parts.append("\(p.takesSent) takes sent, \(p.madeSafe) made safe" + (p.lastSafeAfterMs.map { " (the last \($0) ms after its put)" } ?? ""))
        if p.takesReceived > 0 { parts.append("took \(p.takesAccepted) of \(p.takesReceived) asked") }
        if p.pushCopies == 0 { parts.append("push_copies 0: push-to-2 off") }
        return parts.joined(separator: "; ")
    }

    /// Placement and the disk cap, on one line of `status`.
    static func placementLine(_ p: PlacementStatus) -> String {
        var parts = [p.configured ? "configured" : "no rules (disk cap only)"]
        if let cap = p.maxDiskUsagePercent { parts.append(p.full ? "FULL (over max_disk_usage \(cap)%): accepting no replicas" : "under max_disk_usage \(cap)%") }
        parts.append("\(p.notTarget) not a target, \(p.underMinCopies) under min_copies")
        if p.evicted > 0 || p.droppedNotTarget > 0 { parts.append("\(p.evicted) evicted, \(p.droppedNotTarget) dropped") }
        if !p.policyMismatch.isEmpty {
            parts.append("rules differ from \(p.policyMismatch.joined(separator: ", ")): give every node the same placement:; nothing is dropped until they agree")
        }
        return parts.joined(separator: "; ")
    }

    /// The node's garbage collection, on one line of `status`.
    static func gcLine(_ g: NodeGCStatus) -> String {
        var parts = ["\(g.runs) runs (\(g.failures) failed), \(formatBytes(g.bytesReclaimed)) reclaimed"]
        if let b = g.reclaimableBytes { parts.append("\(formatBytes(b)) reclaimable") }
        if g.running {
            parts.append("running now")
        } else if let next = g.nextRunInMs {
            parts.append("next in \(next / 1000) s")
        }
        return parts.joined(separator: ", ")
    }
}

/// Asks a running node for its status; nil when none is running.
func runningNode(dataDir: String) -> RunningNode? {
    guard let v = try? ControlClient(dataDirectory: dataDir).call("status"),
          let s = try? v.decode(as: NodeStatus.self) else { return nil }
    return RunningNode(status: s)
}

/// Asks the running node to fetch `id` and follows the transfer until the store holds it
/// complete (checked by `isComplete`), drawing progress with `bar`. Fails with a clear error
/// when no node runs, or when nothing arrives for `stallSeconds`.
func fetchThroughRunningNode(dataDir: String, id: ContentID, sizeBytes: UInt64, bar: ProgressBar, stallSeconds: Double = 60,
                             priority: TransferPriority? = nil, isComplete: () -> Bool) throws(MeshError) {
    let client = ControlClient(dataDirectory: dataDir)
    do {
        var args: [String: JSONValue] = ["id": .string("\(id)")]
        if let priority { args["priority"] = .string(priority.description) }
        _ = try client.call("fetch", args: args)
    } catch {
        if error.code == .controlNoNode {
            throw MeshError(.incomplete, "this node does not hold all of \(id.short) and no node is running to fetch it",
                            hint: "start the node (`meshnode run`) so it can fetch the item from its peers")
        }
        throw error
    }
    var lastDone: UInt64 = 0
    var lastProgress = WallClock.monotonicSeconds()
    while !isComplete() {
        usleep(200_000)
        let rows = (try? client.call("transfers").decode(as: [TransferRow].self)) ?? []
        if let row = rows.first(where: { $0.id == "\(id)" }) {
            if row.state == "abandoned" {
                throw MeshError(.incomplete, "the running node gave up on \(id.short): every recipe its peers sent for it was refused",
                                hint: "see the node's log and `meshnode status` (rejected: bad_recipe, malformed_blob_message); do all nodes run the same meshnode version?")
            }
            bar.handler?(row.doneBytes)
            if row.doneBytes > lastDone {
                lastDone = row.doneBytes
                lastProgress = WallClock.monotonicSeconds()
            }
        }
        if WallClock.monotonicSeconds() - lastProgress > stallSeconds {
            throw MeshError(.incomplete, "no peer has sent any of \(id.short) for \(Int(stallSeconds)) s",
                            hint: "check `meshnode peers` and `meshnode status`; the item's holders may be unreachable")
        }
    }
}
