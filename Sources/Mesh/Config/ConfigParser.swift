// Strict YAML → NodeConfig: every key known, every value checked, errors name the key path.
import Gossip
import Sync
import Yams

extension NodeConfig {
    /// The top-level keys the file may contain.
    public static let knownKeys = [
        "name", "role", "listen", "join", "trusted_keys", "authority_keys", "revoked_keys", "revoked_serials",
        "certificate", "anti_entropy_interval", "probe_interval", "hosts", "bandwidth", "log_level",
        "session_encryption", "keep_versions", "retention", "folders", "metrics_listen", "log_format",
        "compact_after", "roles", "ephemeral", "nfs_group", "exclude_from_sync", "nfs_groups", "placement",
        "max_disk_usage", "breaker", "providers", "ephemeral_hosts", "shutdown_deadline", "push_copies",
    ]

    /// Parses a config document. `source` names it in errors. An unknown key, a duplicate key or
    /// an unparsable value is an error naming the key path, e.g.
    /// `hosts.gpu-3.ssh.port: expected an integer 1-65535, got "abc"`.
    public static func parse(yaml: String, source: String = "config") throws(MeshError) -> NodeConfig {
        let root: Node?
        do { root = try Yams.compose(yaml: yaml) } catch {
            throw MeshError(.configInvalid, "\(source) is not valid YAML: \(String(describing: error).split(separator: "\n").first ?? "")")
        }
        var c = NodeConfig()
        guard let root else { return c }  // an empty file: all defaults
        let w = Walker(source: source)
        if w.isNull(root) { return c }
        for (key, value) in try w.mapping(root, path: "") {
            let path = key
            switch key {
            case "name": c.name = try Validate.name(w.string(value, path), path: path)
            case "role": c.role = try w.located(value) { () throws(MeshError) in try Validate.role(w.string(value, path), path: path) }
            case "roles":
                let roles = try parseRoles(value, path: path, w)
                c.roles = roles
                if let first = roles.first { c.role = first }
            case "ephemeral": c.ephemeral = try parseBool(value, path: path, w)
            case "nfs_group": c.nfsGroup = try parseNFSGroup(value, path: path, w)
            case "exclude_from_sync": c.excludeFromSync = try parseNameGlobs(value, path: path, w)
            case "ephemeral_hosts": c.ephemeralHosts = try parseNameGlobs(value, path: path, w)
            case "shutdown_deadline":
                c.shutdownDeadline = try w.located(value) { () throws(MeshError) in try Validate.interval(w.string(value, path), path: path) }
            case "push_copies":
                let text = try w.string(value, path)
                guard let n = Int(text), (0...8).contains(n) else { throw w.at(value, Validate.fail(path, "a number of copies from 0 to 8", got: text)) }
                c.pushCopies = n
            case "nfs_groups":
                c.nfsGroups = try w.list(value, path).enumerated().map { (i, g) throws(MeshError) in
                    try w.list(g, "\(path)[\(i)]").enumerated().map { (j, n) throws(MeshError) in
                        try w.located(n) { () throws(MeshError) in try Validate.name(w.string(n, "\(path)[\(i)][\(j)]"), path: "\(path)[\(i)][\(j)]") }
                    }
                }
            case "placement": (c.placement, c.transferPriorities) = try parsePlacement(value, w)
            case "providers": c.providers = try parseProviders(value, w)
            case "max_disk_usage": c.maxDiskUsagePercent = try parseMaxDiskUsage(value, w, path: path)
            case "listen": c.listen = try w.located(value) { () throws(MeshError) in try Validate.endpoint(w.string(value, path), path: path) }
            case "join":
                c.join = try w.list(value, path).enumerated().map { (i, n) throws(MeshError) in
                    try w.located(n) { () throws(MeshError) in try Validate.endpoint(w.string(n, "\(path)[\(i)]"), path: "\(path)[\(i)]", allowPortZero: false) }
                }
            case "trusted_keys", "authority_keys", "revoked_keys":
                let ids = try w.list(value, path).enumerated().map { (i, n) throws(MeshError) in
                    try w.located(n) { () throws(MeshError) in try Validate.nodeID(w.string(n, "\(path)[\(i)]"), path: "\(path)[\(i)]") }
                }
                if key == "trusted_keys" { c.trustedKeys = ids } else if key == "authority_keys" { c.authorityKeys = ids } else { c.revokedKeys = ids }
            case "revoked_serials":
                c.revokedSerials = try w.list(value, path).enumerated().map { (i, n) throws(MeshError) in
                    let p = "\(path)[\(i)]"
                    var authority: NodeID?
                    var serial: UInt64?
                    for (k, v) in try w.mapping(n, path: p) {
                        switch k {
                        case "authority": authority = try w.located(v) { () throws(MeshError) in try Validate.nodeID(w.string(v, "\(p).authority"), path: "\(p).authority") }
                        case "serial":
                            let s = try w.string(v, "\(p).serial")
                            guard let u = UInt64(s) else { throw w.at(v, Validate.fail("\(p).serial", "an unsigned integer", got: s)) }
                            serial = u
                        default: throw w.unknownKey(v, "\(p).\(k)", known: ["authority", "serial"])
                        }
                    }
                    guard let authority, let serial else { throw w.at(n, MeshError(.configInvalid, "\(p): needs both authority and serial")) }
                    return RevokedSerial(authority: authority, serial: serial)
                }
            case "certificate": c.certificate = try w.string(value, path)
            case "anti_entropy_interval":
                c.antiEntropyInterval = try w.located(value) { () throws(MeshError) in try Validate.interval(w.string(value, path), path: path) }
            case "probe_interval":
                c.probeInterval = try w.located(value) { () throws(MeshError) in try Validate.interval(w.string(value, path), path: path) }
            case "log_level":
                c.logLevel = try w.located(value) { () throws(MeshError) in try Validate.logLevel(w.string(value, path), path: path) }
            case "bandwidth":
                let (b, given) = try parseBandwidth(value, path: path, w)
                c.bandwidth = b
                c.givenKeys.formUnion(given)
            case "breaker": c.breaker = try parseBreaker(value, w)
            case "metrics_listen":
                c.metricsListen = try w.located(value) { () throws(MeshError) in try Validate.metricsListen(w.string(value, path), path: path) }
            case "log_format":
                c.logFormat = try w.located(value) { () throws(MeshError) in try Validate.logFormat(w.string(value, path), path: path) }
            case "session_encryption":
                let v = try w.string(value, path)
                guard let e = NodeConfig.SessionEncryption(rawValue: v) else {
                    throw w.at(value, Validate.fail(path, "auto or always", got: v))
                }
                c.sessionEncryption = e
            case "keep_versions":
                for (t, v) in try w.mapping(value, path: path) {
                    let type = try itemType(t, path: "\(path).\(t)", node: v, w)
                    let text = try w.string(v, "\(path).\(t)")
                    guard let n = Int(text), (1...1000).contains(n) else {
                        throw w.at(v, Validate.fail("\(path).\(t)", "a number of versions from 1 to 1000", got: text))
                    }
                    c.keep.keepVersions[type] = n
                }
            case "retention":
                for (t, v) in try w.mapping(value, path: path) {
                    let type = try itemType(t, path: "\(path).\(t)", node: v, w)
                    let d = try w.located(v) { () throws(MeshError) in try Validate.interval(w.string(v, "\(path).\(t)"), path: "\(path).\(t)") }
                    c.keep.retentionMs[type] = Int64(d.milliseconds)
                }
            case "compact_after":
                let text = try w.string(value, path)
                c.compactAfter = text == "0" || text == "0s" ? .zero
                    : try w.located(value) { () throws(MeshError) in try Validate.interval(text, path: path) }
            case "folders": c.folders = try parseFolders(value, w)
            case "hosts":
                for (hostKey, hostNode) in try w.mapping(value, path: "hosts", allowNull: true) {
                    c.hosts[hostKey] = try parseHost(hostNode, path: "hosts.\(hostKey)", w)
                }
            default:
                throw w.unknownKey(value, path, known: knownKeys)
            }
            c.givenKeys.insert(key)
        }
        return c
    }

