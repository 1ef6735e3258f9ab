import Foundation
import Gossip
import Store
import Sync
import Testing
import TestSupport

/// Test vectors of the structures below the wire: identities (§2), content ids (§3), manifest
/// entries (§4) and certificates (§10). Every value comes from the production code path
/// (`NodeIdentity`, `Chunking`, `Store.ingest`, `Certificate.signed`).
enum PrimitiveVectors {
    // MARK: - §2 identities

    static func identities() throws -> VJ {
        var rows: [VJ] = []
        for k in VectorKeys.signers {
            #expect(NodeID(k.id.description.uppercased()) == k.id, "parsers accept either case")
            rows.append(.object([
                ("name", .string(k.name)),
                ("used_as", .string(k.role)),
                ("seed", .hex(k.seed)),
                ("seed_source", .string(k.source)),
                ("secret_key", .hex(k.seed + k.id.key.bytes)),
            ] + identityFields(k.id) + [
                ("node_id_short", .string(k.id.short)),
            ]))
        }
        // RFC 8032 TEST 1 signs the empty message: the same signature proves the Ed25519 in use.
        let sig = VectorKeys.alice.identity.sign([])
        #expect(Hex.encode(sig.bytes) == "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b")
        return obj(
            ("description", .string("""
                Node identities (Ed25519 keypairs from fixed seeds) and their printable forms. The other \
                files refer to these keys by name. secret_key is libsodium's 64-byte form (seed then \
                public key) as stored in identity.key; node_id is RFC 4648 base32, lowercase, no padding \
                (52 characters); node_id_short is its first 10 characters (display only).
                """)),
            ("spec", .string("docs/PROTOCOL.md section 1 (signatures), section 2 (identities)")),
            ("identities", .array(rows)),
            ("ed25519_check", obj(
                ("signer", .string("alice")),
                ("message", .hex([UInt8]())),
                ("signature", .hex(sig.bytes)),
                ("note", .string("RFC 8032 section 7.1 TEST 1: Ed25519 signatures are deterministic")))))
    }

    // MARK: - §3 content ids

    /// A file the vectors cut into chunks, with a description an implementer can regenerate it from.
    struct SampleFile {
        let name: String
        let data: [UInt8]
        let description: VJ

        static let empty = SampleFile(name: "empty", data: [], description: obj(("kind", .string("hex")), ("hex", .string(""))))
        static let small = SampleFile(name: "small", data: Array("hello, meshnode\n".utf8),
                                      description: obj(("kind", .string("hex")), ("hex", .hex(Array("hello, meshnode\n".utf8)))))
        static let pattern = SampleFile(name: "pattern-10000", data: (0..<10_000).map { UInt8($0 % 251) },
                                        description: obj(("kind", .string("pattern")), ("rule", .string("byte i = i mod 251")),
                                                         ("length", .int(10_000))))
        static let zeros = SampleFile(name: "zeros-8192", data: [UInt8](repeating: 0, count: 8192),
                                      description: obj(("kind", .string("zeros")), ("length", .int(8192))))
    }

    /// The content-id cases: (file, chunk size, what the case shows).
    static let contentCases: [(SampleFile, UInt32, String)] = [
        (.empty, Chunking.defaultChunkSizeBytes, "the empty file: zero chunks (the example in section 3)"),
        (.small, 4096, "a file smaller than one chunk: one short chunk"),
        (.pattern, 4096, "several chunks, the last one short (4096 + 4096 + 1808 bytes)"),
        (.pattern, 8192, "the same bytes cut with another chunk size: another content id"),
        (.zeros, 4096, "a size that is an exact multiple of the chunk size, and a repeated chunk hash"),
    ]

    static func recipe(of file: SampleFile, chunkSize: UInt32) -> Recipe {
        let n = Chunking.chunkCount(sizeBytes: UInt64(file.data.count), chunkSizeBytes: chunkSize)
        let hashes = (0..<n).map { i in
            let start = i * Int(chunkSize)
            return ChunkHash(digest: Blake2b256.hash(Array(file.data[start..<min(file.data.count, start + Int(chunkSize))])))
        }
        return Recipe(sizeBytes: UInt64(file.data.count), chunkSizeBytes: chunkSize, chunks: hashes)
    }

