import Foundation
import Testing

/// The known-answer vectors in `docs/test-vectors/` (docs/PROTOCOL.md, Appendix A) are produced
/// here from the code, layer by layer, and compared field by field with the committed files: a
/// change to any wire format fails these tests until the files (and the spec) are updated on
/// purpose with `MESHNODE_WRITE_TEST_VECTORS=1 swift test --filter TestVectors`.
@Suite
struct TestVectors {
    static let files: [(String, @Sendable () throws -> VJ)] = [
        ("identities.json", PrimitiveVectors.identities),
        ("content-ids.json", PrimitiveVectors.contentIDs),
        ("manifest-entries.json", PrimitiveVectors.manifestEntries),
        ("certificates.json", PrimitiveVectors.certificates),
        ("gossip-envelopes.json", GossipVectors.envelopes),
        ("anti-entropy.json", GossipVectors.antiEntropy),
        ("chunk-exchange.json", SessionVectors.chunkExchange),
        ("custody.json", CustodyVectors.custody),
        ("session.json", SessionVectors.sessions),
    ]

    @Test(.timeLimit(.minutes(1))) func theIdentityVectorsMatchTheCode() throws {
        try VectorFiles.check("identities.json", PrimitiveVectors.identities())
    }

    @Test(.timeLimit(.minutes(1))) func theContentIDVectorsMatchTheCodeAndMeshnodePut() throws {
        try VectorFiles.check("content-ids.json", PrimitiveVectors.contentIDs())
    }

    @Test(.timeLimit(.minutes(1))) func theManifestEntryVectorsMatchWhatPutSigns() throws {
        try VectorFiles.check("manifest-entries.json", PrimitiveVectors.manifestEntries())
    }

    @Test(.timeLimit(.minutes(1))) func theCertificateVectorsMatchTheCodeAndItsAdmissionDecisions() throws {
        try VectorFiles.check("certificates.json", PrimitiveVectors.certificates())
    }

    @Test(.timeLimit(.minutes(1))) func theGossipEnvelopeVectorsMatchTheCodeAndDecodeBack() throws {
        try VectorFiles.check("gossip-envelopes.json", GossipVectors.envelopes())
    }

    @Test(.timeLimit(.minutes(1))) func theAntiEntropyVectorsMatchTheManifestHashesAndTheWire() throws {
        try VectorFiles.check("anti-entropy.json", GossipVectors.antiEntropy())
    }

    @Test(.timeLimit(.minutes(1))) func theChunkExchangeVectorsMatchTheCodeAndDecodeBack() throws {
        try VectorFiles.check("chunk-exchange.json", SessionVectors.chunkExchange())
    }

    @Test(.timeLimit(.minutes(1))) func theCustodyVectorsMatchTheCodeAndDecodeBack() throws {
        try VectorFiles.check("custody.json", CustodyVectors.custody())
    }

    @Test(.timeLimit(.minutes(1)), .enabled(if: SessionVectors.aesAvailable, "the AES-256-GCM session needs libsodium's AES-GCM (AES-NI or ARMv8 crypto)"))
    func theSessionVectorsMatchTheHandshakeAndTheSealedFramesOfTheCode() throws {
        try VectorFiles.check("session.json", SessionVectors.sessions())
    }

    /// A second implementation, in Python, recomputes every vector from the inputs in the files:
    /// proof that the files (and the spec) are enough without any Swift code.
    @Test(.ownThread(timeLimit: .minutes(1)))
    func anIndependentPythonCheckerAgreesWithEveryFile() throws {
        let python = "/usr/bin/python3"
        guard FileManager.default.isExecutableFile(atPath: python) else {
            print("skipped: no \(python)")
            return
        }
        if VectorFiles.rewriting {
            // Other tests rewrite the same files concurrently; write them all first (atomically,
            // the same bytes), so that the checker reads complete files.
            for (name, make) in Self.files where name != "session.json" || SessionVectors.aesAvailable {
                try VectorFiles.check(name, make())
            }
        }
        let checker = VectorFiles.packageRoot + "/scripts/check-test-vectors.py"
        let result = try PythonRun.run([python, checker, VectorFiles.directory], timeoutSeconds: 50)
        #expect(result.status == 0, "scripts/check-test-vectors.py failed:\n\(result.output)")
        // Without python3-cryptography it checks the hash-based vectors only, and says so.
        #expect(result.output.contains("all checks passed"), "\(result.output)")
    }
}

/// Runs a child process to completion (bounded), stdout and stderr merged.
enum PythonRun {
    struct Result { let status: Int32; let output: String }

    static func run(_ argv: [String], timeoutSeconds: Double) throws -> Result {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: argv[0])
        p.arguments = Array(argv.dropFirst())
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        p.standardInput = FileHandle.nullDevice
        try p.run()
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        // Read while it runs, so a full pipe cannot stall it.
        var data = Data()
        let reader = out.fileHandleForReading
        let group = DispatchGroup()
        let box = DataBox()
        group.enter()
        DispatchQueue.global().async {
            box.data = reader.readDataToEndOfFile()
            group.leave()
        }
        while p.isRunning && Date() < deadline { usleep(20_000) }
        if p.isRunning {
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            _ = group.wait(timeout: .now() + 5)
            return Result(status: 137, output: "killed after \(timeoutSeconds) s\n" + String(decoding: box.data, as: UTF8.self))
        }
        p.waitUntilExit()
        _ = group.wait(timeout: .now() + 5)
        data = box.data
        return Result(status: p.terminationStatus, output: String(decoding: data, as: UTF8.self))
    }

    private final class DataBox: @unchecked Sendable { var data = Data() }
}
