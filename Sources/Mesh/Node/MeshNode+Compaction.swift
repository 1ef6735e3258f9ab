import Gossip
import Store
import Sync

/// Compacting this node's own log (docs/PROTOCOL.md §4.5): now and then the pure planner
/// (`Sync.Compactor`) is asked whether some of this node's entries have been dead for longer
/// than `compact_after`; if so, a compaction entry is written, stored and announced like a
/// put. Applying it (deleting the voided entries here and on every receiver) is the gossip
/// core's `.compacted` directive.
extension MeshNode {
    /// How often the planner runs: a quarter of the horizon, between 1 s and 1 h.
    var compactionCheckIntervalNs: Int64 {
        let quarter = Self.nanos(options.compactAfter) / 4
        return min(max(quarter, 1_000_000_000), 3_600_000_000_000)
    }

    func compactIfDue(now: Instant) {
        guard options.compactAfter > .zero, !stopping,
              lastCompactionCheck == .zero || now - lastCompactionCheck >= compactionCheckIntervalNs else { return }
        lastCompactionCheck = now
        compactNow()
    }

    /// Runs the planner once; writes and announces a compaction if it found one. Returns it.
    @discardableResult
    func compactNow(nowMs: Int64 = WallClock.nowMs()) -> ManifestEntry? {
        var inputs = compactionInputs(nowMs: nowMs)
        // Own dead puts that still carry this node's only statement about a content it holds are
        // restated first (PROTOCOL §4.6), so that compacting them unsays nothing.
        let held = Set(Compactor.deadLatestPuts(inputs).filter { (try? store.isComplete($0)) == true })
        inputs.holds = held
        let restate = Compactor.restatements(inputs)
        if !restate.isEmpty {
            writeHoldingRecords(held: restate, dropped: [])
            inputs = compactionInputs(nowMs: nowMs)
            inputs.holds = held
        }
        guard let plan = Compactor.plan(inputs) else { return nil }
        do {
            let e = try store.writeCompaction(plan, signer: identity, nowMs: nowMs)
            logger.info("compacted this node's log", metadata: [
                "sequence": "\(e.sequence)", "ranges": "\(plan.ranges.count)",
                "sequences": "\(plan.count)", "dependencies": "\(plan.dependencies.count)"])
            announce(e)
            return e
        } catch {
            storeWriteFailed("write a compaction entry", error)
            return nil
        }
    }

    func compactionInputs(nowMs: Int64) -> Compactor.Inputs {
        let me = identity.nodeID
        return Compactor.Inputs(
            own: me, ownEntries: gossip.manifest.entries(of: me), catalog: keeper.catalog,
            current: gossip.manifest.compaction(of: me), compactionSequences: gossip.manifest.compactionSequences,
            nowMs: nowMs, horizonMs: Self.nanos(options.compactAfter) / 1_000_000)
    }
}
