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
    def start(self, cfg, join=None):
        argv = [BIN, "run", "--data", self.dir, "--config", cfg, "--listen", self.addr] + (["--join", join] if join else [])
        self.p = spawn(argv, self.dir + ".log")
        wait(lambda: sh([BIN, "peers", "--data", self.dir], check=False).returncode == 0, 20, f"{self.name} up")
    def put(self, path, name):
        return sh([BIN, "put", path, "--data", self.dir, "--name", name]).stdout.strip().splitlines()[-1]
    def complete(self, cid):
        r = sh([BIN, "ls", "--data", self.dir, "--json"], check=False)
        return r.returncode == 0 and any(x["id"] == cid and x["complete"] for x in json.loads(r.stdout))
    def stop(self):
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
    try:
        secs = wait(lambda: b.complete(cid), timeout, "the transfer")
        ok = True
    except SystemExit:
        secs, ok = timeout, False
    a.stop(); b.stop()
    return ok, secs

def make_file(path, mib):
    sh(f"head -c {mib << 20} /dev/urandom > {path}")
    return path

def main():
    big = make_file(f"{root}/big.bin", args.big_mib)
    size_mb = args.big_mib * 1.048576
    # 1. direct
    ok_s, t_scp = timed(lambda: scp(big, f"{root}/scp.out")); os.remove(f"{root}/scp.out")
    ok_r, t_rsync = timed(lambda: rsync(big, f"{root}/rsync.out")); os.remove(f"{root}/rsync.out")
    ok_m, t_mesh = mesh_transfer(big)
    results["direct"] = {"scp_s": round(t_scp, 2), "rsync_s": round(t_rsync, 2), "meshnode_s": round(t_mesh, 2),
                         "vs_scp": round(t_scp / t_mesh, 2), "vs_rsync": round(t_rsync / t_mesh, 2), "ok": ok_s and ok_r and ok_m}
    print(f"1 GiB direct: scp {t_scp:.2f}s ({size_mb / t_scp:.0f} MB/s), rsync {t_rsync:.2f}s, meshnode {t_mesh:.2f}s "
          f"({size_mb / t_mesh:.0f} MB/s) -> {t_scp / t_mesh:.2f}x scp, {t_rsync / t_mesh:.2f}x rsync", flush=True)
    # 2. through ssh
    ok_m2, t_mesh_ssh = mesh_transfer(big, dst_extra=lambda a, b: "hosts:\n" + ssh_host(a), src_extra=lambda a, b: "hosts:\n" + ssh_host(b))
    results["ssh_tunnel"] = {"meshnode_s": round(t_mesh_ssh, 2), "vs_scp": round(t_scp / t_mesh_ssh, 2), "ok": ok_m2}
    print(f"1 GiB through ssh -W: meshnode {t_mesh_ssh:.2f}s -> {t_scp / t_mesh_ssh:.2f}x scp", flush=True)
    # 3. multi-source
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
        secs = wait(lambda: dst.complete(cid), 900, f"{k}-source transfer")
        secs = time.time() - t0
        for n in allnodes: n.stop()
        return secs
    t1 = sources_run(1); t3 = sources_run(3)
    results["multi_source"] = {"one_source_s": round(t1, 2), "three_sources_s": round(t3, 2), "speedup": round(t1 / t3, 2)}
    print(f"{args.multi_mib} MiB at 20 MB/s per source: 1 source {t1:.1f}s, 3 sources {t3:.1f}s -> {t1 / t3:.2f}x", flush=True)
    # 5. a 50 MB/s upload limit, held over ~20 s
    lim_file = make_file(f"{root}/limit.bin", 1000)
    t0 = time.time()
    ok_l, t_l = mesh_transfer(lim_file, src_extra="bandwidth: {global: 50MB/s}\n")
    rate = 1000 * 1.048576 / t_l
    results["limit_50MBps"] = {"seconds": round(t_l, 2), "rate_MBps": round(rate, 1), "within_10pct": abs(rate - 50) <= 5, "ok": ok_l}
    print(f"1000 MiB with a 50 MB/s limit at the source: {t_l:.1f}s = {rate:.1f} MB/s (target 45-55)", flush=True)
    # 4. reset proxy
    if not args.skip_proxy:
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
    print(json.dumps(results, indent=2))

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
        secs, ok = wait(lambda: b.complete(cid), args.retry_cap_s * 3, "the proxied transfer"), True
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
