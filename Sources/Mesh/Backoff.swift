// Exponential back-off with jitter for reconnects (joins, tunnels, peers).

/// Exponential back-off with "equal jitter": the n-th consecutive failure waits a random time in
/// [d/2, d] where d = min(maximum, initial × multiplier^(n-1)). Pure: randomness comes from the
/// generator passed in. `reset()` after a success.
public struct Backoff: Sendable, Equatable {
    public let initial: Duration
    public let maximum: Duration
    public let multiplier: Double
    /// Consecutive failures so far.
    public private(set) var failures = 0

    public init(initial: Duration = .milliseconds(250), maximum: Duration = .seconds(30), multiplier: Double = 2) {
        precondition(initial > .zero && maximum >= initial && multiplier >= 1)
        self.initial = initial
        self.maximum = maximum
        self.multiplier = multiplier
    }

    /// Records a failure and returns how long to wait before the next attempt.
    public mutating func nextDelay(using rng: inout some RandomNumberGenerator) -> Duration {
        failures += 1
        let base = Double(initial.milliseconds) * pow(multiplier, Double(min(failures - 1, 64)))
        let cap = Double(maximum.milliseconds)
        let d = min(cap, base)
        let ms = d / 2 + Double.random(in: 0...(d / 2), using: &rng)
        return .milliseconds(Int64(ms.rounded()))
    }

    /// Call after a success: the next failure starts from `initial` again.
    public mutating func reset() { failures = 0 }
}

private func pow(_ x: Double, _ y: Double) -> Double {
    var r = 1.0
    for _ in 0..<Int(y) { r *= x; if r > 1e15 { return r } }
    return r
}
