import Gossip
import Sync

/// The spot checkers (`spot`, `spot-swarm`), kept apart from the model: they read the ground
/// truth (which nodes are durable, what each disk holds, when each node was down or full),
/// never the tracker's view, and they do not call `Custody` or `SafetyTracker`.
///
/// An item is **lost** when its ephemeral origin is terminated for good and no durable node
/// holds it complete (copies on other ephemeral nodes do not count: their disks go too).
///
/// Safety:
/// - **no notice** (kill -9): no item lost that its origin put ≥ `spotPushBoundNs` before the
///   kill, so no write lost that is ≥ cadence (5 s) + that bound old (a snapshot holds the
///   writes of the cadence before it). The bound assumes the push was not disturbed: it is
///   checked for an item when (a) no durable fault (crash, restart, disk full or freed) happened
///   from failure detection before its put to the bound after it, and some durable node was up
///   with room at its put; or (b) one of the durable nodes its origin asked first stayed up with
///   room for the whole bound; and its origin did not restart in between. Other lost items are
///   counted (`bound_excused`) and left to the checkers below;
/// - **notice** (SIGTERM, then exit at the deadline at the latest): no item lost at all when some
///   durable node was up with room from the SIGTERM to the exit (else counted, `lost_notice_excused`);
/// - **safe claims**: the tracker says an item is safe by `n` only when `n` is durable and holds it
///   complete.
///
/// Liveness, after the faults stop: every up node's tracker is empty, and every item of an
/// origin not gone for good has a durable complete copy.
extension Simulator {
    /// Origination → a durable complete copy, on an undisturbed push: one tick (an origin that
    /// knew no custodian asks at its next tick), the ask, the fetch request and the last byte
    /// (3 one-way delays at their longest), the largest item on the slowest link, and what may
    /// be queued ahead of it on the origin's FIFO upload link: at most 2 copies of a burst of one
    /// largest put and one largest snapshot, and as much again for asks re-sent after a failure.
    /// The link's steady load stays under half of it (2 copies × (4 MiB every 200 ms + 16 MiB
    /// every 5 s) = 46 MiB/s on 100 MiB/s), so the queue drains between bursts.
    var spotPushBoundNs: Int64 {
        let oneWay = Int64((options.latencyMs + options.jitterMs) * 1e6)
        let queued = 4 * Double(Self.spotPutMaxBytes + Self.spotSnapshotMaxBytes)
        let own = Double(max(Self.spotPutMaxBytes, Self.spotSnapshotMaxBytes))
        return Self.spotTickNs + 3 * oneWay + Int64((queued + own) / Self.spotMinUplinkBytesPerS * 1e9)
    }

    /// Whether durable node `j` was up and had room the whole time from `a` to `b`.
    func spotHealthy(_ j: Int, _ a: Int64, _ b: Int64) -> Bool {
        let s = spotWork.nodes[j]
        guard s.durable, nodes[j].started, nodes[j].bootedAt <= a else { return false }
        return !(s.down + s.fullSpans).contains { $0.from <= b && $0.to >= a }
    }

    /// Whether the no-notice bound applies to `item`, its origin killed by `d`.
    func spotBoundApplies(_ item: SpotItem, _ d: SpotDeath) -> Bool {
        guard d.bootedAt == item.originBootedAt else { return false }
        let o = item.originatedAt, p = spotPushBoundNs
        let durable = spotWork.nodes.indices.filter { spotWork.nodes[$0].durable }
        let quiet = !spotWork.faultEvents.contains { $0 >= o - detectionBoundNs && $0 <= o + p } && durable.contains { spotHealthy($0, o, o) }
        return quiet || item.firstAsked.contains { spotHealthy($0, o, o + p) }
    }

