// The node's configuration: YAML file, MESHNODE_* environment variables and flags, merged.
import Foundation
import Gossip
import Sync
import Logging
import Yams

/// One `hosts.NAME_OR_NODE_ID` entry: how to reach that peer (direct TCP by default) and, so that
/// one file can serve the whole cluster, what that node is (`role`, `ephemeral`, limits). A node
/// applies only its own entry's settings (Config/ClusterFile.swift); the others only route.
public struct HostConfig: Equatable, Sendable {
    public static let knownKeys = ["address", "ssh", "socks5", "role", "roles", "ephemeral", "nfs_group", "max_disk_usage", "bandwidth"]

    /// Where that peer's meshnode listens, as seen from the tunnel's far end (or from here when
    /// direct).
    public var address: Endpoint?
    public var ssh: SSHOptions?
    public var socks5: Socks5Settings?
    /// The named node's own settings, each nil (or empty) when the entry does not give it.
    public var role: String?
    public var roles: [String]?
    public var ephemeral: Bool?
    public var nfsGroup: String?
    public var maxDiskUsagePercent: Int?
    public var bandwidth: BandwidthConfig?
    /// Which `bandwidth` keys the entry gives (`bandwidth.global`, ...).
    public var bandwidthKeys: Set<String> = []

    public init(address: Endpoint? = nil, ssh: SSHOptions? = nil, socks5: Socks5Settings? = nil) {
        self.address = address
        self.ssh = ssh
        self.socks5 = socks5
    }

    /// How connections to this peer are made.
    public enum Route: Equatable, Sendable { case direct, ssh(SSHOptions), socks5(Socks5Settings) }
    public var route: Route {
        if let ssh { return .ssh(ssh) }
        if let socks5 { return .socks5(socks5) }
        return .direct
    }
}

/// The `hosts.*.socks5` block.
public struct Socks5Settings: Equatable, Sendable {
    public var proxy: Endpoint
    public var credentials: Socks5Credentials?
    public init(proxy: Endpoint, credentials: Socks5Credentials? = nil) {
        self.proxy = proxy
        self.credentials = credentials
    }
}

/// The `bandwidth` block. Nil limits mean unlimited.
public struct BandwidthConfig: Equatable, Sendable {
    public var globalBytesPerSecond: Int64?
    public var perPeerBytesPerSecond: Int64?
    public var maxConcurrentTransfers: Int = 8
    public init(globalBytesPerSecond: Int64? = nil, perPeerBytesPerSecond: Int64? = nil, maxConcurrentTransfers: Int = 8) {
        self.globalBytesPerSecond = globalBytesPerSecond
        self.perPeerBytesPerSecond = perPeerBytesPerSecond
        self.maxConcurrentTransfers = maxConcurrentTransfers
    }
}

/// A revoked certificate: its authority and serial.
public struct RevokedSerial: Hashable, Sendable {
    public var authority: NodeID
    public var serial: UInt64
    public init(authority: NodeID, serial: UInt64) {
        self.authority = authority
        self.serial = serial
    }
}

/// Everything `meshnode run` is configured with. See docs/RUNTIME.md "Configuration".
public struct NodeConfig: Equatable, Sendable {
    public static let defaultPort: UInt16 = 7946

