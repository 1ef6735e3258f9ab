// One Prometheus registry per node, with metrics that read their values at scrape time.
import CoreMetrics
import Prometheus

/// A node's metrics: a `PrometheusCollectorRegistry` of its own (never the process-wide
/// `MetricsSystem`, so several nodes in one process keep apart), holding
///
/// * metrics updated where their events happen (histograms, event counters), created with
///   `registry.make...` or through swift-metrics with `factory`, and
/// * metrics read from the node's own counters when scraped: `gauge`, `gauges`, `counter` and
///   `counters` register a name with a closure, and `exposition()` runs every closure, then
///   renders the text format. A counter read this way is advanced by the growth of the number
///   its closure returns, so it stays monotonic as Prometheus requires.
///
/// Adding a metric is one line: `m.gauge("meshnode_x", "What it is.") { node.x }`.
///
/// Label values must come from fixed sets (never peer ids or item ids): `gauges`/`counters`
/// take the full set up front, register every series at 0, and fold any other value into
/// `other`. Loop-confined: `exposition()` and the closures run on the node's loop.
public final class MetricsRegistry: @unchecked Sendable {
    // @unchecked: the refreshers are loop-confined; the Prometheus objects are thread-safe.
    public let registry = PrometheusCollectorRegistry()
    /// swift-metrics' API over this registry: `CoreMetrics.Counter(label: "x", factory: m.factory)`.
    public let factory: PrometheusMetricsFactory
    private var refreshers: [() -> Void] = []

    /// The label value standing for any value outside a metric's fixed set.
    public static let otherLabel = "other"

    public init() {
        var f = PrometheusMetricsFactory(registry: registry)
        f.defaultValueHistogramBuckets = SyncDurationBuckets.seconds
        factory = f
    }

    /// A gauge set from `value` at each scrape.
    public func gauge(_ name: String, _ help: String, _ value: @escaping () -> Double) {
        let g = registry.makeGauge(descriptor: Self.descriptor(name, help))
        refreshers.append { g.set(to: value()) }
    }

    /// One gauge per value of `label` in `values`, set from `value` at each scrape (a value it
    /// does not return is 0; one outside `values` counts under `other`, if `values` has it).
    public func gauges(_ name: String, _ help: String, label: String, values: [String],
                       _ value: @escaping () -> [String: Double]) {
        let series = Dictionary(uniqueKeysWithValues: values.map { v in
            (v, registry.makeGauge(descriptor: Self.descriptor(name, help), labels: [(label, v)]))
        })
        refreshers.append {
            var totals: [String: Double] = [:]
            for (k, v) in value() { totals[series[k] != nil ? k : Self.otherLabel, default: 0] += v }
            for (k, g) in series { g.set(to: totals[k] ?? 0) }
        }
    }

    /// A counter that follows `value`, a count that only grows (read at each scrape).
    public func counter(_ name: String, _ help: String, _ value: @escaping () -> UInt64) {
        let c = registry.makeCounter(descriptor: Self.descriptor(name, help))
        var last: UInt64 = 0
        refreshers.append {
            let now = value()
            if now > last { c.increment(by: Int64(clamping: now - last)) }
            last = max(last, now)
        }
    }

    /// One counter per value of `label`, following the counts `value` returns by label value.
    /// Values outside `values` are added up under `other` (registered whatever `values` says),
    /// so the series stay a fixed set whatever the code counts.
    public func counters(_ name: String, _ help: String, label: String, values: [String],
                         _ value: @escaping () -> [String: UInt64]) {
        var all = values
        if !all.contains(Self.otherLabel) { all.append(Self.otherLabel) }
        let series = Dictionary(uniqueKeysWithValues: all.map { v in
            (v, registry.makeCounter(descriptor: Self.descriptor(name, help), labels: [(label, v)]))
        })
        var last: [String: UInt64] = [:]
        refreshers.append {
            var totals: [String: UInt64] = [:]
            for (k, v) in value() { totals[series[k] != nil ? k : Self.otherLabel, default: 0] &+= v }
            for (k, now) in totals {
                let before = last[k] ?? 0
                if now > before { series[k]!.increment(by: Int64(clamping: now - before)) }
                last[k] = max(before, now)
            }
        }
    }

    /// A histogram of values in base units (seconds, bytes), updated by `record` at its events.
    public func histogram(_ name: String, _ help: String, buckets: [Double]) -> ValueHistogram {
        registry.makeValueHistogram(descriptor: Self.descriptor(name, help), buckets: buckets)
    }

    /// A full metric name (units and `_total` included) with its HELP text.
    static func descriptor(_ name: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
    }

    /// Refreshes every scrape-time metric, then renders the Prometheus text format (0.0.4).
    public func exposition() -> [UInt8] {
        for r in refreshers { r() }
        var out: [UInt8] = []
        out.reserveCapacity(16 << 10)
        registry.emit(into: &out)
        return out
    }

    /// The Content-Type of `exposition()`.
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"
}

/// Buckets of `meshnode_sync_duration_seconds`: 50 ms to 1 h, about ×2-2.5 apart.
public enum SyncDurationBuckets {
    public static let seconds: [Double] = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600]
}
