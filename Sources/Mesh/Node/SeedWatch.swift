// Which configured seeds this node has not joined yet, and the last thing that went wrong with
// each: for the "seed does not answer / does not admit us" log line, `peers` and `status`.
import Gossip

/// One seed not joined, as `peers --json` (a row with state `unjoined_seed`) and `status --json`
/// (`seeds_unjoined`) show it.
public struct UnjoinedSeed: Codable, Sendable, Equatable {
    public var address: String
    /// The last error seen with it, one line (e.g. "no answer to join for 12s").
    public var lastError: String
    /// Milliseconds since that error (nil: none yet).
    public var lastErrorMsAgo: Int64?

    enum CodingKeys: String, CodingKey {
        case address, lastError = "last_error", lastErrorMsAgo = "last_error_ms_ago"
    }
}

/// Pure bookkeeping of the seeds: the caller supplies the time.
struct SeedWatch {
    struct Seed {
        var joined = false
        var lastError: String?
        var lastErrorAt: Instant?
        var lastReportAt: Instant?
    }
    private(set) var seeds: [PeerAddress: Seed] = [:]
    /// Seeds dialled after a report, whose outcome is logged when it comes.
    var probing: Set<PeerAddress> = []
    let startedAt: Instant

    init(seeds: [PeerAddress], startedAt: Instant) {
        for s in seeds { self.seeds[s] = Seed() }
        self.startedAt = startedAt
    }

    func isSeed(_ a: PeerAddress) -> Bool { seeds[a] != nil }

    /// A member is alive at `a`, or a session with whoever listens there is up: joined (for good:
    /// a seed that fails later is a member like any other).
    mutating func joined(_ a: PeerAddress) {
        guard seeds[a] != nil else { return }
        seeds[a]!.joined = true
        seeds[a]!.lastError = nil
        probing.remove(a)
    }

    mutating func failed(_ a: PeerAddress, _ error: String, now: Instant) {
        guard let s = seeds[a], !s.joined else { return }
        seeds[a]!.lastError = error
        seeds[a]!.lastErrorAt = now
    }

    /// The seeds due a report at `now` (not joined `after` since start, last reported at least
    /// `interval` ago), each marked reported; a seed with no error yet gets "no answer to join".
    mutating func due(now: Instant, after: Int64, interval: Int64) -> [(PeerAddress, String)] {
        guard now - startedAt >= after else { return [] }
        var out: [(PeerAddress, String)] = []
        for (a, s) in seeds.sorted(by: { $0.key < $1.key }) where !s.joined {
            if let r = s.lastReportAt, now - r < interval { continue }
            if s.lastError == nil { failed(a, "no answer to join for \((now - startedAt) / 1_000_000_000)s", now: now) }
            seeds[a]!.lastReportAt = now
            out.append((a, seeds[a]!.lastError!))
        }
        return out
    }

    func unjoined(now: Instant) -> [UnjoinedSeed] {
        seeds.sorted(by: { $0.key < $1.key }).filter { !$0.value.joined }.map { a, s in
            UnjoinedSeed(address: "\(a)", lastError: s.lastError ?? "not joined yet",
                         lastErrorMsAgo: s.lastErrorAt.map { (now - $0) / 1_000_000 })
        }
    }
}
