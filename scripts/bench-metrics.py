#!/usr/bin/env python3
"""What scraping /metrics costs a transfer (issue 13). Not a test: it prints what it measured.

Target: under a scrape every 100 ms for 60 s, transfer throughput within 5 % of no scraping.

One sender holds an item (1 GiB by default). A run is a window of 60 s of back-to-back
transfers: a new receiver (a node of its own, with an empty store, on an address of its own)
joins the sender and fetches the item, stops, and the next one starts, until the window is over
(the last transfer finishes). Runs alternate between "quiet" (nobody scrapes) and "scraped"
(GET /metrics on the sender and on the current receiver every 100 ms for the whole window), in
the order quiet, scraped / scraped, quiet / ..., so that the machine's drift hits both alike.
A transfer's time is the receiver's own "item complete" log line (`seconds`, from wanting the
item to holding it); a run's throughput is its bytes over the sum of its transfers' times.
A warm-up transfer comes first and is not counted. At the end the sender, alone and idle, is
measured unscraped and scraped (--idle-seconds each, twice): its CPU time per scrape, which
other load on a shared machine moves far less than it moves throughput.

Usage: scripts/bench-metrics.py [--bin .build/release/meshnode] [--mib 1024] [--pairs 3] [--window 60] [--interval-ms 100]
                                [--idle-seconds 30]
Everything runs on 127.0.0.0/8; every process started is stopped by PID at the end.
"""
import argparse, json, os, shutil, signal, socket, statistics, subprocess, sys, tempfile, threading, time

ap = argparse.ArgumentParser()
ap.add_argument("--bin", default=".build/release/meshnode")
ap.add_argument("--mib", type=int, default=1024, help="item size in MiB")
ap.add_argument("--pairs", type=int, default=3, help="quiet/scraped pairs of runs")
ap.add_argument("--window", type=float, default=60, help="seconds of back-to-back transfers per run (scraped throughout)")
ap.add_argument("--max-transfers", type=int, default=40, help="transfers per run at most")
ap.add_argument("--idle-seconds", type=float, default=30,
                help="then the sender alone, idle, this long unscraped and this long scraped: its CPU per scrape (0: skip)")
ap.add_argument("--interval-ms", type=int, default=100, help="scrape period in the scraped runs")
args = ap.parse_args()
BIN = os.path.abspath(args.bin)
ENV = {k: v for k, v in os.environ.items() if not k.startswith("MESHNODE_")}
ENV["MESHNODE_NO_PROGRESS"] = "1"
root = tempfile.mkdtemp(prefix="meshnode-bench-metrics-")
procs = []
IP_A = "127.77.0.1"


