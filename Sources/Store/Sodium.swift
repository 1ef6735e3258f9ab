import CSodium

/// libsodium setup and the BLAKE2b-256 hash used for chunks and content ids.
public enum Sodium {
    private static let initialized: Bool = sodium_init() >= 0

    /// Initialises libsodium once (thread-safe; later calls are free). Traps if the
    /// library cannot initialise, since nothing cryptographic would be safe then.
    public static func ensureInitialized() {
        precondition(initialized, "libsodium failed to initialise")
    }
}

/// BLAKE2b with a 32-byte digest, no key (`crypto_generichash`).
public enum Blake2b256 {
    public static let digestBytes = 32

    /// Hashes raw memory in one call.
    public static func hash(_ bytes: UnsafeRawBufferPointer) -> Bytes32 {
        var out = [UInt8](repeating: 0, count: 32)
        out.withUnsafeMutableBufferPointer { o in
            _ = crypto_generichash(o.baseAddress!, 32, bytes.baseAddress?.assumingMemoryBound(to: UInt8.self),
                                   UInt64(bytes.count), nil, 0)
        }
        return Bytes32(bytes: out)!
    }

    public static func hash(_ bytes: [UInt8]) -> Bytes32 {
        bytes.withUnsafeBytes { hash($0) }
    }
}
