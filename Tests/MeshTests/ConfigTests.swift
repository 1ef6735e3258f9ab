import Foundation
import Gossip
import Testing
@testable import Mesh

@Suite struct ConfigTests {
    let idA = NodeID(key: Bytes32(bytes: [UInt8](repeating: 1, count: 32))!)
    let idB = NodeID(key: Bytes32(bytes: [UInt8](repeating: 2, count: 32))!)

    func error(_ yaml: String) -> MeshError? {
        do {
            _ = try NodeConfig.parse(yaml: yaml, source: "test.yaml")
            return nil
        } catch { return error }
    }

    @Test func aFullConfigParsesIntoEveryField() throws {
        let yaml = """
        name: gpu-1
        role: trainer
        listen: 0.0.0.0:7000
        join: [10.0.0.2:7000, "[fd00::3]:7000", seed.example:7000]
        trusted_keys:
          - \(idA)
        authority_keys: [\(idB)]
        revoked_keys: []
        revoked_serials:
          - {authority: \(idB), serial: 17}
        certificate: /var/lib/meshnode/node.cert
        anti_entropy_interval: 30s
        probe_interval: 500ms
        log_level: debug
        session_encryption: always
        bandwidth:
          global: 50MB/s
          per_peer: 20MiB/s
          max_concurrent_transfers: 4
        hosts:
          gpu-3:
            address: 127.0.0.1:7000
            ssh: {host: gpu-3.example, port: 2222, user: ubuntu, key: ~/.ssh/id_ed25519, options: ["-o", "ProxyJump=bastion"]}
          \(idA):
            address: gpu-4.tail:7000
            socks5: {proxy: 127.0.0.1:1055, username: u, password: p}
          plain:
            address: 10.0.0.9:7000
        """
        let c = try NodeConfig.parse(yaml: yaml)
        #expect(c.name == "gpu-1")
        #expect(c.role == "trainer")
        #expect(c.listen == Endpoint("0.0.0.0:7000"))
        #expect(c.join == [Endpoint("10.0.0.2:7000")!, Endpoint("[fd00::3]:7000")!, Endpoint("seed.example:7000")!])
        #expect(c.trustedKeys == [idA])
        #expect(c.authorityKeys == [idB])
        #expect(c.revokedSerials == [RevokedSerial(authority: idB, serial: 17)])
        #expect(c.certificate == "/var/lib/meshnode/node.cert")
        #expect(c.antiEntropyInterval == .seconds(30))
        #expect(c.probeInterval == .milliseconds(500))
        #expect(c.logLevel == .debug)
        #expect(c.sessionEncryption == .always)
        #expect(c.bandwidth == BandwidthConfig(globalBytesPerSecond: 50_000_000, perPeerBytesPerSecond: 20 << 20, maxConcurrentTransfers: 4))
        let gpu3 = try #require(c.hosts["gpu-3"])
        #expect(gpu3.address == Endpoint("127.0.0.1:7000"))
        #expect(gpu3.ssh?.host == "gpu-3.example")
        #expect(gpu3.ssh?.port == 2222)
        #expect(gpu3.ssh?.user == "ubuntu")
        #expect(gpu3.ssh?.keyPath == "~/.ssh/id_ed25519")
        #expect(gpu3.ssh?.extraArguments == ["-o", "ProxyJump=bastion"])
        #expect(c.host(named: "x", id: idA)?.route == .socks5(Socks5Settings(proxy: Endpoint("127.0.0.1:1055")!, credentials: .init(username: "u", password: "p"))))
        #expect(c.host(named: "plain", id: nil)?.route == .direct)
    }

    @Test func anEmptyFileGivesTheDefaults() throws {
        #expect(try NodeConfig.parse(yaml: "") == NodeConfig())
        #expect(try NodeConfig.parse(yaml: "# nothing\n") == NodeConfig())
        let d = NodeConfig()
        #expect(d.listen.port == NodeConfig.defaultPort)
        #expect(d.probeInterval == .milliseconds(800))  // PROTOCOL §6.2
        #expect(d.antiEntropyInterval == .seconds(30))
        #expect(d.sessionEncryption == .auto)
    }

