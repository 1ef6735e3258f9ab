import Gossip

/// A fast stand-in for Ed25519 in the simulator: the "signature" is a keyed 64-bit
/// hash of the message under the signer's node id. It is NOT secure (anyone who knows
/// the id can forge); it models only the verification outcome, which is all the
/// protocol logic depends on. The real node signs and verifies with libsodium Ed25519.
public struct SimSigner: Signer {
    public let nodeID: NodeID
    public init(nodeID: NodeID) { self.nodeID = nodeID }
    public func sign(_ message: [UInt8]) -> Signature { SimCrypto.signature(message, key: nodeID.key) }
}

public struct SimVerifier: SignatureVerifier {
    public init() {}
    public func verify(_ signature: Signature, of message: [UInt8], by signer: NodeID) -> Bool {
        signature == SimCrypto.signature(message, key: signer.key)
    }
}

public enum SimCrypto {
    static func signature(_ m: [UInt8], key: Bytes32) -> Signature {
        let h = hash(m, key: key)
        return Signature(r: Bytes32(w0: h, w1: SplitMix64.mix(h), w2: 0, w3: 0), s: .zero)
    }

    static func hash(_ m: [UInt8], key: Bytes32) -> UInt64 {
        var h = key.w0 ^ SplitMix64.mix(key.w1 ^ key.w2 ^ key.w3) ^ UInt64(m.count)
        m.withUnsafeBytes { raw in
            let n = raw.count
            var i = 0
            while i + 8 <= n {
                let w = raw.loadUnaligned(fromByteOffset: i, as: UInt64.self)
                h = (h ^ w) &* 0x9E37_79B9_7F4A_7C15
                h ^= h >> 29
                i += 8
            }
            var tail: UInt64 = 0
            while i < n { tail = tail << 8 | UInt64(raw[i]); i += 1 }
            h = (h ^ tail) &* 0xBF58_476D_1CE4_E5B9
        }
        return SplitMix64.mix(h)
    }

    /// A node id derived from the run seed and an index.
    public static func nodeID(seed: UInt64, index: Int) -> NodeID {
        let a = SplitMix64.mix(seed &+ UInt64(index) &* 0x1000_0000_01B3)
        return NodeID(key: Bytes32(w0: a, w1: SplitMix64.mix(a), w2: SplitMix64.mix(a ^ 1), w3: SplitMix64.mix(a ^ 2)))
    }
}