    /// Human name of this node (≤ 48 bytes of `A-Z a-z 0-9 . _ -`); nil: the daemon picks the host name.
    public var name: String?
    /// Free-form role shown in `peers` (≤ 32 bytes, same alphabet).
    public var role: String = "node"
    /// `roles: [a, b]` (or `role: a`, as one): what this node is for, stated in its node facts
    /// (PROTOCOL §4.7) for placement. Empty: `[role]`.
    public var roles: [String] = []
    /// `ephemeral: true`: a spot or preemptible node (its disk may vanish with it).
    public var ephemeral = false
    /// `ephemeral_hosts: [names or globs]` (cluster-wide, as the seeds' config has it): the
    /// nodes so named are ephemeral too (`isEphemeral(name:)`).
    public var ephemeralHosts: [String] = []
    /// `shutdown_deadline`: how long a stopping node (SIGTERM) waits for its items at risk to
    /// become safe (docs/SYNC.md, "Spot nodes"). AWS gives 2 minutes of notice, GCP 30 s.
    public var shutdownDeadline: Duration = .seconds(25)
    /// `push_copies`: custodians asked at once to take a copy of each item this node originates
    /// (HYBRID push-to-2; 0 turns it off).
    public var pushCopies = 2
    /// `nfs_group: NAME`: nodes with one group share storage. nil: from `nfs_groups`.
    public var nfsGroup: String?
    /// `exclude_from_sync: [names or globs]` (cluster-wide): those nodes receive nothing.
    public var excludeFromSync: [String] = []
    /// `nfs_groups: [[a, b, c], ...]` (cluster-wide): node names sharing storage.
    public var nfsGroups: [[String]] = []

    /// `placement:` (cluster-wide; Config/PlacementConfig.swift): which nodes should hold each
    /// type (docs/SYNC.md, "Placement"). nil: not configured, so every node keeps every item.
    public var placement: PlacementPolicy?
    /// `placement.TYPE.priority` (issue 13): the priority of the fetches placement makes for
    /// each type; a type not named fetches at NORMAL.
    public var transferPriorities: [ItemType: TransferPriority] = [:]
    /// `providers:` (Config/ProviderConfig.swift): per-peer limits for groups of peers by name.
    public var providers: [ProviderGroup] = []
    /// `max_disk_usage: N%` (1-100): over it, this node accepts no new replicas. nil: no cap.
    public var maxDiskUsagePercent: Int?

    /// The roles this node states: `roles`, or `[role]`.
    public var effectiveRoles: [String] { roles.isEmpty ? [role] : roles }

    /// Whether the node named `name` is excluded by `exclude_from_sync` (a name or a glob: `*`, `?`, `[...]`).
    /// Whether the node named `name` is ephemeral by `ephemeral_hosts` (or, for this node, `ephemeral`).
    public func isEphemeral(name: String) -> Bool { ephemeral || Self.names(ephemeralHosts, include: name) }

    public func isExcluded(name: String) -> Bool { Self.names(excludeFromSync, include: name) }

    /// Whether a list of node names or globs names `name`.
    static func names(_ patterns: [String], include name: String) -> Bool {
        patterns.contains { p in p == name || (Glob(p)?.matches(name, pathname: false) ?? false) }
    }

    /// The NFS group of the node named `name`: `nfs_group`, else the group of `nfs_groups` that
    /// lists it, named by its smallest member name (the same on every node with the same list); "" for none.
    public func nfsGroup(name: String) -> String {
        if let g = nfsGroup { return g }
        return nfsGroups.first { $0.contains(name) }.flatMap { $0.min() } ?? ""
    }
    /// UDP and TCP listen address (the same port number for both).
    public var listen = Endpoint(host: "0.0.0.0", port: NodeConfig.defaultPort)
    /// Seeds to join.
    public var join: [Endpoint] = []
    public var trustedKeys: [NodeID] = []
    public var authorityKeys: [NodeID] = []
    public var revokedKeys: [NodeID] = []
    public var revokedSerials: [RevokedSerial] = []
    /// This node's admission certificate file (from `meshnode admit`), if it joins by authority.
    public var certificate: String?
    public var antiEntropyInterval: Duration = .seconds(30)
    /// PROTOCOL §6.2's probe period (`GossipConfig.probeIntervalMs`).
    public var probeInterval: Duration = .milliseconds(800)
    /// Per-peer connection settings, keyed by peer name or node id.
    public var hosts: [String: HostConfig] = [:]
    public var bandwidth = BandwidthConfig()
    /// `breaker`: per-peer circuit breakers for transfers (threshold 5, recovery 60 s, 3 trials).
    public var breaker = CircuitBreaker.Config()
    public var logLevel: Logger.Level = .info
    /// Whether sessions inside SSH tunnels are encrypted a second time.
    public var sessionEncryption: SessionEncryption = .auto
    /// `keep_versions` (per type, default 3) and `retention` (per type, default: forever).
    public var keep = KeepPolicy()
    /// `compact_after` (default 7d; `0s` turns it off): when this node compacts its own deleted
    /// and expired entries, and tombstones that no longer delete anything (PROTOCOL §4.5).
    public var compactAfter: Duration = .seconds(7 * 86_400)
    /// Watched folders (`folders`; Config/FolderConfig.swift).
    public var folders: [FolderConfig] = []
    /// The top-level keys the file gave (`role`, `bandwidth.global`, ...) and the flags or
    /// environment variables that set one: these win over this node's own `hosts` entry.
    public var givenKeys: Set<String> = []
    /// This node's own `hosts` entry's address, once `forNode` found it: advertised to peers
    /// unless `--advertise` says otherwise.
    public var ownAddress: Endpoint?
    /// The `hosts` key of this node's own entry, once `forNode` found it.
    public var ownHostKey: String?
    /// `metrics_listen`: where `/metrics` and `/health` are served. nil: not configured, so
    /// `defaultMetricsListen`, and a port already taken there is only a warning.
    public var metricsListen: MetricsListen?
    public static let defaultMetricsListen = Endpoint(host: "127.0.0.1", port: 9946)
    /// `log_format`: `text` (default) or `json` (one object per line).
    public var logFormat: LogFormat = .text