    static func contentIDs() throws -> VJ {
        let dir = TestDir("vectors-content")
        var stores: [UInt32: Store] = [:]
        var rows: [VJ] = []
        for (file, chunkSize, shows) in contentCases {
            let r = recipe(of: file, chunkSize: chunkSize)
            // `meshnode put` must give the same id as the pure computation.
            if stores[chunkSize] == nil {
                stores[chunkSize] = try Store.initialize(dataDir: dir.sub("store-\(chunkSize)"), name: "vectors",
                                                         chunkSizeBytes: chunkSize, identity: VectorKeys.alice.identity).0
            }
            let path = dir.sub("\(file.name)-\(chunkSize)")
            try Data(file.data).write(to: URL(fileURLWithPath: path))
            let put = try stores[chunkSize]!.ingest(path: path, name: file.name, type: .other, signer: VectorKeys.alice.identity,
                                                    nowMs: VectorKeys.baseTimeMs)
            #expect(put.entry.contentID == r.contentID, "Store.ingest and Chunking disagree on \(file.name)")
            var input = ByteWriter()
            input.raw(Chunking.contentIDDomain)
            input.u64(r.sizeBytes)
            input.u32(r.chunkSizeBytes)
            for c in r.chunks { input.bytes32(c.digest) }
            rows.append(obj(
                ("name", .string("\(file.name), chunk size \(chunkSize)")),
                ("shows", .string(shows)),
                ("data", file.description),
                ("data_blake2b_256", .hex(Blake2b256.hash(file.data).bytes)),
                ("size", .n(r.sizeBytes)),
                ("chunk_size", .n(r.chunkSizeBytes)),
                ("chunks", .array(r.chunks.enumerated().map { i, c in
                    obj(("index", .n(i)), ("offset", .n(r.offset(ofChunk: i))), ("length", .n(r.length(ofChunk: i))),
                        ("hash", .hex(c.digest.bytes)))
                })),
                ("content_id_input", .hex(input.bytes)),
                ("content_id", .string(r.contentID.description)),
                ("content_id_short", .string(r.contentID.short))))
        }
        return obj(
            ("description", .string("""
                Chunking and content ids. Each case gives the file (as hex, or as a rule that generates its \
                bytes, with BLAKE2b-256 of the whole file to check the generator), the chunk size, every \
                chunk (offset, length, BLAKE2b-256 hash), the exact bytes hashed for the content id \
                (domain "meshnode/content/v1" NUL, u64 size, u32 chunk size, chunk hashes) and the id.
                """)),
            ("spec", .string("docs/PROTOCOL.md section 3 (content ids and chunking)")),
            ("cases", .array(rows)))
    }

    // MARK: - §4 manifest entries

