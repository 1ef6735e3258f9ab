#!/usr/bin/env python3
"""What scraping /metrics costs a transfer (issue 13). Not a test: it prints what it measured.

One sender holds a 200 MB item; for each run a new receiver (a node of its own, with an empty
store) joins it and fetches the item.
Runs alternate between "quiet" (nobody scrapes) and "scraped" (GET /metrics on both nodes every
100 ms for the whole transfer), so that the machine's drift hits both alike. The transfer time is
the receiver's own "item complete" log line (`seconds`, from wanting the item to holding it).

Usage: scripts/bench-metrics.py [--bin .build/release/meshnode] [--mib 200] [--pairs 5] [--interval-ms 100]
Everything runs on 127.0.0.0/8; every process started is stopped by PID at the end.
"""
import argparse, json, os, shutil, signal, socket, statistics, subprocess, sys, tempfile, threading, time

ap = argparse.ArgumentParser()
ap.add_argument("--bin", default=".build/release/meshnode")
ap.add_argument("--mib", type=int, default=200, help="item size in MiB (the issue says 200 MB)")
ap.add_argument("--pairs", type=int, default=5, help="quiet/scraped pairs")
ap.add_argument("--interval-ms", type=int, default=100, help="scrape period in the scraped runs")
args = ap.parse_args()
BIN = os.path.abspath(args.bin)
ENV = {k: v for k, v in os.environ.items() if not k.startswith("MESHNODE_")}
ENV["MESHNODE_NO_PROGRESS"] = "1"
root = tempfile.mkdtemp(prefix="meshnode-bench-metrics-")
procs = []
IP_A, IP_B = "127.77.0.1", "127.77.0.2"


def sh(argv):
    r = subprocess.run(argv, capture_output=True, text=True, env=ENV, timeout=600)
    if r.returncode != 0:
        raise SystemExit(f"failed: {' '.join(argv)}\n{r.stderr}")
    return r.stdout


def init(name):
    d = f"{root}/{name}"
    shutil.rmtree(d, ignore_errors=True)
    return d, sh([BIN, "init", "--data", d, "--name", name]).strip().splitlines()[-1]


def start(data, cfg, ip, join=None):
    argv = [BIN, "run", "--data", data, "--config", cfg, "--listen", f"{ip}:7946",
            "--metrics-listen", f"{ip}:9946", "--log-format", "json"]
    if join:
        argv += ["--join", join]
    log = open(f"{data}.log", "w")
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log, env=ENV)
    procs.append(p)
    return p


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def wait(cond, timeout, what):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if cond():
            return
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


def completed_seconds(logpath):
    try:
        for line in open(logpath):
            o = json.loads(line)
            if o.get("msg") == "item complete":
                return float(o["seconds"])
    except (OSError, ValueError):
        pass
    return None


class Scraper(threading.Thread):
    """GET /metrics on every target every `interval` seconds until stopped."""

    def __init__(self, targets, interval):
        super().__init__(daemon=True)
        self.targets, self.interval, self.done, self.scrapes, self.bytes, self.failed = targets, interval, threading.Event(), 0, 0, 0

    def scrape(self, target):
        host, port = target.split(":")
        with socket.create_connection((host, int(port)), timeout=2) as c:
            c.sendall(f"GET /metrics HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := c.recv(65536):
                data += chunk
        if not data.startswith(b"HTTP/1.1 200"):
            raise OSError("not 200")
        return len(data)

    def run(self):
        while not self.done.is_set():
            t0 = time.time()
            for t in self.targets:
                try:
                    self.bytes += self.scrape(t)
                    self.scrapes += 1
                except OSError:
                    self.failed += 1  # the receiver before it listens
            self.done.wait(max(0, self.interval - (time.time() - t0)))


def cpu_seconds(pid):
    """User + system CPU time of a running process (Linux /proc)."""
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def main():
    item = f"{root}/item.bin"
    with open(item, "wb") as f:
        block = os.urandom(1 << 20)
        for i in range(args.mib):
            f.write(bytes([i & 0xFF]) + block[1:])
    a_dir, a_id = init("sender")
    receivers = [init(f"receiver{i}") for i in range(2 * args.pairs)]
    cfg = f"{root}/mesh.yaml"
    with open(cfg, "w") as f:
        ids = ", ".join([a_id] + [r[1] for r in receivers])
        f.write(f"trusted_keys: [{ids}]\nlog_level: info\nprobe_interval: 300ms\nanti_entropy_interval: 1s\n")
    sh([BIN, "put", item, "--name", "item.bin", "--data", a_dir])
    sender = start(a_dir, cfg, IP_A)
    wait(lambda: subprocess.run([BIN, "peers", "--data", a_dir], capture_output=True, env=ENV).returncode == 0, 20, "the sender")
    results = {"quiet": [], "scraped": []}
    cpu = {"quiet": [], "scraped": []}
    scrape_stats = []
    try:
        for pair in range(args.pairs):
            for k, mode in enumerate(["quiet", "scraped"] if pair % 2 == 0 else ["scraped", "quiet"]):
                b_dir = receivers[2 * pair + k][0]
                scraper = Scraper([f"{IP_A}:9946", f"{IP_B}:9946"], args.interval_ms / 1000) if mode == "scraped" else None
                if scraper:
                    scraper.start()
                sender_cpu0 = cpu_seconds(sender.pid)
                receiver = start(b_dir, cfg, IP_B, join=f"{IP_A}:7946")
                wait(lambda: completed_seconds(f"{b_dir}.log") is not None, 600, f"the transfer ({mode})")
                secs = completed_seconds(f"{b_dir}.log")
                node_cpu = cpu_seconds(sender.pid) - sender_cpu0 + cpu_seconds(receiver.pid)
                if scraper:
                    scraper.done.set()
                    scraper.join()
                    scrape_stats.append((scraper.scrapes, scraper.failed, scraper.bytes / max(1, scraper.scrapes)))
                stop(receiver)
                mbps = args.mib * (1 << 20) / 1e6 / secs
                results[mode].append(mbps)
                cpu[mode].append(node_cpu)
                print(f"pair {pair + 1} {mode:8s} {secs:7.2f} s  {mbps:7.1f} MB/s  nodes' CPU {node_cpu:5.2f} s", flush=True)
    finally:
        stop(sender)
        for p in procs:
            stop(p)
    q, s = statistics.median(results["quiet"]), statistics.median(results["scraped"])
    ratios = [b / a for a, b in zip(results["quiet"], results["scraped"])]
    print(f"\n{args.mib} MiB, {args.pairs} pairs, scrape every {args.interval_ms} ms on both nodes")
    print(f"median quiet   {q:7.1f} MB/s  (min {min(results['quiet']):.1f}, max {max(results['quiet']):.1f})")
    print(f"median scraped {s:7.1f} MB/s  (min {min(results['scraped']):.1f}, max {max(results['scraped']):.1f})")
    print(f"scraped/quiet: median of pair ratios {statistics.median(ratios):.3f} (each: {', '.join(f'{r:.3f}' for r in ratios)})")
    print(f"nodes' CPU per run (sender during the run + receiver from its start): median quiet {statistics.median(cpu['quiet']):.2f} s, "
          f"scraped {statistics.median(cpu['scraped']):.2f} s")
    if scrape_stats:
        n = sum(x[0] for x in scrape_stats)
        print(f"scrapes: {n} answered, {sum(x[1] for x in scrape_stats)} failed, {statistics.mean(x[2] for x in scrape_stats):.0f} bytes each")
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