    /// `metrics_listen: HOST:PORT` (an IP literal) or `off`.
    public enum MetricsListen: Equatable, Sendable { case off, at(Endpoint) }

    /// `session_encryption`: `auto` skips the session cipher where an `ssh -W` tunnel already
    /// protects every hop but the peer host's own loopback (PROTOCOL §8.3, suite 0x04);
    /// `always` encrypts every session regardless.
    public enum SessionEncryption: String, Sendable { case auto, always }

    public init() {}

    /// The settings for a peer: by node id first, then by name.
    public func host(named name: String?, id: NodeID?) -> HostConfig? {
        if let id, let h = hosts[id.description] { return h }
        if let name, let h = hosts[name] { return h }
        return nil
    }
}

extension MeshError.Code {
    /// A config file, environment variable or flag is invalid.
    public static let configInvalid = Self("config.invalid")
}

// MARK: - Overrides from flags and the environment

/// Values from flags or `MESHNODE_*` environment variables; nil means "not given".
/// A given list replaces the file's list (it is not appended).
public struct ConfigOverrides: Equatable, Sendable {
    public var configPath: String?
    public var dataDirectory: String?
    public var name: String?
    public var role: String?
    public var listen: Endpoint?
    public var join: [Endpoint]?
    public var logLevel: Logger.Level?
    public var antiEntropyInterval: Duration?
    public var probeInterval: Duration?
    public var metricsListen: NodeConfig.MetricsListen?
    public var logFormat: LogFormat?

    public init(configPath: String? = nil, dataDirectory: String? = nil, name: String? = nil, role: String? = nil,
                listen: Endpoint? = nil, join: [Endpoint]? = nil, logLevel: Logger.Level? = nil,
                antiEntropyInterval: Duration? = nil, probeInterval: Duration? = nil) {
        self.configPath = configPath
        self.dataDirectory = dataDirectory
        self.name = name
        self.role = role
        self.listen = listen
        self.join = join
        self.logLevel = logLevel
        self.antiEntropyInterval = antiEntropyInterval
        self.probeInterval = probeInterval
    }

