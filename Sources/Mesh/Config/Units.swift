// Parsing of human-written durations and byte rates.

/// Parses durations such as `500ms`, `30s`, `2m`, `1h`, `1h30m`, `1.5s`, `30d`.
public enum DurationText {
    /// nil if `text` is not a duration. Units: ms, s, m, h, d (combinable, largest first).
    public static func parse(_ text: String) -> Duration? {
        let s = text.trimmingCharacters(in: .whitespaces)
        guard !s.isEmpty else { return nil }
        var total = 0.0
        var i = s.startIndex
        var lastRank = Int.max
        while i < s.endIndex {
            let numStart = i
            while i < s.endIndex, s[i].isASCII, s[i].isNumber || s[i] == "." { i = s.index(after: i) }
            guard numStart < i, let value = Double(s[numStart..<i]), value.isFinite else { return nil }
            let unitStart = i
            while i < s.endIndex, s[i].isASCII, s[i].isLetter { i = s.index(after: i) }
            let unit = s[unitStart..<i]
            let (scale, rank): (Double, Int)
            switch unit {
            case "d": (scale, rank) = (86_400, 5)
            case "h": (scale, rank) = (3600, 4)
            case "m": (scale, rank) = (60, 3)
            case "s": (scale, rank) = (1, 2)
            case "ms": (scale, rank) = (0.001, 1)
            default: return nil
            }
            guard rank < lastRank else { return nil }
            lastRank = rank
            total += value * scale
        }
        guard total < 1e9 else { return nil }
        let ms = (total * 1000).rounded()
        return .milliseconds(Int64(ms))
    }

    /// The shortest exact text for `d` (`1500ms`, `30s`, `2m`, `1h`).
    public static func format(_ d: Duration) -> String {
        let ms = d.milliseconds
        if ms % 86_400_000 == 0, ms > 0 { return "\(ms / 86_400_000)d" }
        if ms % 3_600_000 == 0, ms > 0 { return "\(ms / 3_600_000)h" }
        if ms % 60_000 == 0, ms > 0 { return "\(ms / 60_000)m" }
        if ms % 1000 == 0 { return "\(ms / 1000)s" }
        return "\(ms)ms"
    }
}

/// Parses byte rates such as `50MB/s`, `1.5GB/s`, `800KiB/s`, `0` (no limit needs `unlimited`).
public enum ByteRateText {
    /// Bytes per second, or nil if not a rate. Decimal units B, KB, MB, GB, TB; binary KiB,
    /// MiB, GiB, TiB; the `/s` suffix is required. Case of the unit letters matters for `B`.
    public static func parse(_ text: String) -> Int64? {
        var s = text.trimmingCharacters(in: .whitespaces)
        guard s.hasSuffix("/s") else { return nil }
        s.removeLast(2)
        s = s.trimmingCharacters(in: .whitespaces)
        let numEnd = s.firstIndex(where: { !($0.isASCII && ($0.isNumber || $0 == ".")) }) ?? s.endIndex
        guard numEnd > s.startIndex, let value = Double(s[..<numEnd]), value.isFinite, value > 0 else { return nil }
        let unit = s[numEnd...].trimmingCharacters(in: .whitespaces)
        let scale: Double
        switch unit {
        case "B": scale = 1
        case "KB", "kB": scale = 1e3
        case "MB": scale = 1e6
        case "GB": scale = 1e9
        case "TB": scale = 1e12
        case "KiB": scale = 1024
        case "MiB": scale = 1_048_576
        case "GiB": scale = 1_073_741_824
        case "TiB": scale = 1_099_511_627_776
        default: return nil
        }
        let bytes = (value * scale).rounded()
        guard bytes >= 1, bytes < 9e18 else { return nil }
        return Int64(bytes)
    }
}
