// One entry point to open a byte stream to a peer: direct TCP, SSH tunnel or SOCKS5.

/// Opens a `ByteStream` to a peer along the route its `hosts` entry chooses.
public enum StreamConnector {
    /// Connects to `address` (the peer's meshnode, as seen from the route's far end) along
    /// `route`, bounded by `timeout`. `completion` runs once on the loop. Loop thread only.
    ///
    /// - direct: TCP connect (names resolved here);
    /// - socks5: TCP to the proxy + SOCKS5 handshake (names resolved by the proxy);
    /// - ssh: spawns `ssh -W address`; the stream is returned at once, since ssh reports success
    ///   only by passing bytes. A failure (auth, host key, unreachable target) arrives as the
    ///   stream's `onClose` reason, typically within `SSHOptions.connectTimeout`. Callers should
    ///   treat "closed before the first frame arrived" as a failed connect.
    public static func connect(loop: EventLoop, to address: Endpoint, route: HostConfig.Route,
                               timeout: Duration = .seconds(10),
                               completion: @escaping (Result<any ByteStream, MeshError>) -> Void) {
        switch route {
        case .direct:
            TCPStream.connect(loop: loop, to: address, timeout: timeout) { completion($0.map { $0 as any ByteStream }) }
        case .socks5(let s):
            Socks5Connector.connect(loop: loop, proxy: s.proxy, target: address, credentials: s.credentials, timeout: timeout) {
                completion($0.map { $0 as any ByteStream })
            }
        case .ssh(let o):
            var options = o
            options.connectTimeout = min(o.connectTimeout, timeout)
            do { completion(.success(try SSHTunnel.open(loop: loop, options: options, target: address))) } catch {
                completion(.failure(error))
            }
        }
    }
}
