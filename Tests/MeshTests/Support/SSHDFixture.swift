import Foundation
@testable import Mesh

/// A throwaway OpenSSH server on 127.0.0.1, for tests: its own `-f` config, host key, client key
/// and authorized_keys in a temporary directory; started in the foreground (`-D -e`) and stopped
/// by PID. The system's sshd is not touched.
///
/// Reusable: `SSHDFixture()` then `sshOptions()` for a client that trusts this server's host key
/// and authenticates with the throwaway client key; `stop()` when done.
final class SSHDFixture: @unchecked Sendable {
    let dir: TempDir
    let port: UInt16
    let child: ChildFixture
    let hostKeyPath: String
    let clientKeyPath: String
    let knownHostsPath: String
    let configPath: String
    let user: String

    /// - Parameters:
    ///   - listenAddress: the loopback address to listen on (tests may use a netns address).
    ///   - extraConfig: more sshd_config lines (e.g. `AllowTcpForwarding no`).
    ///   - port: a fixed port (e.g. 22 inside a network namespace); nil picks a free loopback port.
    ///   - commandPrefix: runs sshd under this prefix, e.g. `["/usr/sbin/ip", "netns", "exec", "h1"]`.
    ///   - isReady: readiness probe for the port; defaults to a TCP connect to 127.0.0.1:port
    ///     (pass your own when sshd runs in another namespace).
    init(listenAddress: String = "127.0.0.1", extraConfig: [String] = [], port fixedPort: UInt16? = nil,
         commandPrefix: [String] = [], isReady: ((UInt16) -> Bool)? = nil) throws {
        dir = TempDir()
        hostKeyPath = dir.file("host_ed25519")
        clientKeyPath = dir.file("client_ed25519")
        knownHostsPath = dir.file("known_hosts")
        configPath = dir.file("sshd_config")
        user = String(cString: getpwuid(getuid())!.pointee.pw_name)
        // sshd's privilege separation directory.
        if access("/run/sshd", F_OK) != 0 { mkdir("/run/sshd", 0o755) }
        try Self.run(["/usr/bin/ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "meshtest-host", "-f", hostKeyPath])
        try Self.run(["/usr/bin/ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "meshtest-client", "-f", clientKeyPath])
        try FileManager.default.copyItem(atPath: clientKeyPath + ".pub", toPath: dir.file("authorized_keys"))
        let hostPub = try String(contentsOfFile: hostKeyPath + ".pub", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)

        var lastLog = ""
        for _ in 0..<5 {
            let port = fixedPort ?? freeLoopbackPort()
            let config = [
                "Port \(port)",
                "ListenAddress \(listenAddress)",
                "HostKey \(hostKeyPath)",
                "AuthorizedKeysFile \(dir.file("authorized_keys"))",
                "PidFile \(dir.file("sshd.pid"))",
                "StrictModes no",
                "UsePAM no",
                "PermitRootLogin prohibit-password",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "AllowTcpForwarding yes",
                "X11Forwarding no",
                "PrintMotd no",
                "Subsystem sftp internal-sftp",  // scp (SFTP mode) and sftp work against the fixture
                "LogLevel VERBOSE",
            ] + extraConfig
            try (config.joined(separator: "\n") + "\n").write(toFile: configPath, atomically: true, encoding: .utf8)
            let known = port == 22 ? listenAddress : "[\(listenAddress)]:\(port)"  // ssh omits the port for 22
            try "\(known) \(hostPub)\n".write(toFile: knownHostsPath, atomically: true, encoding: .utf8)
            let c = try ChildFixture(commandPrefix + ["/usr/sbin/sshd", "-f", configPath, "-D", "-e", "-p", String(port)], logPath: dir.file("sshd.log"))
            let ready = isReady.map { probe in eventually(5) { probe(port) } } ?? waitForTCPPort(port, timeout: 5)
            if ready && c.isRunning {
                self.port = port
                self.child = c
                return
            }
            lastLog = c.log
            c.stop()
        }
        dir.cleanup()
        throw FixtureError("sshd did not start: \(lastLog)")
    }

    /// Client options that reach this server and verify its host key.
    func sshOptions() -> SSHOptions {
        var o = SSHOptions(host: "127.0.0.1", port: port, user: user, keyPath: clientKeyPath, extraArguments: ["-F", "/dev/null"])
        o.strictHostKeyChecking = "yes"
        o.knownHostsFile = knownHostsPath
        o.connectTimeout = .seconds(5)
        return o
    }

    var log: String { child.log }

    func stop() {
        child.stop()
        dir.cleanup()
    }

    deinit { child.stop() }

    /// Runs a command to completion; throws on non-zero exit.
    static func run(_ argv: [String]) throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let c = try ChildFixture(argv, logPath: dir.file("out"))
        var status: Int32 = 0
        waitpid(c.pid, &status, 0)
        c.markReaped()
        guard status == 0 else { throw FixtureError("\(argv.joined(separator: " ")) failed: \(c.log)") }
    }
}
