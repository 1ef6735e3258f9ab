// `meshnode config check`: the settings one node would run with, from a (cluster) config file.
import Gossip
import Logging

/// The effective settings of one node, as `meshnode config check` prints them (`--json`: this
/// object, keys sorted). Pure: built from a parsed, resolved config and the node's name.
public struct ConfigReport: Encodable, Sendable {
    public struct Peer: Encodable, Sendable {
        public var host: String
        public var address: String?
        public var route: String
        /// The per-peer upload limit toward it when not `bandwidth_per_peer`, and from where
        /// (`hosts.NAME`, `providers.GROUP`; PeerBandwidthLimits).
        public var perPeer: String?
        enum CodingKeys: String, CodingKey { case host, address, route, perPeer = "per_peer" }
    }
    /// `providers` groups, in order: `NAME: GLOB, ... → RATE`.
    public var providers: [String]
    public var valid = true
    public var file: String?
    public var name: String
    /// Where the name came from: `--name`, `MESHNODE_NAME`, `file`, `data dir` or `host name`.
    public var nameFrom: String
    /// The `hosts` key of this node's own entry (nil: none; the top level alone applies).
    public var ownEntry: String?
    public var role: String
    public var roles: [String]
    public var ephemeral: Bool
    /// `shutdown_deadline` in seconds, and `push_copies` (docs/SYNC.md, "Spot nodes").
    public var shutdownDeadlineSeconds: Double
    public var pushCopies: Int
    public var nfsGroup: String
    public var excluded: Bool
    public var listen: String
    /// What the node advertises when it is not `--advertise`d (nil: its listen address).
    public var advertise: String?
    public var join: [String]
    public var peers: [Peer]
    public var trustedKeys: Int
    public var authorityKeys: Int
    public var bandwidthGlobal: String
    public var bandwidthPerPeer: String
    public var maxConcurrentTransfers: Int
    public var maxDiskUsage: String?
    public var metricsListen: String
    public var logLevel: String
    public var logFormat: String
    public var placement: Bool
    public var folders: Int
    /// Things that are allowed but probably not meant, one line each.
    public var warnings: [String]

    enum CodingKeys: String, CodingKey {
        case valid, file, name, nameFrom = "name_from", ownEntry = "own_entry", role, roles, ephemeral, nfsGroup = "nfs_group"
        case shutdownDeadlineSeconds = "shutdown_deadline_s", pushCopies = "push_copies"
        case excluded, listen, advertise, join, peers, trustedKeys = "trusted_keys", authorityKeys = "authority_keys"
        case bandwidthGlobal = "bandwidth_global", bandwidthPerPeer = "bandwidth_per_peer"
        case maxConcurrentTransfers = "max_concurrent_transfers", maxDiskUsage = "max_disk_usage", metricsListen = "metrics_listen"
        case logLevel = "log_level", logFormat = "log_format", placement, folders, warnings, providers
    }

