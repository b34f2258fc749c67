"""The upstream proxy: the latency it adds to a call, and how many recorded calls it replays per second.

    python benchmarks/bench_proxy.py [--runs 5] [--calls 4000] [--concurrency 1,64]

Three processes, as in a real run: a local OpenAI-compatible server (aiohttp, its own process, answering after
``--server-ms``: a model takes time, and 64 calls in flight against a server that answers at once measure only
how fast the proxy can go flat out, not what it adds to a call), the proxy
(evalgate.upstreams, in this process: its own thread and event loop), and a load generator (aiohttp client, its
own process) sending chat-completion requests, one at a time and 64 at a time. Each run measures:

  * direct: the load generator calling the server itself;
  * via the proxy, record mode: every call passed through and kept (what ``--upstreams record`` does);
  * via the proxy, replay mode: the same calls served from their recordings (0 bytes reach the server).

Latency is per call, as the load generator sees it (p50, p95); the proxy's added latency is the via-proxy
figure minus the direct one. Medians over ``--runs`` runs; the load average is read before and after.

Targets checked:
  * added latency at p50, record mode, 64 concurrent: ≤ 1 ms;
  * replay throughput: ≥ 2,000 calls/s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import versions

TARGET_ADDED_P50_MS = 1.0
TARGET_REPLAY_PER_S = 2000.0

SERVER = r'''
import json, sys
from aiohttp import web

DELAY = float(sys.argv[1]) / 1000

async def chat(request):
    body = await request.json()
    if DELAY:
        await __import__("asyncio").sleep(DELAY)
    text = "echo: " + body["messages"][-1]["content"]
    return web.json_response({"id": "c1", "object": "chat.completion", "created": 0, "model": body["model"],
                              "choices": [{"index": 0, "finish_reason": "stop",
                                           "message": {"role": "assistant", "content": text}}],
                              "usage": {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16}})

async def main():
    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    print(runner.addresses[0][1], flush=True)
    await __import__("asyncio").Event().wait()

__import__("asyncio").run(main())
'''

LOAD = r'''
import asyncio, json, sys, time
import aiohttp

url, calls, concurrency = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

async def main():
    latencies = []
    queue = list(range(calls))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        async def one(i):
            body = {"model": "bench", "messages": [{"role": "system", "content": "You are the bench desk."},
                                                   {"role": "user", "content": f"question {i}"}]}
            t0 = time.perf_counter()
            async with session.post(url + "/chat/completions", json=body) as resp:
                await resp.read()
                assert resp.status == 200, resp.status
            latencies.append((time.perf_counter() - t0) * 1000)

        async def worker():
            while queue:
                await one(queue.pop())

        for i in range(min(200, calls)):  # warm the connections
            await one(-1 - i)
        latencies.clear()
        queue[:] = list(range(calls))
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    print(json.dumps({"latencies": latencies, "wall_s": wall}))

asyncio.run(main())
'''


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def load(url: str, calls: int, concurrency: int) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", LOAD, url, str(calls), str(concurrency)],
                         capture_output=True, text=True, check=True)
    data = json.loads(out.stdout)
    lat = sorted(data["latencies"])
    return {"p50": lat[len(lat) // 2], "p95": lat[int(len(lat) * 0.95)], "per_s": len(lat) / data["wall_s"]}


def measure(direct: str, calls: int, concurrency: int) -> dict[str, dict[str, float]] | None:
    """Direct, through the proxy recording, and through the proxy replaying what it recorded."""
    from evalgate.upstreams import Upstreams
    from evalgate.upstreams import recordings as recordings_mod
    from evalgate.upstreams.book import Book, Secrets, Upstream

    up = Upstream("model", direct, openai=True)
    out = {"direct": load(direct, calls, concurrency)}
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "bench.jsonl"
        for mode in ("record", "replay"):
            existing = recordings_mod.read(file) if mode == "replay" else []
            book = Book("bench", file, mode, existing=existing, secrets=Secrets([up]))
            proxy = Upstreams([up], {"bench": book}, Secrets([up]))
            proxy.start()
            proxy.activate("bench")
            try:
                out[mode] = load(proxy.urls["model"], calls, concurrency)
            finally:
                proxy.stop()
            book.save()
            served = book.summary()
            if mode == "replay" and (served["live"] or served["missing"] or served["recorded"] != served["calls"]):
                print(f"replay went live: {served}", file=sys.stderr)
                return None
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="runs of each measurement (default 5)")
    ap.add_argument("--calls", type=int, default=4000, help="calls per measurement (default 4000)")
    ap.add_argument("--server-ms", type=float, default=50.0,
                    help="the model server's time per call (default 50 ms, a fast model; 0 measures the proxy saturated)")
    ap.add_argument("--concurrency", default="1,64", help="calls in flight at once, comma-separated (default 1,64)")
    args = ap.parse_args(argv)
    versions.print_header()  # what the figures below were measured with
    levels = [int(c) for c in args.concurrency.split(",")]

    before = loadavg()
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(args.server_ms)], stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    direct = f"http://127.0.0.1:{int(server.stdout.readline())}/v1"
    results: dict[tuple[int, str], list[dict[str, float]]] = {}
    try:
        for run in range(args.runs):
            for c in levels:
                measured = measure(direct, args.calls, c)
                if measured is None:
                    return 1
                for k, v in measured.items():
                    results.setdefault((c, k), []).append(v)
                print(f"run {run + 1}, {c} concurrent: " + ", ".join(
                    f"{k} p50 {v['p50']:.2f} ms p95 {v['p95']:.2f} ms {v['per_s']:.0f}/s" for k, v in measured.items()),
                    file=sys.stderr)
    finally:
        server.terminate()
        server.wait()
    after = loadavg()

    med = {key: {m: statistics.median(r[m] for r in v) for m in ("p50", "p95", "per_s")} for key, v in results.items()}
    print(f"upstream proxy, server {args.server_ms:g} ms, {args.calls} calls per measurement, medians of {args.runs} run(s); "
          f"load average {before} before, {after} after")
    print(f"{'in flight':>9} {'':8} {'p50 ms':>8} {'p95 ms':>8} {'calls/s':>9} {'added p50':>10} {'added p95':>10}")
    for (c, k), v in med.items():
        base = med[(c, "direct")]
        added = "" if k == "direct" else f"{v['p50'] - base['p50']:>+10.2f} {v['p95'] - base['p95']:>+10.2f}"
        print(f"{c:>9} {k:8} {v['p50']:>8.2f} {v['p95']:>8.2f} {v['per_s']:>9.0f} {added}")
    top = max(levels)
    added_p50 = med[(top, "record")]["p50"] - med[(top, "direct")]["p50"]
    replay = med[(top, "replay")]["per_s"]
    print("targets:")
    print(f"  {'PASS' if added_p50 <= TARGET_ADDED_P50_MS else 'MISS'}  added latency p50 (record, {top} in flight) "
          f"{added_p50:+.2f} ms ≤ {TARGET_ADDED_P50_MS:g} ms")
    print(f"  {'PASS' if replay >= TARGET_REPLAY_PER_S else 'MISS'}  replay throughput ({top} in flight) "
          f"{replay:.0f} calls/s ≥ {TARGET_REPLAY_PER_S:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
