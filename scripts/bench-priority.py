#!/usr/bin/env python3
"""Transfer priorities under a saturated link (issue 13). Not a test: it prints what it measured.

Node A (the sender, `bandwidth: {global: 50MB/s}`) holds a LOW item and a CRITICAL item; node B
fetches them only when asked (placement sends `other` items to storage nodes, and only A is one).
B starts `get --priority low` of the large item; once that has saturated A's limit for a few
seconds, B starts `get --priority critical` of the 100 MB item. B's `status --json` transfer rows
are polled every 100 ms; the CRITICAL share is its bytes over both transfers' bytes, from 1 s
after it started until it completed. The target is its weighted share 8/(8+1) = 0.889, within 10 %.

With --low-on-other-node a third node C fetches the LOW item instead of B, so the two transfers
are two sessions of A competing for A's global limit (a LOW broadcast to other peers).

Usage: scripts/bench-priority.py [--bin .build/release/meshnode] [--limit 50MB/s] [--critical-mb 100] [--low-mb 400]
                                 [--runs 3] [--low-on-other-node]
Everything runs on 127.0.0.0/8; every process started is stopped by PID at the end.
"""
import argparse, json, os, shutil, signal, subprocess, sys, tempfile, time

ap = argparse.ArgumentParser()
ap.add_argument("--bin", default=".build/release/meshnode")
ap.add_argument("--limit", default="50MB/s", help="A's global upload limit")
ap.add_argument("--critical-mb", type=int, default=100)
ap.add_argument("--low-mb", type=int, default=400)
ap.add_argument("--warmup", type=float, default=3.0, help="seconds of LOW alone before the CRITICAL get")
ap.add_argument("--runs", type=int, default=3)
ap.add_argument("--low-on-other-node", action="store_true",
                help="a third node C fetches the LOW item, so the two transfers are different sessions of A "
                     "(A's global limit is shared by priority across sessions) instead of one session's requests")
args = ap.parse_args()
BIN = os.path.abspath(args.bin)
ENV = {k: v for k, v in os.environ.items() if not k.startswith("MESHNODE_")}
ENV["MESHNODE_NO_PROGRESS"] = "1"
root = tempfile.mkdtemp(prefix="meshnode-bench-priority-")
procs = []
IP_A, IP_B, IP_C = "127.78.0.1", "127.78.0.2", "127.78.0.3"


def sh(argv):
    r = subprocess.run(argv, capture_output=True, text=True, env=ENV, timeout=600)
    if r.returncode != 0:
        raise SystemExit(f"failed: {' '.join(argv)}\n{r.stderr}")
    return r.stdout


def init(name):
    d = f"{root}/{name}"
    return d, sh([BIN, "init", "--data", d, "--name", name]).strip().splitlines()[-1]


def spawn(argv, log):
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=open(log, "w"), env=ENV)
    procs.append(p)
    return p


def transfers(d):
    r = subprocess.run([BIN, "status", "--data", d, "--json"], capture_output=True, text=True, env=ENV, timeout=30)
    if r.returncode != 0:
        return {}
    return {t["id"]: t for t in json.loads(r.stdout).get("node", {}).get("transfers", [])}


def wait(cond, timeout, what):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if cond():
            return
        time.sleep(0.1)
    raise SystemExit(f"timed out after {timeout}s waiting for {what}")


def make_file(path, mb):
    with open(path, "wb") as f:
        for _ in range(mb):
            f.write(os.urandom(1_000_000))


