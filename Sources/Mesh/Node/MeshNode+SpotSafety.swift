import Foundation
import Gossip
import Store
import Sync

/// The origin's side of push-to-2 and the spot outbox (docs/SYNC.md, "Spot nodes"): every item
/// this node puts (a `put`, a folder's snapshot) is offered at once to `push_copies` durable
/// custodians (`Custody.custodians`). On an ephemeral node the item is also **at risk** until a
/// durable node holds it complete: it is recorded in the store's outbox (so it survives `kill
/// -9`: at start every item there, and every kept put of this node with no durable holder on
/// record, is tracked again), asked for again elsewhere whenever an ask fails
/// (`SafetyTracker`), and removed once a custodian replies `complete` or a holder record says
/// a durable node holds it.
///
/// **Stopping** (SIGTERM; `finalSync`): the send folders take a final snapshot, then the node
/// waits until nothing is at risk or `shutdown_deadline` passes, while it keeps serving.
struct SpotState {
    var tracker = SafetyTracker()
    /// Outstanding `take` requests: content and custodian, by request id.
    var requests: [UInt32: (content: ContentID, custodian: NodeID, at: Instant)] = [:]
    var nextRequestID: UInt32 = 1
    var timer: LoopTimer?
    var takesSent: UInt64 = 0
    var safeCount: UInt64 = 0
    /// Wall-clock ms each item became safe minus when it was put, for `status` (the last one).
    var lastSafeAfterMs: Int64?
    var finalSyncRunning = false
}

/// `status --json`'s `node.spot`.
public struct SpotStatus: Codable, Sendable, Equatable {
    public var ephemeral: Bool
    public var pushCopies: Int
    /// Items this node originated that no durable node holds yet, their bytes, and how long the
    /// oldest has waited (s).
    public var atRiskItems: Int
    public var atRiskBytes: UInt64
    public var oldestAtRiskSeconds: Double?
    /// Up to 20 of them, oldest first.
    public var atRisk: [AtRiskRow]
    /// `take`s sent; items that became safe since start; the last one's time from put to safe (ms).
    public var takesSent: UInt64
    public var madeSafe: UInt64
    public var lastSafeAfterMs: Int64?
    /// As a custodian: `take`s received, accepted, refused.
    public var takesReceived: UInt64
    public var takesAccepted: UInt64
    public var takesRefused: UInt64

    public struct AtRiskRow: Codable, Sendable, Equatable {
        public var id: String
        public var name: String?
        public var size: UInt64
        public var ageSeconds: Double
        /// Custodians asked and not failed yet, by name.
        public var asked: [String]
        enum CodingKeys: String, CodingKey { case id, name, size, ageSeconds = "age_s", asked }
    }

    enum CodingKeys: String, CodingKey {
        case ephemeral, pushCopies = "push_copies", atRiskItems = "at_risk_items", atRiskBytes = "at_risk_bytes"
        case oldestAtRiskSeconds = "oldest_at_risk_s", atRisk = "at_risk", takesSent = "takes_sent", madeSafe = "made_safe"
        case lastSafeAfterMs = "last_safe_after_ms", takesReceived = "takes_received", takesAccepted = "takes_accepted"
        case takesRefused = "takes_refused"
    }
}

/// An item a stopping node left at risk (`finalSync`'s report).
public struct UnsavedItem: Sendable, Equatable {
    public var contentID: ContentID
    public var name: String?
    public var sizeBytes: UInt64
    public var ageSeconds: Double
}

extension MeshNode {
    static let spotTickInterval: Duration = .seconds(1)

    var isEphemeral: Bool { options.facts.ephemeral }

    /// At start: the outbox and this node's kept puts with no durable holder are at risk again.
    func startSpotSafety() {
        var config = SafetyTracker.Config()
        config.pushCopies = options.pushCopies
        let restored = ((try? store.outboxItems()) ?? []).map {
            SafetyTracker.Item(content: $0.contentID, type: $0.type, sizeBytes: $0.sizeBytes, enqueuedMs: $0.enqueuedMs)
        }
        if !isEphemeral {
            // A node that is no longer ephemeral holds its own items on a durable disk.
            for i in restored { try? store.removeOutbox(i.content) }
            spot.tracker = SafetyTracker(config: config)
        } else {
            // A put whose outbox row a crash prevented (or an outbox from before this one) is
            // at risk too, unless a durable holder is on record.
            var items = restored
            var known = Set(restored.map(\.content))
            let view = spotView()
            for e in keeper.keptEntries where e.origin == identity.nodeID {
                guard let p = e.put, known.insert(p.contentID).inserted,
                      !holdings.holders(of: p.contentID).contains(where: { view.isDurable($0) }) else { continue }
                let item = OutboxItem(contentID: p.contentID, type: p.type, sizeBytes: p.sizeBytes, enqueuedMs: WallClock.nowMs())
                try? store.enqueueOutbox(item)
                items.append(SafetyTracker.Item(content: p.contentID, type: p.type, sizeBytes: p.sizeBytes, enqueuedMs: item.enqueuedMs))
            }
            spot.tracker = SafetyTracker(config: config, restoring: items)
            if !items.isEmpty {
                logger.notice("items at risk from before the restart: pushing them again",
                              metadata: ["items": "\(items.count)", "bytes": "\(spot.tracker.atRiskBytes)"])
            }
        }
        if let t = try? LoopTimer(loop: loop) {
            t.onFire = { [unowned self] in self.spotTick() }
            t.start(after: Self.spotTickInterval, repeating: Self.spotTickInterval)
            spot.timer = t
        }
    }

