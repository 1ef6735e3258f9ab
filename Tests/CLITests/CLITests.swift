import Foundation
import Store
import TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Checks the one-line error contract: exactly one stderr line, in the documented form.
func expectOneLineError(_ r: CommandResult, status: MeshError.Code, mentioning: String? = nil,
                        sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(r.status == status.exitStatus, "\(r)", sourceLocation: sourceLocation)
    #expect(r.stderrLines.count == 1, "\(r)", sourceLocation: sourceLocation)
    #expect(r.stderr.hasPrefix("meshnode: error: "), "\(r)", sourceLocation: sourceLocation)
    #expect(r.stderr.contains(" — "), "\(r)", sourceLocation: sourceLocation)
    if let mentioning { #expect(r.stderr.contains(mentioning), "\(r)", sourceLocation: sourceLocation) }
}

/// A data dir initialised through the CLI.
struct CLINode {
    let dir: TestDir
    let nodeID: String
    var data: String { dir.sub("data") }

    init(chunkSize: String = "64KiB", label: String = "cli") throws {
        dir = TestDir(label)
        let r = try Meshnode.run(["init", "--data", dir.sub("data"), "--name", "n1", "--chunk-size", chunkSize])
        precondition(r.status == 0, "init failed: \(r)")
        nodeID = r.lastLine
    }

    func run(_ args: [String]) throws -> CommandResult { try Meshnode.run(args + ["--data", data]) }

    /// `put` and return the printed content id.
    func put(_ file: String, _ extra: [String] = []) throws -> String {
        let r = try run(["put", file] + extra)
        precondition(r.status == 0, "put failed: \(r)")
        return r.lastLine
    }
}

@Suite("meshnode CLI", .ownThread(timeLimit: .minutes(2)))
struct CLITests {
    @Test("init prints the node id on its last line and refuses to overwrite an identity")
    func initAndReinit() throws {
        let node = try CLINode()
        #expect(NodeID(node.nodeID) != nil)
        var st = stat()
        #expect(stat(node.data + "/identity.key", &st) == 0 && st.st_mode & 0o777 == 0o600)
        let key = try Data(contentsOf: URL(fileURLWithPath: node.data + "/identity.key"))
        let again = try Meshnode.run(["init", "--data", node.data])
        expectOneLineError(again, status: .alreadyInitialized, mentioning: "identity")
        #expect(try Data(contentsOf: URL(fileURLWithPath: node.data + "/identity.key")) == key)
        let status = try node.run(["status", "--json"])
        let json = try #require(try parseJSON(status.stdout) as? [String: Any])
        #expect(json["node_id"] as? String == node.nodeID)
    }

    @Test("put, ls, get and status work together, with --data or $MESHNODE_DATA")
    func happyPath() throws {
        let node = try CLINode()
        let file = node.dir.sub("weights.npz")
        try writePseudoRandomFile(file, size: 300_000, seed: 1)
        let id = try node.put(file)
        #expect(ContentID(hex: id) != nil)
        let ls = try node.run(["ls", "--json"])
        #expect(ls.status == 0)
        let items = try #require(try parseJSON(ls.stdout) as? [[String: Any]])
        #expect(items.count == 1)
        let item = try #require(items.first)
        #expect(item["id"] as? String == id)
        #expect(item["name"] as? String == "weights.npz")
        #expect(item["type"] as? String == "npz")
        #expect(item["size"] as? Int == 300_000)
        #expect(item["origin"] as? String == node.nodeID)
        #expect(item["complete"] as? Bool == true)
        // Human listing and the environment fallback.
        let ls2 = try Meshnode.run(["ls"], environment: ["MESHNODE_DATA": node.data])
        #expect(ls2.status == 0 && ls2.stdout.contains("weights.npz") && ls2.stdout.contains(String(id.prefix(12))))
        // get by name, by id and by prefix.
        for q in ["weights.npz", id, String(id.prefix(10))] {
            let out = node.dir.sub("out-\(q.prefix(4))")
            let g = try node.run(["get", q, "-o", out])
            #expect(g.status == 0, "\(g)")
            #expect(try Data(contentsOf: URL(fileURLWithPath: out)) == Data(contentsOf: URL(fileURLWithPath: file)))
        }
        // -o DIR writes DIR/<name>.
        let outDir = node.dir.sub("outdir")
        try FileManager.default.createDirectory(atPath: outDir, withIntermediateDirectories: false)
        #expect(try node.run(["get", id, "-o", outDir]).status == 0)
        #expect(FileManager.default.fileExists(atPath: outDir + "/weights.npz"))
        let status = try node.run(["status", "--json"])
        let s = try #require(try parseJSON(status.stdout) as? [String: Any])
        #expect(s["items"] as? Int == 1)
        #expect(s["bytes"] as? Int == 300_000)
        #expect(s["chunks"] as? Int == 5)
        #expect(s["schema_version"] as? Int == Schema.currentVersion)
        #expect(try node.run(["status"]).stdout.contains("schema"))
        let v = try node.run(["verify"])
        #expect(v.status == 0 && v.stdout.contains("ok"))
    }

    @Test("put and get draw a progress bar on a terminal, and nothing on stderr otherwise")
    func progressBar() throws {
        let node = try CLINode()
        let file = node.dir.sub("data.npz")
        try writePseudoRandomFile(file, size: 2_000_000, seed: 8)
        // Not a terminal: stderr stays empty.
        let plain = try Meshnode.run(["put", file, "--data", node.data], environment: ["MESHNODE_NO_PROGRESS": ""])
        #expect(plain.status == 0 && plain.stderr.isEmpty, "\(plain)")
        // A pseudo-terminal (util-linux `script`), with the bar's quiet period set to 0.
        let cmd = "MESHNODE_PROGRESS_AFTER_MS=0 MESHNODE_NO_PROGRESS= '\(Meshnode.binaryPath)' get data.npz -o '\(node.dir.sub("out.npz"))' --data '\(node.data)'"
        let tty = try Subprocess.run(["script", "-qec", cmd, "/dev/null"])
        #expect(tty.status == 0, "\(tty)")
        #expect(tty.stdout.contains("ETA") && tty.stdout.contains("100%"), "\(tty)")
    }

    @Test("Without O_TMPFILE, named temp files in tmp/ give the same results and are cleaned up")
    func namedTempFallback() throws {
        let node = try CLINode()
        let file = node.dir.sub("f.npz")
        try writePseudoRandomFile(file, size: 300_001, seed: 12)
        let env = ["MESHNODE_NO_TMPFILE": "1"]
        let put = try Meshnode.run(["put", file, "--data", node.data], environment: env)
        #expect(put.status == 0, "\(put)")
        let out = node.dir.sub("out.npz")
        #expect(try Meshnode.run(["get", "f.npz", "-o", out, "--data", node.data], environment: env).status == 0)
        #expect(try Data(contentsOf: URL(fileURLWithPath: out)) == Data(contentsOf: URL(fileURLWithPath: file)))
        #expect(try FileManager.default.contentsOfDirectory(atPath: node.data + "/tmp").isEmpty)
        #expect(try FileManager.default.contentsOfDirectory(atPath: node.dir.path).allSatisfy { !$0.contains(".tmp") })
        #expect(try node.run(["verify"]).status == 0)
    }

    @Test("Every verb has --help mentioning --data")
    func help() throws {
        for verb in [[], ["init"], ["put"], ["get"], ["ls"], ["verify"], ["status"]] {
            let r = try Meshnode.run(verb + ["--help"])
            #expect(r.status == 0, "\(verb): \(r)")
            if !verb.isEmpty { #expect(r.stdout.contains("--data"), "\(verb)") }
        }
    }

    @Test("A missing input file is a one-line error")
    func missingFile() throws {
        let node = try CLINode()
        expectOneLineError(try node.run(["put", node.dir.sub("nope.bin")]), status: .fileNotFound, mentioning: "nope.bin")
        expectOneLineError(try node.run(["put", node.dir.path]), status: .fileUnreadable, mentioning: "directory")
        #expect(try parseJSON(try node.run(["ls", "--json"]).stdout) as? [Any] != nil)
        #expect((try parseJSON(try node.run(["ls", "--json"]).stdout) as? [Any])?.isEmpty == true)
    }

    @Test("An unreadable input file is a one-line error")
    func unreadableFile() throws {
        let node = try CLINode()
        let file = node.dir.sub("secret.bin")
        try writePseudoRandomFile(file, size: 1000, seed: 2)
        chmod(file, 0)
        let r: CommandResult
        if getuid() == 0 {
            // root reads anything: run the CLI as `nobody` on a data dir that nobody owns.
            let chown = try Subprocess.run(["chown", "-R", "65534:65534", node.data])
            #expect(chown.status == 0)
            chmod(node.dir.path, 0o755)
            r = try Subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                    Meshnode.binaryPath, "put", file, "--data", node.data],
                                   environment: Meshnode.defaultEnvironment)
        } else {
            r = try node.run(["put", file])
        }
        expectOneLineError(r, status: .fileUnreadable, mentioning: "secret.bin")
    }

    @Test("An unknown id or name is a one-line error")
    func unknownItem() throws {
        let node = try CLINode()
        let out = node.dir.sub("out")
        expectOneLineError(try node.run(["get", "nothing-here", "-o", out]), status: .unknownItem, mentioning: "nothing-here")
        expectOneLineError(try node.run(["get", String(repeating: "ab", count: 32), "-o", out]), status: .unknownItem)
        #expect(!FileManager.default.fileExists(atPath: out))
    }

    @Test("A second put of a changed file is the name's new current version; NAME@1 and the id still give the first")
    func secondPutIsANewVersion() throws {
        let node = try CLINode()
        let a = node.dir.sub("a"), b = node.dir.sub("b")
        try writePseudoRandomFile(a, size: 1000, seed: 3)
        try writePseudoRandomFile(b, size: 1000, seed: 4)
        let ida = try node.put(a, ["--name", "games.npz", "--type", "npz"])
        let idb = try node.put(b, ["--name", "games.npz", "--type", "npz"])
        #expect(ida != idb)
        let out = node.dir.sub("out")
        #expect(try node.run(["get", "games.npz", "-o", out]).status == 0)
        #expect(try Data(contentsOf: URL(fileURLWithPath: out)) == Data(contentsOf: URL(fileURLWithPath: b)))
        #expect(try node.run(["get", "games.npz@1", "-o", node.dir.sub("first")]).status == 0)
        #expect(try Data(contentsOf: URL(fileURLWithPath: node.dir.sub("first"))) == Data(contentsOf: URL(fileURLWithPath: a)))
        #expect(try node.run(["get", ida, "-o", node.dir.sub("byid")]).status == 0)
        let ls = try node.run(["ls"])
        #expect(ls.status == 0)
        #expect(ls.stdout.components(separatedBy: "\n").filter { $0.contains("games.npz") }.count == 1, "\(ls.stdout)")
        let all = try node.run(["ls", "--versions", "games.npz"])
        #expect(all.stdout.contains("@1") && all.stdout.contains("@2") && all.stdout.contains("current"), "\(all.stdout)")
        expectOneLineError(try node.run(["get", "games.npz@3", "-o", node.dir.sub("none")]), status: .unknownItem, mentioning: "no version 3")
        // The same content again is a no-op, not a third version.
        _ = try node.put(b, ["--name", "games.npz", "--type", "npz"])
        #expect(try node.run(["ls", "--versions", "games.npz"]).stdout.contains("@3") == false)
    }

    @Test("rm deletes a name from ls; a later put makes a new version; rm NAME@N deletes one version")
    func rmDeletesANameOrAVersion() throws {
        let node = try CLINode()
        let a = node.dir.sub("a"), b = node.dir.sub("b"), c = node.dir.sub("c")
        try writePseudoRandomFile(a, size: 1000, seed: 5)
        try writePseudoRandomFile(b, size: 1000, seed: 6)
        try writePseudoRandomFile(c, size: 1000, seed: 7)
        _ = try node.put(a, ["--name", "m.onnx"])
        let rm = try node.run(["rm", "m.onnx"])
        #expect(rm.status == 0, "\(rm)")
        #expect(!(try node.run(["ls"])).stdout.contains("m.onnx"))
        expectOneLineError(try node.run(["get", "m.onnx", "-o", node.dir.sub("out")]), status: .unknownItem, mentioning: "deleted")
        _ = try node.put(b, ["--name", "m.onnx"])
        _ = try node.put(c, ["--name", "m.onnx"])
        #expect(try node.run(["ls"]).stdout.contains("m.onnx"))
        #expect(try node.run(["rm", "m.onnx@3", "--json"]).stdout.contains("\"scope\" : \"version\""))
        #expect(try node.run(["get", "m.onnx", "-o", node.dir.sub("cur")]).status == 0)
        #expect(try Data(contentsOf: URL(fileURLWithPath: node.dir.sub("cur"))) == Data(contentsOf: URL(fileURLWithPath: b)))
        let states = try node.run(["ls", "--versions", "m.onnx"]).stdout
        #expect(states.contains("deleted") && states.contains("current"), "\(states)")
    }

    @Test("A store from a newer schema is refused with a one-line error")
    func newerSchema() throws {
        let node = try CLINode()
        let s = try Subprocess.run(["sqlite3", node.data + "/manifest.sqlite", "PRAGMA user_version = 42"])
        #expect(s.status == 0, "\(s)")
        for verb in [["ls"], ["status"], ["verify"], ["put", "/etc/hostname"]] {
            expectOneLineError(try node.run(verb), status: .schemaTooNew, mentioning: "42")
        }
    }

    @Test("A corrupt chunk makes verify fail naming the chunk and item, and get refuse; the item then shows incomplete")
    func corruptChunk() throws {
        let node = try CLINode()
        let file = node.dir.sub("model.pt")
        try writePseudoRandomFile(file, size: 200_000, seed: 5)
        let id = try node.put(file)
        let other = node.dir.sub("other.bin")
        try writePseudoRandomFile(other, size: 150_000, seed: 6)
        _ = try node.put(other)
        /// Overwrites a byte of the chunk at `offset` of `file` in the store; returns its hash.
        func damage(_ file: String, chunkAt offset: Int) throws -> String {
            let bytes = try Data(contentsOf: URL(fileURLWithPath: file))
            let hash = bytes.subdata(in: offset..<(offset + 65536)).withUnsafeBytes { Blake2b256.hash($0) }.hex
            let path = "\(node.data)/chunks/\(hash.prefix(2))/\(hash)"
            #expect(FileManager.default.fileExists(atPath: path))
            let fd = open(path, O_WRONLY)
            var byte: UInt8 = 0x5a
            _ = pwrite(fd, &byte, 1, 777)
            close(fd)
            return hash
        }
        let hash = try damage(file, chunkAt: 65536)
        let v = try node.run(["verify"])
        #expect(v.status == MeshError.Code.corrupt.exitStatus, "\(v)")
        #expect(v.stdout.contains(hash) && v.stdout.contains("model.pt") && v.stdout.contains("no longer counted"), "\(v)")
        #expect(!v.stdout.contains("other.bin"))
        expectOneLineError(v, status: .corrupt)
        // verify stopped counting the chunk: every reader now sees the item incomplete.
        let ls = try node.run(["ls", "--json"])
        let rows = try #require(try parseJSON(ls.stdout) as? [[String: Any]])
        #expect(rows.first { $0["name"] as? String == "model.pt" }?["complete"] as? Bool == false, "\(ls)")
        let out = node.dir.sub("restored.pt")
        expectOneLineError(try node.run(["get", id, "-o", out]), status: .incomplete, mentioning: "no node is running")
        #expect(!FileManager.default.fileExists(atPath: out))
        #expect(try node.run(["verify"]).status == 0)
        // get finds damage verify has not seen: it refuses, names the chunk, and leaves nothing.
        let hash2 = try damage(other, chunkAt: 0)
        let out2 = node.dir.sub("o2")
        expectOneLineError(try node.run(["get", "other.bin", "-o", out2]), status: .corrupt, mentioning: hash2)
        #expect(!FileManager.default.fileExists(atPath: out2))
        #expect(try FileManager.default.contentsOfDirectory(atPath: node.dir.path).allSatisfy { !$0.contains(".tmp") })
        // Putting the file again brings the chunk back.
        _ = try node.put(other)
        #expect(try node.run(["get", "other.bin", "-o", out2]).status == 0)
        #expect(FileManager.default.contentsEqual(atPath: other, andPath: out2))
    }

    @Test("A missing identity or an uninitialised data dir is a one-line error saying to run init")
    func missingIdentity() throws {
        let node = try CLINode()
        unlink(node.data + "/identity.key")
        let file = node.dir.sub("f")
        try writePseudoRandomFile(file, size: 10, seed: 7)
        expectOneLineError(try node.run(["put", file]), status: .notInitialized, mentioning: "meshnode init")
        let empty = TestDir("cli")
        expectOneLineError(try Meshnode.run(["ls", "--data", empty.sub("none")]), status: .notInitialized, mentioning: "meshnode init")
        #expect(!FileManager.default.fileExists(atPath: empty.sub("none")))
    }

    @Test("Content ids recompute outside meshnode: python hashlib and the documented shell recipe",
          arguments: [0, 1, 65535, 65536, 200_001])
    func outsideRecomputation(size: Int) throws {
        let node = try CLINode()
        let file = node.dir.sub("f-\(size)")
        try writePseudoRandomFile(file, size: size, seed: UInt64(size))
        let id = try node.put(file)
        let script = """
            import hashlib, os, struct, sys
            path, cs = sys.argv[1], int(sys.argv[2])
            h = hashlib.blake2b(digest_size=32)
            h.update(b"meshnode/content/v1\\0" + struct.pack(">QI", os.path.getsize(path), cs))
            with open(path, "rb") as f:
                while chunk := f.read(cs):
                    h.update(hashlib.blake2b(chunk, digest_size=32).digest())
            print(h.hexdigest())
            """
        let py = try Subprocess.run(["python3", "-c", script, file, "65536"])
        #expect(py.status == 0, "\(py)")
        #expect(py.lastLine == id)
        let sh = try Subprocess.run([repoRoot + "/scripts/content-id.sh", file, "65536"])
        #expect(sh.status == 0, "\(sh)")
        #expect(sh.lastLine == id)
    }
}

/// The package root (two levels above this source file's directory).
let repoRoot: String = {
    var dir = (#filePath as NSString).deletingLastPathComponent
    for _ in 0..<2 { dir = (dir as NSString).deletingLastPathComponent }
    return dir
}()
