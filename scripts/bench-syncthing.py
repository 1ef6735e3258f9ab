#!/usr/bin/env python3
"""Watched folders and live SQLite: meshnode against Syncthing, in one run (issue 10).

Starts two loopback Syncthing instances (Debian's package; own homes via --home, GUI/REST on
127.0.0.1 at random ports with an API key written into config.xml, global and local discovery,
relays, NAT, usage reporting, crash reporting and upgrades off, each device given the other's ID
and a static tcp://127.0.0.1:PORT address, one folder sendonly on A and receiveonly on B) and
two `meshnode run` nodes (a send folder on A, a receive folder on B, default settings unless
said), and measures on the same files, one tool at a time so they do not share the two cores:

  1. small:  a 1 MiB file from written (closed) in A's folder to complete in B's folder:
             Syncthing at its default fsWatcherDelayS (10) and at 1, meshnode at its defaults;
  2. big:    the same for a 1 GiB file (Syncthing at delay 1, its best);
  3. change: 10 MiB overwritten in the middle of that 1 GiB file: time to deliver, bytes read
             by the sending process (/proc/PID/io rchar: read(2) bytes, page cache or not;
             read_bytes: from the disk), bytes it sent (Syncthing: /rest/system/connections
             outBytesTotal; meshnode: meshnode_chunk_bytes_sent_total on /metrics);
  4. sqlite: scripts/sqlite-writer.py grows a WAL-mode database in A's folder (--sqlite-rate
             rows/s of 1 KB for --sqlite-seconds); B's copy is sampled every 0.5 s (the
             database file and its -wal, if any, copied aside, then `PRAGMA integrity_check`,
             max(id) and the commit time of that row): how often it was corrupt or absent, and
             how far it lagged the writer (rows, and age of its newest row).

Prints a table of figures and ratios with the load average. Not a test: nothing is asserted.

usage: scripts/bench-syncthing.py [--bin .build/release/meshnode] [--phases small,big,change,sqlite]
           [--small-reps 3] [--big-mib 1024] [--big-reps 2] [--change-mib 10] [--sqlite-seconds 30]
           [--sqlite-rate 100] [--sqlite-init-mib 10] [--snapshot-interval 5s]
           [--syncthing-sqlite-delays 1,10] [--timeout 1500] [--keep] [--json FILE]

Everything lives in one temp dir (under $TMPDIR or /var/tmp) removed on exit unless --keep;
every process started is ended by its PID (process group) on exit, also on SIGINT/SIGTERM;
the whole run is bounded by --timeout; all traffic is on 127.0.0.1.
"""
import argparse
import atexit
import hashlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import xml.etree.ElementTree as ET

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WRITER = os.path.join(ROOT, "scripts", "sqlite-writer.py")
MIB = 1 << 20
FOLDER_ID = "bench"

PROCS = []          # every Popen started, ended by PID at exit
WORK = [None]       # the temp dir
KEEP = [False]
DEADLINE = [0.0]


def log(msg):
    print("[%s load %s] %s" % (time.strftime("%H:%M:%S"), load(), msg), file=sys.stderr, flush=True)


def load():
    return "%.2f %.2f %.2f" % os.getloadavg()


def left():
    return DEADLINE[0] - time.time()


class Timeout(Exception):
    pass


def wait_for(cond, timeout, what, poll=0.01):
    """Polls cond() until truthy; returns (value, seconds). Raises Timeout past the bound."""
    t0 = time.time()
    bound = min(timeout, max(left(), 0))
    while True:
        v = cond()
        if v:
            return v, time.time() - t0
        if time.time() - t0 > bound:
            raise Timeout("timed out after %.0f s waiting for %s" % (time.time() - t0, what))
        time.sleep(poll)


def free_port():
    """A port free for both TCP and UDP on 127.0.0.1 (meshnode uses one number for both)."""
    for _ in range(100):
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        t.bind(("127.0.0.1", 0))
        port = t.getsockname()[1]
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            u.close()
            t.close()
    raise SystemExit("no free port")


def spawn(cmd, logpath, env=None, cwd=None):
    f = open(logpath, "ab")
    p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=cwd,
                         start_new_session=True)
    f.close()
    PROCS.append(p)
    return p


def stop(p, grace=10):
    """Ends p (and the process group it leads, and its descendants) by PID: SIGTERM, then SIGKILL."""
    kids = [(k, cmdline(k)) for k in tree(p.pid) if k != p.pid] if p.poll() is None else []
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(p.pid, signal.SIGKILL)  # also any child left in its group
    except (ProcessLookupError, PermissionError):
        pass
    try:
        p.wait(5)
    except subprocess.TimeoutExpired:
        pass
    for k, cmd in kids:  # descendants in groups of their own, if still there (and still the same process)
        try:
            if cmd and cmdline(k) == cmd:
                os.kill(k, signal.SIGKILL)
        except OSError:
            pass


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read()
    except OSError:
        return None


