// `meshnode folders`: the running node's watched folders.
import ArgumentParser
import Foundation
import Mesh

extension MeshnodeCommand {
    struct Folders: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show the running node's watched folders: files, pending work, reverts, problems.",
            discussion: "Needs a running node (`meshnode run` with `folders:` in its config); exits 17 when none is running.")

        @OptionGroup var options: DataOptions
        @Flag(help: "Print JSON: an array of folders with path, mode, prefix, files, bytes, pending work, errors, ...") var json = false

        func run() throws {
            try runReportingErrors { () throws(MeshError) in
                let rows = try runningNodeFolders(dataDir: options.dataDir)
                if json {
                    FileHandleOut.stdout(jsonText(rows))
                } else if rows.isEmpty {
                    FileHandleOut.stdout("no watched folders (add `folders:` to the node's config)\n")
                } else {
                    FileHandleOut.stdout(rows.map(Self.render).joined(separator: "\n"))
                }
            }
        }

        static func render(_ r: FolderRow) -> String {
            var rows: [[String]] = [
                ["folder", "\(r.path)  \(r.mode)  prefix \"\(r.prefix)\"" + (r.type.map { "  type \($0)" } ?? "")],
                ["files", "\(r.files) (\(formatBytes(r.bytes)))"],
                ["pending", "\(r.settling) settling, \(r.queuedPuts) puts, \(r.fetchesWaiting) fetching, \(r.materialising) writing, \(r.removing) removing"],
                ["last scan", r.lastScanMs.map { Peers.ago(max(0, WallClock.nowMs() - $0)) } ?? "not yet"],
                ["watching", "\(r.watchedDirectories) directories" + (r.watchFallback.map { "; \($0)" } ?? "")],
                ["reverted", "\(r.localEditsReverted) local edits" + (r.lastRevert.map { " (last: \($0))" } ?? "")],
                ["done", "\(r.puts) puts, \(r.tombstones) tombstones, \(r.materialised) written, \(r.removed) removed"],
            ]
            if let b = r.blocked { rows.append(["NOT SYNCED", b]) }
            if r.errors.isEmpty {
                rows.append(["problems", "none"])
            } else {
                for (i, e) in r.errors.enumerated() { rows.append([i == 0 ? "problems" : "", e]) }
            }
            return table(rows)
        }
    }
}

/// The running node's folders; `control.no_node` when none runs.
func runningNodeFolders(dataDir: String) throws(MeshError) -> [FolderRow] {
    let result = try ControlClient(dataDirectory: dataDir).call("folders")
    do { return try result.decode(as: [FolderRow].self) } catch {
        throw MeshError(.controlBadResponse, "the node sent an unexpected folders list", hint: "are the CLI and node the same version?")
    }
}