    @Test func errorsNameTheKeyPathAndTheBadValue() {
        let e = error("""
        hosts:
          gpu-3:
            ssh: {host: h, port: abc}
        """)
        #expect(e?.message == "hosts.gpu-3.ssh.port: expected an integer 1-65535, got \"abc\"")
        #expect(e?.hint == "line 3 of test.yaml")
        #expect(error("probe_interval: 30")?.message == "probe_interval: expected a positive duration like 500ms, 30s, 2m or 1h, got \"30\"")
        #expect(error("listen: 7000")?.message.hasPrefix("listen: expected HOST:PORT") == true)
        #expect(error("join: [1.2.3.4:7000, nope]")?.message.hasPrefix("join[1]: expected HOST:PORT") == true)
        #expect(error("trusted_keys: [abc]")?.message == "trusted_keys[0]: expected a 52-character node id, got \"abc\"")
        #expect(error("bandwidth: {global: 50MB}")?.message == "bandwidth.global: expected a rate like 50MB/s, 800KiB/s or unlimited, got \"50MB\"")
        #expect(error("log_level: loud")?.message.hasPrefix("log_level: expected one of trace") == true)
        #expect(error("session_encryption: never")?.message == "session_encryption: expected auto or always, got \"never\"")
        #expect(error("join: 1.2.3.4:7000")?.message == "join: expected a list, got a value")
        #expect(error("hosts: {a: {socks5: {proxy: 1.2.3.4:1080, username: u}}}")?.message == "hosts.a.socks5: username and password go together")
        #expect(error("hosts: {a: {ssh: {port: 22}}}")?.message == "hosts.a.ssh.host: missing")
        #expect(error("hosts: {a: {ssh: {host: h}, socks5: {proxy: 1.2.3.4:1}}}")?.message == "hosts.a: has both ssh and socks5")
        #expect(error("name: \"has space\"")?.message.hasPrefix("name: expected a name") == true)
        #expect(error("- a\n- b")?.message == "test.yaml: expected a mapping of keys, got a list")
        #expect(error("name: [unclosed")?.message.hasPrefix("test.yaml is not valid YAML") == true)
    }

    @Test func unknownAndDuplicateKeysAreErrorsNeverIgnored() {
        #expect(error("lisen: 0.0.0.0:7000")?.message == "lisen: unknown key")
        #expect(error("lisen: 0.0.0.0:7000")?.hint?.contains("listen") == true)
        #expect(error("hosts: {gpu-3: {ssh: {host: h, prot: 22}}}")?.message == "hosts.gpu-3.ssh.prot: unknown key")
        #expect(error("bandwidth: {globl: 1MB/s}")?.message == "bandwidth.globl: unknown key")
        #expect(error("name: a\nname: b")?.message.contains("duplicated key(s): 'name'") == true)
    }

