"""The http target against a service with a known delay: throughput and what it records for each turn.

    .venv/bin/python benchmarks/bench_http_target.py [--cases 1000] [--concurrency 64,256] [--delay-ms 50] [--runs 3]
        [--https] [--target http|python-async|python-sync]

A team's own service, as the http target meets it: bench_pipeline.py's mock server (a child process, a fixed
delay per request, keep-alive, a request counter) reached through the target's own API mapping (a `body:`
template and a `response:` JMESPath). For each concurrency it runs `evalgate run SUITE -j N` as a fresh process
and prints wall, CPU per turn (the child's rusage), the requests the server counted, and the p50/p95 of the
elapsed time the store keeps for each turn against the server's delay, with PASS/MISS for issue 18's "p50 within
10 % of the server's delay".

Beside each, the floor: a bare asyncio client in a process of its own (one keep-alive connection per request in
flight, the same requests, nothing else to do) times the same calls against the same server. What the server
itself adds at that concurrency (its own loop, its share of the two cores) is in the floor's figure; what evalgate
records above the floor is the harness's.

``--target python-async`` / ``python-sync`` puts a team's own Python function in the http target's place: the
``python:`` target calling the same server through the openai package's ``AsyncOpenAI`` (awaited) or ``OpenAI``
(in the target's threads), a client made once at import, as a team's code makes it. Its floor is the same
function called bare in a process of its own (an ``asyncio.gather`` of ``concurrency`` at a time, or as many
threads), so the client's own cost is in both figures and only the harness's is told apart.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_pipeline
import versions


def suite(folder: Path, n: int, base_url: str) -> Path:
    (folder / "cases.jsonl").write_text("".join(json.dumps({"id": f"c{i:05d}", "input": f"hello {i}"}) + "\n"
                                                for i in range(n)))
    path = folder / "http.yaml"
    path.write_text(f"""
name: bench-http-target
target:
  http: "{base_url}/chat/completions"
  body:
    model: bench-model
    messages: [{{role: user, content: "{{{{ input }}}}"}}]
  response:
    output: "choices[0].message.content"
cases:
  - file: cases.jsonl
""")
    return path


APP = """
import os

from openai import AsyncOpenAI, OpenAI

aclient = AsyncOpenAI(base_url=os.environ["BENCH_BASE_URL"], api_key="bench", max_retries=0)
client = OpenAI(base_url=os.environ["BENCH_BASE_URL"], api_key="bench", max_retries=0)


async def answer_async(request):
    reply = await aclient.chat.completions.create(
        model="bench-model", messages=[{"role": "user", "content": request["input"]}])
    return reply.choices[0].message.content


def answer_sync(request):
    reply = client.chat.completions.create(model="bench-model", messages=[{"role": "user", "content": request["input"]}])
    return reply.choices[0].message.content
"""
"""A team's own function: one client for the process, made at import."""


def python_suite(folder: Path, n: int, kind: str) -> Path:
    """The same cases through ``team_app:answer_async`` or ``answer_sync`` (the ``python:`` target)."""
    (folder / "team_app.py").write_text(APP)
    suite(folder, n, "unused")
    path = folder / f"{kind}.yaml"
    path.write_text(f"""
name: bench-{kind}-target
target: {{python: "team_app:answer_{kind.removeprefix('python-')}"}}
cases:
  - file: cases.jsonl
""")
    return path


def _floor_python(folder: str, kind: str, n: int, concurrency: int) -> list[float]:
    """Milliseconds around each call of the team's function, called bare: ``concurrency`` at a time."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    sys.path.insert(0, folder)
    import team_app

    requests = [{"input": f"hello {i}"} for i in range(n)]
    times: list[float] = []
    if kind == "python-sync":
        def one(request: dict[str, str]) -> None:
            t0 = time.perf_counter()
            team_app.answer_sync(request)
            times.append((time.perf_counter() - t0) * 1000)

        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(one, requests))
        return times

    async def calls() -> None:
        gate = asyncio.Semaphore(concurrency)

        async def one(request: dict[str, str]) -> None:
            async with gate:
                t0 = time.perf_counter()
                await team_app.answer_async(request)
                times.append((time.perf_counter() - t0) * 1000)

        await asyncio.gather(*(one(r) for r in requests))

    asyncio.run(calls())
    return times


async def _floor_calls(url: str, n: int, concurrency: int, cafile: str | None = None) -> list[float]:
    """Milliseconds from writing each request to reading the whole answer, for a bare keep-alive client."""
    import asyncio
    import re
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host, port, path = parts.hostname or "127.0.0.1", parts.port or 80, parts.path
    todo = iter(range(n))
    times: list[float] = []
    context = None
    if parts.scheme == "https":
        import ssl

        context = ssl.create_default_context(cafile=cafile)

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(host, port, ssl=context)
        for i in todo:
            body = json.dumps({"model": "bench-model", "messages": [{"role": "user", "content": f"hello {i}"}]}).encode()
            request = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                       f"Content-Length: {len(body)}\r\n\r\n").encode() + body
            t0 = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            found = re.search(rb"(?i)content-length:\s*(\d+)", head)
            await reader.readexactly(int(found.group(1)) if found else 0)
            times.append((time.perf_counter() - t0) * 1000)
        writer.close()

    await asyncio.gather(*(connection() for _ in range(concurrency)))
    return times


def floor(url: str, n: int, concurrency: int, cafile: Path | None = None, kind: str = "http",
          folder: Path | None = None, env: dict[str, str] | None = None) -> tuple[float, float]:
    """The bare client's p50 and p95, run in a fresh process as evalgate is."""
    argv = ([sys.executable, __file__, "--floor-python", str(folder), kind, str(n), str(concurrency)]
            if kind != "http" else [sys.executable, __file__, "--floor", url, str(n), str(concurrency), str(cafile or "")])
    out = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=True, env=env)
    times = sorted(json.loads(out.stdout))
    return statistics.median(times), times[int(len(times) * 0.95)]


