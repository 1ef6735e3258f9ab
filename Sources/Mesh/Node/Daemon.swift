import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Gossip
import Logging
import Store

/// Everything `meshnode run` needs, resolved from flags, environment and the config file.
public struct NodeSettings: Sendable {
    public var dataDir: String
    public var config: NodeConfig
    public var advertise: PeerAddress?
    public var credential: [UInt8]
    /// The config file read, if any (named in log lines that say what to change).
    public var configPath: String?

    /// Resolves settings: flags > `MESHNODE_*` environment > config file > defaults.
    public static func resolve(dataDir: String, configFlag: String?, listen: String?, advertise: String?, join: [String],
                               name: String?, role: String?, logLevel: String?,
                               metricsListen: String? = nil, logFormat: String? = nil,
                               environment: [String: String] = ProcessInfo.processInfo.environment) throws(MeshError) -> NodeSettings {
        var flags = ConfigOverrides(configPath: configFlag, dataDirectory: dataDir)
        if let listen { flags.listen = try Validate.endpoint(listen, path: "--listen") }
        if !join.isEmpty {
            flags.join = try join.map { (s) throws(MeshError) in try Validate.endpoint(s, path: "--join", allowPortZero: false) }
        }
        if let name { flags.name = try Validate.name(name, path: "--name") }
        if let role { flags.role = try Validate.role(role, path: "--role") }
        if let logLevel { flags.logLevel = try Validate.logLevel(logLevel, path: "--log-level") }
        if let metricsListen { flags.metricsListen = try Validate.metricsListen(metricsListen, path: "--metrics-listen") }
        if let logFormat { flags.logFormat = try Validate.logFormat(logFormat, path: "--log-format") }
        let env = try ConfigOverrides.fromEnvironment(environment)
        let file = try NodeConfig.configPath(environment: env, flags: flags).map { (p) throws(MeshError) in try NodeConfig.load(path: p) }
        let config = NodeConfig.resolve(file: file, environment: env, flags: flags)
        var adv: PeerAddress?
        if let advertise {
            let e = try Validate.endpoint(advertise, path: "--advertise", allowPortZero: false)
            adv = PeerAddress(host: e.host, port: e.port)
        }
        var credential: [UInt8] = []
        if let certPath = config.certificate {
            credential = try CertificateFile.read(path: certPath)
        }
        return NodeSettings(dataDir: dataDir, config: config, advertise: adv, credential: credential,
                            configPath: NodeConfig.configPath(environment: env, flags: flags))
    }

    /// The runtime options these settings describe.
    public func nodeOptions(nodeName: String) -> MeshNodeOptions {
        let c = config
        var o = MeshNodeOptions(listen: PeerAddress(host: c.listen.host, port: c.listen.port),
                                advertise: advertise ?? c.ownAddress.map { PeerAddress(host: $0.host, port: $0.port) },
                                join: c.join.map { PeerAddress(host: $0.host, port: $0.port) })
        o.configPath = configPath
        o.gossip.name = c.name ?? nodeName
        o.gossip.role = c.role
        o.gossip.probeIntervalMs = max(50, Int64(MeshNode.nanos(c.probeInterval) / 1_000_000))
        // PROTOCOL §6.2's ratio: a 400 ms probe timeout at the default 800 ms interval.
        o.gossip.probeTimeoutMs = max(20, o.gossip.probeIntervalMs / 2)
        o.gossip.antiEntropyIntervalMs = max(100, Int64(MeshNode.nanos(c.antiEntropyInterval) / 1_000_000))
        o.admission = AdmissionPolicy(
            trustedNodes: Set(c.trustedKeys), authorities: Set(c.authorityKeys),
            revokedSerials: Set(c.revokedSerials.map { AdmissionPolicy.RevokedSerial(authority: $0.authority, serial: $0.serial) }),
            revokedNodes: Set(c.revokedKeys))
        o.credential = credential
        o.hosts = c.hosts
        o.allowSSHTunnelSuite = c.sessionEncryption == .auto
        o.blob.bandwidth = c.bandwidth
        o.blob.peerLimits = c.peerLimits
        o.blob.typePriorities = c.transferPriorities
        o.blob.breaker = c.breaker
        o.blob.maxConcurrentDownloads = max(1, c.bandwidth.maxConcurrentTransfers)
        o.blob.testCorruptServing = ProcessInfo.processInfo.environment["MESHNODE_TEST_CORRUPT_SERVING"] == "1"
        o.keep = c.keep
        o.compactAfter = c.compactAfter
        o.folders = c.folders
        o.pushCopies = c.pushCopies
        o.shutdownDeadline = c.shutdownDeadline
        o.placement = c.placement
        o.maxDiskUsagePercent = c.maxDiskUsagePercent
        let name = c.name ?? nodeName
        o.facts = MeshNodeOptions.OwnFacts(roles: c.effectiveRoles, ephemeral: c.isEphemeral(name: name), nfsGroup: c.nfsGroup(name: name),
                                           excluded: c.isExcluded(name: name))
        if o.facts.ephemeral {
            // A spot node's send folders are snapshotted (and rescanned) at the seeds' EPHEMERAL
            // cadence: what it wrote more than this long ago is on its way to a durable node.
            let cadence = MeshNodeOptions.ephemeralCadence
            o.folders = o.folders.map { f in
                var f = f
                f.snapshotInterval = min(f.snapshotInterval, cadence)
                f.rescanInterval = min(f.rescanInterval, cadence)
                return f
            }
        }
        return o
    }
}

