// The `breaker:` key of the config: per-peer circuit breakers (docs/RUNTIME.md, "Circuit breakers").
import Sync
import Yams

extension NodeConfig {
    static let breakerKeys = ["failure_threshold", "recovery_timeout", "half_open_requests"]

    /// `breaker: {failure_threshold: 5, recovery_timeout: 60s, half_open_requests: 3}`; every key optional.
    static func parseBreaker(_ node: Node, _ w: Walker) throws(MeshError) -> CircuitBreaker.Config {
        var c = CircuitBreaker.Config()
        func count(_ v: Node, _ p: String, _ range: ClosedRange<Int>) throws(MeshError) -> Int {
            let s = try w.string(v, p)
            guard let n = Int(s), range.contains(n) else {
                throw w.at(v, Validate.fail(p, "an integer \(range.lowerBound)-\(range.upperBound)", got: s))
            }
            return n
        }
        for (k, v) in try w.mapping(node, path: "breaker", allowNull: true) {
            let p = "breaker.\(k)"
            switch k {
            case "failure_threshold": c.failureThreshold = try count(v, p, 1...1000)
            case "half_open_requests": c.halfOpenRequests = try count(v, p, 1...100)
            case "recovery_timeout":
                let d = try w.located(v) { () throws(MeshError) in try Validate.interval(w.string(v, p), path: p) }
                c.recoveryTimeoutMs = Int64(d.milliseconds)
            default: throw w.unknownKey(v, p, known: breakerKeys)
            }
        }
        return c
    }
}
