#!/usr/bin/env python3
"""Blob transfer benchmarks (issue 5). Not a test: it prints ratios measured in one run.

  1. a 1 GiB item over loopback, direct, against scp and rsync -e ssh of the same file
     through the same loopback sshd;
  2. meshnode through an SSH tunnel (ssh -W via that sshd) against scp;
  3. 3 sources, each limited to 20 MB/s, against 1 source with the same limit;
  4. success rate and time through a proxy that resets every connection after 4-8 s (and
     carries at most --proxy-rate MB/s per connection) for 10 MB, 100 MB and 1 GiB, against
     scp and rsync --partial in a retry loop.

Usage: scripts/bench-transfer.py [--bin .build/release/meshnode] [--big-mib 1024] [--skip-proxy]
                                [--only direct,ssh,multi,limit,proxy] [--repeat N]
Everything runs on 127.0.0.0/8; every process started is killed by PID at the end.
"""
import argparse, json, os, shutil, signal, subprocess, sys, tempfile, time

ap = argparse.ArgumentParser()
ap.add_argument("--bin", default=".build/release/meshnode")
ap.add_argument("--big-mib", type=int, default=1024)
ap.add_argument("--multi-mib", type=int, default=300)
ap.add_argument("--proxy-rate", type=float, default=20.0, help="MB/s per proxied connection")
ap.add_argument("--retry-cap-s", type=float, default=300.0, help="give a retry loop at most this long")
ap.add_argument("--skip-proxy", action="store_true")
ap.add_argument("--only", default="direct,ssh,multi,limit,proxy",
                help="comma-separated subset of direct,ssh,multi,limit,proxy")
ap.add_argument("--repeat", type=int, default=1,
                help="run the direct and ssh comparisons this many times (scp and meshnode alternate); ratios are medians")
args = ap.parse_args()
BIN = os.path.abspath(args.bin)
HERE = os.path.dirname(os.path.abspath(__file__))
ENV = {k: v for k, v in os.environ.items() if not k.startswith("MESHNODE_")}
ENV["MESHNODE_NO_PROGRESS"] = "1"
procs = []
root = tempfile.mkdtemp(prefix="meshnode-bench-xfer-")
results = {}

def sh(cmd, check=True, timeout=600):
    r = subprocess.run(cmd, shell=isinstance(cmd, str), capture_output=True, text=True, env=ENV, timeout=timeout)
    if check and r.returncode != 0:
        raise SystemExit(f"failed: {cmd}\n{r.stderr}")
    return r

def spawn(argv, log):
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=open(log, "w"), env=ENV)
    procs.append(p)
    return p

def free_port():
    import socket
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def wait(cond, timeout, what):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if cond():
            return time.time() - t0
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")

# ---- sshd on loopback -------------------------------------------------------------------
def start_sshd():
    d = f"{root}/sshd"; os.makedirs(d)
    sh(f"ssh-keygen -q -t ed25519 -N '' -f {d}/host")
    sh(f"ssh-keygen -q -t ed25519 -N '' -f {d}/client")
    shutil.copy(f"{d}/client.pub", f"{d}/authorized_keys")
    port = free_port()
    with open(f"{d}/sshd_config", "w") as f:
        f.write(f"""Port {port}
ListenAddress 127.0.0.1
HostKey {d}/host
AuthorizedKeysFile {d}/authorized_keys
PidFile {d}/sshd.pid
StrictModes no
UsePAM no
PermitRootLogin prohibit-password
PasswordAuthentication no
AllowTcpForwarding yes
Subsystem sftp internal-sftp
""")
    os.makedirs("/run/sshd", exist_ok=True)
    spawn(["/usr/sbin/sshd", "-f", f"{d}/sshd_config", "-D", "-e"], f"{d}/log")
    time.sleep(0.5)
    user = os.environ.get("USER") or "root"
    return port, f"{d}/client", user

