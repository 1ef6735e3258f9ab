/// A shell glob with `fnmatch(3)` semantics (POSIX.2 §3.13), in pure Swift so that `Sync`
/// stays free of C: `*` any run of characters, `?` one character, `[abc]`, `[a-z]`, `[!a]`
/// (or `[^a]`) one character of a set, `\x` a literal `x`. With `pathname` (FNM_PATHNAME),
/// `*`, `?` and brackets never match "/". A leading "." is not special (no FNM_PERIOD).
public struct Glob: Sendable, Hashable, CustomStringConvertible {
    public let pattern: String
    private let scalars: [Unicode.Scalar]

    /// Nil when the pattern is malformed: an unclosed `[`, or a trailing `\`.
    public init?(_ pattern: String) {
        guard !pattern.isEmpty, Self.problem(in: pattern) == nil else { return nil }
        self.pattern = pattern
        scalars = Array(pattern.unicodeScalars)
    }

    public var description: String { pattern }

    /// Why `pattern` is not a valid glob, or nil.
    public static func problem(in pattern: String) -> String? {
        let p = Array(pattern.unicodeScalars)
        var i = 0
        while i < p.count {
            switch p[i] {
            case "\\":
                guard i + 1 < p.count else { return "ends with a lone backslash" }
                i += 2
            case "[":
                guard let end = bracketEnd(p, from: i) else { return "has an unclosed '['" }
                i = end + 1
            default:
                i += 1
            }
        }
        return nil
    }

    /// Whether `text` matches the whole pattern.
    public func matches(_ text: String, pathname: Bool) -> Bool {
        let t = Array(text.unicodeScalars)
        let p = scalars
        var pi = 0, ti = 0
        // The last `*` seen and the text position it is currently extended to.
        var starP = -1, starT = 0
        while ti < t.count {
            if pi < p.count {
                switch p[pi] {
                case "*":
                    starP = pi
                    starT = ti
                    pi += 1
                    continue
                case "?":
                    if !(pathname && t[ti] == "/") {
                        pi += 1
                        ti += 1
                        continue
                    }
                case "[":
                    if let end = Self.bracketEnd(p, from: pi), !(pathname && t[ti] == "/"),
                       Self.bracketMatches(p, from: pi, to: end, t[ti]) {
                        pi = end + 1
                        ti += 1
                        continue
                    }
                case "\\":
                    if pi + 1 < p.count, p[pi + 1] == t[ti] {
                        pi += 2
                        ti += 1
                        continue
                    }
                default:
                    if p[pi] == t[ti] {
                        pi += 1
                        ti += 1
                        continue
                    }
                }
            }
            // Mismatch: let the last star take one more character, if it may.
            guard starP >= 0, !(pathname && t[starT] == "/") else { return false }
            starT += 1
            ti = starT
            pi = starP + 1
        }
        while pi < p.count, p[pi] == "*" { pi += 1 }
        return pi == p.count
    }

    /// The index of the `]` closing the bracket expression at `start`, or nil.
    static func bracketEnd(_ p: [Unicode.Scalar], from start: Int) -> Int? {
        var i = start + 1
        if i < p.count, p[i] == "!" || p[i] == "^" { i += 1 }
        if i < p.count, p[i] == "]" { i += 1 }  // a leading ']' is literal
        while i < p.count {
            if p[i] == "]" { return i }
            if p[i] == "\\" { i += 1 }
            i += 1
        }
        return nil
    }

    static func bracketMatches(_ p: [Unicode.Scalar], from start: Int, to end: Int, _ c: Unicode.Scalar) -> Bool {
        var i = start + 1
        var negate = false
        if p[i] == "!" || p[i] == "^" {
            negate = true
            i += 1
        }
        var hit = false
        // (A ']' right after '[' or '[!' is a member: `bracketEnd` skipped it.)
        while i < end {
            var lo = p[i]
            if lo == "\\", i + 1 < end { i += 1; lo = p[i] }
            if i + 2 < end, p[i + 1] == "-" {
                var hi = p[i + 2]
                var step = 3
                if hi == "\\", i + 3 < end { hi = p[i + 3]; step = 4 }
                if lo.value <= c.value && c.value <= hi.value { hit = true }
                i += step
            } else {
                if lo == c { hit = true }
                i += 1
            }
        }
        return hit != negate
    }
}
