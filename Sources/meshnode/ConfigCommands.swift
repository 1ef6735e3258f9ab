// `meshnode config check` and `meshnode config import`: one cluster file for every host.
import ArgumentParser
import Foundation
import Mesh
import Store

extension MeshnodeCommand {
    struct Config: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check a config file, or convert a distributed_hosts.yaml into one.",
            subcommands: [Check.self, Import.self])
    }
}

extension MeshnodeCommand.Config {
    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Validate a config file and print the settings one node would run with.",
            discussion: """
                The node is named by --name, else MESHNODE_NAME, else the file's name, else the name of the \
                store in --data (or $MESHNODE_DATA, ~/.meshnode) if there is one, else the host name. Its own \
                hosts entry applies to it (top-level keys, the environment and flags win over it) and is not \
                listed as a peer. MESHNODE_* variables apply as they would to `meshnode run`. \
                Exits 0 when the file is valid (warnings are printed but do not fail), 16 when it is not \
                (one line naming the key path, the line and what to do), 64 on a usage error.
                """)

        @Argument(help: ArgumentHelp("The config file (default: $MESHNODE_CONFIG).", valueName: "FILE")) var file: String?
        @Option(help: "The node to show the settings of (default: see below).") var name: String?
        @OptionGroup var options: DataOptions
        @Flag(help: "Print JSON: {\"valid\": true, \"name\", \"own_entry\", \"roles\", ...} or {\"valid\": false, \"error\": LINE}.")
        var json = false

        func run() throws {
            do throws(MeshError) {
                let report = try check()
                FileHandleOut.stdout(json ? jsonText(report) : report.text)
            } catch {
                if json {
                    struct Invalid: Encodable { var valid = false; var file: String?; var error: String }
                    FileHandleOut.stdout(jsonText(Invalid(file: file, error: error.line)))
                } else {
                    FileHandleOut.stderr(error.line + "\n")
                }
                throw ExitCode(error.code.exitStatus)
            }
        }

        func check() throws(MeshError) -> ConfigReport {
            let env = try ConfigOverrides.fromEnvironment(ProcessInfo.processInfo.environment)
            var flags = ConfigOverrides(configPath: file)
            if let name { flags.name = try ConfigValue.nodeName(name, name: "--name") }
            guard let path = NodeConfig.configPath(environment: env, flags: flags) else {
                throw MeshError(.configInvalid, "no config file given", hint: "pass FILE, or set MESHNODE_CONFIG")
            }
            let fileConfig = try NodeConfig.load(path: path)
            let config = NodeConfig.resolve(file: fileConfig, environment: env, flags: flags)
            let nodeName: String
            let from: String
            if let n = flags.name { nodeName = n; from = "--name" }
            else if let n = env.name { nodeName = n; from = "MESHNODE_NAME" }
            else if let n = fileConfig.name { nodeName = n; from = "file" }
            else if FileManager.default.fileExists(atPath: options.dataDir + "/" + NodeIdentity.fileName),
                    let s = try? Store.open(dataDir: options.dataDir), !s.config.name.isEmpty {
                nodeName = s.config.name; from = "data dir"
            } else { nodeName = ProcessInfo.processInfo.hostName; from = "host name" }
            return ConfigReport(config: config, file: path, name: nodeName, nameFrom: from)
        }
    }

    struct Import: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Convert a distributed_hosts.yaml (ssh_host, ssh_port, ssh_user, ssh_key, tailscale_ip, role) into a meshnode cluster file.",
            discussion: """
                Prints the config to stdout (or writes -o FILE); what was left out goes to stderr, one line each. \
                Every host gets an address (its tailscale_ip, else its ssh_host, on --port) and, unless it is \
                reached directly over Tailscale, an ssh route. Exits 0 on success, 16 when the input cannot be \
                converted (one line naming the key path), 14 on a bad option or when FILE cannot be written.
                """)

        @Argument(help: ArgumentHelp("The seeds' host file.", valueName: "distributed_hosts.yaml")) var input: String
        @Option(name: .shortAndLong, help: ArgumentHelp("Write the config here instead of stdout.", valueName: "FILE")) var output: String?
        @Option(help: "The port meshnode listens on, on every host.") var port: UInt16 = NodeConfig.defaultPort
        @Option(help: "auto: direct to tailscale_ip when a host has one, else ssh; ssh: always ssh; tailscale: always direct.")
        var via: String = "auto"

        func run() throws {
            try runReportingErrors { () throws(MeshError) in
                guard let v = HostsImport.Via(rawValue: via) else {
                    throw MeshError(.invalidInput, "--via: expected auto, ssh or tailscale, got \"\(via)\"")
                }
                guard port > 0 else { throw MeshError(.invalidInput, "--port: expected 1-65535, got 0") }
                let text: String
                do { text = try String(contentsOfFile: input, encoding: .utf8) } catch {
                    throw MeshError(.configInvalid, "cannot read \(input): \((error as NSError).localizedDescription)", hint: "check the path")
                }
                let r = try HostsImport.convert(yaml: text, source: input, port: port, via: v)
                for n in r.notes { FileHandleOut.stderr("note: \(n)\n") }
                if let output {
                    guard FileManager.default.createFile(atPath: output, contents: Data(r.yaml.utf8)) else {
                        throw MeshError(.invalidInput, "cannot write \(output)", hint: "check that its directory exists and is writable")
                    }
                } else {
                    FileHandleOut.stdout(r.yaml)
                }
            }
        }
    }
}
