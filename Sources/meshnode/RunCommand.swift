import ArgumentParser
import Foundation
import Gossip
import Logging
import Mesh
#if canImport(Glibc)
import Glibc
#endif

extension MeshnodeCommand {
    struct Run: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run the node: join the mesh, gossip, and serve the control socket.",
            discussion: """
                Settings come from, highest first: these flags, MESHNODE_* environment variables, \
                the YAML file given by --config (or MESHNODE_CONFIG), then defaults. \
                A data dir without an identity is initialised first. \
                SIGINT or SIGTERM leave the mesh gracefully and exit 0.
                """)

        @OptionGroup var options: DataOptions
        @Option(help: ArgumentHelp("YAML config file.", valueName: "FILE")) var config: String?
        @Option(help: ArgumentHelp("Address to listen on, UDP and TCP (default 0.0.0.0:7946).", valueName: "HOST:PORT"))
        var listen: String?
        @Option(help: ArgumentHelp("Address peers should use to reach this node (default: the listen address).",
                                   valueName: "HOST:PORT"))
        var advertise: String?
        @Option(help: ArgumentHelp("A seed to join through; repeatable.", valueName: "HOST:PORT")) var join: [String] = []
        @Option(help: "Node name shown to peers (default: the store's name).") var name: String?
        @Option(help: "Node role shown to peers.") var role: String?
        @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
        var logLevel: String?
        @Option(name: .customLong("log-format"), help: "text (default) or json: one JSON object per line, for journald and Loki.")
        var logFormat: String?
        @Option(name: .customLong("metrics-listen"),
                help: ArgumentHelp("Where to serve /metrics and /health (default 127.0.0.1:9946), or off.", valueName: "HOST:PORT|off"))
        var metricsListen: String?

        func run() throws {
            var status: Int32 = 0
            try runReportingErrors { () throws(MeshError) in
                let settings = try NodeSettings.resolve(
                    dataDir: options.dataDir, configFlag: config, listen: listen, advertise: advertise, join: join,
                    name: name, role: role, logLevel: logLevel, metricsListen: metricsListen, logFormat: logFormat)
                status = try Daemon.run(settings)
            }
            // Stopped with items no durable node holds (each was logged): a distinct status.
            if status != 0 { throw ExitCode(status) }
        }
    }
}