SSHD_PORT, KEY, USER = start_sshd()
SSH_OPTS = ["-i", KEY, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR"]

def scp(src, dst, port=SSHD_PORT):
    return subprocess.run(["scp", "-q", "-P", str(port), *SSH_OPTS, src, f"{USER}@127.0.0.1:{dst}"], env=ENV, capture_output=True).returncode == 0

def rsync(src, dst, port=SSHD_PORT, partial=False):
    e = " ".join(["ssh", "-p", str(port), *SSH_OPTS])
    argv = ["rsync", "-q", "-e", e] + (["--partial", "--inplace"] if partial else []) + [src, f"{USER}@127.0.0.1:{dst}"]
    return subprocess.run(argv, env=ENV, capture_output=True).returncode == 0

def timed(f):
    t0 = time.time(); ok = f(); return ok, time.time() - t0

# ---- meshnode clusters -------------------------------------------------------------------
class Node:
    n = 0
    def __init__(self, name):
        Node.n += 1
        self.name, self.dir = name, f"{root}/{name}-{Node.n}"
        self.ip = f"127.88.{Node.n}.1"
        self.addr = f"{self.ip}:7946"
        self.id = sh([BIN, "init", "--data", self.dir, "--name", name]).stdout.strip().splitlines()[-1]
        self.p = None
        self.ctl = None
    def start(self, cfg, join=None):
        argv = [BIN, "run", "--data", self.dir, "--config", cfg, "--listen", self.addr] + (["--join", join] if join else [])
        self.p = spawn(argv, self.dir + ".log")
        wait(lambda: sh([BIN, "peers", "--data", self.dir], check=False).returncode == 0, 20, f"{self.name} up")
    def put(self, path, name):
        return sh([BIN, "put", path, "--data", self.dir, "--name", name]).stdout.strip().splitlines()[-1]
    def complete(self, cid):
        r = sh([BIN, "ls", "--data", self.dir, "--json"], check=False)
        return r.returncode == 0 and any(x["id"] == cid and x["complete"] for x in json.loads(r.stdout))
    def holds(self, cid):
        """Whether the running node holds the item complete, asked over its control socket (one
        connection kept open, so polling does not spawn a process every 50 ms and steal CPU
        from the transfer being timed)."""
        import socket
        if getattr(self, "ctl", None) is None:
            self.ctl = socket.socket(socket.AF_UNIX); self.ctl.connect(f"{self.dir}/control.sock")
            self.ctl_in = self.ctl.makefile("r")
        self.ctl.sendall(b'{"verb": "holders"}\n')
        r = json.loads(self.ctl_in.readline())
        return self.id in r.get("result", {}).get(cid, [])
    def stop(self):
        if self.ctl:
            self.ctl.close(); self.ctl = None
        if self.p and self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try: self.p.wait(15)
            except Exception: self.p.kill()

def config(path, nodes, extra=""):
    with open(path, "w") as f:
        f.write("trusted_keys:\n" + "".join(f"  - {n.id}\n" for n in nodes) + "log_level: warning\n" + extra)
    return path

def ssh_host(node):
    return (f"  {node.id}:\n    address: {node.addr}\n    ssh: {{host: 127.0.0.1, port: {SSHD_PORT}, user: {USER}, key: {KEY}, "
            f"options: [\"-o\", \"StrictHostKeyChecking=no\", \"-o\", \"UserKnownHostsFile=/dev/null\", \"-o\", \"LogLevel=ERROR\"]}}\n")

def proxied_host(node, port):
    return f"  {node.id}:\n    address: 127.0.0.1:{port}\n"

def mesh_transfer(path, src_extra="", dst_extra="", timeout=900):
    """Time from the end of `put` on a source until a second node holds the item complete."""
    a, b = Node("src"), Node("dst")
    cfg_a = config(f"{a.dir}.yaml", [a, b], src_extra(a, b) if callable(src_extra) else src_extra)
    cfg_b = config(f"{b.dir}.yaml", [a, b], dst_extra(a, b) if callable(dst_extra) else dst_extra)
    a.start(cfg_a); b.start(cfg_b, a.addr)
    wait(lambda: len(json.loads(sh([BIN, "peers", "--data", b.dir, "--json"]).stdout)) == 2, 30, "the pair to meet")
    cid = a.put(path, os.path.basename(path))
    # BENCH_PERF=FILE records a system-wide profile of the transfer alone (not the put).
    perf = subprocess.Popen(["perf", "record", "-a", "-g", "-F", "999", "-o", os.environ["BENCH_PERF"]],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) if os.environ.get("BENCH_PERF") else None
    try:
        secs = wait(lambda: b.holds(cid), timeout, "the transfer")
        ok = b.complete(cid)
    except SystemExit:
        secs, ok = timeout, False
    if perf:
        perf.send_signal(signal.SIGINT); perf.wait()
    global last_peak_rss_mib
    last_peak_rss_mib = max(peak_rss_mib(a.p.pid), peak_rss_mib(b.p.pid))
    a.stop(); b.stop()
    return ok, secs

last_peak_rss_mib = 0.0

def peak_rss_mib(pid):
    """VmHWM of a running process, MiB (0 if it is gone)."""
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0

def make_file(path, mib):
    sh(f"head -c {mib << 20} /dev/urandom > {path}")
    return path

def main():
    big = make_file(f"{root}/big.bin", args.big_mib)
    size_mb = args.big_mib * 1.048576
    only = set(args.only.split(","))
    if args.skip_proxy:
        only.discard("proxy")
    def cpu_busy():
        """Jiffies the whole machine spent busy (all CPUs), from /proc/stat."""
        f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
        return sum(f) - f[3] - f[4], os.sysconf("SC_CLK_TCK")
    def with_cpu(fn):
        b0, hz = cpu_busy(); out = fn(); b1, _ = cpu_busy()
        return out, (b1 - b0) / hz
    def median(xs):
        xs = sorted(xs); n = len(xs)
        return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2
    ssh_hosts = dict(dst_extra=lambda a, b: "hosts:\n" + ssh_host(a), src_extra=lambda a, b: "hosts:\n" + ssh_host(b))
    runs = {"scp": [], "rsync": [], "direct": [], "ssh": []}
    for i in range(args.repeat):
        (ok_s, t_scp), c_scp = with_cpu(lambda: timed(lambda: scp(big, f"{root}/scp.out"))); os.remove(f"{root}/scp.out")
        runs["scp"].append(t_scp)
        line = f"run {i + 1}: scp {t_scp:.2f}s (cpu {c_scp:.1f}s)"
        if "direct" in only:
            ok_r, t_rsync = timed(lambda: rsync(big, f"{root}/rsync.out")); os.remove(f"{root}/rsync.out")
            (ok_m, t_mesh), c_mesh = with_cpu(lambda: mesh_transfer(big))
            runs["rsync"].append(t_rsync); runs["direct"].append(t_mesh)
            line += (f", rsync {t_rsync:.2f}s, meshnode direct {t_mesh:.2f}s (cpu {c_mesh:.1f}s, peak RSS {last_peak_rss_mib:.0f} MiB)"
                     f" -> {t_scp / t_mesh:.2f}x scp")
        if "ssh" in only:
            (ok_m2, t_ssh), c_ssh = with_cpu(lambda: mesh_transfer(big, **ssh_hosts))
            runs["ssh"].append(t_ssh)
            line += (f", meshnode ssh -W {t_ssh:.2f}s (cpu {c_ssh:.1f}s, peak RSS {last_peak_rss_mib:.0f} MiB)"
                     f" -> {t_scp / t_ssh:.2f}x scp")
        print(line, flush=True)
    t_scp = median(runs["scp"])
    if "direct" in only:
        ratios = [s / m for s, m in zip(runs["scp"], runs["direct"])]
        t_rsync, t_mesh = median(runs["rsync"]), median(runs["direct"])
        results["direct"] = {"scp_s": [round(x, 2) for x in runs["scp"]], "rsync_s": [round(x, 2) for x in runs["rsync"]],
                             "meshnode_s": [round(x, 2) for x in runs["direct"]],
                             "vs_scp_median": round(median(ratios), 2), "vs_rsync_median": round(t_rsync / t_mesh, 2)}
        print(f"{args.big_mib} MiB direct: median scp {t_scp:.2f}s ({size_mb / t_scp:.0f} MB/s), rsync {t_rsync:.2f}s, "
              f"meshnode {t_mesh:.2f}s ({size_mb / t_mesh:.0f} MB/s) -> {median(ratios):.2f}x scp (median of {len(ratios)}), "
              f"{t_rsync / t_mesh:.2f}x rsync", flush=True)
    if "ssh" in only:
        ratios = [s / m for s, m in zip(runs["scp"], runs["ssh"])]
        results["ssh_tunnel"] = {"scp_s": [round(x, 2) for x in runs["scp"]], "meshnode_s": [round(x, 2) for x in runs["ssh"]],
                                 "vs_scp_median": round(median(ratios), 2)}
        print(f"{args.big_mib} MiB through ssh -W: median meshnode {median(runs['ssh']):.2f}s -> {median(ratios):.2f}x scp "
              f"(median of {len(ratios)}; min {min(ratios):.2f}x, max {max(ratios):.2f}x)", flush=True)
    # 3. multi-source
    if "multi" in only: multi_source()
    if "limit" in only: limit_50()
    if "proxy" in only: reset_proxy()
    print(json.dumps(results, indent=2))

def multi_source():
    multi = make_file(f"{root}/multi.bin", args.multi_mib)
    limit = "bandwidth: {global: 20MB/s}\n"
    def sources_run(k):
        srcs = [Node(f"s{i}") for i in range(k)]
        dst = Node("d")
        allnodes = srcs + [dst]
        for s in srcs:
            config(f"{s.dir}.yaml", allnodes, limit)
        config(f"{dst.dir}.yaml", allnodes)
        cid = None
        for s in srcs:
            cid = s.put(multi, "multi.bin")
        for i, s in enumerate(srcs):
            s.start(f"{s.dir}.yaml", None if i == 0 else srcs[0].addr)
        t0 = time.time()
        dst.start(f"{dst.dir}.yaml", srcs[0].addr)
        secs = wait(lambda: dst.holds(cid), 900, f"{k}-source transfer")
        secs = time.time() - t0
        for n in allnodes: n.stop()
        return secs
    t1 = sources_run(1); t3 = sources_run(3)
    results["multi_source"] = {"one_source_s": round(t1, 2), "three_sources_s": round(t3, 2), "speedup": round(t1 / t3, 2)}
    print(f"{args.multi_mib} MiB at 20 MB/s per source: 1 source {t1:.1f}s, 3 sources {t3:.1f}s -> {t1 / t3:.2f}x", flush=True)

def limit_50():
    # 5. a 50 MB/s upload limit, held over ~20 s
    lim_file = make_file(f"{root}/limit.bin", 1000)
    t0 = time.time()
    ok_l, t_l = mesh_transfer(lim_file, src_extra="bandwidth: {global: 50MB/s}\n")
    rate = 1000 * 1.048576 / t_l
    results["limit_50MBps"] = {"seconds": round(t_l, 2), "rate_MBps": round(rate, 1), "within_10pct": abs(rate - 50) <= 5, "ok": ok_l}
    print(f"1000 MiB with a 50 MB/s limit at the source: {t_l:.1f}s = {rate:.1f} MB/s (target 45-55)", flush=True)

def reset_proxy():
    # 4. reset proxy
    if True:
        results["reset_proxy"] = {}
        for label, mib in [("10MB", 10), ("100MB", 100), ("1GiB", 1024)]:
            f = make_file(f"{root}/p{mib}.bin", mib)
            pport = free_port()
            proxy = spawn([sys.executable, f"{HERE}/reset-proxy.py", str(pport), str(SSHD_PORT), "--rate-mbps", str(args.proxy_rate)], f"{root}/proxy.log")
            time.sleep(0.3)
            def loop(fn):
                t0, attempts = time.time(), 0
                while time.time() - t0 < args.retry_cap_s:
                    attempts += 1
                    if fn():
                        return True, attempts, time.time() - t0
                return False, attempts, time.time() - t0
            scp_ok, scp_n, scp_t = loop(lambda: scp(f, f"{root}/p.scp", port=pport))
            rs_ok, rs_n, rs_t = loop(lambda: rsync(f, f"{root}/p.rsync", port=pport, partial=True))
            proxy.kill(); proxy.wait()
            for x in ["p.scp", "p.rsync"]:
                if os.path.exists(f"{root}/{x}"): os.remove(f"{root}/{x}")
            # meshnode: every TCP connection between the two nodes goes through a reset proxy each way.
            pa, pb = free_port(), free_port()
            m_ok, m_t = mesh_transfer_proxied(f, pa, pb)
            results["reset_proxy"][label] = {
                "scp": {"ok": scp_ok, "attempts": scp_n, "s": round(scp_t, 1)},
                "rsync_partial": {"ok": rs_ok, "attempts": rs_n, "s": round(rs_t, 1)},
                "meshnode": {"ok": m_ok, "s": round(m_t, 1)}}
            print(f"reset proxy {label}: scp {'ok' if scp_ok else 'FAILED'} after {scp_n} attempts in {scp_t:.1f}s; "
                  f"rsync --partial {'ok' if rs_ok else 'FAILED'} after {rs_n} attempts in {rs_t:.1f}s; "
                  f"meshnode {'ok' if m_ok else 'FAILED'} in {m_t:.1f}s (one try)", flush=True)

def mesh_transfer_proxied(path, pa, pb):
    """Like mesh_transfer, with each node reaching the other only through a reset proxy."""
    a, b = Node("src"), Node("dst")
    a.addr, b.addr = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    spawn([sys.executable, f"{HERE}/reset-proxy.py", str(pa), a.addr.split(":")[1], "--rate-mbps", str(args.proxy_rate)], f"{root}/pa.log")
    spawn([sys.executable, f"{HERE}/reset-proxy.py", str(pb), b.addr.split(":")[1], "--rate-mbps", str(args.proxy_rate)], f"{root}/pb.log")
    time.sleep(0.3)
    cfg_a = config(f"{a.dir}.yaml", [a, b], "hosts:\n" + proxied_host(b, pb))
    cfg_b = config(f"{b.dir}.yaml", [a, b], "hosts:\n" + proxied_host(a, pa))
    a.start(cfg_a); b.start(cfg_b, a.addr)
    wait(lambda: len(json.loads(sh([BIN, "peers", "--data", b.dir, "--json"]).stdout)) == 2, 30, "the pair to meet")
    cid = a.put(path, os.path.basename(path))
    try:
        secs, ok = wait(lambda: b.holds(cid), args.retry_cap_s * 3, "the proxied transfer"), True
    except SystemExit:
        secs, ok = args.retry_cap_s * 3, False
    a.stop(); b.stop()
    return ok, secs

try:
    main()
finally:
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
    shutil.rmtree(root, ignore_errors=True)
