import Foundation
import Gossip
import Store
import Sync

/// One row of `meshnode peers` (and its `--json`).
public struct PeerRow: Codable, Sendable, Equatable {
    public var name: String
    public var id: String
    public var idShort: String
    public var address: String
    public var state: String
    public var incarnation: UInt64
    /// Milliseconds since this node last heard from the member (nil: never, or itself).
    public var lastHeardMsAgo: Int64?
    public var rttMs: Double?
    public var role: String
    public var isSelf: Bool
    /// The member's node facts in effect (PROTOCOL §4.7); nil until its first node-facts entry
    /// is held here (or from a node that predates them).
    public var roles: [String]?
    public var diskTotalBytes: UInt64?
    public var diskUsedBytes: UInt64?
    public var diskFreeBytes: UInt64?
    public var ephemeral: Bool?
    public var nfsGroup: String?
    public var excluded: Bool?
    public var full: Bool?
    /// How old the facts are: ms since their entry's clock time (`hlc >> 16`), by this node's clock.
    public var factsAgeMs: Int64?
    /// The stated hash of its `placement:` rules (hex), and whether it differs from this node's.
    public var policyHash: String?
    public var policyMismatch: Bool?
    /// Its transfer circuit breaker, if it ever failed (nil: closed, never failed).
    public var breaker: BreakerRow?
    /// A configured seed this node has not joined (state `unjoined_seed`, no id or name), with
    /// the last error seen with it: nil on member rows.
    public var seed: Bool?
    public var lastError: String?

    enum CodingKeys: String, CodingKey {
        case name, id, address, state, incarnation, role, roles, ephemeral, excluded, full, seed, lastError = "last_error"
        case idShort = "id_short", lastHeardMsAgo = "last_heard_ms_ago", rttMs = "rtt_ms", isSelf = "self"
        case diskTotalBytes = "disk_total_bytes", diskUsedBytes = "disk_used_bytes", diskFreeBytes = "disk_free_bytes"
        case nfsGroup = "nfs_group", factsAgeMs = "facts_age_ms", policyHash = "policy_hash", policyMismatch = "policy_mismatch", breaker
    }

    /// Fills in the member's stated facts.
    mutating func setFacts(_ f: ManifestEntry.NodeFacts, hlc: UInt64, nowMs: Int64) {
        roles = f.roles
        diskTotalBytes = f.diskTotalBytes
        diskUsedBytes = f.diskUsedBytes
        diskFreeBytes = f.diskFreeBytes
        ephemeral = f.ephemeral
        nfsGroup = f.nfsGroup
        excluded = f.excluded
        full = f.full
        factsAgeMs = max(0, nowMs - Int64(hlc >> 16))
        policyHash = f.policyHash.map { Hex.encode($0) }
    }
}

/// What a node has learned about the path to one peer.
public struct PathRow: Codable, Sendable, Equatable {
    public var typicalLifetimeSeconds: Double?
    public var throughputBytesPerSecond: Double
    public var resets: Int

    init(_ m: PathModel) {
        typicalLifetimeSeconds = m.typicalLifetimeSeconds
        throughputBytesPerSecond = m.throughputBytesPerSecond
        resets = m.resets
    }

    enum CodingKeys: String, CodingKey {
        case typicalLifetimeSeconds = "typical_lifetime_s", throughputBytesPerSecond = "throughput_bytes_per_s", resets
    }
}

