import Gossip
import Sync
import Testing
@testable import Mesh

/// Issue 13: `providers:` per-peer limits by host-name globs, `placement.TYPE.priority`, and the
/// priority byte of `get` (PROTOCOL §9.1).
@Suite struct ProviderConfigTests {
    func parse(_ yaml: String) throws -> NodeConfig { try NodeConfig.parse(yaml: yaml, source: "test.yaml") }

    let table = """
        bandwidth: {per_peer: 20MB/s}
        providers:
          - {name: lambda, hosts: ["lambda-*"], per_peer: 100MB/s}
          - {name: runpod, hosts: ["runpod-*"], per_peer: 100MB/s}
          - {name: hetzner, hosts: ["hetzner-*", "hz[0-9]*"], per_peer: 80MB/s}
          - {name: any-gpu, hosts: ["*-gpu-*"], per_peer: 50MB/s}
        """

    @Test func providerGroupsParseInOrderWithTheirLimits() throws {
        let c = try parse(table)
        #expect(c.providers.map(\.name) == ["lambda", "runpod", "hetzner", "any-gpu"])
        #expect(c.providers[0].perPeerBytesPerSecond == 100_000_000)
        #expect(c.providers[2].hosts == ["hetzner-*", "hz[0-9]*"])
    }

    @Test func aPeerGetsTheFirstMatchingGroupsLimitElseNone() throws {
        let limits = try parse(table).peerLimits
        #expect(limits.perPeer(name: "lambda-3", id: nil)?.bytesPerSecond == 100_000_000)
        #expect(limits.perPeer(name: "hz7", id: nil)?.source == "providers.hetzner")
        // Both lambda-* and *-gpu-* match: the first group wins.
        #expect(limits.perPeer(name: "lambda-gpu-1", id: nil)?.source == "providers.lambda")
        #expect(limits.perPeer(name: "vast-gpu-2", id: nil)?.bytesPerSecond == 50_000_000)
        #expect(limits.perPeer(name: "mac-studio", id: nil) == nil, "no group: the node's bandwidth.per_peer applies")
        #expect(limits.perPeer(name: nil, id: nil) == nil)
    }

    @Test func aHostsOwnEntryBeatsAProviderGroup() throws {
        let c = try parse(table + """

            hosts:
              lambda-1: {address: "10.0.0.1:7946", bandwidth: {per_peer: 10MB/s}}
              lambda-2: {address: "10.0.0.2:7946", bandwidth: {global: 30MB/s}}
            """)
        let limits = c.peerLimits
        #expect(limits.perPeer(name: "lambda-1", id: nil)?.bytesPerSecond == 10_000_000)
        #expect(limits.perPeer(name: "lambda-1", id: nil)?.source == "hosts.lambda-1")
        // An entry without its own per_peer leaves the group's.
        #expect(limits.perPeer(name: "lambda-2", id: nil)?.source == "providers.lambda")
    }

    @Test func configCheckShowsEachPeersLimitAndWhereItComesFrom() throws {
        let c = try parse(table + """

            hosts:
              lambda-1: {address: "10.0.0.1:7946", bandwidth: {per_peer: 10MB/s}}
              lambda-2: {address: "10.0.0.2:7946"}
              mac: {address: "10.0.0.3:7946"}
            """)
        let r = ConfigReport(config: c, file: "cluster.yaml", name: "mac", nameFrom: "--name")
        let limits = Dictionary(uniqueKeysWithValues: r.peers.map { ($0.host, $0.perPeer) })
        #expect(limits["lambda-1"] == "10000000B/s from hosts.lambda-1")
        #expect(limits["lambda-2"] == "100000000B/s from providers.lambda")
        #expect(r.providers.count == 4 && r.providers[0] == "lambda: lambda-* → 100000000B/s")
        #expect(r.text.contains("provider") && r.text.contains("per peer 100000000B/s from providers.lambda"))
    }

    @Test func badProviderGroupsAreRefusedNamingTheKey() throws {
        for (yaml, needle) in [
            ("providers: [{hosts: [\"a-*\"], per_peer: 1MB/s}]", "has no name"),
            ("providers: [{name: a, per_peer: 1MB/s}]", "has no hosts"),
            ("providers: [{name: a, hosts: [\"a-*\"]}]", "has no per_peer"),
            ("providers: [{name: a, hosts: [\"a-[\"], per_peer: 1MB/s}]", "providers[0].hosts[0]"),
            ("providers: [{name: a, hosts: [\"a-*\"], per_peer: fast}]", "providers[0].per_peer"),
            ("providers: [{name: a, hosts: [\"a-*\"], per_peer: 1MB/s, weight: 2}]", "providers[0].weight"),
            ("providers: [{name: a, hosts: [x], per_peer: 1MB/s}, {name: a, hosts: [y], per_peer: 1MB/s}]", "a second provider group"),
        ] {
            do {
                _ = try parse(yaml)
                Issue.record("accepted: \(yaml)")
            } catch let error as MeshError {
                #expect(error.message.contains(needle), "\(yaml): \(error.message)")
            } catch {
                Issue.record("\(yaml): \(error)")
            }
        }
    }

    @Test func placementRulesCarryAPriorityDefaultingToNormal() throws {
        let c = try parse("placement: {model: {roles: [training], copies: all, priority: high}, game: {min_copies: 2}}")
        #expect(c.transferPriorities[.model] == .high)
        #expect(c.transferPriorities[.game] == nil, "not given: normal")
        #expect(c.placement?.rules[.model]?.roles == ["training"])
        #expect(throws: MeshError.self) { try parse("placement: {model: {priority: urgent}}") }
    }

    @Test func aGetCarriesItsPriorityInAnOptionalTrailingByte() throws {
        let c = ContentID(digest: Bytes32(bytes: Array(repeating: 7, count: 32))!)
        let normal = BlobMessage.get(requestID: 1, contentID: c, indices: [0, 1])
        #expect(normal.encoded.count == 1 + 4 + 32 + 2 + 8, "a NORMAL get encodes as before")
        for p in TransferPriority.allCases {
            let m = BlobMessage.get(requestID: 1, contentID: c, indices: [0, 1], priority: p)
            #expect(try BlobMessage.decode(m.encoded) == m)
        }
        #expect(try BlobMessage.decode(normal.encoded + [3]) == .get(requestID: 1, contentID: c, indices: [0, 1], priority: .critical))
        #expect(throws: DecodeError.self) { try BlobMessage.decode(normal.encoded + [4]) }
        #expect(throws: DecodeError.self) { try BlobMessage.decode(normal.encoded + [1, 0]) }
    }
}
