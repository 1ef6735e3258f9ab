import Gossip
import Testing
@testable import Mesh

/// Issue 13 priorities: the pure scheduler and pacer that share upload bandwidth 1:2:4:8.
@Suite struct PrioritySchedulerTests {
    let chunk = 2 << 20

    /// Picks `rounds` messages of `sizes[p]` bytes with every class in `backlogged` waiting; the bytes each sent.
    func run(_ s: inout PriorityScheduler, backlogged: Set<TransferPriority>, sizes: [Int], picks: Int) -> [Int] {
        var sent = [0, 0, 0, 0]
        for _ in 0..<picks {
            let heads: [Int?] = TransferPriority.allCases.map { backlogged.contains($0) ? sizes[Int($0.rawValue)] : nil }
            guard let p = s.next(headBytes: heads) else { break }
            sent[Int(p.rawValue)] += sizes[Int(p.rawValue)]
        }
        return sent
    }

    @Test func sharesOfFourBackloggedClassesConvergeTo1To2To4To8() {
        var s = PriorityScheduler()
        // Messages of different sizes per class, none a multiple of the quantum.
        let sizes = [chunk, 700_000, 3_000_001, 1 << 20]
        let sent = run(&s, backlogged: Set(TransferPriority.allCases), sizes: sizes, picks: 20_000)
        let total = Double(sent.reduce(0, +))
        for p in TransferPriority.allCases {
            let share = Double(sent[Int(p.rawValue)]) / total
            let target = Double(p.weight) / 15
            #expect(abs(share - target) / target < 0.02, "\(p): share \(share), target \(target)")
        }
    }

    @Test func criticalAgainstLowAloneGetsEightNinths() {
        var s = PriorityScheduler()
        let sent = run(&s, backlogged: [.low, .critical], sizes: [chunk, chunk, chunk, chunk], picks: 9_000)
        let share = Double(sent[3]) / Double(sent[0] + sent[3])
        #expect(abs(share - 8.0 / 9) < 0.01, "critical share \(share)")
    }

    @Test func aLoneLowClassGetsEveryTurn() {
        var s = PriorityScheduler()
        let sent = run(&s, backlogged: [.low], sizes: [chunk, 0, 0, 0], picks: 100)
        #expect(sent[0] == 100 * chunk, "work-conserving: nothing is held back for idle classes")
        #expect(s.next(headBytes: [nil, nil, nil, nil]) == nil)
    }

    @Test func aNewlyArrivingCriticalClassIsServedWithinOneRound() {
        var s = PriorityScheduler()
        let others: Set<TransferPriority> = [.low, .normal, .high]
        _ = run(&s, backlogged: others, sizes: [chunk, chunk, chunk, chunk], picks: 37)  // anywhere in a round
        // One round of the others is at most their quanta plus one message each of leftover credit.
        let roundBytes = [TransferPriority.low, .normal, .high].reduce(0) { $0 + s.quantumBytes * $1.weight + chunk }
        var before = 0
        var picked: TransferPriority?
        while picked != .critical, before <= roundBytes {
            picked = s.next(headBytes: [chunk, chunk, chunk, chunk])
            if picked != .critical { before += chunk }
        }
        #expect(picked == .critical, "critical waited more than a round: \(before) bytes of others went first")
        #expect(before <= roundBytes)
    }

    @Test func anIdleClassKeepsNoCreditForLater() {
        var s = PriorityScheduler()
        _ = run(&s, backlogged: [.critical], sizes: [0, 0, 0, 100], picks: 5)
        _ = s.next(headBytes: [chunk, nil, nil, nil])
        #expect(s.deficitBytes[3] == 0, "critical went idle: its credit is dropped")
    }

    @Test func priorityNamesRoundTripAndWeightsAre1248() {
        #expect(TransferPriority.allCases.map(\.weight) == [1, 2, 4, 8])
        for p in TransferPriority.allCases { #expect(TransferPriority(name: p.description) == p) }
        #expect(TransferPriority(name: "CRITICAL") == .critical)
        #expect(TransferPriority(name: "urgent") == nil)
    }

    @Test func thePacerHoldsTheGlobalRateAndSharesItByPriority() {
        // 10 MB/s; a LOW and a CRITICAL sender, each with one 2 MiB message always ready.
        let rate: Int64 = 10_000_000
        var pacer = PriorityPacer<TransferPriority>(bucket: TokenBucket(rateBytesPerSecond: rate, nowNanoseconds: 0))
        pacer.submit(.low, bytes: chunk, priority: .low)
        pacer.submit(.critical, bytes: chunk, priority: .critical)
        var now: UInt64 = 0
        var sent: [TransferPriority: Int] = [:]
        while now < 60_000_000_000 {
            let (granted, wait) = pacer.grant(nowNanoseconds: now)
            for g in granted {
                sent[g, default: 0] += chunk
                pacer.submit(g, bytes: chunk, priority: g)  // the sender's next message is ready at once
            }
            now += max(wait ?? 1_000_000, 1)
        }
        let total = Double(sent.values.reduce(0, +))
        #expect(abs(total / 60 - Double(rate)) / Double(rate) < 0.02, "rate \(total / 60)")
        let share = Double(sent[.critical] ?? 0) / total
        #expect(abs(share - 8.0 / 9) < 0.02, "critical share \(share)")
    }

    @Test func aPacerWithoutABucketGrantsEverythingAtOnce() {
        var pacer = PriorityPacer<Int>(bucket: nil)
        for i in 0..<5 { pacer.submit(i, bytes: chunk, priority: .low) }
        let (granted, wait) = pacer.grant(nowNanoseconds: 0)
        #expect(granted == [0, 1, 2, 3, 4] && wait == nil)
    }
}
