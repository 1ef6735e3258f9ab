import Foundation
import Store
import TestSupport
import Testing

/// `scripts/sqlite-writer.py`: a Python (stdlib sqlite3) writer, like a selfplay process.
let sqliteWriterScript: String = {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { url.deleteLastPathComponent() }
    return url.appendingPathComponent("scripts/sqlite-writer.py").path
}()

/// The SQL expression of a row's payload in the writer's `games` table (?1 = row bytes).
let writerPayloadSQL = "printf('%012d', id) || substr(replace(hex(zeroblob(?1)), '0', char(65 + id % 26)), 1, ?1 - 12)"

/// The writer's payload of row `id` (see `sqlite-writer.py`).
func writerPayload(id: Int64, rowBytes: Int = 1024) -> String {
    String(format: "%012lld", id) + String(repeating: Character(Unicode.Scalar(UInt8(65 + id % 26))), count: rowBytes - 12)
}

/// Inserts row `id` as the writer would, through `db` (the test's own connection).
func insertRow(_ db: Database, id: Int64, rowBytes: Int = 1024) throws {
    try db.query("INSERT INTO games(id, t, payload) VALUES(?, 0, ?)", [.int(id), .text(writerPayload(id: id, rowBytes: rowBytes))])
}

/// Text appended by a pipe's reader thread and read by the test.
final class LockedText: @unchecked Sendable {
    // @unchecked: `text` is only touched under `lock`.
    private let lock = NSLock()
    private var text = ""
    func append(_ d: Data) { lock.withLock { text += String(decoding: d, as: UTF8.self) } }
    var value: String { lock.withLock { text } }
}

/// A `sqlite-writer.py` process; ended by PID (SIGTERM, then SIGKILL) when stopped or released.
final class PythonWriter {
    let process = Process()
    private let out = Pipe()
    private let err = Pipe()
    private let collected = LockedText()
    private let errors = LockedText()

    init(_ args: [String]) throws {
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = [sqliteWriterScript] + args
        process.standardOutput = out
        process.standardError = err
        let o = collected, e = errors
        out.fileHandleForReading.readabilityHandler = { h in o.append(h.availableData) }
        err.fileHandleForReading.readabilityHandler = { h in e.append(h.availableData) }
        try process.run()
    }

    deinit { stop() }

    var lines: [String] { collected.value.split(separator: "\n").map(String.init) }
    var stderr: String { errors.value }
    var isRunning: Bool { process.isRunning }

    /// Waits for the process to exit by itself, at most `seconds`; then ends it. Its status.
    @discardableResult
    func wait(seconds: Double) -> Int32 {
        let deadline = Date().addingTimeInterval(seconds)
        while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        stop()
        return process.terminationStatus
    }

    /// Ends the process by its PID if it still runs.
    func stop() {
        guard process.isRunning else { return }
        let pid = process.processIdentifier
        kill(pid, SIGTERM)
        let deadline = Date().addingTimeInterval(5)
        while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
        if process.isRunning { kill(pid, SIGKILL) }
        process.waitUntilExit()
    }
}

/// Runs the writer to completion (`--init` and the like), failing the test on a non-zero exit.
func runWriter(_ args: [String], timeoutSeconds: Double = 120) throws {
    let w = try PythonWriter(args)
    let status = w.wait(seconds: timeoutSeconds)
    if status != 0 { Issue.record("sqlite-writer.py \(args) exited with \(status): \(w.stderr)") }
}

/// Writes a snapshot's content to `path` from the store's chunks (each verified by `readChunk`).
func exportSnapshot(_ recipe: Recipe, store: Store, to path: String) throws {
    _ = FileManager.default.createFile(atPath: path, contents: nil)
    let h = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
    defer { try? h.close() }
    try h.truncate(atOffset: 0)
    for c in recipe.chunks { try h.write(contentsOf: Data(try store.readChunk(c))) }
}