def main() -> int:
    if sys.argv[1:2] == ["--floor"]:
        import asyncio

        url, n, concurrency = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
        print(json.dumps(asyncio.run(_floor_calls(url, n, concurrency, sys.argv[5] or None))))
        return 0
    if sys.argv[1:2] == ["--floor-python"]:
        print(json.dumps(_floor_python(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=1000)
    ap.add_argument("--concurrency", default="64,256")
    ap.add_argument("--delay-ms", type=float, default=50.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--https", action="store_true", help="the service on https (a self-signed certificate that "
                    "evalgate and the bare client trust through SSL_CERT_FILE)")
    ap.add_argument("--target", choices=("http", "python-async", "python-sync"), default="http",
                    help="the http target (default), or a team's own function through the python target")
    args = ap.parse_args()
    print(versions.header(), flush=True)
    exe = str(Path(sys.executable).with_name("evalgate"))
    work = Path(tempfile.mkdtemp(prefix="evalgate-http-"))
    tls = bench_pipeline.self_signed(work) if args.https else None
    env = {**os.environ, "SSL_CERT_FILE": str(tls[0])} if tls else None
    server = bench_pipeline.Server(args.delay_ms / 1000, tls)
    try:
        if args.target == "http":
            path = suite(work, args.cases, server.base_url)
        else:
            path = python_suite(work, args.cases, args.target)
            env = {**(env or os.environ), "BENCH_BASE_URL": server.base_url}
        print(f"target: {args.target}", flush=True)
        for conc in (int(c) for c in args.concurrency.split(",")):
            walls, cpus, p50s, p95s, floors = [], [], [], [], []
            for r in range(args.runs):
                floors.append(floor(f"{server.base_url}/chat/completions", args.cases, conc, tls[0] if tls else None,
                                    args.target, work, env))
                db = work / f"h-{conc}-{r}.duckdb"
                before = server.count()
                load = os.getloadavg()[0]
                t0 = time.perf_counter()
                proc = subprocess.Popen([exe, "run", str(path), "-j", str(conc), "--db", str(db), "--json"], cwd=work,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
                _, status, usage = os.wait4(proc.pid, 0)
                wall = time.perf_counter() - t0
                code = os.waitstatus_to_exitcode(status)
                if code not in (0, 1):
                    sys.exit(f"evalgate exited {code}: {proc.stderr.read().decode()[-1500:] if proc.stderr else ''}")
                import duckdb

                con = duckdb.connect(str(db), read_only=True)
                elapsed = sorted(x for (x,) in con.execute("SELECT elapsed_ms FROM turns").fetchall() if x is not None)
                con.close()
                p50, p95 = statistics.median(elapsed), elapsed[int(len(elapsed) * 0.95)]
                cpu = usage.ru_utime + usage.ru_stime
                walls.append(wall), cpus.append(cpu), p50s.append(p50), p95s.append(p95)
                print(f"  {args.cases:,} at {conc}, run {r + 1}: wall {wall:.2f} s, CPU {cpu / args.cases * 1000:.2f} ms "
                      f"per turn, {server.count() - before} requests, recorded p50 {p50:.1f} ms p95 {p95:.1f} ms; "
                      f"the bare client's p50 {floors[-1][0]:.1f} ms p95 {floors[-1][1]:.1f} ms; load {load:.2f}",
                      flush=True)
            p50 = statistics.median(p50s)
            floor_p50 = statistics.median(f[0] for f in floors)
            # a team's function: its own client's time is the system's, so the reference is the same function bare
            reference = args.delay_ms if args.target == "http" else floor_p50
            ok = abs(p50 - reference) <= reference * 0.10
            ideal = args.cases * args.delay_ms / 1000 / conc
            print(f"{'PASS' if ok else 'MISS'}  {conc} in flight: wall {statistics.median(walls):.2f} s (ideal "
                  f"{ideal:.2f} s), CPU {statistics.median(cpus) / args.cases * 1000:.2f} ms per turn, recorded p50 "
                  f"{p50:.1f} / p95 {statistics.median(p95s):.1f} ms against " + (
                      f"the server's {args.delay_ms:g} ms" if args.target == "http" else
                      f"the function's own {floor_p50:.1f} ms, called bare") + " (target: p50 within 10 %)", flush=True)
            print(f"      the bare client at {conc} in flight: p50 {floor_p50:.1f} / p95 "
                  f"{statistics.median(f[1] for f in floors):.1f} ms; evalgate records {p50 - floor_p50:+.1f} ms "
                  f"({(p50 - floor_p50) / floor_p50 * 100:+.1f} %) at the p50 over it", flush=True)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
