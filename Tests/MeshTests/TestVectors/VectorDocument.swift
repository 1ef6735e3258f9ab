import Foundation
import Gossip
import Testing

/// A JSON value with ordered object keys: what a test-vector file holds, in the order it is written.
///
/// The files in `docs/test-vectors/` are generated from the code and must stay byte-identical to
/// what the code produces (`VectorFiles.check`). Integers are exact; bytes are lowercase hex
/// strings; there are no floating-point numbers.
indirect enum VJ: Sendable {
    case string(String)
    case int(Int64)
    case bool(Bool)
    case array([VJ])
    case object([(String, VJ)])

    static func hex<C: Collection>(_ bytes: C) -> VJ where C.Element == UInt8 { .string(Hex.encode(bytes)) }
    static func u64hex(_ v: UInt64) -> VJ { .string(u64Hex(v)) }
    static func n<I: BinaryInteger>(_ v: I) -> VJ { .int(Int64(v)) }

    /// The JSON text: two-space indentation, one member per line, arrays of scalars on one line.
    var text: String {
        var out = ""
        write(into: &out, indent: "")
        return out + "\n"
    }

    private var isScalar: Bool {
        switch self {
        case .string, .int, .bool: true
        case .array, .object: false
        }
    }

    private func write(into out: inout String, indent: String) {
        switch self {
        case .string(let s): out += Self.quote(s)
        case .int(let i): out += String(i)
        case .bool(let b): out += b ? "true" : "false"
        case .array(let a):
            if a.isEmpty { out += "[]"; return }
            if a.allSatisfy(\.isScalar) && a.count <= 8 && a.allSatisfy({ if case .string(let s) = $0 { s.count <= 20 } else { true } }) {
                out += "[" + a.map { v in var s = ""; v.write(into: &s, indent: ""); return s }.joined(separator: ", ") + "]"
                return
            }
            let inner = indent + "  "
            out += "[\n"
            for (k, v) in a.enumerated() {
                out += inner
                v.write(into: &out, indent: inner)
                out += k == a.count - 1 ? "\n" : ",\n"
            }
            out += indent + "]"
        case .object(let o):
            if o.isEmpty { out += "{}"; return }
            let inner = indent + "  "
            out += "{\n"
            for (k, (key, v)) in o.enumerated() {
                out += inner + Self.quote(key) + ": "
                v.write(into: &out, indent: inner)
                out += k == o.count - 1 ? "\n" : ",\n"
            }
            out += indent + "}"
        }
    }

    private static func quote(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case _ where u.value < 0x20: out += String(format: "\\u%04x", u.value)
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }
}

/// A u64 as 16 lowercase hex digits (big-endian), the form hashes of §7.4 take in the files.
func u64Hex(_ v: UInt64) -> String {
    let s = String(v, radix: 16)
    return String(repeating: "0", count: 16 - s.count) + s
}

/// Builds an ordered JSON object: `obj(("a", x), ("b", y))`.
func obj(_ members: (String, VJ)...) -> VJ { .object(members) }

/// Where the vector files live, and the check that keeps them equal to what the code produces.
enum VectorFiles {
    /// The package root: three levels above this source file's directory.
    static let packageRoot: String = {
        var dir = (#filePath as NSString).deletingLastPathComponent
        for _ in 0..<3 { dir = (dir as NSString).deletingLastPathComponent }
        return dir
    }()

    /// `docs/test-vectors` in this package.
    static let directory = packageRoot + "/docs/test-vectors"

    /// `MESHNODE_WRITE_TEST_VECTORS=1 swift test --filter TestVectors` rewrites the files instead
    /// of comparing them (for a deliberate format change; review the diff before committing it).
    static var rewriting: Bool { ProcessInfo.processInfo.environment["MESHNODE_WRITE_TEST_VECTORS"] == "1" }

    static func path(_ name: String) -> String { "\(directory)/\(name)" }

    /// Compares `document` with the file `name` (or rewrites the file when `rewriting`). A
    /// difference is reported field by field, each naming its JSON path, what the file says and
    /// what the code produces.
    static func check(_ name: String, _ document: VJ, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let generated = document.text
        if rewriting {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            try Data(generated.utf8).write(to: URL(fileURLWithPath: path(name)), options: .atomic)
            return
        }
        guard let data = FileManager.default.contents(atPath: path(name)) else {
            Issue.record("\(path(name)) is missing; generate it with MESHNODE_WRITE_TEST_VECTORS=1 swift test --filter TestVectors",
                         sourceLocation: sourceLocation)
            return
        }
        let onDisk = String(decoding: data, as: UTF8.self)
        if onDisk == generated { return }
        let fileLeaves = try leaves(of: data, name: name)
        let codeLeaves = try leaves(of: Data(generated.utf8), name: name)
        var problems: [String] = []
        for (path, value) in codeLeaves.sorted(by: { $0.key < $1.key }) {
            switch fileLeaves[path] {
            case nil: problems.append("\(path): missing from the file; the code gives \(value)")
            case let f? where f != value: problems.append("\(path): \(difference(file: f, code: value))")
            default: break
            }
        }
        for path in fileLeaves.keys.sorted() where codeLeaves[path] == nil {
            problems.append("\(path): in the file but no longer produced by the code")
        }
        let hint = "if the change is deliberate, regenerate with MESHNODE_WRITE_TEST_VECTORS=1 swift test --filter TestVectors and update docs/PROTOCOL.md"
        if problems.isEmpty {
            Issue.record("\(name): same values but different formatting than the generator writes; \(hint)",
                         sourceLocation: sourceLocation)
        } else {
            let shown = problems.prefix(20).joined(separator: "\n  ")
            let more = problems.count > 20 ? "\n  … and \(problems.count - 20) more" : ""
            Issue.record("\(name): \(problems.count) field(s) differ between the code and the file:\n  \(shown)\(more)\n\(hint)",
                         sourceLocation: sourceLocation)
        }
    }

    /// "the file has X, the code gives Y"; for long hex strings only the bytes around the first
    /// difference, and where it is.
    static func difference(file: String, code: String) -> String {
        let f = Array(file.utf8), c = Array(code.utf8)
        guard f.count > 80 || c.count > 80 else { return "the file has \(file), the code gives \(code)" }
        var i = 1  // past the opening quote
        while i < f.count && i < c.count && f[i] == c[i] { i += 1 }
        let start = max(1, (i - 1) / 2 * 2 - 16)
        func window(_ b: [UInt8]) -> String {
            let end = min(b.count - 1, start + 48)
            return start < end ? "…" + String(decoding: b[start..<end], as: UTF8.self) + "…" : "(ends before)"
        }
        return "differs from byte \((i - 1) / 2) on (\(f.count - 2) vs \(c.count - 2) hex digits): the file has \(window(f)), the code gives \(window(c))"
    }

    /// Every scalar of a JSON document by its path (`vectors[2].chunks[0].hash`), as text.
    private static func leaves(of data: Data, name: String) throws -> [String: String] {
        let root = try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])
        var out: [String: String] = [:]
        func walk(_ v: Any, _ path: String) {
            if let d = v as? [String: Any] {
                if d.isEmpty { out[path] = "{}" }
                for (k, x) in d { walk(x, path.isEmpty ? k : "\(path).\(k)") }
            } else if let a = v as? [Any] {
                if a.isEmpty { out[path] = "[]" }
                for (i, x) in a.enumerated() { walk(x, "\(path)[\(i)]") }
            } else if let s = v as? String {
                out[path] = "\"\(s)\""
            } else {
                out[path] = "\(v)"
            }
        }
        walk(root, "")
        return out
    }
}
