#!/usr/bin/env python3
"""Spot-node benchmarks (issue 12). Not a test: it prints numbers and ratios measured in one run.

  1. push2: an ephemeral node puts a 10 MB item; time from the start of `meshnode put` until two
     durable nodes hold it complete. With push-to-2 (`take`, PROTOCOL §9.5) and a placement no
     durable node's role wants, next to the baseline measured in the same run: `push_copies: 0`
     and no placement, so the two durable nodes pull it after the entry's HYBRID push (how every
     item travelled before push-to-2).
  2. kill9: 2 durable nodes and an ephemeral one whose send folder holds a live SQLite database
     written at --rate rows/s (scripts/sqlite-writer.py); `kill -9` of the ephemeral node at a
     random moment; how many seconds of rows the durable copy misses (the kill's time minus the
     timestamp of the newest row on a durable node). Repeated --trials times.
  3. sigterm: the same, but the writer stops and the node gets SIGTERM at once: rows lost (must be
     0) and the time the node took to exit.

Usage: scripts/bench-spot.py [--bin .build/release/meshnode] [--only push2,kill9,sigterm] [--trials 5]
Everything runs on 127.0.0.0/8; every process started is killed by PID at the end.
"""
import argparse, json, os, random, shutil, signal, socket, sqlite3, statistics, subprocess, sys, tempfile, time

ap = argparse.ArgumentParser()
ap.add_argument("--bin", default=".build/release/meshnode")
ap.add_argument("--only", default="push2,kill9,sigterm")
ap.add_argument("--trials", type=int, default=5)
ap.add_argument("--mb", type=int, default=10, help="size of the push2 item, MB (10^6 bytes)")
ap.add_argument("--rate", type=int, default=40, help="rows per second the SQLite writer inserts")
ap.add_argument("--seed", type=int, default=12)
ap.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
args = ap.parse_args()
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import meshbench
B = meshbench.Bench(args.bin, "meshnode-bench-spot-")
BIN, procs, root = B.bin, B.procs, B.root
log, sh = B.log, B.sh
WRITER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sqlite-writer.py")
rng = random.Random(args.seed)

def wait(cond, timeout, what, step=0.01):
    return meshbench.wait(cond, timeout, what, step)

def Node(name, ip):
    return meshbench.Node(B, name, ip)

def write_config(path, nodes, extra):
    with open(path, "w") as f:
        f.write("trusted_keys:\n" + "".join(f"  - {x.id}\n" for x in nodes) + "log_level: notice\nprobe_interval: 300ms\n" + extra)
    return path

def all_alive(nodes):
    return all(len(x.ask("peers") or []) == len(nodes) and all(p["state"] == "alive" for p in x.ask("peers")) for x in nodes)

# ---- 1. put -> 2 complete copies ------------------------------------------------------------
def push2():
    out = {}
    for mode, subnet in (("push-to-2", "127.91.0"), ("baseline: pull after the entry's push", "127.92.0")):
        nodes = [Node(f"{'p' if mode.startswith('push') else 'q'}{i}", f"{subnet}.{i + 1}") for i in range(3)]
        spot, d1, d2 = nodes
        if mode.startswith("push"):
            rules = "placement: {npz: {roles: [training], min_copies: 2}}\n"
            cs = write_config(f"{root}/{spot.name}.yaml", nodes, rules + "ephemeral: true\nroles: [selfplay]\n")
            cd = write_config(f"{root}/{d1.name}.yaml", nodes, rules + "roles: [storage]\n")
        else:
            cs = write_config(f"{root}/{spot.name}.yaml", nodes, "ephemeral: true\npush_copies: 0\n")
            cd = write_config(f"{root}/{d1.name}.yaml", nodes, "push_copies: 0\n")
        d1.start(cd); d2.start(cd, d1.addr); spot.start(cs, d1.addr)
        wait(lambda: all_alive(nodes), 60, "3 alive", 0.2)
        times, puts = [], []
        for t in range(args.trials):
            f = f"{root}/item-{mode[:4]}-{t}.npz"
            with open(f, "wb") as fh: fh.write(os.urandom(args.mb * 1_000_000))
            t0 = time.time()
            cid = sh([BIN, "put", f, "--data", spot.dir, "--name", f"bench/item-{t}.npz", "--type", "npz"]).stdout.strip().splitlines()[-1]
            puts.append(time.time() - t0)
            wait(lambda: d1.holds_in_store(cid) and d2.holds_in_store(cid), 120, f"2 copies ({mode})")
            times.append(time.time() - t0)
        for x in nodes: x.stop()
        log(f"{mode}: put -> 2 complete copies of {args.mb} MB: median {statistics.median(times):.3f}s, max {max(times):.3f}s "
            f"(the put itself: median {statistics.median(puts):.3f}s) over {args.trials}: {[round(x, 3) for x in times]}")
        out[mode] = times
    p, b = statistics.median(out["push-to-2"]), statistics.median(out["baseline: pull after the entry's push"])
    log(f"push2: median {p:.3f}s vs baseline {b:.3f}s: ratio {p / b:.2f} (target: <= 1 s)")

