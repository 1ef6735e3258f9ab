import Foundation
import TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Waits until `condition` holds, polling; throws after `seconds` with `what` in the message.
func eventually(_ seconds: Double, _ what: @autoclosure () -> String, _ condition: () throws -> Bool) throws {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if (try? condition()) == true { return }
        usleep(100_000)
    }
    if try condition() { return }
    throw TestFailure("timed out after \(seconds)s waiting for \(what())")
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// A unique loopback /24 per cluster (127.X.Y.0), so that concurrently running tests never
/// share an address and partitions can be made per address with nftables.
enum LoopbackSubnet {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var next = 0

    static func allocate() -> String {
        lock.lock()
        defer { lock.unlock() }
        next += 1
        return "127.\(100 + (Int(getpid()) % 100)).\(next % 250 + 1)"
    }
}

/// One `meshnode` process with its own data dir, on its own loopback address.
final class TestNode {
    let name: String
    let dataDir: String
    private(set) var ip: String
    private(set) var port: Int
    let id: String
    private(set) var child: ChildProcess?
    var address: String { "\(ip):\(port)" }

    init(name: String, root: TestDir, ip: String, port: Int = 7946) throws {
        self.name = name
        self.ip = ip
        self.port = port
        dataDir = root.sub(name)
        let r = try Meshnode.run(["init", "--data", dataDir, "--name", name])
        guard r.status == 0 else { throw TestFailure("init \(name) failed: \(r)") }
        id = r.lastLine
    }

    deinit { child?.kill(SIGKILL) }

    /// Where the next `start` listens (a node restarted on another port or host address).
    func move(ip: String? = nil, port: Int? = nil) {
        precondition(child == nil || child?.poll() != nil, "\(name) must be stopped before it moves")
        if let ip { self.ip = ip }
        if let port { self.port = port }
    }

    /// Starts `meshnode run` and waits until its control socket answers.
    func start(config: String, join: [String] = [], extra: [String] = [], environment: [String: String] = [:]) throws {
        precondition(child == nil || child?.poll() != nil, "\(name) is already running")
        child = try Meshnode.spawn(["run", "--data", dataDir, "--config", config, "--listen", address, "--log-level", "info"]
                                   + join.flatMap { ["--join", $0] } + extra, environment: environment)
        try eventually(15, "\(self.name)'s control socket") {
            if let s = child?.poll() { throw TestFailure("\(name) exited with \(s): \(child!.result.stderr)") }
            return try Meshnode.run(["peers", "--data", dataDir], timeoutSeconds: 5).status == 0
        }
    }

    /// `meshnode peers --json`, keyed by member name (empty when the node does not answer).
    func peers() -> [String: [String: Any]] {
        guard let r = try? Meshnode.run(["peers", "--data", dataDir, "--json"], timeoutSeconds: 10), r.status == 0,
              let rows = (try? parseJSON(r.stdout)) as? [[String: Any]] else { return [:] }
        var out: [String: [String: Any]] = [:]
        for row in rows { if let n = row["name"] as? String { out[n] = row } }
        return out
    }

    func states() -> [String: String] { peers().compactMapValues { $0["state"] as? String } }

    func incarnation(of other: String) -> Int? { peers()[other]?["incarnation"] as? Int }

    /// Item names in `meshnode ls --json`.
    func itemNames() -> Set<String> {
        guard let r = try? Meshnode.run(["ls", "--data", dataDir, "--json"], timeoutSeconds: 10), r.status == 0,
              let rows = (try? parseJSON(r.stdout)) as? [[String: Any]] else { return [] }
        return Set(rows.compactMap { $0["name"] as? String })
    }

    /// `meshnode status --json`'s `node` object.
    func nodeStatus() -> [String: Any]? {
        guard let r = try? Meshnode.run(["status", "--data", dataDir, "--json"], timeoutSeconds: 10), r.status == 0,
              let j = (try? parseJSON(r.stdout)) as? [String: Any] else { return nil }
        return j["node"] as? [String: Any]
    }

    /// Whether `meshnode ls --json` lists item `id` as complete on this node.
    func holdsComplete(_ id: String) -> Bool {
        guard let r = try? Meshnode.run(["ls", "--data", dataDir, "--json"], timeoutSeconds: 10), r.status == 0,
              let rows = (try? parseJSON(r.stdout)) as? [[String: Any]] else { return false }
        return rows.contains { $0["id"] as? String == id && $0["complete"] as? Bool == true }
    }

    /// One counter of `status --json`'s `node.blobs` (0 when the node does not answer).
    func blobCounter(_ key: String) -> Int {
        (nodeStatus()?["blobs"] as? [String: Any])?[key] as? Int ?? 0
    }