    func stopSpotSafety() {
        spot.timer?.close()
        spot.timer = nil
    }

    func spotView() -> SafetyTracker.View {
        var rtt = [NodeID: Int64]()
        for m in gossip.memberSnapshots() where !m.isSelf { if let r = m.rttNanoseconds { rtt[m.node] = r } }
        // Only members whose facts have arrived: one whose facts are unknown might be ephemeral,
        // and must neither be asked nor count as the durable holder that makes an item safe.
        let facts = placementFacts().filter { $0.key == identity.nodeID || holdings.facts(of: $0.key) != nil }
        let avoid = Set(facts.keys.filter { $0 != identity.nodeID && blobs?.breakerAllowsQuestions($0) == false })
        return SafetyTracker.View(me: identity.nodeID, alive: facts, rttNs: rtt, policy: options.placement, avoid: avoid)
    }

    /// This node just put `entry` (announce): offer it to custodians; at risk if ephemeral.
    func spotOriginated(_ entry: ManifestEntry) {
        guard let p = entry.put, entry.origin == identity.nodeID, !stopping else { return }
        let wasTracked = spot.tracker.tracked[p.contentID] != nil
        let d = spot.tracker.originated(p.contentID, type: p.type, sizeBytes: p.sizeBytes, durableHere: !isEphemeral,
                                        nowMs: WallClock.nowMs(), now: Self.now(), view: spotView(),
                                        heldBy: holdings.holders(of: p.contentID))
        if !wasTracked, let item = spot.tracker.tracked[p.contentID] {
            do {
                try store.enqueueOutbox(OutboxItem(contentID: item.content, type: item.type, sizeBytes: item.sizeBytes,
                                                   enqueuedMs: item.enqueuedMs))
            } catch {
                storeWriteFailed("record an item at risk in the outbox", error)
            }
        }
        applySpot(d, entry: entry)
    }

    func applySpot(_ directives: [SafetyTracker.Directive], entry: ManifestEntry? = nil) {
        for d in directives {
            switch d {
            case .ask(let c, let custodian):
                guard let e = entry?.put?.contentID == c ? entry : putEntry(of: c) else { continue }
                let id = spot.nextRequestID
                spot.nextRequestID = spot.nextRequestID == .max ? 1 : spot.nextRequestID + 1
                spot.requests[id] = (c, custodian, Self.now())
                spot.takesSent += 1
                sendCustody(CustodyMessage.take(requestID: id, target: custodian, entry: e, issuedMs: WallClock.nowMs(), signer: identity),
                            to: custodian)
                logger.debug("take sent", metadata: ["item": "\(c.short)", "custodian": "\(gossip.memberName(custodian) ?? custodian.short)"])
            case .safe(let c, let by):
                do { try store.removeOutbox(c) } catch { storeWriteFailed("remove a safe item from the outbox", error) }
                spot.requests = spot.requests.filter { $0.value.content != c }
                if let by {
                    spot.safeCount += 1
                    if let e = putEntry(of: c) { spot.lastSafeAfterMs = WallClock.nowMs() - Int64(e.hlc >> 16) }
                    logger.debug("item safe", metadata: ["item": "\(c.short)", "holder": "\(gossip.memberName(by) ?? by.short)"])
                }
            }
        }
    }

    /// A put of `c` from the store (by its content index): what a `take` carries (a custodian
    /// accepts any valid put of the content) and where the name in `status` comes from.
    func putEntry(of c: ContentID) -> ManifestEntry? { (try? store.entry(contentID: c)) ?? nil }

    func receivedTakeReply(_ id: UInt32, _ content: ContentID, _ status: CustodyMessage.TakeStatus, from peer: NodeID) {
        guard let r = spot.requests[id], r.custodian == peer, r.content == content else { return }
        let reply: SafetyTracker.Reply
        switch status {
        case .accepted: reply = .accepted
        case .complete: reply = .complete
        case .full, .excluded, .invalid, .stopping: reply = .refused
        }
        if reply != .accepted { spot.requests[id] = nil }
        if reply == .refused {
            logger.info("custodian refused an item", metadata: ["item": "\(content.short)", "custodian": "\(gossip.memberName(peer) ?? peer.short)",
                                                                 "status": "\(status)"])
        }
        applySpot(spot.tracker.replied(content, from: peer, reply, now: Self.now(), view: spotView()))
    }

