import ArgumentParser
import Foundation
import Store
#if canImport(Glibc)
import Glibc
#endif

struct MeshnodeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "meshnode",
        abstract: "A gossip peer-to-peer mesh node that replicates training data between hosts.",
        discussion: "Every verb takes --data DIR (default $MESHNODE_DATA, then ~/.meshnode).",
        version: "0.1.0",
        subcommands: [Init.self, Put.self, Get.self, Ls.self, Verify.self, Status.self, Run.self, Peers.self,
                      Authority.self, Admit.self])
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
                let r = try store.ingest(path: file, name: name, type: itemType, signer: identity,
                                         progress: bar.handler)
                bar.finish()
                let secs = WallClock.monotonicSeconds() - start
                let e = r.entry
                if r.isNewEntry, case .failure(let err) = announceToRunningNode(dataDir: options.dataDir, sequence: e.sequence) {
                    FileHandleOut.stderr("meshnode: warning: stored, but the running node did not announce it: \(err.message)\n")
                }
                let what = r.isNewEntry ? "stored" : "already stored"
                FileHandleOut.stdout("""
                    \(what) '\(e.name)' (\(e.type), \(formatBytes(e.sizeBytes)), \(r.chunkCount) chunks, \(r.newChunks) new) \
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

        func run() throws {
            try runReportingErrors { () throws(MeshError) in
                let store = try Store.open(dataDir: options.dataDir)
                var info = try store.resolve(item)
                let bar = ProgressBar(label: "get", total: info.entry.sizeBytes)
                if !info.isComplete {
                    // Not all here: the running node fetches it from its peers.
                    try fetchThroughRunningNode(dataDir: options.dataDir, id: info.contentID, sizeBytes: info.entry.sizeBytes,
                                                bar: bar, isComplete: { (try? store.isComplete(info.contentID)) == true })
                    info = try store.resolve(info.contentID.description)
                    bar.finish()
                }
                let written = try store.export(info, to: output, progress: bar.handler)
                bar.finish()
                FileHandleOut.stdout("wrote \(formatBytes(info.entry.sizeBytes)) to \(written)\n")
            }
        }
    }

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
        /// Node ids known to hold the item complete (the origin, this node when complete, and
        /// what a running node has learned from its peers).
        var holders: [String] = []

        init(_ i: ItemInfo) {
            id = i.contentID.description
            name = i.name
            type = i.entry.type.description
            size = i.entry.sizeBytes
            origin = i.entry.origin.description
            sequence = i.entry.sequence
            chunk_size = i.entry.chunkSizeBytes
            created_ms = i.entry.createdAtMs
            received_ms = i.receivedAtMs
            complete = i.isComplete
        }
    }

    struct Ls: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List the items in the manifest.",
            discussion: "With --forks, list the forks kept as evidence instead: two validly signed, different entries with one origin and sequence.")

        @OptionGroup var options: DataOptions
        @Flag(help: "Print a JSON array, one object per item (or fork).") var json = false
        @Flag(help: "List the forks kept as evidence (origin, sequence, both entries, when detected).") var forks = false

        func run() throws {
            try runReportingErrors { () throws(MeshError) in
                let store = try Store.open(dataDir: options.dataDir)
                if forks { return try listForks(store, json: json) }
                let items = try store.items()
                if json {
                    let self_ = try? store.loadIdentity().nodeID
                    let known = runningNodeHolders(dataDir: options.dataDir)
                    FileHandleOut.stdout(jsonText(items.map { i in
                        var j = ItemJSON(i)
                        var h = Set(known?[i.contentID.description] ?? [i.entry.origin.description])
                        if i.isComplete, let self_ { h.insert(self_.description) }
                        j.holders = h.sorted()
                        return j
                    }))
                    return
                }
                var rows = [["ID", "NAME", "TYPE", "SIZE", "ORIGIN", "SEQ", "STATE"]]
                for i in items {
                    rows.append([i.contentID.short, i.name, i.entry.type.description, formatBytes(i.entry.sizeBytes),
                                 i.entry.origin.short, "\(i.entry.sequence)", i.isComplete ? "complete" : "incomplete"])
                }
                FileHandleOut.stdout(table(rows))
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
                    FileHandleOut.stdout("bad chunk \(b.hash) (\(b.problem.rawValue)) at \(b.path): breaks \(items)\n")
                }
                for r in report.badRecipes {
                    FileHandleOut.stdout("bad chunk list for \(r): it does not recompute its content id\n")
                }
                guard report.ok else {
                    let broken = Set(report.badChunks.flatMap { $0.items.map(\.contentID) }).count
                    throw MeshError(.corrupt, "\(report.badChunks.count) bad chunks, \(report.badRecipes.count) bad chunk lists, \(broken) items affected",
                                    hint: "restore the damaged items from a peer (or put them again from the original files)")
                }
                let extra = report.unreferencedChunks > 0
                    ? " (\(report.unreferencedChunks) not recorded in the manifest: left by interrupted puts, harmless)" : ""
                FileHandleOut.stdout("ok: \(report.chunksChecked) chunks, \(formatBytes(report.bytesChecked)) verified\(extra)\n")
            }
        }
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
        /// Whether a node is running on this data dir, and what it reports.
        var running: Bool
        var node: RunningNode?
    }

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Report on the local store.")

        @OptionGroup var options: DataOptions
        @Flag(help: "Print JSON.") var json = false

        func run() throws {
            try runReportingErrors { () throws(MeshError) in
                let store = try Store.open(dataDir: options.dataDir)
                let s = try store.status()
                let nodeID = try? store.loadIdentity().nodeID
                let j = StatusJSON(node_id: nodeID?.description, name: s.name, data_dir: s.dataDir,
                                   schema_version: s.schemaVersion, chunk_size: s.chunkSizeBytes, items: s.items,
                                   incomplete_items: s.incompleteItems, bytes: s.itemBytes, chunks: s.chunks,
                                   chunk_bytes: s.chunkBytes, peers: s.peers, outbox: s.outbox, forks: s.forks,
                                   running: false, node: nil)
                var report = j
                report.node = runningNode(dataDir: options.dataDir)
                report.running = report.node != nil
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
                    ["peers", "\(s.peers) known"],
                    ["outbox", "\(s.outbox) pending pushes"],
                    ["forks", s.forks == 0 ? "0" : "\(s.forks) kept as evidence (list them with `meshnode ls --forks`)"],
                ] + (report.node?.rows ?? [["running", "no (start the node with `meshnode run`)"]])))
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
