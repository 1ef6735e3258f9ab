// `meshnode health`: the running node's health, for people and for service checks.
import ArgumentParser
import Foundation
import Mesh

extension MeshnodeCommand {
    struct Health: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Report the running node's health: each component healthy, degraded or unhealthy, with why.",
            discussion: """
                Components: store, gossip, transfers, disk, outbox, breakers; the node is as healthy as its \
                worst one. Exits 0 when healthy, 1 when degraded, 2 when unhealthy, 17 when no node is running \
                (so it works as a Consul or systemd check as it is). The same JSON is served at GET /health.
                """)

        @OptionGroup var options: DataOptions
        @Flag(help: "Print JSON: {\"status\": ..., \"components\": {NAME: {\"status\": ..., \"reason\": ...}}}.") var json = false

        func run() throws {
            var status: Int32 = 0
            try runReportingErrors { () throws(MeshError) in
                let result = try ControlClient(dataDirectory: options.dataDir).call("health")
                let report: HealthReport
                do { report = try result.decode(as: HealthReport.self) } catch {
                    throw MeshError(.controlBadResponse, "the node sent an unexpected health report",
                                    hint: "are the CLI and node the same version?")
                }
                FileHandleOut.stdout(json ? report.jsonText + "\n" : report.text)
                status = report.status.exitStatus
            }
            if status != 0 { throw ExitCode(status) }
        }
    }
}
