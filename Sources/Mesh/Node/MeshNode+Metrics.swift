// The node's metrics (Prometheus text format at `GET /metrics`) and the HTTP server that
// serves them and `GET /health`. Names follow Prometheus' conventions: base units in the
// name (`_seconds`, `_bytes`), `_total` on counters, label values from fixed sets only.
import Gossip
import Prometheus
import Store

/// What the node keeps for metrics and health beyond its own counters. Loop-confined.
public final class NodeObservability: @unchecked Sendable {
    // @unchecked: loop-confined, like the node that owns it.
    public let metrics = MetricsRegistry()
    /// From an item's announcement to its content complete here.
    let syncDuration: ValueHistogram
    var registered = false
    var http: HTTPServer?
    var storeWriteErrors: UInt64 = 0
    var lastStoreWriteError: (at: Instant, message: String)?
    var lastNoSpaceAt: Instant?
    var slow: (at: Instant, value: SlowGauges)?

    /// Numbers that cost a query or a scan, refreshed at most every `slowGaugesMaxAgeNs`.
    struct SlowGauges {
        var store: Result<StoreGauges, MeshError>
        var liveNames: Int
        var underMinCopies: Int
    }
    static let slowGaugesMaxAgeNs: Int64 = 2_000_000_000

    init() {
        syncDuration = metrics.histogram(
            "meshnode_sync_duration_seconds",
            "Time from an item's announcement (its created_ms, or when this node received the entry if that is earlier) to its content being complete here.",
            buckets: SyncDurationBuckets.seconds)
    }

    func close() {
        http?.close()
        http = nil
    }
}

extension MeshNode {
    /// The Prometheus text exposition of this node's metrics (refreshed now). Loop thread.
    public func metricsExposition() -> [UInt8] {
        loop.assertInLoop("MeshNode.metricsExposition")
        if !observability.registered {
            observability.registered = true
            registerMetrics(observability.metrics)
        }
        return observability.metrics.exposition()
    }