    /// The documented environment variables, name → meaning.
    public static let environmentVariables: [(name: String, meaning: String)] = [
        ("MESHNODE_CONFIG", "config file path (like --config)"),
        ("MESHNODE_DATA", "data directory (like --data)"),
        ("MESHNODE_NAME", "node name (config key name)"),
        ("MESHNODE_ROLE", "node role (config key role)"),
        ("MESHNODE_LISTEN", "HOST:PORT to listen on (config key listen)"),
        ("MESHNODE_JOIN", "comma-separated HOST:PORT seeds, replacing the file's join list"),
        ("MESHNODE_LOG_LEVEL", "trace|debug|info|notice|warning|error|critical"),
        ("MESHNODE_ANTI_ENTROPY_INTERVAL", "duration, e.g. 30s"),
        ("MESHNODE_PROBE_INTERVAL", "duration, e.g. 1s"),
        ("MESHNODE_METRICS_LISTEN", "HOST:PORT for /metrics and /health, or off (config key metrics_listen)"),
        ("MESHNODE_LOG_FORMAT", "text|json (config key log_format)"),
        ("MESHNODE_NO_PROGRESS", "any value: never draw progress bars (put, get)"),
        ("MESHNODE_TEST_CORRUPT_SERVING", "testing only: 1 makes the node serve every chunk with one byte flipped"),
        ("MESHNODE_WORKERS", "worker threads for put/get/verify"),
        ("MESHNODE_NO_TMPFILE", "testing: named temp files instead of O_TMPFILE"),
        ("MESHNODE_GC_BATCH_FILES", "testing: chunk files a gc deletes per transaction (1...1000, default 1000)"),
        ("MESHNODE_BIN", "tests: the meshnode binary under test"),
        ("MESHNODE_CRASH_SEED", "tests: seed of the kill -9 delays"),
    ]

    /// Reads `MESHNODE_*` variables from `environment` (pass `ProcessInfo.processInfo.environment`).
    /// Pure. An unknown `MESHNODE_*` variable or an unparsable value is an error naming it.
    public static func fromEnvironment(_ environment: [String: String]) throws(MeshError) -> ConfigOverrides {
        var o = ConfigOverrides()
        let known = Set(environmentVariables.map(\.name))
        for key in environment.keys.sorted() where key.hasPrefix("MESHNODE_") {
            guard known.contains(key) else {
                throw MeshError(.configInvalid, "\(key): unknown environment variable",
                                hint: "known: \(environmentVariables.map(\.name).joined(separator: ", "))")
            }
        }
        func value(_ k: String) -> String? { environment[k] }
        o.configPath = value("MESHNODE_CONFIG")
        o.dataDirectory = value("MESHNODE_DATA")
        if let v = value("MESHNODE_NAME") { o.name = try Validate.name(v, path: "MESHNODE_NAME") }
        if let v = value("MESHNODE_ROLE") { o.role = try Validate.role(v, path: "MESHNODE_ROLE") }
        if let v = value("MESHNODE_LISTEN") { o.listen = try Validate.endpoint(v, path: "MESHNODE_LISTEN") }
        if let v = value("MESHNODE_JOIN") {
            o.join = try v.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
                .map { (s) throws(MeshError) in try Validate.endpoint(s, path: "MESHNODE_JOIN") }
        }
        if let v = value("MESHNODE_LOG_LEVEL") { o.logLevel = try Validate.logLevel(v, path: "MESHNODE_LOG_LEVEL") }
        if let v = value("MESHNODE_ANTI_ENTROPY_INTERVAL") { o.antiEntropyInterval = try Validate.interval(v, path: "MESHNODE_ANTI_ENTROPY_INTERVAL") }
        if let v = value("MESHNODE_PROBE_INTERVAL") { o.probeInterval = try Validate.interval(v, path: "MESHNODE_PROBE_INTERVAL") }
        if let v = value("MESHNODE_METRICS_LISTEN") { o.metricsListen = try Validate.metricsListen(v, path: "MESHNODE_METRICS_LISTEN") }
        if let v = value("MESHNODE_LOG_FORMAT") { o.logFormat = try Validate.logFormat(v, path: "MESHNODE_LOG_FORMAT") }
        return o
    }