    /// What alice originates in a 4096-byte-chunk store, in order: two puts (`meshnode put`),
    /// then a tombstone of the first name (`meshnode rm`); and one version-1 put (the old
    /// encoding, which nodes still accept and relay), signed by alice.
    static func aliceEntries() throws -> [ManifestEntry] {
        let dir = TestDir("vectors-entries")
        let (store, _) = try Store.initialize(dataDir: dir.sub("alice"), name: "gpu-a", chunkSizeBytes: 4096,
                                              identity: VectorKeys.alice.identity)
        var out: [ManifestEntry] = []
        let retention = KeepPolicy(retentionMs: [.game: 30 * 86_400_000])
        for (file, name, t) in [(SampleFile.pattern, "games_2026_01.db", Int64(0)), (SampleFile.small, "modèle-α.pt", 1234)] {
            let path = dir.sub(file.name)
            try Data(file.data).write(to: URL(fileURLWithPath: path))
            let put = try store.ingest(path: path, name: name, signer: VectorKeys.alice.identity, policy: retention,
                                       nowMs: VectorKeys.baseTimeMs + t)
            out.append(put.entry)
        }
        out.append(try store.delete("games_2026_01.db", signer: VectorKeys.alice.identity, nowMs: VectorKeys.baseTimeMs + 5000))
        let v1 = ManifestEntry(format: 1, origin: VectorKeys.alice.id, sequence: 4, contentID: out[1].contentID,
                               sizeBytes: out[1].sizeBytes, chunkSizeBytes: 4096, type: .checkpoint,
                               createdAtMs: VectorKeys.baseTimeMs + 9000, name: "legacy.pt").signed(by: VectorKeys.alice.identity)
        out.append(v1)
        // A compaction (§4.5): alice voids her deleted put (1) and her tombstone (3), the
        // tombstone once the receiver holds bob's log up to 7.
        let compaction = ManifestEntry.Compaction(ranges: [1...1, 3...3], dependencies: [EntryRef(origin: VectorKeys.bob.id, sequence: 7)])
        out.append(ManifestEntry(origin: VectorKeys.alice.id, sequence: 5, hlc: (UInt64(VectorKeys.baseTimeMs + 9_000) << 16) | 2,
                                 payload: .compaction(compaction)).signed(by: VectorKeys.alice.identity))
        // A holder record (§4.6): alice holds the content of her put 2 and dropped that of put 1.
        let holding = ManifestEntry.Holding(held: [out[1].contentID], dropped: [out[0].contentID])
        out.append(ManifestEntry(origin: VectorKeys.alice.id, sequence: 6, hlc: (UInt64(VectorKeys.baseTimeMs + 9_500) << 16),
                                 payload: .holding(holding)).signed(by: VectorKeys.alice.identity))
        // Node facts (§4.7): an ephemeral training and selfplay node in NFS group "gh200-a", with
        // `placement: defaults` (the seeds' rules) stated as its policy hash.
        let facts = ManifestEntry.NodeFacts(roles: ["training", "selfplay"], ephemeral: true, diskTotalBytes: 1 << 40,
                                            diskUsedBytes: 300 << 30, diskFreeBytes: 700 << 30, nfsGroup: "gh200-a",
                                            policyHash: Self.seedDefaultsPolicyHash)
        out.append(ManifestEntry(origin: VectorKeys.alice.id, sequence: 7, hlc: (UInt64(VectorKeys.baseTimeMs + 9_600) << 16),
                                 payload: .nodeFacts(facts)).signed(by: VectorKeys.alice.identity))
        return out
    }

    /// `placement: defaults` in canonical form (PROTOCOL §4.7), and its policy hash.
    static let seedDefaultsCanonical = PlacementPolicy.seedDefaults.canonicalBytes
    static let seedDefaultsPolicyHash = Array(Blake2b256.hash(seedDefaultsCanonical).bytes.prefix(16))

    /// The policy hash of node facts, with the rules it covers (only `placement: defaults` here).
    static func policyFields(_ f: ManifestEntry.NodeFacts) -> [(String, VJ)] {
        guard let h = f.policyHash else { return [] }
        precondition(h == seedDefaultsPolicyHash, "a vector's policy hash is that of placement: defaults")
        let rules = PlacementPolicy.seedDefaults.rules.sorted { $0.key.rawValue < $1.key.rawValue }.map { t, r in
            obj(("type", .n(t.rawValue)), ("roles", .array(r.roles.map { .string($0) })), ("min_copies", .n(UInt64(r.minCopies))),
                ("max_copies", .n(UInt64(r.maxCopies ?? 0))))
        }
        return [("policy_rules", .array(rules)), ("policy_canonical", .hex(seedDefaultsCanonical)), ("policy_hash", .hex(h))]
    }

