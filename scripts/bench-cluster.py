#!/usr/bin/env python3
"""Cluster benchmarks for `meshnode run` on loopback (issue 4). Not a test: it prints numbers.

Measures, with default timings (probe 1 s, anti-entropy 30 s) unless told otherwise:
  - idle RSS and CPU of one node;
  - gossip bytes sent per node per second with 5 and with 25 nodes;
  - time from `kill -9` of one node until every survivor marks it dead;
  - time from `put` on one node until the entry is in every node's manifest.

Usage: scripts/bench-cluster.py [--bin .build/release/meshnode] [--sizes 5,25] [--window 30]
Every process it starts is killed by PID at the end; all traffic stays on 127.0.0.0/8.
"""
import argparse, json, os, shutil, signal, subprocess, sys, tempfile, time

ap = argparse.ArgumentParser()
ap.add_argument("--bin", default=".build/release/meshnode")
ap.add_argument("--sizes", default="5,25")
ap.add_argument("--window", type=float, default=30.0, help="seconds over which traffic and idle CPU are measured")
ap.add_argument("--subnet", default="127.77.0")
args = ap.parse_args()
BIN = os.path.abspath(args.bin)
ENV = dict(os.environ, MESHNODE_NO_PROGRESS="1")
for k in list(ENV):
    if k.startswith("MESHNODE_") and k != "MESHNODE_NO_PROGRESS":
        del ENV[k]
procs = []

def run(*a, check=True):
    r = subprocess.run([BIN, *a], capture_output=True, text=True, env=ENV, timeout=60)
    if check and r.returncode != 0:
        raise SystemExit(f"meshnode {' '.join(a)} failed: {r.stderr}")
    return r

def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0

def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")

def status(d):
    r = run("status", "--data", d, "--json", check=False)
    return json.loads(r.stdout).get("node") if r.returncode == 0 else None

def peers(d):
    r = run("peers", "--data", d, "--json", check=False)
    return json.loads(r.stdout) if r.returncode == 0 else []

def wait(cond, timeout, what):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if cond():
            return time.time() - t0
        time.sleep(0.05)
    raise SystemExit(f"timed out after {timeout}s waiting for {what}")

class Cluster:
    def __init__(self, n, root):
        self.root, self.n = root, n
        self.dirs = [f"{root}/n{i}" for i in range(n)]
        self.addrs = [f"{args.subnet}.{i + 1}:7946" for i in range(n)]
        self.ids = [run("init", "--data", d, "--name", f"n{i}").stdout.strip().splitlines()[-1] for i, d in enumerate(self.dirs)]
        self.cfg = f"{root}/cluster.yaml"
        with open(self.cfg, "w") as f:
            f.write("trusted_keys:\n" + "".join(f"  - {i}\n" for i in self.ids) + "log_level: warning\n")
        self.p = [None] * n

    def start(self, i):
        join = [] if i == 0 else ["--join", self.addrs[0]]
        p = subprocess.Popen([BIN, "run", "--data", self.dirs[i], "--config", self.cfg, "--listen", self.addrs[i], *join],
                             stdout=subprocess.DEVNULL, stderr=open(f"{self.dirs[i]}.log", "w"), env=ENV)
        procs.append(p)
        self.p[i] = p
        wait(lambda: run("peers", "--data", self.dirs[i], check=False).returncode == 0, 20, f"node {i} control socket")

    def all_alive(self, nodes=None):
        nodes = range(self.n) if nodes is None else nodes
        for i in nodes:
            ps = peers(self.dirs[i])
            if len(ps) != self.n or any(p["state"] != "alive" for p in ps):
                return False
        return True

def measure_traffic(c, window):
    s0 = [status(d) for d in c.dirs]
    time.sleep(window)
    s1 = [status(d) for d in c.dirs]
    per_node = [(b["bytes_sent"] - a["bytes_sent"]) / window for a, b in zip(s0, s1)]
    msgs = [(b["messages_sent"] - a["messages_sent"]) / window for a, b in zip(s0, s1)]
    return sum(per_node) / len(per_node), max(per_node), sum(msgs) / len(msgs)

