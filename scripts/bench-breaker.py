#!/usr/bin/env python3
"""Per-peer circuit breakers against a bad source (issue 13). Not a test: it prints what it measured.

Target: a peer that serves corrupt chunks or times out has its breaker opened after the
threshold (5 failures), and is sent no request until the recovery time (60 s) has passed; then
it is half open, with at most `half_open_requests` (3) trial requests in flight.

Three nodes on loopback: G (a good source), B (a bad source) and R (the receiver). Every item is
put on both G and B before they start (same bytes, so the same content id), so both hold it
whatever B's state; R (role training; `placement: {other: {roles: [storage]}}`) fetches only
what the script `get`s, so the script decides when R wants something from G and B.

Variants (`--variant`, default `corrupt,timeout`):
- `corrupt`: B runs with MESHNODE_TEST_CORRUPT_SERVING=1: every chunk it serves has a byte
  flipped. R gets one-chunk items (2 MiB: a chunk request is then one request), `--spacing`
  seconds apart. B's `meshnode_chunks_sent_total` counts every request it answered.
- `timeout`: B accepts requests and never answers them: once R has a session with it, each of
  B's chunk files is replaced by a FIFO, so every chunk read B starts blocks for good while its
  event loop (gossip, keepalives, `have` answers) goes on, the way a hung disk behaves. G's
  upload is limited (`--g-limit`, 10MB/s) and the first batch is 4 items of 64 MiB, so the
  transfers last longer than R's request timeout (10 s, not configurable) and R's requests to
  B time out instead of being cancelled by G's copies.
- `stop`: B is stopped with SIGSTOP (SIGCONT at the end): nothing of it answers, not even its
  keepalives. Shows what happens then (the session ends after 8 s of silence, PROTOCOL §8.1,
  before any request times out; with the default probe interval gossip declares B dead).

Measured, from R's `/metrics` (polled every 50 ms: `meshnode_circuit_opens_total`,
`meshnode_p2p_request_errors_total{reason}`), R's `peers --json` (B's `breaker` row) and B's
`/metrics`:
1. R's failed requests to B when the breaker opened, and the time from the first get to it;
   with --spacing the failure count can be watched rising one at a time to the threshold;
2. requests sent to B while open: corrupt: chunks B served from 1 s after the open (what was
   in flight has been answered by then) to the recovery time; timeout: R's timed-out requests
   from 11 s after the open (everything sent before the open has timed out by then) to 9.5 s
   after recovery (a request sent while open times out in that window). R gets one more
   item every 3 s while it is open, so it keeps wanting things B holds;
3. after the recovery time: B's row reads `half_open`; R gets more items; the trial requests
   (corrupt: chunks B served; timeout: R's timeouts from 9.5 s after recovery) until the
   breaker opens again.

Usage: scripts/bench-breaker.py [--bin .build/release/meshnode] [--variant corrupt,timeout,stop]
                                [--threshold 5] [--recovery 60] [--half-open 3] [--spacing 0.5]
Everything runs on 127.0.0.0/8; every process started is stopped by PID at the end (a stopped
one gets SIGCONT first); every wait is bounded.
"""
import argparse, glob, json, os, re, shutil, signal, socket, subprocess, tempfile, time

ap = argparse.ArgumentParser()
ap.add_argument("--bin", default=".build/release/meshnode")
ap.add_argument("--variant", default="corrupt,timeout", help="comma-separated: corrupt, timeout, stop")
ap.add_argument("--threshold", type=int, default=5, help="R's breaker.failure_threshold")
ap.add_argument("--recovery", type=int, default=60,
                help="R's breaker.recovery_timeout, seconds; at least 20 for `timeout`: with 15 the first batch was "
                     "still coming from G at recovery, G's copies beat the trials to B and no trial timed out")
ap.add_argument("--half-open", type=int, default=3, help="R's breaker.half_open_requests")
ap.add_argument("--items", type=int, default=16, help="one-chunk items R gets at first (corrupt, stop)")
ap.add_argument("--spacing", type=float, default=0,
                help="seconds between R's first gets (0: all at once); with 0.5 the corrupt chunks come one at a "
                     "time and B's failure count can be watched rising to the threshold")
