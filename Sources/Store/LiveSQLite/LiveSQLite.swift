import CSQLite
#if canImport(Glibc)
import Glibc
#endif

/// Snapshots of SQLite databases that other processes are writing, as chunked items.
///
/// `LiveDatabaseSnapshotter` turns a live database into a sequence of consistent images in the
/// chunk store, each a standalone database file that passes `PRAGMA integrity_check` on its own.
/// The cost of a snapshot grows with what changed since the previous one, not with the database.
/// This comment is the design; the code follows it step by step.
///
/// ## Sources
///
/// - The WAL file format: https://www.sqlite.org/fileformat2.html#walformat (header, frames,
///   salts, the cumulative checksum, commit frames).
/// - Write-ahead logging: https://www.sqlite.org/wal.html (readers, read marks, checkpoints,
///   "checkpoint starvation", WAL reset).
/// - SQLite's `wal.c` (3.40, Debian 12's libsqlite3) for the exact rules quoted below:
///   `walTryBeginRead`, `walCheckpoint`, `walRestartLog`, `sqlite3WalFrames`.
///
/// Debian 12's SQLite has neither the `sqlite_dbpage` virtual table nor `SQLITE_ENABLE_SNAPSHOT`,
/// so pages cannot be read through SQL; the snapshotter reads the database and WAL files itself,
/// and uses SQLite's locks (through read transactions on its own connections) to make what it
/// reads stable while it reads it.
///
/// ## What SQLite guarantees (and what we rely on)
///
/// 1. A WAL frame is valid when its salts equal the WAL header's and its checksum continues the
///    chain from the header (fileformat2 §4). A commit frame has a non-zero "database size"
///    field. The committed database after commit frame C is: for each page, its latest frame at
///    or before C, else the page in the database file. This is exactly what SQLite's own
///    recovery (`walIndexRecover`) trusts, so a torn or half-written frame ends the chain.
/// 2. A reader that began while the WAL was not fully backfilled holds one of the read locks
///    1...7 with a read mark ≤ the frames it sees (`walTryBeginRead`). While any reader holds a
///    read lock 1...7 the WAL cannot be reset: the writer resets only if it gets every one of
///    them exclusively (`walRestartLog`; checkpoint RESTART/TRUNCATE likewise). So committed
///    frames are never overwritten while such a reader lives.
/// 3. A checkpoint copies into the database file only frames ≤ the smallest read mark of live
///    readers (`mxSafeFrame`), and only while it holds read lock 0 exclusively. A reader that
///    began on a fully backfilled WAL holds read lock 0 (shared) and reads the database file
///    only: while it lives nothing is copied into the database file at all (and the file is not
///    truncated, which happens inside the same lock).
/// 4. A WAL reset increments salt-1 and randomises salt-2 (`walRestartHdr`); the file's header is
///    rewritten before the first frame of the new generation. Salts therefore never repeat, and
///    if the header we read at the end of a snapshot is byte-identical to the one at its start,
///    no frame was overwritten in between.
/// 5. In WAL mode a connection keeps its SHARED lock on the database file while it is open, so
///    another connection closing cannot checkpoint-and-delete the WAL under us. Those locks are
///    POSIX advisory locks, which belong to the process: closing *any* descriptor of the file
///    drops them all (https://www.sqlite.org/howtocorrupt.html §2.2). So the snapshotter never
///    `open(2)`s a database: it reads it through SQLite's own VFS (`VFSFile`), which defers the
///    close while locks are held. (The first version did open it; closing that descriptor let a
///    writer delete the WAL under our connections, and SQLite then reported "database disk image
///    is malformed".) The -wal file carries no locks and is read with `pread` directly.
///
/// ## The cycle (WAL mode)
///
/// The snapshotter owns two connections and always holds a read transaction on one of them
/// (Litestream does the same). A cycle:
///
/// 1. BEGINs a read transaction on the spare connection *before* ending the held one, so there
///    is never a moment without one of our readers.
/// 2. Reads the WAL header and scans frames from its position (the last commit frame it
///    scanned: salts, frame number, cumulative checksum; first re-read to check that the frame
///    there still carries those salts and that checksum), checking salts and the checksum
///    chain, up to the last valid commit frame C. Pages of frames in (position, C] are the pages
///    changed since the previous snapshot; over-approximating is harmless. C is at least every
///    frame committed before the new read transaction began (those frames were in the file
///    before SQLite published them), so the image holds every transaction committed before the
///    cycle started.
/// 3. Builds the new image as the previous snapshot's chunks (read back from this store and
///    verified) patched with the latest frame of each changed page; only chunks holding a
///    changed page are read, re-hashed and, when new, stored. The database size in pages comes
///    from commit frame C.
/// 4. Re-reads the WAL header. Unchanged: no frame was overwritten (4.) and the image is the
///    committed state at C, a consistent transaction boundary. Changed: the cycle is retried.
/// 5. Ends the old read transaction; the new one is now held.
///
/// Why nothing is lost between cycles: our held reader began before the scan that set the
/// position. If it holds a read lock 1...7 the WAL cannot be reset (2.). If it holds read lock
/// 0 the WAL was fully backfilled when it began and no later frame can be backfilled while it
/// lives (3.), so a reset (which needs a fully backfilled WAL) can only happen if the generation
/// ended exactly where we stopped scanning. Hence: same salts → continue from the position; new
/// salts → the new generation starts from our previous image, scan it from frame 1.
///
/// Anything the snapshotter cannot prove that way makes a **full read**: the database file, with
/// the latest valid frame of every page of the current generation laid over it, every chunk
/// re-hashed. That covers the first snapshot, a new generation after a restart of meshnode, a
/// frame at our position that no longer matches, a database file replaced (another inode), a
/// page size, image chunk size or journal mode change, and previous chunks missing or damaged in the store. A full
/// read still stores only chunks that changed, because chunks are content-addressed.
///
/// ## WAL growth: the write lock, briefly
///
/// Checked on this machine (3.40.1): with our reader always held, the WAL is *never* reset while
/// a writer keeps committing. Each checkpoint stops at our read mark, the writer never finds the
/// WAL fully backfilled, and the WAL file grew to 64 MB over 10 000 rows of 1 KB (it stays at
/// 4 MB without our reader). This is SQLite's "checkpoint starvation" (wal.html), and holding a
/// reader forever would make every watched database's -wal grow without bound.
///
/// So when the frames of the current generation exceed `walRestartThresholdBytes`, a cycle takes
/// the database's write lock for a moment (`BEGIN IMMEDIATE` on the spare connection; nothing is
/// ever written): with no commit possible it scans to the final frame E, ends the old reader,
/// runs a PASSIVE checkpoint, and BEGINs a new reader, which lands on read lock 0 when the
/// checkpoint backfilled everything; then it releases the write lock. The writer's next
/// transaction resets the WAL (measured: salt-1 + 1). The changed pages are then read from the
/// database file, which holds the state at E and cannot change under read lock 0 (3.). The
/// writer waits for our write lock through its busy handler (Python's sqlite3 waits 5 s by
/// default; we hold the lock for one scan of the WAL's newest frames and one checkpoint, tens of
/// milliseconds, and wait for it at most `writeLockWaitMs`); a writer with no busy timeout would
/// see SQLITE_BUSY, so `nil` disables this. If a reader of another process lags, the checkpoint
/// is not complete, nothing is reset, and changed pages come from the WAL as usual.
///
/// ## Compared with the first analysis
///
/// Kept: a reader held without a gap, change detection from WAL frames (salts, checksum chain,
/// last commit frame), a new generation scanned from frame 1, the size from the commit frame,
/// the previous snapshot's chunks patched, full reads for anything unproven. Changed: (a) the
/// held reader alone starves the WAL, hence the write-lock checkpoint above; (b) files are read
/// through SQLite's VFS (5.); (c) the header is re-read after the pages were read, since a
/// reader on read lock 0 does not stop a reset during the cycle (then the cycle is retried);
/// (d) the position's own frame is checked before scanning past it, which also lets a restarted
/// meshnode continue incrementally.
///
/// ## The image is standalone
///
/// Header bytes 18 and 19 (file format write and read version) are 2 in WAL mode. The image
/// has both rewritten to 1 (rollback journal), so a receiver opens the single file, even
/// read-only or with `immutable=1`, without looking for a -wal beside it; `PRAGMA
/// journal_mode=WAL` turns WAL back on. The only other bytes not taken from a page's committed
/// content are those of the lock-byte page (the page at offset 2^30, in databases over 1 GiB),
/// which SQLite never reads nor writes: images hold it as zeros, so that an incremental image
/// and a full read of the same state are byte-identical. (Found by the 1 GiB benchmark: that
/// page is in no WAL frame when the database grows past it.)
///
/// ## Rollback-journal databases
///
/// A database in rollback-journal mode has no record of which pages changed. A cycle takes a
/// read transaction (SHARED lock: no writer can change the file while it is held; a hot journal
/// is rolled back by SQLite first) and compares the header's file change counter, the size and
/// the mtime with the previous snapshot's: all equal, nothing changed (cheap). Otherwise it
/// reads the whole file. **The cost of those snapshots grows with the database, and writers
/// wait for the duration of the read.** Readers also starve behind a writer that commits
/// constantly (SQLite's busy handler polls): a snapshot then fails after `busyTimeoutMs` and
/// the next one retries. Put such databases in WAL mode to watch them cheaply.
///
/// ## Restarts of meshnode
///
/// After each snapshot the snapshotter records its position (and the database file's identity)
/// in the store's `node_state`, in the same transaction as the recipe. A new snapshotter on the
/// same store continues incrementally when the WAL still has the same salts and the frame at the
/// position still carries the recorded checksum (no reset happened meanwhile: salts never
/// repeat); otherwise it does a full read, which writes only the chunks that changed.
///
/// ## Known limits
///
/// - While watched, the database cannot be switched out of WAL mode, nor opened by others with
///   `locking_mode=EXCLUSIVE` (both need every other connection gone), as with Litestream.
/// - A commit frame whose fsync failed is valid on disk before SQLite gives the transaction up
///   and overwrites it; a snapshot in that window can hold that transaction (as SQLite's own
///   recovery after a crash at that moment would).
/// - Every snapshot is a new content id with its own recipe. Superseded snapshots are reclaimed
///   by GC once the keep policy no longer keeps their versions; the last snapshot of each
///   database stays (its `node_state` row pins it: the base of the next snapshot, and content
///   whose version may not be recorded yet), also after the database is no longer watched.
/// - A rebuilt chunk that was in the store already is not written again; if a concurrent GC
///   deletes it before the snapshot is recorded, the record transaction sees it and the cycle
///   is retried (`Store.recordLiveSnapshot`).
public enum LiveSQLite {
    /// The first 16 bytes of every SQLite database file.
    public static let headerMagic: [UInt8] = Array("SQLite format 3".utf8) + [0]
    /// Bytes in the database header (page 1 starts with it).
    static let headerBytes = 100
    /// Images are cut in chunks of at most this (`LiveDatabaseSnapshotter.Options`): with the
    /// default 2 MiB store chunks, a steady writer's scattered pages made each 5 s cycle of a
    /// 1 GiB database send 12-17.5 MiB for under 1 MiB of changed pages.
    public static let defaultMaxImageChunkSizeBytes: UInt32 = 512 * 1024

