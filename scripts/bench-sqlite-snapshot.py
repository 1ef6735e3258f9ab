#!/usr/bin/env python3
"""Benchmark of live SQLite snapshots (LiveDatabaseSnapshotter): cost per cycle vs database size.

For each size it builds a WAL-mode database of that many MiB with scripts/sqlite-writer.py
(rows of --row-bytes, ids increasing, an index on a timestamp unless --no-index), starts the writer at --rate
rows per second (one commit per row, SQLite's default autocheckpoint), and snapshots the
database every --interval seconds for --duration seconds into a fresh store with --chunk-mib
chunks (images are cut at the smaller of that and --image-chunk-kib), through the LiveSQLiteBenchmark test (`swift test`, env MESHNODE_BENCH_SQLITE_*).
It prints per-cycle bytes read, bytes hashed, and new chunk bytes (what a peer holding the
previous snapshot must fetch), their max and median over the incremental cycles (the first
snapshot is a full read and is reported apart), and the ratio between the sizes.

usage: scripts/bench-sqlite-snapshot.py [--sizes 1024,10] [--interval 5] [--duration 60]
                                        [--rate 100] [--row-bytes 1024] [--chunk-mib 2] [--image-chunk-kib N] [--no-index]
                                        [--skip-build] [--release] [--work DIR] [--keep]

Everything lives in one temp dir (under $TMPDIR or /var/tmp), removed at the end unless --keep.
The writer is ended by its PID. Debug builds report the same byte counts (durations differ).
"""
import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WRITER = os.path.join(ROOT, "scripts", "sqlite-writer.py")
MIB = 1 << 20


def mib(n):
    return "%.2f" % (n / MIB)


