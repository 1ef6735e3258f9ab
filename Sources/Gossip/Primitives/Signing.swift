/// Signs on behalf of this node. The node's runtime passes its identity in; the
/// protocol code never sees a secret key.
public protocol Signer: Sendable {
    var nodeID: NodeID { get }
    func sign(_ message: [UInt8]) -> Signature
}

/// Checks Ed25519 signatures. Passed into every state machine so that the protocol
/// core stays pure: the node uses libsodium (`Store.Ed25519`), tests may too.
public protocol SignatureVerifier: Sendable {
    func verify(_ signature: Signature, of message: [UInt8], by signer: NodeID) -> Bool
}

/// Domain-separation prefixes: every signed structure starts its signed bytes with
/// one of these, so that a signature over one kind can never be replayed as another.
public enum SigningDomain {
    /// Manifest entries (`ManifestEntry.signedBytes`).
    public static let manifestEntry = Array("meshnode/entry/v1\0".utf8)
    /// Version-2 manifest entries (puts with a clock, tombstones, later kinds).
    public static let manifestEntryV2 = Array("meshnode/entry/v2\0".utf8)
    /// Admission certificates (`Certificate.signedBytes`).
    public static let certificate = Array("meshnode/cert/v1\0".utf8)
}
