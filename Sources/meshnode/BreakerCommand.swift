// `meshnode breaker`: the running node's per-peer transfer circuit breakers.
import ArgumentParser
import Foundation
import Mesh

extension MeshnodeCommand {
    struct Breaker: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Inspect or reset the running node's per-peer transfer circuit breakers.",
            discussion: """
                A peer whose chunk requests keep failing (5 in a row by default: timeouts, failed dials, \
                corrupt chunks) is not asked for anything for 60 s, then gets 3 trial requests \
                (`breaker:` in the config). `meshnode peers` shows each peer's breaker.
                """,
            subcommands: [BreakerList.self, BreakerReset.self], defaultSubcommand: BreakerList.self)
    }

    struct BreakerList: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "List the peers whose breaker ever tripped.")
        @OptionGroup var options: DataOptions
        @Flag(help: "Print JSON: peer name → state, consecutive_failures, opens, last_failure, recovers_in_s.") var json = false

        func run() throws {
            try runReportingErrors { () throws(MeshError) in
                let status: NodeStatus
                do { status = try ControlClient(dataDirectory: options.dataDir).call("status").decode(as: NodeStatus.self) } catch let e as MeshError {
                    throw e
                } catch {
                    throw MeshError(.controlBadResponse, "the node sent an unexpected status", hint: "are the CLI and node the same version?")
                }
                let rows = status.breakers ?? [:]
                if json {
                    FileHandleOut.stdout(jsonText(rows))
                    return
                }
                guard !rows.isEmpty else {
                    FileHandleOut.stdout("every peer's breaker is closed\n")
                    return
                }
                var lines = [["PEER", "STATE", "FAILURES", "OPENS", "LAST FAILURE", "TRIALS IN"]]
                for (name, b) in rows.sorted(by: { $0.key < $1.key }) {
                    lines.append([name, b.state, "\(b.consecutiveFailures)", "\(b.opens)", b.lastFailure ?? "-",
                                  b.recoversInSeconds.map { "\(Int($0.rounded(.up))) s" } ?? "-"])
                }
                FileHandleOut.stdout(table(lines))
            }
        }
    }

    struct BreakerReset: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "reset", abstract: "Close one peer's breaker now.")
        @OptionGroup var options: DataOptions
        @Argument(help: "The peer: its name or node id, as `meshnode peers` shows it.") var peer: String
        @Flag(help: "Print JSON: peer, id, was (the state before), reset.") var json = false

        func run() throws {
            try runReportingErrors { () throws(MeshError) in
                let r = try ControlClient(dataDirectory: options.dataDir).call("breaker_reset", args: ["peer": .string(peer)])
                if json {
                    FileHandleOut.stdout(r.description + "\n")
                    return
                }
                guard case .object(let o) = r else { throw MeshError(.controlBadResponse, "the node sent an unexpected answer") }
                let name = o["peer"]?.stringValue ?? peer
                FileHandleOut.stdout(o["reset"]?.boolValue == true ? "closed the breaker of \(name) (it was \(o["was"]?.stringValue ?? "?"))\n"
                                                                    : "the breaker of \(name) was already closed\n")
            }
        }
    }
}
