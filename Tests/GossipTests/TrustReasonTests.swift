import Testing
@testable import Gossip

/// A refused admission is counted under the trust policy's reason (docs/PROTOCOL.md §10),
/// wherever the gossip core asks: an unknown sender's introduction, an alive record about
/// an unknown member, a known member's newer record, and re-validation.
@Suite struct TrustReasonTests {
    /// Refuses a credential whose first byte names a reason (index into `allCases`), admits
    /// an empty one.
    static let policy = TrustPolicy(refusal: { _, credential in
        credential.first.map { AdmissionPolicy.Rejection.allCases[Int($0)] }
    })

    func envelope(from i: Int, counter: UInt64, _ m: Message) -> [UInt8] {
        Envelope(sender: nodeID(i), incarnation: 1, counter: counter, message: m).encode(signer: FakeSigner(nodeID: nodeID(i)))
    }

    func record(_ i: Int, refusedFor reason: AdmissionPolicy.Rejection?, incarnation: UInt64 = 1) -> MemberUpdate {
        var u = makeNode(i).selfUpdate()
        u.incarnation = incarnation
        u.credential = reason.map { [UInt8(AdmissionPolicy.Rejection.allCases.firstIndex(of: $0)!)] } ?? []
        return u
    }

    @Test func everyReasonMapsToTheCounterNamedInTheSpec() {
        let names = AdmissionPolicy.Rejection.allCases.map { RejectReason($0).rawValue }
        #expect(names == ["untrusted_key", "malformed_certificate", "certificate_wrong_subject", "certificate_unknown_authority",
                          "certificate_bad_signature", "certificate_not_yet_valid", "certificate_expired", "revoked"])
        #expect(AdmissionPolicy.Rejection.allCases.map(\.rawValue) == names)
    }

    @Test(arguments: AdmissionPolicy.Rejection.allCases)
    func aRefusedIntroductionIsCountedUnderThePolicysReason(_ reason: AdmissionPolicy.Rejection) {
        var a = makeNode(0, trust: Self.policy)
        _ = a.start(seeds: [], now: .zero)
        let out = a.onDatagram(envelope(from: 1, counter: 1, .join(updates: [record(1, refusedFor: reason)])), from: address(1), now: .zero)
        #expect(out.rejections == [RejectReason(reason)])
        #expect(a.counters.rejected[RejectReason(reason)] == 1)
        #expect(a.memberState(nodeID(1)) == nil)
        #expect(out.sends.isEmpty)
    }

    @Test(arguments: AdmissionPolicy.Rejection.allCases)
    func aRefusedRecordAboutAnotherMemberIsCountedUnderThePolicysReason(_ reason: AdmissionPolicy.Rejection) {
        var a = makeNode(0, trust: Self.policy)
        _ = a.start(seeds: [], now: .zero)
        // Node 1 is admitted and relays records: one about a newcomer, and a newer one about
        // node 3 (known) with a credential the policy now refuses.
        _ = a.onDatagram(envelope(from: 1, counter: 1, .join(updates: [record(1, refusedFor: nil)])), from: address(1), now: .zero)
        _ = a.onDatagram(envelope(from: 3, counter: 1, .join(updates: [record(3, refusedFor: nil)])), from: address(3), now: .zero)
        let out = a.onDatagram(envelope(from: 1, counter: 2, .memberSync(wantReply: false, updates: [
            record(2, refusedFor: reason), record(3, refusedFor: reason, incarnation: 2),
        ])), from: address(1), now: .milliseconds(1))
        #expect(out.rejections == [RejectReason(reason), RejectReason(reason)])
        #expect(a.memberState(nodeID(2)) == nil)
        #expect(a.members[nodeID(3)]?.incarnation == 1)
    }

    @Test func membersNoLongerAdmittedAreDroppedOnRevalidationAndCountedByReason() {
        var a = makeNode(0)
        _ = a.start(seeds: [], now: .zero)
        for i in 1...3 {
            _ = a.onDatagram(envelope(from: i, counter: 1, .join(updates: [makeNode(i).selfUpdate()])), from: address(i), now: .zero)
        }
        let expiredTwo = TrustPolicy(refusal: { id, _ in id == nodeID(2) ? .expired : id == nodeID(3) ? .revoked : nil })
        let out = a.revalidate(trust: expiredTwo, now: .milliseconds(5))
        #expect(Set(out.rejections) == [.certificateExpired, .revoked])
        #expect(a.memberState(nodeID(1)) == .alive && a.memberState(nodeID(2)) == nil && a.memberState(nodeID(3)) == nil)
    }
}