    /// Exports item `id` with `meshnode get` and checks it is byte for byte `original`.
    func expectExportMatches(_ id: String, original: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let out = original + ".exported-from-\(name)"
        let g = try Meshnode.run(["get", id, "-o", out, "--data", dataDir])
        #expect(g.status == 0, "\(g)", sourceLocation: sourceLocation)
        #expect(FileManager.default.contentsEqual(atPath: original, andPath: out), sourceLocation: sourceLocation)
    }

    func put(_ path: String, name: String) throws -> String {
        let r = try Meshnode.run(["put", path, "--name", name, "--data", dataDir])
        guard r.status == 0 else { throw TestFailure("put on \(self.name) failed: \(r)") }
        return r.lastLine
    }

    func kill9() {
        child?.kill(SIGKILL)
        _ = child?.wait(timeoutSeconds: 10)
    }

    /// SIGTERM, then the exit status.
    func terminate() -> Int32 {
        child?.kill(SIGTERM)
        return child?.wait(timeoutSeconds: 15) ?? -1
    }

    var logs: String { child?.result.stderr ?? "" }
}

/// A few nodes that trust each other by key, with fast test timings.
final class TestCluster {
    let root = TestDir("cluster")
    let subnet = LoopbackSubnet.allocate()
    var nodes: [TestNode] = []
    var configPath: String { root.sub("cluster.yaml") }

    init(size: Int, extraConfig: String = "") throws {
        for i in 1...size { nodes.append(try TestNode(name: "n\(i)", root: root, ip: "\(subnet).\(i)")) }
        try writeConfig(trusted: nodes.map(\.id), extra: extraConfig)
    }

    /// A config like the cluster's whose node serves at most `rate` (e.g. "8MB/s"), so that a
    /// transfer from it lasts long enough to be interrupted.
    func throttledConfig(_ rate: String) throws -> String {
        let path = root.sub("throttled-\(rate.replacingOccurrences(of: "/", with: "-")).yaml")
        try writeConfig(trusted: nodes.map(\.id), extra: "bandwidth: {global: \(rate)}", to: path)
        return path
    }

    func writeConfig(trusted: [String], extra: String = "", to path: String? = nil) throws {
        let yaml = """
            trusted_keys:
            \(trusted.map { "  - \($0)" }.joined(separator: "\n"))
            probe_interval: 300ms
            anti_entropy_interval: 3s
            \(extra)
            """
        try yaml.write(toFile: path ?? configPath, atomically: true, encoding: .utf8)
    }

    /// Starts every node, all joining through the first.
    func startAll() throws {
        try nodes[0].start(config: configPath)
        for n in nodes.dropFirst() { try n.start(config: configPath, join: [nodes[0].address]) }
    }

    /// Every running node in `among` (default: all) sees exactly `count` members, all alive.
    func allSeeAlive(_ count: Int, among: [TestNode]? = nil) -> Bool {
        (among ?? nodes).allSatisfy { n in
            let s = n.states()
            return s.count == count && s.values.filter { $0 == "alive" }.count == count
        }
    }

    func dumpLogs() -> String {
        nodes.map { "---- \($0.name) ----\n\($0.logs.split(separator: "\n").suffix(30).joined(separator: "\n"))" }.joined(separator: "\n")
    }
}

/// Drops loopback traffic between two groups of addresses with an nftables table of its
/// own (root only); `heal()` or deinit deletes the table.
final class Partition {
    let table: String
    private var active = false

    static var isAvailable: Bool {
        getuid() == 0 && ((try? Subprocess.run(["nft", "list", "tables"], timeoutSeconds: 10).status) == 0)
    }

    init(_ a: [String], _ b: [String]) throws {
        table = "meshnode_test_\(getpid())_\(Int.random(in: 0..<1_000_000))"
        var script = "add table inet \(table)\n"
        script += "add chain inet \(table) out { type filter hook output priority 0; policy accept; }\n"
        for x in a { for y in b {
            script += "add rule inet \(table) out ip saddr \(x) ip daddr \(y) drop\n"
            script += "add rule inet \(table) out ip saddr \(y) ip daddr \(x) drop\n"
        } }
        let file = "/tmp/\(table).nft"
        try script.write(toFile: file, atomically: true, encoding: .utf8)
        defer { unlink(file) }
        let r = try Subprocess.run(["nft", "-f", file], timeoutSeconds: 10)
        guard r.status == 0 else { throw TestFailure("nft failed: \(r)") }
        active = true
    }

    func heal() {
        guard active else { return }
        _ = try? Subprocess.run(["nft", "delete", "table", "inet", table], timeoutSeconds: 10)
        active = false
    }

    deinit { heal() }
}
