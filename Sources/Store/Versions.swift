import Sync

/// A name's version as `ls` and `get` see it: the entry, its number and state, and
/// whether its content is here.
public struct VersionInfo: Sendable, Equatable {
    public var version: Catalog.Version
    public var receivedAtMs: Int64
    public var isComplete: Bool

    public var entry: ManifestEntry { version.entry }
    public var name: String { version.entry.name }
    public var contentID: ContentID { version.entry.contentID }
    public var item: ItemInfo { ItemInfo(entry: version.entry, receivedAtMs: receivedAtMs, isComplete: isComplete) }
}

extension Store {
    // MARK: - The catalog of names

    /// Every name's history, from every stored entry (docs/SYNC.md "Views of a name").
    public func catalog() throws(MeshError) -> Catalog { Catalog(try allEntries()) }

    /// The history of one name only (its puts and tombstones; an indexed query).
    public func catalog(of name: String) throws(MeshError) -> Catalog {
        var c = Catalog()
        try db.forEach("SELECT encoded FROM items WHERE name = ?", [.text(name)]) { (s) throws(MeshError) in
            c.insert(try decodeItem(s.blob(0), receivedAtMs: 0))
        }
        return c
    }

    /// The highest hybrid-logical-clock stamp of every stored entry (0 for an empty store).
    public func highestClock() throws(MeshError) -> UInt64 {
        try sql { () throws(SQLiteError) in UInt64(bitPattern: try db.scalarInt("SELECT coalesce(max(hlc), 0) FROM items") ?? 0) }
    }

    /// The stamp for a new local entry (docs/PROTOCOL.md §4.4): above every stored entry's.
    func nextClock(nowMs: Int64) throws(MeshError) -> UInt64 {
        HybridLogicalClock.next(wallMs: nowMs, after: try highestClock())
    }

    /// The current version of every live name, sorted by name, with completeness.
    public func currentVersions(nowMs: Int64 = WallClock.nowMs()) throws(MeshError) -> [VersionInfo] {
        let cat = try catalog()
        var out = [VersionInfo]()
        for n in cat.liveNames(nowMs: nowMs) { if let v = cat.current(n, nowMs: nowMs) { out.append(try info(v)) } }
        return out
    }

    /// Every version of `name` (or of every name, when nil), oldest first per name.
    public func versions(of name: String? = nil, nowMs: Int64 = WallClock.nowMs()) throws(MeshError) -> [VersionInfo] {
        let cat = try catalog()
        let names = name.map { [$0] } ?? cat.allNames
        var out = [VersionInfo]()
        for n in names { for v in cat.versions(of: n, nowMs: nowMs) { out.append(try info(v)) } }
        return out
    }

    func info(_ v: Catalog.Version) throws(MeshError) -> VersionInfo {
        let t = try sql { () throws(SQLiteError) in
            try db.scalarInt("SELECT received_at_ms FROM items WHERE origin = ? AND sequence = ?",
                             [.blob(v.entry.origin.key.bytes), .int(Int64(v.entry.sequence))]) ?? 0
        }
        return VersionInfo(version: v, receivedAtMs: t, isComplete: try isComplete(v.entry.contentID))
    }

    // MARK: - Resolving what a user typed