    /// True when `path` is a regular file that starts with SQLite's header string, whatever
    /// its name. False for anything unreadable. Safe on a database this process has open (see
    /// `VFSFile`).
    public static func isDatabase(path: String) -> Bool {
        guard let size = FS.regularFileSize(path), size >= UInt64(headerBytes), let f = try? VFSFile(path: path) else { return false }
        var b = [UInt8](repeating: 0, count: headerMagic.count)
        let ok = b.withUnsafeMutableBytes { raw in (try? f.read(into: raw.baseAddress!, count: raw.count, offset: 0)) != nil }
        return ok && b == headerMagic
    }
}

/// The fields of the 100-byte database header the snapshotter uses (fileformat2 §1.3).
struct DatabaseHeader: Equatable {
    var pageSize: Int
    /// Offset 18: 1 legacy (rollback journal), 2 WAL.
    var writeVersion: UInt8
    /// Offset 19: 1 legacy, 2 WAL.
    var readVersion: UInt8
    /// Offset 24: incremented by every transaction that changes a rollback-journal database.
    var changeCounter: UInt32
    /// Offset 28: the database size in pages, valid only if non-zero and offset 92 equals 24.
    var inHeaderPages: UInt32
    /// Offset 92.
    var versionValidFor: UInt32

    var isWAL: Bool { writeVersion == 2 || readVersion == 2 }