    static func entryFields(_ e: ManifestEntry) -> VJ {
        var fields: [(String, VJ)] = [("version", .n(e.format)), ("kind", .n(e.kindCode)),
                                      ("origin", .hex(e.origin.key.bytes)), ("sequence", .n(e.sequence))]
        if e.format >= 2 { fields.append(("hlc", .n(e.hlc))) }
        switch e.payload {
        case .put(let p):
            fields += [("content_id", .hex(p.contentID.digest.bytes)), ("size", .n(p.sizeBytes)),
                       ("chunk_size", .n(p.chunkSizeBytes)), ("type", .n(p.type.rawValue)),
                       ("type_name", .string(p.type.description))]
            if e.format >= 2 { fields.append(("flags", .n(p.flags))) }
            fields.append(("created_ms", .n(p.createdAtMs)))
            if e.format >= 2 { fields.append(("expires_ms", .n(p.expiresAtMs))) }
            fields += [("name", .string(p.name)), ("name_utf8", .hex(Array(p.name.utf8)))]
        case .tombstone(let t):
            switch t.scope {
            case .name: fields.append(("scope", .n(UInt8(1))))
            case .version(let r):
                fields += [("scope", .n(UInt8(2))), ("target_origin", .hex(r.origin.key.bytes)), ("target_sequence", .n(r.sequence))]
            }
            fields += [("created_ms", .n(t.createdAtMs)), ("name", .string(t.name)), ("name_utf8", .hex(Array(t.name.utf8)))]
        case .compaction(let c):
            fields += [("ranges", .array(c.ranges.map { .array([.n($0.lowerBound), .n($0.upperBound)]) })),
                       ("dependencies", .array(c.dependencies.map { obj(("origin", .hex($0.origin.key.bytes)), ("sequence", .n($0.sequence))) }))]
        case .holding(let h):
            fields += [("held", .array(h.held.map { .hex($0.digest.bytes) })),
                       ("dropped", .array(h.dropped.map { .hex($0.digest.bytes) }))]
        case .nodeFacts(let f):
            fields += [("ephemeral", .bool(f.ephemeral)), ("excluded", .bool(f.excluded)), ("full", .bool(f.full)),
                       ("disk_total_bytes", .n(f.diskTotalBytes)), ("disk_used_bytes", .n(f.diskUsedBytes)),
                       ("disk_free_bytes", .n(f.diskFreeBytes)), ("roles", .array(f.roles.map { .string($0) })),
                       ("nfs_group", .string(f.nfsGroup))] + Self.policyFields(f)
        case .holding(let h):
            fields += [("held", .array(h.held.map { .hex($0.digest.bytes) })), ("dropped", .array(h.dropped.map { .hex($0.digest.bytes) }))]
        case .nodeFacts(let f):
            fields += [("ephemeral", .bool(f.ephemeral)), ("excluded", .bool(f.excluded)), ("full", .bool(f.full)),
                       ("disk_total_bytes", .n(f.diskTotalBytes)), ("disk_used_bytes", .n(f.diskUsedBytes)),
                       ("disk_free_bytes", .n(f.diskFreeBytes)), ("roles", .array(f.roles.map { .string($0) })),
                       ("nfs_group", .string(f.nfsGroup))] + Self.policyFields(f)
        case .unknown(_, let body):
            fields.append(("body", .hex(body)))
        }
        return VJ.object(fields)
    }

    static func manifestEntries() throws -> VJ {
        let entries = try aliceEntries()
        var rows: [VJ] = []
        for e in entries {
            #expect(e.verify(with: Ed25519Verifier()))
            #expect(try ManifestEntry.decode(e.encoded) == e, "an entry decodes to what was encoded")
            var body = ByteWriter()
            e.encodeBody(into: &body)
            rows.append(obj(
                ("signer", .string("alice")),
                ("origin_node_id", .string(e.origin.description)),
                ("fields", entryFields(e)),
                ("body", .hex(body.bytes)),
                ("signed_bytes", .hex(e.signedBytes)),
                ("signature", .hex(e.signature.bytes)),
                ("encoded", .hex(e.encoded)),
                ("encoded_bytes", .n(e.encoded.count))))
        }
        return obj(
            ("description", .string("""
                Signed manifest entries, as alice's node creates them (sequences 1 to 3 of one origin: two                 version-2 puts by `meshnode put`, the first with a 30-day game retention stamped into                 expires_ms, then a version-2 name tombstone by `meshnode rm` of the first name; and                 sequence 4, a version-1 put, the old encoding nodes still accept and relay). The content                 ids are those of content-ids.json, pattern-10000 and small at chunk size 4096. body is                 every field but the signature, in wire order (for version 2: version, kind, origin,                 sequence, hlc, then the kind's fields with their u16 length); signed_bytes is                 "meshnode/entry/v2" NUL (or "meshnode/entry/v1" NUL for version 1) then the body;                 encoded is the body then the 64-byte Ed25519 signature. The second name is non-ASCII:                 its str16 length counts UTF-8 bytes.
                """)),
            ("spec", .string("docs/PROTOCOL.md section 4 (manifest entries)")),
            ("entries", .array(rows)))
    }

