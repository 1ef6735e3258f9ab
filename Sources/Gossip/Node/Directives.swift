/// How the shell should carry a message.
public enum Transport: UInt8, Sendable {
    /// One UDP datagram (≤ `maxDatagramBytes`, signature included).
    case datagram
    /// One frame on a TCP stream to the peer (≤ `maxFrameBytes`).
    case stream
}

/// The timers a node asks for. Each id has at most one pending deadline: a new
/// `setTimer` for the same id replaces the old one. A timer firing early, late, or
/// spuriously is harmless: handlers re-check their own deadlines against `now`.
public enum TimerID: UInt8, CaseIterable, Sendable {
    case probe = 0
    case probeTimeout
    case indirect
    case suspicion
    case antiEntropy
    case retry
    case join
}

/// Why an input was dropped. The shell counts these and rate-limits its logs per reason. Each raw
/// value is its counter name in docs/PROTOCOL.md Appendix B (Mesh's `RejectCounter` lists them all).
public enum RejectReason: String, CaseIterable, Sendable {
    case oversized
    case malformed
    case unsupportedVersion = "unsupported_version"
    case badSignature = "bad_signature"
    case replayed
    case fromSelf = "from_self"
    case unknownSender = "unknown_sender"
    // The trust policy refused a sender's introduction or an alive record about a member
    // (docs/PROTOCOL.md §10; the same reasons as a refused session handshake):
    case untrustedKey = "untrusted_key"
    case malformedCertificate = "malformed_certificate"
    case certificateWrongSubject = "certificate_wrong_subject"
    case certificateUnknownAuthority = "certificate_unknown_authority"
    case certificateBadSignature = "certificate_bad_signature"
    case certificateNotYetValid = "certificate_not_yet_valid"
    case certificateExpired = "certificate_expired"
    case revoked
    case tooManyMembers = "too_many_members"
    case wrongTarget = "wrong_target"
    case untrustedOrigin = "untrusted_origin"
    case badEntrySignature = "bad_entry_signature"
    case notSenderOrigin = "not_sender_origin"
    case overloaded
}

extension RejectReason {
    /// The reason a refused admission is counted under: the §10 names.
    public init(_ refusal: AdmissionPolicy.Rejection) {
        switch refusal {
        case .untrusted: self = .untrustedKey
        case .malformedCertificate: self = .malformedCertificate
        case .wrongSubject: self = .certificateWrongSubject
        case .unknownAuthority: self = .certificateUnknownAuthority
        case .badCertificateSignature: self = .certificateBadSignature
        case .notYetValid: self = .certificateNotYetValid
        case .expired: self = .certificateExpired
        case .revoked: self = .revoked
        }
    }
}

/// One member's state change, as reported to the shell.
public struct MemberTransition: Hashable, Sendable {
    public var node: NodeID
    public var from: MemberState?
    public var to: MemberState
    public var incarnation: UInt64
    public var address: PeerAddress
}

/// What the shell must do. Directives are returned in order; the shell performs them
/// in that order.
public enum Directive: Sendable {
    case send(to: PeerAddress, bytes: [UInt8], via: Transport)
    case setTimer(TimerID, at: Instant)
    case cancelTimer(TimerID)
    /// A verified entry from someone else: store it durably (the Store's own entries
    /// are never echoed back).
    case persistEntry(ManifestEntry)
    /// The incarnation must be durable before the node's next message leaves: after a
    /// restart the node continues above it.
    case persistIncarnation(UInt64)
    /// The blob layer should fetch this content from one of these holders.
    case fetch(ContentID, holders: [NodeID])
    /// A member was added, or changed state, incarnation or address (`from` == `to` for the
    /// latter two: e.g. a member that restarted elsewhere). The shell keeps its own
    /// node ↔ address maps and persists the member list from these.
    case membershipChanged(MemberTransition)
    /// Two validly signed, different entries with the same (origin, sequence): the one held
    /// (it stays in the manifest) and the other. Reported once per (origin, sequence); the
    /// shell keeps both durably as evidence (and gives them back in `GossipDurableState.forks`).
    case forkDetected(ManifestEntry, ManifestEntry)
    /// Entries their origins compacted (docs/PROTOCOL.md §4.5): the shell deletes them from its
    /// store and its views. They never come back: the manifest refuses them from now on.
    case compacted([ManifestEntry])
    case rejected(RejectReason, from: PeerAddress)
}

