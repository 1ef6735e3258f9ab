// The `placement:` and `max_disk_usage:` keys of the config (docs/RUNTIME.md, docs/SYNC.md "Placement").
import Gossip
import Sync
import Yams

extension NodeConfig {
    /// The keys of one type's rule (`placement.TYPE`).
    static let placementRuleKeys = ["roles", "min_copies", "max_copies", "copies", "priority"]
    /// The largest copy count a rule may name.
    static let maxPlacementCopies = 1000

    /// `placement: defaults` (the seeds' defaults, `PlacementPolicy.seedDefaults`), or a mapping
    /// of type → `{roles: [..], min_copies: N, max_copies: N | copies: all | copies: N}`.
    /// A type the mapping does not name goes to every node. A rule's `priority: low | normal |
    /// high | critical` (issue 13) is the priority of that type's fetches (default normal).
    static func parsePlacement(_ node: Node, _ w: Walker) throws(MeshError) -> (PlacementPolicy, [ItemType: TransferPriority]) {
        let path = "placement"
        if case .scalar = node, !w.isNull(node) {
            let v = try w.string(node, path)
            guard v == "defaults" else {
                throw w.at(node, Validate.fail(path, "a mapping of type rules, or defaults", got: v))
            }
            return (.seedDefaults, [:])
        }
        var policy = PlacementPolicy()
        var priorities = [ItemType: TransferPriority]()
        for (t, v) in try w.mapping(node, path: path) {
            let type = try itemType(t, path: "\(path).\(t)", node: v, w)
            let (rule, priority) = try parsePlacementRule(v, path: "\(path).\(t)", w)
            policy.rules[type] = rule
            priorities[type] = priority
        }
        return (policy, priorities)
    }

    private static func parsePlacementRule(_ node: Node, path: String, _ w: Walker) throws(MeshError) -> (PlacementRule, TransferPriority?) {
        var roles = [String]()
        var priority: TransferPriority?
        var minCopies: Int?
        var maxCopies: Int?
        var all = false
        var sawCopies = false, sawMax = false
        func count(_ v: Node, _ p: String) throws(MeshError) -> Int {
            let s = try w.string(v, p)
            guard let n = Int(s), (1...maxPlacementCopies).contains(n) else {
                throw w.at(v, Validate.fail(p, "a number of copies from 1 to \(maxPlacementCopies)", got: s))
            }
            return n
        }
        for (k, v) in try w.mapping(node, path: path) {
            let p = "\(path).\(k)"
            switch k {
            case "roles":
                for (i, n) in try w.list(v, p).enumerated() {
                    let r = try w.located(n) { () throws(MeshError) in try Validate.role(w.string(n, "\(p)[\(i)]"), path: "\(p)[\(i)]") }
                    if !roles.contains(r) { roles.append(r) }
                }
                guard roles.count <= 16 else { throw w.at(v, MeshError(.configInvalid, "\(p): at most 16 roles")) }
            case "min_copies": minCopies = try count(v, p)
            case "max_copies":
                sawMax = true
                maxCopies = try count(v, p)
            case "copies":
                sawCopies = true
                let s = try w.string(v, p)
                if s == "all" { all = true } else {
                    guard let n = Int(s), (1...maxPlacementCopies).contains(n) else {
                        throw w.at(v, Validate.fail(p, "all, or a number of copies from 1 to \(maxPlacementCopies)", got: s))
                    }
                    minCopies = minCopies ?? n
                    maxCopies = n
                }
            case "priority":
                let s = try w.string(v, p)
                guard let pr = TransferPriority(name: s) else { throw w.at(v, Validate.fail(p, "low, normal, high or critical", got: s)) }
                priority = pr
            default: throw w.unknownKey(v, p, known: placementRuleKeys)
            }
        }
        if sawCopies && sawMax {
            throw w.at(node, MeshError(.configInvalid, "\(path): has both copies and max_copies", hint: "copies: N is min_copies = max_copies = N; choose one"))
        }
        if all { maxCopies = nil }
        if let lo = minCopies, let hi = maxCopies, lo > hi {
            throw w.at(node, MeshError(.configInvalid, "\(path): min_copies \(lo) is more than the \(hi) copies allowed"))
        }
        return (PlacementRule(roles: roles, minCopies: minCopies ?? 1, maxCopies: maxCopies), priority)
    }

    /// `max_disk_usage: N%`, N from 1 to 100.
    static func parseMaxDiskUsage(_ node: Node, _ w: Walker, path p: String = "max_disk_usage") throws(MeshError) -> Int {
        let s = try w.string(node, p)
        guard s.hasSuffix("%"), let n = Int(s.dropLast()), (1...100).contains(n) else {
            throw w.at(node, Validate.fail(p, "a percentage from 1% to 100%", got: s))
        }
        return n
    }
}
