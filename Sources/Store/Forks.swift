/// Evidence of a fork: two validly signed, different entries with one (origin, sequence).
public struct ForkEvidence: Sendable, Hashable {
    public var origin: NodeID
    public var sequence: UInt64
    public var first: [UInt8]
    public var second: [UInt8]
    public var detectedMs: Int64
}

extension Store {
    /// Recorded forks.
    public func forks() throws(MeshError) -> [ForkEvidence] {
        var out = [ForkEvidence]()
        try db.forEach("SELECT origin, sequence, entry_a, entry_b, detected_ms FROM forks ORDER BY id") { (s) throws(MeshError) in
            out.append(ForkEvidence(origin: NodeID(key: Bytes32(bytes: s.blob(0)) ?? .zero), sequence: UInt64(s.int(1)),
                                    first: s.blob(2), second: s.blob(3), detectedMs: s.int(4)))
        }
        return out
    }
}