def main():
    results = {}
    root = tempfile.mkdtemp(prefix="meshnode-bench-")
    try:
        # 1. One idle node.
        c1 = Cluster(1, root + "/single")
        c1.start(0)
        pid = c1.p[0].pid
        time.sleep(3)
        cpu0, t0 = cpu_seconds(pid), time.time()
        time.sleep(args.window)
        cpu = (cpu_seconds(pid) - cpu0) / (time.time() - t0) * 100
        results["idle_single"] = {"rss_mib": round(rss_kib(pid) / 1024, 1), "cpu_percent": round(cpu, 2)}
        print(f"idle node: RSS {results['idle_single']['rss_mib']} MiB, CPU {results['idle_single']['cpu_percent']}% over {args.window:.0f}s", flush=True)
        c1.p[0].send_signal(signal.SIGTERM); c1.p[0].wait(15)

        for n in [int(x) for x in args.sizes.split(",")]:
            c = Cluster(n, f"{root}/c{n}")
            t0 = time.time()
            for i in range(n):
                c.start(i)
            join_s = wait(lambda: c.all_alive(), 120, f"{n} alive everywhere") + (time.time() - t0) * 0
            print(f"{n} nodes: all alive in every view {time.time() - t0:.1f}s after the first start", flush=True)
            time.sleep(5)
            mean_bps, max_bps, msgs = measure_traffic(c, args.window)
            rss = [rss_kib(p.pid) / 1024 for p in c.p]
            cpus = []
            # put → everywhere, via the manifests' received_ms stamps (same clock on one machine)
            f = f"{root}/payload-{n}.bin"
            with open(f, "wb") as fh:
                fh.write(os.urandom(100_000))
            run("put", f, "--data", c.dirs[1], "--name", f"payload-{n}.bin")
            def everywhere():
                for d in c.dirs:
                    r = run("ls", "--data", d, "--json", check=False)
                    if r.returncode != 0 or not any(x["name"] == f"payload-{n}.bin" for x in json.loads(r.stdout)):
                        return False
                return True
            wait(everywhere, 60, "the entry everywhere")
            lat = []
            for d in c.dirs:
                for x in json.loads(run("ls", "--data", d, "--json").stdout):
                    if x["name"] == f"payload-{n}.bin":
                        lat.append(x.get("received_ms", x["created_ms"]) - x["created_ms"])
            # kill -9 → dead everywhere
            victim = n - 1
            c.p[victim].kill()
            c.p[victim].wait()
            tk = time.time()
            survivors = range(n - 1)
            def dead_everywhere():
                for i in survivors:
                    st = {p["name"]: p["state"] for p in peers(c.dirs[i])}
                    if st.get(f"n{victim}") != "dead":
                        return False
                return True
            dead_s = wait(dead_everywhere, 120, "the victim dead everywhere")
            results[f"n{n}"] = {
                "gossip_bytes_per_node_per_s_mean": round(mean_bps, 1), "gossip_bytes_per_node_per_s_max": round(max_bps, 1),
                "messages_per_node_per_s": round(msgs, 2), "rss_mib_max": round(max(rss), 1),
                "put_to_all_ms_max": max(lat), "put_to_all_ms_median": sorted(lat)[len(lat) // 2],
                "kill9_to_dead_everywhere_s": round(dead_s, 2),
            }
            print(f"{n} nodes: gossip {mean_bps:.0f} B/s per node (max {max_bps:.0f}), {msgs:.1f} msgs/s per node, "
                  f"max RSS {max(rss):.1f} MiB; put→all max {max(lat)} ms (median {sorted(lat)[len(lat)//2]} ms); "
                  f"kill -9 → dead everywhere {dead_s:.1f} s", flush=True)
            for p in c.p:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            for p in c.p:
                try: p.wait(15)
                except Exception: p.kill()
        print(json.dumps(results, indent=2))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        shutil.rmtree(root, ignore_errors=True)

main()