/// Certificate files, as written by `meshnode admit`: one line of lowercase hex.
public enum CertificateFile {
    public static func read(path: String) throws(MeshError) -> [UInt8] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw MeshError(.configInvalid, "cannot read certificate file \(path)", hint: "check the `certificate` path in the config")
        }
        let hex = text.split(whereSeparator: { $0.isWhitespace }).first.map(String.init) ?? ""
        guard let bytes = Hex.decode(hex), (try? Certificate.decode(bytes)) != nil else {
            throw MeshError(.configInvalid, "\(path) is not a meshnode certificate",
                            hint: "create one with `meshnode admit NODE_ID --authority FILE -o \(path)`")
        }
        return bytes
    }

    public static func render(_ c: Certificate) -> String { Hex.encode(c.encoded) + "\n" }
}

/// `meshnode run`: opens (or creates) the store, starts the node and its control socket,
/// and blocks until SIGINT or SIGTERM has been handled.
///
/// The first SIGTERM or SIGINT makes a final sync (`MeshNode.finalSync`: a last snapshot of the
/// send folders, then up to `shutdown_deadline` for every item this node originated to reach a
/// durable node), then the node leaves the mesh. Each item still at risk is logged on one
/// line, and `run` returns `exitUnsaved`. A second SIGTERM or SIGINT exits at once.
public enum Daemon {
    /// `meshnode run`'s exit status when it stopped with items at risk (docs/SYNC.md, "Spot nodes").
    public static let exitUnsaved: Int32 = 20

