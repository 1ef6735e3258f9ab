import Foundation
import TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Three hosts between which only TCP to port 22 passes: the mesh forms and replicates
/// entirely through SSH tunnels.
@Suite(.serialized, .ownThread()) struct SSHOnlyMeshTests {
    @Test(.ownThread(timeLimit: .minutes(3)), .enabled(if: NetnsLab.isAvailable, "needs root, iproute2, nftables and openssh-server (installed by .ci/run)"))
    func nodesBehindSSHOnlyFirewallsFormTheMeshAndReplicateThroughSSH() throws {
        let lab = try NetnsLab(count: 3)
        let port = 7946
        var nodes: [TestNode] = []
        for i in 0..<3 { nodes.append(try TestNode(name: "h\(i)", root: lab.dir, ip: lab.ips[i], port: port)) }
        var children: [ChildProcess] = []
        defer { for c in children { c.kill(SIGKILL); _ = c.wait(timeoutSeconds: 5) } }
        for i in 0..<3 {
            var yaml = "trusted_keys:\n" + nodes.map { "  - \($0.id)\n" }.joined() + "probe_interval: 500ms\nanti_entropy_interval: 3s\nhosts:\n"
            for j in 0..<3 where j != i { yaml += "  \(nodes[j].id):\n" + lab.sshHostEntry(j, port: port) + "\n" }
            let cfg = lab.dir.sub("h\(i).yaml")
            try yaml.write(toFile: cfg, atomically: true, encoding: .utf8)
            let join = i == 0 ? [] : ["--join", nodes[0].address]
            children.append(try lab.spawn(in: i, [Meshnode.binaryPath, "run", "--data", nodes[i].dataDir, "--config", cfg,
                                                  "--listen", nodes[i].address, "--log-level", "info"] + join,
                                         environment: Meshnode.defaultEnvironment))
        }
        // The firewall really is in place: port 22 answers across hosts, meshnode's port does not.
        func tcpOpen(from i: Int, to j: Int, port: Int) throws -> Bool {
            try Subprocess.run(["ip", "netns", "exec", lab.hosts[i], "timeout", "2", "bash", "-c", "echo > /dev/tcp/\(lab.ips[j])/\(port)"],
                               timeoutSeconds: 10).status == 0
        }
        func logs() -> String { children.map { $0.result.stderr.split(separator: "\n").suffix(15).joined(separator: "\n") }.joined(separator: "\n----\n") }
        try eventually(60, "all three alive in every view, through SSH only\n\(logs())") {
            nodes.allSatisfy { n in
                let s = n.states()
                return s.count == 3 && s.values.allSatisfy { $0 == "alive" }
            }
        }
        #expect(try tcpOpen(from: 1, to: 0, port: 22))
        #expect(try !tcpOpen(from: 1, to: 0, port: port))
        // Every session was made by ssh (or accepted from a peer's ssh tunnel); none direct.
        var dialledBySSH = 0
        for n in nodes {
            let routes = n.nodeStatus()?["sessions_by_route"] as? [String: Int] ?? [:]
            #expect((routes["direct"] ?? 0) == 0 && (routes["socks5"] ?? 0) == 0, "\(n.name) sessions by route: \(routes)")
            #expect((routes["ssh"] ?? 0) + (routes["inbound"] ?? 0) > 0, "\(n.name) sessions by route: \(routes)")
            dialledBySSH += routes["ssh"] ?? 0
            // `address` is each host's own network address, not loopback: the sessions inside
            // the tunnels stay encrypted (PROTOCOL §8.3).
            let ciphers = n.nodeStatus()?["sessions_by_cipher"] as? [String: Int] ?? [:]
            #expect(ciphers["ssh-tunnel"] == nil && !ciphers.isEmpty, "\(n.name) sessions by cipher: \(ciphers)")
        }
        #expect(dialledBySSH > 0)
        let f = lab.dir.sub("model.onnx")
        try writePseudoRandomFile(f, size: 20 << 20, seed: 9)
        let id = try nodes[0].put(f, name: "model.onnx")
        try eventually(90, "the item complete on every host\n\(logs())") { nodes.allSatisfy { $0.holdsComplete(id) } }
        try nodes[2].expectExportMatches(id, original: f)
    }
}
