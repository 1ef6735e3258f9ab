import Foundation
import Gossip
import Sync
import Testing
@testable import Mesh

/// The node-facts keys of the config (PROTOCOL §4.7): a node's own roles, ephemeral and NFS
/// group, and the cluster-wide exclusion and NFS lists from which its flags derive by name.
@Suite struct PlacementConfigTests {
    func parse(_ yaml: String) throws -> NodeConfig { try NodeConfig.parse(yaml: yaml, source: "test.yaml") }

    @Test func rolesAreAListOrOneRoleAndTheDisplayRoleIsTheFirst() throws {
        let one = try parse("role: training")
        #expect(one.effectiveRoles == ["training"] && one.role == "training")
        let two = try parse("roles: [training, storage, training]")
        #expect(two.effectiveRoles == ["training", "storage"] && two.role == "training")
        #expect(try parse("").effectiveRoles == ["node"])
        #expect(throws: MeshError.self) { try parse("roles: [\"has space\"]") }
        #expect(throws: MeshError.self) { try parse("roles: training") }
    }

    @Test func ephemeralAndAnNfsGroupParseStrictly() throws {
        let c = try parse("ephemeral: true\nnfs_group: gh200")
        #expect(c.ephemeral && c.nfsGroup(name: "anyone") == "gh200")
        #expect(try !parse("ephemeral: no").ephemeral)
        #expect(throws: MeshError.self) { try parse("ephemeral: maybe") }
        #expect(throws: MeshError.self) { try parse("nfs_group: \(String(repeating: "g", count: 65))") }
    }

    @Test func aNodesExcludedFlagAndGroupComeFromTheClusterListsByItsName() throws {
        let c = try parse("""
            exclude_from_sync: [mac-studio, "dev-*"]
            nfs_groups: [[gh200-b, gh200-a, gh200-c], [x, y]]
            """)
        #expect(c.isExcluded(name: "mac-studio") && c.isExcluded(name: "dev-3"))
        #expect(!c.isExcluded(name: "gh200-a") && !c.isExcluded(name: "mac-studio-2"))
        #expect(c.nfsGroup(name: "gh200-c") == "gh200-a", "a group is named by its smallest member")
        #expect(c.nfsGroup(name: "y") == "x")
        #expect(c.nfsGroup(name: "z") == "")
        #expect(throws: MeshError.self) { try parse("exclude_from_sync: [\"dev-[\"]") }
        #expect(throws: MeshError.self) { try parse("nfs_groups: [a, b]") }
    }

    @Test func theRunningNodesFactsComeFromItsConfigAndName() throws {
        let c = try parse("roles: [selfplay]\nephemeral: true\nexclude_from_sync: [\"spot-*\"]\nnfs_groups: [[spot-1, spot-2]]")
        let o = NodeSettings(dataDir: "/tmp/x", config: c, advertise: nil, credential: []).nodeOptions(nodeName: "spot-2")
        #expect(o.facts == MeshNodeOptions.OwnFacts(roles: ["selfplay"], ephemeral: true, nfsGroup: "spot-1", excluded: true))
    }

