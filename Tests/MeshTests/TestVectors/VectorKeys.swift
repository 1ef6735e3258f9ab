import Gossip
import Store

/// The fixed keys and times every test vector is built from.
///
/// The Ed25519 seeds are the secret keys of RFC 8032 §7.1 TEST 1–3 and the X25519 keys those of
/// RFC 7748 §6.1, so an implementer can check their primitives against those RFCs first.
enum VectorKeys {
    struct Named: Sendable {
        let name: String
        let seed: [UInt8]
        let source: String
        let role: String
        let identity: NodeIdentity
        var id: NodeID { identity.nodeID }

        init(_ name: String, seedHex: String, source: String, role: String) {
            self.name = name
            seed = Hex.decode(seedHex)!
            self.source = source
            self.role = role
            identity = NodeIdentity.fromSeed(seed)
        }
    }

    static let alice = Named("alice", seedHex: "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
                             source: "RFC 8032 section 7.1, TEST 1",
                             role: "node A: origin of the manifest entries, session initiator, certificate subject")
    static let bob = Named("bob", seedHex: "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
                           source: "RFC 8032 section 7.1, TEST 2", role: "node B: session responder")
    static let authority = Named("authority", seedHex: "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
                                 source: "RFC 8032 section 7.1, TEST 3", role: "admission authority that signs the certificate")
    static let signers = [alice, bob, authority]

    /// Node ids that never sign anything in the vectors (members and origins only).
    static let carol = NodeID(key: Bytes32(bytes: [UInt8](repeating: 0xca, count: 32))!)
    static let dave = NodeID(key: Bytes32(bytes: [UInt8](repeating: 0xda, count: 32))!)
    static func synthetic(_ byte: UInt8) -> NodeID { NodeID(key: Bytes32(bytes: [UInt8](repeating: byte, count: 32))!) }

    /// X25519 secret keys of the session vectors: RFC 7748 section 6.1, Alice's and Bob's.
    static let initiatorEphemeralSecret = Hex.decode("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")!
    static let responderEphemeralSecret = Hex.decode("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")!

    /// 2026-01-01T00:00:00Z in ms since the Unix epoch: the base of every timestamp.
    static let baseTimeMs: Int64 = 1_767_225_600_000
}

/// The identity's printable forms, as the files give them for every key.
func identityFields(_ id: NodeID) -> [(String, VJ)] {
    [("public_key", .hex(id.key.bytes)), ("node_id", .string(id.description))]
}
