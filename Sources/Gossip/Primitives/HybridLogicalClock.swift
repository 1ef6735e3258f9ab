/// Hybrid logical clock stamps (Kulkarni, Demirbas et al., "Logical Physical Clocks and
/// Consistent Snapshots in Globally Distributed Databases", 2014, §3): the high 48 bits
/// are milliseconds since the Unix epoch, the low 16 bits a counter.
///
/// A node stamps each new entry with `next(wallMs:after:)`, where `after` is the highest
/// stamp it holds (its own and every entry it received). So an entry made after seeing
/// another always orders after it, whatever the wall clocks of the two nodes say, and the
/// stamp stays within a counter's reach of real time while clocks are sane. There is no
/// state to persist: the highest stamp held is a fact of the manifest.
public enum HybridLogicalClock {
    public static let counterBits: UInt64 = 16
    /// The largest millisecond value a stamp can carry (2^48 − 1 ms, past the year 10 000).
    public static let maxWallMs: Int64 = (1 << 48) - 1

    /// The stamp of wall-clock time `ms` with counter 0 (clamped to the representable range).
    public static func fromWallClock(ms: Int64) -> UInt64 {
        UInt64(min(max(ms, 0), maxWallMs)) << counterBits
    }

    /// The stamp for a new local event at wall-clock time `wallMs`, given the highest stamp held.
    public static func next(wallMs: Int64, after highest: UInt64) -> UInt64 {
        let physical = fromWallClock(ms: wallMs)
        return highest == .max ? .max : max(physical, highest + 1)
    }

    /// The milliseconds part of a stamp.
    public static func wallMs(of stamp: UInt64) -> Int64 { Int64(stamp >> counterBits) }
}
