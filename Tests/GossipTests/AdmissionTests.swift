import Testing
@testable import Gossip

/// A keyed checksum standing in for Ed25519 (tests only): "signed" by whoever knows the key id.
private struct ChecksumSigner: Signer, SignatureVerifier {
    var nodeID: NodeID
    init(_ n: UInt64) { nodeID = NodeID(key: Bytes32(w0: n, w1: n &* 31, w2: 7, w3: 9)) }
    static func tag(_ m: [UInt8], _ k: NodeID) -> Bytes32 {
        var h: UInt64 = 0xcbf29ce484222325 ^ k.key.w0
        for b in m { h = (h ^ UInt64(b)) &* 0x100000001b3 }
        return Bytes32(w0: h, w1: k.key.w1, w2: ~h, w3: k.key.w0)
    }
    func sign(_ m: [UInt8]) -> Signature { Signature(r: Self.tag(m, nodeID), s: nodeID.key) }
    func verify(_ s: Signature, of m: [UInt8], by k: NodeID) -> Bool { s == Signature(r: Self.tag(m, k), s: k.key) }
}

@Suite fileprivate struct AdmissionTests {
    let authority = ChecksumSigner(1)
    let node = ChecksumSigner(2)
    let now: Int64 = 1_800_000_000_000

    func certificate(for subject: NodeID? = nil, serial: UInt64 = 1, validMs: Int64 = 3_600_000) -> Certificate {
        Certificate(authority: authority.nodeID, subject: subject ?? node.nodeID, serial: serial, issuedAtMs: now,
                    expiresAtMs: now + validMs, name: "gpu-7", role: "selfplay").signed(by: authority)
    }

    @Test func certificateRoundTripsAndFitsTheCredentialField() throws {
        let c = certificate()
        #expect(try Certificate.decode(c.encoded) == c)
        #expect(c.encoded.count <= Certificate.maxEncodedBytes)
        #expect(Certificate.maxEncodedBytes <= 256)
    }

    @Test func truncatedOrGarbageCertificatesAreRejectedNotCrashed() {
        let bytes = certificate().encoded
        for cut in 0..<bytes.count { #expect(throws: DecodeError.self) { try Certificate.decode(Array(bytes[..<cut])) } }
        var rng: UInt64 = 42
        for _ in 0..<500 {
            let n = Int(rng % 300)
            var junk = [UInt8]()
            for _ in 0..<n { rng = rng &* 6364136223846793005 &+ 1442695040888963407; junk.append(UInt8(rng >> 56)) }
            _ = try? Certificate.decode(junk)
        }
    }

    @Test func aListedKeyIsAdmittedWithoutACertificate() {
        let p = AdmissionPolicy(trustedNodes: [node.nodeID])
        #expect(p.decide(node: node.nodeID, credential: [], nowWallMs: now, verifier: authority) == .admittedByKey)
    }

    @Test func anUnknownKeyWithoutACertificateIsRejectedAsUntrusted() {
        let p = AdmissionPolicy(authorities: [authority.nodeID])
        #expect(p.decide(node: node.nodeID, credential: [], nowWallMs: now, verifier: authority) == .rejected(.untrusted))
    }

    @Test func aValidCertificateFromAKnownAuthorityAdmits() {
        let p = AdmissionPolicy(authorities: [authority.nodeID])
        let d = p.decide(node: node.nodeID, credential: certificate().encoded, nowWallMs: now + 1000, verifier: authority)
        #expect(d == .admittedByCertificate(serial: 1, expiresAtMs: now + 3_600_000))
    }

    @Test func anExpiredCertificateIsRejectedOnceTheSkewAllowanceHasPassed() {
        let p = AdmissionPolicy(authorities: [authority.nodeID], clockSkewMs: 1000)
        let cred = certificate(validMs: 10_000).encoded
        #expect(p.decide(node: node.nodeID, credential: cred, nowWallMs: now + 10_500, verifier: authority) != .rejected(.expired))
        #expect(p.decide(node: node.nodeID, credential: cred, nowWallMs: now + 11_000, verifier: authority) == .rejected(.expired))
    }

    @Test func aRevokedSerialOrSubjectIsRejectedEvenWithAValidCertificate() {
        var p = AdmissionPolicy(trustedNodes: [node.nodeID], authorities: [authority.nodeID])
        p.revokedSerials = [.init(authority: authority.nodeID, serial: 1)]
        let other = ChecksumSigner(3)
        #expect(p.decide(node: other.nodeID, credential: certificate(for: other.nodeID).encoded, nowWallMs: now,
                         verifier: authority) == .rejected(.revoked))
        p.revokedNodes = [node.nodeID]
        #expect(p.decide(node: node.nodeID, credential: [], nowWallMs: now, verifier: authority) == .rejected(.revoked))
    }

    @Test func aCertificateForAnotherNodeOrFromAnotherAuthorityIsRejected() {
        let p = AdmissionPolicy(authorities: [authority.nodeID])
        let stolen = certificate(for: ChecksumSigner(9).nodeID).encoded
        #expect(p.decide(node: node.nodeID, credential: stolen, nowWallMs: now, verifier: authority) == .rejected(.wrongSubject))
        let rogue = ChecksumSigner(5)
        let selfIssued = Certificate(authority: rogue.nodeID, subject: node.nodeID, serial: 1, issuedAtMs: now,
                                     expiresAtMs: now + 1000).signed(by: rogue).encoded
        #expect(p.decide(node: node.nodeID, credential: selfIssued, nowWallMs: now, verifier: authority) == .rejected(.unknownAuthority))
    }

    @Test func aCredentialThatIsNotACertificateIsRejectedAsMalformed() {
        let p = AdmissionPolicy(authorities: [authority.nodeID])
        for junk in [[1, 2, 3], Array(certificate().encoded.dropLast()), certificate().encoded + [0]] as [[UInt8]] {
            #expect(p.decide(node: node.nodeID, credential: junk, nowWallMs: now, verifier: authority) == .rejected(.malformedCertificate))
        }
    }

    @Test func aCertificateIssuedMoreThanTheSkewAllowanceInTheFutureIsNotYetValid() {
        let p = AdmissionPolicy(authorities: [authority.nodeID], clockSkewMs: 60_000)
        let cred = certificate().encoded  // issued at `now`
        #expect(p.decide(node: node.nodeID, credential: cred, nowWallMs: now - 60_000, verifier: authority) != .rejected(.notYetValid))
        #expect(p.decide(node: node.nodeID, credential: cred, nowWallMs: now - 60_001, verifier: authority) == .rejected(.notYetValid))
    }

    /// docs/PROTOCOL.md §10 names the order of the checks: the first that fails is the reason.
    @Test func theFirstFailingCheckInTheSpecifiedOrderNamesTheReason() {
        let rogue = ChecksumSigner(5)
        var p = AdmissionPolicy(authorities: [authority.nodeID], clockSkewMs: 0)
        // A revoked subject is refused as revoked even when also listed as trusted.
        p.revokedNodes = [ChecksumSigner(8).nodeID]
        p.trustedNodes = [ChecksumSigner(8).nodeID, ChecksumSigner(7).nodeID]
        #expect(p.decide(node: ChecksumSigner(8).nodeID, credential: [], nowWallMs: now, verifier: authority) == .rejected(.revoked))
        // A trusted key is admitted whatever it presents.
        #expect(p.decide(node: ChecksumSigner(7).nodeID, credential: [9, 9], nowWallMs: now, verifier: authority) == .admittedByKey)
        // Wrong subject before unknown authority before bad signature before revoked serial
        // before validity.
        let bad = Certificate(authority: rogue.nodeID, subject: ChecksumSigner(9).nodeID, serial: 1, issuedAtMs: now + 5000,
                              expiresAtMs: now + 6000).signed(by: rogue)
        #expect(p.decide(node: node.nodeID, credential: bad.encoded, nowWallMs: now, verifier: authority) == .rejected(.wrongSubject))
        var forged = Certificate(authority: rogue.nodeID, subject: node.nodeID, serial: 1, issuedAtMs: now + 5000, expiresAtMs: now + 6000)
        #expect(p.decide(node: node.nodeID, credential: forged.encoded, nowWallMs: now, verifier: authority) == .rejected(.unknownAuthority))
        forged.authority = authority.nodeID
        p.revokedSerials = [.init(authority: authority.nodeID, serial: 1)]
        #expect(p.decide(node: node.nodeID, credential: forged.encoded, nowWallMs: now, verifier: authority) == .rejected(.badCertificateSignature))
        let future = forged.signed(by: authority)
        #expect(p.decide(node: node.nodeID, credential: future.encoded, nowWallMs: now, verifier: authority) == .rejected(.revoked))
        p.revokedSerials = []
        #expect(p.decide(node: node.nodeID, credential: future.encoded, nowWallMs: now, verifier: authority) == .rejected(.notYetValid))
    }

    /// §10: a certificate is at most 221 bytes (its fields with the longest name and role);
    /// `meshnode admit` writes exactly these bytes.
    @Test func aCertificateWithTheLongestNameAndRoleIsTwoHundredTwentyOneBytes() throws {
        #expect(Certificate.maxEncodedBytes == 221)
        let longest = Certificate(authority: authority.nodeID, subject: node.nodeID, serial: .max, issuedAtMs: now, expiresAtMs: now + 1,
                                  name: String(repeating: "n", count: Certificate.maxNameBytes),
                                  role: String(repeating: "r", count: Certificate.maxRoleBytes)).signed(by: authority)
        #expect(longest.encoded.count == 221)
        #expect(try Certificate.decode(longest.encoded) == longest)
        var tooLong = longest
        tooLong.role += "r"
        #expect(throws: DecodeError.self) { try Certificate.decode(tooLong.signed(by: authority).encoded) }
        #expect(Certificate.maxEncodedBytes <= MemberUpdate.maxCredentialBytes)
    }

    @Test func aTamperedCertificateFailsItsSignature() {
        let p = AdmissionPolicy(authorities: [authority.nodeID])
        var c = certificate()
        c.expiresAtMs += 86_400_000 * 365
        #expect(p.decide(node: node.nodeID, credential: c.encoded, nowWallMs: now, verifier: authority) == .rejected(.badCertificateSignature))
    }
}
