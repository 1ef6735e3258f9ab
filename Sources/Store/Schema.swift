/// The manifest database schema and its ordered migrations.
///
/// `PRAGMA user_version` holds the version. Migration `n` (1-based) takes the schema
/// from version `n-1` to `n`; each runs in its own transaction. A database whose
/// version is higher than `currentVersion` is refused (written by a newer meshnode).
public enum Schema {
    /// The schema version this code writes and understands.
    public static var currentVersion: Int { migrations.count }

    /// Migrations in order; never edit a released one, only append.
    static let migrations: [String] = [
        // 1: the initial schema.
        """
        CREATE TABLE items(
            origin          BLOB    NOT NULL CHECK(length(origin) = 32),
            sequence        INTEGER NOT NULL CHECK(sequence >= 1),
            kind            INTEGER NOT NULL,
            content_id      BLOB    NOT NULL CHECK(length(content_id) = 32),
            name            TEXT    NOT NULL,
            type            INTEGER NOT NULL,
            size_bytes      INTEGER NOT NULL,
            chunk_size      INTEGER NOT NULL,
            created_ms      INTEGER NOT NULL,
            signature       BLOB    NOT NULL CHECK(length(signature) = 64),
            encoded         BLOB    NOT NULL,
            received_at_ms  INTEGER NOT NULL,
            PRIMARY KEY(origin, sequence)
        ) WITHOUT ROWID;
        CREATE INDEX items_by_content ON items(content_id);
        CREATE INDEX items_by_name ON items(name);

        CREATE TABLE recipes(
            content_id   BLOB    PRIMARY KEY CHECK(length(content_id) = 32),
            size_bytes   INTEGER NOT NULL,
            chunk_size   INTEGER NOT NULL,
            chunk_count  INTEGER NOT NULL
        ) WITHOUT ROWID;
        CREATE TABLE recipe_chunks(
            content_id  BLOB    NOT NULL,
            idx         INTEGER NOT NULL,
            hash        BLOB    NOT NULL CHECK(length(hash) = 32),
            PRIMARY KEY(content_id, idx)
        ) WITHOUT ROWID;
        CREATE INDEX recipe_chunks_by_hash ON recipe_chunks(hash);

        CREATE TABLE chunks(
            hash          BLOB    PRIMARY KEY CHECK(length(hash) = 32),
            size_bytes    INTEGER NOT NULL,
            stored_at_ms  INTEGER NOT NULL
        ) WITHOUT ROWID;

        CREATE TABLE origins(
            origin       BLOB    PRIMARY KEY CHECK(length(origin) = 32),
            highest_seq  INTEGER NOT NULL
        ) WITHOUT ROWID;

        CREATE TABLE peers(
            node_id       BLOB    PRIMARY KEY CHECK(length(node_id) = 32),
            name          TEXT    NOT NULL,
            address       TEXT    NOT NULL,
            state         TEXT    NOT NULL,
            incarnation   INTEGER NOT NULL,
            last_seen_ms  INTEGER NOT NULL,
            role          TEXT    NOT NULL,
            updated_ms    INTEGER NOT NULL
        ) WITHOUT ROWID;

        CREATE TABLE outbox(
            id               INTEGER PRIMARY KEY,
            origin           BLOB    NOT NULL,
            sequence         INTEGER NOT NULL,
            target           BLOB    NOT NULL,
            attempts         INTEGER NOT NULL DEFAULT 0,
            next_attempt_ms  INTEGER NOT NULL,
            enqueued_ms      INTEGER NOT NULL,
            UNIQUE(origin, sequence, target)
        );
        CREATE INDEX outbox_by_due ON outbox(next_attempt_ms);

        CREATE TABLE forks(
            id           INTEGER PRIMARY KEY,
            origin       BLOB    NOT NULL,
            sequence     INTEGER NOT NULL,
            entry_a      BLOB    NOT NULL,
            entry_b      BLOB    NOT NULL,
            detected_ms  INTEGER NOT NULL,
            UNIQUE(origin, sequence, entry_b)
        );
        """,
        // 2: small durable facts of the running node (its gossip incarnation, ...).
        """
        CREATE TABLE node_state(
            key    TEXT PRIMARY KEY,
            value  BLOB NOT NULL
        ) WITHOUT ROWID;
        """,
        // 3: entries version 2: the hybrid logical clock (version-1 entries get created_ms << 16,
        // as docs/PROTOCOL.md §4.2 says) and the retention expiry; tombstones share the table.
        """
        ALTER TABLE items ADD COLUMN hlc INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE items ADD COLUMN expires_ms INTEGER NOT NULL DEFAULT 0;
        UPDATE items SET hlc = (min(max(created_ms, 0), 281474976710655) << 16);
        CREATE INDEX items_by_hlc ON items(hlc);
        """,
        // 4: chunk files being written. A chunk file gets its final name before the
        // transaction that records it in `chunks` commits; its row here (committed before the
        // name) lets a later open finish the write of a process that died in between.
        """
        CREATE TABLE chunk_writes(
            hash    BLOB NOT NULL CHECK(length(hash) = 32),
            writer  TEXT NOT NULL,
            PRIMARY KEY(hash, writer)
        ) WITHOUT ROWID;
        """,
        // 5: watched folders (Store/FolderState.swift): each folder (its path and name prefix; when
        // its first complete scan was recorded) and, per relative path, what the folder last saw
        // or wrote there.
        """
        CREATE TABLE folder_roots(
            id          INTEGER PRIMARY KEY,
            path        TEXT    NOT NULL,
            prefix      TEXT    NOT NULL,
            created_ms  INTEGER NOT NULL,
            scanned_ms  INTEGER,
            UNIQUE(path, prefix)
        );
        CREATE TABLE folder_files(
            folder      INTEGER NOT NULL REFERENCES folder_roots(id),
            rel_path    TEXT    NOT NULL,
            size_bytes  INTEGER NOT NULL,
            mtime_ns    INTEGER NOT NULL,
            inode       INTEGER NOT NULL,
            content_id  BLOB    CHECK(content_id IS NULL OR length(content_id) = 32),
            origin      BLOB    CHECK(origin IS NULL OR length(origin) = 32),
            sequence    INTEGER,
            source      INTEGER NOT NULL,
            updated_ms  INTEGER NOT NULL,
            PRIMARY KEY(folder, rel_path)
        ) WITHOUT ROWID;
        """,
        // 6: earlier versions stored remote entries whose chunk size is outside what
        // docs/PROTOCOL.md §3 accepts (4 KiB … 64 MiB). Receivers refuse them and they no
        // longer decode (every listing would fail on them), so they go. Members keep the
        // credential they were admitted with (a certificate), so that a restarted node still
        // admits them before they announce themselves again.
        """
        DELETE FROM items WHERE kind = 1 AND (chunk_size < \(ManifestEntry.minChunkSizeBytes) OR chunk_size > \(ManifestEntry.maxChunkSizeBytes));
        ALTER TABLE peers ADD COLUMN credential BLOB NOT NULL DEFAULT x'';
        """,
        // 7: chunks backed by a folder file (Store/ChunkBackings.swift): the chunk's bytes are at
        // `offset` in the regular file at `path` whose inode is `inode` (`file_size`, `mtime_ns`:
        // that file when it was recorded), instead of in a chunk file. `writer` is NULL for a
        // backing in force; else the `WriterStamp` of a materialise that has not yet renamed the
        // file into place (such rows are never read from, and settled at open if it died).
        """
        CREATE TABLE chunk_backings(
            hash        BLOB    NOT NULL CHECK(length(hash) = 32),
            path        TEXT    NOT NULL,
            offset      INTEGER NOT NULL CHECK(offset >= 0),
            size_bytes  INTEGER NOT NULL CHECK(size_bytes >= 0),
            inode       INTEGER NOT NULL,
            file_size   INTEGER NOT NULL,
            mtime_ns    INTEGER NOT NULL,
            writer      TEXT,
            PRIMARY KEY(hash, path, offset, inode)
        ) WITHOUT ROWID;
        CREATE INDEX chunk_backings_by_path ON chunk_backings(path);
        CREATE INDEX chunk_backings_pending ON chunk_backings(writer) WHERE writer IS NOT NULL;
        """,
        // 8: the outbox becomes the spot outbox (Store/Outbox.swift, docs/SYNC.md "Spot nodes"):
        // one row per item this node originated that no durable node holds yet. The entry-push
        // queue it replaces was never written to.
        """
        DROP TABLE outbox;
        CREATE TABLE outbox(
            content_id   BLOB    PRIMARY KEY CHECK(length(content_id) = 32),
            type         INTEGER NOT NULL,
            size_bytes   INTEGER NOT NULL,
            enqueued_ms  INTEGER NOT NULL
        ) WITHOUT ROWID;
        """,
    ]

    /// Brings `db` to `currentVersion`, or throws `.schemaTooNew`.
    static func migrate(_ db: Database, path: String) throws(MeshError) {
        let version: Int
        do { version = Int(try db.scalarInt("PRAGMA user_version") ?? 0) } catch { throw error.meshError }
        if version > currentVersion {
            throw MeshError(.schemaTooNew,
                            "store \(path) has schema version \(version), newer than this meshnode understands (\(currentVersion))",
                            hint: "upgrade meshnode to the version that wrote this store")
        }
        guard version < currentVersion else { return }
        for v in version..<currentVersion {
            try db.transaction { () throws(MeshError) in
                do {
                    try db.exec(migrations[v])
                    try db.exec("PRAGMA user_version = \(v + 1)")
                } catch let e as SQLiteError {
                    throw e.meshError
                } catch {
                    throw MeshError(.internalError, "\(error)", hint: "")
                }
            }
        }
    }
}
