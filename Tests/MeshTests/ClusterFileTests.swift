import Foundation
import Gossip
import Testing
@testable import Mesh

/// One config file for the whole cluster: `hosts` entries say what each node is; a node applies
/// its own entry and skips it as a peer; `config import` converts the seeds' host file.
@Suite struct ClusterFileTests {
    let idA = NodeID(key: Bytes32(bytes: [UInt8](repeating: 1, count: 32))!)

    let cluster = """
    trusted_keys: []
    join: [10.0.0.1:7946, 10.0.0.2:7946, 10.0.0.3:7946]
    hosts:
      gpu-1:
        address: 10.0.0.1:7946
        roles: [training, storage]
        ephemeral: true
        nfs_group: lambda
        max_disk_usage: 80%
        bandwidth: {global: 100MB/s, per_peer: 20MB/s}
      gpu-2:
        address: 10.0.0.2:7946
        role: selfplay
      gpu-3:
        address: gpu-3.tail:7946
        ssh: {host: gpu-3.example, user: ubuntu}
        role: nn_training_primary
    """

    @Test func aHostsEntryCarriesTheNodesRoleEphemeralAndLimits() throws {
        let c = try NodeConfig.parse(yaml: cluster)
        let h = try #require(c.hosts["gpu-1"])
        #expect(h.roles == ["training", "storage"])
        #expect(h.ephemeral == true)
        #expect(h.nfsGroup == "lambda")
        #expect(h.maxDiskUsagePercent == 80)
        #expect(h.bandwidth?.globalBytesPerSecond == 100_000_000)
        #expect(h.bandwidthKeys == ["bandwidth.global", "bandwidth.per_peer"])
        #expect(c.hosts["gpu-3"]?.role == "nn_training_primary")
    }

    @Test func aNodeAppliesItsOwnEntryAndSkipsItAsAPeer() throws {
        let c = try NodeConfig.parse(yaml: cluster).forNode(named: "gpu-1", isLocalAddress: { $0 == "10.0.0.1" })
        #expect(c.ownHostKey == "gpu-1")
        #expect(c.hosts["gpu-1"] == nil && c.hosts.count == 2)
        #expect(c.join == [Endpoint("10.0.0.2:7946")!, Endpoint("10.0.0.3:7946")!])
        #expect(c.effectiveRoles == ["training", "storage"] && c.role == "training")
        #expect(c.ephemeral && c.nfsGroup == "lambda" && c.maxDiskUsagePercent == 80)
        #expect(c.bandwidth.globalBytesPerSecond == 100_000_000 && c.bandwidth.perPeerBytesPerSecond == 20_000_000)
        #expect(c.ownAddress == Endpoint("10.0.0.1:7946"))
        #expect(c.listen == Endpoint("10.0.0.1:7946"))
        // A host name, or an address not on this host (NAT): the node listens on every address, on its port.
        let g3 = try NodeConfig.parse(yaml: cluster).forNode(named: "gpu-3")
        #expect(g3.listen == Endpoint("0.0.0.0:7946") && g3.ownAddress == Endpoint("gpu-3.tail:7946"))
        let natted = try NodeConfig.parse(yaml: cluster).forNode(named: "gpu-1", isLocalAddress: { _ in false })
        #expect(natted.listen == Endpoint("0.0.0.0:7946") && natted.ownAddress == Endpoint("10.0.0.1:7946"))
        #expect(LocalAddresses.isLocal("127.0.0.1") && LocalAddresses.isLocal("127.31.4.1") && !LocalAddresses.isLocal("gpu-3.tail"))
        #expect(!LocalAddresses.isLocal("192.0.2.77"), "TEST-NET-1 is on no host")
        #expect(g3.role == "nn_training_primary" && g3.effectiveRoles == ["nn_training_primary"])
    }