# ---- 2, 3. a live database on a spot node ----------------------------------------------------
def live_cluster(tag, subnet):
    d1, d2, e = Node(f"{tag}d1", f"{subnet}.1"), Node(f"{tag}d2", f"{subnet}.2"), Node(f"{tag}e", f"{subnet}.3")
    nodes = [d1, d2, e]
    folder = f"{root}/{tag}-selfplay"
    os.makedirs(folder)
    cd = write_config(f"{root}/{tag}d.yaml", nodes, "")
    ce = write_config(f"{root}/{tag}e.yaml", nodes, f"ephemeral: true\nfolders:\n  - {{path: {folder}, mode: send, prefix: \"{tag}/\"}}\n")
    d1.start(cd); d2.start(cd, d1.addr); e.start(ce, d1.addr)
    wait(lambda: all_alive(nodes), 60, "3 alive", 0.2)
    return nodes, folder, ce

def durable_copy(node, name, dest):
    if os.path.exists(dest): os.unlink(dest)
    r = sh([BIN, "get", name, "-o", dest, "--data", node.dir], check=False, timeout=120)
    if r.returncode != 0: return None
    db = sqlite3.connect(f"file:{dest}?mode=ro", uri=True)
    row = db.execute("SELECT coalesce(max(id), 0), (SELECT t FROM games ORDER BY id DESC LIMIT 1) FROM games").fetchone()
    db.close()
    return row

def start_writer(db, duration):
    sh(["/usr/bin/python3", WRITER, "--db", db, "--init", "100"])
    w = subprocess.Popen(["/usr/bin/python3", WRITER, "--db", db, "--rate", str(args.rate), "--duration", str(duration),
                          "--report", "1"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    procs.append(w)
    return w

def restart(e, ce, nodes):
    """The ephemeral node again (a new spot host with the same store), until all are alive."""
    e.start(ce, nodes[0].addr)
    wait(lambda: all_alive(nodes), 60, "3 alive again", 0.2)

def kill9():
    nodes, folder, ce = live_cluster("k", "127.93.0")
    d1, d2, e = nodes
    windows = []
    for t in range(args.trials):
        db = f"{folder}/games-{t}.db"
        w = start_writer(db, 120)
        time.sleep(rng.uniform(8, 14))
        killed_at = time.time()
        e.kill9()
        w.kill(); w.wait()
        row = None
        def copied():
            nonlocal row
            row = durable_copy(d2, f"k/games-{t}.db", f"{root}/k-copy.db")
            return row is not None and row[1] is not None
        wait(copied, 60, "a durable copy", 0.5)
        windows.append(killed_at - row[1])
        log(f"kill9 trial {t}: the durable copy misses the last {windows[-1]:.2f}s of rows (max id {row[0]})")
        restart(e, ce, nodes)
    for x in nodes: x.stop()
    log(f"kill9: rows lost on kill -9 of the spot node: median {statistics.median(windows):.2f}s, max {max(windows):.2f}s "
        f"of writes over {args.trials} kills (target <= 5 s; Litestream's aim 1 s)")

def sigterm():
    nodes, folder, ce = live_cluster("s", "127.94.0")
    d1, d2, e = nodes
    exits, lost = [], []
    for t in range(args.trials):
        db = f"{folder}/games-{t}.db"
        w = start_writer(db, rng.uniform(6, 10))
        outp, _ = w.communicate(timeout=60)
        committed = max(int(l.split()[1]) for l in outp.splitlines() if l.startswith(("done ", "commit ")))
        t0 = time.time()
        status = e.stop(60)
        exits.append(time.time() - t0)
        row = durable_copy(d1, f"s/games-{t}.db", f"{root}/s-copy.db")
        lost.append(committed - (row[0] if row else 0))
        log(f"sigterm trial {t}: exit {status} after {exits[-1]:.2f}s; {committed} rows committed, {lost[-1]} missing on a durable node")
        restart(e, ce, nodes)
    for x in nodes: x.stop()
    log(f"sigterm: rows lost {sum(lost)} over {args.trials} stops (target 0); exit after median {statistics.median(exits):.2f}s, "
        f"max {max(exits):.2f}s")

try:
    for part in args.only.split(","):
        {"push2": push2, "kill9": kill9, "sigterm": sigterm}[part]()
finally:
    B.cleanup(args.keep)