    /// A list of node names or globs (`exclude_from_sync`, `ephemeral_hosts`).
    static func parseNameGlobs(_ value: Node, path: String, _ w: Walker) throws(MeshError) -> [String] {
        try w.list(value, path).enumerated().map { (i, n) throws(MeshError) in
            let p = "\(path)[\(i)]"
            let v = try w.string(n, p)
            if let problem = Glob.problem(in: v) { throw w.at(n, Validate.fail(p, "a node name or glob (\(problem))", got: v)) }
            return v
        }
    }

    /// `roles: [a, b]`: 1-16 distinct roles, in order.
    static func parseRoles(_ value: Node, path: String, _ w: Walker) throws(MeshError) -> [String] {
        var roles = [String]()
        for (i, n) in try w.list(value, path).enumerated() {
            let r = try w.located(n) { () throws(MeshError) in try Validate.role(w.string(n, "\(path)[\(i)]"), path: "\(path)[\(i)]") }
            if !roles.contains(r) { roles.append(r) }
        }
        guard roles.count <= 16 else { throw w.at(value, MeshError(.configInvalid, "\(path): at most 16 roles")) }
        return roles
    }

    static func parseBool(_ value: Node, path: String, _ w: Walker) throws(MeshError) -> Bool {
        let v = try w.string(value, path)
        guard let b = ["true": true, "false": false, "yes": true, "no": false][v.lowercased()] else {
            throw w.at(value, Validate.fail(path, "true or false", got: v))
        }
        return b
    }

