#!/usr/bin/env python3
"""A TCP forwarder that resets every connection after a random 4-8 s (like the middleboxes
between rented GPU hosts), optionally rate-limited. For benchmarks and manual testing only;
it listens on 127.0.0.1 and forwards to 127.0.0.1.

Usage: scripts/reset-proxy.py LISTEN_PORT TARGET_PORT [--rate-mbps 20] [--min 4] [--max 8] [--seed 1]
"""
import argparse, asyncio, random, socket, struct, sys, time

ap = argparse.ArgumentParser()
ap.add_argument("listen", type=int)
ap.add_argument("target", type=int)
ap.add_argument("--rate-mbps", type=float, default=0, help="per-connection rate limit in MB/s (0: none)")
ap.add_argument("--min", type=float, default=4.0)
ap.add_argument("--max", type=float, default=8.0)
ap.add_argument("--seed", type=int, default=1)
args = ap.parse_args()
rng = random.Random(args.seed)
stats = {"connections": 0, "resets": 0}

async def pump(reader, writer, rate):
    t0, sent = time.monotonic(), 0
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
            sent += len(data)
            if rate > 0:
                ahead = sent / rate - (time.monotonic() - t0)
                if ahead > 0:
                    await asyncio.sleep(ahead)
    except Exception:
        pass

def rst(writer):
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()

async def handle(cr, cw):
    stats["connections"] += 1
    try:
        ur, uw = await asyncio.open_connection("127.0.0.1", args.target)
    except OSError:
        cw.transport.abort()
        return
    life = rng.uniform(args.min, args.max)
    rate = args.rate_mbps * 1e6
    tasks = [asyncio.ensure_future(pump(cr, uw, rate)), asyncio.ensure_future(pump(ur, cw, rate))]
    done, _ = await asyncio.wait(tasks, timeout=life, return_when=asyncio.ALL_COMPLETED)
    if len(done) < 2:
        stats["resets"] += 1
    for t in tasks:
        t.cancel()
    rst(cw)
    rst(uw)

async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", args.listen)
    print(f"reset proxy 127.0.0.1:{args.listen} -> 127.0.0.1:{args.target}", flush=True)
    async with server:
        await server.serve_forever()

try:
    asyncio.run(main())
except KeyboardInterrupt:
    pass
