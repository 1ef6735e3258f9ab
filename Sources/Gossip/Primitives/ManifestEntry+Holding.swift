/// Holder records and node facts (docs/PROTOCOL.md §4.6, §4.7): facts a node states about
/// itself in its own log, so that they replicate, repair and count in the digest like every
/// entry. The pure views over them are `Sync.Holdings`; placement reads them.
extension ManifestEntry {
    /// A holder record (kind 4): contents the origin now holds complete, and contents it no
    /// longer holds. For one (origin, content) the origin's statement with the greatest sequence
    /// wins; a put by the origin states "held" for its content too.
    public struct Holding: Hashable, Sendable {
        /// At most this many content ids in one entry (held and dropped together): 2 + 2 + 120 × 32
        /// = 3844 body bytes.
        public static let maxContents = 120
        /// Strictly ascending (byte order), disjoint from `dropped`.
        public var held: [ContentID]
        /// Strictly ascending (byte order), disjoint from `held`.
        public var dropped: [ContentID]

        /// Sorts and deduplicates; an id in both lists counts as held.
        public init(held: [ContentID], dropped: [ContentID] = []) {
            let h = Set(held)
            self.held = h.sorted()
            self.dropped = Set(dropped).subtracting(h).sorted()
        }

        /// As given, unchecked (for tests of the rules).
        public init(unchecked held: [ContentID], dropped: [ContentID]) {
            self.held = held
            self.dropped = dropped
        }

        public var count: Int { held.count + dropped.count }

        /// The rule of docs/PROTOCOL.md §4.6 this record breaks, or nil. The decoder enforces the same.
        public var invalidField: String? {
            guard (1...Self.maxContents).contains(count) else { return "holding.count" }
            for list in [held, dropped] {
                for i in list.indices.dropFirst() where !(list[i - 1] < list[i]) { return "holding.order" }
            }
            if !Set(held).isDisjoint(with: dropped) { return "holding.both" }
            return nil
        }

        func encode(into b: inout ByteWriter) {
            b.u16(UInt16(held.count))
            for c in held { b.bytes32(c.digest) }
            b.u16(UInt16(dropped.count))
            for c in dropped { b.bytes32(c.digest) }
        }

        static func decode(from b: inout ByteReader) throws(DecodeError) -> Holding {
            func list() throws(DecodeError) -> [ContentID] {
                let n = Int(try b.u16())
                guard n <= maxContents else { throw .tooLong(field: "holding.count", length: n, limit: maxContents) }
                var out = [ContentID]()
                out.reserveCapacity(n)
                for _ in 0..<n {
                    let c = ContentID(digest: try b.bytes32())
                    if let last = out.last, !(last < c) { throw .invalid(field: "holding.order") }
                    out.append(c)
                }
                return out
            }
            let held = try list()
            let dropped = try list()
            let h = Holding(unchecked: held, dropped: dropped)
            if let f = h.invalidField { throw .invalid(field: f) }
            return h
        }
    }

    /// What a node states about itself (kind 5): its roles, its data dir's file system, and
    /// whether it is ephemeral, excluded from sync, full, or in an NFS group. The origin's
    /// node-facts entry with the greatest sequence is in effect.
    public struct NodeFacts: Hashable, Sendable {
        public static let maxRoles = 16
        public static let maxRoleBytes = 32
        public static let maxGroupBytes = 64
        static let ephemeralFlag: UInt8 = 1
        static let excludedFlag: UInt8 = 2
        static let fullFlag: UInt8 = 4

        public var roles: [String]
        /// A spot or preemptible node: it may vanish with its disk.
        public var ephemeral: Bool
        /// Named in the cluster's `exclude_from_sync`: it receives nothing (it may still put).
        public var excluded: Bool
        /// Above its `max_disk_usage`: it accepts no new replicas (placement).
        public var full: Bool
        /// The file system holding the node's data dir: size, used, and free for an unprivileged
        /// process (statvfs `f_blocks`, `f_blocks − f_bfree`, `f_bavail`, times `f_frsize`).
        public var diskTotalBytes: UInt64
        public var diskUsedBytes: UInt64
        public var diskFreeBytes: UInt64
        /// Nodes with one non-empty group share storage (NFS); "" for none.
        public var nfsGroup: String
        /// The first `policyHashBytes` bytes of a hash of the node's `placement:` rules
        /// (docs/PROTOCOL.md §4.7), so that nodes can tell they disagree; nil: not stated.
        public var policyHash: [UInt8]?
        public static let policyHashBytes = 16

        public init(roles: [String], ephemeral: Bool = false, excluded: Bool = false, full: Bool = false,
                    diskTotalBytes: UInt64 = 0, diskUsedBytes: UInt64 = 0, diskFreeBytes: UInt64 = 0, nfsGroup: String = "",
                    policyHash: [UInt8]? = nil) {
            self.roles = roles
            self.ephemeral = ephemeral
            self.excluded = excluded
            self.full = full
            self.diskTotalBytes = diskTotalBytes
            self.diskUsedBytes = diskUsedBytes
            self.diskFreeBytes = diskFreeBytes
            self.nfsGroup = nfsGroup
            self.policyHash = policyHash
        }

        /// The rule of docs/PROTOCOL.md §4.7 these facts break, or nil. The decoder enforces the same.
        public var invalidField: String? {
            if roles.count > Self.maxRoles { return "node_facts.roles" }
            if roles.contains(where: { $0.isEmpty || $0.utf8.count > Self.maxRoleBytes }) { return "node_facts.role" }
            if Set(roles).count != roles.count { return "node_facts.role" }
            if nfsGroup.utf8.count > Self.maxGroupBytes { return "node_facts.nfs_group" }
            if let h = policyHash, h.count != Self.policyHashBytes { return "node_facts.policy_hash" }
            return nil
        }

        var flags: UInt8 {
            (ephemeral ? Self.ephemeralFlag : 0) | (excluded ? Self.excludedFlag : 0) | (full ? Self.fullFlag : 0)
        }

        func encode(into b: inout ByteWriter) {
            b.u8(flags)
            b.u64(diskTotalBytes)
            b.u64(diskUsedBytes)
            b.u64(diskFreeBytes)
            b.u8(UInt8(roles.count))
            for r in roles { b.string16(r) }
            b.string16(nfsGroup)
            if let policyHash { b.raw(policyHash) }
        }

        static func decode(from b: inout ByteReader) throws(DecodeError) -> NodeFacts {
            let flags = try b.u8()
            guard flags & ~(ephemeralFlag | excludedFlag | fullFlag) == 0 else { throw .invalid(field: "node_facts.flags") }
            let total = try b.u64(), used = try b.u64(), free = try b.u64()
            let n = Int(try b.u8())
            guard n <= maxRoles else { throw .tooLong(field: "node_facts.roles", length: n, limit: maxRoles) }
            var roles = [String]()
            for _ in 0..<n {
                let r = try b.string16(field: "node_facts.role", limit: maxRoleBytes)
                guard !r.isEmpty, !roles.contains(r) else { throw .invalid(field: "node_facts.role") }
                roles.append(r)
            }
            let group = try b.string16(field: "node_facts.nfs_group", limit: maxGroupBytes)
            // Optional: a body that ends after the group states no policy hash.
            let hash = b.isAtEnd ? nil : try b.raw(policyHashBytes)
            return NodeFacts(roles: roles, ephemeral: flags & ephemeralFlag != 0, excluded: flags & excludedFlag != 0,
                             full: flags & fullFlag != 0, diskTotalBytes: total, diskUsedBytes: used, diskFreeBytes: free,
                             nfsGroup: group, policyHash: hash)
        }
    }
}
