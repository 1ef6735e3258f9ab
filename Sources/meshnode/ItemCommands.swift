import ArgumentParser
import Foundation
import Gossip
import Mesh
import Store
import Sync

extension MeshnodeCommand {
    /// One version of a name, as `ls --json` prints it.
    struct ItemJSON: Encodable {
        var id: String
        var name: String
        var type: String
        var size: UInt64
        var origin: String
        var sequence: UInt64
        var chunk_size: UInt32
        var created_ms: Int64
        var received_ms: Int64
        var complete: Bool
        /// The version's number (`NAME@N`), its state (live, deleted, expired) and whether it is current.
        var version: Int
        var state: String
        var current: Bool
        /// The hybrid logical clock that orders the name's versions, and the retention expiry (0: never).
        var hlc: UInt64
        var expires_ms: Int64
        /// How many versions the name has (deleted and expired ones included).
        var versions: Int
        /// Node ids holding the item complete, by the replicated holder records (PROTOCOL §4.6):
        /// the same on every node that holds the same entries, whether or not a node runs.
        var holders: [String] = []
        /// The put's broadcast flag (`put --broadcast`): every eligible node is a target.
        var broadcast: Bool
        /// Broadcast items only (docs/SYNC.md, "Broadcast"): node names holding it complete,
        /// those skipped with a reason (excluded, full, not_eligible), and those still to receive it.
        var delivered: [String]?
        var skipped: [SkippedJSON]?
        var pending: [String]?

        struct SkippedJSON: Encodable {
            var node: String
            var reason: String
        }

        init(_ v: VersionInfo, versions: Int) {
            let e = v.entry
            id = e.contentID.description
            name = e.name
            type = e.type.description
            size = e.sizeBytes
            origin = e.origin.description
            sequence = e.sequence
            chunk_size = e.chunkSizeBytes
            created_ms = e.createdAtMs
            received_ms = v.receivedAtMs
            complete = v.isComplete
            version = v.version.number
            state = v.version.state.rawValue
            current = v.version.isCurrent
            hlc = e.hlc
            expires_ms = e.put?.expiresAtMs ?? 0
            broadcast = e.isBroadcast
            self.versions = versions
        }
    }

