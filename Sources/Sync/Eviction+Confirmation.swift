import Gossip

extension Eviction {
    /// Lets a content go only once `Eviction.decide` has chosen it in passes at least `holdMs`
    /// apart, choosing it in every pass between (docs/SYNC.md, "Dropping"). With `holdMs` at
    /// least the failure-detection time, a holder that crashed (its disk with it) just before
    /// the first pass is no longer alive in the second, so the drop rule no longer counts its
    /// copy. (meshsim's `placement` scenario found nodes letting go of the last complete copy
    /// on the word of holder records whose nodes had crashed a second before, still alive in
    /// their view.) Pure: the shell keeps one per node, in memory.
    public struct Confirmation: Sendable, Equatable {
        /// When each content still chosen was first chosen (ms, the shell's clock).
        public private(set) var firstChosenMs: [ContentID: Int64] = [:]

        public init() {}

        /// What to release now, in `decision`'s order; forgets whatever `decision` no longer chooses.
        public mutating func confirm(_ decision: Decision, nowMs: Int64, holdMs: Int64) -> [(ContentID, Reason)] {
            var kept = [ContentID: Int64]()
            var out = [(ContentID, Reason)]()
            for (c, r) in decision.release {
                let first = firstChosenMs[c] ?? nowMs
                if nowMs - first >= holdMs { out.append((c, r)) } else { kept[c] = first }
            }
            firstChosenMs = kept
            return out
        }
    }
}