    /// `config` is the resolved config (file, environment, flags) before `forNode`.
    public init(config resolved: NodeConfig, file: String?, name: String, nameFrom: String) {
        let c = resolved.forNode(named: name)
        self.file = file
        self.name = name
        self.nameFrom = nameFrom
        ownEntry = c.ownHostKey
        role = c.role
        roles = c.effectiveRoles
        ephemeral = c.isEphemeral(name: name)
        shutdownDeadlineSeconds = Double(c.shutdownDeadline.milliseconds) / 1000
        pushCopies = c.pushCopies
        nfsGroup = c.nfsGroup(name: name)
        excluded = c.isExcluded(name: name)
        listen = "\(c.listen)"
        advertise = c.ownAddress.map { "\($0)" }
        join = c.join.map { "\($0)" }
        peers = c.hosts.sorted { $0.key < $1.key }.map { k, h in
            let route: String
            switch h.route {
            case .direct: route = "direct"
            case .ssh(let o): route = "ssh \(o.user.map { $0 + "@" } ?? "")\(o.host):\(o.port)"
            case .socks5(let s): route = "socks5 \(s.proxy)"
            }
            let limit = c.peerLimits.perPeer(name: k, id: NodeID(k)).map { "\($0.bytesPerSecond)B/s from \($0.source)" }
            return Peer(host: k, address: h.address.map { "\($0)" }, route: route, perPeer: limit)
        }
        providers = c.providers.map { "\($0.name): \($0.hosts.joined(separator: ", ")) → \($0.perPeerBytesPerSecond)B/s" }
        trustedKeys = c.trustedKeys.count
        authorityKeys = c.authorityKeys.count
        func rate(_ r: Int64?) -> String { r.map { "\($0)B/s" } ?? "unlimited" }
        bandwidthGlobal = rate(c.bandwidth.globalBytesPerSecond)
        bandwidthPerPeer = rate(c.bandwidth.perPeerBytesPerSecond)
        maxConcurrentTransfers = c.bandwidth.maxConcurrentTransfers
        maxDiskUsage = c.maxDiskUsagePercent.map { "\($0)%" }
        switch c.metricsListen {
        case .off?: metricsListen = "off"
        case .at(let e)?: metricsListen = "\(e)"
        case nil: metricsListen = "\(NodeConfig.defaultMetricsListen)"
        }
        logLevel = c.logLevel.rawValue
        logFormat = c.logFormat.rawValue
        placement = c.placement != nil
        folders = c.folders.count
        var w: [String] = []
        if !c.hosts.isEmpty && c.ownHostKey == nil {
            w.append("no hosts entry is named \(name): this node takes its settings from the top level only (pass --name, or add hosts.\(name))")
        }
        if c.trustedKeys.isEmpty && c.authorityKeys.isEmpty {
            w.append("no trusted_keys and no authority_keys: this node will admit no peers (add each node's id, from `meshnode init` or `meshnode status`)")
        }
        if c.join.isEmpty && !c.hosts.isEmpty {
            w.append("join is empty: this node waits for the others to join it (list the other hosts' addresses under join)")
        }
        for (k, h) in c.hosts.sorted(by: { $0.key < $1.key }) where h.address == nil && h.route != .direct {
            w.append("hosts.\(k) has a route but no address: it is only used once that node is known by gossip")
        }
        warnings = w
    }

    /// The human form: `key  value` lines, then the warnings.
    public var text: String {
        var rows: [(String, String)] = [
            ("file", file ?? "(none)"), ("name", "\(name) (from \(nameFrom))"),
            ("own entry", ownEntry.map { "hosts.\($0)" } ?? "none"),
            ("roles", roles.joined(separator: ", ")), ("ephemeral", "\(ephemeral)"),
            ("spot", "shutdown_deadline \(shutdownDeadlineSeconds) s, push_copies \(pushCopies)"),
            ("nfs group", nfsGroup.isEmpty ? "none" : nfsGroup), ("excluded", "\(excluded)"),
            ("listen", listen), ("advertise", advertise ?? "(the listen address)"),
            ("join", join.isEmpty ? "none" : join.joined(separator: ", ")),
        ]
        for p in peers {
            rows.append(("peer", "\(p.host) \(p.address ?? "(address from gossip)") via \(p.route)" + (p.perPeer.map { ", per peer \($0)" } ?? "")))
        }
        rows += [
            ("trusted keys", "\(trustedKeys)"), ("authority keys", "\(authorityKeys)"),
            ("bandwidth", "global \(bandwidthGlobal), per peer \(bandwidthPerPeer), \(maxConcurrentTransfers) concurrent transfers"),
        ]
        for p in providers { rows.append(("provider", p)) }
        rows += [
            ("max disk usage", maxDiskUsage ?? "no cap"), ("metrics", metricsListen), ("log", "\(logLevel), \(logFormat)"),
            ("placement", placement ? "configured" : "none (every node keeps every item)"), ("folders", "\(folders)"),
        ]
        let width = rows.map(\.0.count).max() ?? 0
        var out = rows.map { $0.0.padding(toLength: width + 2, withPad: " ", startingAt: 0) + $0.1 }.joined(separator: "\n") + "\n"
        for w in warnings { out += "warning: \(w)\n" }
        return out
    }
}
