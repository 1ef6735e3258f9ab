// One outgoing frame in memory that does not move until the kernel has taken it.

/// The bytes of one frame on its way out: `headroomBytes` reserved for the length prefix,
/// the message, and spare capacity for what a session appends (the AEAD tag).
///
/// It exists so that a 2 MiB chunk is never copied between the disk read and the socket
/// write: a serving worker reads the chunk file straight into the message area, the
/// session encrypts it in place and appends the tag, the framing writes the length in
/// front, and the stream hands the same memory to `uv_write`, keeping the frame alive until
/// the write callback. (A Swift array cannot be used for that: its storage is only
/// guaranteed to stay put inside `withUnsafeBytes`.)
///
/// Single owner at a time: filled on one thread, then handed to the loop; never shared.
public final class OutgoingFrame: @unchecked Sendable {
    // @unchecked: the buffer is written by one owner at a time (a worker, then the loop).

    /// Bytes reserved in front of the message for the frame's length prefix.
    public static let headroomBytes = 4
    /// Spare bytes reserved after the message capacity for a session's trailer (AEAD tag).
    public static let trailerBytes = 16

    /// Bytes the frame can hold, headroom included.
    public let capacity: Int
    /// Bytes in use, headroom included.
    public private(set) var count: Int
    private let allocation: UnsafeMutableRawPointer
    private let base: UnsafeMutableRawPointer

    /// A frame that can hold a message of up to `messageCapacity` bytes. With
    /// `pageAlignedAt: k`, message byte `k` falls on a 4096-byte boundary, so that a file can
    /// be read into the message from there with O_DIRECT (the device writes our memory; no
    /// page-cache copy).
    public init(messageCapacity: Int, pageAlignedAt alignedOffset: Int? = nil) {
        precondition(messageCapacity >= 0)
        capacity = Self.headroomBytes + messageCapacity + Self.trailerBytes
        if let k = alignedOffset {
            // A plain allocation with a page of slack, aligned by hand: `posix_memalign`
            // leaves odd-sized gaps that glibc could not reuse for the next frame, and a
            // serving node's heap grew to 140 MiB; same-sized blocks are reused exactly.
            allocation = .allocate(byteCount: 4096 + capacity, alignment: 16)
            let at = Int(bitPattern: allocation) + Self.headroomBytes + k
            base = allocation + (4096 - at % 4096) % 4096
        } else {
            allocation = .allocate(byteCount: capacity, alignment: 16)
            base = allocation
        }
        base.initializeMemory(as: UInt8.self, repeating: 0, count: Self.headroomBytes)
        count = Self.headroomBytes
    }

    /// A frame holding a copy of `message`.
    public convenience init(message: [UInt8]) {
        self.init(messageCapacity: message.count)
        append(message)
    }

    deinit { allocation.deallocate() }

    /// Bytes of message (everything after the headroom).
    public var messageCount: Int { count - Self.headroomBytes }

    /// The message area, mutable (encryption in place).
    public var message: UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: base + Self.headroomBytes, count: count - Self.headroomBytes)
    }

    /// The whole frame: length prefix and message.
    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }

    /// Room left for message bytes (the trailer reserve is not part of it).
    public var spareCapacity: Int { capacity - Self.trailerBytes - count }

    public func append(_ byte: UInt8) {
        precondition(spareCapacity >= 1, "OutgoingFrame overflow")
        base.storeBytes(of: byte, toByteOffset: count, as: UInt8.self)
        count += 1
    }

    /// Appends `value` big-endian.
    public func appendU32(_ value: UInt32) {
        for shift in stride(from: 24, through: 0, by: -8) { append(UInt8(truncatingIfNeeded: value >> UInt32(shift))) }
    }

    public func append(_ bytes: UnsafeRawBufferPointer) {
        precondition(bytes.count <= spareCapacity, "OutgoingFrame overflow")
        if let src = bytes.baseAddress, bytes.count > 0 { (base + count).copyMemory(from: src, byteCount: bytes.count) }
        count += bytes.count
    }

    public func append(_ bytes: [UInt8]) { bytes.withUnsafeBytes { append($0) } }

    /// Lets `fill` write up to `maxBytes` at the end (for example a file read straight into
    /// the frame); `fill` returns how many it wrote.
    public func appendInPlace<E: Error>(maxBytes: Int, _ fill: (UnsafeMutableRawBufferPointer) throws(E) -> Int) throws(E) {
        precondition(maxBytes <= spareCapacity, "OutgoingFrame overflow")
        try appendUnchecked(maxBytes: maxBytes, fill)
    }

    /// Appends the session trailer (the AEAD tag) into the reserve kept for it.
    func appendTrailer(_ fill: (UnsafeMutableRawBufferPointer) -> Int) {
        precondition(capacity - count >= Self.trailerBytes, "OutgoingFrame trailer overflow")
        appendUnchecked(maxBytes: Self.trailerBytes, fill)
    }

    private func appendUnchecked<E: Error>(maxBytes: Int, _ fill: (UnsafeMutableRawBufferPointer) throws(E) -> Int) throws(E) {
        let n = try fill(UnsafeMutableRawBufferPointer(start: base + count, count: maxBytes))
        precondition(n >= 0 && n <= maxBytes)
        count += n
    }

    /// Writes the big-endian length of everything after the headroom into the headroom.
    public func writeLengthPrefix() {
        let len = UInt32(truncatingIfNeeded: count - Self.headroomBytes)
        for i in 0..<4 { base.storeBytes(of: UInt8(truncatingIfNeeded: len >> UInt32(24 - 8 * i)), toByteOffset: i, as: UInt8.self) }
    }
}
