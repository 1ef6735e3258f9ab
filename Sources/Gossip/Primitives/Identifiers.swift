/// A node's identity: its Ed25519 public key (32 bytes).
///
/// Printed as 52 characters of lowercase RFC 4648 base32 without padding; the short
/// form, for tables and logs, is the first 10 of them (50 bits: unique in any cluster
/// that could exist, and still easy to read aloud).
public struct NodeID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var key: Bytes32
    public init(key: Bytes32) { self.key = key }

    public static let shortLength = 10

    public var description: String { Base32.encode(key.bytes) }
    public var short: String { String(description.prefix(Self.shortLength)) }

    /// Parses the 52-character printable form (case-insensitive).
    public init?(_ text: String) {
        guard text.utf8.count == 52, let raw = Base32.decode(text), let k = Bytes32(bytes: raw) else { return nil }
        key = k
    }

    public static func < (a: NodeID, b: NodeID) -> Bool { a.key < b.key }
}

/// The BLAKE2b-256 hash of one chunk's bytes; also the chunk's file name.
public struct ChunkHash: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var digest: Bytes32
    public init(digest: Bytes32) { self.digest = digest }
    public var description: String { digest.hex }
    public init?(hex: String) {
        guard let d = Bytes32(hex: hex) else { return nil }
        digest = d
    }
    public static func < (a: ChunkHash, b: ChunkHash) -> Bool { a.digest < b.digest }
}

/// A file's content id: BLAKE2b-256 over its size, chunk size and ordered chunk
/// hashes (the exact construction is in docs/PROTOCOL.md, "Content ids").
/// Printed as 64 lowercase hex characters; `short` is the first 12.
public struct ContentID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var digest: Bytes32
    public init(digest: Bytes32) { self.digest = digest }
    public var description: String { digest.hex }
    public var short: String { String(digest.hex.prefix(12)) }
    public init?(hex: String) {
        guard hex.utf8.count == 64, let d = Bytes32(hex: hex) else { return nil }
        digest = d
    }
    public static func < (a: ContentID, b: ContentID) -> Bool { a.digest < b.digest }
}

/// An Ed25519 signature: 64 bytes.
public struct Signature: Hashable, Sendable {
    public var r: Bytes32
    public var s: Bytes32
    public init(r: Bytes32, s: Bytes32) { self.r = r; self.s = s }
    public init?(bytes: [UInt8]) {
        guard bytes.count == 64, let r = Bytes32(bytes: bytes[0..<32]), let s = Bytes32(bytes: bytes[32..<64]) else { return nil }
        self.r = r; self.s = s
    }
    public var bytes: [UInt8] { r.bytes + s.bytes }
    public static let zero = Signature(r: .zero, s: .zero)
}

/// What kind of data an item holds. The wire value is the raw value.
public enum ItemType: UInt8, CaseIterable, Sendable, CustomStringConvertible {
    case other = 0
    case game = 1
    case model = 2
    case npz = 3
    case checkpoint = 4

    public var description: String {
        switch self {
        case .other: "other"
        case .game: "game"
        case .model: "model"
        case .npz: "npz"
        case .checkpoint: "checkpoint"
        }
    }

    public init?(name: String) {
        guard let t = ItemType.allCases.first(where: { $0.description == name.lowercased() }) else { return nil }
        self = t
    }

    /// The type a file name suggests: `.db` game databases, `.npz` training files,
    /// `.pt`/`.pth`/`.ckpt`/`.safetensors` checkpoints, `.onnx` models.
    public static func guess(fromName name: String) -> ItemType {
        let lower = name.lowercased()
        if lower.hasSuffix(".db") || lower.hasSuffix(".sqlite") || lower.hasSuffix(".sqlite3") { return .game }
        if lower.hasSuffix(".npz") { return .npz }
        if lower.hasSuffix(".pt") || lower.hasSuffix(".pth") || lower.hasSuffix(".ckpt") || lower.hasSuffix(".safetensors") { return .checkpoint }
        if lower.hasSuffix(".onnx") { return .model }
        return .other
    }
}