    /// Returns the process's exit status: 0, or `exitUnsaved`.
    @discardableResult
    public static func run(_ settings: NodeSettings) throws(MeshError) -> Int32 {
        tuneAllocator()
        unblockStopSignals()
        let level = settings.config.logLevel
        settings.config.logFormat.bootstrap(level: level)
        let logger: Logger = {
            var l = Logger(label: "meshnode")
            l.logLevel = level
            return l
        }()

        let dir = settings.dataDir
        if !FileManager.default.fileExists(atPath: dir + "/" + NodeIdentity.fileName) {
            let (_, id) = try Store.initialize(dataDir: dir, name: settings.config.name ?? ProcessInfo.processInfo.hostName)
            logger.notice("initialised a new node", metadata: ["data": "\(dir)", "id": "\(id.nodeID)"])
        }
        let opened = try Store.open(dataDir: dir)
        let identity = try opened.loadIdentity()
        let storeName = opened.config.name
        // One cluster file: this node's own `hosts` entry is its settings, not a peer.
        let settings = {
            var s = settings
            s.config = s.config.forNode(named: s.config.name ?? storeName, id: identity.nodeID)
            return s
        }()
        let options = settings.nodeOptions(nodeName: storeName)
        if options.admission.trustedNodes.isEmpty && options.admission.authorities.isEmpty {
            logger.warning("no trusted_keys and no authority_keys: this node will admit no peers")
        }

        let loop = try EventLoop(name: "meshnode", logger: logger)
        let stopped = DispatchSemaphore(value: 0)
        let box = NodeBox()
        do {
            try loop.execute { () throws -> Void in
                let store = try Store.open(dataDir: dir)
                let node = try MeshNode(loop: loop, store: store, identity: identity, options: options, logger: logger)
                box.node = node
                try node.startHTTP(settings.config.metricsListen)
                let control = try ControlServer(loop: loop, path: ControlProtocol.socketPath(dataDirectory: dir)) { req, respond in
                    node.handleControl(req, respond: respond)
                }
                box.control = control
                let deadline = settings.config.shutdownDeadline
                box.signals = try SignalWatcher.watch(loop: loop) { sig in
                    guard !box.stopping else {
                        let left = node.spot.tracker.tracked.count
                        logger.warning("signal \(sig) again: exiting at once", metadata: ["items_at_risk": "\(left)"])
                        exit(left > 0 ? exitUnsaved : 0)
                    }
                    box.stopping = true
                    let atRisk = node.spot.tracker.tracked.count
                    logger.notice("signal \(sig): final sync, then leaving the mesh (a second signal exits at once)",
                                  metadata: ["items_at_risk": "\(atRisk)", "shutdown_deadline": "\(deadline)"])
                    node.finalSync(deadline: deadline) { unsaved in
                        for u in unsaved {
                            logger.error("left unsaved: no durable node holds it",
                                         metadata: ["item": "\(u.contentID.short)", "name": "\(u.name ?? "")", "size": "\(u.sizeBytes)",
                                                    "at_risk_s": "\(Int(u.ageSeconds))"])
                        }
                        if unsaved.isEmpty {
                            logger.notice("final sync done: nothing at risk")
                        } else {
                            logger.error("final sync: \(unsaved.count) item(s) left unsaved after shutdown_deadline",
                                         metadata: ["bytes": "\(unsaved.reduce(0) { $0 + $1.sizeBytes })"])
                        }
                        box.unsaved = unsaved.count
                        control.close()
                        node.stop {
                            for w in box.signals { w.close() }
                            stopped.signal()
                        }
                    }
                }
            }
        } catch {
            loop.post { box.node?.closeEverything(); box.control?.close(); for w in box.signals { w.close() } }
            _ = loop.shutdown(timeout: .seconds(5))
            if let e = error as? MeshError { throw e }
            throw MeshError(.init("node.start_failed"), "\(error)")
        }
        stopped.wait()
        _ = loop.shutdown(timeout: .seconds(10))
        logger.notice("stopped")
        return box.unsaved > 0 ? exitUnsaved : 0
    }
}

extension Daemon {
    /// A process inherits the blocked signals of the thread that started it, and Dispatch or
    /// Swift concurrency threads block nearly all: a node started from one would never see
    /// SIGINT or SIGTERM and could only be killed. Unblocked here, before the loop thread is
    /// created (it inherits this thread's mask).
    static func unblockStopSignals() {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGINT)
        sigaddset(&set, SIGTERM)
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
    }

    /// Chunks move through the node as 2 MiB buffers. glibc serves blocks that size with a
    /// fresh `mmap` (and returns them with `munmap`), so every buffer would cost 512 page
    /// faults; measured on a 1 GiB transfer that was most of the node's CPU time. Keeping such
    /// blocks in the heap (and at most 32 MiB of free memory cached) cut the transfer time by
    /// 15-20 % at the same peak RSS.
    static func tuneAllocator() {
        #if canImport(Glibc)
        // glibc's <malloc.h> is not part of the Glibc module: look `mallopt` up at run time.
        // M_TRIM_THRESHOLD is -1 and M_MMAP_THRESHOLD is -3 in glibc's stable ABI.
        typealias Mallopt = @convention(c) (Int32, Int32) -> Int32
        guard let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallopt") else { return }
        let mallopt = unsafeBitCast(sym, to: Mallopt.self)
        _ = mallopt(-3, 64 << 20)
        _ = mallopt(-1, 32 << 20)
        #endif
    }
}

private final class NodeBox: @unchecked Sendable {
    // @unchecked: only touched on the loop thread.
    var node: MeshNode?
    var control: ControlServer?
    var signals: [SignalWatcher] = []
    var stopping = false
    var unsaved = 0
}
