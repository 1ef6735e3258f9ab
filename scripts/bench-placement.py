#!/usr/bin/env python3
"""Placement and broadcast benchmarks (issue 11). Not a test: it prints numbers and ratios
measured in one run.

  1. broadcast: `put --broadcast` of a 500 MB item on one of 10 nodes, every node with a
     50 MB/s upload limit (`bandwidth: {global: 50MB/s}`); time until the last node holds it
     complete, next to the origin-alone bound ((N-1) x size / limit), the swarm bound
     (max(size / limit, (N-1) x size / (N x limit))) and a measured naive push (one origin
     to one receiver under the same limit, times N-1);
  2. restore: 5 storage nodes, `game: {min_copies: 2, max_copies: 2}`; `kill -9` of a holder;
     time until a third node holds the item complete, minus the time the new holder took to
     mark the victim dead (failure detection);
  3. idle gossip: 25 nodes, gossip bytes sent per node per second while idle, first with no
     items, then with 10 000 small items and their holder records replicated.

Usage: scripts/bench-placement.py [--bin .build/release/meshnode] [--only broadcast,restore,idle]
        [--bcast-nodes 10] [--bcast-mb 500] [--limit-mbps 50] [--idle-nodes 25] [--items 10000] [--window 60]
Everything runs on 127.0.0.0/8; every process started is killed by PID at the end.
"""
import argparse, json, os, shutil, signal, socket, subprocess, sys, tempfile, time
from concurrent.futures import ThreadPoolExecutor

ap = argparse.ArgumentParser()
ap.add_argument("--bin", default=".build/release/meshnode")
ap.add_argument("--only", default="broadcast,restore,idle")
ap.add_argument("--bcast-nodes", type=int, default=10, help="nodes in the broadcast cluster, origin included")
ap.add_argument("--bcast-mb", type=int, default=500, help="size of the broadcast item, MB (10^6 bytes)")
ap.add_argument("--limit-mbps", type=float, default=50.0, help="every node's upload limit, MB/s")
ap.add_argument("--skip-naive", action="store_true", help="do not measure the one-receiver transfer")
ap.add_argument("--restore-nodes", type=int, default=5)
ap.add_argument("--restore-mb", type=int, default=50)
ap.add_argument("--idle-nodes", type=int, default=25)
ap.add_argument("--items", type=int, default=10000)
ap.add_argument("--item-bytes", type=int, default=256)
ap.add_argument("--put-workers", type=int, default=4)
ap.add_argument("--idle-copies", type=int, default=1, help="min_copies = max_copies of the items in the idle cluster")
ap.add_argument("--converge-timeout", type=float, default=1800)
ap.add_argument("--bulk", choices=["folder", "put"], default="folder", help="how the idle cluster's items are put")
ap.add_argument("--window", type=float, default=60.0, help="seconds over which idle gossip is measured")
ap.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
args = ap.parse_args()
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import meshbench
B = meshbench.Bench(args.bin, "meshnode-bench-place-")
BIN, ENV, procs, root, T0 = B.bin, B.env, B.procs, B.root, B.t0
log, sh, wait, make_file = B.log, B.sh, meshbench.wait, meshbench.make_file
results = {}

def Node(name, ip):
    return meshbench.Node(B, name, ip)

def cluster(tag, n, subnet, extra):
    nodes = [Node(f"{tag}{i}", f"{subnet}.{i + 1}") for i in range(n)]
    cfg = f"{root}/{tag}.yaml"
    with open(cfg, "w") as f:
        f.write("trusted_keys:\n" + "".join(f"  - {x.id}\n" for x in nodes) + "log_level: notice\n" + extra)
    for i, x in enumerate(nodes):
        x.start(cfg, None if i == 0 else nodes[0].addr)
    wait(lambda: all(len(x.ask("peers") or []) == n and all(p["state"] == "alive" for p in x.ask("peers")) for x in nodes),
         120, f"{n} nodes alive in every view", 0.5)
    return nodes

