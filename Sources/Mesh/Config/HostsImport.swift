// `meshnode config import`: a `distributed_hosts.yaml` (the shape the seeds' scripts keep for the
// whole cluster) converted into one meshnode cluster file (Config/ClusterFile.swift).
import Gossip
import Sync
import Yams

/// Converts the seeds' host file. Pure: text in, text and notes out.
///
/// Read per `hosts.NAME`: `ssh_host`, `ssh_port`, `ssh_user`, `ssh_key`, `tailscale_ip`, `role`,
/// `bandwidth_limit_mbps` (megabits per second, as the seeds write it), `status`. From
/// `sync_routing`: `exclude_from_sync`, `nfs_sharing_groups`, `ephemeral_hosts` (globs) and
/// `bandwidth_limit_mbps`. Every other key is left out and named in a note.
public enum HostsImport {
    /// How peers are reached: `auto` is direct to `tailscale_ip` when the host has a usable one,
    /// else through ssh; `ssh` always through ssh; `tailscale` always direct (a host without a
    /// tailscale_ip is an error).
    public enum Via: String, Sendable, CaseIterable { case auto, ssh, tailscale }

    public struct Result: Sendable {
        /// The meshnode config, YAML.
        public var yaml: String
        /// What was left out or guessed, one line each (for stderr).
        public var notes: [String]
    }

    static let hostKeysRead: Set<String> = ["ssh_host", "ssh_port", "ssh_user", "ssh_key", "tailscale_ip", "role", "bandwidth_limit_mbps", "status"]

