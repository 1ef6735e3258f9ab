extension MemberSnapshot {
    /// A member as a shell restores it from its own storage after a restart.
    public init(restoring node: NodeID, address: PeerAddress, incarnation: UInt64, name: String, role: String,
                credential: [UInt8] = []) {
        self.init(node: node, address: address, state: .alive, incarnation: incarnation, name: name, role: role,
                  credential: credential, streamOnly: false, lastHeard: nil, rttNanoseconds: nil, stateSince: .zero, isSelf: false)
    }
}