/// What `meshnode status` shows about a running node (its `--json` under `node`).
public struct NodeStatus: Codable, Sendable {
    public var id: String
    public var name: String
    public var role: String
    public var listen: String
    public var advertise: String
    public var incarnation: UInt64
    public var uptimeSeconds: Double
    public var members: [String: Int]
    public var entries: Int
    /// Entries held, by kind: `put`, `tombstone`, `compaction`, `holding`, `node_facts`, `unknown`.
    public var entriesByKind: [String: Int]?
    /// Entries deleted or refused because their origins compacted them (PROTOCOL §4.5).
    public var entriesCompacted: UInt64?
    public var messagesSent: UInt64
    public var messagesReceived: UInt64
    public var bytesSent: UInt64
    public var bytesReceived: UInt64
    public var sessions: Int
    /// Dropped inputs by reason (gossip rejections, session and stream failures): every key is a
    /// `RejectCounter` name (docs/PROTOCOL.md Appendix B).
    public var rejected: [String: UInt64]
    public var forks: UInt64
    /// Items being fetched, with their progress and rate.
    public var transfers: [TransferRow]
    public var blobs: BlobCounters
    /// Sessions established since start, by route: direct, ssh, socks5, inbound.
    public var sessionsByRoute: [String: UInt64]
    /// Sessions established since start, by cipher suite (PROTOCOL §8.2).
    public var sessionsByCipher: [String: UInt64]
    /// Per peer (short id): the learned typical connection lifetime (s) and throughput (B/s).
    public var paths: [String: PathRow]
    public var successorSessions: UInt64
    /// Garbage collection: runs, the last report, reclaimable bytes (nil from older nodes).
    public var gc: NodeGCStatus?
    /// Chunks backed by folder files (Store/ChunkBackings.swift), since start (nil from older nodes).
    public var backed: BackedStatus?
    /// Placement and the disk cap (nil when neither `placement:` nor `max_disk_usage` is configured).
    public var placement: PlacementStatus? = nil
    /// Transfer circuit breakers by peer name, for every peer that ever failed (nil from older nodes).
    public var breakers: [String: BreakerRow]? = nil
    /// Configured seeds not joined, with the last error seen with each (nil from older nodes).
    public var seedsUnjoined: [UnjoinedSeed]? = nil
    /// Push-to-2 and the items at risk (docs/SYNC.md, "Spot nodes"; nil from older nodes).
    public var spot: SpotStatus? = nil

    enum CodingKeys: String, CodingKey {
        case id, name, role, listen, advertise, incarnation, members, entries, sessions, rejected, forks, transfers, blobs, gc, backed, placement
        case breakers, seedsUnjoined = "seeds_unjoined", spot
        case sessionsByRoute = "sessions_by_route", sessionsByCipher = "sessions_by_cipher", paths, successorSessions = "successor_sessions"
        case uptimeSeconds = "uptime_s", messagesSent = "messages_sent", messagesReceived = "messages_received"
        case bytesSent = "bytes_sent", bytesReceived = "bytes_received", entriesCompacted = "entries_compacted"
        case entriesByKind = "entries_by_kind"
    }
}

/// What folder-file backings did in this process (`status --json`'s `node.backed`).
public struct BackedStatus: Codable, Sendable {
    /// Chunks of folder files written by copying them from another folder file, not fetched.
    public var chunksCopied: UInt64
    /// Backings dropped because their bytes no longer matched (a person edited the file).
    public var mismatches: UInt64
    /// Backings dropped because their file was gone or replaced.
    public var stale: UInt64
    /// Chunk files deleted because a folder file holds the chunk.
    public var chunkFilesReleased: UInt64

    static func now() -> BackedStatus {
        BackedStatus(chunksCopied: BackingCounters.chunksCopied.load(ordering: .relaxed),
                     mismatches: BackingCounters.mismatches.load(ordering: .relaxed),
                     stale: BackingCounters.stale.load(ordering: .relaxed),
                     chunkFilesReleased: BackingCounters.chunkFilesReleased.load(ordering: .relaxed))
    }

    enum CodingKeys: String, CodingKey {
        case chunksCopied = "chunks_copied", mismatches, stale, chunkFilesReleased = "chunk_files_released"
    }
}

extension MemberState {
    var label: String { "\(self)" }
}

extension MeshNode {
    /// Members as `meshnode peers` shows them, this node first.
    public func peerRows() -> [PeerRow] {
        let now = Self.now()
        let nowMs = WallClock.nowMs()
        let breakers = blobs?.breakerRows() ?? [:]
        return gossip.memberSnapshots().map { m in
            var row = PeerRow(name: m.name, id: "\(m.node)", idShort: m.node.short, address: "\(m.address)", state: m.state.label,
                              incarnation: m.incarnation, lastHeardMsAgo: m.lastHeard.map { (now - $0) / 1_000_000 },
                              rttMs: m.rttNanoseconds.map { Double($0) / 1e6 }, role: m.role, isSelf: m.isSelf)
            if let f = holdings.facts(of: m.node) {
                row.setFacts(f.facts, hlc: f.hlc, nowMs: nowMs)
                if let h = f.facts.policyHash, !m.isSelf { row.policyMismatch = h != placementPolicyHash }
            }
            row.breaker = breakers[m.node]
            return row
        }.sorted { ($0.isSelf ? 0 : 1, $0.name, $0.id) < ($1.isSelf ? 0 : 1, $1.name, $1.id) }
        + unjoinedSeeds().map { s in
            var row = PeerRow(name: "", id: "", idShort: "-", address: s.address, state: "unjoined_seed", incarnation: 0,
                              lastHeardMsAgo: nil, rttMs: nil, role: "", isSelf: false)
            row.seed = true
            row.lastError = s.lastError
            return row
        }
    }