/// What a snapshot image, opened alone and read-only, contains.
struct ImageCheck: CustomStringConvertible {
    var integrity: String
    /// Rows with id ≤ the bound asked for, and the largest id.
    var rowsUpTo: Int64
    var maxID: Int64
    var badPayloads: Int64
    var versionBytes: [UInt8]
    var description: String { "integrity=\(integrity) rowsUpTo=\(rowsUpTo) maxID=\(maxID) bad=\(badPayloads) versions=\(versionBytes)" }
}

/// Opens `path` alone (no -wal may be beside it) with `immutable=1` and checks it.
func checkImage(_ path: String, upTo bound: Int64, rowBytes: Int = 1024) throws -> ImageCheck {
    #expect(!FileManager.default.fileExists(atPath: path + "-wal"))
    let bytes = try readBytes(path)
    let db = try Database(path: "file:\(path)?immutable=1", readOnly: true, create: false, uri: true)
    let integrity = try db.query("PRAGMA integrity_check").compactMap { if case .text(let t) = $0.first { t } else { nil } }
        .joined(separator: "; ")
    let rows = try db.scalarInt("SELECT count(*) FROM games WHERE id <= ?", [.int(bound)]) ?? -1
    let maxID = try db.scalarInt("SELECT coalesce(max(id), 0) FROM games") ?? -1
    let bad = try db.scalarInt("SELECT count(*) FROM games WHERE payload != \(writerPayloadSQL)", [.int(Int64(rowBytes))]) ?? -1
    return ImageCheck(integrity: integrity, rowsUpTo: rows, maxID: maxID, badPayloads: bad, versionBytes: Array(bytes[18...19]))
}

/// Checks a snapshot exported to `path`: a valid standalone database holding every row with
/// id ≤ `committedBefore` (ids are contiguous from 1), every payload intact.
func expectValid(_ snap: LiveDatabaseSnapshotter.Snapshot, store: Store, dir: TestDir, committedBefore: Int64,
                 rowBytes: Int = 1024, label: String) throws {
    let path = dir.sub("export-\(snap.contentID.short).db")
    defer { try? FileManager.default.removeItem(atPath: path) }
    try exportSnapshot(snap.recipe, store: store, to: path)
    let c = try checkImage(path, upTo: committedBefore, rowBytes: rowBytes)
    #expect(c.integrity == "ok", "\(label): \(c)")
    #expect(c.rowsUpTo == committedBefore, "\(label): rows committed before the snapshot are missing: \(c)")
    #expect(c.maxID >= committedBefore, "\(label): \(c)")
    #expect(c.badPayloads == 0, "\(label): \(c)")
    #expect(c.versionBytes == [1, 1], "\(label): header bytes 18-19 should say rollback journal: \(c)")
}

/// A connection of the test's own to the live database, for "what is committed now".
final class Observer {
    let db: Database
    init(_ path: String) throws {
        db = try Database(path: path, readOnly: true, create: false)
        try db.exec("PRAGMA busy_timeout = 20000")  // rollback-journal writers starve readers
    }

    /// The largest id committed at this moment (each query is its own read transaction).
    func committed() throws -> Int64 { try db.scalarInt("SELECT coalesce(max(id), 0) FROM games") ?? 0 }
}

func fileSize(_ path: String) -> UInt64 { FS.regularFileSize(path) ?? 0 }

func describe(_ c: LiveDatabaseSnapshotter.Counters) -> String {
    "full=\(c.full)\(c.fullReason.map { "(\($0.rawValue))" } ?? "") read=\(c.bytesRead >> 10)K hashed=\(c.bytesHashed >> 10)K "
        + "touched=\(c.chunksTouched) changed=\(c.chunksChanged) new=\(c.newChunkBytes >> 10)K pages=\(c.pagesChanged) "
        + "gen=\(c.walGeneration.map(String.init) ?? "-") frames=\(c.walFramesScanned) wal=\(c.walBytes >> 10)K "
        + "assisted=\(c.walRestartAssisted) attempts=\(c.attempts) \(c.durationMs)ms"
}
