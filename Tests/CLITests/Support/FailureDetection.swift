import Gossip

/// The longest a cluster of `nodes` running with `probe_interval` = `probeIntervalSeconds` may
/// take to declare a `kill -9`ed member dead on a given survivor, from PROTOCOL §6.2–§6.3 and the
/// gossip core's own formulas (`GossipConfig`), in a healthy cluster (local health 0 before the kill):
///
/// 1. the first probe of the victim starts within 2m − 1 periods (m = the other members a
///    survivor probes; randomised round-robin reshuffled after each pass, so two probes of one
///    member are at most 2m − 1 periods apart), and fails at the end of its period: 2m periods;
/// 2. the suspicion runs out after at most its maximum (β · α · max(1, log10 n) · interval, no
///    confirmations counted; n = members + 1 as the core counts them);
/// 3. the `dead` record (or the survivor's own timer, started when the suspicion reached it)
///    reaches every survivor within another 2m − 1 periods, each at most doubled by the one
///    failed probe that raised the declaring node's local health multiplier.
///
/// `meshnode run` sets the probe timeout to half the interval (Daemon.swift), inside a period.
enum FailureDetection {
    static func boundSeconds(nodes: Int, probeIntervalSeconds: Double) -> Double {
        var g = GossipConfig()
        g.probeIntervalMs = Int64(probeIntervalSeconds * 1000)
        let m = Double(nodes - 1)
        let firstProbeFails = 2 * m * probeIntervalSeconds
        let suspicion = Double(g.suspicionTimeoutsMs(members: nodes + 1).max) / 1000
        let dissemination = 2 * (2 * m - 1) * probeIntervalSeconds
        return firstProbeFails + suspicion + dissemination
    }

    /// The probe interval TestCluster's config states (`probe_interval: 300ms`).
    static let testClusterProbeIntervalSeconds = 0.3

    /// What the bound of "a new holder within failure detection + 10 s" leaves for the tests'
    /// own polling: each poll of `ls --json` starts a `meshnode` process (≈ 0.1–0.3 s on a busy
    /// 2-core machine) and `eventually` sleeps 0.1 s between polls.
    static let pollSlackSeconds = 1.0
}