    public func nodeStatus() -> NodeStatus {
        var byState: [String: Int] = ["alive": 0, "suspect": 0, "dead": 0, "left": 0]
        for m in gossip.memberSnapshots() where !m.isSelf { byState[m.state.label, default: 0] += 1 }
        var rejected = runtime.rejected
        for (r, n) in gossip.counters.rejected { rejected[RejectCounter(r).rawValue, default: 0] += n }
        if let u = udpStats, u.droppedTruncated > 0 { rejected[RejectCounter.oversizedDatagram.rawValue, default: 0] += UInt64(u.droppedTruncated) }
        if streamCounters.truncatedFrames > 0 { rejected[RejectCounter.truncatedFrame.rawValue, default: 0] += UInt64(streamCounters.truncatedFrames) }
        if streamCounters.oversizedFrames > 0 { rejected[RejectCounter.oversizedFrame.rawValue, default: 0] += UInt64(streamCounters.oversizedFrames) }
        let c = gossip.counters
        return NodeStatus(id: "\(identity.nodeID)", name: gossip.config.name, role: gossip.config.role,
                          listen: "\(boundAddress!)", advertise: "\(gossip.address)", incarnation: gossip.incarnation,
                          uptimeSeconds: Double(Self.now() - startedAt) / 1e9, members: byState, entries: gossip.entries.count,
                          entriesByKind: entriesByKind(), entriesCompacted: c.entriesCompacted,
                          messagesSent: c.messagesSent, messagesReceived: c.messagesReceived, bytesSent: c.bytesSent,
                          bytesReceived: c.bytesReceived, sessions: sessionCount, rejected: rejected,
                          forks: runtime.forks + c.forks, transfers: blobs?.transfers() ?? [],
                          blobs: blobs?.counters ?? BlobCounters(), sessionsByRoute: runtime.sessionsEstablished,
                          sessionsByCipher: runtime.sessionsByCipher,
                          paths: paths.reduce(into: [:]) { $0[$1.key.short] = PathRow($1.value) },
                          successorSessions: runtime.successorSessions, gc: collector?.status(), backed: .now(),
                          placement: placementStatus(), breakers: breakersByName(), seedsUnjoined: unjoinedSeeds(),
                          spot: spotStatus())
    }

    /// `status --json` `breakers`: every peer that ever failed a transfer, by name.
    func breakersByName() -> [String: BreakerRow] {
        var out = [String: BreakerRow]()
        for (peer, row) in blobs?.breakerRows() ?? [:] { out[gossip.memberName(peer) ?? peer.short] = row }
        return out
    }

    func entriesByKind() -> [String: Int] {
        var out = [String: Int]()
        for e in gossip.manifest.allEntries {
            let k: String
            switch e.kind {
            case .put: k = "put"
            case .tombstone: k = "tombstone"
            case .compaction: k = "compaction"
            case .holding: k = "holding"
            case .nodeFacts: k = "node_facts"
            case nil: k = "unknown"
            }
            out[k, default: 0] += 1
        }
        return out
    }