    static func parseNFSGroup(_ value: Node, path: String, _ w: Walker) throws(MeshError) -> String {
        let v = try w.string(value, path)
        guard !v.isEmpty, v.utf8.count <= 64 else { throw w.at(value, Validate.fail(path, "a group name of 1-64 bytes", got: v)) }
        return v
    }

    /// An item type named as a mapping key (`keep_versions.model`, `retention.game`).
    static func itemType(_ key: String, path: String, node: Node, _ w: Walker) throws(MeshError) -> ItemType {
        guard let t = ItemType(name: key) else {
            throw w.at(node, Validate.fail(path, "a type: " + ItemType.allCases.map(\.description).joined(separator: ", "), got: key))
        }
        return t
    }

    /// A `bandwidth` block (top level or `hosts.NAME.bandwidth`), and the keys it gives
    /// (`bandwidth.global`, ...: which of them override a hosts entry's).
    static func parseBandwidth(_ node: Node, path: String, _ w: Walker) throws(MeshError) -> (BandwidthConfig, Set<String>) {
        var b = BandwidthConfig()
        var given = Set<String>()
        for (k, v) in try w.mapping(node, path: path, allowNull: true) {
            let p = "\(path).\(k)"
            given.insert("bandwidth.\(k)")
            switch k {
            case "global": b.globalBytesPerSecond = try w.located(v) { () throws(MeshError) in try Validate.rate(w.string(v, p), path: p) }
            case "per_peer": b.perPeerBytesPerSecond = try w.located(v) { () throws(MeshError) in try Validate.rate(w.string(v, p), path: p) }
            case "max_concurrent_transfers":
                let s = try w.string(v, p)
                guard let n = Int(s), (1...1024).contains(n) else { throw w.at(v, Validate.fail(p, "an integer 1-1024", got: s)) }
                b.maxConcurrentTransfers = n
            default: throw w.unknownKey(v, p, known: ["global", "per_peer", "max_concurrent_transfers"])
            }
        }
        return (b, given)
    }

    private static func parseHost(_ node: Node, path: String, _ w: Walker) throws(MeshError) -> HostConfig {
        var h = HostConfig()
        for (k, v) in try w.mapping(node, path: path) {
            let p = "\(path).\(k)"
            switch k {
            case "address": h.address = try w.located(v) { () throws(MeshError) in try Validate.endpoint(w.string(v, p), path: p, allowPortZero: false) }
            case "ssh": h.ssh = try parseSSH(v, path: p, w)
            case "socks5": h.socks5 = try parseSocks5(v, path: p, w)
            // What the named node is (Config/ClusterFile.swift): applied by that node itself.
            case "role": h.role = try w.located(v) { () throws(MeshError) in try Validate.role(w.string(v, p), path: p) }
            case "roles": h.roles = try parseRoles(v, path: p, w)
            case "ephemeral": h.ephemeral = try parseBool(v, path: p, w)
            case "nfs_group": h.nfsGroup = try parseNFSGroup(v, path: p, w)
            case "max_disk_usage": h.maxDiskUsagePercent = try parseMaxDiskUsage(v, w, path: p)
            case "bandwidth":
                let (b, given) = try parseBandwidth(v, path: p, w)
                h.bandwidth = b
                h.bandwidthKeys = given
            default: throw w.unknownKey(v, p, known: HostConfig.knownKeys)
            }
        }
        if h.ssh != nil && h.socks5 != nil {
            throw w.at(node, MeshError(.configInvalid, "\(path): has both ssh and socks5", hint: "choose one way to reach this peer"))
        }
        return h
    }

    private static func parseSSH(_ node: Node, path: String, _ w: Walker) throws(MeshError) -> SSHOptions {
        var host: String?
        var o = SSHOptions(host: "")
        for (k, v) in try w.mapping(node, path: path) {
            let p = "\(path).\(k)"
            switch k {
            case "host":
                let s = try w.string(v, p)
                guard !s.isEmpty, !s.hasPrefix("-"), !s.contains(where: { $0 == " " || $0 == "\t" }) else {
                    throw w.at(v, Validate.fail(p, "a host name or address", got: s))
                }
                host = s
            case "port": o.port = try w.located(v) { () throws(MeshError) in try Validate.port(w.string(v, p), path: p) }
            case "user":
                let s = try w.string(v, p)
                guard !s.isEmpty, !s.hasPrefix("-"), !s.contains(where: { $0 == " " || $0 == "@" }) else {
                    throw w.at(v, Validate.fail(p, "a user name", got: s))
                }
                o.user = s
            case "key": o.keyPath = try w.string(v, p)
            case "options":
                o.extraArguments = try w.list(v, p).enumerated().map { (i, n) throws(MeshError) in try w.string(n, "\(p)[\(i)]") }
            default: throw w.unknownKey(v, p, known: ["host", "port", "user", "key", "options"])
            }
        }
        guard let host else { throw w.at(node, MeshError(.configInvalid, "\(path).host: missing", hint: "ssh needs at least host")) }
        o.host = host
        return o
    }

