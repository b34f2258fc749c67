"""The reference pipeline against a local OpenAI-compatible server: throughput, cache, CPU, latency.

    .venv/bin/python benchmarks/bench_pipeline.py [--runs 3] [--scenario a,b,c] [--workdir DIR]

(a) 2,000 single-turn cases, 200 ms server latency, concurrency 32: run time against
    the ideal N × latency / concurrency = 12.5 s (target ≥ 90 % efficiency); then the
    same run with a warm cache (target: zero requests, run phase ≥ 10× faster).
(b) 1,000 cases, 50 ms, concurrency 64: CPU per turn, evalgate's own apart from the
    HTTP client's (the client alone, driven with the same requests, gives its share),
    and recorded p50/p95 elapsed against the configured 50 ms (target: p50 within 20 %).
(c) honest latency: 1,000 cases at 64 in flight and 2,000 at 256, 50 ms server, no cache:
    what the store keeps for each turn, turns.elapsed_ms and the trace's
    latency_ms.model, p50/p95 against the server's delay (target: p50 within 10 %).

The server runs in its own process (its CPU is not counted): asyncio, HTTP/1.1
keep-alive, one fixed delay per request, a request counter at GET /count.
Everything stays on 127.0.0.1. Prints figures and a targets: block; exits 0
whether or not a target is met.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import versions

REPO = Path(__file__).resolve().parent.parent
DOCS = [
    {"id": "kb/refund-policy", "title": "Refund policy", "groups": ["customer"],
     "text": "Orders can be refunded within 30 days of delivery. Refunds take 5 to 7 business days."},
    {"id": "kb/shipping", "title": "Shipping times", "groups": ["customer"],
     "text": "Standard shipping takes 3 to 5 business days; express takes 1 to 2."},
    {"id": "kb/internal-fraud", "title": "Fraud rules (internal)", "groups": ["support"],
     "text": "Refunds over $500 need a second review."},
]


# --- the server (a subprocess) ---------------------------------------------------------


async def _serve(port: int, delay: float, ready: Any, tls: tuple[str, str] | None = None) -> None:
    count = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal count
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path = lines[0].split(" ")[:2]
                length = 0
                for line in lines[1:]:
                    if line.lower().startswith("content-length:"):
                        length = int(line.split(":", 1)[1])
                body = await reader.readexactly(length) if length else b""
                if method == "GET" and path.endswith("/count"):
                    payload = json.dumps({"requests": count}).encode()
                else:
                    count += 1
                    request = json.loads(body)
                    await asyncio.sleep(delay)
                    payload = json.dumps({
                        "id": f"c{count}", "object": "chat.completion", "created": 0, "model": request["model"],
                        "choices": [{"index": 0, "finish_reason": "stop", "message": {
                            "role": "assistant", "content": "answer: " + request["messages"][-1]["content"][:40]}}],
                        "usage": {"prompt_tokens": 120, "completion_tokens": 20, "total_tokens": 140}}).encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                             + str(len(payload)).encode() + b"\r\nConnection: keep-alive\r\n\r\n" + payload)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionResetError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    context = None
    if tls is not None:  # https: a certificate and its key, e.g. from self_signed()
        import ssl

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=512, ssl=context)
    ready()
    async with server:
        await server.serve_forever()


class Server:
    """The fake endpoint in a child process."""

    def __init__(self, delay: float, tls: tuple[Path, Path] | None = None):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        extra = ["--tls", str(tls[0]), str(tls[1])] if tls else []
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve", str(self.port), "--delay", str(delay),
                                      *extra], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.proc.stdout.readline()  # "ready"
        self.base_url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}/v1"
        self.context: Any = None  # what a client trusts to reach it over https
        if tls:
            import ssl

            self.context = ssl.create_default_context(cafile=str(tls[0]))

    def count(self) -> int:
        with urllib.request.urlopen(f"{self.base_url}/count", timeout=10, context=self.context) as resp:
            return int(json.loads(resp.read())["requests"])

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (``openssl``), for serving https on this machine."""
    cert, key = folder / "server.crt", folder / "server.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


