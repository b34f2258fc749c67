"""Robustness, measured: what a faulty model endpoint, kill -9, malformed files and huge answers do to evalgate.

    .venv/bin/python benchmarks/bench_faults.py [--only faults,kill,fuzz,answer,memory] [--workdir DIR] [--json-out FILE]

Every part drives the real command line in a subprocess, against real servers on 127.0.0.1 and real DuckDB files:

* faults: the reference pipeline target calling a local OpenAI-compatible endpoint (a child process) that answers
  20 % and then 60 % of requests with a mix of HTTP 500, HTTP 429 (Retry-After: 0) and a reply slower than the
  endpoint's timeout; 400 single-turn cases, -j 16, the response cache off. Reported: case runs stored of those
  selected, errored ones, requests the server saw and the retries among them (requests − case runs), exit code.
* kill: ``evalgate run`` of 1,500 cases (two turns each, a python target taking 2–8 ms a turn, -j 4) killed with SIGKILL at a random
  moment (seeded, anywhere in the time one whole run took), ten times, each on the same store. After each kill: ``evalgate history`` (runs it shows as
  running), the store opened by DuckDB and checked (every stored case run has all its turns, no half-written
  case); then every killed run is finished with ``run --resume`` and the store's rows read again (runs still
  ``running`` after the next command opened the store: target 0).
* fuzz: ``EVALGATE_FUZZ_EXAMPLES=400 pytest tests/test_fuzz_loaders.py`` with ``fuzz_tally.py`` counting every
  input: tried, read (exit 0/1), refused (exit 2) with an ``error: …`` message and naming the file, internal errors,
  the slowest input (hangs: > 30 s).
* answer: one case whose target answers 50 MB of text, from a python target and from an http target (a local
  server): stored cut to EVALGATE_MAX_TEXT_BYTES (1 MiB) with its size noted, the run completes; peak RSS.
* memory: ``bench_memory.py``'s 100k-case run, median of 3.

It prints each part's figures with the load average (``/proc/loadavg``) at its start and end, then a ``targets:``
block. It exits 0 whether or not a target is met (it measures), non-zero only when it could not measure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def evalgate(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 900,
             timed: bool = False) -> tuple[subprocess.CompletedProcess[str], float | None]:
    """The real command line; with ``timed`` under /usr/bin/time -v, returning the peak RSS in MB too."""
    argv = [sys.executable, "-m", "evalgate", *args]
    rss_file = cwd / ".time-v"
    if timed and Path("/usr/bin/time").exists():
        argv = ["/usr/bin/time", "-v", "-o", str(rss_file), *argv]
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "NO_COLOR": "1", **(env or {})})
    peak = None
    if timed and rss_file.exists():
        m = re.search(r"Maximum resident set size \(kbytes\):\s*(\d+)", rss_file.read_text())
        peak = int(m.group(1)) / 1024 if m else None
    return proc, peak


def query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


# --- faults: a model endpoint that fails ---------------------------------------------------------------------------


async def _serve_faulty(port: int, rate: float, slow_s: float, ready: Any) -> None:
    rng = random.Random(7)
    seen = {"requests": 0, "500": 0, "429": 0, "slow": 0, "ok": 0}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path = lines[0].split(" ")[:2]
                length = next((int(x.split(":", 1)[1]) for x in lines[1:] if x.lower().startswith("content-length:")), 0)
                body = await reader.readexactly(length) if length else b""
                status, extra = "200 OK", b""
                if method == "GET" and path.endswith("/count"):
                    payload = json.dumps(seen).encode()
                else:
                    seen["requests"] += 1
                    request = json.loads(body)
                    roll = rng.random()
                    kind = ("500", "429", "slow")[int(roll / rate * 3)] if roll < rate else "ok"
                    seen[kind] += 1
                    if kind == "slow":
                        await asyncio.sleep(slow_s)  # past the endpoint's timeout: the client has given up
                    else:
                        await asyncio.sleep(0.02)
                    if kind == "500":
                        status, payload = "500 Internal Server Error", b'{"error": {"message": "upstream fell over"}}'
                    elif kind == "429":
                        status, extra = "429 Too Many Requests", b"Retry-After: 0\r\n"
                        payload = b'{"error": {"message": "rate limited"}}'
                    else:
                        payload = json.dumps({
                            "id": "x", "object": "chat.completion", "created": 0, "model": request["model"],
                            "choices": [{"index": 0, "finish_reason": "stop", "message": {
                                "role": "assistant", "content": "Refunds take 5 to 7 business days."}}],
                            "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}}).encode()
                writer.write(f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(payload)}"
                             "\r\nConnection: keep-alive\r\n".encode() + extra + b"\r\n" + payload)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionResetError, asyncio.LimitOverrunError, BrokenPipeError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=512)
    ready()
    async with server:
        await server.serve_forever()


class FaultyEndpoint:
    """The endpoint in a child process: ``rate`` of requests fail (500, 429 or too slow, in equal shares)."""

    def __init__(self, rate: float, slow_s: float):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve-faulty", str(self.port), str(rate), str(slow_s)],
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.proc.stdout.readline()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"

    def seen(self) -> dict[str, int]:
        with urllib.request.urlopen(f"{self.base_url}/count", timeout=10) as resp:
            data: dict[str, int] = json.loads(resp.read())
            return data

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


PIPELINE_SUITE = """\
name: faults
documents: docs.jsonl
target:
  pipeline:
    endpoint: {{base_url: "{base_url}", timeout_s: 2}}
    router:
      fallback: refunds
      rules: [{{route: refunds, keywords: [refund]}}]
    routes:
      refunds:
        context: {{query: "refund policy {{{{ input }}}}", top_k: 1}}
        model: {{name: faulty-model}}