    @Test func theTopLevelTheEnvironmentAndFlagsWinOverTheOwnEntry() throws {
        let yaml = cluster + "\nrole: storage\nephemeral: false\nbandwidth: {per_peer: 5MB/s}\nlisten: 0.0.0.0:9000\n"
        let c = try NodeConfig.parse(yaml: yaml).forNode(named: "gpu-1")
        #expect(c.effectiveRoles == ["storage"])
        #expect(!c.ephemeral)
        #expect(c.bandwidth.perPeerBytesPerSecond == 5_000_000, "the top level's per_peer wins")
        #expect(c.bandwidth.globalBytesPerSecond == 100_000_000, "the entry's global still applies: per key")
        #expect(c.listen == Endpoint("0.0.0.0:9000"))
        let flags = ConfigOverrides(role: "trainer", listen: Endpoint("127.0.0.1:7001"))
        let r = NodeConfig.resolve(file: try NodeConfig.parse(yaml: cluster), environment: ConfigOverrides(), flags: flags)
            .forNode(named: "gpu-2")
        #expect(r.role == "trainer" && r.listen == Endpoint("127.0.0.1:7001"))
    }

    @Test func aNodeFindsItsEntryByNodeIDToo() throws {
        let yaml = "hosts:\n  \(idA):\n    address: 10.0.0.9:7946\n    role: storage\n  other:\n    address: 10.0.0.8:7946\n"
        let c = try NodeConfig.parse(yaml: yaml).forNode(named: "whatever", id: idA)
        #expect(c.ownHostKey == idA.description && c.role == "storage" && c.hosts.keys.sorted() == ["other"])
        let none = try NodeConfig.parse(yaml: yaml).forNode(named: "nobody")
        #expect(none.ownHostKey == nil && none.hosts.count == 2 && none.role == "node")
    }