def build(release):
    cmd = ["swift", "build", "--build-tests"] + (["-c", "release"] if release else [])
    print("building: %s" % " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=sys.stderr)


def make_db(path, size_mib, row_bytes, no_index):
    # About 1.36 KB of file per 1 KB row (table leaf + index, measured); the real size is reported.
    rows = int(size_mib * MIB / (row_bytes * 1.36))
    print("creating %s: %d rows of %d bytes..." % (path, rows, row_bytes), file=sys.stderr, flush=True)
    subprocess.run([sys.executable, WRITER, "--db", path, "--init", str(rows), "--row-bytes", str(row_bytes)]
                   + (["--no-index"] if no_index else []), check=True, stdout=sys.stderr)
    return os.path.getsize(path)


def run_size(args, work, size_mib):
    d = os.path.join(work, "db-%dmib" % size_mib)
    os.makedirs(d)
    db = os.path.join(d, "games.db")
    db_bytes = make_db(db, size_mib, args.row_bytes, args.no_index)
    writer = subprocess.Popen([sys.executable, WRITER, "--db", db, "--rate", str(args.rate),
                               "--row-bytes", str(args.row_bytes), "--duration", str(args.duration + 120)],
                              stdout=subprocess.DEVNULL, stderr=sys.stderr)
    env = dict(os.environ)
    env.update({
        "MESHNODE_BENCH_SQLITE_DB": db,
        "MESHNODE_BENCH_SQLITE_STORE": os.path.join(d, "store"),
        "MESHNODE_BENCH_SQLITE_INTERVAL": str(args.interval),
        "MESHNODE_BENCH_SQLITE_DURATION": str(args.duration),
        "MESHNODE_BENCH_SQLITE_CHUNK_BYTES": str(args.chunk_mib * MIB),
    })
    if args.image_chunk_kib:
        env["MESHNODE_BENCH_SQLITE_IMAGE_CHUNK_BYTES"] = str(args.image_chunk_kib * 1024)
    cmd = ["swift", "test", "--skip-build", "--filter", "LiveSQLiteBenchmark"] + (["-c", "release"] if args.release else [])
    cycles = []
    try:
        time.sleep(2)  # let the writer start
        p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in p.stdout:
            if line.startswith("LIVESQLITE_BENCH "):
                c = json.loads(line[len("LIVESQLITE_BENCH "):])
                cycles.append(c)
                print("  %4d MiB cycle %2d: read %7s MiB hashed %7s MiB new %7s MiB touched %3d pages %5d "
                      "frames %5d wal %6s MiB %s%s%s %5d ms" % (
                          size_mib, c["cycle"], mib(c["bytes_read"]), mib(c["bytes_hashed"]), mib(c["new_chunk_bytes"]),
                          c["chunks_touched"], c["pages_changed"], c["wal_frames_scanned"], mib(c["wal_bytes"]),
                          "FULL(%s) " % c["full_reason"] if c["full"] else "",
                          ("assisted " if c["assisted"] else "locked(ckpt %s) " % c["checkpoint"] if c["write_locked"] else ""),
                          "" if c["changed"] else "unchanged ",
                          c["duration_ms"]), flush=True)
            elif "✘" in line or "error:" in line:
                print(line.rstrip(), file=sys.stderr)
        rc = p.wait()
        if rc != 0:
            sys.exit("swift test failed (%d)" % rc)
    finally:
        writer.send_signal(signal.SIGTERM)
        try:
            writer.wait(10)
        except subprocess.TimeoutExpired:
            writer.kill()
            writer.wait()
    return db_bytes, cycles


def summary(cycles):
    inc = [c for c in cycles if not c["full"]]
    out = {}
    for key in ("bytes_read", "bytes_hashed", "read_plus_hashed", "new_chunk_bytes"):
        vals = [(c["bytes_read"] + c["bytes_hashed"]) if key == "read_plus_hashed" else c[key] for c in inc]
        out[key] = (max(vals), statistics.median(vals)) if vals else (0, 0)
    return out, len(inc), [c for c in cycles if c["full"]]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1024,10", help="database sizes in MiB, comma-separated")
    p.add_argument("--interval", type=float, default=5.0)
    p.add_argument("--duration", type=float, default=60.0)
    p.add_argument("--rate", type=float, default=100.0)
    p.add_argument("--row-bytes", type=int, default=1024)
    p.add_argument("--chunk-mib", type=int, default=2, help="the store's chunk size")
    p.add_argument("--image-chunk-kib", type=int, help="largest chunk of a snapshot image (default: the snapshotter's, 512)")
    p.add_argument("--no-index", action="store_true", help="no index on the timestamp column (one b-tree, not two)")
    p.add_argument("--skip-build", action="store_true")
    p.add_argument("--release", action="store_true")
    p.add_argument("--work", help="directory for the temp dir (default $TMPDIR or /var/tmp)")
    p.add_argument("--keep", action="store_true")
    args = p.parse_args()
    if not args.skip_build:
        build(args.release)
    work = tempfile.mkdtemp(prefix="meshnode-sqlite-bench.", dir=args.work or os.environ.get("TMPDIR", "/var/tmp"))
    results = []
    try:
        for size in [int(s) for s in args.sizes.split(",")]:
            db_bytes, cycles = run_size(args, work, size)
            results.append((size, db_bytes, cycles))
    finally:
        if args.keep:
            print("kept %s" % work, file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)

    print()
    image_chunks = sorted({c.get("image_chunk_bytes", 0) for _, _, cycles in results for c in cycles})
    print("writer: %g rows/s of %d bytes, one commit per row, %s; snapshot every %gs for %gs; store chunks %d MiB, "
          "image chunks %s KiB"
          % (args.rate, args.row_bytes, "no index" if args.no_index else "table + index on t",
             args.interval, args.duration, args.chunk_mib, "/".join(str(b >> 10) for b in image_chunks)))
    print("%-10s %-9s %-7s | %-19s | %-19s | %-19s | %-19s" % (
        "db", "full read", "cycles", "read MiB max/med", "hashed MiB max/med", "read+hashed max/med", "new chunks MiB max/med"))
    sums = {}
    for size, db_bytes, cycles in results:
        s, n, fulls = summary(cycles)
        sums[size] = s
        first = fulls[0] if fulls else None
        print("%-10s %-9s %-7d | %8s / %-8s | %8s / %-8s | %8s / %-8s | %8s / %-8s" % (
            "%s MiB" % mib(db_bytes), "%s MiB" % mib(first["bytes_read"]) if first else "-", n,
            mib(s["bytes_read"][0]), mib(s["bytes_read"][1]), mib(s["bytes_hashed"][0]), mib(s["bytes_hashed"][1]),
            mib(s["read_plus_hashed"][0]), mib(s["read_plus_hashed"][1]),
            mib(s["new_chunk_bytes"][0]), mib(s["new_chunk_bytes"][1])))
        extra = [c for c in fulls[1:]]
        if extra:
            print("           later full reads: %s" % ", ".join("cycle %d (%s)" % (c["cycle"], c["full_reason"]) for c in extra))
    if len(results) == 2:
        (a, _, _), (b, _, _) = results
        print("ratio %d MiB / %d MiB (max):" % (a, b), ", ".join(
            "%s %.2f" % (k, (sums[a][k][0] / sums[b][k][0]) if sums[b][k][0] else float("nan"))
            for k in ("bytes_read", "bytes_hashed", "read_plus_hashed", "new_chunk_bytes")))


if __name__ == "__main__":
    main()
