"""Throughput of ``run --executor ray`` against the local executor, on a target that costs CPU.

    python benchmarks/bench_ray.py [--cases 300] [--burn-ms 20] [--runs 3]

One suite of ``--cases`` single-turn cases; the python target burns ``--burn-ms``
of CPU time per turn (hashing, so the cost is CPU, not waiting) and answers
deterministically. It runs through ``evalgate.run`` (store, gate and all) with:

  * the local executor: one process, its turns in threads (the GIL makes it one core's work);
  * ``--executor ray`` on a local Ray session of 1 CPU (one worker), then of 2 CPUs (two workers),
    started in this process with ``ray.init(num_cpus=N)`` on 127.0.0.1 (the session's start-up is
    printed apart: a cluster is started once, not per run).

For each: case runs per second over the whole ``evalgate.run`` call (suite load, workers' start,
store, gate) and over the run phase alone, medians of ``--runs``, with the load average
(``/proc/loadavg``) before each run. Every run must give the same verdict and pass count.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import versions

BOT = '''
import hashlib, time

def respond(req):
    burn = float(req["state"].get("burn_ms", 20)) / 1000
    start, digest = time.thread_time(), req["input"].encode()
    while time.thread_time() - start < burn:  # CPU, not waiting: what a costly scorer or a local model costs
        for _ in range(200):
            digest = hashlib.sha256(digest).digest()
    return {"route": {"name": "smalltalk"}, "output": f"echo {hashlib.sha256(req['input'].encode()).hexdigest()[:6]}"}
'''


def project(root: Path, cases: int, burn_ms: float) -> Path:
    (root / "suites").mkdir(parents=True)
    (root / "pyproject.toml").write_text('[tool.evalgate]\nsuites = "suites"\n', encoding="utf-8")
    (root / "burnbot.py").write_text(BOT, encoding="utf-8")
    lines = [f"  - {{id: c{i:05d}, input: 'question {i}', state: {{burn_ms: {burn_ms}}}, "
             f"expect: {{output: {{regex: 'echo [0-9a-b]'}}}}}}" for i in range(cases)]
    (root / "suites" / "burn.yaml").write_text(
        "name: burn\ntarget: {python: burnbot:respond}\ngate:\n  rules:\n    - {metric: pass_rate, min: 0.5}\n"
        "cases:\n" + "\n".join(lines) + "\n", encoding="utf-8")
    return root


def load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def one_run(root: Path, executor: str | None, n: int) -> dict[str, Any]:
    import evalgate
    from evalgate.config import find_config
    from evalgate.runner import RunOptions

    before = load()
    t0 = time.perf_counter()
    report = evalgate.run(None, config=find_config(root), store_path=root / f"run-{n}.duckdb",
                          options=RunOptions(executor=executor))
    wall = time.perf_counter() - t0
    s = report.suites[0]
    return {"wall": wall, "phase": s.duration_s, "cases": s.cases, "passed": s.metrics.get("passed"),
            "verdict": s.verdict.status, "load": before}


def measure(label: str, root: Path, executor: str | None, runs: int, counter: list[int]) -> dict[str, Any]:
    rows = []
    for _ in range(runs):
        counter[0] += 1
        r = one_run(root, executor, counter[0])
        rows.append(r)
        print(f"  {label:<22} {r['cases'] / r['wall']:7.1f} case runs/s whole, {r['cases'] / r['phase']:7.1f} run phase "
              f"({r['wall']:.2f} s, {r['phase']:.2f} s)  passed {r['passed']:.0f}  {r['verdict']}  load {r['load']}",
              flush=True)
    return {"label": label, "whole": statistics.median(r["cases"] / r["wall"] for r in rows),
            "phase": statistics.median(r["cases"] / r["phase"] for r in rows),
            "outcome": {(r["cases"], r["passed"], r["verdict"]) for r in rows}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=300)
    ap.add_argument("--burn-ms", type=float, default=20.0)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args(argv)
    versions.print_header()
    import ray

    root = project(Path(tempfile.mkdtemp(prefix="evalgate-bench-ray-")), args.cases, args.burn_ms)
    print(f"{args.cases} single-turn cases, {args.burn_ms:g} ms of CPU each; medians of {args.runs}", flush=True)
    counter = [0]
    results = [measure("local executor", root, None, args.runs, counter)]
    for cpus in (1, 2):
        t0 = time.perf_counter()
        ray.init(num_cpus=cpus, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
        print(f"  (a local Ray session of {cpus} CPU(s) started in {time.perf_counter() - t0:.1f} s)", flush=True)
        try:
            results.append(measure(f"ray, {cpus} worker(s)", root, "ray", args.runs, counter))
        finally:
            ray.shutdown()
    print(f"\nmedians of {args.runs} (case runs per second)  load average now {load()}")
    base = results[0]["whole"]
    for r in results:
        print(f"  {r['label']:<22} whole {r['whole']:7.1f} ({r['whole'] / base:4.2f}x local)   run phase {r['phase']:7.1f}")
    outcomes = set().union(*(r["outcome"] for r in results))
    print(f"outcomes (cases, passed, verdict): {sorted(outcomes)}")
    return 0 if len(outcomes) == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