    /// Finds the one version meant by `query`: `NAME` (its current version), `NAME@N`
    /// (version N), a full content id, or a content id prefix of at least 6 hex digits.
    /// A content id names content, so any put of it will do.
    public func resolve(_ query: String, nowMs: Int64 = WallClock.nowMs()) throws(MeshError) -> ItemInfo {
        let named = try catalog(of: query)
        if let v = named.current(query, nowMs: nowMs) { return try info(v).item }
        if let at = query.lastIndex(of: "@"), let n = Int(query[query.index(after: at)...]) {
            let name = String(query[..<at])
            let cat = try catalog(of: name)
            if cat.histories[name] != nil {
                guard let v = cat.version(name, number: n, nowMs: nowMs) else {
                    let count = cat.versions(of: name, nowMs: nowMs).count
                    throw MeshError(.unknownItem, "'\(name)' has no version \(n) (it has \(count))",
                                    hint: "list them with `meshnode ls --versions \(name)`")
                }
                return try info(v).item
            }
        }
        if named.histories[query] != nil {
            throw MeshError(.unknownItem, "'\(query)' was deleted or has expired",
                            hint: "its versions are listed by `meshnode ls --versions \(query)`; get one as NAME@N")
        }
        let lower = query.lowercased()
        var byID: [ContentID: ItemInfo] = [:]
        let isPrefix = lower.count >= 6 && lower.count < 64 && Hex.decode(lower.count % 2 == 0 ? lower : lower + "0") != nil
        if let id = ContentID(hex: lower), let e = try entry(contentID: id) {
            return ItemInfo(entry: e, receivedAtMs: 0, isComplete: try isComplete(id))
        }
        if isPrefix {
            for i in try items() where i.contentID.description.hasPrefix(lower) { byID[i.contentID] = byID[i.contentID] ?? i }
            if byID.count > 1 {
                let list = byID.keys.sorted().prefix(5).map(\.short).joined(separator: ", ")
                throw MeshError(.ambiguousName, "id prefix '\(query)' matches \(byID.count) different items (\(list))",
                                hint: "use more digits, or the full content id from `meshnode ls`")
            }
            if let hit = byID.values.first { return hit }
        }
        throw MeshError(.unknownItem, "no item with id or name '\(query)'", hint: "list items with `meshnode ls`")
    }

    // MARK: - Recording versions

    /// Makes stored content (its recipe already in the store, e.g. a live SQLite snapshot) the
    /// newest version of `name`, unless it already is the current one. Returns the entry and
    /// whether it is new; the caller announces a new one.
    public func recordVersion(of contentID: ContentID, name: String, type: ItemType, policy: KeepPolicy = KeepPolicy(),
                              flags: UInt8 = 0, signer: any Signer, nowMs: Int64 = WallClock.nowMs()) throws(MeshError) -> (ManifestEntry, isNew: Bool) {
        try Self.validateName(name, what: "item name")
        return try db.transaction { () throws(MeshError) -> (ManifestEntry, isNew: Bool) in
            // Looked up inside the transaction: a gc cannot delete the recipe between the check
            // and the new entry that makes the content kept.
            guard let recipe = try recipe(contentID), recipe.contentID == contentID else {
                throw MeshError(.unknownItem, "no stored chunk list for content \(contentID.short)",
                                hint: "store the content (its recipe and chunks) before recording a version of it")
            }
            return try recordVersion(of: recipe, name: name, type: type, policy: policy, flags: flags, signer: signer, nowMs: nowMs)
        }
    }

    /// Within the caller's transaction: the entry for `recipe` under `name`. If the name's
    /// current version already has this content, type and put flags (`flags`: bit 0 broadcast,
    /// docs/PROTOCOL.md §4.1), that entry (not new); otherwise a new signed put with the next
    /// sequence and clock, stored.
    func recordVersion(of recipe: Recipe, name: String, type: ItemType, policy: KeepPolicy, flags: UInt8 = 0, signer: any Signer,
                       nowMs: Int64) throws(MeshError) -> (ManifestEntry, isNew: Bool) {
        var history = Catalog()
        try db.forEach("SELECT encoded FROM items WHERE name = ?", [.text(name)]) { (s) throws(MeshError) in
            history.insert(try decodeItem(s.blob(0), receivedAtMs: 0))
        }
        if let cur = history.current(name, nowMs: nowMs), cur.entry.contentID == recipe.contentID, cur.entry.type == type,
           cur.entry.put?.flags == flags {
            return (cur.entry, false)
        }
        let me = signer.nodeID
        let seq = try highestSequence(origin: me) + 1
        let entry = ManifestEntry(origin: me, sequence: seq, hlc: try nextClock(nowMs: nowMs), contentID: recipe.contentID,
                                  sizeBytes: recipe.sizeBytes, chunkSizeBytes: recipe.chunkSizeBytes, type: type, flags: flags,
                                  createdAtMs: nowMs, expiresAtMs: policy.expiresAtMs(type: type, createdAtMs: nowMs),
                                  name: name).signed(by: signer)
        try insertItemRow(entry, receivedAtMs: nowMs)
        try bumpOrigin(me, to: seq)
        return (entry, true)
    }