    private static func parseSocks5(_ node: Node, path: String, _ w: Walker) throws(MeshError) -> Socks5Settings {
        var proxy: Endpoint?
        var user: String?
        var pass: String?
        for (k, v) in try w.mapping(node, path: path) {
            let p = "\(path).\(k)"
            switch k {
            case "proxy": proxy = try w.located(v) { () throws(MeshError) in try Validate.endpoint(w.string(v, p), path: p, allowPortZero: false) }
            case "username", "password":
                let s = try w.string(v, p)
                guard (1...255).contains(s.utf8.count) else { throw w.at(v, MeshError(.configInvalid, "\(p): must be 1-255 bytes (RFC 1929)")) }
                if k == "username" { user = s } else { pass = s }
            default: throw w.unknownKey(v, p, known: ["proxy", "username", "password"])
            }
        }
        guard let proxy else { throw w.at(node, MeshError(.configInvalid, "\(path).proxy: missing", hint: "socks5 needs proxy: HOST:PORT")) }
        if (user == nil) != (pass == nil) {
            throw w.at(node, MeshError(.configInvalid, "\(path): username and password go together", hint: "set both or neither"))
        }
        return Socks5Settings(proxy: proxy, credentials: user.map { Socks5Credentials(username: $0, password: pass!) })
    }
}

/// Typed access to a composed YAML tree with key-path errors.
struct Walker {
    let source: String

    func isNull(_ n: Node) -> Bool {
        guard case .scalar(let s) = n, s.style == .plain || s.style == .any else { return false }
        return ["", "~", "null", "Null", "NULL"].contains(s.string)
    }

    /// Adds "line N of SOURCE" to an error about `node`.
    func at(_ node: Node, _ e: MeshError) -> MeshError {
        var e = e
        if e.hint == nil, let m = node.mark { e.hint = "line \(m.line) of \(source)" }
        return e
    }

    func located<T>(_ node: Node, _ body: () throws(MeshError) -> T) throws(MeshError) -> T {
        do { return try body() } catch { throw at(node, error) }
    }

    func kind(_ n: Node) -> String {
        switch n {
        case .scalar: return isNull(n) ? "nothing" : "a value"
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        }
    }

    func string(_ n: Node, _ path: String) throws(MeshError) -> String {
        guard case .scalar(let s) = n, !isNull(n) else {
            throw at(n, MeshError(.configInvalid, "\(path): expected a value, got \(kind(n))"))
        }
        return s.string
    }

    func list(_ n: Node, _ path: String) throws(MeshError) -> [Node] {
        if isNull(n) { return [] }
        guard case .sequence(let seq) = n else {
            throw at(n, MeshError(.configInvalid, "\(path): expected a list, got \(kind(n))", hint: "write [a, b] or one '- item' per line"))
        }
        return Array(seq)
    }

    func mapping(_ n: Node, path: String, allowNull: Bool = false) throws(MeshError) -> [(String, Node)] {
        if allowNull && isNull(n) { return [] }
        guard case .mapping(let m) = n else {
            throw at(n, MeshError(.configInvalid, "\(path.isEmpty ? source : path): expected a mapping of keys, got \(kind(n))"))
        }
        var seen = Set<String>()
        var out: [(String, Node)] = []
        for (k, v) in m {
            guard case .scalar(let ks) = k else { throw at(k, MeshError(.configInvalid, "\(path): keys must be plain strings")) }
            let full = path.isEmpty ? ks.string : "\(path).\(ks.string)"
            guard seen.insert(ks.string).inserted else { throw at(k, MeshError(.configInvalid, "\(full): duplicate key")) }
            out.append((ks.string, v))
        }
        return out
    }

    func unknownKey(_ node: Node, _ path: String, known: [String]) -> MeshError {
        var e = MeshError(.configInvalid, "\(path): unknown key", hint: "known keys here: \(known.joined(separator: ", "))")
        if let m = node.mark { e.hint! += "; line \(m.line) of \(source)" }
        return e
    }
}