def cleanup():
    for p in reversed(PROCS):
        stop(p, grace=5)
    PROCS.clear()
    if WORK[0] and os.path.isdir(WORK[0]):
        if KEEP[0]:
            print("kept %s" % WORK[0], file=sys.stderr)
        else:
            shutil.rmtree(WORK[0], ignore_errors=True)
        WORK[0] = None


def on_signal(sig, _frame):
    raise SystemExit("signal %d" % sig)


def tree(pid):
    """pid and its descendants (Syncthing's monitor process runs the real one as a child, in a
    process group of its own)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for t in os.listdir("/proc/%d/task" % p):
                with open("/proc/%d/task/%s/children" % (p, t)) as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return out


def proc_io(pid):
    """/proc/PID/io of pid and its descendants, summed."""
    out = {}
    for p in tree(pid):
        try:
            with open("/proc/%d/io" % p) as f:
                for line in f:
                    k, v = line.split(":")
                    out[k.strip()] = out.get(k.strip(), 0) + int(v)
        except OSError:
            pass
    return out


def cpu_seconds(pid):
    total = 0.0
    for p in tree(pid):
        try:
            with open("/proc/%d/stat" % p) as f:
                parts = f.read().rsplit(")", 1)[1].split()
            total += (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")
        except OSError:
            pass
    return total


def disk_bytes(path):
    """Allocated bytes (st_blocks) under path, hard links once."""
    seen, total = set(), 0
    for d, _dirs, files in os.walk(path):
        for n in files:
            try:
                s = os.lstat(os.path.join(d, n))
            except OSError:
                continue
            if (s.st_dev, s.st_ino) in seen:
                continue
            seen.add((s.st_dev, s.st_ino))
            total += s.st_blocks * 512
    return total


def write_random(path, nbytes, block=8 * MIB):
    with open(path, "wb") as f:
        left_ = nbytes
        while left_ > 0:
            n = min(block, left_)
            f.write(os.urandom(n))
            left_ -= n


# ---------------------------------------------------------------- Syncthing

class Syncthing:
    def __init__(self, root, name):
        self.name = name
        self.home = os.path.join(root, "st-" + name)
        self.gui_port = free_port()
        self.listen_port = free_port()
        self.apikey = hashlib.sha256(os.urandom(16)).hexdigest()[:32]
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ST")}
        self.env.update(STNODEFAULTFOLDER="1", STNORESTART="1", STNOUPGRADE="1", HOME=self.home)
        r = subprocess.run(["syncthing", "generate", "--home=" + self.home, "--no-default-folder", "--skip-port-probing"],
                           env=self.env, capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise SystemExit("syncthing generate: %s" % r.stderr)
        self.cfg = os.path.join(self.home, "config.xml")
        self.tree = ET.parse(self.cfg)
        self.id = self.tree.getroot().find("device").get("id")
        self.proc = None

    def configure(self, peer, folder_path, folder_type, delay_s):
        root = self.tree.getroot()
        gui = root.find("gui")
        gui.find("address").text = "127.0.0.1:%d" % self.gui_port
        gui.find("apikey").text = self.apikey
        opts = root.find("options")
        for k, v in {"listenAddress": "tcp://127.0.0.1:%d" % self.listen_port, "globalAnnounceEnabled": "false",
                     "localAnnounceEnabled": "false", "relaysEnabled": "false", "natEnabled": "false",
                     "urAccepted": "-1", "startBrowser": "false", "autoUpgradeIntervalH": "0",
                     "crashReportingEnabled": "false", "restartOnWakeup": "false",
                     # Syncthing lowers its own CPU and I/O priority by default; meshnode does not, and
                     # other builds share this machine, so both run at normal priority.
                     "setLowPriority": "false"}.items():
            e = opts.find(k)
            if e is None:
                e = ET.SubElement(opts, k)
            e.text = v
        dev = ET.SubElement(root, "device", {"id": peer.id, "name": peer.name, "compression": "metadata",
                                             "introducer": "false", "skipIntroductionRemovals": "false",
                                             "introducedBy": ""})
        ET.SubElement(dev, "address").text = "tcp://127.0.0.1:%d" % peer.listen_port
        ET.SubElement(dev, "paused").text = "false"
        ET.SubElement(dev, "autoAcceptFolders").text = "false"
        # The folder: a copy of <defaults><folder>, with both devices.
        proto = root.find("defaults").find("folder")
        folder = ET.fromstring(ET.tostring(proto))
        folder.set("id", FOLDER_ID)
        folder.set("label", FOLDER_ID)
        folder.set("path", folder_path)
        folder.set("type", folder_type)
        folder.set("fsWatcherEnabled", "true")
        folder.set("fsWatcherDelayS", str(delay_s))
        folder.set("rescanIntervalS", "3600")
        for d in folder.findall("device"):
            folder.remove(d)
        for did in (self.id, peer.id):
            d = ET.Element("device", {"id": did, "introducedBy": ""})
            ET.SubElement(d, "encryptionPassword").text = ""
            folder.insert(0, d)
        # <folder> elements go before the first <device> in Syncthing's own files; order is not significant.
        root.insert(0, folder)
        self.tree.write(self.cfg)
        os.makedirs(os.path.join(folder_path, ".stfolder"), exist_ok=True)

    def start(self):
        self.proc = spawn(["syncthing", "serve", "--home=" + self.home, "--no-browser", "--no-restart", "--no-upgrade",
                           "--logflags=3"], os.path.join(self.home, "log.txt"), env=self.env)

    def api(self, path, method="GET", body=None, timeout=10):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.gui_port, path), data=data, method=method,
                                     headers={"X-API-Key": self.apikey, "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
        return json.loads(raw) if raw.strip() else None

    def try_api(self, path):
        try:
            return self.api(path)
        except Exception:
            return None

    def connected_to(self, peer):
        c = self.try_api("/rest/system/connections")
        return bool(c and c.get("connections", {}).get(peer.id, {}).get("connected"))

    def folder_state(self):
        s = self.try_api("/rest/db/status?folder=" + FOLDER_ID)
        return s.get("state") if s else None

    def out_bytes(self):
        c = self.try_api("/rest/system/connections")
        return c["total"]["outBytesTotal"] if c else 0

    def set_delay(self, delay_s):
        self.api("/rest/config/folders/" + FOLDER_ID, method="PATCH", body={"fsWatcherDelayS": delay_s})
        time.sleep(0.5)
        wait_for(lambda: self.folder_state() == "idle", 60, "Syncthing %s idle after a config change" % self.name, 0.1)


# ---------------------------------------------------------------- meshnode

class Meshnode:
    def __init__(self, bin_, root, name):
        self.bin = bin_
        self.name = name
        self.data = os.path.join(root, "mn-" + name)
        self.port = free_port()
        self.metrics_port = free_port()
        self.address = "127.0.0.1:%d" % self.port
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MESHNODE_")}
        self.env["MESHNODE_NO_PROGRESS"] = "1"
        r = self.run("init", "--data", self.data, "--name", "bench-" + name)
        self.id = r.stdout.strip().splitlines()[-1]
        self.cfg = self.data + ".yaml"
        self.proc = None

    def run(self, *a, check=True, timeout=60):
        r = subprocess.run([self.bin, *a], capture_output=True, text=True, env=self.env, timeout=timeout)
        if check and r.returncode != 0:
            raise SystemExit("meshnode %s failed: %s" % (" ".join(a), r.stderr))
        return r

    def configure(self, ids, folder_path, mode, snapshot_interval):
        extra = "    snapshot_interval: %s\n" % snapshot_interval if snapshot_interval else ""
        with open(self.cfg, "w") as f:
            f.write("trusted_keys:\n" + "".join("  - %s\n" % i for i in ids)
                    + "log_level: warning\nmetrics_listen: 127.0.0.1:%d\n" % self.metrics_port
                    + "folders:\n  - path: %s\n    mode: %s\n    prefix: bench/\n%s" % (folder_path, mode, extra))

    def start(self, join=None):
        self.proc = spawn([self.bin, "run", "--data", self.data, "--config", self.cfg, "--listen", self.address]
                          + (["--join", join] if join else []), self.data + ".log", env=self.env)
        wait_for(lambda: self.run("peers", "--data", self.data, check=False, timeout=10).returncode == 0, 30,
                 "meshnode %s control socket" % self.name, 0.2)

    def peers_alive(self, n):
        r = self.run("peers", "--data", self.data, "--json", check=False, timeout=10)
        if r.returncode != 0:
            return False
        ps = json.loads(r.stdout)
        return len(ps) == n and all(p.get("state") == "alive" for p in ps)

    def metric(self, name):
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.metrics_port, timeout=10) as r:
                text = r.read().decode()
        except Exception:
            return None
        total = 0
        for line in text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def folders(self):
        r = self.run("folders", "--data", self.data, "--json", check=False, timeout=10)
        try:
            return json.loads(r.stdout) if r.returncode == 0 else None
        except ValueError:
            return None


# ---------------------------------------------------------------- the tools as one interface

class Pair:
    """A sender and a receiver of one tool, with their folders."""

    def __init__(self, tool, a, b, send, recv):
        self.tool, self.a, self.b, self.send, self.recv = tool, a, b, send, recv

    def sent_bytes(self):
        if self.tool == "syncthing":
            return self.a.out_bytes()
        return self.a.metric("meshnode_chunk_bytes_sent_total") or 0

    def settle_sender(self, timeout=120):
        """Waits until the sender has nothing left to do for the folder."""
        if self.tool == "syncthing":
            wait_for(lambda: self.a.folder_state() == "idle" and self.b.folder_state() == "idle", timeout,
                     "Syncthing idle", 0.1)
            return
        def idle():
            rows = self.a.folders()
            if not rows:
                return False
            r = rows[0]
            return not any(r.get(k) for k in ("settling", "queued_puts", "fetches_waiting", "materialising", "removing"))
        try:
            wait_for(idle, timeout, "meshnode sender idle", 0.2)
        except Timeout:
            pass
        time.sleep(1.0)


def wait_stable(measure, timeout, quiet=1.0):
    """Waits (at most timeout s) until measure() has not changed for quiet s; returns its value."""
    t0, last, since = time.time(), measure(), time.time()
    while time.time() - t0 < min(timeout, max(left(), 0)):
        time.sleep(0.2)
        v = measure()
        if v != last:
            last, since = v, time.time()
        elif time.time() - since >= quiet:
            break
    return last


def wait_file(path, size, timeout, what):
    def ok():
        try:
            return os.stat(path).st_size == size
        except OSError:
            return False
    return wait_for(ok, timeout, what)[1]


# ---------------------------------------------------------------- phases

def phase_small(args, st, mn, res):
    figures = {"syncthing_delay10": [], "syncthing_delay1": [], "meshnode": []}
    blob = os.urandom(MIB)
    for label, pair, delay in (("syncthing_delay10", st, 10), ("syncthing_delay1", st, 1), ("meshnode", mn, None)):
        if delay is not None:
            pair.a.set_delay(delay)
        for k in range(args.small_reps):
            name = "small-%s-%d.bin" % (label, k)
            src = os.path.join(pair.send, name)
            with open(src, "wb") as f:
                f.write(blob[:-8] + os.urandom(8))
            t = wait_file(os.path.join(pair.recv, name), MIB, 120, "%s: %s on the receiver" % (label, name))
            figures[label].append(t)
            log("small %s rep %d: %.3f s" % (label, k, t))
            time.sleep(1.0)
    res["small"] = figures


def freshen(path, stride=64 * 1024):
    """New random bytes every `stride` bytes, so no block of a previous run can be reused."""
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        for off in range(0, size, stride):
            f.seek(off)
            f.write(os.urandom(16))


def phase_big(args, st, mn, res, src):
    size = os.path.getsize(src)
    out = {"syncthing_delay1": [], "meshnode": []}
    st.a.set_delay(1)
    for rep in range(args.big_reps):
        if rep > 0:
            for pair in (st, mn):
                os.unlink(os.path.join(pair.send, "big.bin"))
                wait_for(lambda: not os.path.exists(os.path.join(pair.recv, "big.bin")), 120,
                         "%s: the big file removed on the receiver" % pair.tool, 0.1)
                pair.settle_sender()
            freshen(src)
        for label, pair in (("syncthing_delay1", st), ("meshnode", mn)):
            dst = os.path.join(pair.send, "big.bin")
            log("big %s rep %d: copying %d MiB into the send folder" % (label, rep, size >> 20))
            tmp = os.path.join(os.path.dirname(pair.send), ".big-%s.tmp" % label)
            shutil.copyfile(src, tmp)
            io0 = proc_io(pair.a.proc.pid)
            cpu0 = cpu_seconds(pair.a.proc.pid) + cpu_seconds(pair.b.proc.pid)
            sent0 = pair.sent_bytes()
            os.rename(tmp, dst)  # the file appears complete: what is measured is the tool, not our copy
            t = wait_file(os.path.join(pair.recv, "big.bin"), size, 900, "%s: the big file on the receiver" % label)
            io1 = proc_io(pair.a.proc.pid)
            out[label].append({"seconds": t, "sender_rchar": io1.get("rchar", 0) - io0.get("rchar", 0),
                               "sender_read_bytes": io1.get("read_bytes", 0) - io0.get("read_bytes", 0),
                               "sent_bytes": pair.sent_bytes() - sent0,
                               "cpu_seconds_both": cpu_seconds(pair.a.proc.pid) + cpu_seconds(pair.b.proc.pid) - cpu0,
                               "load": load()})
            log("big %s rep %d: %.2f s (%s)" % (label, rep, t, out[label][-1]))
            pair.settle_sender()
            time.sleep(2)
        if rep == 0:
            # Disk on each receive side after the first run (later runs leave garbage until a
            # collection): the folder's bytes, and the receiving node's home or data dir. A
            # meshnode receiver deletes its chunk files once the folder file backs them, just
            # after the rename: measured once its data dir stops shrinking.
            wait_stable(lambda: disk_bytes(mn.b.data), 60)
            out["receiver_disk"] = {
                "meshnode": {"folder": disk_bytes(mn.recv), "data_dir": disk_bytes(mn.b.data)},
                "syncthing": {"folder": disk_bytes(st.recv), "data_dir": disk_bytes(st.b.home)},
            }
    res["big"] = out


def phase_change(args, st, mn, res, src):
    size = os.path.getsize(src)
    change = args.change_mib * MIB
    off = size // 2 - change // 2
    patch = os.urandom(change)
    out = {}
    for label, pair in (("syncthing_delay1", st), ("meshnode", mn)):
        path = os.path.join(pair.send, "big.bin")
        rpath = os.path.join(pair.recv, "big.bin")
        ino0 = os.stat(rpath).st_ino
        pair.settle_sender()
        ioa0, iob0 = proc_io(pair.a.proc.pid), proc_io(pair.b.proc.pid)
        sent0 = pair.sent_bytes()
        with open(path, "r+b") as f:
            f.seek(off)
            f.write(patch)
        t0 = time.time()

        def delivered():
            try:
                s = os.stat(rpath)
            except OSError:
                return False
            if s.st_ino == ino0 or s.st_size != size:
                return False
            with open(rpath, "rb") as f:
                f.seek(off)
                return f.read(change) == patch
        wait_for(delivered, 900, "%s: the change on the receiver" % label, 0.02)
        t = time.time() - t0
        pair.settle_sender()
        ioa1, iob1 = proc_io(pair.a.proc.pid), proc_io(pair.b.proc.pid)
        out[label] = {"seconds": t,
                      "sender_rchar": ioa1.get("rchar", 0) - ioa0.get("rchar", 0),
                      "sender_read_bytes": ioa1.get("read_bytes", 0) - ioa0.get("read_bytes", 0),
                      "receiver_rchar": iob1.get("rchar", 0) - iob0.get("rchar", 0),
                      "receiver_wchar": iob1.get("wchar", 0) - iob0.get("wchar", 0),
                      "sent_bytes": pair.sent_bytes() - sent0, "load": load()}
        log("change %s: %.2f s (%s)" % (label, t, out[label]))
    res["change"] = out


class WriterWatch:
    """Runs scripts/sqlite-writer.py and follows its `commit N` lines."""

    def __init__(self, db, rate, seconds, logpath):
        self.last = 0
        self.done = None
        self.proc = subprocess.Popen([sys.executable, WRITER, "--db", db, "--rate", str(rate), "--duration", str(seconds),
                                      "--report", "1"], stdout=subprocess.PIPE, stderr=open(logpath, "ab"), text=True,
                                     start_new_session=True)
        PROCS.append(self.proc)
        self.t = threading.Thread(target=self.follow, daemon=True)
        self.t.start()

    def follow(self):
        for line in self.proc.stdout:
            p = line.split()
            if len(p) == 2 and p[0] == "commit":
                self.last = int(p[1])
            elif len(p) == 2 and p[0] == "done":
                self.last = int(p[1])
                self.done = time.time()


def sample_db(recv_db, scratch):
    """Copies the receiver's database (and -wal, as a reader opening it would use it) aside and
    checks the copy: ("absent"|"ok"|"corrupt", max id, commit time of that row, detail)."""
    shutil.rmtree(scratch, ignore_errors=True)
    os.makedirs(scratch)
    dst = os.path.join(scratch, "s.db")
    try:
        shutil.copyfile(recv_db, dst)
    except OSError:
        return "absent", 0, None, ""
    had_wal = False
    try:
        shutil.copyfile(recv_db + "-wal", dst + "-wal")
        had_wal = True
    except OSError:
        pass
    try:
        c = sqlite3.connect("file:%s?mode=rw" % dst, uri=True, timeout=2)
        try:
            ic = c.execute("PRAGMA integrity_check").fetchall()
            if ic != [("ok",)]:
                return "corrupt", 0, None, "integrity_check: %s%s" % (str(ic[0][0])[:80], " (+wal)" if had_wal else "")
            row = c.execute("SELECT id, t FROM games ORDER BY id DESC LIMIT 1").fetchone()
            return "ok", row[0] if row else 0, row[1] if row else None, "+wal" if had_wal else ""
        finally:
            c.close()
    except sqlite3.DatabaseError as e:
        return "corrupt", 0, None, "%s%s" % (e, " (+wal)" if had_wal else "")


def sqlite_run(args, pair, label, root):
    d = pair.send
    db = os.path.join(d, "games-%s.db" % label)
    rdb = os.path.join(pair.recv, os.path.basename(db))
    rows = int(args.sqlite_init_mib * MIB / (1024 * 1.36))
    subprocess.run([sys.executable, WRITER, "--db", db, "--init", str(rows)], check=True, stdout=subprocess.DEVNULL,
                   timeout=120)
    scratch = os.path.join(root, "sample-" + label)
    # The initial database arrives first (not measured).
    wait_for(lambda: sample_db(rdb, scratch)[:2] == ("ok", rows), 120, "%s: the initial database on the receiver" % label, 0.5)
    log("sqlite %s: initial %d rows on the receiver; writer starts" % (label, rows))
    w = WriterWatch(db, args.sqlite_rate, args.sqlite_seconds, os.path.join(root, "writer-%s.log" % label))
    samples = []
    t_start = time.time()
    end = t_start + args.sqlite_seconds + args.sqlite_tail
    while time.time() < end and left() > 0:
        t = time.time()
        state, mid, tcommit, detail = sample_db(rdb, scratch)
        # Age: how long ago the writer committed the receiver's newest row (rows of the initial
        # database count as committed when the writer started).
        samples.append({"t": t - t_start, "state": state, "id": mid, "writer_id": w.last,
                        "age": (t - max(tcommit, t_start)) if tcommit else None, "writing": w.done is None, "detail": detail})
        time.sleep(max(0.0, 0.5 - (time.time() - t)))
    try:
        w.proc.wait(30)
    except subprocess.TimeoutExpired:
        stop(w.proc)
    final = w.last
    during = [s for s in samples if s["writing"]]
    after = [s for s in samples if not s["writing"]]
    corrupt = [s for s in samples if s["state"] == "corrupt"]
    # Longest run of consecutive corrupt samples, in seconds.
    longest, run_start = 0.0, None
    for s in samples:
        if s["state"] == "corrupt":
            run_start = s["t"] if run_start is None else run_start
            longest = max(longest, s["t"] - run_start + 0.5)
        else:
            run_start = None
    okd = [s for s in during if s["state"] == "ok"]
    ages = [s["age"] for s in okd if s["age"] is not None]
    lags = [s["writer_id"] - s["id"] for s in okd]
    # The first rows the receiver got after the writer had started (did anything arrive while writing?).
    new_during = [s for s in okd if s["id"] > rows]
    caught = next((s["t"] for s in after if s["state"] == "ok" and s["id"] == final), None)
    out = {"samples": len(samples), "samples_writing": len(during), "corrupt": len(corrupt),
           "corrupt_writing": len([s for s in corrupt if s["writing"]]),
           "absent": len([s for s in samples if s["state"] == "absent"]), "longest_corrupt_s": longest,
           "corrupt_details": sorted({s["detail"] for s in corrupt})[:3],
           "ok_samples_with_new_rows_while_writing": len(new_during),
           "age_s_median": statistics.median(ages) if ages else None, "age_s_max": max(ages) if ages else None,
           "lag_rows_median": statistics.median(lags) if lags else None, "lag_rows_max": max(lags) if lags else None,
           "rows_committed": final, "rows_on_receiver_at_end": max([s["id"] for s in samples if s["state"] == "ok"] or [0]),
           "caught_up_s_after_start": caught, "writer_seconds": args.sqlite_seconds, "load": load()}
    log("sqlite %s: %s" % (label, out))
    return out


def phase_sqlite(args, st, mn, res, root):
    out = {}
    for delay in [int(x) for x in args.syncthing_sqlite_delays.split(",") if x]:
        st.a.set_delay(delay)
        out["syncthing_delay%d" % delay] = sqlite_run(args, st, "st%d" % delay, root)
    out["meshnode"] = sqlite_run(args, mn, "mn", root)
    res["sqlite"] = out


# ---------------------------------------------------------------- report

def fmt(x, nd=2):
    return "-" if x is None else ("%.*f" % (nd, x))


def report(args, res, meta):
    print()
    print("## bench-syncthing: %s" % meta["date"])
    print("syncthing %s; meshnode %s (commit %s); load average at start %s, at end %s; %d cores"
          % (meta["syncthing"], meta["bin"], meta["commit"], meta["load_start"], meta["load_end"], os.cpu_count()))
    if "small" in res:
        s = res["small"]
        med = {k: statistics.median(v) if v else None for k, v in s.items()}
        print("\n1 MiB file, written -> complete on the peer (median of %d; all runs)" % args.small_reps)
        for k in ("syncthing_delay10", "syncthing_delay1", "meshnode"):
            print("  %-18s %7s s   (%s)" % (k, fmt(med[k], 3), ", ".join("%.3f" % x for x in s[k])))
        if med["meshnode"]:
            print("  ratio Syncthing(10)/meshnode %.1fx, Syncthing(1)/meshnode %.1fx; meshnode <= 1 s: %s"
                  % (med["syncthing_delay10"] / med["meshnode"], med["syncthing_delay1"] / med["meshnode"],
                     "met" if med["meshnode"] <= 1.0 else "missed"))
    if "big" in res:
        b = res["big"]
        print("\n%d MiB file, written -> complete on the peer (%d runs each, alternating)" % (args.big_mib, len(b["meshnode"])))
        for k in ("syncthing_delay1", "meshnode"):
            for i, v in enumerate(b[k]):
                print("  %-18s %7.2f s  sender read %6.0f MiB (disk %5.0f MiB), sent %6.0f MiB, cpu both %5.1f s, load %s"
                      % ("%s #%d" % (k, i), v["seconds"], v["sender_rchar"] / MIB, v["sender_read_bytes"] / MIB,
                         v["sent_bytes"] / MIB, v["cpu_seconds_both"], v["load"]))
        ratios = [m["seconds"] / s["seconds"] for s, m in zip(b["syncthing_delay1"], b["meshnode"])]
        med = statistics.median(ratios)
        print("  meshnode/Syncthing time per pair %s, median %.2f (target <= 0.5: %s)"
              % (", ".join("%.2f" % r for r in ratios), med, "met" if med <= 0.5 else "missed"))
        rd = b["receiver_disk"]
        for k in ("syncthing", "meshnode"):
            f, d = rd[k]["folder"], rd[k]["data_dir"]
            print("  receiver disk %-9s folder %6.0f MiB + home/data dir %6.0f MiB = %.2fx the folder" % (k, f / MIB, d / MIB, (f + d) / f if f else 0))
    if "change" in res:
        c = res["change"]
        print("\n%d MiB overwritten in the middle of the %d MiB file" % (args.change_mib, args.big_mib))
        for k in ("syncthing_delay1", "meshnode"):
            v = c[k]
            print("  %-18s deliver %6.2f s; sender read %7.1f MiB (disk %6.1f MiB); sent %6.1f MiB; receiver read %7.1f MiB wrote %7.1f MiB"
                  % (k, v["seconds"], v["sender_rchar"] / MIB, v["sender_read_bytes"] / MIB, v["sent_bytes"] / MIB,
                     v["receiver_rchar"] / MIB, v["receiver_wchar"] / MIB))
        s, m = c["syncthing_delay1"], c["meshnode"]
        print("  meshnode/Syncthing: time %.2f, sender read %.2f, sent %.2f" % (
            m["seconds"] / s["seconds"], m["sender_rchar"] / max(s["sender_rchar"], 1), m["sent_bytes"] / max(s["sent_bytes"], 1)))
    if "sqlite" in res:
        q = res["sqlite"]
        print("\nlive WAL database, %g rows/s of 1 KB for %g s (initial %g MiB), receiver sampled every 0.5 s for %g s more"
              % (args.sqlite_rate, args.sqlite_seconds, args.sqlite_init_mib, args.sqlite_tail))
        print("  %-18s %7s %7s %7s %8s %11s %11s %11s %9s" % ("tool", "samples", "corrupt", "absent", "longest",
                                                           "new rows?", "age med/max", "lag rows", "caught up"))
        for k, v in q.items():
            print("  %-18s %7d %7d %7d %7.1fs %11s %11s %11s %9s" % (
                k, v["samples"], v["corrupt"], v["absent"], v["longest_corrupt_s"],
                "%d/%d" % (v["ok_samples_with_new_rows_while_writing"], v["samples_writing"]),
                "%s/%s" % (fmt(v["age_s_median"], 1), fmt(v["age_s_max"], 1)),
                "%s/%s" % (fmt(v["lag_rows_median"], 0), fmt(v["lag_rows_max"], 0)),
                fmt(v["caught_up_s_after_start"], 1)))
            if v["corrupt_details"]:
                print("      corrupt: %s" % "; ".join(v["corrupt_details"]))
    print()


def git_commit():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except OSError:
        return "?"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", default=os.path.join(ROOT, ".build/release/meshnode"))
    p.add_argument("--phases", default="small,big,change,sqlite")
    p.add_argument("--small-reps", type=int, default=3)
    p.add_argument("--big-mib", type=int, default=1024)
    p.add_argument("--big-reps", type=int, default=2, help="runs of the big file per tool, alternating")
    p.add_argument("--change-mib", type=int, default=10)
    p.add_argument("--sqlite-seconds", type=float, default=30.0)
    p.add_argument("--sqlite-tail", type=float, default=20.0, help="seconds of sampling after the writer stopped")
    p.add_argument("--sqlite-rate", type=float, default=100.0)
    p.add_argument("--sqlite-init-mib", type=float, default=10.0)
    p.add_argument("--snapshot-interval", default="5s", help="meshnode's folder snapshot_interval ('' for its default, 60s)")
    p.add_argument("--syncthing-sqlite-delays", default="1,10")
    p.add_argument("--timeout", type=float, default=1500.0, help="bound on the whole run, seconds")
    p.add_argument("--work", help="directory for the temp dir (default $TMPDIR or /var/tmp)")
    p.add_argument("--keep", action="store_true")
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args()
    phases = set(args.phases.split(","))
    if "change" in phases:
        phases.add("big")
    if not os.access(args.bin, os.X_OK):
        raise SystemExit("%s: not built (swift build -c release)" % args.bin)
    if not shutil.which("syncthing"):
        raise SystemExit("syncthing is not installed (apt-get install -y syncthing)")
    KEEP[0] = args.keep
    DEADLINE[0] = time.time() + args.timeout
    atexit.register(cleanup)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGALRM, on_signal)
    signal.alarm(int(args.timeout + 120))  # a hard bound even if a wait misbehaves
    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_start": load(), "commit": git_commit(),
            "bin": os.path.relpath(args.bin, ROOT),
            "syncthing": subprocess.run(["syncthing", "--version"], capture_output=True, text=True).stdout.split(" ")[1]}
    root = WORK[0] = tempfile.mkdtemp(prefix="meshnode-vs-syncthing.", dir=args.work or os.environ.get("TMPDIR", "/var/tmp"))
    res = {}
    try:
        dirs = {k: os.path.join(root, k) for k in ("st-send", "st-recv", "mn-send", "mn-recv")}
        for d in dirs.values():
            os.makedirs(d)
        sa, sb = Syncthing(root, "a"), Syncthing(root, "b")
        sa.configure(sb, dirs["st-send"], "sendonly", 10)
        sb.configure(sa, dirs["st-recv"], "receiveonly", 10)
        ma, mb = Meshnode(args.bin, root, "a"), Meshnode(args.bin, root, "b")
        ma.configure([ma.id, mb.id], dirs["mn-send"], "send", args.snapshot_interval)
        mb.configure([ma.id, mb.id], dirs["mn-recv"], "receive", args.snapshot_interval)
        sa.start()
        sb.start()
        ma.start()
        mb.start(join=ma.address)
        wait_for(lambda: sa.connected_to(sb) and sb.connected_to(sa), 90, "the Syncthing devices connected", 0.2)
        wait_for(lambda: sa.folder_state() == "idle" and sb.folder_state() == "idle", 90, "the Syncthing folders idle", 0.2)
        wait_for(lambda: ma.peers_alive(2) and mb.peers_alive(2), 60, "both meshnode nodes alive", 0.2)
        log("all four up: syncthing %s/%s, meshnode %s/%s" % (sa.proc.pid, sb.proc.pid, ma.proc.pid, mb.proc.pid))
        st = Pair("syncthing", sa, sb, dirs["st-send"], dirs["st-recv"])
        mn = Pair("meshnode", ma, mb, dirs["mn-send"], dirs["mn-recv"])
        if "small" in phases:
            phase_small(args, st, mn, res)
        if "big" in phases:
            src = os.path.join(root, "big.src")
            log("writing %d MiB of random bytes" % args.big_mib)
            write_random(src, args.big_mib * MIB)
            phase_big(args, st, mn, res, src)
            if "change" in phases:
                phase_change(args, st, mn, res, src)
            for pair in (st, mn):
                os.unlink(os.path.join(pair.send, "big.bin"))
            os.unlink(src)
            time.sleep(3)
        if "sqlite" in phases:
            phase_sqlite(args, st, mn, res, root)
    except Timeout as e:
        print("stopped: %s" % e, file=sys.stderr)
    finally:
        meta["load_end"] = load()
        report(args, res, meta)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"meta": meta, "args": vars(args), "results": res}, f, indent=2)
        cleanup()


if __name__ == "__main__":
    main()