    /// Applies these overrides on top of `config`.
    public func apply(to config: NodeConfig) -> NodeConfig {
        var c = config
        if let name { c.name = name }
        if let role { c.role = role; c.roles = []; c.givenKeys.formUnion(["role", "roles"]) }
        if let listen { c.listen = listen; c.givenKeys.insert("listen") }
        if let join { c.join = join; c.givenKeys.insert("join") }
        if let logLevel { c.logLevel = logLevel }
        if let antiEntropyInterval { c.antiEntropyInterval = antiEntropyInterval }
        if let probeInterval { c.probeInterval = probeInterval }
        if let metricsListen { c.metricsListen = metricsListen }
        if let logFormat { c.logFormat = logFormat }
        return c
    }

    /// `self` with any value `higher` sets replacing ours.
    public func overridden(by higher: ConfigOverrides) -> ConfigOverrides {
        var o = self
        if let v = higher.configPath { o.configPath = v }
        if let v = higher.dataDirectory { o.dataDirectory = v }
        if let v = higher.name { o.name = v }
        if let v = higher.role { o.role = v }
        if let v = higher.listen { o.listen = v }
        if let v = higher.join { o.join = v }
        if let v = higher.logLevel { o.logLevel = v }
        if let v = higher.antiEntropyInterval { o.antiEntropyInterval = v }
        if let v = higher.probeInterval { o.probeInterval = v }
        if let v = higher.metricsListen { o.metricsListen = v }
        if let v = higher.logFormat { o.logFormat = v }
        return o
    }
}

extension NodeConfig {
    /// The effective configuration: flags > environment > file > defaults. Pure: the caller
    /// reads the file (`NodeConfig.parse`) and the environment.
    public static func resolve(file: NodeConfig?, environment: ConfigOverrides, flags: ConfigOverrides) -> NodeConfig {
        environment.overridden(by: flags).apply(to: file ?? NodeConfig())
    }

    /// The config file path to use: `--config` flag, else `MESHNODE_CONFIG`, else nil.
    public static func configPath(environment: ConfigOverrides, flags: ConfigOverrides) -> String? {
        flags.configPath ?? environment.configPath
    }

    /// Reads and parses a config file.
    public static func load(path: String) throws(MeshError) -> NodeConfig {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw MeshError(.configInvalid, "cannot read config file \(path): \((error as NSError).localizedDescription)",
                            hint: "check the --config path")
        }
        return try parse(yaml: text, source: path).resolvingRelativePaths(against: (path as NSString).deletingLastPathComponent)
    }

    /// Makes relative file paths in the config (`certificate`, `hosts.*.ssh.key`) relative to
    /// `directory` (the config file's), so a config works from any working directory. Absolute
    /// paths and `~` paths are kept as written.
    public func resolvingRelativePaths(against directory: String) -> NodeConfig {
        func fix(_ p: String?) -> String? {
            guard let p, !p.isEmpty, !p.hasPrefix("/"), !p.hasPrefix("~") else { return p }
            let base = directory.isEmpty ? "." : directory
            return base + "/" + p
        }
        var c = self
        c.certificate = fix(c.certificate)
        for (k, var h) in c.hosts {
            if var ssh = h.ssh {
                ssh.keyPath = fix(ssh.keyPath)
                h.ssh = ssh
            }
            c.hosts[k] = h
        }
        return c
    }
}

// MARK: - Validation of single values

enum Validate {
    static func fail(_ path: String, _ expected: String, got: String) -> MeshError {
        MeshError(.configInvalid, "\(path): expected \(expected), got \"\(got)\"")
    }

    static let nameAlphabet = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")

    static func name(_ s: String, path: String) throws(MeshError) -> String {
        guard !s.isEmpty, s.utf8.count <= 48, s.allSatisfy({ nameAlphabet.contains($0) }) else {
            throw fail(path, "a name of 1-48 characters from A-Z a-z 0-9 . _ -", got: s)
        }
        return s
    }

    static func role(_ s: String, path: String) throws(MeshError) -> String {
        // PROTOCOL §4.7 and §6: a role is at most 32 bytes in node facts and member records.
        guard !s.isEmpty, s.utf8.count <= 32, s.allSatisfy({ nameAlphabet.contains($0) }) else {
            throw fail(path, "a role of 1-32 characters from A-Z a-z 0-9 . _ -", got: s)
        }
        return s
    }

