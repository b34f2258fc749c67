"""Throughput of ``run --executor ray`` against the local executor, on a target that costs CPU.

    python benchmarks/bench_ray.py [--cases 300] [--burn-ms 20] [--runs 3]

One suite of ``--cases`` single-turn cases; the python target burns ``--burn-ms``
of CPU time per turn (hashing, so the cost is CPU, not waiting) and answers
deterministically. It runs through ``evalgate.run`` (store, gate and all) with:

  * the local executor: one process, its turns in threads (the GIL makes it one core's work);
  * ``--executor ray`` on a local Ray session of 1 CPU (one worker), then of 2 CPUs (two workers),
    started with ``ray.init(num_cpus=N)`` on this machine (the session's start-up is printed apart: a
    cluster is started once, not per run).

The three alternate (local, 1, 2, local, 1, 2, ...), each run in a fresh process, so load from
other work on the machine falls on all three alike.

For each: case runs per second over the whole ``evalgate.run`` call (suite load, workers' start,
store, gate) and over the run phase alone, medians of ``--runs``, with the load average
(``/proc/loadavg``) before each run. Every run must give the same verdict and pass count (exit 1 if not).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
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


CONFIGS = {"local": ("local executor", None, 0), "ray1": ("ray, 1 worker", "ray", 1), "ray2": ("ray, 2 workers", "ray", 2)}


def child(config: str, root: Path, n: int) -> None:
    """One measured run in this fresh process: its Ray session (if any) started first, outside the figure."""
    _label, executor, cpus = CONFIGS[config]
    started = 0.0
    if cpus:
        import ray

        t0 = time.perf_counter()
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
        started = time.perf_counter() - t0
    result = one_run(root, executor, n)
    result["ray_start"] = started
    print("RESULT " + json.dumps(result), flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=300)
    ap.add_argument("--burn-ms", type=float, default=20.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--child", choices=sorted(CONFIGS), help=argparse.SUPPRESS)
    ap.add_argument("--root", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child, Path(args.root), args.n)
        return 0
    versions.print_header()
    root = project(Path(tempfile.mkdtemp(prefix="evalgate-bench-ray-")), args.cases, args.burn_ms)
    print(f"{args.cases} single-turn cases, {args.burn_ms:g} ms of CPU each; the three set-ups interleaved, "
          f"each run in a fresh process; medians of {args.runs}", flush=True)
    rows: dict[str, list[dict[str, Any]]] = {c: [] for c in CONFIGS}
    n = 0
    for _ in range(args.runs):
        for config, (label, _executor, _cpus) in CONFIGS.items():
            n += 1
            proc = subprocess.run([sys.executable, __file__, "--child", config, "--root", str(root), "--n", str(n)],
                                  capture_output=True, text=True, timeout=600)
            line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
            if proc.returncode != 0 or line is None:
                sys.stderr.write(proc.stdout + proc.stderr)
                return 1
            r = json.loads(line[len("RESULT "):])
            rows[config].append(r)
            start = f"  (Ray session started in {r['ray_start']:.1f} s, not counted)" if r["ray_start"] else ""
            print(f"  {label:<16} {r['cases'] / r['wall']:6.1f} case runs/s whole, {r['cases'] / r['phase']:6.1f} "
                  f"run phase ({r['wall']:.2f} s, {r['phase']:.2f} s)  passed {r['passed']:.0f}  {r['verdict']}  "
                  f"load {r['load']}{start}", flush=True)
    print(f"\nmedians of {args.runs} (case runs per second)  load average now {load()}")
    base = statistics.median(r["cases"] / r["wall"] for r in rows["local"])
    for config, (label, _executor, _cpus) in CONFIGS.items():
        whole = statistics.median(r["cases"] / r["wall"] for r in rows[config])
        phase = statistics.median(r["cases"] / r["phase"] for r in rows[config])
        print(f"  {label:<16} whole {whole:6.1f} ({whole / base:4.2f}x local)   run phase {phase:6.1f}")
    outcomes = {(r["cases"], r["passed"], r["verdict"]) for rs in rows.values() for r in rs}
    print(f"outcomes (cases, passed, verdict): {sorted(outcomes)}")
    return 0 if len(outcomes) == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
