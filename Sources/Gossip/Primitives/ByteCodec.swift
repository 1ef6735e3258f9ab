/// Appends fixed-width big-endian ("network order") fields to a byte buffer.
/// Every multi-byte integer on meshnode's wire and in its signed structures is big-endian.
public struct ByteWriter: Sendable {
    public private(set) var bytes: [UInt8]

    public init(capacity: Int = 256) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    public var count: Int { bytes.count }

    public mutating func u8(_ v: UInt8) { bytes.append(v) }
    public mutating func u16(_ v: UInt16) { int(v) }
    public mutating func u32(_ v: UInt32) { int(v) }
    public mutating func u64(_ v: UInt64) { int(v) }
    public mutating func i64(_ v: Int64) { int(UInt64(bitPattern: v)) }

    private mutating func int<T: FixedWidthInteger>(_ v: T) {
        var shift = T.bitWidth - 8
        while shift >= 0 {
            bytes.append(UInt8(truncatingIfNeeded: v >> T(shift)))
            shift -= 8
        }
    }

    public mutating func raw<C: Sequence>(_ b: C) where C.Element == UInt8 { bytes.append(contentsOf: b) }
    public mutating func bytes32(_ v: Bytes32) { raw(v.bytes) }

    /// A u16 length, then the bytes. Callers enforce their own smaller limits first.
    public mutating func blob16(_ b: [UInt8]) {
        precondition(b.count <= Int(UInt16.max))
        u16(UInt16(b.count))
        raw(b)
    }

    /// A u16 byte length, then UTF-8.
    public mutating func string16(_ s: String) { blob16(Array(s.utf8)) }
}

/// Why a decoder refused its input. Decoders never trap: every path over arbitrary
/// bytes ends in a value or one of these.
public enum DecodeError: Error, Equatable, Sendable {
    case truncated(needed: Int, remaining: Int)
    case tooLong(field: String, length: Int, limit: Int)
    case invalid(field: String)
    case trailingBytes(Int)
    case unsupportedVersion(UInt8)
}

/// Reads fixed-width big-endian fields from a byte slice; total over arbitrary input.
public struct ByteReader: Sendable {
    public let bytes: [UInt8]
    public private(set) var offset: Int

    public init(_ bytes: [UInt8], offset: Int = 0) {
        self.bytes = bytes
        self.offset = offset
    }

    public var remaining: Int { bytes.count - offset }
    public var isAtEnd: Bool { offset >= bytes.count }

    private mutating func need(_ n: Int) throws(DecodeError) {
        guard n >= 0, remaining >= n else { throw .truncated(needed: n, remaining: remaining) }
    }

    public mutating func u8() throws(DecodeError) -> UInt8 {
        try need(1)
        defer { offset += 1 }
        return bytes[offset]
    }

    public mutating func u16() throws(DecodeError) -> UInt16 { try int(UInt16.self) }
    public mutating func u32() throws(DecodeError) -> UInt32 { try int(UInt32.self) }
    public mutating func u64() throws(DecodeError) -> UInt64 { try int(UInt64.self) }
    public mutating func i64() throws(DecodeError) -> Int64 { Int64(bitPattern: try int(UInt64.self)) }

    private mutating func int<T: FixedWidthInteger>(_: T.Type) throws(DecodeError) -> T {
        let n = T.bitWidth / 8
        try need(n)
        var v: T = 0
        for k in 0..<n { v = v << 8 | T(bytes[offset + k]) }
        offset += n
        return v
    }

    public mutating func raw(_ n: Int) throws(DecodeError) -> [UInt8] {
        try need(n)
        defer { offset += n }
        return Array(bytes[offset..<offset + n])
    }

    public mutating func bytes32() throws(DecodeError) -> Bytes32 {
        try need(32)
        defer { offset += 32 }
        return bytes.withUnsafeBytes { Bytes32(raw: UnsafeRawBufferPointer(rebasing: $0[offset..<offset + 32])) }
    }

    public mutating func blob16(field: String, limit: Int) throws(DecodeError) -> [UInt8] {
        let n = Int(try u16())
        guard n <= limit else { throw .tooLong(field: field, length: n, limit: limit) }
        return try raw(n)
    }

    /// A u16-length UTF-8 string; invalid UTF-8 is refused, not repaired.
    public mutating func string16(field: String, limit: Int) throws(DecodeError) -> String {
        let b = try blob16(field: field, limit: limit)
        guard let s = String(validating: b, as: UTF8.self) else { throw .invalid(field: field) }
        return s
    }

    public func expectEnd() throws(DecodeError) {
        guard remaining == 0 else { throw .trailingBytes(remaining) }
    }
}