ap.add_argument("--g-limit", default="10MB/s", help="G's upload limit in the timeout variant")
ap.add_argument("--probe-interval", default="800ms", help="gossip probe_interval of all three nodes (the default)")
args = ap.parse_args()
BIN = os.path.abspath(args.bin)
ENV = {k: v for k, v in os.environ.items() if not k.startswith("MESHNODE_")}
ENV["MESHNODE_NO_PROGRESS"] = "1"
REQUEST_TIMEOUT = 10.0  # BlobService.Config.requestTimeout; no config key
CHUNK = 2 << 20  # Chunking.defaultChunkSizeBytes
IPS = {"g": "127.79.0.1", "b": "127.79.0.2", "r": "127.79.0.3"}
procs = []  # every process started, stopped by PID at the end


def sh(argv, timeout=120):
    r = subprocess.run(argv, capture_output=True, text=True, env=ENV, timeout=timeout)
    if r.returncode != 0:
        raise SystemExit(f"failed: {' '.join(argv)}\n{r.stderr}")
    return r.stdout


def wait(cond, timeout, what):
    t0 = time.time()
    while time.time() - t0 < timeout:
        v = cond()
        if v:
            return v
        time.sleep(0.1)
    raise SystemExit(f"timed out after {timeout}s waiting for {what}")


def metrics(node):
    """A node's /metrics as {series: value}; {} if it does not answer within 1 s."""
    try:
        with socket.create_connection((IPS[node], 9946), timeout=1) as c:
            c.settimeout(1)
            c.sendall(f"GET /metrics HTTP/1.1\r\nHost: {IPS[node]}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := c.recv(65536):
                data += chunk
    except OSError:
        return {}
    out = {}
    for line in data.decode(errors="replace").split("\r\n\r\n", 1)[-1].splitlines():
        if line and not line.startswith("#"):
            k, _, v = line.rpartition(" ")
            try:
                out[k] = float(v)
            except ValueError:
                pass
    return out


def errors(m):
    """R's failed chunk requests by reason (every one of them is to B: G never fails)."""
    return {re.search(r'reason="([^"]+)"', k).group(1): int(v) for k, v in m.items()
            if k.startswith("meshnode_p2p_request_errors_total{") and v}


def opens(m):
    return int(m.get("meshnode_circuit_opens_total", 0))


class Run:
    def __init__(self, variant):
        self.variant = variant
        self.root = tempfile.mkdtemp(prefix=f"meshnode-bench-breaker-{variant}-")
        self.dirs, self.ids, self.procs, self.gets = {}, {}, {}, []
        self.t0 = time.time()
        self.stopped = False

    def log(self, msg):
        print(f"[{self.variant} {time.time() - self.t0:6.1f} s] {msg}", flush=True)

    def start(self, n, extra_env=None, join=None):
        argv = [BIN, "run", "--data", self.dirs[n], "--config", f"{self.root}/{n}.yaml", "--listen", f"{IPS[n]}:17901",
                "--metrics-listen", f"{IPS[n]}:9946"] + (["--join", f"{IPS[join]}:17901"] if join else [])
        p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=open(f"{self.root}/{n}.log", "w"),
                             env=dict(ENV, **(extra_env or {})))
        procs.append(p)
        self.procs[n] = p
        wait(lambda: metrics(n), 30, f"{n} to answer /metrics")

    def put_both(self, k, size):
        """An item of `size` bytes held by G and B alike; its content id."""
        f = f"{self.root}/item{k}.bin"
        with open(f, "wb") as out:
            for off in range(0, size, 1 << 20):
                out.write(k.to_bytes(8, "little") + off.to_bytes(8, "little") + os.urandom(min(1 << 20, size - off) - 16))
        cid = sh([BIN, "put", f, "--name", f"g-item{k}", "--data", self.dirs["g"]]).strip().splitlines()[-1]
        cid_b = sh([BIN, "put", f, "--name", f"b-item{k}", "--data", self.dirs["b"]]).strip().splitlines()[-1]
        assert cid == cid_b, (cid, cid_b)
        os.remove(f)
        return cid

    def get(self, cid):
        self.gets.append(subprocess.Popen([BIN, "get", cid, "-o", f"{self.root}/out-{len(self.gets)}", "--data", self.dirs["r"]],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV))

    def row(self):
        """B's breaker as R's `peers --json` shows it."""
        r = subprocess.run([BIN, "peers", "--json", "--data", self.dirs["r"]], capture_output=True, text=True, env=ENV, timeout=10)
        if r.returncode != 0:
            return None
        for p in json.loads(r.stdout):
            if p.get("name") == "b":
                return dict(p.get("breaker") or {"state": "closed", "consecutive_failures": 0, "opens": 0}, member=p.get("state"))
        return None

    def b_served(self):
        return None if self.stopped else metrics("b").get("meshnode_chunks_sent_total")

    def stop_all(self):
        for p in self.gets:
            if p.poll() is None:
                p.kill()
                p.wait()
        b = self.procs.get("b")
        if b and self.stopped and b.poll() is None:
            os.kill(b.pid, signal.SIGCONT)
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()  # B with its readers blocked on FIFOs does not finish a graceful stop
                p.wait()


