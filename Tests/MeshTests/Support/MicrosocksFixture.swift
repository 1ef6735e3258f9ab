import Foundation
@testable import Mesh

/// A microsocks server on a free loopback port, killed by PID.
final class MicrosocksFixture: @unchecked Sendable {
    let child: ChildFixture
    let port: UInt16
    let dir = TempDir()
    init(username: String? = nil, password: String? = nil) throws {
        let args = ["/usr/bin/microsocks", "-i", "127.0.0.1"]
        var lastError: (any Error)?
        for _ in 0..<5 {
            let port = freeLoopbackPort()
            var a = args + ["-p", String(port)]
            if let username, let password { a += ["-u", username, "-P", password] }
            do {
                let c = try ChildFixture(a, logPath: dir.file("microsocks.log"))
                if waitForTCPPort(port, timeout: 5) && c.isRunning {
                    child = c
                    self.port = port
                    return
                }
                c.stop()
            } catch { lastError = error }
        }
        throw lastError ?? FixtureError("microsocks did not start")
    }
    var endpoint: Endpoint { Endpoint(host: "127.0.0.1", port: port) }
    func stop() {
        child.stop()
        dir.cleanup()
    }
}