    @Test func anUnknownHostKeyNamesItsPathAndTheKnownKeys() throws {
        do {
            _ = try NodeConfig.parse(yaml: "hosts:\n  gpu-1:\n    ssh_host: 10.0.0.1\n", source: "c.yaml")
            Issue.record("parsed")
        } catch {
            #expect(error.message == "hosts.gpu-1.ssh_host: unknown key")
            #expect(error.hint?.contains("role, roles, ephemeral") == true && error.hint?.contains("line 3 of c.yaml") == true, "\(error)")
        }
        do {
            _ = try NodeConfig.parse(yaml: "hosts:\n  gpu-1:\n    ephemeral: maybe\n", source: "c.yaml")
            Issue.record("parsed")
        } catch { #expect(error.message == "hosts.gpu-1.ephemeral: expected true or false, got \"maybe\"") }
    }

    static var fixture: String {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        return (try? String(contentsOf: root.appendingPathComponent("Fixtures/distributed_hosts.yaml"), encoding: .utf8)) ?? ""
    }

    @Test func theSeedsHostFileConvertsIntoAClusterFileMeshnodeAccepts() throws {
        let r = try HostsImport.convert(yaml: Self.fixture, source: "distributed_hosts.yaml")
        let c = try NodeConfig.parse(yaml: r.yaml, source: "imported.yaml")
        #expect(c.hosts.keys.sorted() == ["hetzner-cpu", "lambda-a", "lambda-b", "vast-4711"])
        // A usable tailscale_ip: direct. The placeholder 100.x.x.x is no address: through ssh.
        #expect(c.hosts["lambda-a"]?.address == Endpoint("100.64.0.21:7946") && c.hosts["lambda-a"]?.route == .direct)
        let vast = try #require(c.hosts["vast-4711"])
        #expect(vast.address == Endpoint("ssh3.example.net:7946"))
        #expect(vast.ssh?.host == "ssh3.example.net" && vast.ssh?.port == 40222 && vast.ssh?.user == "root" && vast.ssh?.keyPath == "~/.ssh/id_cluster")
        #expect(vast.role == "nn_training_primary" && vast.ephemeral == true)
        #expect(c.hosts["hetzner-cpu"]?.bandwidth?.globalBytesPerSecond == 100_000_000)
        #expect(c.bandwidth.perPeerBytesPerSecond == 50_000_000)
        #expect(c.join.count == 4 && c.excludeFromSync == ["laptop-dev"] && c.nfsGroups == [["lambda-a", "lambda-b"]])
        #expect(r.notes.contains { $0.hasPrefix("hosts.lambda-a: left out gpu, memory_gb") }, "\(r.notes)")
        #expect(r.notes.contains { $0.contains("hosts.vast-4711.tailscale_ip") && $0.contains("not an IP address") })
        #expect(r.notes.contains { $0.contains("hosts.hetzner-cpu.status: offline") })
        #expect(r.notes.contains { $0.hasPrefix("hosts.vast-4711: its address is taken as ssh3.example.net:7946; ssh port 40222 suggests a proxy") })
        // Every host can use the same file: each finds itself and skips itself.
        let a = c.forNode(named: "lambda-a")
        #expect(a.join.count == 3 && a.hosts["lambda-a"] == nil && a.role == "training" && a.ownAddress == Endpoint("100.64.0.21:7946"))
        let viaSSH = try NodeConfig.parse(yaml: HostsImport.convert(yaml: Self.fixture, via: .ssh).yaml)
        #expect(viaSSH.hosts["lambda-a"]?.ssh?.host == "198.51.100.21" && viaSSH.hosts["lambda-a"]?.address == Endpoint("100.64.0.21:7946"))
    }

    @Test func aHostThatCannotBeReachedIsAnErrorNamingIt() throws {
        do {
            _ = try HostsImport.convert(yaml: "hosts:\n  box:\n    role: training\n", source: "h.yaml")
            Issue.record("converted")
        } catch { #expect(error.message == "hosts.box: neither a usable tailscale_ip nor ssh_host", "\(error)") }
        do {
            _ = try HostsImport.convert(yaml: "hosts:\n  box:\n    ssh_host: 10.0.0.1\n", source: "h.yaml", via: .tailscale)
            Issue.record("converted")
        } catch { #expect(error.message == "hosts.box.tailscale_ip: missing or not an IP address") }
        do {
            _ = try HostsImport.convert(yaml: "nodes: {}\n", source: "h.yaml")
            Issue.record("converted")
        } catch { #expect(error.message == "h.yaml: no hosts: mapping") }
    }

    @Test func theReportShowsOneNodesSettingsAndWarnsWhenItHasNoEntry() throws {
        let c = try NodeConfig.parse(yaml: cluster)
        let r = ConfigReport(config: c, file: "cluster.yaml", name: "gpu-2", nameFrom: "--name")
        #expect(r.ownEntry == "gpu-2" && r.roles == ["selfplay"] && r.peers.map(\.host) == ["gpu-1", "gpu-3"])
        #expect(r.join == ["10.0.0.1:7946", "10.0.0.3:7946"])
        #expect(r.warnings.contains { $0.hasPrefix("no trusted_keys and no authority_keys") })
        #expect(r.text.contains("own entry") && r.text.contains("hosts.gpu-2"))
        let stranger = ConfigReport(config: c, file: "cluster.yaml", name: "laptop", nameFrom: "host name")
        #expect(stranger.ownEntry == nil && stranger.warnings.contains { $0.hasPrefix("no hosts entry is named laptop") })
    }

    @Test func aSeedIsReportedOnceDueThenAtMostOncePerIntervalUntilJoined() {
        let a = PeerAddress(host: "10.0.0.1", port: 7946)
        let b = PeerAddress(host: "10.0.0.2", port: 7946)
        var w = SeedWatch(seeds: [a, b], startedAt: .zero)
        let s: Int64 = 1_000_000_000
        #expect(w.due(now: Instant(nanoseconds: 5 * s), after: 10 * s, interval: 60 * s).isEmpty)
        w.failed(b, "cannot connect: connection refused", now: Instant(nanoseconds: 6 * s))
        let first = w.due(now: Instant(nanoseconds: 12 * s), after: 10 * s, interval: 60 * s)
        #expect(first.map(\.0) == [a, b])
        #expect(first[0].1 == "no answer to join for 12s" && first[1].1 == "cannot connect: connection refused")
        #expect(w.due(now: Instant(nanoseconds: 30 * s), after: 10 * s, interval: 60 * s).isEmpty)
        w.joined(a)
        #expect(w.due(now: Instant(nanoseconds: 80 * s), after: 10 * s, interval: 60 * s).map(\.0) == [b])
        #expect(w.unjoined(now: Instant(nanoseconds: 80 * s)).map(\.address) == ["10.0.0.2:7946"])
        w.failed(a, "late error", now: Instant(nanoseconds: 81 * s))
        #expect(w.unjoined(now: Instant(nanoseconds: 81 * s)).count == 1, "a joined seed stays joined")
    }
}
