import ArgumentParser
import Foundation
import Store
import Mesh
#if canImport(Glibc)
import Glibc
#endif

struct MeshnodeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "meshnode",
        abstract: "A gossip peer-to-peer mesh node that replicates training data between hosts.",
        discussion: "Every verb takes --data DIR (default $MESHNODE_DATA, then ~/.meshnode).",
        version: "0.1.0",
        subcommands: [Init.self, Put.self, Get.self, Ls.self, Rm.self, Verify.self, GC.self, Status.self, Run.self, Peers.self, Health.self,
                      Folders.self, Authority.self, Admit.self, Config.self, Breaker.self])
}

extension MeshnodeCommand {
    struct Init: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a data dir with a new node identity and an empty store.",
            discussion: "Prints the node id on its last line. Refuses to overwrite an existing identity.")

        @OptionGroup var options: DataOptions
        @Option(help: "A human-readable node name (default: the host name).") var name: String?
        @Option(name: .customLong("chunk-size"),
                help: ArgumentHelp("Chunk size for this store, e.g. 2MiB or 65536.", valueName: "BYTES"))
        var chunkSize: String?

        func run() throws {
            try runReportingErrors { () throws(MeshError) in
                var chunk = Chunking.defaultChunkSizeBytes
                if let chunkSize {
                    guard let v = parseByteSize(chunkSize), v <= UInt64(UInt32.max) else {
                        throw MeshError(.invalidInput, "cannot parse chunk size '\(chunkSize)'", hint: "use bytes or a unit, e.g. 2MiB")
                    }
                    chunk = UInt32(v)
                }
                let nodeName = name ?? shortHostName()
                let dir = options.dataDir
                let (store, id) = try Store.initialize(dataDir: dir, name: nodeName, chunkSizeBytes: chunk)
                FileHandleOut.stdout("""
                    initialized node '\(store.config.name)' in \(dir) (chunk size \(formatBytes(UInt64(store.config.chunkSizeBytes))))
                    short id: \(id.nodeID.short)
                    \(id.nodeID)\n
                    """)
            }
        }
    }

    struct Put: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Ingest a file into the store and sign its manifest entry.",
            discussion: "Prints the content id alone on its last line.")

        @OptionGroup var options: DataOptions
        @Argument(help: "The file to ingest.") var file: String
        @Option(help: "Item type: game, model, npz, checkpoint or other (default: guessed from the name).")
        var type: String?
        @Option(help: "Item name (default: the file's base name).") var name: String?
        @Flag(help: "Send it to every eligible node (not excluded, not full, of a role its type's placement rule admits), whatever max_copies says.")
        var broadcast = false

        func run() throws {
            try runReportingErrors { () throws(MeshError) in
                var itemType: ItemType?
                if let type {
                    guard let t = ItemType(name: type) else {
                        throw MeshError(.invalidInput, "unknown item type '\(type)'",
                                        hint: "use one of: " + ItemType.allCases.map(\.description).joined(separator: ", "))
                    }
                    itemType = t
                }
                let store = try Store.open(dataDir: options.dataDir)
                let identity = try store.loadIdentity()
                let total = FS.regularFileSize(file) ?? 0
                let bar = ProgressBar(label: "put", total: total)
                let start = WallClock.monotonicSeconds()
                let r = try store.ingest(path: file, name: name, type: itemType, broadcast: broadcast, signer: identity,
                                         policy: runningNodePolicy(dataDir: options.dataDir), progress: bar.handler)
                bar.finish()
                let secs = WallClock.monotonicSeconds() - start
                let e = r.entry
                if r.isNewEntry, case .failure(let err) = announceToRunningNode(dataDir: options.dataDir, sequence: e.sequence) {
                    FileHandleOut.stderr("meshnode: warning: stored, but the running node did not announce it: \(err.message)\n")
                }
                let what = r.isNewEntry ? "stored" : "already stored"
                FileHandleOut.stdout("""
                    \(what) '\(e.name)' (\(e.type)\(e.isBroadcast ? ", broadcast" : ""), \(formatBytes(e.sizeBytes)), \(r.chunkCount) chunks, \(r.newChunks) new) \
                    as #\(e.sequence) of \(e.origin.short) in \(String(format: "%.2f", secs)) s
                    \(e.contentID)\n
                    """)
            }
        }
    }

    struct Get: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write an item's content to a file, with every chunk verified.",
            discussion: "The file appears atomically; .db items must also pass PRAGMA integrity_check.")

        @OptionGroup var options: DataOptions
        @Argument(help: ArgumentHelp("Content id (or a unique prefix of 6+ hex digits) or item name.", valueName: "ID|NAME"))
        var item: String
        @Option(name: [.short, .customLong("output")], help: ArgumentHelp("Where to write it (a file or a directory).", valueName: "PATH"))
        var output: String
        @Option(help: ArgumentHelp("The fetch's share of the peers' upload bandwidth when others compete (weights 1:2:4:8); default high.",
                                   valueName: "low|normal|high|critical"))
        var priority: String?

        func run() throws {
            try runReportingErrors { () throws(MeshError) in
                var fetchPriority: TransferPriority?
                if let priority {
                    guard let p = TransferPriority(name: priority) else {
                        throw MeshError(.invalidInput, "--priority \(priority) is not a priority", hint: "give low, normal, high or critical")
                    }
                    fetchPriority = p
                }
                let store = try Store.open(dataDir: options.dataDir)
                var info = try store.resolve(item)
                let bar = ProgressBar(label: fetchPriority.map { "get (\($0))" } ?? "get", total: info.entry.sizeBytes)
                if !info.isComplete {
                    // Not all here: the running node fetches it from its peers.
                    try fetchThroughRunningNode(dataDir: options.dataDir, id: info.contentID, sizeBytes: info.entry.sizeBytes,
                                                bar: bar, priority: fetchPriority, isComplete: { (try? store.isComplete(info.contentID)) == true })
                    info = try store.resolve(info.contentID.description)
                    bar.finish()
                }
                let written: String
                do throws(MeshError) {
                    written = try store.export(info, to: output, progress: bar.handler)
                } catch {
                    // Chunks the export found damaged are no longer counted as present: the
                    // running node fetches them again, once, else the damage is the error.
                    guard error.code == .corrupt, (try? store.isComplete(info.contentID)) == false else { throw error }
                    do throws(MeshError) {
                        try fetchThroughRunningNode(dataDir: options.dataDir, id: info.contentID, sizeBytes: info.entry.sizeBytes,
                                                    bar: bar, priority: fetchPriority, isComplete: { (try? store.isComplete(info.contentID)) == true })
                    } catch _ { throw error }
                    written = try store.export(info, to: output, progress: bar.handler)
                }
                bar.finish()
                FileHandleOut.stdout("wrote \(formatBytes(info.entry.sizeBytes)) to \(written)\n")
            }
        }
    }

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Re-hash every chunk and check every recipe.",
            discussion: "Exits 0 when all is good; otherwise names each bad chunk and the items it breaks.")

        @OptionGroup var options: DataOptions

        func run() throws {
            try runReportingErrors { () throws(MeshError) in
                let store = try Store.open(dataDir: options.dataDir)
                let st = try store.status()
                let bar = ProgressBar(label: "verify", total: st.chunkBytes)
                let report = try store.verify(progress: bar.handler)
                bar.finish()
                for b in report.badChunks {
                    let items = b.items.isEmpty ? "no item" :
                        b.items.map { "'\($0.name)' (\($0.contentID.short))" }.joined(separator: ", ")
                    let what = b.dropped ? "no longer counted as present" : "kept (an I/O error: check the disk)"
                    FileHandleOut.stdout("bad chunk \(b.hash) (\(b.problem.rawValue)) at \(b.path): breaks \(items); \(what)\n")
                }
                for r in report.badRecipes {
                    FileHandleOut.stdout("bad chunk list for \(r): it does not recompute its content id\n")
                }
                if let line = unrecordedLine(report.unrecordedFiles) { FileHandleOut.stdout(line + "\n") }
                if report.garbageRecordsDropped > 0 {
                    FileHandleOut.stdout("\(report.garbageRecordsDropped) recorded chunks had no file and no recipe needed them: garbage, their records were dropped\n")
                }
                guard report.ok else {
                    let broken = Set(report.badChunks.flatMap { $0.items.map(\.contentID) }).count
                    throw MeshError(.corrupt, "\(report.badChunks.count) bad chunks, \(report.badRecipes.count) bad chunk lists, \(broken) items affected",
                                    hint: "the damaged items now show incomplete: `meshnode get` has the running node fetch them again from peers (or put them again from the original files)")
                }
                FileHandleOut.stdout("ok: \(report.chunksChecked) chunks, \(formatBytes(report.bytesChecked)) verified\n")
            }
        }
    }

    /// What `verify` did with chunk files that nothing recorded (nil if there were none).
    static func unrecordedLine(_ u: ChunkSettlement) -> String? {
        guard u.recorded + u.removed + u.inFlight > 0 else { return nil }
        var parts = [String]()
        if u.recorded > 0 { parts.append("\(u.recorded) had the right bytes and are now recorded") }
        if u.removed > 0 { parts.append("\(u.removed) had wrong bytes and were deleted (fetched again when needed)") }
        if u.inFlight > 0 { parts.append("\(u.inFlight) are being written by a running meshnode and were left to it") }
        return "chunk files the store had not recorded (a write stopped between naming and recording them): "
            + parts.joined(separator: "; ")
    }

    struct StatusJSON: Encodable {
        var node_id: String?
        var name: String
        var data_dir: String
        var schema_version: Int
        var chunk_size: UInt32
        var items: Int
        var incomplete_items: Int
        var bytes: UInt64
        var chunks: Int
        var chunk_bytes: UInt64
        var peers: Int
        var outbox: Int
        var forks: Int
        /// Bytes and chunks recorded that no kept (or pinned) content references: what `gc` reclaims.
        var reclaimable: UInt64
        var reclaimable_chunks: Int
        /// Whether a node is running on this data dir, and what it reports.
        var running: Bool
        var node: RunningNode?
        /// The running node's watched folders (as `meshnode folders --json`).
        var folders: [FolderRow]?
    }

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Report on the local store.")

        @OptionGroup var options: DataOptions
        @Option(help: ArgumentHelp("Config file whose keep_versions decide what counts as reclaimable when no node runs (default: $MESHNODE_CONFIG).",
                                   valueName: "FILE"))
        var config: String?
        @Flag(help: "Print JSON.") var json = false

        func run() throws {
            try runReportingErrors { () throws(MeshError) in
                let store = try Store.open(dataDir: options.dataDir)
                let s = try store.status()
                let nodeID = try? store.loadIdentity().nodeID
                let node = runningNode(dataDir: options.dataDir)
                // What `gc` would reclaim: by the running node's keep policy (its downloads in
                // progress pinned), else by the config file's.
                let reclaim: Reclaimable
                if let node {
                    let pinned = Set(node.status.transfers.compactMap { ContentID(hex: $0.id) })
                    reclaim = try store.reclaimable(policy: runningNodePolicy(dataDir: options.dataDir), pinned: pinned)
                } else {
                    reclaim = try store.reclaimable(policy: try configuredKeepPolicy(configFlag: config))
                }
                let j = StatusJSON(node_id: nodeID?.description, name: s.name, data_dir: s.dataDir,
                                   schema_version: s.schemaVersion, chunk_size: s.chunkSizeBytes, items: s.items,
                                   incomplete_items: s.incompleteItems, bytes: s.itemBytes, chunks: s.chunks,
                                   chunk_bytes: s.chunkBytes, peers: s.peers, outbox: s.outbox, forks: s.forks,
                                   reclaimable: reclaim.bytes, reclaimable_chunks: reclaim.chunks,
                                   running: false, node: nil)
                var report = j
                report.node = node
                report.running = report.node != nil
                if report.running { report.folders = try? runningNodeFolders(dataDir: options.dataDir) }
                if json {
                    FileHandleOut.stdout(jsonText(report))
                    return
                }
                FileHandleOut.stdout(table([
                    ["node", "\(s.name) \(nodeID?.description ?? "(no identity)")"],
                    ["data dir", s.dataDir],
                    ["schema", "\(s.schemaVersion)"],
                    ["items", "\(s.items) (\(s.incompleteItems) incomplete)"],
                    ["bytes", "\(formatBytes(s.itemBytes)) in items"],
                    ["chunks", "\(s.chunks) (\(formatBytes(s.chunkBytes)) on disk, chunk size \(formatBytes(UInt64(s.chunkSizeBytes))))"],
                    ["reclaimable", "\(formatBytes(reclaim.bytes)) in \(reclaim.chunks) chunks no kept version needs (`meshnode gc`)"],
                    ["peers", "\(s.peers) known"],
                    ["outbox", "\(s.outbox) pending pushes"],
                    ["forks", s.forks == 0 ? "0" : "\(s.forks) kept as evidence (list them with `meshnode ls --forks`)"],
                ] + (report.node?.rows ?? [["running", "no (start the node with `meshnode run`)"]])
                  + (report.folders ?? []).map { ["folder", $0.summary] }))
            }
        }
    }
}

/// Left-aligned columns separated by two spaces.
func table(_ rows: [[String]]) -> String {
    guard let first = rows.first else { return "" }
    var widths = [Int](repeating: 0, count: first.count)
    for r in rows { for (i, c) in r.enumerated() where i < widths.count { widths[i] = max(widths[i], c.count) } }
    var out = ""
    for r in rows {
        var line = ""
        for (i, c) in r.enumerated() {
            line += i == r.count - 1 ? c : c.padding(toLength: widths[i] + 2, withPad: " ", startingAt: 0)
        }
        out += line + "\n"
    }
    return out
}