cases:
  - file: cases.jsonl
"""


def part_faults(workdir: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for rate in (0.2, 0.6):
        folder = workdir / f"faults-{int(rate * 100)}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        (folder / "docs.jsonl").write_text(json.dumps({"id": "kb/refund-policy", "title": "Refunds", "groups": [],
                                                       "text": "Refunds take 5 to 7 business days."}) + "\n")
        (folder / "cases.jsonl").write_text("".join(json.dumps(
            {"id": f"c{i:03d}", "input": f"refund for order {1000 + i}", "expect": {"route": "refunds"}}) + "\n"
            for i in range(400)))
        server = FaultyEndpoint(rate, slow_s=5.0)
        try:
            (folder / "suite.yaml").write_text(PIPELINE_SUITE.format(base_url=server.base_url))
            before = load()
            t0 = time.perf_counter()
            proc, _ = evalgate("run", "suite.yaml", "-j", "16", "--cache-mode", "off", "--json", "--db", "s.duckdb",
                               cwd=folder)
            wall = time.perf_counter() - t0
            seen = server.seen()
        finally:
            server.stop()
        report = json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else {}
        s = (report.get("suites") or [{}])[0]
        stored = query(folder / "s.duckdb", "SELECT count(*), count(*) FILTER (errored) FROM cases")[0]
        out[f"{int(rate * 100)}%"] = {
            "cases_stored": stored[0], "cases_total": 400, "errored": stored[1], "exit": proc.returncode,
            "requests": seen["requests"], "retries": seen["requests"] - 400,
            "faults": {k: seen[k] for k in ("500", "429", "slow")}, "wall_s": round(wall, 1),
            "reason": (s.get("verdict") or {}).get("reasons", [""])[:1], "load": [before, load()]}
        print(f"faults {int(rate * 100)}%: {stored[0]} of 400 case runs stored, {stored[1]} errored, "
              f"{seen['requests']} requests ({seen['requests'] - 400} retries; faults {out[f'{int(rate * 100)}%']['faults']}), "
              f"exit {proc.returncode}, {wall:.0f} s, load {before} → {load()}", flush=True)
    return out


# --- kill -9 at random moments -----------------------------------------------------------------------------------

KILL_BOT = '''\
import random, time

def respond(req):
    time.sleep(random.uniform(0.002, 0.008))
    return {"output": "ok " + req["input"], "route": {"name": "smalltalk"}, "state": {"n": req["input"]}}
'''


def part_kill(workdir: Path, kills: int = 10, seed: int = 14) -> dict[str, Any]:
    folder = workdir / "kill"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / "bot.py").write_text(KILL_BOT)
    cases = "".join(f"  - {{id: c{i:04d}, turns: [{{input: a{i}}}, {{input: b{i}, expect: {{route: smalltalk}}}}]}}\n"
                    for i in range(1500))
    (folder / "suite.yaml").write_text(f"name: kill\ntarget: {{python: bot:respond}}\ncases:\n{cases}")
    db = folder / "s.duckdb"
    rng = random.Random(seed)
    before = load()
    t0 = time.perf_counter()  # one whole run first: the kills fall anywhere in a run this long
    calibration, _ = evalgate("run", "suite.yaml", "-j", "4", "--db", str(db), cwd=folder)
    whole = time.perf_counter() - t0
    if calibration.returncode not in (0, 1):
        raise SystemExit(f"the unkilled run failed: {calibration.stderr[-500:]}")
    killed_at, shown_running, checks_failed, finished_first = [], 0, [], 0
    for i in range(kills):
        at = rng.uniform(0.02, 0.98) * whole
        proc = subprocess.Popen([sys.executable, "-m", "evalgate", "run", "suite.yaml", "-j", "4", "--db", str(db)],
                                cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(at)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        else:
            finished_first += 1
        proc.wait()
        killed_at.append(round(at, 2))
        hist, _ = evalgate("history", "--json", "--db", str(db), cwd=folder)
        rows = json.loads(hist.stdout) if hist.returncode == 0 else []
        shown_running += sum(1 for r in rows if r["status"] == "running")
        try:  # the store opens, and no case run was stored without all its turns
            bad = query(db, "SELECT count(*) FROM cases c WHERE n_turns <> (SELECT count(*) FROM turns t WHERE "
                            "t.run_id = c.run_id AND t.case_id = c.case_id AND t.repeat = c.repeat)")[0][0]
            if bad:
                checks_failed.append(f"kill {i + 1}: {bad} case runs without all their turns")
        except Exception as exc:  # a corrupt store
            checks_failed.append(f"kill {i + 1}: {type(exc).__name__}: {exc}")
    runs = query(db, "SELECT run_id, status FROM runs ORDER BY started_at") if db.exists() else []
    in_db_running = sum(1 for _, st in runs if st == "running")
    resumed, resume_failed = 0, []
    for run_id, status in runs:
        if status in ("running", "interrupted"):
            proc, _ = evalgate("run", "--resume", run_id, "--json", "--db", str(db), cwd=folder)
            if proc.returncode in (0, 1):
                resumed += 1
            else:
                resume_failed.append(f"{run_id}: exit {proc.returncode} {proc.stderr.strip()[-200:]}")
    after = query(db, "SELECT status, count(*), sum(cases_done) FROM runs GROUP BY status")
    complete = query(db, "SELECT count(*) FROM (SELECT run_id FROM cases GROUP BY run_id HAVING count(*) = 1500)")[0][0] - 1
    result = {"kills": kills, "whole_run_s": round(whole, 1), "killed_at_s": killed_at, "finished_before_the_kill": finished_first,
              "killed_runs_stored": len(runs) - 1, "left_running_in_the_store_before_the_next_run": in_db_running,
              "shown_running_by_history": shown_running, "store_checks_failed": checks_failed,
              "resumed": resumed, "resume_failed": resume_failed, "status_after": {s: n for s, n, _ in after},
              "killed_runs_with_all_1500_cases": complete, "load": [before, load()]}
    print(f"kill -9 ×{kills} (at {killed_at} s of a {whole:.1f} s run): {len(runs) - 1} of them stored a run; history showed {shown_running} running; "
          f"store checks failed: {len(checks_failed)}; resumed {resumed} of the {kills - finished_first} killed before they finished, "
          f"statuses after {result['status_after']}; killed runs with all 1,500 cases in the end {complete}; load {before} → {load()}",
          flush=True)
    return result


# --- the loader fuzz at depth ---------------------------------------------------------------------------------------


def part_fuzz(workdir: Path, examples: int = 400) -> dict[str, Any]:
    tally = workdir / "fuzz-tally.jsonl"
    tally.unlink(missing_ok=True)
    before = load()
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "tests/test_fuzz_loaders.py", "-n", "0", "-q",
                           "-p", "no:cacheprovider", "-p", "fuzz_tally", "--timeout", "900"], cwd=REPO,
                          capture_output=True, text=True,
                          env={**os.environ, "EVALGATE_FUZZ_EXAMPLES": str(examples), "EVALGATE_FUZZ_TALLY": str(tally),
                               "PYTHONPATH": str(HERE)})
    wall = time.perf_counter() - t0
    rows = [json.loads(line) for line in tally.read_text().splitlines()] if tally.exists() else []
    codes: dict[int, int] = {}
    for r in rows:
        codes[r["code"]] = codes.get(r["code"], 0) + 1
    refused = [r for r in rows if r["code"] == 2]
    result = {"inputs": len(rows), "exit_codes": codes, "refused_exit_2": len(refused),
              "refused_with_a_message": sum(1 for r in refused if r["message"]),
              "refused_naming_a_file": sum(1 for r in refused if r.get("names_file")),
              "internal_errors": sum(1 for r in rows if r["internal"]),
              "other_exit": sum(1 for r in rows if r["code"] not in (0, 1, 2)),
              "slowest_input_s": max((r["seconds"] for r in rows), default=None),
              "hangs_over_30s": sum(1 for r in rows if r["seconds"] > 30),
              "pytest_exit": proc.returncode, "pytest_tail": proc.stdout.strip().splitlines()[-1:],
              "wall_s": round(wall), "load": [before, load()]}
    clear = 100 * result["refused_with_a_message"] / len(refused) if refused else 100.0
    named = 100 * result["refused_naming_a_file"] / len(refused) if refused else 100.0
    print(f"fuzz ({examples} examples a test): {len(rows)} inputs; exit codes {codes}; refused (exit 2) "
          f"{len(refused)}, saying 'error: …' {clear:.1f} %, naming the file {named:.1f} %; internal errors {result['internal_errors']}; "
          f"slowest {result['slowest_input_s']} s; pytest exit {proc.returncode}; {wall:.0f} s; load {before} → {load()}",
          flush=True)
    return result


# --- the largest answer ---------------------------------------------------------------------------------------------

HUGE_BOT = '''\
def respond(req):
    return {"output": "y" * 50_000_000, "route": {"name": "smalltalk"}}
'''


def _serve_huge(port: int, ready: Any) -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    body = json.dumps({"output": "z" * 50_000_000, "route": {"name": "smalltalk"}}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    ready()
    srv.serve_forever()


def part_answer(workdir: Path) -> dict[str, Any]:
    folder = workdir / "answer"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / "huge.py").write_text(HUGE_BOT)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, __file__, "--serve-huge", str(port)], stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    server.stdout.readline()
    out: dict[str, Any] = {}
    try:
        for kind, target in (("python", "{python: huge:respond}"), ("http", f'{{http: "http://127.0.0.1:{port}/"}}')):
            (folder / f"{kind}.yaml").write_text(f"name: huge-{kind}\ntarget: {target}\ntimeout_s: 60\n"
                                                 "cases: [{id: a, input: say a lot}, {id: b, input: again}]\n")
            before = load()
            proc, peak = evalgate("run", f"{kind}.yaml", "--json", "--db", f"{kind}.duckdb", cwd=folder, timed=True)
            rows = query(folder / f"{kind}.duckdb", "SELECT strlen(output), error, "
                         "json_extract_string(trace, '$.extra.evalgate_sanitized[0]') FROM turns ORDER BY case_id")
            status = query(folder / f"{kind}.duckdb", "SELECT status, cases_done FROM runs")[0]
            out[kind] = {"exit": proc.returncode, "status": status[0], "cases_stored": status[1],
                         "stored_bytes": [r[0] for r in rows], "errors": [r[1] for r in rows],
                         "note": rows[0][2] if rows else None, "peak_rss_mb": round(peak) if peak else None,
                         "load": [before, load()]}
            print(f"answer 50 MB ({kind} target): exit {proc.returncode}, run {status[0]}, {status[1]} of 2 case runs "
                  f"stored, output stored {[r[0] for r in rows]} bytes, note {out[kind]['note']!r}, errors "
                  f"{[r[1] for r in rows]}, peak RSS {out[kind]['peak_rss_mb']} MB, load {before} → {load()}",
                  flush=True)
    finally:
        server.terminate()
        server.wait(10)
    return out


# --- peak memory of a 100k-case run ---------------------------------------------------------------------------------


def part_memory(workdir: Path, runs: int = 3) -> dict[str, Any]:
    import bench_memory

    suite = bench_memory.ensure_project(workdir, 100_000)
    samples = []
    for _ in range(runs):
        samples.append(bench_memory.run_once(suite, suite.with_name("bench.duckdb")))
    peaks = [float(s["peak"]) for s in samples]  # type: ignore[arg-type]
    walls = [float(s["wall"]) for s in samples]  # type: ignore[arg-type]
    result = {"peak_rss_mb": round(statistics.median(peaks)), "runs_mb": [round(p) for p in peaks],
              "wall_s": [round(w, 1) for w in walls], "exit": [s["code"] for s in samples],
              "load_at_starts": [s["load"] for s in samples]}
    print(f"memory, 100k cases: peak RSS {result['peak_rss_mb']} MB (median of {runs}: {result['runs_mb']}), wall "
          f"{result['wall_s']} s, exits {result['exit']}, load at the starts {result['load_at_starts']}", flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default="faults,kill,fuzz,answer,memory")
    ap.add_argument("--workdir", type=Path,
                    default=Path(os.environ.get("EVALGATE_BENCH_DIR", "/tmp/evalgate-bench")) / "faults")
    ap.add_argument("--json-out", type=Path)
    args = ap.parse_args(argv)
    import versions

    versions.print_header()  # what the figures below were measured with
    args.workdir.mkdir(parents=True, exist_ok=True)
    parts = {"faults": part_faults, "kill": part_kill, "fuzz": part_fuzz, "answer": part_answer, "memory": part_memory}
    results: dict[str, Any] = {}
    for name in args.only.split(","):
        results[name] = parts[name](args.workdir)
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=2))
    print("targets:")
    if "faults" in results:
        for rate, r in results["faults"].items():
            print(f"  {'PASS' if r['cases_stored'] == r['cases_total'] else 'MISS'} faults {rate}: every case run stored "
                  f"({r['cases_stored']} of {r['cases_total']})")
    if "kill" in results:
        k = results["kill"]
        print(f"  {'PASS' if not k['shown_running_by_history'] and not k['status_after'].get('running') else 'MISS'} "
              f"kill -9: no run left running ({k['shown_running_by_history']} shown, "
              f"{k['status_after'].get('running', 0)} stored after the next run)")
        print(f"  {'PASS' if not k['store_checks_failed'] else 'MISS'} kill -9: the store never corrupt")
    if "fuzz" in results:
        f = results["fuzz"]
        print(f"  {'PASS' if f['refused_with_a_message'] == f['refused_exit_2'] and not f['other_exit'] else 'MISS'} "
              f"fuzz: every refusal exit 2 with a message, nothing else ({f['other_exit']} other exits)")
        print(f"  {'PASS' if not f['internal_errors'] else 'MISS'} fuzz: internal errors 0 ({f['internal_errors']})")
        print(f"  {'PASS' if not f['hangs_over_30s'] else 'MISS'} fuzz: hangs 0 ({f['hangs_over_30s']})")
    if "answer" in results:
        for kind, a in results["answer"].items():
            print(f"  {'PASS' if a['status'] == 'completed' and a['cases_stored'] == 2 else 'MISS'} 50 MB answer "
                  f"({kind}): stored cut, the run completes")
    if "memory" in results:
        m = results["memory"]
        print(f"  {'PASS' if m['peak_rss_mb'] <= 400 else 'MISS'} peak RSS of a 100k-case run ≤ 400 MB "
              f"({m['peak_rss_mb']} MB)")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--serve-faulty":
        asyncio.run(_serve_faulty(int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]),
                                  lambda: print("ready", flush=True)))
    elif len(sys.argv) > 1 and sys.argv[1] == "--serve-huge":
        _serve_huge(int(sys.argv[2]), lambda: print("ready", flush=True))
    else:
        raise SystemExit(main())