    public func spotSafetyViolations() -> [String] {
        guard options.spotOn else { return [] }
        var v = [String]()
        var m = spotWork.metrics
        let bound = spotPushBoundNs
        let byOrigin = Dictionary(grouping: spotWork.order.compactMap { spotWork.items[$0] }.filter { !$0.durableOrigin }, by: \.origin)
        for d in spotWork.deaths {
            let lost = (byOrigin[d.node] ?? []).filter { $0.durableCopies == 0 }
            for item in lost {
                let what = "\(item.content.short) (\(item.final ? "final snapshot" : item.snapshot ? "snapshot" : "put"), "
                    + "\(item.sizeBytes >> 10) KiB) put by n\(d.node) at \(Double(item.originatedAt) / 1e9)s"
                let asked = "first asked \(item.firstAsked.map { "n\($0)\(spotWork.nodes[$0].durable ? "" : " (ephemeral)")" })"
                if let t = d.sigtermAt {
                    let reachable = spotWork.nodes.indices.filter { spotHealthy($0, t, d.at) }
                    if reachable.isEmpty {
                        m.lostNoticeExcused += 1
                    } else if v.count < 50 {
                        v.append("spot notice: \(what) lost: SIGTERM at \(Double(t) / 1e9)s, exit at \(Double(d.at) / 1e9)s, while "
                                 + "\(reachable.map { "n\($0)" }) were up with room throughout; \(asked)")
                    }
                    continue
                }
                let age = d.at - item.originatedAt
                m.lostNoNotice += 1
                if age < bound || spotBoundApplies(item, d) {
                    m.maxLostDataAgeMs = max(m.maxLostDataAgeMs, (d.at - item.dataFrom) / 1_000_000)
                }
                guard age >= bound else { continue }
                if !spotBoundApplies(item, d) {
                    m.boundExcused += 1
                    log("excused from the no-notice bound: \(what), lost at \(Double(d.at) / 1e9)s; \(asked)")
                } else if v.count < 50 {
                    v.append("spot no-notice: \(what) lost at kill -9 at \(Double(d.at) / 1e9)s, \(Double(age) / 1e9) s after its put "
                             + "(its writes up to \(Double(d.at - item.dataFrom) / 1e9) s old; bound: push \(Double(bound) / 1e9) s, "
                             + "cadence \(Double(Self.spotCadenceNs) / 1e9) s); \(asked)")
                }
            }
        }
        func pct(_ a: [Int64]) -> [Double] {
            let s = a.sorted()
            guard !s.isEmpty else { return [0, 0, 0] }
            return [0.5, 0.99, 1].map { Double(s[min(s.count - 1, Int(Double(s.count - 1) * $0))]) / 1e6 }
        }
        m.safeMs = pct(spotWork.safeLatencies)
        m.twoCopiesMs = pct(spotWork.twoCopyLatencies)
        spotWork.metrics = m
        return v + spotWork.falseSafe.map { "spot safe claim: \($0)" }
    }

    public func spotLivenessViolations(limit: Int) -> [String] {
        guard options.spotOn, limit > 0 else { return [] }
        var v = [String]()
        for i in nodes.indices where nodes[i].up && !spotWork.nodes[i].gone && !spotWork.nodes[i].tracker.tracked.isEmpty {
            let t = spotWork.nodes[i].tracker
            v.append("spot liveness: n\(i) still has \(t.tracked.count) items at risk (\(t.atRiskBytes >> 10) KiB, the oldest "
                     + "from \(Double(t.oldestEnqueuedMs ?? 0) / 1e3)s)")
            if v.count >= limit { return v }
        }
        for c in spotWork.unsafe.sorted() {
            guard let item = spotWork.items[c], !spotWork.nodes[item.origin].gone else { continue }
            let tracked = spotWork.nodes[item.origin].tracker.tracked[c] != nil
            v.append("spot liveness: \(c.short) put by n\(item.origin) at \(Double(item.originatedAt) / 1e9)s has no durable copy"
                     + (tracked ? "" : " and its origin does not track it"))
            if v.count >= limit { return v }
        }
        return v
    }

    /// One line of spot metrics (the CLI prints it).
    public var spotSummary: String {
        "spot: push_bound_ms=\(spotPushBoundNs / 1_000_000) " + spotWork.metrics.fields.map { "\($0.0)=\($0.1)" }.joined(separator: " ")
    }
}