    /// The in-header size when SQLite would trust it (fileformat2 §1.3.7).
    var validInHeaderPages: UInt32? { inHeaderPages != 0 && changeCounter == versionValidFor ? inHeaderPages : nil }

    /// Offsets of the two bytes a standalone image sets to 1.
    static let versionOffsets = 18...19

    /// SQLite's lock byte, offset 2^30 (fileformat2 §1.3, "the lock-byte page").
    static let pendingByte: UInt64 = 0x4000_0000

    /// The page holding the lock byte: SQLite never writes it (it skips it when the database
    /// grows), so it is in no WAL frame; images hold it as zeros.
    static func lockBytePage(pageSize: Int) -> UInt32 { UInt32(pendingByte / UInt64(pageSize)) + 1 }

    /// Parses `bytes` (at least 100); nil when it is not a SQLite header.
    init?(_ b: [UInt8]) {
        guard b.count >= LiveSQLite.headerBytes, Array(b[0..<16]) == LiveSQLite.headerMagic else { return nil }
        let raw = Int(b[16]) << 8 | Int(b[17])
        let size = raw == 1 ? 65536 : raw
        guard size >= 512, size <= 65536, size & (size - 1) == 0 else { return nil }
        pageSize = size
        writeVersion = b[18]
        readVersion = b[19]
        func u32(_ o: Int) -> UInt32 { UInt32(b[o]) << 24 | UInt32(b[o + 1]) << 16 | UInt32(b[o + 2]) << 8 | UInt32(b[o + 3]) }
        changeCounter = u32(24)
        inHeaderPages = u32(28)
        versionValidFor = u32(92)
    }
}