    /// A holder record from `origin` says it holds `held` complete.
    func spotHoldersAppeared(_ held: [ContentID], _ origin: NodeID) {
        guard !spot.tracker.tracked.isEmpty else { return }
        let view = spotView()
        for c in held where spot.tracker.tracked[c] != nil {
            applySpot(spot.tracker.holderSeen(c, origin, now: Self.now(), view: view))
        }
    }

    /// The keeper released these contents: an item of ours among them is no longer at risk.
    func spotReleased<S: Sequence>(_ contents: S) where S.Element == ContentID {
        for c in contents { applySpot(spot.tracker.released(c)) }
    }

    func spotTick() {
        guard !stopping else { return }
        let now = Self.now()
        // Requests no one will answer any more (the tracker asks again elsewhere).
        spot.requests = spot.requests.filter { now - $0.value.at < 3_600_000_000_000 }
        guard !spot.tracker.tracked.isEmpty else { return }
        let holdings = self.holdings
        applySpot(spot.tracker.tick(now: now, view: spotView(), holders: { holdings.holders(of: $0) }))
    }

    func spotStatus() -> SpotStatus {
        let nowMs = WallClock.nowMs()
        let items = spot.tracker.tracked.values.sorted { ($0.enqueuedMs, $0.content) < ($1.enqueuedMs, $1.content) }
        let rows = items.prefix(20).map { i in
            SpotStatus.AtRiskRow(id: "\(i.content)", name: putEntry(of: i.content)?.name, size: i.sizeBytes,
                                 ageSeconds: Double(max(0, nowMs - i.enqueuedMs)) / 1000,
                                 asked: i.asked.keys.sorted().map { gossip.memberName($0) ?? $0.short })
        }
        return SpotStatus(ephemeral: isEphemeral, pushCopies: options.pushCopies, atRiskItems: items.count,
                          atRiskBytes: spot.tracker.atRiskBytes,
                          oldestAtRiskSeconds: spot.tracker.oldestEnqueuedMs.map { Double(max(0, nowMs - $0)) / 1000 },
                          atRisk: Array(rows), takesSent: spot.takesSent, madeSafe: spot.safeCount, lastSafeAfterMs: spot.lastSafeAfterMs,
                          takesReceived: custody.takesReceived, takesAccepted: custody.takesAccepted, takesRefused: custody.takesRefused)
    }

    // MARK: - Stopping

    /// SIGTERM: a final snapshot of every send folder (pushed like any put), then waits, while
    /// serving, until nothing this node originated is at risk or `deadline` passes; `done`
    /// gets what is left (empty: everything is safe). Call `stop` after it.
    public func finalSync(deadline: Duration, done: @escaping ([UnsavedItem]) -> Void) {
        loop.assertInLoop("MeshNode.finalSync")
        guard !stopping, !spot.finalSyncRunning else { return done([]) }
        spot.finalSyncRunning = true
        let giveUpAt = Self.now().advanced(byNanoseconds: Self.nanos(deadline))
        // Re-armed for the deadline: every item at risk is offered to up to
        // `maxOutstandingPerItem` custodians at once, and an ask not accepted within a quarter of
        // the deadline gives way to the next (meshsim's `spot` scenario lost an item with notice
        // when both first custodians had died unnoticed and the 10 s accept timeout outlasted a
        // 10 s deadline). Replies to the asks already out still count (by request id).
        var urgent = spot.tracker.config
        if urgent.pushCopies > 0 { urgent.pushCopies = max(urgent.pushCopies, urgent.maxOutstandingPerItem) }
        urgent.acceptTimeoutNs = min(urgent.acceptTimeoutNs, max(250_000_000, Self.nanos(deadline) / 4))
        spot.tracker = SafetyTracker(config: urgent, restoring: Array(spot.tracker.tracked.values))
        spotTick()
        let report: () -> Void = { [unowned self] in
            let nowMs = WallClock.nowMs()
            done(spot.tracker.tracked.values.sorted { $0.enqueuedMs < $1.enqueuedMs }.map { i in
                UnsavedItem(contentID: i.content, name: putEntry(of: i.content)?.name, sizeBytes: i.sizeBytes,
                            ageSeconds: Double(max(0, nowMs - i.enqueuedMs)) / 1000)
            })
        }
        let wait: () -> Void = { [unowned self] in
            guard let t = try? LoopTimer(loop: loop) else { return report() }
            t.onFire = { [unowned self, t] in
                if spot.tracker.tracked.isEmpty || Self.now() >= giveUpAt || stopping {
                    t.close()
                    report()
                } else {
                    t.start(after: .milliseconds(50))
                }
            }
            t.start(after: .zero)
        }
        guard let folders else { return wait() }
        let left = max(0, giveUpAt - Self.now())
        folders.finalSnapshot(timeout: .nanoseconds(left)) { wait() }
    }
}