    // MARK: - Compaction

    /// Deletes entries their origins compacted (docs/PROTOCOL.md §4.5), in one transaction.
    /// Their contents are then released by the keeper and reclaimed by GC.
    public func deleteEntries(_ refs: [EntryRef]) throws(MeshError) {
        guard !refs.isEmpty else { return }
        try db.transaction { () throws(MeshError) in
            try sql { () throws(SQLiteError) in
                for r in refs {
                    try db.query("DELETE FROM items WHERE origin = ? AND sequence = ?", [.blob(r.origin.key.bytes), .int(Int64(r.sequence))])
                }
            }
        }
    }

    /// Writes this node's next compaction entry (docs/PROTOCOL.md §4.5), stored; the caller announces it.
    public func writeCompaction(_ c: ManifestEntry.Compaction, signer: any Signer,
                                nowMs: Int64 = WallClock.nowMs()) throws(MeshError) -> ManifestEntry {
        try writeOwnEntry(.compaction(c), signer: signer, nowMs: nowMs)
    }

    /// Writes this node's next entry with `payload` (a compaction, a holder record, node facts:
    /// docs/PROTOCOL.md §4.5–4.7), numbered and clocked after everything stored; the caller announces it.
    public func writeOwnEntry(_ payload: ManifestEntry.Payload, signer: any Signer,
                              nowMs: Int64 = WallClock.nowMs()) throws(MeshError) -> ManifestEntry {
        try db.transaction { () throws(MeshError) -> ManifestEntry in
            let me = signer.nodeID
            let seq = try highestSequence(origin: me) + 1
            let e = ManifestEntry(origin: me, sequence: seq, hlc: try nextClock(nowMs: nowMs), payload: payload).signed(by: signer)
            if let field = e.invalidField { throw MeshError(.init("internal"), "refusing to write an invalid entry (\(field))") }
            try insertItemRow(e, receivedAtMs: nowMs)
            try bumpOrigin(me, to: seq)
            return e
        }
    }

    /// Holders of every content by the replicated holder records (docs/PROTOCOL.md §4.6): the
    /// same answer on every node that holds the same entries.
    public func holders() throws(MeshError) -> [ContentID: Set<NodeID>] { Holdings(try allEntries()).allHolders }

    // MARK: - Deleting

    /// Writes a signed tombstone (docs/PROTOCOL.md §4.4) for what `query` names: `NAME`
    /// deletes every version of the name; `NAME@N` or a content id deletes that version
    /// (the newest put of that content, when a content id is given). Returns the entry,
    /// already stored; the caller announces it.
    public func delete(_ query: String, signer: any Signer, nowMs: Int64 = WallClock.nowMs()) throws(MeshError) -> ManifestEntry {
        let scope: ManifestEntry.Tombstone.Scope
        let name: String
        if try catalog(of: query).current(query, nowMs: nowMs) != nil {
            scope = .name
            name = query
        } else {
            let target = try resolve(query, nowMs: nowMs)
            let cat = try catalog(of: target.name)
            // A content id names content: delete the live version(s) that carry it; prefer the current one.
            let live = cat.versions(of: target.name, nowMs: nowMs).filter { $0.state == .live }
            guard let v = live.last(where: { $0.entry.ref == target.entry.ref }) ?? live.last(where: { $0.entry.contentID == target.contentID }) else {
                throw MeshError(.unknownItem, "'\(query)' is already deleted or expired", hint: "list versions with `meshnode ls --versions`")
            }
            scope = .version(v.entry.ref)
            name = v.entry.name
        }
        return try db.transaction { () throws(MeshError) -> ManifestEntry in
            let me = signer.nodeID
            let seq = try highestSequence(origin: me) + 1
            let e = ManifestEntry(origin: me, sequence: seq, hlc: try nextClock(nowMs: nowMs),
                                  payload: .tombstone(.init(scope: scope, name: name, createdAtMs: nowMs))).signed(by: signer)
            try insertItemRow(e, receivedAtMs: nowMs)
            try bumpOrigin(me, to: seq)
            return e
        }
    }
}
