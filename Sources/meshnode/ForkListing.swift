import Foundation
import Store

/// One side of a fork in `meshnode ls --forks --json`.
struct ForkEntryJSON: Encodable {
    var id: String
    var name: String
    var type: String
    var size: UInt64
    var chunk_size: UInt32
    var created_ms: Int64
    /// The entry as encoded on the wire (hex): the evidence itself, signature included.
    var encoded: String

    init(_ e: ManifestEntry) {
        id = e.contentID.description
        name = e.name
        type = e.type.description
        size = e.sizeBytes
        chunk_size = e.chunkSizeBytes
        created_ms = e.createdAtMs
        encoded = Hex.encode(e.encoded)
    }
}

/// One fork in `meshnode ls --forks --json`: `held` is the entry the manifest keeps (it came
/// first), `other` the conflicting one.
struct ForkJSON: Encodable {
    var origin: String
    var sequence: UInt64
    var detected_ms: Int64
    var held: ForkEntryJSON?
    var other: ForkEntryJSON?
}

/// `meshnode ls --forks [--json]`: the forks kept in the store (by the running node or an
/// earlier one), oldest first.
func listForks(_ store: Store, json: Bool) throws(MeshError) {
    let forks = try store.forks()
    if json {
        FileHandleOut.stdout(jsonText(forks.map { f in
            ForkJSON(origin: f.origin.description, sequence: f.sequence, detected_ms: f.detectedMs,
                     held: f.firstEntry.map(ForkEntryJSON.init), other: f.secondEntry.map(ForkEntryJSON.init))
        }))
        return
    }
    guard !forks.isEmpty else {
        FileHandleOut.stdout("no forks\n")
        return
    }
    func side(_ e: ManifestEntry?) -> String { e.map { "\($0.contentID.short) \($0.name)" } ?? "(does not decode)" }
    let iso = ISO8601DateFormatter()
    var rows = [["ORIGIN", "SEQ", "HELD", "OTHER", "DETECTED"]]
    for f in forks {
        rows.append([f.origin.short, "\(f.sequence)", side(f.firstEntry), side(f.secondEntry),
                     iso.string(from: Date(timeIntervalSince1970: Double(f.detectedMs) / 1000))])
    }
    FileHandleOut.stdout(table(rows))
}