    public static func convert(yaml: String, source: String = "distributed_hosts.yaml", port: UInt16 = NodeConfig.defaultPort,
                               via: Via = .auto) throws(MeshError) -> Result {
        let root: Node?
        do { root = try Yams.compose(yaml: yaml) } catch {
            throw MeshError(.configInvalid, "\(source) is not valid YAML: \(String(describing: error).split(separator: "\n").first ?? "")")
        }
        let w = Walker(source: source)
        guard let root, !w.isNull(root) else {
            throw MeshError(.configInvalid, "\(source) is empty", hint: "it needs a hosts: mapping of host names")
        }
        var notes: [String] = []
        var hostsNode: Node?
        var routing: Node?
        for (k, v) in try w.mapping(root, path: "") {
            switch k {
            case "hosts": hostsNode = v
            case "sync_routing": routing = v
            default: notes.append("\(k): left out (meshnode has no such setting)")
            }
        }
        guard let hostsNode else {
            throw w.at(root, MeshError(.configInvalid, "\(source): no hosts: mapping", hint: "the seeds' file lists each host under hosts: NAME:"))
        }

        // sync_routing: cluster-wide settings.
        var exclude: [String] = []
        var nfsGroups: [[String]] = []
        var ephemeralGlobs: [String] = []
        var perPeerMbps: Double?
        if let routing, !w.isNull(routing) {
            for (k, v) in try w.mapping(routing, path: "sync_routing") {
                let p = "sync_routing.\(k)"
                switch k {
                case "exclude_from_sync": exclude = try w.list(v, p).enumerated().map { (i, n) throws(MeshError) in try w.string(n, "\(p)[\(i)]") }
                case "nfs_sharing_groups":
                    nfsGroups = try w.list(v, p).enumerated().map { (i, g) throws(MeshError) in
                        try w.list(g, "\(p)[\(i)]").enumerated().map { (j, n) throws(MeshError) in
                            try w.located(n) { () throws(MeshError) in try Validate.name(w.string(n, "\(p)[\(i)][\(j)]"), path: "\(p)[\(i)][\(j)]") }
                        }
                    }
                case "ephemeral_hosts":
                    ephemeralGlobs = try w.list(v, p).enumerated().map { (i, n) throws(MeshError) in try w.string(n, "\(p)[\(i)]") }
                case "bandwidth_limit_mbps": perPeerMbps = try mbps(v, p, w)
                default: notes.append("\(p): left out (meshnode has no such setting)")
                }
            }
        }

        struct Host {
            var name: String
            var address: Endpoint
            var ssh: (host: String, port: UInt16?, user: String?, key: String?)?
            var role: String?
            var mbps: Double?
            var ephemeral: Bool
        }
        var hosts: [Host] = []
        for (name, node) in try w.mapping(hostsNode, path: "hosts") {
            let path = "hosts.\(name)"
            _ = try w.located(node) { () throws(MeshError) in try Validate.name(name, path: path) }
            var sshHost: String?, sshPort: UInt16?, sshUser: String?, sshKey: String?, tailscale: String?, role: String?
            var hostMbps: Double?
            var left: [String] = []
            for (k, v) in try w.mapping(node, path: path) {
                let p = "\(path).\(k)"
                switch k {
                case "ssh_host": sshHost = try w.string(v, p)
                case "ssh_port": sshPort = try w.located(v) { () throws(MeshError) in try Validate.port(w.string(v, p), path: p) }
                case "ssh_user": sshUser = try w.string(v, p)
                case "ssh_key": sshKey = try w.string(v, p)
                case "tailscale_ip": tailscale = try w.string(v, p)
                case "role": role = try w.located(v) { () throws(MeshError) in try Validate.role(w.string(v, p), path: p) }
                case "bandwidth_limit_mbps": hostMbps = try mbps(v, p, w)
                case "status":
                    let s = try w.string(v, p)
                    if s != "ready" { notes.append("\(p): \(s) (imported anyway; remove the host if it should not run meshnode)") }
                default: left.append(k)
                }
            }
            if !left.isEmpty { notes.append("\(path): left out \(left.sorted().joined(separator: ", "))") }
            // A placeholder such as 100.x.x.x is no address.
            let ts = tailscale.flatMap { SocketAddress(ip: $0, port: port) != nil ? $0 : nil }
            if let t = tailscale, ts == nil { notes.append("\(path).tailscale_ip: \"\(t)\" is not an IP address; not used") }
            let useSSH: Bool
            switch via {
            case .ssh: useSSH = true
            case .tailscale:
                guard ts != nil else {
                    throw w.at(node, MeshError(.configInvalid, "\(path).tailscale_ip: missing or not an IP address",
                                               hint: "give it one, or import with --via auto to reach this host through ssh"))
                }
                useSSH = false
            case .auto: useSSH = ts == nil
            }
            if useSSH && sshHost == nil {
                throw w.at(node, MeshError(.configInvalid, "\(path): neither a usable tailscale_ip nor ssh_host",
                                           hint: "add ssh_host (or tailscale_ip) so other nodes can reach it"))
            }
            guard let addrHost = ts ?? sshHost, let address = Endpoint("\(addrHost.contains(":") ? "[\(addrHost)]" : addrHost):\(port)") else {
                throw w.at(node, MeshError(.configInvalid, "\(path): cannot make an address of \(ts ?? sshHost ?? "")", hint: "check ssh_host and tailscale_ip"))
            }
            if useSSH && ts == nil, let p = sshPort, p != 22 {
                notes.append("\(path): its address is taken as \(address); ssh port \(p) suggests a proxy (as on vast.ai): "
                             + "set address to where its meshnode listens as seen from that ssh server, unique in the file")
            }
            let ephemeral = ephemeralGlobs.contains { g in g == name || (Glob(g)?.matches(name, pathname: false) ?? false) }
            hosts.append(Host(name: name, address: address, ssh: useSSH ? (sshHost!, sshPort, sshUser, sshKey) : nil, role: role,
                              mbps: hostMbps, ephemeral: ephemeral))
        }
        guard !hosts.isEmpty else { throw MeshError(.configInvalid, "\(source): hosts is empty", hint: "list at least one host") }
        if perPeerMbps != nil || hosts.contains(where: { $0.mbps != nil }) {
            notes.append("bandwidth_limit_mbps read as megabits per second (100 -> 12500KB/s): sync_routing's as bandwidth.per_peer, a host's as its own bandwidth.global")
        }

        // The output: a cluster file that every host can use as it is.
        var y = "# meshnode cluster file, converted from \(source) by `meshnode config import`.\n"
        y += "# Copy it to every host; each node finds its own entry under hosts by its name (--name or the host name).\n"
        y += "# Check one host's settings with `meshnode config check FILE --name NAME`.\n"
        y += "# trusted_keys: add every node's id (printed by `meshnode init`, and by `meshnode status` on that host).\n"
        y += "trusted_keys: []\n"
        y += "join:\n" + hosts.map { "  - \(quote("\($0.address)"))\n" }.joined()
        if let perPeerMbps { y += "bandwidth:\n  per_peer: \(rate(perPeerMbps))\n" }
        if !exclude.isEmpty { y += "exclude_from_sync: [\(exclude.map(quote).joined(separator: ", "))]\n" }
        if !nfsGroups.isEmpty { y += "nfs_groups:\n" + nfsGroups.map { "  - [\($0.map(quote).joined(separator: ", "))]\n" }.joined() }
        y += "hosts:\n"
        for h in hosts {
            y += "  \(quote(h.name)):\n"
            y += "    address: \(quote("\(h.address)"))\n"
            if let s = h.ssh {
                var parts = ["host: \(quote(s.host))"]
                if let p = s.port { parts.append("port: \(p)") }
                if let u = s.user { parts.append("user: \(quote(u))") }
                if let k = s.key { parts.append("key: \(quote(k))") }
                y += "    ssh: {\(parts.joined(separator: ", "))}\n"
            }
            if let r = h.role { y += "    role: \(quote(r))\n" }
            if h.ephemeral { y += "    ephemeral: true\n" }
            if let m = h.mbps { y += "    bandwidth: {global: \(rate(m))}\n" }
        }
        return Result(yaml: y, notes: notes)
    }

    /// Megabits per second as the seeds write them (a positive number).
    static func mbps(_ v: Node, _ p: String, _ w: Walker) throws(MeshError) -> Double {
        let s = try w.string(v, p)
        guard let d = Double(s), d.isFinite, d > 0 else { throw w.at(v, Validate.fail(p, "a positive number of megabits per second", got: s)) }
        return d
    }

    /// `N` Mbit/s as a meshnode rate (bytes per second, in kB/s so it stays exact).
    static func rate(_ mbps: Double) -> String {
        let kBps = (mbps * 1000 / 8).rounded()
        return kBps.truncatingRemainder(dividingBy: 1000) == 0 ? "\(Int64(kBps / 1000))MB/s" : "\(Int64(max(1, kBps)))KB/s"
    }

    /// A YAML scalar: plain when it is safe, else double-quoted.
    static func quote(_ s: String) -> String {
        let safe = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-/:[]~@")
        let plainOK = !s.isEmpty && s.allSatisfy { safe.contains($0) } && !s.hasPrefix("[") && !s.hasPrefix("~") && !s.hasPrefix("@")
            && !["true", "false", "yes", "no", "null", "on", "off"].contains(s.lowercased()) && Double(s) == nil && !s.contains(": ")
        if plainOK && !s.hasSuffix(":") { return s }
        // A JSON string literal is a YAML double-quoted scalar (YAML 1.2 is a superset of JSON).
        var out = ""
        JSONLogHandler.appendString(s, to: &out)
        return out
    }
}