def receiver_ip(i):
    return f"127.77.{1 + i // 250}.{1 + i % 250}"


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
            for t in list(self.targets):
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
            f.write(i.to_bytes(4, "little") + block[4:])
    a_dir, a_id = init("sender")
    n_receivers = 2 * args.pairs * args.max_transfers + 1  # the first: a warm-up transfer, not counted
    receivers = [init(f"receiver{i}") for i in range(n_receivers)]
    cfg = f"{root}/mesh.yaml"
    with open(cfg, "w") as f:
        ids = ", ".join([a_id] + [r[1] for r in receivers])
        f.write(f"trusted_keys: [{ids}]\nlog_level: info\nprobe_interval: 300ms\nanti_entropy_interval: 1s\n")
    sh([BIN, "put", item, "--name", "item.bin", "--data", a_dir])
    os.remove(item)
    sender = start(a_dir, cfg, IP_A)
    wait(lambda: subprocess.run([BIN, "peers", "--data", a_dir], capture_output=True, env=ENV).returncode == 0, 20, "the sender")
    runs = {"quiet": [], "scraped": []}  # (MB/s, transfers, CPU seconds per transfer)
    scrape_stats = []
    load = [os.getloadavg()[0]]
    try:
        b_dir = receivers[0][0]
        next_receiver = 1
        warm = start(b_dir, cfg, receiver_ip(0), join=f"{IP_A}:7946")
        wait(lambda: completed_seconds(f"{b_dir}.log") is not None or warm.poll() is not None, 600, "the warm-up transfer")
        print(f"warm-up transfer (not counted): {completed_seconds(f'{b_dir}.log')} s", flush=True)
        stop(warm)
        shutil.rmtree(b_dir, ignore_errors=True)
        for pair in range(args.pairs):
            for mode in (["quiet", "scraped"] if pair % 2 == 0 else ["scraped", "quiet"]):
                scraper = Scraper([f"{IP_A}:9946"], args.interval_ms / 1000) if mode == "scraped" else None
                if scraper:
                    scraper.start()
                t0, secs, cpu, n = time.time(), [], [], 0
                while time.time() - t0 < args.window and n < args.max_transfers:
                    b_dir = receivers[next_receiver][0]
                    ip = receiver_ip(next_receiver)
                    next_receiver += 1
                    if scraper:
                        scraper.targets[1:] = [f"{ip}:9946"]
                    sender_cpu0 = cpu_seconds(sender.pid)
                    receiver = start(b_dir, cfg, ip, join=f"{IP_A}:7946")
                    wait(lambda: completed_seconds(f"{b_dir}.log") is not None or receiver.poll() is not None, 600,
                         f"the transfer ({mode})")
                    if receiver.poll() is not None:
                        raise SystemExit(f"a receiver exited: see {b_dir}.log")
                    secs.append(completed_seconds(f"{b_dir}.log"))
                    cpu.append(cpu_seconds(sender.pid) - sender_cpu0 + cpu_seconds(receiver.pid))
                    stop(receiver)
                    shutil.rmtree(b_dir, ignore_errors=True)
                    n += 1
                wall = time.time() - t0
                if scraper:
                    scraper.done.set()
                    scraper.join()
                    scrape_stats.append((scraper.scrapes, scraper.failed, scraper.bytes / max(1, scraper.scrapes), wall))
                load.append(os.getloadavg()[0])
                mbps = n * args.mib * (1 << 20) / 1e6 / sum(secs)
                runs[mode].append((mbps, n, statistics.median(cpu)))
                print(f"pair {pair + 1} {mode:8s} {n:3d} transfers in {wall:5.1f} s: {mbps:7.1f} MB/s "
                      f"(each {min(secs):.2f}-{max(secs):.2f} s), nodes' CPU per transfer {statistics.median(cpu):5.2f} s", flush=True)
        # What one scrape costs the node, measured where nothing else moves: the idle sender's CPU
        # time over a quiet stretch and over a scraped one (less sensitive to other load than
        # throughput is).
        idle = {}
        if args.idle_seconds > 0:
            for mode in ("quiet", "scraped", "quiet", "scraped"):
                scraper = Scraper([f"{IP_A}:9946"], args.interval_ms / 1000) if mode == "scraped" else None
                c0, t0 = cpu_seconds(sender.pid), time.time()
                if scraper:
                    scraper.start()
                time.sleep(args.idle_seconds)
                if scraper:
                    scraper.done.set()
                    scraper.join()
                idle.setdefault(mode, []).append((cpu_seconds(sender.pid) - c0, time.time() - t0, scraper.scrapes if scraper else 0))
    finally:
        stop(sender)
        for p in procs:
            stop(p)
    q = [r[0] for r in runs["quiet"]]
    s = [r[0] for r in runs["scraped"]]
    ratios = [b / a for a, b in zip(q, s)]
    print(f"\n{args.mib} MiB per transfer, {args.pairs} pairs of {args.window:.0f} s runs, scrape every {args.interval_ms} ms "
          f"on the sender and the receiver in the scraped runs")
    print(f"quiet   median {statistics.median(q):7.1f} MB/s  (min {min(q):.1f}, max {max(q):.1f}; "
          f"{sum(r[1] for r in runs['quiet'])} transfers)")
    print(f"scraped median {statistics.median(s):7.1f} MB/s  (min {min(s):.1f}, max {max(s):.1f}; "
          f"{sum(r[1] for r in runs['scraped'])} transfers)")
    print(f"scraped/quiet: median of pair ratios {statistics.median(ratios):.3f} (each: {', '.join(f'{r:.3f}' for r in ratios)}); "
          f"target >= 0.95")
    print(f"spread of the quiet runs (machine noise): {(max(q) - min(q)) / statistics.median(q) * 100:.1f} % of their median")
    print(f"nodes' CPU per transfer (sender during it + receiver from its start): median quiet "
          f"{statistics.median(r[2] for r in runs['quiet']):.2f} s, scraped {statistics.median(r[2] for r in runs['scraped']):.2f} s")
    print(f"load average (1 min) at the start and after each run: {', '.join(f'{x:.1f}' for x in load)}")
    if scrape_stats:
        n = sum(x[0] for x in scrape_stats)
        print(f"scrapes: {n} answered, {sum(x[1] for x in scrape_stats)} failed (a receiver not yet listening), "
              f"{statistics.mean(x[2] for x in scrape_stats):.0f} bytes each, "
              f"{n / sum(x[3] for x in scrape_stats):.1f} per second over the scraped runs")
    if idle:
        qc = sum(x[0] for x in idle["quiet"]) / sum(x[1] for x in idle["quiet"])
        sc = sum(x[0] for x in idle["scraped"]) / sum(x[1] for x in idle["scraped"])
        n = sum(x[2] for x in idle["scraped"])
        per = (sum(x[0] for x in idle["scraped"]) - qc * sum(x[1] for x in idle["scraped"])) / max(1, n)
        print(f"idle sender, {len(idle['quiet'])} x {args.idle_seconds:.0f} s each way: CPU {qc * 100:.2f} % of a core quiet, "
              f"{sc * 100:.2f} % scraped ({n} scrapes): {per * 1000:.2f} ms of CPU per scrape")
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