def sockets_to_b():
    """TCP sockets of B's listen address that are not closing (ss), and the bytes queued to B."""
    r = subprocess.run(["ss", "-tnH", "state", "established", "src", IPS["b"]], capture_output=True, text=True, timeout=10)
    lines = [l.split() for l in r.stdout.splitlines() if l.strip()]
    return len(lines), sum(int(l[0]) for l in lines if l and l[0].isdigit())


def one(variant):
    run = Run(variant)
    try:
        for n in "gbr":
            run.dirs[n] = f"{run.root}/{n}"
            run.ids[n] = sh([BIN, "init", "--data", run.dirs[n], "--name", n]).strip().splitlines()[-1]
        common = (f"trusted_keys: [{', '.join(run.ids.values())}]\nlog_level: info\nprobe_interval: {args.probe_interval}\n"
                  "anti_entropy_interval: 1s\nplacement: {other: {roles: [storage]}}\n")
        g_extra = f"bandwidth: {{global: {args.g_limit}}}\n" if variant == "timeout" else ""
        open(f"{run.root}/g.yaml", "w").write(common + "roles: [storage]\n" + g_extra)
        open(f"{run.root}/b.yaml", "w").write(common + "roles: [storage]\n")
        open(f"{run.root}/r.yaml", "w").write(
            common + "roles: [training]\n"
            f"breaker: {{failure_threshold: {args.threshold}, recovery_timeout: {args.recovery}s, half_open_requests: {args.half_open}}}\n")
        # Items: a warm-up one (R's sessions with G and B), the first batch (trips the breaker),
        # one every 3 s while open, and 6 for after the recovery time (2 large ones with `timeout`).
        n_open = max(1, (args.recovery - 3) // 3)
        warm = run.put_both(0, CHUNK)
        if variant == "timeout":
            batch = [run.put_both(1 + k, 64 << 20) for k in range(4)]
        else:
            batch = [run.put_both(1 + k, CHUNK) for k in range(args.items)]
        later = [run.put_both(100 + k, CHUNK) for k in range(n_open + 6)]
        # Trial items for the timeout variant: large, so that G's copies (at its limit) do not
        # make R cancel its trial requests to B before they time out.
        trial_items = [run.put_both(200 + k, 64 << 20) for k in range(2)] if variant == "timeout" else []
        run.start("g")
        run.start("b", {"MESHNODE_TEST_CORRUPT_SERVING": "1"} if variant == "corrupt" else None, join="g")
        run.start("r", join="g")
        wait(lambda: (lambda r: r and r["member"] == "alive")(run.row()), 30, "R to see B alive")
        if variant != "corrupt":
            # A transfer session is made when first needed: B must have one with R before it
            # hangs or stops (a corrupt B would count a failure here already).
            run.get(warm)
            run.gets[-1].wait(timeout=30)
            wait(lambda: metrics("r").get("meshnode_sessions", 0) >= 2, 30, "R to have sessions with G and B")
        if variant == "timeout":
            fifos = 0
            for f in glob.glob(f"{run.dirs['b']}/chunks/*/*"):
                os.remove(f)
                os.mkfifo(f)
                fifos += 1
            run.log(f"B's {fifos} chunk files replaced by FIFOs: its chunk reads block from now on")
        if variant == "stop":
            os.kill(run.procs["b"].pid, signal.SIGSTOP)
            run.stopped = True
            run.log(f"B (pid {run.procs['b'].pid}) stopped with SIGSTOP")
        b0, m0 = run.b_served(), metrics("r")
        t_get = time.time()
        pending, next_get = list(batch), t_get
        run.log(f"R gets {len(batch)} items of {'64 MiB' if variant == 'timeout' else '2 MiB (one chunk)'}, {args.spacing} s apart; errors before: {errors(m0)}")
        samples, rising, opened = [], [], None
        bound = 60 + (REQUEST_TIMEOUT if variant != "corrupt" else 0)
        while time.time() - t_get < bound:
            while pending and time.time() >= next_get:
                run.get(pending.pop(0))
                next_get += args.spacing
            m = metrics("r")
            s = (time.time() - t_get, errors(m), opens(m))
            samples.append(s)
            if s[2] >= 1:
                opened = s
                break
            if args.spacing:
                r = run.row()
                if r and r["state"] == "closed" and (not rising or rising[-1][1] != r["consecutive_failures"]):
                    rising.append((round(time.time() - t_get, 2), r["consecutive_failures"]))
            time.sleep(0.05)
        if not opened:
            st = json.loads(sh([BIN, "status", "--json", "--data", run.dirs["r"]]))
            blobs = st.get("node", st).get("blobs", {})
            lines = [l for l in open(f"{run.root}/r.log").read().splitlines() if "name=b" in l and "member" in l]
            conns = sockets_to_b()
            run.log(f"breaker NOT open {bound:.0f} s after the gets: R's failed requests {samples[-1][1]}, timed out "
                    f"{blobs.get('requests_timed_out')}, items completed {blobs.get('items_completed')}; B's row {run.row()}; "
                    f"R's sessions {metrics('r').get('meshnode_sessions')}; established sockets at B and bytes queued to it "
                    f"{conns}; R's log on B: {[l.split(' info ')[0] + ' ' + l.split('[Mesh] ')[-1] for l in lines]}")
            return dict(variant=variant, opened_after_s=None, errors=samples[-1][1], row=run.row(), sockets=conns)
        t_open = t_get + opened[0]
        before = samples[-2] if len(samples) >= 2 else (0.0, {}, 0)
        run.log(f"breaker OPEN {opened[0]:.2f} s after the first get; R's failed requests to B at that sample: "
                f"{sum(opened[1].values())} {opened[1]}; at the sample before ({before[0]:.2f} s): {sum(before[1].values())}; "
                f"row {run.row()}")
        if rising:
            run.log(f"B's consecutive failures seen while closed (s after the first get, count): {rising}")
        # Counting starts once what was in flight at the open has been answered or timed out.
        settle = 1.0 if variant == "corrupt" else REQUEST_TIMEOUT + 1.0
        time.sleep(max(0, t_open + settle - time.time()))
        e_settled, b_settled = errors(metrics("r")), run.b_served()
        run.log(f"{settle:.0f} s after the open: R's failed requests to B {sum(e_settled.values())} {e_settled}; "
                f"B served {b_settled}; row {run.row()}")
        t_recover = t_open + args.recovery
        later[:0] = pending
        states, n_open_gets = set(), 0
        while time.time() < t_recover - 3 and later:
            run.get(later.pop(0))
            n_open_gets += 1
            r = run.row()
            if r:
                states.add(r["state"])
            time.sleep(max(0, min(3.0, t_recover - 3 - time.time())))
        time.sleep(max(0, t_recover - 0.3 - time.time()))
        e_end, b_end, row_end = errors(metrics("r")), run.b_served(), run.row()
        run.log(f"0.3 s before recovery: R got {n_open_gets} more items while open; R's failed requests "
                f"{sum(e_end.values())} {e_end}; B served {b_end}; states seen {sorted(states)}; row {row_end}")
        time.sleep(max(0, t_recover + 0.3 - time.time()))
        row_rec = run.row()
        run.log(f"0.3 s after recovery: row {row_rec}")
        half_open_seen = bool(row_rec and row_rec["state"] == "half_open")
        base_e, base_b = e_end, b_end
        if variant == "timeout":
            # Requests sent while open time out by 10 s after recovery; trials sent after it, not before.
            for cid in trial_items:
                run.get(cid)
            time.sleep(max(0, t_recover + REQUEST_TIMEOUT - 0.5 - time.time()))
            base_e = errors(metrics("r"))
            sent_open = base_e.get("timeout", 0) - e_settled.get("timeout", 0)
            run.log(f"9.5 s after recovery: R's timeouts {e_settled.get('timeout', 0)} -> {base_e.get('timeout', 0)}: "
                    f"{sent_open} requests sent from the open until recovery")
        else:
            sent_open = b_end - b_settled
        reopen = None
        deadline = time.time() + 30 + (REQUEST_TIMEOUT if variant == "timeout" else 0)
        while time.time() < deadline and reopen is None:
            if later and variant != "timeout":
                run.get(later.pop(0))
            t_next = time.time() + 2
            while time.time() < t_next:
                if opens(metrics("r")) >= 2:
                    reopen = time.time()
                    break
                r = run.row()
                if r and r["state"] == "half_open":
                    half_open_seen = True
                time.sleep(0.1)
        time.sleep(1.0)  # the other trials' answers
        e_tr, b_tr, row_tr = errors(metrics("r")), run.b_served(), run.row()
        if variant == "corrupt":
            trials = b_tr - base_b
        else:
            trials = e_tr.get("timeout", 0) - base_e.get("timeout", 0)
        run.log(f"after recovery: half_open seen {half_open_seen}; trial requests {trials} "
                f"({'chunks B served' if variant == 'corrupt' else 'R timeouts from 9.5 s after recovery'}); reopened "
                f"{'%.2f s after recovery' % (reopen - t_recover) if reopen else 'NO'}; row {row_tr}")
        return dict(variant=variant, rising=rising, opened_after_s=opened[0], failures_at_open=sum(opened[1].values()),
                    failures_sample_before=sum(before[1].values()), errors_settled=e_settled, sent_while_open=sent_open,
                    gets_while_open=n_open_gets, half_open_seen=half_open_seen, trials=trials,
                    reopened_after_recovery_s=(reopen - t_recover) if reopen else None)
    finally:
        run.stop_all()
        shutil.rmtree(run.root, ignore_errors=True)


def main():
    variants = [v.strip() for v in args.variant.split(",") if v.strip()]
    results = [one(v) for v in variants]
    print(f"\nR's breaker: threshold {args.threshold}, recovery {args.recovery} s, half-open requests {args.half_open}; "
          f"probe_interval {args.probe_interval}; first gets {args.spacing} s apart")
    for r in results:
        if r["opened_after_s"] is None:
            print(f"{r['variant']:8s} breaker never opened; R's failed requests {r['errors']}; B's row at R {r['row']}")
            continue
        print(f"{r['variant']:8s} open {r['opened_after_s']:.2f} s after the first get, R's failures then {r['failures_at_open']} "
              f"(sample before {r['failures_sample_before']}); requests sent while open {r['sent_while_open']}; "
              f"half open {r['half_open_seen']}; trials {r['trials']}; reopened "
              f"{'%.2f s after recovery' % r['reopened_after_recovery_s'] if r['reopened_after_recovery_s'] is not None else 'no'}")


if __name__ == "__main__":
    try:
        main()
    finally:
        for p in procs:
            if p.poll() is None:
                try:
                    os.kill(p.pid, signal.SIGCONT)
                except OSError:
                    pass
                p.kill()
                p.wait()