    @Test func spotKeysMakeNodesEphemeralByNameAndSetTheDeadlineAndPushCopies() throws {
        let c = try parse("ephemeral_hosts: [\"vast-*\", runpod-spot-3]\nshutdown_deadline: 2m\npush_copies: 3")
        #expect(c.isEphemeral(name: "vast-17") && c.isEphemeral(name: "runpod-spot-3"))
        #expect(!c.isEphemeral(name: "gh200-a") && !c.isEphemeral(name: "runpod-spot-30"))
        #expect(c.shutdownDeadline == .seconds(120) && c.pushCopies == 3)
        let d = try parse("")
        #expect(d.shutdownDeadline == .seconds(25) && d.pushCopies == 2 && !d.isEphemeral(name: "vast-1"))
        #expect(throws: MeshError.self) { try parse("push_copies: 9") }
        #expect(throws: MeshError.self) { try parse("shutdown_deadline: soon") }
        #expect(throws: MeshError.self) { try parse("ephemeral_hosts: [\"vast-[\"]") }
        // The running node: ephemeral by its name, with the 5 s cadence on its send folders.
        let f = try parse("ephemeral_hosts: [\"vast-*\"]\nfolders:\n  - {path: /tmp, mode: send}")
        let o = NodeSettings(dataDir: "/tmp/x", config: f, advertise: nil, credential: []).nodeOptions(nodeName: "vast-2")
        #expect(o.facts.ephemeral && o.folders.first?.snapshotInterval == .seconds(5) && o.folders.first?.rescanInterval == .seconds(5))
        let durable = NodeSettings(dataDir: "/tmp/x", config: f, advertise: nil, credential: []).nodeOptions(nodeName: "gh200-a")
        #expect(!durable.facts.ephemeral && durable.folders.first?.snapshotInterval == .seconds(60))
    }

    @Test func thePlacementContractParsesIntoAPolicyAndTheDiskCapIntoAPercentage() throws {
        let c = try parse("""
            placement:
              game:       {roles: [training, storage], min_copies: 2, max_copies: 3}
              npz:        {roles: [training]}
              checkpoint: {roles: [training], min_copies: 2}
              model:      {roles: [selfplay, training], copies: all}
            max_disk_usage: 70%
            """)
        let p = try #require(c.placement)
        #expect(p.rules[.game] == PlacementRule(roles: ["training", "storage"], minCopies: 2, maxCopies: 3))
        #expect(p.rules[.npz] == PlacementRule(roles: ["training"]))
        #expect(p.rules[.checkpoint] == PlacementRule(roles: ["training"], minCopies: 2))
        #expect(p.rules[.model] == PlacementRule(roles: ["selfplay", "training"], maxCopies: nil))
        #expect(p.rules.count == 4)
        #expect(c.maxDiskUsagePercent == 70)
    }

    @Test func withoutThePlacementKeysThereIsNoPolicyAndNoCap() throws {
        let c = try parse("roles: [storage]")
        #expect(c.placement == nil && c.maxDiskUsagePercent == nil)
        #expect(try parse("placement: defaults").placement == PlacementPolicy.seedDefaults)
        #expect(try parse("placement: {}").placement == PlacementPolicy())
        #expect(try parse("placement: {game: {copies: 2}}").placement?.rules[.game] == PlacementRule(minCopies: 2, maxCopies: 2))
        #expect(try parse("max_disk_usage: 100%").maxDiskUsagePercent == 100)
    }

    @Test(arguments: [
        ("placement: everything", "placement:"),
        ("placement: {games: {roles: [storage]}}", "placement.games:"),
        ("placement: {game: {roles: storage}}", "placement.game.roles:"),
        ("placement: {game: {roles: [\"has space\"]}}", "placement.game.roles[0]:"),
        ("placement: {game: {min_copies: 0}}", "placement.game.min_copies:"),
        ("placement: {game: {max_copies: two}}", "placement.game.max_copies:"),
        ("placement: {game: {copies: some}}", "placement.game.copies:"),
        ("placement: {game: {copies: all, max_copies: 2}}", "placement.game:"),
        ("placement: {game: {min_copies: 3, max_copies: 2}}", "placement.game:"),
        ("placement: {game: {replicas: 2}}", "placement.game.replicas:"),
        ("max_disk_usage: 70", "max_disk_usage:"),
        ("max_disk_usage: 0%", "max_disk_usage:"),
        ("max_disk_usage: 101%", "max_disk_usage:"),
        ("max_disk_usage: lots", "max_disk_usage:"),
    ])
    func aBadPlacementValueIsAOneLineErrorNamingItsKey(yaml: String, key: String) throws {
        do {
            _ = try parse(yaml)
            Issue.record("\(yaml) parsed")
        } catch let e as MeshError {
            #expect(e.message.hasPrefix(key), "\(e.message)")
            #expect(!e.message.contains("\n"))
        }
    }
}
