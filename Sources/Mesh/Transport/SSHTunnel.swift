// `ssh -W host:port` tunnels as byte streams.

/// How to reach a peer through SSH (the `hosts.NAME.ssh` config block).
public struct SSHOptions: Hashable, Sendable {
    /// The SSH server (the peer's host as reachable from here).
    public var host: String
    public var port: UInt16 = 22
    public var user: String?
    /// Private key file (`-i`); with it, only that key is offered (`IdentitiesOnly=yes`).
    public var keyPath: String?
    /// Extra arguments passed to ssh before ours, e.g. `["-o", "ProxyJump=bastion"]`.
    public var extraArguments: [String] = []
    /// `StrictHostKeyChecking` value (`yes`, `accept-new`, `no`); nil leaves ssh's default/config.
    public var strictHostKeyChecking: String?
    /// `UserKnownHostsFile`; nil leaves ssh's default/config.
    public var knownHostsFile: String?
    /// `ConnectTimeout` for the TCP connection to the SSH server.
    public var connectTimeout: Duration = .seconds(10)
    /// `ServerAliveInterval`: ssh's own dead-connection probe (× `serverAliveCountMax`).
    public var serverAliveInterval: Duration = .seconds(5)
    public var serverAliveCountMax = 3
    /// The ssh binary.
    public var executable = "ssh"

    public init(host: String, port: UInt16 = 22, user: String? = nil, keyPath: String? = nil, extraArguments: [String] = []) {
        self.host = host
        self.port = port
        self.user = user
        self.keyPath = keyPath
        self.extraArguments = extraArguments
    }
}

extension MeshError.Code {
    public static let sshAuthFailed = Self("ssh.auth_failed")
    public static let sshHostKeyUnknown = Self("ssh.host_key_unknown")
    public static let sshHostKeyChanged = Self("ssh.host_key_changed")
    public static let sshConnectionRefused = Self("ssh.connection_refused")
    public static let sshTimeout = Self("ssh.timeout")
    public static let sshResolveFailed = Self("ssh.resolve_failed")
    public static let sshForwardFailed = Self("ssh.forward_failed")
    public static let sshConnectionLost = Self("ssh.connection_lost")
    public static let sshKeyUnusable = Self("ssh.key_unusable")
    public static let sshFailed = Self("ssh.failed")
}

/// Opens `ssh -W target` tunnels: the child's stdin/stdout become a `ByteStream` to `target` as
/// seen from the SSH server.
public enum SSHTunnel {
    /// The ssh command line (without the executable) for a tunnel to `target`.
    ///
    /// ssh keeps the first value it sees for an option, so `BatchMode=yes` comes first (never
    /// prompt: there is no terminal), then the caller's extra arguments (which may override the
    /// rest), then our defaults.
    public static func arguments(_ o: SSHOptions, target: Endpoint) -> [String] {
        var a = ["-o", "BatchMode=yes"]
        a += o.extraArguments
        if let k = o.keyPath { a += ["-i", k, "-o", "IdentitiesOnly=yes"] }
        if let s = o.strictHostKeyChecking { a += ["-o", "StrictHostKeyChecking=\(s)"] }
        if let f = o.knownHostsFile { a += ["-o", "UserKnownHostsFile=\(f)"] }
        a += [
            "-o", "ExitOnForwardFailure=yes",
            "-o", "ConnectTimeout=\(max(1, o.connectTimeout.milliseconds / 1000))",
            "-o", "ServerAliveInterval=\(max(1, o.serverAliveInterval.milliseconds / 1000))",
            "-o", "ServerAliveCountMax=\(o.serverAliveCountMax)",
            "-o", "ForwardAgent=no", "-o", "ForwardX11=no", "-o", "ClearAllForwardings=yes",
            // The tunnel carries bulk chunk data: prefer AES-GCM (AES-NI on every current GPU
            // host; measured 6.0-6.5 s -> 5.3 s for 1 GiB here) over OpenSSH's default
            // ChaCha20, which stays as the fallback. A `Ciphers` in the host's own options
            // comes earlier on the command line, and ssh keeps the first value it sees.
            "-o", "Ciphers=aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com",
            "-p", String(o.port),
        ]
        if let u = o.user { a += ["-l", u] }
        a += ["-W", target.description, "--", o.host]
        return a
    }

