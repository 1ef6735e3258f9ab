import Gossip
import Store
import Sync

/// This node's own holder records and node facts (docs/PROTOCOL.md §4.6, §4.7): entries of its
/// own log, written and announced like a put, so they replicate by push, repair and
/// anti-entropy and count in the digest.
///
/// **Holdings.** What the log says this node holds (`Holdings.held(by: me)`) is kept equal to
/// what the store holds complete. A completed download, a collection, a compaction's
/// restatement or the periodic check names contents whose state may have changed; they are
/// compared with the store at most every `holdingsDebounce` and the differences written as one
/// holding entry per ≤ 120 contents. At start every content the manifest names is compared
/// (a crash between a change and its record is repaired then). A put states "held" by itself.
///
/// **Facts.** Written at start when they differ from the last stated, and then when a configured
/// fact changes, or the data dir's file system's use or free space moved by ≥ 1 % of its size
/// (at least 1 MiB), at most every `factsMinInterval`.
struct HoldingsWriterState {
    var pending: Set<ContentID> = []
    var timer: LoopTimer?
    var lastWriteAt = Instant.zero
    var lastFactsAt = Instant.zero
    var lastCheckAt = Instant.zero
    var recordsWritten: UInt64 = 0
    var factsWritten: UInt64 = 0
}

extension MeshNode {
    static let holdingsDebounceNs: Int64 = 500_000_000
    static let factsMinIntervalNs: Int64 = 30_000_000_000
    /// How often what the log says this node holds is checked against the store.
    static let holdingsCheckIntervalNs: Int64 = 600_000_000_000

    func startHoldings() {
        let me = identity.nodeID
        var all = holdings.mentioned(by: me)
        for e in gossip.manifest.allEntries { if let p = e.put { all.insert(p.contentID) } }
        writeHoldingDifferences(all)
        holdingsWriter.lastCheckAt = Self.now()
        writeFactsIfChanged(now: Self.now(), force: true)
    }

    func stopHoldings() {
        holdingsWriter.timer?.close()
        holdingsWriter.timer = nil
    }

    /// Whether this node holds these contents complete may have changed: record it soon.
    func holdingsMayHaveChanged<S: Sequence>(_ contents: S) where S.Element == ContentID {
        guard !stopping else { return }
        holdingsWriter.pending.formUnion(contents)
        guard !holdingsWriter.pending.isEmpty else { return }
        if holdingsWriter.timer == nil {
            holdingsWriter.timer = try? LoopTimer(loop: loop) { [unowned self] in self.flushHoldings() }
        }
        guard let t = holdingsWriter.timer, !t.isActive else { return }
        // Batched: what changes within one debounce goes into one record, and records are at
        // least one debounce apart (the timer is armed again only after it fired).
        t.start(after: .nanoseconds(Self.holdingsDebounceNs))
    }

    func flushHoldings() {
        guard !stopping else { return }
        let cs = holdingsWriter.pending
        holdingsWriter.pending = []
        writeHoldingDifferences(cs)
    }

    /// Housekeeping: facts that changed, and now and then the store against the log.
    func holdingsHousekeeping(now: Instant) {
        guard !stopping else { return }
        writeFactsIfChanged(now: now, force: false)
        if now - holdingsWriter.lastCheckAt >= Self.holdingsCheckIntervalNs {
            holdingsWriter.lastCheckAt = now
            holdingsMayHaveChanged(holdings.held(by: identity.nodeID))
        }
    }

    /// Compares each content's state in the store with the log's, and records the differences.
    func writeHoldingDifferences<S: Sequence>(_ contents: S) where S.Element == ContentID {
        let me = identity.nodeID
        var held = [ContentID](), dropped = [ContentID]()
        for c in contents {
            let truth = (try? store.isComplete(c)) == true
            let said = holdings.latest(me, c)?.held == true
            if truth && !said { held.append(c) } else if !truth && said { dropped.append(c) }
        }
        writeHoldingRecords(held: held, dropped: dropped)
    }