    // MARK: - §10 certificates

    static let certificateValidityMs: Int64 = 30 * 24 * 3600 * 1000

    static func aliceCertificate() -> Certificate {
        Certificate(authority: VectorKeys.authority.id, subject: VectorKeys.alice.id, serial: 4242,
                    issuedAtMs: VectorKeys.baseTimeMs, expiresAtMs: VectorKeys.baseTimeMs + certificateValidityMs,
                    name: "gpu-a", role: "selfplay").signed(by: VectorKeys.authority.identity)
    }

    static func certificates() throws -> VJ {
        let c = aliceCertificate()
        #expect(try Certificate.decode(c.encoded) == c, "a certificate decodes to what was encoded")
        var body = ByteWriter()
        c.encodeBody(into: &body)
        let policy = AdmissionPolicy(authorities: [VectorKeys.authority.id])
        let revoking = AdmissionPolicy(authorities: [VectorKeys.authority.id],
                                       revokedSerials: [.init(authority: VectorKeys.authority.id, serial: 4242)])
        let cases: [(String, AdmissionPolicy, NodeID, Int64)] = [
            ("one ms before the 60 s slack before issued_ms", policy, VectorKeys.alice.id, c.issuedAtMs - 60_001),
            ("exactly 60 s before issued_ms", policy, VectorKeys.alice.id, c.issuedAtMs - 60_000),
            ("59.999 s after expires_ms", policy, VectorKeys.alice.id, c.expiresAtMs + 59_999),
            ("exactly 60 s after expires_ms", policy, VectorKeys.alice.id, c.expiresAtMs + 60_000),
            ("presented by bob, who is not the subject", policy, VectorKeys.bob.id, c.issuedAtMs),
            ("serial 4242 of this authority revoked", revoking, VectorKeys.alice.id, c.issuedAtMs),
        ]
        let decisions: [VJ] = cases.map { what, p, node, now in
            let d = p.decide(node: node, credential: c.encoded, nowWallMs: now, verifier: Ed25519Verifier())
            let text: String = switch d {
            case .admittedByKey: "admitted_by_key"
            case .admittedByCertificate: "admitted"
            case .rejected(let why): why.rawValue
            }
            return obj(("case", .string(what)), ("presented_by", .hex(node.key.bytes)), ("now_ms", .n(now)),
                       ("revoked_serials", .array(p.revokedSerials.map { .n($0.serial) })), ("decision", .string(text)))
        }
        return obj(
            ("description", .string("""
                An admission certificate: the authority key of identities.json admits alice for 30 days. \
                signed_bytes is "meshnode/cert/v1" NUL then every field but the signature; encoded is \
                the fields then the Ed25519 signature by the authority. decisions shows the receiver's \
                verdict (a policy whose authority_keys hold this authority) at chosen wall-clock times: \
                validity has 60 s of slack on each end.
                """)),
            ("spec", .string("docs/PROTOCOL.md section 10 (admission)")),
            ("signer", .string("authority")),
            ("fields", obj(
                ("version", .n(Certificate.formatVersion)),
                ("authority", .hex(c.authority.key.bytes)),
                ("authority_node_id", .string(c.authority.description)),
                ("subject", .hex(c.subject.key.bytes)),
                ("serial", .n(c.serial)),
                ("issued_ms", .n(c.issuedAtMs)),
                ("expires_ms", .n(c.expiresAtMs)),
                ("name", .string(c.name)),
                ("role", .string(c.role)))),
            ("body", .hex(body.bytes)),
            ("signed_bytes", .hex(c.signedBytes)),
            ("signature", .hex(c.signature.bytes)),
            ("encoded", .hex(c.encoded)),
            ("encoded_bytes", .n(c.encoded.count)),
            ("decisions", .array(decisions)))
    }
}