/// What a node can tell about one member.
public struct MemberSnapshot: Hashable, Sendable {
    public var node: NodeID
    public var address: PeerAddress
    public var state: MemberState
    public var incarnation: UInt64
    public var name: String
    public var role: String
    public var credential: [UInt8]
    public var streamOnly: Bool
    /// When this node last received a valid message from the member.
    public var lastHeard: Instant?
    /// Smoothed round-trip time of direct probes, in nanoseconds.
    public var rttNanoseconds: Int64?
    public var stateSince: Instant
    public var isSelf: Bool

    public init(node: NodeID, address: PeerAddress, state: MemberState, incarnation: UInt64, name: String = "", role: String = "",
                credential: [UInt8] = [], streamOnly: Bool = false, lastHeard: Instant? = nil, rttNanoseconds: Int64? = nil,
                stateSince: Instant = .zero, isSelf: Bool = false) {
        self.node = node
        self.address = address
        self.state = state
        self.incarnation = incarnation
        self.name = name
        self.role = role
        self.credential = credential
        self.streamOnly = streamOnly
        self.lastHeard = lastHeard
        self.rttNanoseconds = rttNanoseconds
        self.stateSince = stateSince
        self.isSelf = isSelf
    }
}

/// What a node restores after a restart.
public struct GossipDurableState: Sendable {
    /// The highest incarnation ever persisted (the node continues at this + 1).
    public var lastIncarnation: UInt64
    /// Members known before the restart (from `membershipChanged`); they start out
    /// alive at their recorded incarnation and are probed at once.
    public var knownPeers: [MemberSnapshot]
    /// Every entry accepted before (own and others').
    public var entries: [ManifestEntry]
    /// The entries come from a store that verified them on the way in: skip re-verifying
    /// (one Ed25519 verification each) at start-up. Otherwise bad ones are dropped.
    public var entriesVerified: Bool
    /// Forks kept from before (from `forkDetected`): (the entry held, the other one). They
    /// are evidence again, and are not reported a second time when the other entry returns.
    public var forks: [(ManifestEntry, ManifestEntry)]

    public init(lastIncarnation: UInt64 = 0, knownPeers: [MemberSnapshot] = [], entries: [ManifestEntry] = [],
                entriesVerified: Bool = false, forks: [(ManifestEntry, ManifestEntry)] = []) {
        self.lastIncarnation = lastIncarnation
        self.knownPeers = knownPeers
        self.entries = entries
        self.entriesVerified = entriesVerified
        self.forks = forks
    }
}

/// Counters the shell shows in `status`.
public struct GossipCounters: Sendable, Equatable {
    public var messagesSent: UInt64 = 0
    public var bytesSent: UInt64 = 0
    public var datagramsSent: UInt64 = 0
    public var framesSent: UInt64 = 0
    public var messagesReceived: UInt64 = 0
    public var bytesReceived: UInt64 = 0
    public var rejected: [RejectReason: UInt64] = [:]
    public var probes: UInt64 = 0
    public var indirectProbes: UInt64 = 0
    public var failedProbes: UInt64 = 0
    public var suspicionsRaised: UInt64 = 0
    public var refutations: UInt64 = 0
    public var entriesAccepted: UInt64 = 0
    public var entriesDuplicate: UInt64 = 0
    /// Entries dropped or refused because their origin compacted them (§4.5).
    public var entriesCompacted: UInt64 = 0
    public var forks: UInt64 = 0
    public var pullsSent: UInt64 = 0
    public var antiEntropyRounds: UInt64 = 0
    public var memberSyncs: UInt64 = 0
    public var repairEntriesSent: UInt64 = 0
    public var treePushesSent: UInt64 = 0

    public var rejectedTotal: UInt64 { rejected.values.reduce(0, +) }
}