def one_run(run, a_dir, b_dir, l_dir, low_id, crit_id):
    low_out, crit_out = f"{root}/low-{run}.out", f"{root}/crit-{run}.out"
    low = spawn([BIN, "get", low_id, "-o", low_out, "--priority", "low", "--data", l_dir], f"{root}/low-{run}.log")
    wait(lambda: transfers(l_dir).get(low_id, {}).get("done", 0) > 0, 60, "the LOW fetch under way")
    time.sleep(args.warmup)
    t0 = time.time()
    crit = spawn([BIN, "get", crit_id, "-o", crit_out, "--priority", "critical", "--data", b_dir], f"{root}/crit-{run}.log")
    samples = []  # (seconds since t0, critical done, low done)
    crit_size = args.critical_mb * 1_000_000
    while True:
        t = transfers(b_dir)
        tl = t if l_dir == b_dir else transfers(l_dir)
        now = time.time() - t0
        c, l = t.get(crit_id), tl.get(low_id)
        samples.append((now, c["done"] if c else (crit_size if now > 1 else 0), l["done"] if l else None))
        if c is None and now > 1.0 or crit.poll() is not None or now > 120:
            break
        time.sleep(0.1)
    crit.wait(timeout=120)
    crit_seconds = time.time() - t0
    # From 1 s after the CRITICAL get started until its last sample before completion.
    window = [s for s in samples if s[0] >= 1.0 and s[2] is not None]
    done = [s for s in window if s[1] < crit_size] or window
    if len(window) < 2:
        print(f"run {run}: the CRITICAL get was done within 1 s ({crit_seconds:.2f} s): no window to measure")
        share = None
    else:
        first, last = window[0], (done[-1] if len(done) >= 2 else window[-1])
        dc, dl, dt = last[1] - first[1], last[2] - first[2], last[0] - first[0]
        share = dc / (dc + dl) if dc + dl > 0 else 0
        print(f"run {run}: CRITICAL {args.critical_mb} MB get took {crit_seconds:.2f} s; window {first[0]:.1f}-{last[0]:.1f} s: "
              f"CRITICAL {dc / dt / 1e6:.1f} MB/s, LOW {dl / dt / 1e6:.1f} MB/s, CRITICAL share {share:.3f} "
              f"(target {8 / 9:.3f} ± 10 %: {'ok' if abs(share - 8 / 9) <= 0.1 * 8 / 9 else 'MISSED'})")
    low.wait(timeout=300)
    if low.returncode != 0 or crit.returncode != 0:
        raise SystemExit(f"a get failed: low {low.returncode}, critical {crit.returncode}; logs in {root}")
    for p in (low_out, crit_out):
        os.remove(p)
    return share


try:
    a_dir, a_id = init("a")
    b_dir, b_id = init("b")
    c_dir, c_id = init("c")
    common = (f"trusted_keys: [{a_id}, {b_id}, {c_id}]\nlog_level: info\nprobe_interval: 300ms\nanti_entropy_interval: 1s\n"
              "placement: {other: {roles: [storage]}}\n")
    with open(f"{root}/a.yaml", "w") as f:
        f.write(common + f"roles: [storage]\nbandwidth: {{global: {args.limit}}}\n")
    with open(f"{root}/b.yaml", "w") as f:
        f.write(common + "roles: [training]\n")
    spawn([BIN, "run", "--data", a_dir, "--config", f"{root}/a.yaml", "--listen", f"{IP_A}:17801"], f"{root}/a.log")
    time.sleep(1)
    spawn([BIN, "run", "--data", b_dir, "--config", f"{root}/b.yaml", "--listen", f"{IP_B}:17802", "--join", f"{IP_A}:17801"],
          f"{root}/b.log")
    l_dir = b_dir
    if args.low_on_other_node:
        spawn([BIN, "run", "--data", c_dir, "--config", f"{root}/b.yaml", "--listen", f"{IP_C}:17803", "--join", f"{IP_A}:17801"],
              f"{root}/c.log")
        l_dir = c_dir
    shares = []
    for run in range(args.runs):
        low_f, crit_f = f"{root}/low{run}.bin", f"{root}/crit{run}.bin"
        make_file(low_f, args.low_mb)
        make_file(crit_f, args.critical_mb)
        low_id = sh([BIN, "put", low_f, "--name", f"low{run}", "--data", a_dir]).strip().splitlines()[-1]
        crit_id = sh([BIN, "put", crit_f, "--name", f"crit{run}", "--data", a_dir]).strip().splitlines()[-1]
        os.remove(low_f)
        os.remove(crit_f)
        def known():
            for d in {b_dir, l_dir}:
                r = subprocess.run([BIN, "ls", "--data", d, "--json"], capture_output=True, text=True, env=ENV)
                if r.returncode != 0 or not {f"low{run}", f"crit{run}"} <= {x["name"] for x in json.loads(r.stdout)}:
                    return False
            return True
        wait(known, 60, "B to know both items")
        s = one_run(run, a_dir, b_dir, l_dir, low_id, crit_id)
        if s is not None:
            shares.append(s)
    if shares:
        print(f"CRITICAL share over {len(shares)} runs: min {min(shares):.3f}, max {max(shares):.3f} (target {8 / 9:.3f} ± 10 %)")
finally:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
    shutil.rmtree(root, ignore_errors=True)
