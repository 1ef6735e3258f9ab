// The `providers:` key of the config: per-peer upload limits by groups of host-name globs (issue 13).
import Gossip
import Sync
import Yams

/// One `providers` group: the peers whose node names match one of `hosts` (globs: `*`, `?`,
/// `[...]`) get `perPeerBytesPerSecond` as their per-peer upload limit.
public struct ProviderGroup: Equatable, Sendable {
    public var name: String
    public var hosts: [String]
    public var perPeerBytesPerSecond: Int64
    public init(name: String, hosts: [String], perPeerBytesPerSecond: Int64) {
        self.name = name
        self.hosts = hosts
        self.perPeerBytesPerSecond = perPeerBytesPerSecond
    }

    public func matches(_ peerName: String) -> Bool {
        hosts.contains { p in p == peerName || (Glob(p)?.matches(peerName, pathname: false) ?? false) }
    }
}

/// The per-peer upload limit toward each peer. Precedence, first that applies:
/// 1. the peer's own `hosts.NAME.bandwidth.per_peer` (its hosts entry, by node id or name);
/// 2. the first `providers` group whose `hosts` globs match the peer's name;
/// 3. nil: this node's `bandwidth.per_peer` (or no per-peer limit).
public struct PeerBandwidthLimits: Equatable, Sendable {
    public var providers: [ProviderGroup]
    /// `hosts` keys (names or node ids) → their entry's `bandwidth.per_peer`.
    public var hostPerPeer: [String: Int64]

    public init(providers: [ProviderGroup] = [], hostPerPeer: [String: Int64] = [:]) {
        self.providers = providers
        self.hostPerPeer = hostPerPeer
    }

    public var isEmpty: Bool { providers.isEmpty && hostPerPeer.isEmpty }

    /// The limit for the peer named `name` (id `id`), and where it comes from
    /// (`hosts.NAME`, `providers.GROUP`); nil: the node's own `bandwidth.per_peer` applies.
    public func perPeer(name: String?, id: NodeID?) -> (bytesPerSecond: Int64, source: String)? {
        if let id, let r = hostPerPeer[id.description] { return (r, "hosts.\(id)") }
        if let name, let r = hostPerPeer[name] { return (r, "hosts.\(name)") }
        if let name, let g = providers.first(where: { $0.matches(name) }) { return (g.perPeerBytesPerSecond, "providers.\(g.name)") }
        return nil
    }
}

extension NodeConfig {
    /// The per-peer limits toward peers, from `providers` and the peers' `hosts` entries.
    public var peerLimits: PeerBandwidthLimits {
        var h = [String: Int64]()
        for (k, v) in hosts where v.bandwidthKeys.contains("bandwidth.per_peer") {
            if let r = v.bandwidth?.perPeerBytesPerSecond { h[k] = r }
        }
        return PeerBandwidthLimits(providers: providers, hostPerPeer: h)
    }

    static let providerKeys = ["name", "hosts", "per_peer"]

    /// `providers: [{name: lambda, hosts: ["lambda-*"], per_peer: 100MB/s}, ...]`.
    static func parseProviders(_ node: Node, _ w: Walker) throws(MeshError) -> [ProviderGroup] {
        let path = "providers"
        var out = [ProviderGroup]()
        for (i, g) in try w.list(node, path).enumerated() {
            let p = "\(path)[\(i)]"
            var name: String?
            var hosts: [String]?
            var rate: Int64?
            for (k, v) in try w.mapping(g, path: p) {
                let kp = "\(p).\(k)"
                switch k {
                case "name": name = try Validate.name(w.string(v, kp), path: kp)
                case "hosts":
                    hosts = try w.list(v, kp).enumerated().map { (j, n) throws(MeshError) in
                        let hp = "\(kp)[\(j)]"
                        let s = try w.string(n, hp)
                        if let problem = Glob.problem(in: s) { throw w.at(n, Validate.fail(hp, "a node name or glob (\(problem))", got: s)) }
                        guard !s.isEmpty else { throw w.at(n, Validate.fail(hp, "a node name or glob", got: s)) }
                        return s
                    }
                case "per_peer": rate = try w.located(v) { () throws(MeshError) in try Validate.rate(w.string(v, kp), path: kp) }
                default: throw w.unknownKey(v, kp, known: providerKeys)
                }
            }
            guard let name else { throw w.at(g, MeshError(.configInvalid, "\(p): has no name", hint: "give each provider group a name, e.g. name: lambda")) }
            guard let hosts, !hosts.isEmpty else {
                throw w.at(g, MeshError(.configInvalid, "\(p) (\(name)): has no hosts", hint: "list the node names or globs it covers, e.g. hosts: [\"lambda-*\"]"))
            }
            guard let rate else {
                throw w.at(g, MeshError(.configInvalid, "\(p) (\(name)): has no per_peer limit", hint: "give a rate, e.g. per_peer: 100MB/s (unlimited is not a group limit)"))
            }
            if out.contains(where: { $0.name == name }) {
                throw w.at(g, MeshError(.configInvalid, "\(p): a second provider group named \(name)", hint: "give each group its own name"))
            }
            out.append(ProviderGroup(name: name, hosts: hosts, perPeerBytesPerSecond: rate))
        }
        return out
    }
}