    /// Serves one control request (loop thread). Verbs: `peers`, `status`, `health`, `announce`, `holders`,
    /// `fetch`, `transfers`, `policy`, `gc`, `folders`, `breaker_reset`.
    public func handleControl(_ req: ControlRequest, respond: @escaping (ControlResponse) -> Void) {
        do {
            switch req.verb {
            case "peers":
                respond(.success(try JSONValue(encoding: peerRows())))
            case "status":
                respond(.success(try JSONValue(encoding: nodeStatus())))
            case "health":
                respond(.success(try JSONValue(encoding: healthReport())))
            case "announce":
                // `meshnode put` ingested an item through its own store handle; announce it now.
                guard let seq = req.args["sequence"]?.intValue, seq > 0 else {
                    return respond(.failure(MeshError(.controlBadRequest, "announce needs a positive \"sequence\"")))
                }
                guard let entry = try store.entry(origin: identity.nodeID, sequence: UInt64(seq)) else {
                    return respond(.failure(MeshError(.init("store.unknown_item"), "this node has no entry #\(seq)")))
                }
                announce(entry)
                respond(.success(.object(["announced": .string("\(entry.contentID)")])))
            case "holders":
                // Content id → node ids holding the item complete, by the replicated holder
                // records (PROTOCOL §4.6): the same answer on every node holding the same entries.
                var out: [String: JSONValue] = [:]
                for (c, h) in replicatedHolders() { out["\(c)"] = .array(h.sorted().map { .string("\($0)") }) }
                respond(.success(.object(out)))
            case "fetch":
                // Start fetching an item (idempotent); `meshnode get` then follows `transfers`.
                guard let text = req.args["id"]?.stringValue, let id = ContentID(hex: text) else {
                    return respond(.failure(MeshError(.controlBadRequest, "fetch needs an \"id\" (64 hex digits)")))
                }
                guard let blobs else { return respond(.failure(MeshError(.closed, "the node is shutting down"))) }
                // `priority` (issue 13): low, normal, high or critical; absent: high.
                var priority = TransferPriority.high
                if let text = req.args["priority"]?.stringValue {
                    guard let p = TransferPriority(name: text) else {
                        return respond(.failure(MeshError(.controlBadRequest, "fetch: unknown priority \"\(text)\"",
                                                          hint: "give low, normal, high or critical")))
                    }
                    priority = p
                }
                let entry = try store.entry(contentID: id)
                blobs.want(id, holders: Placement.fetchSources(hints: entry.map { [$0.origin] } ?? [], holders: holdings.holders(of: id),
                                                                me: identity.nodeID),
                           reason: .request, entry: entry, priority: priority)
                evictionRequested(id)
                respond(.success(.object(["fetching": .string("\(id)")])))
            case "transfers":
                respond(.success(try JSONValue(encoding: blobs?.transfers() ?? [])))
            case "folders":
                respond(.success(try JSONValue(encoding: folders?.rows() ?? [])))
            case "gc":
                // Collect garbage now (`dry_run`: only report what would go); answered when done.
                controlGC(req, respond: respond)
            case "policy":
                // What `meshnode put` through this node stamps (retention) and keeps (versions).
                respond(.success(policyJSON()))
            case "breaker_reset":
                // `meshnode breaker reset PEER`: close one peer's transfer circuit breaker.
                guard let text = req.args["peer"]?.stringValue, !text.isEmpty else {
                    return respond(.failure(MeshError(.controlBadRequest, "breaker_reset needs a \"peer\" (name or node id)")))
                }
                let matches = gossip.memberSnapshots().filter { !$0.isSelf && ($0.name == text || "\($0.node)" == text || $0.node.short == text) }
                guard matches.count == 1, let m = matches.first else {
                    return respond(.failure(MeshError(.init("control.unknown_peer"),
                                                      matches.isEmpty ? "no peer named \(text)" : "\(matches.count) peers are named \(text)",
                                                      hint: "give a name or node id from `meshnode peers`")))
                }
                guard let blobs else { return respond(.failure(MeshError(.closed, "the node is shutting down"))) }
                let was = blobs.breakers[m.node].state(nowMs: blobs.breakerNowMs).rawValue
                let changed = blobs.resetBreaker(m.node)
                if changed { logger.notice("circuit closed for \(m.name) by `meshnode breaker reset`", metadata: ["peer": "\(m.name)", "was": "\(was)"]) }
                respond(.success(.object(["peer": .string(m.name), "id": .string("\(m.node)"), "was": .string(was),
                                          "reset": .bool(changed)])))
            default:
                respond(.failure(MeshError(.controlUnknownVerb, "unknown control verb \"\(req.verb)\"",
                                           hint: "known: peers, status, health, announce, holders, fetch, transfers, policy, gc, folders, breaker_reset")))
            }
        } catch let e as MeshError {
            respond(.failure(e))
        } catch {
            respond(.failure(MeshError(.init("internal"), "\(error)")))
        }
    }
}