    /// Writes and announces holding entries (≤ 120 contents each).
    func writeHoldingRecords(held: [ContentID], dropped: [ContentID]) {
        let all = held.map { ($0, true) } + dropped.map { ($0, false) }
        guard !all.isEmpty else { return }
        var i = 0
        while i < all.count {
            let part = all[i..<min(all.count, i + ManifestEntry.Holding.maxContents)]
            i += part.count
            let h = ManifestEntry.Holding(held: part.filter(\.1).map(\.0), dropped: part.filter { !$0.1 }.map(\.0))
            guard writeOwn(.holding(h), what: "holder record") != nil else { return }
            holdingsWriter.recordsWritten += 1
        }
        holdingsWriter.lastWriteAt = Self.now()
        logger.debug("holder records written", metadata: ["held": "\(held.count)", "dropped": "\(dropped.count)"])
    }

    /// This node's facts now: the configured ones and its data dir's file system.
    func currentFacts() -> ManifestEntry.NodeFacts {
        let disk = (try? DiskSpace.of(store.dataDir).get()) ?? DiskSpace(totalBytes: 0, freeBytes: 0)
        let roles = options.facts.roles.filter { !$0.isEmpty && $0.utf8.count <= ManifestEntry.NodeFacts.maxRoleBytes }
        var unique = [String]()
        for r in roles where !unique.contains(r) { unique.append(r) }
        return ManifestEntry.NodeFacts(
            roles: Array(unique.prefix(ManifestEntry.NodeFacts.maxRoles)), ephemeral: options.facts.ephemeral,
            excluded: options.facts.excluded, full: placementState.full, diskTotalBytes: disk.totalBytes, diskUsedBytes: disk.usedBytes,
            diskFreeBytes: disk.freeBytes, nfsGroup: String(decoding: options.facts.nfsGroup.utf8.prefix(ManifestEntry.NodeFacts.maxGroupBytes), as: UTF8.self),
            policyHash: placementPolicyHash)
    }

    /// Whether `new` differs from `old` enough to state again (docs/PROTOCOL.md §4.7).
    static func factsChanged(_ old: ManifestEntry.NodeFacts?, _ new: ManifestEntry.NodeFacts) -> Bool {
        guard let old else { return true }
        if old.roles != new.roles || old.ephemeral != new.ephemeral || old.excluded != new.excluded
            || old.full != new.full || old.nfsGroup != new.nfsGroup || old.policyHash != new.policyHash { return true }
        let step = max(UInt64(1 << 20), new.diskTotalBytes / 100)
        func moved(_ a: UInt64, _ b: UInt64) -> Bool { (a > b ? a - b : b - a) >= step }
        return moved(old.diskTotalBytes, new.diskTotalBytes) || moved(old.diskUsedBytes, new.diskUsedBytes)
            || moved(old.diskFreeBytes, new.diskFreeBytes)
    }

    func writeFactsIfChanged(now: Instant, force: Bool) {
        let f = currentFacts()
        guard Self.factsChanged(holdings.facts(of: identity.nodeID)?.facts, f) else { return }
        guard force || holdingsWriter.lastFactsAt == .zero || now - holdingsWriter.lastFactsAt >= Self.factsMinIntervalNs else { return }
        guard writeOwn(.nodeFacts(f), what: "node facts") != nil else { return }
        holdingsWriter.lastFactsAt = now
        holdingsWriter.factsWritten += 1
    }

    /// Writes one entry of this node's log and announces it.
    @discardableResult
    func writeOwn(_ payload: ManifestEntry.Payload, what: String) -> ManifestEntry? {
        do {
            let e = try store.writeOwnEntry(payload, signer: identity)
            announce(e)
            return e
        } catch {
            storeWriteFailed("write \(what)", error)
            return nil
        }
    }

    /// Holders of every content, by the replicated records (`ls --json`, the `holders` verb).
    public func replicatedHolders() -> [ContentID: Set<NodeID>] { holdings.allHolders }
}