def proc_cpu_seconds(pid):
    """User + system CPU seconds of a running process (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            parts = f.read().rsplit(")", 1)[1].split()
        return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0

def cpu_busy():
    f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return (sum(f) - f[3] - f[4]) / os.sysconf("SC_CLK_TCK")

# ---- 1. broadcast --------------------------------------------------------------------------
def broadcast():
    n, size, lim = args.bcast_nodes, args.bcast_mb * 1_000_000, args.limit_mbps * 1e6
    origin_bound = (n - 1) * size / lim
    swarm_bound = max(size / lim, (n - 1) * size / (n * lim))
    big = make_file(f"{root}/bcast.bin", size)
    extra = (f"bandwidth: {{global: {args.limit_mbps:g}MB/s}}\n"
             "placement:\n  game: {min_copies: 2, max_copies: 3}\n")
    naive = None
    if not args.skip_naive:
        # One origin to one receiver under the same limit: what the origin alone does per copy.
        pair = cluster("pair", 2, "127.81.0", extra)
        t0 = time.time()
        cid = pair[0].put(big, "bcast.bin", "--type", "game", "--broadcast")
        put_s = time.time() - t0
        one = wait(lambda: pair[1].holds(cid), 600, "the one-receiver transfer", 0.1) + put_s
        for x in pair: x.stop()
        naive = one * (n - 1)
        log(f"one receiver: {one:.1f}s from put (put itself {put_s:.1f}s) = {size / 1e6 / (one - put_s):.1f} MB/s "
            f"after the put; naive push to {n - 1} receivers = {naive:.0f}s")
    nodes = cluster("b", n, "127.80.0", extra)
    log(f"{n} nodes alive, {args.limit_mbps:g} MB/s upload limit each; putting {args.bcast_mb} MB with --broadcast on b0")
    busy0 = cpu_busy()
    t0 = time.time()
    cid = nodes[0].put(big, "bcast.bin", "--type", "game", "--broadcast")
    t_put = time.time() - t0
    done, timeline = {}, []
    cpu_start = sum(proc_cpu_seconds(x.p.pid) for x in nodes)
    def sample():
        st = [x.ask("status") or {} for x in nodes]
        timeline.append((time.time() - t0, [s.get("blobs", {}).get("bytes_served", 0) for s in st],
                         sum(proc_cpu_seconds(x.p.pid) for x in nodes), cpu_busy()))
    def all_done():
        for x in nodes[1:]:
            if x.name not in done and x.holds(cid):
                done[x.name] = time.time() - t0
        if not timeline or time.time() - t0 - timeline[-1][0] >= 1.0:
            sample()
        return len(done) == n - 1
    wait(all_done, 900, "every node to hold the broadcast item", 0.1)
    sample()
    busy = cpu_busy() - busy0
    mesh_cpu = timeline[-1][2] - cpu_start
    # Per-second profile: MB/s the origin and the receivers served, the CPU the nodes used
    # (percent of one core) and the whole machine's busy CPU (percent of one core).
    log("  t(s)  origin MB/s  receivers MB/s  nodes' CPU %  machine CPU %")
    for (ta, sa, ca, ba), (tb, sb, cb, bb) in zip(timeline, timeline[1:]):
        dt = tb - ta
        log(f"  {tb:5.1f}  {(sb[0] - sa[0]) / dt / 1e6:11.1f}  {(sum(sb[1:]) - sum(sa[1:])) / dt / 1e6:14.1f}  "
            f"{(cb - ca) / dt * 100:12.0f}  {(bb - ba) / dt * 100:13.0f}")
    last = max(done.values())
    blobs = {x.name: (x.ask("status") or {}).get("blobs", {}) for x in nodes}
    served = {k: b.get("bytes_served", 0) for k, b in blobs.items()}
    tot = lambda key: sum(b.get(key, 0) for b in blobs.values())
    for x in nodes: x.stop()
    results["broadcast"] = {
        "nodes": n, "size_mb": args.bcast_mb, "limit_mbps": args.limit_mbps, "put_s": round(t_put, 2),
        "last_complete_s": round(last, 2), "first_complete_s": round(min(done.values()), 2),
        "per_node_s": {k: round(v, 2) for k, v in sorted(done.items())},
        "origin_alone_bound_s": round(origin_bound, 1), "swarm_bound_s": round(swarm_bound, 1),
        "naive_push_measured_s": round(naive, 1) if naive else None,
        "vs_origin_alone": round(origin_bound / last, 2), "vs_swarm_bound": round(last / swarm_bound, 2),
        "served_mb": {k: round(v / 1e6) for k, v in served.items()}, "machine_cpu_busy_s": round(busy, 1),
        "nodes_cpu_s": round(mesh_cpu, 1), "duplicate_chunks": tot("duplicate_chunks"),
        "requests_timed_out": tot("requests_timed_out"), "requests_failed": tot("requests_failed"),
        "chunks_fetched": tot("chunks_fetched"), "chunks_served": tot("chunks_served"),
        "target_s": 15, "met": last <= 15}
    log(f"broadcast {args.bcast_mb} MB to {n} nodes: put {t_put:.1f}s, first complete {min(done.values()):.1f}s, "
        f"last complete {last:.1f}s from the put's start (target <= 15 s: {'met' if last <= 15 else 'MISSED'})")
    log(f"  origin-alone bound {origin_bound:.0f}s -> {origin_bound / last:.2f}x faster; swarm bound {swarm_bound:.1f}s -> "
        f"{last / swarm_bound:.2f}x the bound" + (f"; naive push (measured) {naive:.0f}s -> {naive / last:.2f}x" if naive else ""))
    log(f"  chunks fetched {tot('chunks_fetched')}, served {tot('chunks_served')}, duplicates {tot('duplicate_chunks')}, "
        f"requests timed out {tot('requests_timed_out')}, failed {tot('requests_failed')}")
    log(f"  MB served per node: {results['broadcast']['served_mb']}; machine CPU busy {busy:.0f}s of {os.cpu_count() * last:.0f}s available, the nodes' share {mesh_cpu:.0f}s")

# ---- 2. restore min_copies after kill -9 ---------------------------------------------------
def restore():
    n = args.restore_nodes
    extra = "roles: [storage]\nplacement:\n  game: {roles: [storage], min_copies: 2, max_copies: 2}\n"
    nodes = cluster("r", n, "127.82.0", extra)
    f = make_file(f"{root}/restore.bin", args.restore_mb * 1_000_000)
    cid = nodes[0].put(f, "restore.bin", "--type", "game")
    byid = {x.id: x for x in nodes}
    # Placement met and settled: exactly two holders (the origin drops its copy if it is not a target).
    def two():
        h = nodes[0].holders().get(cid, [])
        return len(h) == 2 and all(byid[i].holds(cid) for i in h)
    wait(two, 120, "two holders", 0.5)
    time.sleep(3)
    h0 = set(nodes[0].holders().get(cid, []))
    if len(h0) != 2:
        raise SystemExit(f"expected 2 holders, got {len(h0)}")
    victim = max((byid[i] for i in h0), key=lambda x: x.name)
    survivors = [x for x in nodes if x is not victim]
    log(f"restore: holders {sorted(byid[i].name for i in h0)}; kill -9 {victim.name}")
    victim.kill9()
    tk = time.time()
    dead, got = {}, {}
    def restored():
        now = time.time() - tk
        for x in survivors:
            if x.name not in dead and x.state_of(victim) == "dead":
                dead[x.name] = now
            if x.id not in h0 and x.name not in got and x.holds(cid):
                got[x.name] = now
        return bool(got) and len(dead) == len(survivors)
    wait(restored, 300, "a third holder and the victim dead everywhere", 0.05)
    who = min(got, key=got.get)
    t_restore = got[who]
    beyond = t_restore - dead[who]
    for x in nodes: x.stop()
    results["restore"] = {
        "nodes": n, "size_mb": args.restore_mb, "kill_to_third_holder_s": round(t_restore, 2),
        "new_holder": who, "kill_to_dead_at_new_holder_s": round(dead[who], 2),
        "kill_to_dead_first_s": round(min(dead.values()), 2), "kill_to_dead_everywhere_s": round(max(dead.values()), 2),
        "beyond_detection_s": round(beyond, 2), "target_s": 10, "met": beyond <= 10}
    log(f"restore: kill -9 -> {who} marks dead {dead[who]:.1f}s (first {min(dead.values()):.1f}s, all {max(dead.values()):.1f}s) "
        f"-> {who} holds it complete {t_restore:.1f}s: {beyond:.2f}s beyond detection "
        f"(target <= 10 s: {'met' if beyond <= 10 else 'MISSED'})")

# ---- 3. idle gossip with 10 000 items -------------------------------------------------------
def gossip_rate(nodes, window):
    s0 = [x.ask("status") for x in nodes]
    t0 = time.time()
    time.sleep(window)
    s1 = [x.ask("status") for x in nodes]
    dt = time.time() - t0
    per = [(b["bytes_sent"] - a["bytes_sent"]) / dt for a, b in zip(s0, s1)]
    msgs = [(b["messages_sent"] - a["messages_sent"]) / dt for a, b in zip(s0, s1)]
    return sum(per) / len(per), max(per), sum(msgs) / len(msgs)

def idle():
    n = args.idle_nodes
    extra = f"placement:\n  game: {{min_copies: {args.idle_copies}, max_copies: {args.idle_copies}}}\n"
    nodes = cluster("g", n, "127.83.0", extra)
    log(f"idle: {n} nodes alive; measuring {args.window:.0f}s with no items")
    time.sleep(5)
    base = gossip_rate(nodes, args.window)
    log(f"idle, no items: {base[0]:.0f} B/s per node (max {base[1]:.0f}), {base[2]:.1f} msgs/s per node")
    for x in nodes: x.stop()
    d = f"{root}/items"
    cfg = f"{root}/g.yaml"
    base_cfg = open(cfg).read()
    t0 = time.time()
    if args.bulk == "put":
        # The puts go into the stopped nodes' stores (a running node would also be fetching and
        # writing holder records meanwhile, which on 2 shared cores made each put take seconds).
        os.makedirs(d)
        files = [make_file(f"{d}/item-{i:05d}.game", args.item_bytes) for i in range(args.items)]
        with ThreadPoolExecutor(args.put_workers) as ex:
            list(ex.map(lambda i: nodes[i % n].put(files[i], f"item-{i:05d}.game", "--type", "game"), range(args.items)))
        cfgs = [cfg] * n
        how = f"puts into the stopped nodes ({args.put_workers} at a time)"
    else:
        # Bulk: each node gets a send folder holding its share of the items; the running node
        # puts every file of its first scan in-process (one `meshnode put` process per item
        # ran at under 10 a second on this machine).
        cfgs = []
        for k in range(n):
            fd = f"{d}/g{k}"; os.makedirs(fd)
            for i in range(k, args.items, n):
                make_file(f"{fd}/item-{i:05d}.game", args.item_bytes)
            cfgs.append(f"{root}/g{k}.yaml")
            with open(cfgs[-1], "w") as f:
                f.write(base_cfg + f"folders:\n  - {{path: {fd}, mode: send, type: game, prefix: g{k}/}}\n")
        how = "files in one send folder per node, put by the nodes as they start"
    t_put = time.time() - t0
    log(f"idle: {args.items} items of {args.item_bytes} B as {how} ({t_put:.0f}s); (re)starting the {n} nodes")
    t1 = time.time()
    for i, x in enumerate(nodes):
        x.start(cfgs[i], None if i == 0 else nodes[0].addr)
    prev = [None]
    def converged():
        st = [x.ask("status") or {} for x in nodes]
        entries = [s.get("entries") for s in st]
        busy = sum(len(s.get("transfers", [])) for s in st)
        pending = sum((s.get("placement") or {}).get("release_pending", 0) for s in st)
        h = nodes[n // 2].holders()
        # Items not listed yet, or held by fewer nodes than min_copies (by the replicated records).
        off = max(0, args.items - len(h)) + sum(1 for c in h.values() if len(c) < args.idle_copies)
        state = (min(entries, key=lambda e: e or 0), max(entries, key=lambda e: e or 0), busy, pending, off)
        stable = state == prev[0]
        prev[0] = state
        converged.last = state
        if time.time() - converged.t > 30:
            converged.t = time.time()
            log(f"idle: entries min {state[0]} max {state[1]}, transfers {busy}, release pending {pending}, "
                f"items not listed or under {args.idle_copies} holder(s) {off}")
        return stable and state[0] == state[1] and busy == 0 and pending == 0 and off == 0
    converged.t = time.time()
    try:
        wait(converged, args.converge_timeout, f"{args.items} items placed and their records replicated", 10)
    finally:
        log(f"idle: last state (entries min, max, transfers, release pending, items off): {getattr(converged, 'last', None)}")
    t_conv = time.time() - t1
    log(f"idle: converged {t_conv:.0f}s after the restart; settling 20 s")
    time.sleep(20)
    st = nodes[0].ask("status")
    with_items = gossip_rate(nodes, args.window)
    kinds = st.get("entries_by_kind")
    log(f"idle, {args.items} items ({st['entries']} entries: {kinds}): {with_items[0]:.0f} B/s per node "
        f"(max {with_items[1]:.0f}), {with_items[2]:.1f} msgs/s per node (target <= 1000 B/s: "
        f"{'met' if with_items[1] <= 1000 else 'MISSED'}); {with_items[0] / base[0]:.2f}x the empty cluster")
    results["idle"] = {
        "nodes": n, "items": args.items, "copies": args.idle_copies, "entries": st["entries"], "entries_by_kind": kinds,
        "puts_s": round(t_put, 1), "converge_after_restart_s": round(t_conv, 1), "window_s": args.window,
        "empty_bytes_per_node_per_s_mean": round(base[0], 1), "empty_bytes_per_node_per_s_max": round(base[1], 1),
        "bytes_per_node_per_s_mean": round(with_items[0], 1), "bytes_per_node_per_s_max": round(with_items[1], 1),
        "msgs_per_node_per_s": round(with_items[2], 2), "vs_empty": round(with_items[0] / base[0], 2),
        "target_bytes_per_s": 1000, "met": with_items[1] <= 1000}
    for x in nodes: x.stop()

def main():
    log(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; root {root}")
    only = args.only.split(",")
    for part in only:
        {"broadcast": broadcast, "restore": restore, "idle": idle}[part]()
        log(f"load average {os.getloadavg()[0]:.1f}")
    print(json.dumps(results, indent=2))

try:
    main()
finally:
    for p in procs:
        if p.poll() is None:
            p.kill(); p.wait()
    if args.keep:
        print(f"kept {root}", file=sys.stderr)
    else:
        shutil.rmtree(root, ignore_errors=True)
