import Foundation
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// Test hosts in network namespaces made by this test, on a bridge of their own, where an
/// nftables filter in every namespace lets only TCP to port 22 in (and replies out), as on
/// rented GPU hosts that expose nothing but SSH. Each host runs its own `sshd` on port 22.
/// Root only; everything is torn down (processes by PID, then namespaces and bridge).
final class NetnsLab {
    let tag: String
    let subnet: String
    let dir = TestDir("netns")
    let hosts: [String]            // namespace names
    let ips: [String]
    let clientKey: String
    private var sshds: [ChildProcess] = []
    private let bridge: String

    static var isAvailable: Bool {
        getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/sbin/sshd")
            && ((try? Subprocess.run(["ip", "netns", "list"], timeoutSeconds: 10).status) == 0)
            && ((try? Subprocess.run(["nft", "list", "tables"], timeoutSeconds: 10).status) == 0)
    }

    init(count: Int) throws {
        let tag = "mn\(getpid() % 10000)x\(Int.random(in: 0..<1000))"
        let subnet = "10.231.\(Int(getpid()) % 250 + 1)"
        self.tag = tag
        self.subnet = subnet
        bridge = "br\(tag)"
        hosts = (0..<count).map { "\(tag)h\($0)" }
        ips = (0..<count).map { "\(subnet).\($0 + 10)" }
        clientKey = dir.sub("client_key")
        try sh("ssh-keygen -q -t ed25519 -N '' -C meshtest-client -f \(clientKey)")
        try sh("cp \(clientKey).pub \(dir.sub("authorized_keys"))")
        try sh("ip link add \(bridge) type bridge && ip link set \(bridge) up")
        for (i, ns) in hosts.enumerated() {
            let hostSide = "v\(tag)\(i)", nsSide = "n\(tag)\(i)"
            try sh("""
                ip netns add \(ns) && ip link add \(hostSide) type veth peer name \(nsSide) && \
                ip link set \(nsSide) netns \(ns) && ip link set \(hostSide) master \(bridge) && ip link set \(hostSide) up && \
                ip netns exec \(ns) ip addr add \(ips[i])/24 dev \(nsSide) && ip netns exec \(ns) ip link set \(nsSide) up && \
                ip netns exec \(ns) ip link set lo up
                """)
            let rules = dir.sub("\(ns).nft")
            try """
                table inet sshonly {
                    chain input {
                        type filter hook input priority 0; policy drop;
                        iif lo accept
                        ct state established,related accept
                        tcp dport 22 accept
                    }
                }
                """.write(toFile: rules, atomically: true, encoding: .utf8)
            try sh("ip netns exec \(ns) nft -f \(rules)")
            // This host's sshd on port 22.
            let hostKey = dir.sub("\(ns)_host_key")
            try sh("ssh-keygen -q -t ed25519 -N '' -f \(hostKey)")
            let cfg = dir.sub("\(ns)_sshd_config")
            try """
                Port 22
                ListenAddress \(ips[i])
                HostKey \(hostKey)
                AuthorizedKeysFile \(dir.sub("authorized_keys"))
                PidFile \(dir.sub("\(ns)_sshd.pid"))
                StrictModes no
                UsePAM no
                PermitRootLogin prohibit-password
                PasswordAuthentication no
                KbdInteractiveAuthentication no
                AllowTcpForwarding yes
                X11Forwarding no
                PrintMotd no
                LogLevel VERBOSE
                """.write(toFile: cfg, atomically: true, encoding: .utf8)
            if access("/run/sshd", F_OK) != 0 { mkdir("/run/sshd", 0o755) }
            sshds.append(try Subprocess.spawn(["ip", "netns", "exec", ns, "/usr/sbin/sshd", "-f", cfg, "-D", "-e"]))
        }
        try eventually(10, "every sshd listening") {
            try self.hosts.indices.allSatisfy { i in
                try Subprocess.run(["ip", "netns", "exec", self.hosts[i], "sh", "-c", "ss -ltn | grep -q '\(self.ips[i]):22 '"],
                                   timeoutSeconds: 5).status == 0
            }
        }
    }

    /// The `hosts` entry that reaches host `i`'s meshnode through its sshd.
    func sshHostEntry(_ i: Int, port: Int) -> String {
        """
            address: \(ips[i]):\(port)
            ssh:
              host: \(ips[i])
              port: 22
              user: root
              key: \(clientKey)
              options: ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"]
        """
    }

    /// Runs `argv` inside host `i`'s namespace.
    func spawn(in i: Int, _ argv: [String], environment: [String: String] = [:]) throws -> ChildProcess {
        try Subprocess.spawn(["ip", "netns", "exec", hosts[i]] + argv, environment: environment)
    }

    /// Cuts hosts `a` off from hosts `b`: an nftables table of its own in each of their
    /// namespaces drops every packet to and from the other side (SSH included, and the TCP
    /// connections already open through it). `heal()` deletes those tables.
    func partition(_ a: [Int], _ b: [Int]) throws {
        for (side, other) in [(a, b), (b, a)] {
            let addrs = other.map { ips[$0] }.joined(separator: ", ")
            for i in side {
                let rules = dir.sub("\(hosts[i])-partition.nft")
                try """
                    table inet partition {
                        chain output { type filter hook output priority -10; policy accept; ip daddr { \(addrs) } drop; }
                        chain input { type filter hook input priority -10; policy accept; ip saddr { \(addrs) } drop; }
                    }
                    """.write(toFile: rules, atomically: true, encoding: .utf8)
                try sh("ip netns exec \(hosts[i]) nft -f \(rules)")
                partitioned.insert(i)
            }
        }
    }

    /// Removes every partition `partition` made.
    func heal() {
        for i in partitioned { _ = try? Subprocess.run(["ip", "netns", "exec", hosts[i], "nft", "delete", "table", "inet", "partition"], timeoutSeconds: 10) }
        partitioned = []
    }

    private var partitioned = Set<Int>()

    private func sh(_ script: String) throws {
        let r = try Subprocess.shell(script, timeoutSeconds: 30)
        guard r.status == 0 else { throw TestFailure("netns setup failed: \(script)\n\(r)") }
    }

    deinit {
        for s in sshds { s.kill(SIGKILL); _ = s.wait(timeoutSeconds: 5) }
        for ns in hosts { _ = try? Subprocess.run(["ip", "netns", "del", ns], timeoutSeconds: 10) }
        _ = try? Subprocess.run(["ip", "link", "del", bridge], timeoutSeconds: 10)
    }
}