# --- the suite ---------------------------------------------------------------------------


def write_suite(folder: Path, n: int, base_url: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "docs.jsonl").write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    cases = [{"id": f"c{i:05d}", "user": {"id": f"u{i % 50}", "groups": ["customer"]},
              "input": f"refund for order {1000 + i} please, how long does it take?",
              "expect": {"route": "refunds", "context": {"must_exclude": ["kb/internal-fraud"]}}} for i in range(n)]
    (folder / "cases.jsonl").write_text("".join(json.dumps(c) + "\n" for c in cases))
    suite = folder / "bench.yaml"
    suite.write_text(f"""
name: bench-pipeline
documents: docs.jsonl
target:
  pipeline:
    endpoint: {{base_url: "{base_url}", timeout_s: 30, max_retries: 2}}
    slots: [{{name: order_id, pattern: '(\\d{{4}})'}}]
    router:
      fallback: refunds
      rules: [{{route: refunds, keywords: [refund]}}]
    routes:
      refunds:
        context: {{query: "refund policy {{{{ input }}}}", top_k: 2, max_tokens: 300}}
        model: {{name: bench-model, params: {{temperature: 0}}}}
cases:
  - file: cases.jsonl
""")
    return suite


def run_once(suite: Path, db: Path, cache: Path, concurrency: int, cache_mode: str = "use") -> dict[str, Any]:
    """One evalgate run in this process: wall time, run phase, CPU, recorded elapsed."""
    from evalgate.api import run
    from evalgate.config import find_config
    from evalgate.runner import RunOptions

    options = RunOptions(concurrency=concurrency, cache_mode=cache_mode, cache_path=cache)
    cpu0, t0 = time.process_time(), time.perf_counter()
    report = run([str(suite)], config=find_config(suite.parent), store_path=db, options=options)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    s = report.suites[0]
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute("SELECT elapsed_ms, CAST(json_extract(trace, '$.latency_ms.model') AS DOUBLE) "
                           "FROM turns WHERE run_id = ?", [s.run_id]).fetchall()
    finally:
        con.close()
    elapsed = sorted(r[0] for r in rows if r[0] is not None)
    model = sorted(r[1] for r in rows if r[1] is not None)
    return {"wall_s": wall, "run_s": s.duration_s, "cpu_s": cpu, "turns": s.turns, "exit": report.exit_code,
            "pass_rate": s.metrics.get("pass_rate"), "elapsed": elapsed, "model": model}


def client_only(base_url: str, n: int, concurrency: int, delay: float) -> float:
    """CPU seconds the model client alone spends on n calls (no pipeline, no store)."""
    from evalgate.models import ModelClient, ModelRequest

    async def go() -> float:
        client = ModelClient(base_url, concurrency=concurrency, timeout_s=30, max_retries=2)
        try:
            requests = [ModelRequest("bench-model", [{"role": "system", "content": "Refund policy: ... " * 8},
                                                     {"role": "user", "content": f"client-only {i}"}],
                                     {"temperature": 0}) for i in range(n)]
            cpu0 = time.process_time()
            await asyncio.gather(*(client.complete(r) for r in requests))
            return time.process_time() - cpu0
        finally:
            await client.close()

    return asyncio.run(go())


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    k = min(len(values) - 1, max(0, round(q * (len(values) - 1))))
    return values[k]


