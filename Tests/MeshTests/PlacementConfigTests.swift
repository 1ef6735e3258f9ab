import Foundation
import Gossip
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
}
