import Foundation
import TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// One config file for the whole cluster (`config check`, `config import`, three nodes on one
/// file), and setup mistakes that say how to fix them (a node missing from trusted_keys).
@Suite(.serialized, .ownThread()) struct ClusterFileCLITests {
    static let fixture: String = {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        return root.appendingPathComponent("Fixtures/distributed_hosts.yaml").path
    }()

    func clusterFile(_ nodes: [TestNode], extra: String = "") -> String {
        var y = "trusted_keys:\n" + nodes.map { "  - \($0.id)\n" }.joined()
        y += "probe_interval: 300ms\nanti_entropy_interval: 3s\n\(extra)"
        y += "join:\n" + nodes.map { "  - \($0.address)\n" }.joined()
        y += """
            hosts:
              \(nodes[0].name): {address: \(nodes[0].address), role: training}
              \(nodes[1].name): {address: \(nodes[1].address), roles: [storage, selfplay]}
              \(nodes[2].name): {address: \(nodes[2].address), ephemeral: true, bandwidth: {global: 40MB/s}}

            """
        return y
    }

    @Test(.ownThread(timeLimit: .minutes(1))) func configCheckPrintsOneNodesEffectiveSettingsAsTextAndJSON() throws {
        let dir = TestDir("config-check")
        let path = dir.sub("cluster.yaml")
        try """
            trusted_keys: []
            join: [10.1.0.1:7946, 10.1.0.2:7946]
            hosts:
              gpu-1: {address: 10.1.0.1:7946, roles: [training, storage], ephemeral: true, max_disk_usage: 80%}
              gpu-2: {address: 10.1.0.2:7946, role: selfplay, ssh: {host: gpu-2.example, user: ubuntu}}

            """.write(toFile: path, atomically: true, encoding: .utf8)
        let text = try Meshnode.run(["config", "check", path, "--name", "gpu-1"])
        #expect(text.status == 0, "\(text)")
        #expect(text.stdout.contains("hosts.gpu-1") && text.stdout.contains("training, storage"), "\(text)")
        #expect(text.stdout.contains("peer") && text.stdout.contains("gpu-2 10.1.0.2:7946 via ssh ubuntu@gpu-2.example:22"), "\(text)")
        #expect(text.stdout.contains("warning: no trusted_keys and no authority_keys"), "\(text)")
        let json = try Meshnode.run(["config", "check", path, "--name", "gpu-1", "--json"])
        #expect(json.status == 0, "\(json)")
        let j = try #require(try parseJSON(json.stdout) as? [String: Any])
        #expect(j["valid"] as? Bool == true && j["own_entry"] as? String == "gpu-1" && j["name_from"] as? String == "--name")
        #expect(j["roles"] as? [String] == ["training", "storage"] && j["ephemeral"] as? Bool == true && j["max_disk_usage"] as? String == "80%")
        #expect(j["join"] as? [String] == ["10.1.0.2:7946"], "its own address is not a seed")
        #expect((j["peers"] as? [[String: Any]])?.compactMap { $0["host"] as? String } == ["gpu-2"])
        // 10.1.0.1 is not this host's: it listens on every address and advertises its entry's.
        #expect(j["listen"] as? String == "0.0.0.0:7946" && j["advertise"] as? String == "10.1.0.1:7946")
        // The name from the environment, as `meshnode run` would take it.
        let env = try Meshnode.run(["config", "check", path, "--json"], environment: ["MESHNODE_NAME": "gpu-2"])
        let e = try #require(try parseJSON(env.stdout) as? [String: Any])
        #expect(e["own_entry"] as? String == "gpu-2" && e["roles"] as? [String] == ["selfplay"] && e["name_from"] as? String == "MESHNODE_NAME")
    }

    @Test(.ownThread(timeLimit: .minutes(1))) func configCheckOfAnInvalidFileIsOneLineNamingTheKeyPathAndExits16() throws {
        let dir = TestDir("config-check-bad")
        let path = dir.sub("bad.yaml")
        try "hosts:\n  gpu-1:\n    address: 10.1.0.1:7946\n    ssh_host: 10.1.0.1\n".write(toFile: path, atomically: true, encoding: .utf8)
        let r = try Meshnode.run(["config", "check", path, "--name", "gpu-1"])
        #expect(r.status == 16, "\(r)")
        #expect(r.stdout.isEmpty && r.stderrLines.count == 1, "\(r)")
        #expect(r.stderr.contains("hosts.gpu-1.ssh_host: unknown key") && r.stderr.contains("line 4 of \(path)")
                && r.stderr.contains("known keys here: address, ssh, socks5, role"), "\(r)")
        let j = try Meshnode.run(["config", "check", path, "--json"])
        #expect(j.status == 16, "\(j)")
        let o = try #require(try parseJSON(j.stdout) as? [String: Any])
        #expect(o["valid"] as? Bool == false && (o["error"] as? String)?.contains("hosts.gpu-1.ssh_host: unknown key") == true, "\(j)")
        let missing = try Meshnode.run(["config", "check", dir.sub("nope.yaml")])
        #expect(missing.status == 16 && missing.stderr.contains("cannot read config file"), "\(missing)")
    }

    @Test(.ownThread(timeLimit: .minutes(1))) func configImportConvertsTheSeedsHostFileIntoAClusterFileEveryHostAccepts() throws {
        let dir = TestDir("config-import")
        let r = try Meshnode.run(["config", "import", Self.fixture])
        #expect(r.status == 0, "\(r)")
        #expect(r.stdout.contains("hosts:\n  lambda-a:\n    address: 100.64.0.21:7946\n    role: training\n"), "\(r.stdout)")
        #expect(r.stdout.contains("    ssh: {host: ssh3.example.net, port: 40222, user: root, key: \"~/.ssh/id_cluster\"}"), "\(r.stdout)")
        #expect(r.stderrLines.contains { $0.hasPrefix("note: hosts.vast-4711: left out cpus, gpu, vast_instance_id") }, "\(r.stderr)")
        let out = dir.sub("cluster.yaml")
        let w = try Meshnode.run(["config", "import", Self.fixture, "-o", out, "--port", "7000"])
        #expect(w.status == 0 && w.stdout.isEmpty, "\(w)")
        // The same file for every host: each finds its own entry and sees the others as peers.
        for name in ["lambda-a", "lambda-b", "vast-4711", "hetzner-cpu"] {
            let c = try Meshnode.run(["config", "check", out, "--name", name, "--json"])
            #expect(c.status == 0, "\(c)")
            let j = try #require(try parseJSON(c.stdout) as? [String: Any])
            #expect(j["own_entry"] as? String == name && (j["peers"] as? [Any])?.count == 3 && (j["join"] as? [Any])?.count == 3, "\(c.stdout)")
        }
        let vast = try #require(try parseJSON(Meshnode.run(["config", "check", out, "--name", "vast-4711", "--json"]).stdout) as? [String: Any])
        #expect(vast["roles"] as? [String] == ["nn_training_primary"] && vast["ephemeral"] as? Bool == true && vast["listen"] as? String == "0.0.0.0:7000")
        let bad = try Meshnode.run(["config", "import", Self.fixture, "--via", "tailscale"])
        #expect(bad.status == 16 && bad.stderr.contains("tailscale_ip: missing or not an IP address"), "\(bad)")
    }

    @Test(.ownThread(timeLimit: .minutes(2))) func oneClusterFileStartedOnThreeNodesFormsTheMesh() throws {
        let root = TestDir("cluster-file")
        let subnet = LoopbackSubnet.allocate()
        let nodes = try (1...3).map { try TestNode(name: "n\($0)", root: root, ip: "\(subnet).\($0)") }
        let cfg = root.sub("cluster.yaml")
        try clusterFile(nodes).write(toFile: cfg, atomically: true, encoding: .utf8)
        // No --listen, --join or --name: each node takes its address from its own entry (found by
        // its store's name) and joins the other two.
        var children: [ChildProcess] = []
        defer { for c in children { c.kill(SIGKILL); _ = c.wait(timeoutSeconds: 5) } }
        for n in nodes {
            children.append(try Meshnode.spawn(["run", "--data", n.dataDir, "--config", cfg, "--log-level", "info", "--metrics-listen", "off"]))
        }
        func logs() -> String { children.map { $0.result.stderr.split(separator: "\n").suffix(10).joined(separator: "\n") }.joined(separator: "\n----\n") }
        try eventually(40, "3 alive in every view\n\(logs())") {
            nodes.allSatisfy { n in
                let s = n.states()
                return s.count == 3 && s.values.allSatisfy { $0 == "alive" }
            }
        }
        // Each states what its own entry says; the others see it.
        try eventually(30, "node facts from the entries\n\(nodes[0].peers())") {
            let p = nodes[0].peers()
            return p["n2"]?["roles"] as? [String] == ["storage", "selfplay"] && p["n3"]?["ephemeral"] as? Bool == true
                && (p["n1"]?["roles"] as? [String]) == ["training"]
        }
        for n in nodes {
            let s = try #require(n.nodeStatus())
            #expect(s["listen"] as? String == n.address && s["advertise"] as? String == n.address, "\(s)")
            #expect((s["seeds_unjoined"] as? [Any])?.isEmpty == true, "\(s)")
        }
    }

    @Test(.ownThread(timeLimit: .minutes(2))) func aNodeMissingFromTrustedKeysIsNamedWithTheFixAndTheJoinerListsTheSeedAsUnjoined() throws {
        let root = TestDir("untrusted")
        let subnet = LoopbackSubnet.allocate()
        let a = try TestNode(name: "na", root: root, ip: "\(subnet).1")
        let b = try TestNode(name: "nb", root: root, ip: "\(subnet).2")
        let aCfg = root.sub("a.yaml"), bCfg = root.sub("b.yaml")
        // A forgot B's id; B trusts both.
        try "trusted_keys: [\(a.id)]\nprobe_interval: 300ms\n".write(toFile: aCfg, atomically: true, encoding: .utf8)
        try "trusted_keys: [\(a.id), \(b.id)]\nprobe_interval: 300ms\n".write(toFile: bCfg, atomically: true, encoding: .utf8)
        try a.start(config: aCfg)
        try b.start(config: bCfg, join: [a.address])
        let fix = "fix=add \(b.id) to trusted_keys in \(aCfg)"
        try eventually(20, "A's log names B's id and the fix\n\(a.logs)") {
            a.logs.split(separator: "\n").contains { l in
                l.contains("reason=untrusted_key") && l.contains("node=\(b.id)") && l.contains("name=nb") && l.contains(fix)
            }
        }
        // B: a log line about the seed, and `peers --json` lists A as a seed not joined, with
        // the handshake's refusal once B has probed it.
        try eventually(30, "B's peers list A as an unjoined seed that refuses it\n\(b.peers())\n\(b.logs)") {
            guard let row = b.peers()[""] else { return false }
            return row["state"] as? String == "unjoined_seed" && row["seed"] as? Bool == true && row["address"] as? String == a.address
                && (row["last_error"] as? String)?.contains("does not admit this node") == true
        }
        #expect(b.logs.split(separator: "\n").contains { $0.contains("seed not joined") && $0.contains("seed=\(a.address)") }, "\(b.logs)")
        let status = try #require(b.nodeStatus())
        let seeds = try #require(status["seeds_unjoined"] as? [[String: Any]])
        #expect(seeds.count == 1 && seeds[0]["address"] as? String == a.address && (seeds[0]["last_error"] as? String)?.contains(b.id) == true)
        let text = try Meshnode.run(["peers", "--data", b.dataDir])
        #expect(text.stdout.contains("seed \(a.address) not joined: "), "\(text)")
        #expect(a.terminate() == 0 && b.terminate() == 0)
    }
}