def scenario_a(workdir: Path, runs: int) -> dict[str, Any]:
    n, delay, conc = 2000, 0.2, 32
    ideal = n * delay / conc
    server = Server(delay)
    cold, warm, calls_warm = [], [], []
    try:
        for r in range(runs):
            folder = workdir / f"a{r}"
            suite = write_suite(folder, n, server.base_url)
            db, cache = folder / "s.duckdb", folder / "cache.sqlite"
            for p in (db, cache):
                p.unlink(missing_ok=True)
            before = server.count()
            c = run_once(suite, db, cache, conc)
            made = server.count() - before
            w = run_once(suite, db, cache, conc)
            calls_warm.append(server.count() - before - made)
            cold.append(c)
            warm.append(w)
            print(f"  (a) run {r + 1}: cold run phase {c['run_s']:.2f} s (wall {c['wall_s']:.2f} s, {made} requests, "
                  f"exit {c['exit']}); warm run phase {w['run_s']:.2f} s, {calls_warm[-1]} requests", flush=True)
    finally:
        server.stop()
    cold_run = statistics.median(c["run_s"] for c in cold)
    warm_run = statistics.median(w["run_s"] for w in warm)
    return {"ideal_s": ideal, "cold_run_s": cold_run, "efficiency": ideal / cold_run,
            "cold_wall_s": statistics.median(c["wall_s"] for c in cold), "warm_run_s": warm_run,
            "speedup": cold_run / warm_run, "warm_requests": max(calls_warm),
            "warm_cpu_ms_per_turn": statistics.median(w["cpu_s"] / w["turns"] * 1000 for w in warm)}


def scenario_b(workdir: Path, runs: int) -> dict[str, Any]:
    n, delay, conc = 1000, 0.05, 64
    server = Server(delay)
    results, client_cpu = [], []
    try:
        for r in range(runs):
            folder = workdir / f"b{r}"
            suite = write_suite(folder, n, server.base_url)
            db, cache = folder / "s.duckdb", folder / "cache.sqlite"
            for p in (db, cache):
                p.unlink(missing_ok=True)
            res = run_once(suite, db, cache, conc, cache_mode="off")
            client_cpu.append(client_only(server.base_url, n, conc, delay) / n * 1000)
            results.append(res)
            e = res["elapsed"]
            print(f"  (b) run {r + 1}: {res['cpu_s'] / res['turns'] * 1000:.2f} ms CPU/turn in all, client alone "
                  f"{client_cpu[-1]:.2f} ms/call; elapsed p50 {pct(e, .5):.1f} ms p95 {pct(e, .95):.1f} ms; "
                  f"run phase {res['run_s']:.2f} s", flush=True)
    finally:
        server.stop()
    total = statistics.median(r["cpu_s"] / r["turns"] * 1000 for r in results)
    client = statistics.median(client_cpu)
    return {"cpu_ms_per_turn": total, "client_cpu_ms_per_call": client, "own_cpu_ms_per_turn": total - client,
            "p50_ms": statistics.median(pct(r["elapsed"], .5) for r in results),
            "p95_ms": statistics.median(pct(r["elapsed"], .95) for r in results),
            "run_s": statistics.median(r["run_s"] for r in results), "configured_ms": delay * 1000}


