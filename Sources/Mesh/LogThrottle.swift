// "Log at most once per key per interval", for per-peer, per-reason drop messages.

/// Decides whether to log an event for `key` now, so that a flood of bad packets from one peer
/// produces one line per interval (with the number suppressed since), not one per packet.
/// Pure: time is passed in. Bounded: at most `maxKeys` keys are remembered.
public struct LogThrottle<Key: Hashable & Sendable>: Sendable {
    public let intervalMilliseconds: UInt64
    public let maxKeys: Int
    private var state: [Key: (lastMs: UInt64, suppressed: Int)] = [:]

    public init(interval: Duration = .seconds(60), maxKeys: Int = 4096) {
        intervalMilliseconds = interval.milliseconds
        self.maxKeys = maxKeys
    }

    /// Keys currently remembered (≤ `maxKeys`).
    public var trackedKeys: Int { state.count }

    /// Returns nil if the event should not be logged now; otherwise the number of events for
    /// `key` suppressed since the last logged one (0 the first time).
    public mutating func admit(_ key: Key, nowMilliseconds now: UInt64) -> Int? {
        if var s = state[key] {
            if now &- s.lastMs < intervalMilliseconds {
                s.suppressed += 1
                state[key] = s
                return nil
            }
            state[key] = (now, 0)
            return s.suppressed
        }
        if state.count >= maxKeys {
            // Forget keys whose interval has passed; if all are recent, forget an arbitrary one.
            state = state.filter { now &- $0.value.lastMs < intervalMilliseconds }
            if state.count >= maxKeys, let k = state.keys.first { state[k] = nil }
        }
        state[key] = (now, 0)
        return 0
    }
}
