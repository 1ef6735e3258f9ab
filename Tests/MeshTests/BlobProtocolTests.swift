import Testing
@testable import Gossip
@testable import Mesh

private func node(_ n: UInt64) -> NodeID { NodeID(key: Bytes32(w0: n, w1: 0, w2: 0, w3: 0)) }

@Suite struct BlobMessageTests {
    @Test func everyMessageRoundTrips() throws {
        let c = ContentID(digest: Bytes32(w0: 1, w1: 2, w2: 3, w3: 4))
        let msgs: [BlobMessage] = [
            .wantRecipe(requestID: 1, contentID: c),
            .recipe(requestID: 2, contentID: c, sizeBytes: 5000, chunkSizeBytes: 4096, chunks: [ChunkHash(digest: .zero), ChunkHash(digest: Bytes32(w0: 9, w1: 9, w2: 9, w3: 9))]),
            .wantHave(requestID: 3, contentID: c),
            .have(requestID: 4, contentID: c, chunkCount: 10, bitmap: ChunkBitmap.make(count: 10) { $0 % 3 == 0 }),
            .get(requestID: 5, contentID: c, indices: [0, 7, 9]),
            .chunk(requestID: 6, index: 7, data: [1, 2, 3]),
            .chunk(requestID: 6, index: 8, data: []),
            .chunkPiece(requestID: 6, index: 9, chunkBytes: UInt32(BlobMessage.pieceBytes + 3), offset: UInt32(BlobMessage.pieceBytes), data: [7, 8, 9]),
            .error(requestID: 7, code: .busy, message: "at transfer limit"),
            .cancel(requestID: 8),
        ]
        for m in msgs { #expect(try BlobMessage.decode(m.encoded) == m) }
    }

    @Test func truncatedMutatedAndRandomMessagesNeverCrashTheDecoder() {
        let c = ContentID(digest: Bytes32(w0: 1, w1: 2, w2: 3, w3: 4))
        let base = BlobMessage.recipe(requestID: 2, contentID: c, sizeBytes: 9000, chunkSizeBytes: 4096,
                                      chunks: (0..<3).map { ChunkHash(digest: Bytes32(w0: UInt64($0), w1: 0, w2: 0, w3: 0)) }).encoded
        for cut in 0..<base.count { #expect(throws: DecodeError.self) { try BlobMessage.decode(Array(base[..<cut])) } }
        var seed: UInt64 = 99
        func next() -> UInt64 { seed = seed &* 6364136223846793005 &+ 1442695040888963407; return seed >> 33 }
        for _ in 0..<3000 {
            var m = base
            m[Int(next() % UInt64(m.count))] = UInt8(truncatingIfNeeded: next())
            _ = try? BlobMessage.decode(m)
            let junk = (0..<Int(next() % 64)).map { _ in UInt8(truncatingIfNeeded: next()) }
            _ = try? BlobMessage.decode(junk)
        }
    }

    /// PROTOCOL §3 and §9.1: a recipe may name any chunk size `meshnode init` accepts
    /// (4 KiB … 64 MiB) and no other. The decoder used to stop at 8 MiB, so stores with larger
    /// chunks never replicated.
    @Test func recipesWithEveryChunkSizeAStoreMayHaveDecodeAndNoOthers() throws {
        let c = ContentID(digest: Bytes32(w0: 1, w1: 2, w2: 3, w3: 4))
        func recipe(_ cs: UInt32) -> [UInt8] {
            BlobMessage.recipe(requestID: 1, contentID: c, sizeBytes: 1, chunkSizeBytes: cs, chunks: [ChunkHash(digest: .zero)]).encoded
        }
        for cs: UInt32 in [4096, 2 << 20, 8 << 20, (8 << 20) + 1, 16 << 20, 64 << 20] {
            guard case .recipe(_, _, _, let got, _) = try BlobMessage.decode(recipe(cs)) else { Issue.record("not a recipe"); continue }
            #expect(got == cs)
        }
        for cs: UInt32 in [0, 1, 4095, (64 << 20) + 1, .max] {
            #expect(throws: DecodeError.invalid(field: "recipe.chunkSize")) { try BlobMessage.decode(recipe(cs)) }
        }
    }

    /// PROTOCOL §9.1: a chunk over 8 MiB never travels as one `chunk`; its pieces are 8 MiB each
    /// but the last, at offsets that are multiples of 8 MiB, and every message fits a 16 MiB
    /// frame with its tag.
    @Test func largeChunksTravelAsPiecesWhoseHeadersAreCheckedExactly() throws {
        let p = BlobMessage.pieceBytes
        #expect(p == 8_388_608)
        #expect(BlobMessage.pieceCount(chunkBytes: p) == 0)
        #expect(BlobMessage.pieceCount(chunkBytes: p + 1) == 2)
        #expect(BlobMessage.pieceCount(chunkBytes: 16 << 20) == 2)
        #expect(BlobMessage.pieceCount(chunkBytes: 64 << 20) == 8)
        #expect(BlobMessage.pieceHeaderBytes + p + SecureChannel.tagBytes <= 16 << 20)
        #expect(1 + 4 + 32 + 8 + 4 + 4 + BlobMessage.maxRecipeChunks * 32 + SecureChannel.tagBytes <= 16 << 20)
        // Well formed: first, middle and last pieces.
        #expect(BlobMessage.pieceProblem(chunkBytes: 64 << 20, offset: 0, dataBytes: p) == nil)
        #expect(BlobMessage.pieceProblem(chunkBytes: 64 << 20, offset: 7 * p, dataBytes: p) == nil)
        #expect(BlobMessage.pieceProblem(chunkBytes: p + 5, offset: p, dataBytes: 5) == nil)
        // A chunk that fits one `chunk` message, or over the chunk size limit.
        #expect(BlobMessage.pieceProblem(chunkBytes: p, offset: 0, dataBytes: p) == .invalid(field: "chunk_piece.chunkBytes"))
        #expect(BlobMessage.pieceProblem(chunkBytes: (64 << 20) + 1, offset: 0, dataBytes: p) == .invalid(field: "chunk_piece.chunkBytes"))
        // An offset that is not a piece boundary, or past the chunk.
        #expect(BlobMessage.pieceProblem(chunkBytes: 16 << 20, offset: 4096, dataBytes: p) == .invalid(field: "chunk_piece.offset"))
        #expect(BlobMessage.pieceProblem(chunkBytes: 16 << 20, offset: 2 * p, dataBytes: 0) == .invalid(field: "chunk_piece.offset"))
        // Data that is not exactly the piece.
        #expect(BlobMessage.pieceProblem(chunkBytes: 16 << 20, offset: 0, dataBytes: p - 1) == .invalid(field: "chunk_piece.data"))
        #expect(BlobMessage.pieceProblem(chunkBytes: p + 5, offset: p, dataBytes: 6) == .invalid(field: "chunk_piece.data"))
        // The decoder applies the same rules, and a plain `chunk` over 8 MiB is refused.
        let good = BlobMessage.chunkPiece(requestID: 1, index: 2, chunkBytes: UInt32(p + 5), offset: UInt32(p), data: [1, 2, 3, 4, 5])
        #expect(try BlobMessage.decode(good.encoded) == good)
        let bad = BlobMessage.chunkPiece(requestID: 1, index: 2, chunkBytes: UInt32(p + 5), offset: UInt32(p), data: [1, 2, 3, 4])
        #expect(throws: DecodeError.self) { try BlobMessage.decode(bad.encoded) }
        let big = BlobMessage.chunk(requestID: 1, index: 0, data: [UInt8](repeating: 1, count: p + 1))
        #expect(throws: DecodeError.self) { try BlobMessage.decode(big.encoded) }
        #expect(BlobMessage.Tag(rawValue: 0x18) == .chunkPiece)
        #expect(BlobMessage.Tag(rawValue: 0x19) == nil)
    }

    @Test func anAssemblyTakesOnlyTheNextPieceOfItsChunk() {
        let p = BlobMessage.pieceBytes
        var a = ChunkAssembly(requestID: 4, source: node(1), index: 2, chunkBytes: p + 3, first: [UInt8](repeating: 9, count: p)[...])
        #expect(!a.isComplete && a.nextOffset == p)
        #expect(!a.continues(requestID: 4, index: 2, chunkBytes: p + 3, offset: 0))
        #expect(!a.continues(requestID: 5, index: 2, chunkBytes: p + 3, offset: p))
        #expect(!a.continues(requestID: 4, index: 3, chunkBytes: p + 3, offset: p))
        #expect(!a.continues(requestID: 4, index: 2, chunkBytes: p + 4, offset: p))
        #expect(a.continues(requestID: 4, index: 2, chunkBytes: p + 3, offset: p))
        a.append([1, 2, 3])
        #expect(a.isComplete && a.bytes.count == p + 3 && Array(a.bytes.suffix(4)) == [9, 1, 2, 3])
    }

    @Test func bitmapsAreLeastSignificantBitFirst() {
        let b = ChunkBitmap.make(count: 10) { $0 == 0 || $0 == 9 }
        #expect(b == [0x01, 0x02])
        #expect(ChunkBitmap.contains(b, 9))
        #expect(!ChunkBitmap.contains(b, 8))
        #expect(!ChunkBitmap.contains(b, 100))
    }
}

@Suite struct FetchSchedulerTests {
    let a = node(1), b = node(2), c = node(3)

    @Test func chunksAlreadyPresentAreNeverRequested() {
        var s = FetchScheduler(chunkCount: 10, chunkSizeBytes: 100, present: { $0 < 7 })
        s.addSource(a, holds: .all)
        let asg = s.assign(now: .zero)
        #expect(Set(asg.flatMap(\.indices)) == [7, 8, 9])
    }

    @Test func excludedSourcesGetNoWorkAndTheirChunksGoToTheOthers() {
        var s = FetchScheduler(chunkCount: 6, chunkSizeBytes: 100, present: { _ in false })
        s.addSource(a, holds: .all)
        s.addSource(b, holds: .all)
        let asg = s.assign(now: .zero, excluding: [a])
        #expect(asg.allSatisfy { $0.source == b })
        #expect(Set(asg.flatMap(\.indices)) == Set(0..<6))
        #expect(s.assign(now: .zero, excluding: [a, b]).isEmpty)
    }

    @Test func aCompleteHolderIsAskedFirstForTheChunksNoPartialHolderHas() {
        var cfg = FetchScheduler.Config()
        cfg.windowChunks = 2
        var s = FetchScheduler(chunkCount: 10, chunkSizeBytes: 100, present: { _ in false }, config: cfg)
        s.addSource(a, holds: .all)  // the origin
        s.addSource(b, holds: .bitmap(ChunkBitmap.make(count: 10) { $0 < 5 }))  // a receiver with chunks 0-4
        let asg = s.assign(now: .zero)
        let fromA = asg.filter { $0.source == a }.flatMap(\.indices)
        let fromB = asg.filter { $0.source == b }.flatMap(\.indices)
        #expect(fromA.count == 2 && fromA.allSatisfy { $0 >= 5 }, "the origin serves chunks only it has: \(fromA)")
        #expect(fromB.count == 2 && fromB.allSatisfy { $0 < 5 }, "\(fromB)")
        // Without partial holders the order is the plain one.
        var t = FetchScheduler(chunkCount: 10, chunkSizeBytes: 100, present: { _ in false }, config: cfg)
        t.addSource(a, holds: .all)
        #expect(t.assign(now: .zero).flatMap(\.indices) == [0, 1])
    }

    @Test func aChunkAPartialHolderCanServeIsNeverAskedOfTheCompleteHolderUnlessThatPartialHolderIsBackedOff() {
        var cfg = FetchScheduler.Config()
        cfg.windowChunks = 2
        var s = FetchScheduler(chunkCount: 10, chunkSizeBytes: 100, present: { _ in false }, config: cfg)
        s.addSource(a, holds: .all)  // the origin
        s.addSource(b, holds: .bitmap(ChunkBitmap.make(count: 10) { $0 < 8 }))  // a receiver with chunks 0-7
        let first = s.assign(now: .zero)
        #expect(first.filter { $0.source == a }.flatMap(\.indices).allSatisfy { $0 >= 8 }, "\(first)")
        let fromB = first.filter { $0.source == b }.flatMap(\.indices)
        #expect(fromB.count == 2)
        // The origin finishes its fresh chunks; b's window is full: the origin gets nothing b holds.
        for i in first.filter({ $0.source == a }).flatMap(\.indices) {
            _ = s.onChunkVerified(i, from: a, bytes: 100, elapsed: .milliseconds(1))
        }
        #expect(s.assign(now: .milliseconds(1)).isEmpty, "b's chunks wait for b")
        // b fails: it backs off, and the origin serves its chunks meanwhile.
        s.onRequestFailed(fromB, from: b, now: .milliseconds(2))
        let after = s.assign(now: .milliseconds(3))
        #expect(!after.isEmpty && after.allSatisfy { $0.source == a }, "\(after)")
    }

    @Test func receiversThatKnowOneAnotherAskTheCompleteHolderForDisjointSharesOfTheFreshChunksAndForAnyOnceNothingElseIsLeft() {
        let r1 = node(101), r2 = node(102), r3 = node(103)
        var cfg = FetchScheduler.Config()
        cfg.windowChunks = 64
        cfg.completeSourceWindowWithPartials = 64
        func fromOrigin(_ me: NodeID, _ others: [NodeID], present: @escaping (Int) -> Bool = { _ in false }) -> Set<Int> {
            var c = cfg
            c.localNode = me
            var s = FetchScheduler(chunkCount: 60, chunkSizeBytes: 100, present: present, config: c)
            s.addSource(a, holds: .all)
            for o in others { s.addSource(o, holds: .bitmap(ChunkBitmap.make(count: 60) { $0 == 0 })) }
            return Set(s.assign(now: .zero).filter { $0.source == a }.flatMap(\.indices))
        }
        let m1 = fromOrigin(r1, [r2, r3]), m2 = fromOrigin(r2, [r1, r3]), m3 = fromOrigin(r3, [r1, r2])
        #expect(m1.isDisjoint(with: m2) && m1.isDisjoint(with: m3) && m2.isDisjoint(with: m3), "\(m1) \(m2) \(m3)")
        #expect(m1.union(m2).union(m3) == Set(1..<60), "together they cover every fresh chunk once")
        #expect(!m1.isEmpty && !m2.isEmpty && !m3.isEmpty)
        // r1 holds its share and chunk 0: with nothing else to do, it asks for the others' shares.
        let rest = fromOrigin(r1, [r2, r3], present: { $0 == 0 || m1.contains($0) })
        #expect(rest == m2.union(m3))
    }

    @Test func whilePartialHoldersAreKnownAReceiverCommitsFewChunksToACompleteHolderInItsOwnOrder() {
        var cfg = FetchScheduler.Config()
        cfg.windowChunks = 8
        func fresh(_ first: Int) -> [Int] {
            var c = cfg
            c.firstChunk = first
            var s = FetchScheduler(chunkCount: 40, chunkSizeBytes: 100, present: { _ in false }, config: c)
            s.addSource(a, holds: .all)
            s.addSource(b, holds: .bitmap(ChunkBitmap.make(count: 40) { $0 < 2 }))
            return s.assign(now: .zero).filter { $0.source == a }.flatMap(\.indices)
        }
        let one = fresh(3), other = fresh(17)
        #expect(one.count == cfg.completeSourceWindowWithPartials, "\(one)")
        #expect(one.allSatisfy { $0 >= 2 } && other.allSatisfy { $0 >= 2 })
        #expect(Set(one) != Set(other), "two receivers take different fresh chunks: \(one) \(other)")
        // Alone with the complete holder, the whole window, in index order from firstChunk.
        var c = cfg
        c.firstChunk = 3
        var s = FetchScheduler(chunkCount: 40, chunkSizeBytes: 100, present: { _ in false }, config: c)
        s.addSource(a, holds: .all)
        #expect(s.assign(now: .zero).flatMap(\.indices) == Array(3..<11))
    }

    @Test func chunksAreHandedOutInOrderFromTheFirstChunkWrappingRound() {
        var cfg = FetchScheduler.Config()
        cfg.windowChunks = 4
        cfg.firstChunk = 13  // taken modulo the chunk count: 3
        var s = FetchScheduler(chunkCount: 10, chunkSizeBytes: 100, present: { $0 == 4 }, config: cfg)
        s.addSource(a, holds: .all)
        #expect(s.assign(now: .zero).flatMap(\.indices) == [3, 5, 6, 7])
        for i in [3, 5, 6, 7] { _ = s.onChunkVerified(i, from: a, bytes: 100, elapsed: .milliseconds(1)) }
        #expect(s.assign(now: .zero).flatMap(\.indices) == [8, 9, 0, 1])
    }

    @Test func workIsSpreadOverEverySourceAndTheFasterOneGetsMore() {
        var cfg = FetchScheduler.Config()
        cfg.windowChunks = 4
        var s = FetchScheduler(chunkCount: 100, chunkSizeBytes: 1000, present: { _ in false }, config: cfg)
        for n in [a, b, c] { s.addSource(n, holds: .all) }
        var got: [NodeID: Int] = [:]
        var t = Duration.zero
        // Source a is 4x faster than b and c: it answers 4 chunks per tick, the others 1.
        while !s.isComplete {
            let asg = s.assign(now: t)
            var pending = asg.flatMap { x in x.indices.map { (x.source, $0) } }
            var served: [NodeID: Int] = [:]
            while let (src, i) = pending.first {
                pending.removeFirst()
                let quota = src == a ? 4 : 1
                if served[src, default: 0] < quota {
                    served[src, default: 0] += 1
                    let cancel = s.onChunkVerified(i, from: src, bytes: 1000, elapsed: src == a ? .milliseconds(5) : .milliseconds(20))
                    pending.removeAll { cancel.contains($0.0) && $0.1 == i }
                    got[src, default: 0] += 1
                } else {
                    s.onRequestFailed([i], from: src, now: t) // not served this tick: hand back
                }
            }
            t += .seconds(60)
        }
        #expect(got.values.reduce(0, +) == 100)
        #expect(got[a, default: 0] > got[b, default: 0])
        #expect(got[b, default: 0] > 0 && got[c, default: 0] > 0)
    }

    @Test func aSourceServingCorruptChunksIsStruckThenDroppedAndOthersFinishTheItem() {
        var s = FetchScheduler(chunkCount: 20, chunkSizeBytes: 10, present: { _ in false })
        s.addSource(a, holds: .all)
        s.addSource(b, holds: .all)
        var t = Duration.zero
        var rounds = 0
        while !s.isComplete && rounds < 1000 {
            rounds += 1
            for x in s.assign(now: t) {
                for i in x.indices {
                    if x.source == b { s.onChunkCorrupt(i, from: b, now: t) } else { _ = s.onChunkVerified(i, from: a, bytes: 10, elapsed: .milliseconds(1)) }
                }
            }
            t += .seconds(1)
        }
        #expect(s.isComplete)
        #expect(s.stats(b)?.banned == true)
        #expect(s.stats(b)!.strikes >= FetchScheduler.Config().maxStrikes)
    }

    @Test func inTheEndgameIdleSourcesDuplicateTheLastChunksAndTheLoserIsCancelled() {
        var s = FetchScheduler(chunkCount: 1, chunkSizeBytes: 10, present: { _ in false })
        s.addSource(a, holds: .all)
        let first = s.assign(now: .zero)
        #expect(first == [.init(source: a, indices: [0])])
        s.addSource(b, holds: .all)
        let dup = s.assign(now: .zero)
        #expect(dup == [.init(source: b, indices: [0])])
        #expect(s.assign(now: .zero).isEmpty) // at most two copies
        let cancel = s.onChunkVerified(0, from: b, bytes: 10, elapsed: .milliseconds(1))
        #expect(cancel == [a])
        #expect(s.isComplete)
    }

    @Test func endgameDuplicatesGoOneChunkPerRequestSoThatACancelCoversThem() {
        var cfg = FetchScheduler.Config()
        cfg.windowChunks = 8
        var s = FetchScheduler(chunkCount: 6, chunkSizeBytes: 10, present: { _ in false }, config: cfg)
        s.addSource(a, holds: .all)
        #expect(s.assign(now: .zero).flatMap(\.indices).count == 6)  // a has everything in flight
        s.addSource(b, holds: .all)
        let dups = s.assign(now: .zero)
        #expect(!dups.isEmpty && dups.allSatisfy { $0.source == b && $0.indices.count == 1 }, "\(dups)")
    }

    @Test func aPeerStillReceivingServesOnlyWhatItHas() {
        var s = FetchScheduler(chunkCount: 8, chunkSizeBytes: 10, present: { _ in false })
        s.addSource(a, holds: .bitmap(ChunkBitmap.make(count: 8) { $0 < 3 }))
        #expect(Set(s.assign(now: .zero).flatMap(\.indices)) == [0, 1, 2])
        s.addSource(a, holds: .all)
        #expect(Set(s.assign(now: .zero).flatMap(\.indices)) == [3, 4, 5, 6, 7])
    }

    @Test func failedRequestsBackOffExponentiallyAndReturnTheirChunks() {
        var s = FetchScheduler(chunkCount: 2, chunkSizeBytes: 10, present: { _ in false })
        s.addSource(a, holds: .all)
        let x = s.assign(now: .zero)
        s.onRequestFailed(x.flatMap(\.indices), from: a, now: .zero)
        #expect(s.assign(now: .milliseconds(100)).isEmpty)
        #expect(s.nextWakeup(after: .milliseconds(100)) == .milliseconds(250))
        let y = s.assign(now: .milliseconds(250))
        s.onRequestFailed(y.flatMap(\.indices), from: a, now: .milliseconds(250))
        #expect(s.nextWakeup(after: .milliseconds(250)) == .milliseconds(750))
    }

    @Test func aSourceThatIsReachableAgainIsUsedAtOnceButKeepsItsStrikesAndFailureCount() {
        var s = FetchScheduler(chunkCount: 4, chunkSizeBytes: 10, present: { _ in false })
        s.addSource(a, holds: .all)
        // Eight failed connections: the source is backed off for 30 s (the maximum).
        for k in 0..<8 {
            let x = s.assign(now: .seconds(k * 40))
            s.onRequestFailed(x.flatMap(\.indices), from: a, now: .seconds(k * 40))
        }
        #expect(s.assign(now: .seconds(281)).isEmpty)
        s.onSourceReachable(a, now: .seconds(281))
        let again = s.assign(now: .seconds(281))
        #expect(!again.isEmpty)
        // If that session dies at once too, the backoff goes on from where it was (a peer that
        // crash-loops is not retried every 250 ms).
        s.onRequestFailed(again.flatMap(\.indices), from: a, now: .seconds(281))
        #expect(s.nextWakeup(after: .seconds(281)) == .seconds(311))

        // A banned source is not revived by a new session.
        var t = FetchScheduler(chunkCount: 4, chunkSizeBytes: 10, present: { _ in false })
        t.addSource(b, holds: .all)
        for k in 0..<3 {
            let x = t.assign(now: .seconds(k * 40))
            _ = t.onChunkCorrupt(x[0].indices[0], from: b, now: .seconds(k * 40))
        }
        t.onSourceReachable(b, now: .seconds(200))
        #expect(t.assign(now: .seconds(200)).isEmpty)
    }

    @Test func removingASourceReturnsItsChunksToThePool() {
        var s = FetchScheduler(chunkCount: 4, chunkSizeBytes: 10, present: { _ in false })
        s.addSource(a, holds: .all)
        _ = s.assign(now: .zero)
        s.removeSource(a)
        s.addSource(b, holds: .all)
        #expect(Set(s.assign(now: .zero).flatMap(\.indices)) == [0, 1, 2, 3])
    }
}

@Suite struct PathModelTests {
    @Test func aPathWithNoResetsHasNoBudgetLimit() {
        let p = PathModel()
        #expect(p.workBudgetBytes(ageSeconds: 100) == nil)
        #expect(!p.shouldOpenSuccessor(ageSeconds: 100))
    }

    @Test func resetsAfterFourToEightSecondsTeachAShortBudgetAndAnEarlySuccessor() {
        var p = PathModel(initialThroughputBytesPerSecond: 10_000_000)
        for life in [4.2, 7.9, 5.5, 4.0, 6.1, 7.2, 4.8, 5.0] {
            p.onConnectionEnded(afterSeconds: life, byReset: true)
            p.onSessionEstablished()  // the reconnect succeeds: the path did it
        }
        p.onConnectionEnded(afterSeconds: 100, byReset: false) // closed on purpose: not a lifetime sample
        let life = p.typicalLifetimeSeconds!
        #expect(life >= 4.0 && life <= 5.0)
        #expect(p.workBudgetBytes(ageSeconds: 0)! <= Int(life * 0.6 * 10_000_000) + 1)
        #expect(p.workBudgetBytes(ageSeconds: life) == 0)
        #expect(p.shouldOpenSuccessor(ageSeconds: life * 0.5))
        #expect(!p.shouldOpenSuccessor(ageSeconds: 0.5))
    }

    @Test func aResetCountsOnlyOnceTheNextSessionWithThePeerIsEstablished() {
        var p = PathModel()
        p.onConnectionEnded(afterSeconds: 5, byReset: true)
        #expect(p.typicalLifetimeSeconds == nil)
        #expect(p.workBudgetBytes(ageSeconds: 0) == nil)
        p.onSessionEstablished()
        #expect(p.typicalLifetimeSeconds == 5)
    }

    @Test func aPeerThatCrashedDoesNotTeachThePathALifetime() {
        var p = PathModel()
        // The connection and its successor die together, then the redial is refused.
        p.onConnectionEnded(afterSeconds: 1.7, byReset: true)
        p.onConnectionEnded(afterSeconds: 0.9, byReset: true)
        p.onPeerUnreachable()
        // The peer restarts and is dialled again: nothing was learned, no budget applies.
        p.onSessionEstablished()
        #expect(p.typicalLifetimeSeconds == nil)
        #expect(p.workBudgetBytes(ageSeconds: 0) == nil)
        #expect(!p.shouldOpenSuccessor(ageSeconds: 10))
        #expect(p.resets == 2)
    }
}