    /// Starts the tunnel. The stream is usable at once (bytes written before ssh connects are
    /// buffered by the pipe); failures surface as the stream's close reason, mapped by
    /// `mapExit`. Loop thread only.
    public static func open(loop: EventLoop, options: SSHOptions, target: Endpoint) throws(MeshError) -> ProcessStream {
        let desc = "\(target) via ssh \(options.user.map { "\($0)@" } ?? "")\(options.host):\(options.port)"
        let p = try ProcessStream(loop: loop, executable: options.executable, arguments: arguments(options, target: target), description: desc)
        p.mapExit = { mapExit($0, options: options, target: target) }
        return p
    }

    /// Turns ssh's exit status and stderr into one clear error.
    public static func mapExit(_ e: ProcessExit, options o: SSHOptions, target: Endpoint) -> MeshError? {
        let server = "\(o.host):\(o.port)"
        if e.status == 0 && e.signal == 0 {
            return MeshError(.eof, "\(target) closed the connection (via ssh \(server))")
        }
        if e.stoppedByUs && e.signal != 0 { return nil }
        let err = e.stderr
        let last = e.lastStderrLine
        func has(_ s: String) -> Bool { err.range(of: s, options: .caseInsensitive) != nil }
        if has("Permission denied") {
            return MeshError(.sshAuthFailed, "ssh to \(server) as \(o.user ?? "default user"): authentication failed (\(last))",
                             hint: "check hosts.*.ssh.user and key, and that the public key is in the server's authorized_keys")
        }
        if has("REMOTE HOST IDENTIFICATION HAS CHANGED") || has("Host key for") && has("has changed") {
            return MeshError(.sshHostKeyChanged, "ssh to \(server): the server's host key changed",
                             hint: "if the host was reinstalled, remove its old key from known_hosts; otherwise suspect interception")
        }
        if has("Host key verification failed") || has("host key is known") {
            return MeshError(.sshHostKeyUnknown, "ssh to \(server): host key not trusted (\(last))",
                             hint: "add the server's key to known_hosts, or set StrictHostKeyChecking=accept-new in ssh options")
        }
        if has("Could not resolve hostname") || has("Name or service not known") {
            return MeshError(.sshResolveFailed, "ssh: cannot resolve \(o.host)", hint: "check hosts.*.ssh.host")
        }
        if has("Connection refused") && !has("open failed") {
            return MeshError(.sshConnectionRefused, "ssh: \(server) refused the connection", hint: "is sshd running there on port \(o.port)?")
        }
        if has("timed out") {
            return MeshError(.sshTimeout, "ssh: connecting to \(server) timed out", hint: "is the host up and port \(o.port) reachable?")
        }
        if has("open failed") || has("stdio forwarding failed") || has("administratively prohibited") {
            return MeshError(.sshForwardFailed, "ssh to \(server) connected, but the server could not reach \(target) (\(last))",
                             hint: "is meshnode running on the peer and hosts.*.address right as seen from \(o.host)? Does sshd allow TCP forwarding?")
        }
        if has("UNPROTECTED PRIVATE KEY") || has("bad permissions") || has("Load key") || has("invalid format") || has("not accessible") {
            return MeshError(.sshKeyUnusable, "ssh: the key \(o.keyPath ?? "?") cannot be used (\(last))", hint: "the key must exist, be readable and have mode 0600")
        }
        if has("Connection closed") || has("Connection reset") || has("Broken pipe") || has("Timeout, server") {
            return MeshError(.sshConnectionLost, "ssh connection to \(server) was lost (\(last))")
        }
        let how = e.signal != 0 ? "was killed by signal \(e.signal)" : "exited with status \(e.status)"
        return MeshError(.sshFailed, "ssh to \(server) \(how)" + (last.isEmpty ? "" : ": \(last)"))
    }
}
