// `meshnode gc`: reclaim the space of what no kept version needs.
import ArgumentParser
import Foundation
import Mesh
import Store

extension MeshnodeCommand {
    struct GC: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "gc",
            abstract: "Delete what no kept version needs: recipes of contents not kept, then chunks nothing references.",
            discussion: """
                A node keeps the newest `keep_versions` live versions of each name (per type, default 3); \
                deleted, expired and older versions are garbage, except what a download in progress or a \
                live SQLite snapshot needs. Chunks shared with a kept version stay. With a running node \
                the node collects (its keeper decides what is kept); otherwise this command does, on the \
                store, with the keep policy of --config (or $MESHNODE_CONFIG; defaults without one). \
                A running node also collects by itself. Safe to interrupt at any moment.
                """)

        @OptionGroup var options: DataOptions
        @Option(help: ArgumentHelp("Config file whose keep_versions decide what is kept when no node runs (default: $MESHNODE_CONFIG).",
                                   valueName: "FILE"))
        var config: String?
        @Flag(name: .customLong("dry-run"), help: "Only report what would be deleted.") var dryRun = false
        @Flag(help: "Print JSON: contents_released, recipes_deleted, chunks_deleted, bytes_reclaimed, duration_ms, ...")
        var json = false

        struct Output: Encodable {
            var report: GCReportJSON
            /// `node` (the running node collected) or `store` (this command did).
            var via: String

            func encode(to encoder: any Encoder) throws {
                try report.encode(to: encoder)
                var c = encoder.container(keyedBy: Key.self)
                try c.encode(via, forKey: .via)
            }

            enum Key: String, CodingKey { case via }
        }

        func run() throws {
            try runReportingErrors { () throws(MeshError) in
                let dir = options.dataDir
                let client = ControlClient(dataDirectory: dir)
                client.responseTimeout = .seconds(3600)  // a big store takes a while; the node answers when done
                var out: Output
                do throws(MeshError) {
                    let v = try client.call("gc", args: ["dry_run": .bool(dryRun)])
                    guard let r = try? v.decode(as: GCReportJSON.self) else {
                        throw MeshError(.controlBadResponse, "the node sent an unexpected gc report", hint: "are the CLI and node the same version?")
                    }
                    out = Output(report: r, via: "node")
                    if config != nil {
                        FileHandleOut.stderr("meshnode: note: a node is running: its keep policy decided, not --config's\n")
                    }
                } catch where error.code == .controlNoNode {
                    let policy = try configuredKeepPolicy(configFlag: config)
                    let store = try Store.open(dataDir: dir)
                    out = Output(report: GCReportJSON(try store.collectGarbage(GarbageCollectionOptions(policy: policy, dryRun: dryRun))),
                                 via: "store")
                }
                if json {
                    FileHandleOut.stdout(jsonText(out))
                } else {
                    FileHandleOut.stdout(Self.text(out.report, via: out.via) + "\n")
                }
            }
        }

        static func text(_ r: GCReportJSON, via: String) -> String {
            let secs = String(format: "%.2f", Double(r.durationMs) / 1000)
            var line = r.dryRun
                ? "would release \(r.contentsReleased) contents: delete \(r.recipesDeleted) recipes and \(r.chunksDeleted) chunks, reclaiming \(formatBytes(r.bytesReclaimed)) (dry run, \(secs) s)"
                : "released \(r.contentsReleased) contents: deleted \(r.recipesDeleted) recipes and \(r.chunksDeleted) chunks, reclaimed \(formatBytes(r.bytesReclaimed)) in \(secs) s"
            if r.recipesPinned > 0 { line += "; kept \(r.recipesPinned) recipes that a download in progress or a live snapshot needs" }
            if r.stopped { line += "; stopped early (the node is shutting down): the next gc finishes" }
            if via == "node" { line += " (by the running node)" }
            return line
        }
    }
}

/// The keep policy of the config file `--config` (or `$MESHNODE_CONFIG`) names, or the
/// defaults without one: what a command that works on the store alone keeps.
func configuredKeepPolicy(configFlag: String?) throws(MeshError) -> KeepPolicy {
    let env = ProcessInfo.processInfo.environment["MESHNODE_CONFIG"].flatMap { $0.isEmpty ? nil : $0 }
    guard let path = configFlag ?? env else { return KeepPolicy() }
    return try NodeConfig.load(path: path).keep
}