    /// Every metric read from the node at scrape time: one line each.
    func registerMetrics(_ m: MetricsRegistry) {
        let others = { [unowned self] in self.gossip.memberSnapshots().filter { !$0.isSelf } }
        let blob = { [unowned self] in self.blobs?.counters ?? BlobCounters() }
        let g = { [unowned self] in self.gossip.counters }
        let slow = { [unowned self] in self.slowGauges() }
        func fromStore(_ f: (StoreGauges) -> Double) -> Double {
            if case .success(let s) = slow().store { return f(s) }
            return 0
        }
        let disk = { [unowned self] in (try? DiskSpace.of(self.store.dataDir).get()) ?? DiskSpace(totalBytes: 0, freeBytes: 0) }

        // Membership and sessions.
        m.gauges("meshnode_members", "Members other than this node, by state.", label: "state", values: MemberStateLabels.all) {
            others().reduce(into: [:]) { $0[$1.state.label, default: 0] += 1 }
        }
        m.gauge("meshnode_sessions", "Open peer sessions (established or in their handshake).") { [unowned self] in Double(self.sessionCount) }
        m.counter("meshnode_sessions_opened_total", "Peer sessions opened (inbound and outbound).") { [unowned self] in self.runtime.sessionsOpened }
        m.counter("meshnode_sessions_closed_total", "Peer sessions closed.") { [unowned self] in self.runtime.sessionsClosed }
        m.counters("meshnode_sessions_established_total", "Peer sessions established, by how the stream was made.", label: "route",
                   values: RouteLabels.all) { [unowned self] in self.runtime.sessionsEstablished }
        m.gauge("meshnode_circuit_open_peers", "Peers whose transfer circuit breaker is open (no request goes to them until recovery).") {
            [unowned self] in Double(self.blobs?.openBreakers ?? 0)
        }
        m.counter("meshnode_circuit_opens_total", "Times a peer's transfer circuit breaker opened.") {
            [unowned self] in (self.blobs?.breakers.byPeer.values.reduce(0) { $0 + $1.opens }) ?? 0
        }

        // Gossip.
        m.counter("meshnode_gossip_messages_sent_total", "Gossip messages sent (datagrams and over sessions).") { g().messagesSent }
        m.counter("meshnode_gossip_messages_received_total", "Gossip messages received and accepted.") { g().messagesReceived }
        m.counter("meshnode_gossip_bytes_sent_total", "Bytes of gossip messages sent.") { g().bytesSent }
        m.counter("meshnode_gossip_bytes_received_total", "Bytes of gossip messages received.") { g().bytesReceived }
        m.counter("meshnode_gossip_probes_total", "SWIM probes sent.") { g().probes }
        m.counter("meshnode_gossip_probes_failed_total", "SWIM probes that got no ack, directly or indirectly.") { g().failedProbes }
        m.counter("meshnode_gossip_suspicions_total", "Members this node started suspecting.") { g().suspicionsRaised }
        m.counter("meshnode_gossip_anti_entropy_rounds_total", "Anti-entropy digest rounds.") { g().antiEntropyRounds }
        m.counter("meshnode_gossip_entries_accepted_total", "Manifest entries learned from peers.") { g().entriesAccepted }
        m.counter("meshnode_gossip_entries_compacted_total",
                  "Manifest entries deleted or refused because their origins compacted them (PROTOCOL §4.5).") { g().entriesCompacted }
        m.counter("meshnode_forks_total", "Forks seen: two different entries with one origin and sequence.") { [unowned self] in
            self.runtime.forks + g().forks
        }
        m.counters("meshnode_rejected_total", "Inputs dropped, by reason (the `rejected` of `meshnode status`).", label: "reason",
                   values: RejectCounter.names) { [unowned self] in self.nodeStatus().rejected }

        // The chunk exchange.
        m.counter("meshnode_chunk_bytes_received_total", "Chunk bytes received and verified (duplicates excluded).") { blob().bytesFetched }
        m.counter("meshnode_chunk_bytes_sent_total", "Chunk bytes served to peers.") { blob().bytesServed }
        m.counter("meshnode_chunks_received_total", "Chunks received and verified (duplicates excluded).") { blob().chunksFetched }
        m.counter("meshnode_chunks_sent_total", "Chunks served to peers.") { blob().chunksServed }
        m.counter("meshnode_chunks_duplicate_total", "Chunks that arrived twice (endgame); not in the received counts.") { blob().duplicateChunks }
        m.counter("meshnode_folder_chunks_copied_total", "Chunks of folder files copied from another folder file instead of fetched.") {
            BackingCounters.chunksCopied.load(ordering: .relaxed)
        }
        m.counter("meshnode_chunk_backing_mismatches_total", "Chunk backings dropped because the folder file's bytes no longer matched (edited).") {
            BackingCounters.mismatches.load(ordering: .relaxed)
        }
        m.counters("meshnode_p2p_request_errors_total", "Failed chunk requests and chunks refused on arrival, by reason.",
                   label: "reason", values: P2PRequestError.allCases.map(\.rawValue)) { blob().requestErrors }
        m.counter("meshnode_items_completed_total", "Items whose content this node finished fetching.") { blob().itemsCompleted }
        m.counter("meshnode_items_abandoned_total", "Items given up on because every recipe offered was refused.") { blob().itemsAbandoned }
        m.counter("meshnode_items_requeued_total", "Stalled items that gave their slot to a waiting one.") { blob().itemsRequeued }
        m.gauges("meshnode_transfers_in_flight", "Items being fetched, by state.", label: "state", values: TransferStateLabels.all) {
            [unowned self] in (self.blobs?.transfers() ?? []).reduce(into: [:]) { $0[$1.state, default: 0] += 1 }
        }

        // What this node holds.
        m.gauge("meshnode_items", "Item versions (puts) in the manifest, complete or not.") { fromStore { Double($0.items) } }
        m.gauge("meshnode_names", "Names with a live current version.") { Double(slow().liveNames) }
        m.gauge("meshnode_entries", "Manifest entries held (puts, tombstones, every origin).") { [unowned self] in Double(self.gossip.entries.count) }
        m.gauge("meshnode_store_chunks", "Chunks stored.") { fromStore { Double($0.chunks) } }
        m.gauge("meshnode_store_chunk_bytes", "Bytes of the chunks stored.") { fromStore { Double($0.chunkBytes) } }
        m.gauge("meshnode_outbox_pending_items", "Items this node originated that no durable node holds yet (the spot outbox).") { fromStore { Double($0.outboxRows) } }
        m.gauge("meshnode_items_under_min_copies",
                "Kept items with fewer complete copies on alive durable eligible nodes than their min_copies (1 without placement).") {
            Double(slow().underMinCopies)
        }
        m.counter("meshnode_store_write_errors_total", "Failed writes to the store (entries, members, chunks).") { [unowned self] in
            self.observability.storeWriteErrors
        }
        m.gauge("meshnode_disk_total_bytes", "Size of the file system holding the data dir.") { Double(disk().totalBytes) }
        m.gauge("meshnode_disk_free_bytes", "Space left for the node on the file system holding the data dir.") { Double(disk().freeBytes) }

        // The node itself.
        m.gauge("meshnode_start_time_seconds", "When this node started, in seconds since the Unix epoch.") { [unowned self] in
            Double(self.startedAtWallMs) / 1000
        }
        m.gauges("meshnode_health", "Health of each component: 0 healthy, 1 degraded, 2 unhealthy.", label: "component",
                 values: HealthReport.componentOrder) { [unowned self] in
            self.healthReport().components.mapValues { Double($0.status.rank) }
        }
        m.counters("meshnode_http_responses_total", "Responses of the metrics and health endpoint, by status code.", label: "code",
                   values: ["200", "400", "404", "405", "408", "431", "503", "505"]) { [unowned self] in
            (self.observability.http?.counters.responses ?? [:]).reduce(into: [:]) { $0["\($1.key)"] = $1.value }
        }
    }

    /// When this node started, wall clock (ms since the epoch).
    var startedAtWallMs: Int64 { WallClock.nowMs() - (Self.now() - startedAt) / 1_000_000 }

