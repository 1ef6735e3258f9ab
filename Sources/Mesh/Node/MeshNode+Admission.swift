import Gossip
import Store

/// Admission (docs/PROTOCOL.md §10) and the counting of refused inputs: one rule, and one
/// set of reason names, for gossip members and for session handshakes.
extension MeshNode {
    /// The handshake's `admit` for a session with whoever is at `remote` (for the log).
    func admitFunction(remote: String) -> @Sendable (NodeID, [UInt8]) -> Bool {
        { [weak self] peer, credential in self?.admitsSessionPeer(peer, credential: credential, remote: remote) ?? false }
    }

    /// The admission decision for a session handshake (docs/PROTOCOL.md §8.2, §10): the same
    /// rule as for gossip members. A refusal is counted and logged here under its §10 reason
    /// (`certificate_expired`, `untrusted_key`, ...); call it once per decision, on the loop, and
    /// do not count the refused session again when it closes (`SessionError.notAdmitted`).
    func admitsSessionPeer(_ peer: NodeID, credential: [UInt8], remote: String) -> Bool {
        loop.assertInLoop("MeshNode.admitsSessionPeer")
        guard let why = Self.admissionRefusal(options.admission, verifier)(peer, credential) else { return true }
        let c = RejectCounter(RejectReason(why))
        runtime.rejected[c.rawValue, default: 0] += 1
        logAdmissionRefusal(c, node: peer, name: refusedNames[peer] ?? nameOfNode[peer], remote: remote,
                            detail: "session handshake with \(remote) refused")
        return false
    }

    /// `admission`'s decision, checked against the wall clock at each call (so certificates
    /// expire while the node runs): nil when admitted, else why not (§10).
    static func admissionRefusal(_ admission: AdmissionPolicy, _ verifier: Ed25519Verifier)
        -> @Sendable (NodeID, [UInt8]) -> AdmissionPolicy.Rejection? {
        { id, credential in
            switch admission.decide(node: id, credential: credential, nowWallMs: WallClock.nowMs(), verifier: verifier) {
            case .admittedByKey, .admittedByCertificate: return nil
            case .rejected(let why): return why
            }
        }
    }

    // MARK: - Counting and logging

    /// Counts a dropped input by reason and logs it at most once per (reason, peer) per interval.
    /// Every name is one of `RejectCounter`: `status`, `/metrics` and the log use the same.
    func count(_ reason: RejectCounter, peer: String, detail: String? = nil) {
        runtime.rejected[reason.rawValue, default: 0] += 1
        logRejection(reason, peer: peer, detail: detail)
    }

    func logRejection(_ reason: RejectCounter, peer: String, detail: String? = nil) {
        guard let suppressed = rejectLog.admit(reason.rawValue + "|" + peer, nowMilliseconds: loop.nowMilliseconds) else { return }
        logger.warning("dropped input", metadata: ["reason": "\(reason.rawValue)", "peer": "\(peer)", "detail": "\(detail ?? "")",
                                                   "suppressed": "\(suppressed)"])
    }
}
