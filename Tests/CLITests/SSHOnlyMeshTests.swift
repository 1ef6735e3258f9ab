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
        let mesh = try SSHOnlyMesh(count: 3)
        let (lab, nodes, port) = (mesh.lab, mesh.nodes, 7946)
        // The firewall really is in place: port 22 answers across hosts, meshnode's port does not.
        func tcpOpen(from i: Int, to j: Int, port: Int) throws -> Bool {
            try Subprocess.run(["ip", "netns", "exec", lab.hosts[i], "timeout", "2", "bash", "-c", "echo > /dev/tcp/\(lab.ips[j])/\(port)"],
                               timeoutSeconds: 10).status == 0
        }
        func logs() -> String { mesh.logs() }
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
