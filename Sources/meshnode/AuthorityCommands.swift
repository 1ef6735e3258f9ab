import ArgumentParser
import Foundation
import Store

extension MeshnodeCommand {
    struct Authority: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Manage an admission authority key (signs certificates for `meshnode admit`).",
            discussion: """
                Nodes trust every certificate signed by a key in their config's authority_keys, so a new \
                (e.g. ephemeral) host joins without editing every node's config. Keep the authority key \
                off the cluster's hosts.
                """,
            subcommands: [AuthorityInit.self, AuthorityShow.self])
    }

    struct AuthorityInit: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "init",
            abstract: "Create an authority key file (mode 0600); prints its public id on the last line.")
        @Option(name: [.short, .long], help: ArgumentHelp("Where to write the key.", valueName: "FILE"))
        var out: String = "meshnode-authority.key"

        func run() throws {
            try runReportingErrors { () throws(MeshError) in
                let key = NodeIdentity.generate()
                try key.save(keyFile: out)
                FileHandleOut.stdout("""
                    wrote authority key \(out); add this id to every node's authority_keys:
                    \(key.nodeID)\n
                    """)
            }
        }
    }

    struct AuthorityShow: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "show", abstract: "Print an authority key's public id.")
        @Option(help: ArgumentHelp("The authority key file.", valueName: "FILE")) var authority: String

        func run() throws {
            try runReportingErrors { () throws(MeshError) in
                FileHandleOut.stdout("\(try NodeIdentity.load(keyFile: authority).nodeID)\n")
            }
        }
    }

    struct Admit: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Sign an admission certificate for a node id.",
            discussion: """
                Writes the certificate (one line of hex) to --out, or prints it on the last line. \
                The node names that file in its config as `certificate: FILE`. A certificate expires \
                after --valid; to remove a node before that, list its id under revoked_keys (or the \
                certificate's authority and serial under revoked_serials) in the nodes' configs.
                """)
        @Argument(help: "The node id to admit (52 characters; `meshnode init` prints it).") var nodeID: String
        @Option(help: ArgumentHelp("The authority key file.", valueName: "FILE")) var authority: String
        @Option(help: ArgumentHelp("How long the certificate is valid: e.g. 12h, 30d.", valueName: "DURATION"))
        var valid: String = "30d"
        @Option(help: "Informational name for the node (≤ 48 bytes).") var name: String = ""
        @Option(help: "Informational role for the node (≤ 16 bytes).") var role: String = ""
        @Option(help: "Serial number (default: random); revocation lists name serials.") var serial: UInt64?
        @Option(name: [.short, .long], help: ArgumentHelp("Write the certificate here.", valueName: "FILE")) var out: String?

        func run() throws {
            try runReportingErrors { () throws(MeshError) in
                guard let subject = NodeID(nodeID) else {
                    throw MeshError(.invalidInput, "'\(nodeID)' is not a node id", hint: "pass the 52-character id that `meshnode init` printed")
                }
                guard let validMs = parseDurationMs(valid), validMs > 0 else {
                    throw MeshError(.invalidInput, "cannot parse validity '\(valid)'", hint: "use a duration such as 12h or 30d")
                }
                guard name.utf8.count <= Certificate.maxNameBytes, role.utf8.count <= Certificate.maxRoleBytes else {
                    throw MeshError(.invalidInput, "name or role too long", hint: "at most \(Certificate.maxNameBytes) and \(Certificate.maxRoleBytes) bytes")
                }
                let key = try NodeIdentity.load(keyFile: authority)
                var rng = SystemRandomNumberGenerator()
                let now = WallClock.nowMs()
                let cert = Certificate(authority: key.nodeID, subject: subject, serial: serial ?? rng.next(), issuedAtMs: now,
                                       expiresAtMs: now + validMs, name: name, role: role).signed(by: key)
                let line = Hex.encode(cert.encoded)
                let expires = Date(timeIntervalSince1970: Double(cert.expiresAtMs) / 1000)
                if let out {
                    try FS.writeAtomically(out, bytes: Array((line + "\n").utf8), mode: 0o644)
                    FileHandleOut.stdout("certificate for \(subject.short) (serial \(cert.serial)) expires \(expires); wrote \(out)\n")
                } else {
                    FileHandleOut.stdout("certificate for \(subject.short) (serial \(cert.serial)) expires \(expires):\n\(line)\n")
                }
            }
        }
    }
}

/// `90s`, `15m`, `12h`, `30d` (or a bare number of seconds) in milliseconds.
func parseDurationMs(_ text: String) -> Int64? {
    let t = text.trimmingCharacters(in: .whitespaces).lowercased()
    let units: [(String, Int64)] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000)]
    for (u, mult) in units where t.hasSuffix(u) {
        guard let v = Int64(t.dropLast(u.count)), v >= 0 else { continue }
        return v.multipliedReportingOverflow(by: mult).overflow ? nil : v * mult
    }
    return Int64(t).map { $0 * 1000 }
}
