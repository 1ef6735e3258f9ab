import Foundation
import Gossip
import Sync
import TestSupport
import Testing
@testable import Mesh

@Suite("The folders: config block")
struct FolderConfigTests {
    let dir = TestDir("folder-config")

    func mkdir(_ name: String) -> String {
        let p = dir.sub(name)
        try? FileManager.default.createDirectory(atPath: p, withIntermediateDirectories: true)
        return p
    }

    func error(_ yaml: String) -> MeshError? {
        do {
            _ = try NodeConfig.parse(yaml: yaml, source: "test.yaml")
            return nil
        } catch { return error }
    }

    @Test("Every key of a folder parses, and the defaults are mode both, prefix = base name + /, settle 300 ms, intervals 60 s")
    func keysAndDefaults() throws {
        let games = mkdir("games"), models = mkdir("models")
        let c = try NodeConfig.parse(yaml: """
            folders:
              - path: \(games)/
                mode: send
                type: game
                prefix: selfplay/
                include: ["*.db", "2026/*.db"]
                exclude: [tmp]
                snapshot_interval: 30s
                rescan_interval: 2m
                settle: 500ms
              - path: \(models)
            """)
        #expect(c.folders.count == 2)
        let g = c.folders[0]
        #expect(g.path == games)
        #expect(g.mode == .send)
        #expect(g.type == .game)
        #expect(g.prefix == "selfplay/")
        #expect(g.include == ["*.db", "2026/*.db"])
        #expect(g.exclude == ["tmp"])
        #expect(g.snapshotInterval == .seconds(30))
        #expect(g.rescanInterval == .seconds(120))
        #expect(g.settle == .milliseconds(500))
        let m = c.folders[1]
        #expect(m.mode == .both)
        #expect(m.type == nil)
        #expect(m.prefix == "models/")
        #expect(m.settle == .milliseconds(300))
        #expect(m.rescanInterval == .seconds(60))
        #expect(m.snapshotInterval == .seconds(60))
        #expect(m.spec().settleMs == 300)
    }

    @Test("An explicit empty prefix is allowed: names are then the relative paths")
    func emptyPrefix() throws {
        let a = mkdir("a")
        let c = try NodeConfig.parse(yaml: "folders:\n  - {path: \(a), prefix: \"\"}\n")
        #expect(c.folders.first?.prefix == "")
    }

    @Test("An unknown key is an error naming it, the known keys and its line")
    func unknownKey() {
        let a = mkdir("a")
        let e = error("folders:\n  - path: \(a)\n    moed: send\n")
        #expect(e?.message == "folders[0].moed: unknown key")
        #expect(e?.hint?.contains("known keys here: path, mode, type, prefix") == true)
        #expect(e?.hint?.contains("line 3 of test.yaml") == true)
    }

    @Test("Paths must be existing absolute directories (not the root), and each folder needs one")
    func badPaths() {
        let file = dir.sub("plain-file")
        _ = FileManager.default.createFile(atPath: file, contents: Data())
        #expect(error("folders:\n  - path: data/games\n")?.message == "folders[0].path: expected an absolute directory path (starting with /), got \"data/games\"")
        #expect(error("folders:\n  - path: \(dir.sub("missing"))\n")?.message.contains("is not an existing directory") == true)
        #expect(error("folders:\n  - path: \(file)\n")?.message.contains("is not an existing directory") == true)
        #expect(error("folders:\n  - path: /\n")?.message.contains("root directory") == true)
        #expect(error("folders:\n  - mode: send\n")?.message == "folders[0].path: missing")
        #expect(error("folders:\n  - path: \(dir.sub("missing"))\n")?.hint?.contains("line 2") == true)
    }

    @Test("Folders may not contain each other, share a prefix, or have overlapping prefixes")
    func overlaps() {
        let a = mkdir("a"), b = mkdir("a/b"), c = mkdir("c")
        let nested = error("folders:\n  - {path: \(a), prefix: x/}\n  - {path: \(b), prefix: y/}\n")
        #expect(nested?.message.contains("overlaps folders[0]") == true)
        #expect(nested?.hint?.contains("line 3") == true)
        #expect(error("folders:\n  - {path: \(a), prefix: x/}\n  - {path: \(a)/, prefix: y/}\n")?.message.contains("overlaps") == true)
        #expect(error("folders:\n  - {path: \(a), prefix: x/}\n  - {path: \(c), prefix: x/}\n")?.message.contains("is also the prefix of folders[0]") == true)
        #expect(error("folders:\n  - {path: \(a), prefix: x/}\n  - {path: \(c), prefix: x/y/}\n")?.message.contains("overlaps the prefix") == true)
        #expect(error("folders:\n  - {path: \(a), prefix: \"\"}\n  - {path: \(c), prefix: x/}\n")?.message.contains("overlaps the prefix") == true)
        #expect(error("folders:\n  - {path: \(a)}\n  - {path: \(c)}\n") == nil)
    }

    @Test("Prefixes, modes, types, globs and durations are checked")
    func badValues() {
        let a = mkdir("a")
        #expect(error("folders:\n  - {path: \(a), prefix: games}\n")?.message == "folders[0].prefix: \"games\" must end in \"/\" (or be empty)")
        #expect(error("folders:\n  - {path: \(a), prefix: /games/}\n")?.message.contains("absolute") == true)
        #expect(error("folders:\n  - {path: \(a), prefix: a/../b/}\n")?.message.contains("\"..\" component") == true)
        #expect(error("folders:\n  - {path: \(a), mode: mirror}\n")?.message == "folders[0].mode: expected send, receive or both, got \"mirror\"")
        #expect(error("folders:\n  - {path: \(a), type: video}\n")?.message.contains("expected a type: other, game") == true)
        #expect(error("folders:\n  - {path: \(a), include: [\"[ab\"]}\n")?.message == "folders[0].include[0]: the glob \"[ab\" has an unclosed '['")
        #expect(error("folders:\n  - {path: \(a), settle: 0s}\n")?.message.contains("folders[0].settle") == true)
        #expect(error("folders:\n  - {path: \(a), settle: 20m}\n")?.message.contains("from 10ms to 10m") == true)
        #expect(error("folders:\n  - {path: \(a), rescan_interval: 100ms}\n")?.message.contains("from 1s to") == true)
        #expect(error("folders: {path: \(a)}\n")?.message.contains("expected a list") == true)
    }
}
