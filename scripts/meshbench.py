"""What the benchmark scripts share: running `meshnode` processes on loopback addresses, asking
them over their control sockets, and waiting for conditions. Not a test framework: each script
prints its own numbers.

    import meshbench
    b = meshbench.Bench(".build/release/meshnode", "meshnode-bench-x-")
    n = meshbench.Node(b, "a0", "127.90.0.1"); n.start(cfg)
    ...
    b.cleanup(keep=False)   # kills every process started, by PID, and removes the directory
"""
import json, os, shutil, signal, socket, sqlite3, subprocess, tempfile, time


class Bench:
    """One run: the binary, a clean environment, a temporary root and every process started."""
    def __init__(self, binary, prefix):
        self.bin = os.path.abspath(binary)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MESHNODE_")}
        self.env["MESHNODE_NO_PROGRESS"] = "1"
        self.procs = []
        self.root = tempfile.mkdtemp(prefix=prefix)
        self.t0 = time.time()

    def log(self, msg):
        print(f"[{time.time() - self.t0:7.1f}s] {msg}", flush=True)

    def sh(self, argv, check=True, timeout=600):
        r = subprocess.run(argv, capture_output=True, text=True, env=self.env, timeout=timeout)
        if check and r.returncode != 0:
            raise SystemExit(f"failed: {' '.join(argv)}\n{r.stderr}")
        return r

    def cleanup(self, keep=False):
        for p in self.procs:
            if p.poll() is None:
                p.kill(); p.wait()
        if keep: print(f"kept {self.root}")
        else: shutil.rmtree(self.root, ignore_errors=True)


def wait(cond, timeout, what, step=0.05):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if cond():
            return time.time() - t0
        time.sleep(step)
    raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")


def make_file(path, nbytes):
    with open(path, "wb") as f:
        left = nbytes
        while left:
            n = min(left, 1 << 24)
            f.write(os.urandom(n)); left -= n
    return path


class Node:
    """One `meshnode run` on its own loopback address; asked over one kept control connection
    (no process per poll, so polling does not steal CPU from what is timed)."""
    def __init__(self, bench, name, ip):
        self.b = bench
        self.name, self.dir, self.addr = name, f"{bench.root}/{name}", f"{ip}:7946"
        self.id = bench.sh([bench.bin, "init", "--data", self.dir, "--name", name]).stdout.strip().splitlines()[-1]
        self.p = self.ctl = None

    def start(self, cfg, join=None):
        argv = [self.b.bin, "run", "--data", self.dir, "--config", cfg, "--listen", self.addr] + (["--join", join] if join else [])
        self.p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=open(self.dir + ".log", "a"), env=self.b.env)
        self.b.procs.append(self.p)
        wait(lambda: os.path.exists(f"{self.dir}/control.sock") and self.ask("peers") is not None, 30, f"{self.name} up", 0.1)

    def ask(self, verb):
        try:
            if self.ctl is None:
                self.ctl = socket.socket(socket.AF_UNIX); self.ctl.connect(f"{self.dir}/control.sock")
                self.ctl_in = self.ctl.makefile("r")
            self.ctl.sendall(json.dumps({"verb": verb}).encode() + b"\n")
            return json.loads(self.ctl_in.readline()).get("result")
        except (OSError, ValueError):
            if self.ctl: self.ctl.close()
            self.ctl = None
            return None

    def holders(self):
        return self.ask("holders") or {}

    def holds(self, cid):
        """Whether the replicated holder records say this node holds `cid` (written up to 0.5 s
        after the store has it, batched)."""
        return self.id in self.holders().get(cid, [])

    def holds_in_store(self, cid):
        """Whether this node's store holds `cid` complete, read from its database as `meshnode ls` does."""
        try:
            db = sqlite3.connect(f"file:{self.dir}/manifest.sqlite?mode=ro", uri=True, timeout=5)
            try:
                c = bytes.fromhex(cid)
                if db.execute("SELECT 1 FROM recipes WHERE content_id = ?", (c,)).fetchone() is None: return False
                return db.execute("SELECT count(*) FROM recipe_chunks rc WHERE rc.content_id = ? AND NOT EXISTS "
                                  "(SELECT 1 FROM chunks ch WHERE ch.hash = rc.hash)", (c,)).fetchone()[0] == 0
            finally:
                db.close()
        except sqlite3.Error:
            return False

    def state_of(self, other):
        for p in self.ask("peers") or []:
            if p["id"] == other.id:
                return p["state"]
        return None

    def put(self, path, name, *extra):
        return self.b.sh([self.b.bin, "put", path, "--data", self.dir, "--name", name, *extra]).stdout.strip().splitlines()[-1]

    def close_ctl(self):
        if self.ctl: self.ctl.close(); self.ctl = None

    def kill9(self):
        self.p.kill(); self.p.wait(); self.close_ctl()

    def stop(self, timeout=15):
        """SIGTERM, then the exit status (SIGKILL after `timeout`)."""
        self.close_ctl()
        if self.p and self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try: return self.p.wait(timeout)
            except subprocess.TimeoutExpired: self.p.kill(); self.p.wait()
        return self.p.returncode if self.p else None