    @Test func durationsAndRatesParseInTheirDocumentedForms() {
        #expect(DurationText.parse("30s") == .seconds(30))
        #expect(DurationText.parse("500ms") == .milliseconds(500))
        #expect(DurationText.parse("2m") == .seconds(120))
        #expect(DurationText.parse("1h") == .seconds(3600))
        #expect(DurationText.parse("1h30m") == .seconds(5400))
        #expect(DurationText.parse("1.5s") == .milliseconds(1500))
        for bad in ["", "30", "s", "1x", "1s1h", "-1s", "1 s", "1e3s"] { #expect(DurationText.parse(bad) == nil, "\(bad)") }
        #expect(DurationText.format(.seconds(30)) == "30s")
        #expect(DurationText.format(.milliseconds(1500)) == "1500ms")
        #expect(ByteRateText.parse("50MB/s") == 50_000_000)
        #expect(ByteRateText.parse("1.5GB/s") == 1_500_000_000)
        #expect(ByteRateText.parse("800KiB/s") == 819_200)
        #expect(ByteRateText.parse("100 B/s") == 100)
        for bad in ["50MB", "50/s", "MB/s", "0MB/s", "50mb/s", "50Mb/s"] { #expect(ByteRateText.parse(bad) == nil, "\(bad)") }
    }

    @Test func flagsBeatEnvironmentWhichBeatsTheFileWhichBeatsDefaults() throws {
        var file = NodeConfig()
        file.name = "from-file"
        file.role = "file-role"
        file.listen = Endpoint("0.0.0.0:1000")!
        file.join = [Endpoint("10.0.0.1:1000")!]
        file.probeInterval = .seconds(2)
        let env = try ConfigOverrides.fromEnvironment([
            "MESHNODE_NAME": "from-env",
            "MESHNODE_LISTEN": "0.0.0.0:2000",
            "MESHNODE_JOIN": "10.0.0.2:2000, 10.0.0.3:2000",
            "MESHNODE_LOG_LEVEL": "warning",
            "HOME": "/root",  // not ours: ignored
        ])
        let flags = ConfigOverrides(listen: Endpoint("127.0.0.1:3000")!)
        let c = NodeConfig.resolve(file: file, environment: env, flags: flags)
        #expect(c.name == "from-env")
        #expect(c.role == "file-role")
        #expect(c.listen == Endpoint("127.0.0.1:3000"))
        #expect(c.join == [Endpoint("10.0.0.2:2000")!, Endpoint("10.0.0.3:2000")!])  // replaced, not appended
        #expect(c.logLevel == .warning)
        #expect(c.probeInterval == .seconds(2))
        #expect(c.antiEntropyInterval == .seconds(30))  // default
        let noFile = NodeConfig.resolve(file: nil, environment: ConfigOverrides(), flags: ConfigOverrides(join: [Endpoint("1.2.3.4:5")!]))
        #expect(noFile.join == [Endpoint("1.2.3.4:5")!])
        #expect(noFile.listen == NodeConfig().listen)
        #expect(NodeConfig.configPath(environment: ConfigOverrides(configPath: "/env.yaml"), flags: ConfigOverrides()) == "/env.yaml")
        #expect(NodeConfig.configPath(environment: ConfigOverrides(configPath: "/env.yaml"), flags: ConfigOverrides(configPath: "/flag.yaml")) == "/flag.yaml")
    }

    @Test func badOrUnknownEnvironmentVariablesAreErrorsNamingThem() {
        func envError(_ env: [String: String]) -> String? {
            do { _ = try ConfigOverrides.fromEnvironment(env); return nil } catch { return error.message }
        }
        #expect(envError(["MESHNODE_LISTN": "x"]) == "MESHNODE_LISTN: unknown environment variable")
        #expect(envError(["MESHNODE_LISTEN": "x"])?.hasPrefix("MESHNODE_LISTEN: expected HOST:PORT") == true)
        #expect(envError(["MESHNODE_JOIN": "1.2.3.4:1,bad"])?.hasPrefix("MESHNODE_JOIN: expected HOST:PORT") == true)
        #expect(envError(["MESHNODE_PROBE_INTERVAL": "fast"])?.hasPrefix("MESHNODE_PROBE_INTERVAL: expected a positive duration") == true)
    }

    @Test func endpointsParseHostPortAndBracketedIPv6() {
        #expect(Endpoint("10.0.0.5:7000") == Endpoint(host: "10.0.0.5", port: 7000))
        #expect(Endpoint("[::1]:7000") == Endpoint(host: "::1", port: 7000))
        #expect(Endpoint("gpu-3:0")?.port == 0)
        #expect(Endpoint("[::1]:7000")?.description == "[::1]:7000")
        for bad in ["", ":7000", "host", "host:", "host:70000", "::1:7000", "[::1]7000", "[1.2.3.4]:7", "h:-1", "a b:1"] {
            #expect(Endpoint(bad) == nil, "\(bad)")
        }
    }

    @Test func loadingAMissingFileSaysWhichFile() {
        do {
            _ = try NodeConfig.load(path: "/nonexistent/meshnode.yaml")
            Issue.record("loaded")
        } catch {
            #expect(error.message.contains("/nonexistent/meshnode.yaml"))
        }
    }

    @Test func flagValuesAreCheckedWithTheSameRulesNamingTheFlag() {
        do {
            _ = try ConfigValue.endpoint("nope", name: "--listen")
            Issue.record("accepted")
        } catch {
            #expect(error.message == "--listen: expected HOST:PORT (e.g. 10.0.0.5:7946 or [::1]:7946), got \"nope\"")
        }
        #expect((try? ConfigValue.logLevel("DEBUG", name: "--log-level")) == .debug)
        #expect((try? ConfigValue.interval("250ms", name: "--probe-interval")) == .milliseconds(250))
    }

    @Test func relativeKeyAndCertificatePathsAreRelativeToTheConfigFile() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let yaml = """
        certificate: node.cert
        hosts:
          a: {ssh: {host: h, key: keys/id_ed25519}}
          b: {ssh: {host: h, key: /abs/key}}
          c: {ssh: {host: h, key: ~/.ssh/id}}
        """
        try yaml.write(toFile: dir.file("meshnode.yaml"), atomically: true, encoding: .utf8)
        let c = try NodeConfig.load(path: dir.file("meshnode.yaml"))
        #expect(c.certificate == dir.file("node.cert"))
        #expect(c.hosts["a"]?.ssh?.keyPath == dir.file("keys/id_ed25519"))
        #expect(c.hosts["b"]?.ssh?.keyPath == "/abs/key")
        #expect(c.hosts["c"]?.ssh?.keyPath == "~/.ssh/id")
    }
}
