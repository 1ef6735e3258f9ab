#!/usr/bin/env python3
"""A SQLite writer for the live-snapshot tests and benchmark (stdlib only).

Creates or extends a `games` table the way a selfplay process does: rows with increasing
ids and a timestamp `t` (indexed unless --no-index), each a payload of --row-bytes whose
content is a pure function of the id, so a reader can check every row of a snapshot with SQL
alone (see PAYLOAD_SQL).

  --init N             create the database (journal mode --mode) with N rows, then exit
  (otherwise)          insert --rate rows per second for --duration seconds

Options of the live mode: --batch rows per commit; --checkpoint-every S runs
`PRAGMA wal_checkpoint(MODE)` every S seconds, cycling through --checkpoint-modes; --pause-every
S / --pause-for S stop writing for a while (then run one PASSIVE checkpoint, so the WAL can be
fully backfilled and reset); --autocheckpoint N sets `PRAGMA wal_autocheckpoint`.
Prints one line per event to stdout ("commit <id>" every --report rows, "checkpoint <mode>
<busy> <log> <ckpt>", "pause", "resume"), and "done <last id>" at the end.
"""
import argparse
import os
import sqlite3
import sys
import time

# A row's payload: its id in 12 digits, then one letter (A + id % 26) repeated. The same
# expression in SQL, to check a snapshot: `SELECT count(*) FROM games WHERE payload != <PAYLOAD_SQL>`
# with ?1 = row bytes.
PAYLOAD_SQL = "printf('%012d', id) || substr(replace(hex(zeroblob(?1)), '0', char(65 + id % 26)), 1, ?1 - 12)"


def payload(i, n):
    return "%012d" % i + chr(65 + i % 26) * (n - 12)


def connect(path, mode, page_size=None):
    db = sqlite3.connect(path, timeout=10.0, isolation_level=None)
    if page_size:
        db.execute("PRAGMA page_size=%d" % page_size)
    got = db.execute("PRAGMA journal_mode=%s" % mode).fetchone()[0]
    if got.lower() != mode.lower():
        sys.exit("cannot set journal_mode=%s on %s (got %s)" % (mode, path, got))
    return db


def init(args):
    if os.path.exists(args.db):
        sys.exit("%s exists" % args.db)
    db = connect(args.db, args.mode, args.page_size)
    db.execute("CREATE TABLE games(id INTEGER PRIMARY KEY, t REAL NOT NULL, payload TEXT NOT NULL)")
    if not args.no_index:
        db.execute("CREATE INDEX games_by_t ON games(t)")
    db.execute("BEGIN")
    now = time.time()
    for i in range(1, args.init + 1):
        db.execute("INSERT INTO games(id, t, payload) VALUES(?, ?, ?)", (i, now, payload(i, args.row_bytes)))
        if i % 10000 == 0:
            db.execute("COMMIT")
            db.execute("BEGIN")
    db.execute("COMMIT")
    if args.mode == "wal":
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    print("created %s rows=%d bytes=%d" % (args.db, args.init, os.path.getsize(args.db)), flush=True)


def live(args):
    db = connect(args.db, args.mode)
    if args.autocheckpoint is not None:
        db.execute("PRAGMA wal_autocheckpoint=%d" % args.autocheckpoint)
    last = db.execute("SELECT coalesce(max(id), 0) FROM games").fetchone()[0]
    modes = [m.strip().upper() for m in args.checkpoint_modes.split(",") if m.strip()]
    start = time.monotonic()
    next_ckpt = start + args.checkpoint_every if args.checkpoint_every else None
    next_pause = start + args.pause_every if args.pause_every else None
    k = 0
    interval = args.batch / args.rate
    due = start
    while time.monotonic() - start < args.duration:
        now = time.monotonic()
        if next_pause is not None and now >= next_pause:
            print("pause", flush=True)
            time.sleep(args.pause_for)
            r = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            print("checkpoint PASSIVE %d %d %d" % tuple(r), flush=True)
            print("resume", flush=True)
            next_pause = time.monotonic() + args.pause_every
            due = time.monotonic()
            continue
        if next_ckpt is not None and now >= next_ckpt:
            mode = modes[k % len(modes)]
            k += 1
            r = db.execute("PRAGMA wal_checkpoint(%s)" % mode).fetchone()
            print("checkpoint %s %d %d %d" % ((mode,) + tuple(r)), flush=True)
            next_ckpt = time.monotonic() + args.checkpoint_every
        db.execute("BEGIN")
        t = time.time()
        for _ in range(args.batch):
            last += 1
            db.execute("INSERT INTO games(id, t, payload) VALUES(?, ?, ?)", (last, t, payload(last, args.row_bytes)))
        db.execute("COMMIT")
        if args.report and last % args.report < args.batch:
            print("commit %d" % last, flush=True)
        due += interval
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    db.close()
    print("done %d" % last, flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", required=True)
    p.add_argument("--mode", default="wal", choices=["wal", "delete", "truncate", "persist"])
    p.add_argument("--init", type=int, help="create the database with this many rows and exit")
    p.add_argument("--row-bytes", type=int, default=1024)
    p.add_argument("--page-size", type=int, default=4096)
    p.add_argument("--no-index", action="store_true", help="--init: no index on t (one b-tree instead of two)")
    p.add_argument("--rate", type=float, default=100.0, help="rows per second")
    p.add_argument("--batch", type=int, default=1, help="rows per commit")
    p.add_argument("--duration", type=float, default=20.0, help="seconds")
    p.add_argument("--checkpoint-every", type=float, default=0.0)
    p.add_argument("--checkpoint-modes", default="PASSIVE")
    p.add_argument("--pause-every", type=float, default=0.0)
    p.add_argument("--pause-for", type=float, default=0.0)
    p.add_argument("--autocheckpoint", type=int)
    p.add_argument("--report", type=int, default=0, help="print 'commit <id>' every this many rows")
    args = p.parse_args()
    if args.row_bytes < 13:
        sys.exit("--row-bytes must be at least 13")
    if args.init is not None:
        init(args)
    else:
        live(args)


if __name__ == "__main__":
    main()
