#!/usr/bin/env python3
"""Where a big file's trip through two meshnode folders goes (no Syncthing).

Two `meshnode run` nodes on loopback, a `send` and a `receive` folder, a random file of
--mib MiB renamed into the send folder --reps times (new bytes each time). Every 50 ms it
samples the sender's read bytes (`rchar` in /proc/PID/io), its `meshnode_chunk_bytes_sent_total`
and both processes' CPU time, and prints per run: the total (renamed -> full size on the
receiver), when the sender started and finished reading the file (settle, then the put's
read and hash), when the first chunk byte left, and the CPU seconds of each node.

    swift build -c release && scripts/folder-timeline.py [--bin .build/release/meshnode] [--mib 1024] [--reps 3]

It reuses bench-syncthing.py's helpers (process handling, waits, cleanup by PID).
"""
import argparse, atexit, importlib.util, os, shutil, sys, tempfile, threading, time

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("bench_syncthing", os.path.join(HERE, "bench-syncthing.py"))
b = importlib.util.module_from_spec(spec)
spec.loader.exec_module(b)
MIB = 1 << 20


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", default=os.path.join(HERE, "..", ".build/release/meshnode"))
    p.add_argument("--mib", type=int, default=1024)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--timeout", type=float, default=900)
    args = p.parse_args()
    b.DEADLINE[0] = time.time() + args.timeout
    root = b.WORK[0] = tempfile.mkdtemp(prefix="meshnode-timeline.", dir=os.environ.get("TMPDIR", "/var/tmp"))
    atexit.register(b.cleanup)
    send, recv = os.path.join(root, "send"), os.path.join(root, "recv")
    os.makedirs(send)
    os.makedirs(recv)
    ma, mb = b.Meshnode(args.bin, root, "a"), b.Meshnode(args.bin, root, "b")
    ma.configure([ma.id, mb.id], send, "send", None)
    mb.configure([ma.id, mb.id], recv, "receive", None)
    ma.start()
    mb.start(join=ma.address)
    b.wait_for(lambda: ma.peers_alive(2) and mb.peers_alive(2), 60, "both nodes alive", 0.2)
    size = args.mib * MIB
    src = os.path.join(root, "big.src")
    b.write_random(src, size)
    pair = b.Pair("meshnode", ma, mb, send, recv)
    print("run  total  read from  read to  first sent  cpu sender  cpu receiver   (seconds after the rename)")
    for rep in range(args.reps):
        if rep:
            os.unlink(os.path.join(send, "big.bin"))
            b.wait_for(lambda: not os.path.exists(os.path.join(recv, "big.bin")), 120, "the file removed on the receiver", 0.1)
            pair.settle_sender()
            b.freshen(src)
        tmp = os.path.join(root, ".big.tmp")
        shutil.copyfile(src, tmp)
        samples, stop = [], [False]

        def sample():
            while not stop[0]:
                samples.append((time.time(), b.proc_io(ma.proc.pid).get("rchar", 0),
                                ma.metric("meshnode_chunk_bytes_sent_total") or 0,
                                b.cpu_seconds(ma.proc.pid), b.cpu_seconds(mb.proc.pid)))
                time.sleep(0.05)
        th = threading.Thread(target=sample)
        th.start()
        time.sleep(0.2)
        t0 = time.time()
        os.rename(tmp, os.path.join(send, "big.bin"))
        total = b.wait_file(os.path.join(recv, "big.bin"), size, 300, "the file on the receiver")
        stop[0] = True
        th.join()
        r0, s0 = samples[0][1], samples[0][2]

        def first(pred):
            return next((s[0] - t0 for s in samples if s[0] >= t0 and pred(s)), float("nan"))
        print("%3d  %5.2f  %9.2f  %7.2f  %10.2f  %10.2f  %12.2f" % (
            rep, total, first(lambda s: s[1] - r0 > MIB), first(lambda s: s[1] - r0 >= size),
            first(lambda s: s[2] - s0 > 0), samples[-1][3] - samples[0][3], samples[-1][4] - samples[0][4]), flush=True)
        pair.settle_sender()
        time.sleep(2)


if __name__ == "__main__":
    main()