    static func endpoint(_ s: String, path: String, allowPortZero: Bool = true) throws(MeshError) -> Endpoint {
        guard let e = Endpoint(s), allowPortZero || e.port != 0 else {
            throw fail(path, "HOST:PORT (e.g. 10.0.0.5:7946 or [::1]:7946)", got: s)
        }
        return e
    }

    static func nodeID(_ s: String, path: String) throws(MeshError) -> NodeID {
        guard let id = NodeID(s) else { throw fail(path, "a 52-character node id", got: s) }
        return id
    }

    static func interval(_ s: String, path: String) throws(MeshError) -> Duration {
        guard let d = DurationText.parse(s), d > .zero else {
            throw fail(path, "a positive duration like 500ms, 30s, 2m or 1h", got: s)
        }
        return d
    }

    static func rate(_ s: String, path: String) throws(MeshError) -> Int64? {
        if s == "unlimited" { return nil }
        guard let r = ByteRateText.parse(s) else {
            throw fail(path, "a rate like 50MB/s, 800KiB/s or unlimited", got: s)
        }
        return r
    }

    static func logLevel(_ s: String, path: String) throws(MeshError) -> Logger.Level {
        guard let l = Logger.Level(rawValue: s.lowercased()) else {
            throw fail(path, "one of trace, debug, info, notice, warning, error, critical", got: s)
        }
        return l
    }

    /// `off`, or HOST:PORT with an IP literal host (it is bound, never resolved).
    static func metricsListen(_ s: String, path: String) throws(MeshError) -> NodeConfig.MetricsListen {
        if s == "off" { return .off }
        guard let e = Endpoint(s), SocketAddress(ip: e.host, port: e.port) != nil else {
            throw fail(path, "HOST:PORT with an IP address (e.g. 127.0.0.1:9946 or [::1]:9946), or off", got: s)
        }
        return .at(e)
    }

    static func logFormat(_ s: String, path: String) throws(MeshError) -> LogFormat {
        guard let f = LogFormat(rawValue: s) else { throw fail(path, "text or json", got: s) }
        return f
    }

    static func port(_ s: String, path: String) throws(MeshError) -> UInt16 {
        guard let p = Int(s), (1...65535).contains(p), s.allSatisfy({ $0.isASCII && $0.isNumber }) else {
            throw fail(path, "an integer 1-65535", got: s)
        }
        return UInt16(p)
    }
}

/// Parsers for flag values, with the same rules and messages as the config file, naming the
/// flag: `try ConfigValue.endpoint(text, name: "--listen")` →
/// `--listen: expected HOST:PORT (e.g. 10.0.0.5:7946 or [::1]:7946), got "x"`.
public enum ConfigValue {
    public static func endpoint(_ text: String, name: String, allowPortZero: Bool = true) throws(MeshError) -> Endpoint {
        try Validate.endpoint(text, path: name, allowPortZero: allowPortZero)
    }
    public static func interval(_ text: String, name: String) throws(MeshError) -> Duration {
        try Validate.interval(text, path: name)
    }
    public static func logLevel(_ text: String, name: String) throws(MeshError) -> Logger.Level {
        try Validate.logLevel(text, path: name)
    }
    public static func nodeName(_ text: String, name: String) throws(MeshError) -> String {
        try Validate.name(text, path: name)
    }
    public static func role(_ text: String, name: String) throws(MeshError) -> String {
        try Validate.role(text, path: name)
    }
    public static func rate(_ text: String, name: String) throws(MeshError) -> Int64? {
        try Validate.rate(text, path: name)
    }
    public static func metricsListen(_ text: String, name: String) throws(MeshError) -> NodeConfig.MetricsListen {
        try Validate.metricsListen(text, path: name)
    }
    public static func logFormat(_ text: String, name: String) throws(MeshError) -> LogFormat {
        try Validate.logFormat(text, path: name)
    }
}