    struct Ls: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List names with their current version (or every version).",
            discussion: """
                One row per live name: its current version. With --versions, every version of every \
                name (or of NAME), oldest first, with its number for `get NAME@N` and its state \
                (live, deleted, expired). With --forks, the forks kept as evidence: two validly signed, \
                different entries with one origin and sequence.
                """)

        @OptionGroup var options: DataOptions
        @Flag(help: "List every version, not only the current one.") var versions = false
        @Argument(help: ArgumentHelp("Only this name (with --versions).", valueName: "NAME")) var name: String?
        @Flag(help: "Print a JSON array, one object per version (or fork).") var json = false
        @Flag(help: "List the forks kept as evidence instead (origin, sequence, both entries, when detected).") var forks = false

        func run() throws {
            try runReportingErrors { () throws(MeshError) in
                let store = try Store.open(dataDir: options.dataDir)
                if forks { return try listForks(store, json: json) }
                let now = WallClock.nowMs()
                let catalog = try store.catalog()
                let rows: [VersionInfo]
                if versions || name != nil {
                    if let name, catalog.histories[name] == nil {
                        throw MeshError(.unknownItem, "no name '\(name)'", hint: "list names with `meshnode ls`")
                    }
                    rows = try store.versions(of: name, nowMs: now)
                } else {
                    rows = try store.currentVersions(nowMs: now)
                }
                let counts = { (n: String) in catalog.versions(of: n, nowMs: now).count }
                if json {
                    let holdings = Holdings(try store.allEntries())
                    let delivery = rows.contains { $0.entry.isBroadcast } ? DeliveryContext(store, holdings, dataDir: options.dataDir) : nil
                    FileHandleOut.stdout(jsonText(rows.map { v in
                        var j = ItemJSON(v, versions: counts(v.name))
                        j.holders = holdings.holders(of: v.contentID).map(\.description).sorted()
                        if v.entry.isBroadcast, let delivery { delivery.fill(&j, v.entry, holdings) }
                        return j
                    }))
                    return
                }
                if versions || name != nil {
                    var table_ = [["NAME", "VERSION", "ID", "TYPE", "SIZE", "ORIGIN", "CREATED", "STATE"]]
                    for v in rows {
                        let state = v.version.state == .live ? (v.version.isCurrent ? "current" : "live") : v.version.state.rawValue
                        table_.append([v.name, "@\(v.version.number)", v.contentID.short, v.entry.type.description,
                                       formatBytes(v.entry.sizeBytes), v.entry.origin.short, formatTime(v.entry.createdAtMs),
                                       state + (v.isComplete ? "" : ", incomplete") + (v.entry.isBroadcast ? ", broadcast" : "")])
                    }
                    FileHandleOut.stdout(table(table_))
                    return
                }
                var table_ = [["ID", "NAME", "TYPE", "SIZE", "ORIGIN", "VERSION", "STATE"]]
                for v in rows {
                    table_.append([v.contentID.short, v.name, v.entry.type.description, formatBytes(v.entry.sizeBytes),
                                   v.entry.origin.short, "@\(v.version.number) of \(counts(v.name))",
                                   (v.isComplete ? "complete" : "incomplete") + (v.entry.isBroadcast ? ", broadcast" : "")])
                }
                FileHandleOut.stdout(table(table_))
            }
        }
    }

    struct Rm: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete a name (every version) or one version, on every node.",
            discussion: """
                Writes a signed tombstone that replicates like any entry. `rm NAME` deletes every \
                version of NAME known here (a later put makes a new version); `rm NAME@N` or \
                `rm CONTENT_ID` deletes that one version. The space comes back at the next `gc`.
                """)

        @OptionGroup var options: DataOptions
        @Argument(help: ArgumentHelp("A name, NAME@N, or a content id (or a unique prefix of 6+ hex digits).",
                                     valueName: "NAME|NAME@N|ID"))
        var item: String
        @Flag(help: "Print the tombstone as JSON.") var json = false

        struct RmJSON: Encodable {
            var name: String
            var scope: String
            var target_origin: String?
            var target_sequence: UInt64?
            var origin: String
            var sequence: UInt64
            var hlc: UInt64
            var announced: Bool
        }

        func run() throws {
            try runReportingErrors { () throws(MeshError) in
                let store = try Store.open(dataDir: options.dataDir)
                let identity = try store.loadIdentity()
                let e = try store.delete(item, signer: identity)
                var announced = false
                switch announceToRunningNode(dataDir: options.dataDir, sequence: e.sequence) {
                case .success(let a): announced = a
                case .failure(let err):
                    FileHandleOut.stderr("meshnode: warning: stored, but the running node did not announce it: \(err.message)\n")
                }
                let t = e.tombstone!
                var target: EntryRef? = nil
                if case .version(let r) = t.scope { target = r }
                if json {
                    FileHandleOut.stdout(jsonText(RmJSON(name: t.name, scope: target == nil ? "name" : "version",
                                                         target_origin: target.map { "\($0.origin)" }, target_sequence: target?.sequence,
                                                         origin: "\(e.origin)", sequence: e.sequence, hlc: e.hlc, announced: announced)))
                    return
                }
                let what = target == nil ? "every version of '\(t.name)'" : "one version of '\(t.name)' (#\(target!.sequence) of \(target!.origin.short))"
                FileHandleOut.stdout("deleted \(what): tombstone #\(e.sequence) of \(e.origin.short)"
                                     + (announced ? ", announced" : " (no node running: it replicates when the node starts)") + "\n")
            }
        }
    }
}

/// A UTC timestamp for tables: `2026-12-01 23:45:10`.
func formatTime(_ ms: Int64) -> String {
    let f = DateFormatter()
    f.locale = Locale(identifier: "en_US_POSIX")
    f.timeZone = TimeZone(identifier: "UTC")
    f.dateFormat = "yyyy-MM-dd HH:mm:ss"
    return f.string(from: Date(timeIntervalSince1970: Double(ms) / 1000))
}
