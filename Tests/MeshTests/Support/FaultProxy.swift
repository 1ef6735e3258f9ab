import Foundation
@testable import Gossip
@testable import Mesh

// A TCP forwarder that injects the faults seen on real paths: resets after a few seconds,
// silent black holes. For tests and benchmarks (issue 5's "reset proxy", partitions).

/// Forwards TCP connections from `localAddress` to `target`, and can
/// - reset every connection (RST both ways) after a random lifetime in `resetAfter`, like the
///   middleboxes that kill flows after 4-8 s;
/// - black-hole: keep connections open but silently drop every byte (a partition that does not
///   even produce errors: only idle timeouts detect it);
/// - refuse new connections (`acceptNew = false`).
///
/// Lifetimes come from a seeded generator, so a run is repeatable. Loop thread only.
public final class FaultProxy: @unchecked Sendable {
    public struct Stats: Sendable, Equatable {
        public var accepted = 0
        public var resets = 0
        public var bytesForwarded = 0
        public var bytesDropped = 0
        public var upstreamFailures = 0
    }

    public let loop: EventLoop
    public let target: Endpoint
    public var localAddress: SocketAddress { listener.localAddress }
    /// Reset each connection after a random duration in this range (nil: never).
    public var resetAfter: ClosedRange<Duration>?
    /// Drop all bytes in both directions while true (existing and new connections).
    public var blackhole = false
    /// Refuse (reset at once) new connections while false.
    public var acceptNew = true
    public private(set) var stats = Stats()

    private let listener: TCPListener
    private var rng: SplitMix64
    private var pairs: [ObjectIdentifier: Pair] = [:]

    /// Starts listening on `listen` (port 0: a free port; see `localAddress`).
    public init(loop: EventLoop, listen: SocketAddress, target: Endpoint, resetAfter: ClosedRange<Duration>? = nil,
                seed: UInt64 = 1) throws(MeshError) {
        self.loop = loop
        self.target = target
        self.resetAfter = resetAfter
        rng = SplitMix64(seed: seed)
        listener = try TCPListener(loop: loop, bind: listen)
        listener.onAccept = { [weak self] client in
            guard let self else { return client.close() }
            self.accept(client)
        }
    }

    /// Open forwarded connections.
    public var connectionCount: Int { pairs.count }

    /// Resets every open connection now.
    public func resetAll() {
        for p in pairs.values { p.reset() }
    }

    /// Stops listening and closes every connection (orderly).
    public func close() {
        listener.close()
        for p in pairs.values { p.closeBoth() }
    }

    private func accept(_ client: TCPStream) {
        guard acceptNew else {
            client.reset()
            return
        }
        stats.accepted += 1
        let pair = Pair(proxy: self, client: client)
        pairs[ObjectIdentifier(pair)] = pair
        TCPStream.connect(loop: loop, to: target, timeout: .seconds(10)) { [weak self, weak pair] r in
            guard let self, let pair else {
                if case .success(let s) = r { s.close() }
                return
            }
            switch r {
            case .failure:
                self.stats.upstreamFailures += 1
                pair.client.reset()
            case .success(let upstream):
                pair.start(upstream: upstream, lifetime: self.nextLifetime())
            }
        }
        client.onClose = { [weak self, weak pair] _ in
            guard let pair else { return }
            pair.clientClosed()
            self?.finished(pair)
        }
    }

    private func nextLifetime() -> Duration? {
        guard let r = resetAfter else { return nil }
        let lo = r.lowerBound.milliseconds, hi = r.upperBound.milliseconds
        let ms = hi > lo ? lo + rng.next() % (hi - lo + 1) : lo
        return .milliseconds(Int64(ms))
    }

    fileprivate func finished(_ pair: Pair) {
        if pair.isDone { pairs[ObjectIdentifier(pair)] = nil }
    }

    fileprivate func countReset() { stats.resets += 1 }
    fileprivate func forwarded(_ n: Int) { stats.bytesForwarded += n }
    fileprivate func dropped(_ n: Int) { stats.bytesDropped += n }

    fileprivate final class Pair {
        weak var proxy: FaultProxy?
        let client: TCPStream
        var upstream: TCPStream?
        var timer: LoopTimer?
        var clientOpen = true
        var upstreamOpen = false
        static let highWater = 1 << 20

        init(proxy: FaultProxy, client: TCPStream) {
            self.proxy = proxy
            self.client = client
        }

        var isDone: Bool { !clientOpen && !upstreamOpen && timer == nil }

        func start(upstream: TCPStream, lifetime: Duration?) {
            guard clientOpen else { return upstream.close() }
            self.upstream = upstream
            upstreamOpen = true
            upstream.onClose = { [weak self] _ in
                guard let self else { return }
                self.upstreamOpen = false
                self.client.close()  // orderly: the client sees EOF
                self.stopTimer()
                self.proxy?.finished(self)
            }
            pipe(from: client, to: upstream)
            pipe(from: upstream, to: client)
            if let lifetime, let t = try? LoopTimer(loop: client.loop) {
                timer = t
                t.onFire = { [weak self] in self?.reset() }
                t.start(after: lifetime)
            }
        }

        private func pipe(from a: TCPStream, to b: TCPStream) {
            a.onRead = { [weak self, weak a, weak b] bytes in
                guard let self, let proxy = self.proxy, let a, let b else { return }
                if proxy.blackhole {
                    proxy.dropped(bytes.count)
                    return
                }
                do {
                    try b.write([bytes])
                    proxy.forwarded(bytes.count)
                } catch {
                    // b's queue is over its limit (cannot happen with the pause below) or closed.
                    proxy.dropped(bytes.count)
                }
                if b.writeQueueBytes > Pair.highWater { a.stopReading() }
            }
            b.onDrain = { [weak a] in a?.startReading() }
            a.startReading()
        }

        func reset() {
            guard clientOpen || upstreamOpen else { return }
            proxy?.countReset()
            stopTimer()
            client.reset()
            upstream?.reset()
        }

        func clientClosed() {
            clientOpen = false
            upstream?.close()
            stopTimer()
        }

        func closeBoth() {
            stopTimer()
            client.close()
            upstream?.close()
        }

        func stopTimer() {
            timer?.close()
            timer = nil
        }
    }
}