def scenario_c(workdir: Path, runs: int) -> list[dict[str, Any]]:
    delay = 0.05
    server = Server(delay)
    out = []
    try:
        for n, conc in ((1000, 64), (2000, 256)):
            results = []
            for r in range(runs):
                folder = workdir / f"c{conc}-{r}"
                suite = write_suite(folder, n, server.base_url)
                db, cache = folder / "s.duckdb", folder / "cache.sqlite"
                for p in (db, cache):
                    p.unlink(missing_ok=True)
                res = run_once(suite, db, cache, conc, cache_mode="off")
                results.append(res)
                e, m = res["elapsed"], res["model"]
                print(f"  (c) {conc} in flight, run {r + 1}: turns.elapsed_ms p50 {pct(e, .5):.1f} ms p95 "
                      f"{pct(e, .95):.1f} ms; latency_ms.model p50 {pct(m, .5):.1f} ms p95 {pct(m, .95):.1f} ms; "
                      f"{res['cpu_s'] / res['turns'] * 1000:.2f} ms CPU/turn; run phase {res['run_s']:.2f} s", flush=True)
            out.append({"concurrency": conc, "turns": n, "configured_ms": delay * 1000,
                        "p50_ms": statistics.median(pct(r["elapsed"], .5) for r in results),
                        "p95_ms": statistics.median(pct(r["elapsed"], .95) for r in results),
                        "model_p50_ms": statistics.median(pct(r["model"], .5) for r in results),
                        "model_p95_ms": statistics.median(pct(r["model"], .95) for r in results),
                        "cpu_ms_per_turn": statistics.median(r["cpu_s"] / r["turns"] * 1000 for r in results)})
    finally:
        server.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--scenario", default="a,b,c")
    parser.add_argument("--workdir", default=os.environ.get("EVALGATE_BENCH_DIR", os.path.join(tempfile.gettempdir(), "evalgate-bench-pipeline")))
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--delay", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--tls", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve(args.serve, args.delay, lambda: print("ready", flush=True), tuple(args.tls) if args.tls else None))
        return
    versions.print_header()  # what the figures below were measured with
    workdir = Path(args.workdir)
    wanted = set(args.scenario.split(","))
    targets = []
    if "a" in wanted:
        print("(a) 2,000 turns, 200 ms, concurrency 32")
        a = scenario_a(workdir, args.runs)
        print(f"(a) medians of {args.runs}: run phase {a['cold_run_s']:.2f} s vs ideal {a['ideal_s']:.1f} s "
              f"= {a['efficiency']:.1%} efficiency (wall {a['cold_wall_s']:.2f} s); warm cache: {a['warm_requests']} "
              f"requests, run phase {a['warm_run_s']:.2f} s = {a['speedup']:.1f}× faster, "
              f"{a['warm_cpu_ms_per_turn']:.2f} ms CPU/turn")
        targets += [("(a) efficiency ≥ 90%", a["efficiency"] >= 0.9), ("(a) warm cache: zero requests", a["warm_requests"] == 0),
                    ("(a) warm run phase ≥ 10× faster", a["speedup"] >= 10)]
    if "b" in wanted:
        print("(b) 1,000 turns, 50 ms, concurrency 64")
        b = scenario_b(workdir, args.runs)
        print(f"(b) medians of {args.runs}: CPU/turn {b['cpu_ms_per_turn']:.2f} ms = evalgate's own "
              f"{b['own_cpu_ms_per_turn']:.2f} ms + HTTP client {b['client_cpu_ms_per_call']:.2f} ms; recorded elapsed "
              f"p50 {b['p50_ms']:.1f} ms, p95 {b['p95_ms']:.1f} ms vs configured {b['configured_ms']:.0f} ms; "
              f"run phase {b['run_s']:.2f} s")
        targets += [("(b) evalgate's own CPU ≤ 1 ms/turn", b["own_cpu_ms_per_turn"] <= 1.0),
                    ("(b) p50 within 20% of 50 ms", b["p50_ms"] <= b["configured_ms"] * 1.2)]
    if "c" in wanted:
        print("(c) honest latency: 50 ms server, at 64 and 256 in flight")
        for c in scenario_c(workdir, args.runs):
            print(f"(c) {c['concurrency']} in flight, medians of {args.runs}: recorded elapsed p50 {c['p50_ms']:.1f} ms, "
                  f"p95 {c['p95_ms']:.1f} ms (latency_ms.model p50 {c['model_p50_ms']:.1f} ms, p95 "
                  f"{c['model_p95_ms']:.1f} ms) vs the server's {c['configured_ms']:.0f} ms; "
                  f"{c['cpu_ms_per_turn']:.2f} ms CPU/turn")
            targets += [(f"(c) {c['concurrency']} in flight: recorded p50 within 10% of the server's "
                         f"{c['configured_ms']:.0f} ms", abs(c["p50_ms"] - c["configured_ms"]) <= c["configured_ms"] * 0.1),
                        (f"(c) {c['concurrency']} in flight: latency_ms.model p50 within 10% of the server's "
                         f"{c['configured_ms']:.0f} ms",
                         abs(c["model_p50_ms"] - c["configured_ms"]) <= c["configured_ms"] * 0.1)]
    print("targets:")
    for name, ok in targets:
        print(f"  {'PASS' if ok else 'MISS'}  {name}")


if __name__ == "__main__":
    main()
