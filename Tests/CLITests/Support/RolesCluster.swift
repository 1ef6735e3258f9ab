import Foundation
import TestSupport

extension TestCluster {
    /// Writes each node's config (`shared` and `roles: [roles[i]]`), starts n1 (with
    /// `firstExtra` flags) and joins the others to it, and waits until every node sees every
    /// other alive and holds every node's stated roles (placement tests).
    func startWithRoles(_ roles: [String], shared: String, firstExtra: [String] = []) throws {
        precondition(roles.count == nodes.count)
        for (i, n) in nodes.enumerated() {
            try writeConfig(trusted: nodes.map(\.id), extra: shared + "\nroles: [\(roles[i])]", to: root.sub("\(n.name).yaml"))
        }
        try nodes[0].start(config: root.sub("n1.yaml"), extra: firstExtra)
        for n in nodes.dropFirst() { try n.start(config: root.sub("\(n.name).yaml"), join: [nodes[0].address]) }
        let count = nodes.count
        try eventually(30, "\(count) alive") { self.allSeeAlive(count) }
        try eventually(20, "every node's facts on every node\n\(dumpLogs())") {
            self.nodes.allSatisfy { n in
                let p = n.peers()
                return p.count == count && p.values.allSatisfy { ($0["roles"] as? [String])?.isEmpty == false }
            }
        }
    }
}
