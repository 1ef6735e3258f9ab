/// An admission certificate: an authority's signed statement that a node id may
/// join the cluster until a given time.
///
/// A cluster trusts either a fixed list of node ids (`trusted_keys`) or one or more
/// authority keys (`authority_keys`). An ephemeral host gets a certificate from
/// `meshnode admit NODE_ID --authority FILE` and presents it as its *credential* on
/// every join and alive announcement, so no other node's configuration has to change
/// when it appears. Certificates expire (`expiresAtMs`), and an authority can revoke
/// one early by serial or by subject (see `AdmissionPolicy.revokedSerials` /
/// `revokedNodes`). The exact layout is in docs/PROTOCOL.md, "Admission".
public struct Certificate: Hashable, Sendable {
    public static let formatVersion: UInt8 = 1
    public static let maxNameBytes = 48
    public static let maxRoleBytes = 16
    /// The largest encoded certificate; it must fit the gossip credential field.
    public static let maxEncodedBytes = 1 + 32 + 32 + 8 + 8 + 8 + 2 + maxNameBytes + 2 + maxRoleBytes + 64

    /// The authority's public key (an Ed25519 key, printed like a node id).
    public var authority: NodeID
    /// The node this certificate admits.
    public var subject: NodeID
    /// Unique per authority; revocation lists name serials.
    public var serial: UInt64
    /// Wall-clock milliseconds since the Unix epoch.
    public var issuedAtMs: Int64
    public var expiresAtMs: Int64
    /// Informational: the name and role the authority had in mind for the node.
    public var name: String
    public var role: String
    public var signature: Signature

    public init(authority: NodeID, subject: NodeID, serial: UInt64, issuedAtMs: Int64, expiresAtMs: Int64,
                name: String = "", role: String = "", signature: Signature = .zero) {
        self.authority = authority
        self.subject = subject
        self.serial = serial
        self.issuedAtMs = issuedAtMs
        self.expiresAtMs = expiresAtMs
        self.name = name
        self.role = role
        self.signature = signature
    }

    public func encodeBody(into w: inout ByteWriter) {
        w.u8(Self.formatVersion)
        w.bytes32(authority.key)
        w.bytes32(subject.key)
        w.u64(serial)
        w.i64(issuedAtMs)
        w.i64(expiresAtMs)
        w.string16(name)
        w.string16(role)
    }

    /// The domain prefix `meshnode/cert/v1` + NUL, then the body.
    public var signedBytes: [UInt8] {
        var w = ByteWriter(capacity: 200)
        w.raw(SigningDomain.certificate)
        encodeBody(into: &w)
        return w.bytes
    }

    public var encoded: [UInt8] {
        var w = ByteWriter(capacity: Self.maxEncodedBytes)
        encodeBody(into: &w)
        w.raw(signature.bytes)
        return w.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws(DecodeError) -> Certificate {
        guard bytes.count <= maxEncodedBytes else {
            throw .tooLong(field: "certificate", length: bytes.count, limit: maxEncodedBytes)
        }
        var r = ByteReader(bytes)
        let version = try r.u8()
        guard version == formatVersion else { throw .unsupportedVersion(version) }
        let authority = NodeID(key: try r.bytes32())
        let subject = NodeID(key: try r.bytes32())
        let serial = try r.u64()
        let issued = try r.i64()
        let expires = try r.i64()
        guard expires > issued else { throw .invalid(field: "certificate.expires") }
        let name = try r.string16(field: "certificate.name", limit: maxNameBytes)
        let role = try r.string16(field: "certificate.role", limit: maxRoleBytes)
        guard let sig = Signature(bytes: try r.raw(64)) else { throw .invalid(field: "certificate.signature") }
        try r.expectEnd()
        return Certificate(authority: authority, subject: subject, serial: serial, issuedAtMs: issued,
                           expiresAtMs: expires, name: name, role: role, signature: sig)
    }

    /// Returns the certificate signed by `authority`, whose node id must be `self.authority`.
    public func signed(by authority: any Signer) -> Certificate {
        precondition(authority.nodeID == self.authority, "a certificate is signed by its own authority")
        var c = self
        c.signature = authority.sign(signedBytes)
        return c
    }
}

/// Who may join. Pure: wall-clock time is passed in.
///
/// A node is admitted when it is listed in `trustedNodes`, or when it presents a
/// certificate that (1) decodes, (2) names it as subject, (3) is signed by one of
/// `authorities`, (4) is within its validity window (with `clockSkewMs` slack on both
/// ends), and (5) is not revoked by serial or by subject. Revocation of a listed
/// trusted node is by removing it from `trustedNodes` (or listing it in `revokedNodes`,
/// which wins over every other rule).
public struct AdmissionPolicy: Sendable {
    public var trustedNodes: Set<NodeID>
    public var authorities: Set<NodeID>
    public var revokedSerials: Set<RevokedSerial>
    public var revokedNodes: Set<NodeID>
    public var clockSkewMs: Int64

    /// A revoked certificate: (authority, serial).
    public struct RevokedSerial: Hashable, Sendable {
        public var authority: NodeID
        public var serial: UInt64
        public init(authority: NodeID, serial: UInt64) { self.authority = authority; self.serial = serial }
    }

    /// Why a node was (not) admitted; the reasons are counted by the node.
    public enum Decision: Equatable, Sendable {
        case admittedByKey
        case admittedByCertificate(serial: UInt64, expiresAtMs: Int64)
        case rejected(Rejection)
    }

    public enum Rejection: String, Equatable, Sendable, CaseIterable {
        case untrusted = "untrusted_key"
        case malformedCertificate = "malformed_certificate"
        case wrongSubject = "certificate_wrong_subject"
        case unknownAuthority = "certificate_unknown_authority"
        case badCertificateSignature = "certificate_bad_signature"
        case notYetValid = "certificate_not_yet_valid"
        case expired = "certificate_expired"
        case revoked = "revoked"
    }

    public init(trustedNodes: Set<NodeID> = [], authorities: Set<NodeID> = [], revokedSerials: Set<RevokedSerial> = [],
                revokedNodes: Set<NodeID> = [], clockSkewMs: Int64 = 60_000) {
        self.trustedNodes = trustedNodes
        self.authorities = authorities
        self.revokedSerials = revokedSerials
        self.revokedNodes = revokedNodes
        self.clockSkewMs = clockSkewMs
    }

    /// Decides whether `node`, presenting `credential` (empty when it has none), may take part.
    public func decide(node: NodeID, credential: [UInt8], nowWallMs: Int64,
                       verifier: any SignatureVerifier) -> Decision {
        if revokedNodes.contains(node) { return .rejected(.revoked) }
        if trustedNodes.contains(node) { return .admittedByKey }
        guard !credential.isEmpty else { return .rejected(.untrusted) }
        guard let cert = try? Certificate.decode(credential) else { return .rejected(.malformedCertificate) }
        guard cert.subject == node else { return .rejected(.wrongSubject) }
        guard authorities.contains(cert.authority) else { return .rejected(.unknownAuthority) }
        guard verifier.verify(cert.signature, of: cert.signedBytes, by: cert.authority) else {
            return .rejected(.badCertificateSignature)
        }
        if revokedSerials.contains(RevokedSerial(authority: cert.authority, serial: cert.serial)) {
            return .rejected(.revoked)
        }
        if nowWallMs + clockSkewMs < cert.issuedAtMs { return .rejected(.notYetValid) }
        if nowWallMs - clockSkewMs >= cert.expiresAtMs { return .rejected(.expired) }
        return .admittedByCertificate(serial: cert.serial, expiresAtMs: cert.expiresAtMs)
    }
}
