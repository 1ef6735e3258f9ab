import Foundation
import Logging
import Testing
@testable import Mesh

@Suite struct JSONLogHandlerTests {
    final class Lines: @unchecked Sendable {
        private let lock = NSLock()
        private var lines: [String] = []
        func add(_ s: String) { lock.lock(); lines.append(s); lock.unlock() }
        var all: [String] { lock.lock(); defer { lock.unlock() }; return lines }
    }

    func logger(_ lines: Lines, label: String = "meshnode") -> Logger {
        Logger(label: label) { JSONLogHandler(label: $0, sink: { lines.add($0) }) }
    }

    func parse(_ line: String) throws -> [String: Any] {
        #expect(line.hasSuffix("\n") && line.dropLast().firstIndex(of: "\n") == nil, "not one line: \(line.debugDescription)")
        return try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
    }

    static let rfc3339Millis = try! NSRegularExpression(pattern: #"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$"#)

    @Test func eachEventIsOneObjectWithTheFixedKeysAndEveryMetadataKey() throws {
        let lines = Lines()
        var log = logger(lines)
        log[metadataKey: "node"] = "gpu-a"
        log.info("item complete", metadata: ["item": "ab12cd", "bytes": "\(1 << 20)", "seconds": .stringConvertible(1.5)])
        let o = try parse(lines.all[0])
        let ts = try #require(o["ts"] as? String)
        #expect(Self.rfc3339Millis.firstMatch(in: ts, range: NSRange(ts.startIndex..., in: ts)) != nil, "\(ts)")
        #expect(o["level"] as? String == "info")
        #expect(o["msg"] as? String == "item complete")
        #expect(o["logger"] as? String == "meshnode")
        #expect(o["node"] as? String == "gpu-a")
        #expect(o["item"] as? String == "ab12cd" && o["bytes"] as? String == "1048576" && o["seconds"] as? String == "1.5")
    }

    @Test func awkwardTextIsEscapedAndNestedMetadataStaysJSON() throws {
        let lines = Lines()
        let log = logger(lines)
        let nasty = "quote \" backslash \\ newline \n tab \t nul \u{0} bell \u{7} line-sep \u{2028} ünïcødé 🚀"
        log.warning("\(nasty)", metadata: [
            "list": ["a", "b"], "map": ["k": "v", "n": ["x"]], "ts": "a metadata key named like a fixed one", "detail": "\(nasty)",
        ])
        let line = lines.all[0]
        #expect(!line.dropLast().contains("\n"))
        let o = try parse(line)
        #expect(o["msg"] as? String == nasty)
        #expect(o["detail"] as? String == nasty)
        #expect(o["list"] as? [String] == ["a", "b"])
        #expect((o["map"] as? [String: Any])?["k"] as? String == "v")
        #expect(o["meta_ts"] as? String == "a metadata key named like a fixed one")
        #expect((o["ts"] as? String)?.hasSuffix("Z") == true)
    }

    @Test func anErrorAndTheMetadataProviderAreIncluded() throws {
        let lines = Lines()
        let provider = Logger.MetadataProvider { ["request": "r-1"] }
        let log = Logger(label: "x") { JSONLogHandler(label: $0, metadataProvider: provider, sink: { lines.add($0) }) }
        log.error("failed", metadata: ["request": "r-2"])
        let o = try parse(lines.all[0])
        #expect(o["request"] as? String == "r-2")  // the event's own value wins
        #expect(o["level"] as? String == "error")
    }

    @Test func linesFromManyThreadsStayWholeAndParse() throws {
        let lines = Lines()
        let log = logger(lines)
        DispatchQueue.concurrentPerform(iterations: 8) { t in
            for i in 0..<200 { log.info("line \(i)", metadata: ["thread": "\(t)", "i": "\(i)"]) }
        }
        #expect(lines.all.count == 1600)
        for l in lines.all { _ = try parse(l) }
    }

    @Test func timestampsAreUTCWithMilliseconds() {
        #expect(JSONLogHandler.timestamp(seconds: 0, milliseconds: 5) == "1970-01-01T00:00:00.005Z")
        #expect(JSONLogHandler.timestamp(seconds: 1_796_170_937, milliseconds: 325) == "2026-12-02T00:22:17.325Z")
    }
}

@Suite struct ObservabilityConfigTests {
    @Test func metricsListenIsAnAddressOrOffAndUnsetMeansTheDefault() throws {
        #expect(try NodeConfig.parse(yaml: "name: a").metricsListen == nil)
        #expect(try NodeConfig.parse(yaml: "metrics_listen: off").metricsListen == .off)
        #expect(try NodeConfig.parse(yaml: "metrics_listen: 0.0.0.0:9100").metricsListen == .at(Endpoint(host: "0.0.0.0", port: 9100)))
        #expect(try NodeConfig.parse(yaml: "metrics_listen: '[::1]:9946'").metricsListen == .at(Endpoint(host: "::1", port: 9946)))
        #expect(NodeConfig.defaultMetricsListen == Endpoint(host: "127.0.0.1", port: 9946))
        for bad in ["metrics_listen: localhost:9946", "metrics_listen: yes", "metrics_listen: 9946"] {
            do {
                _ = try NodeConfig.parse(yaml: bad, source: "m.yaml")
                Issue.record("accepted \(bad)")
            } catch {
                #expect(error.message.hasPrefix("metrics_listen: expected HOST:PORT with an IP address"), "\(error)")
                #expect(error.hint == "line 1 of m.yaml")
            }
        }
    }

    @Test func logFormatIsTextOrJSON() throws {
        #expect(try NodeConfig.parse(yaml: "name: a").logFormat == .text)
        #expect(try NodeConfig.parse(yaml: "log_format: json").logFormat == .json)
        #expect(throws: MeshError.self) { try NodeConfig.parse(yaml: "log_format: xml") }
    }

    @Test func flagsBeatTheEnvironmentWhichBeatsTheFile() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let path = dir.path + "/m.yaml"
        try "metrics_listen: 127.0.0.1:1111\nlog_format: text\n".write(toFile: path, atomically: true, encoding: .utf8)
        let env = ["MESHNODE_METRICS_LISTEN": "127.0.0.1:2222", "MESHNODE_LOG_FORMAT": "json"]
        func resolve(_ env: [String: String], flag: String?) throws -> NodeConfig {
            try NodeSettings.resolve(dataDir: dir.path, configFlag: path, listen: nil, advertise: nil, join: [], name: nil, role: nil,
                                     logLevel: nil, metricsListen: flag, logFormat: nil, environment: env).config
        }
        #expect(try resolve([:], flag: nil).metricsListen == .at(Endpoint(host: "127.0.0.1", port: 1111)))
        #expect(try resolve(env, flag: nil).metricsListen == .at(Endpoint(host: "127.0.0.1", port: 2222)))
        #expect(try resolve(env, flag: nil).logFormat == .json)
        #expect(try resolve(env, flag: "off").metricsListen == .off)
        #expect(throws: MeshError.self) { try resolve(["MESHNODE_METRICS_LISTEN": "nope"], flag: nil) }
        #expect(ConfigOverrides.environmentVariables.map(\.name).contains("MESHNODE_METRICS_LISTEN"))
    }
}