    /// The store's counts and the live names, at most `slowGaugesMaxAgeNs` old.
    func slowGauges() -> NodeObservability.SlowGauges {
        let now = Self.now()
        if let s = observability.slow, now - s.at < NodeObservability.slowGaugesMaxAgeNs { return s.value }
        let gauges: Result<StoreGauges, MeshError>
        do { gauges = .success(try store.gauges()) } catch { gauges = .failure(error) }
        let v = NodeObservability.SlowGauges(store: gauges,
                                             liveNames: keeper.catalog.liveNames(nowMs: WallClock.nowMs()).count,
                                             underMinCopies: itemsUnderMinCopies().count)
        observability.slow = (now, v)
        return v
    }

    // MARK: - Events

    /// The content of `id` is complete here: how long since it was announced.
    func itemSynced(_ id: ContentID, entry: ManifestEntry?, startedAt: Instant) {
        let nowMs = WallClock.nowMs()
        let received = (try? store.firstReceivedMs(of: id)) ?? nil
        var seconds = Double(Self.now() - startedAt) / 1e9
        if let e = entry, e.createdAtMs > 0, e.createdAtMs <= (received ?? nowMs) {
            seconds = Double(nowMs - e.createdAtMs) / 1000
        } else if let received {
            // The origin's clock is ahead of ours (or the entry has no time): our own receipt.
            seconds = Double(nowMs - received) / 1000
        }
        observability.syncDuration.record(max(0, seconds))
    }

    /// A write to the store failed (counted; the store turns degraded, and a full disk unhealthy).
    /// A store write failed: counted (`persist_errors`, the health check's write errors) and
    /// logged as "could not WHAT: error". The node carries on.
    func storeWriteFailed(_ what: String, _ error: any Error) {
        runtime.persistErrors += 1
        noteStoreWriteError(error)
        logger.error("could not \(what): \(error)")
    }

    func noteStoreWriteError(_ error: any Error) {
        let now = Self.now()
        observability.storeWriteErrors += 1
        let e = error as? MeshError
        observability.lastStoreWriteError = (now, e?.message ?? "\(error)")
        if e?.code == .noSpace { observability.lastNoSpaceAt = now }
    }

    // MARK: - HTTP

    /// Serves `/metrics` and `/health` at `setting` (nil: the default, 127.0.0.1:9946, where a
    /// port already taken is logged and skipped; configured: a bind failure is an error).
    public func startHTTP(_ setting: NodeConfig.MetricsListen?,
                          defaultEndpoint: Endpoint = NodeConfig.defaultMetricsListen) throws(MeshError) {
        loop.assertInLoop("MeshNode.startHTTP")
        let endpoint: Endpoint
        switch setting {
        case .off?: return
        case .at(let e)?: endpoint = e
        case nil: endpoint = defaultEndpoint
        }
        guard let address = SocketAddress(endpoint) else {
            throw MeshError(.configInvalid, "metrics_listen: \(endpoint) is not an IP address", hint: "write e.g. 127.0.0.1:9946")
        }
        let server: HTTPServer
        do {
            server = try HTTPServer(loop: loop, bind: address) { [unowned self] head in self.serveHTTP(head) }
        } catch {
            let why = error.uvStatus.map { MeshError.uvName($0) } ?? error.code.rawValue
            guard setting != nil else {
                logger.warning("not serving /metrics and /health: cannot listen on \(endpoint) (\(why)); set metrics_listen to a free address, or off")
                return
            }
            var e = error
            e.message = "cannot serve /metrics and /health on \(endpoint): \(why == "EADDRINUSE" ? "the port is in use" : why)"
            e.hint = "set metrics_listen (or --metrics-listen, MESHNODE_METRICS_LISTEN) to a free HOST:PORT, or to off"
            throw e
        }
        server.onRejected = { [unowned self] reason, peer, detail in self.count(reason, peer: peer, detail: detail) }
        observability.http = server
        logger.info("serving /metrics and /health", metadata: ["address": "\(server.localAddress)"])
    }

    /// Where `/metrics` and `/health` are served (nil: not served).
    public var httpAddress: SocketAddress? { observability.http?.localAddress }

    func serveHTTP(_ head: HTTPRequestHead) -> HTTPResponse {
        guard head.path == "/metrics" || head.path == "/health" else {
            return HTTPResponse(status: 404, text: "not found: \(head.path) (this server has /metrics and /health)")
        }
        guard head.method == "GET" || head.method == "HEAD" else {
            var r = HTTPResponse(status: 405, text: "\(head.method) is not allowed here; use GET")
            r.headers.append(("Allow", "GET, HEAD"))
            return r
        }
        if head.path == "/metrics" {
            return HTTPResponse(status: 200, contentType: MetricsRegistry.contentType, body: metricsExposition())
        }
        let report = healthReport()
        return HTTPResponse(status: report.status.httpStatus, contentType: "application/json", body: Array((report.jsonText + "\n").utf8))
    }
}
