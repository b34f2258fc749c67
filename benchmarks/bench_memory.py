"""Peak memory of a large live run: ``evalgate run`` with a python target over one dataset of N single-turn cases.

Writes (once, in the work folder) a project: a sync python target that routes by keyword and answers in a
sentence, a JSON-lines dataset of N cases (one turn each, expecting a route and an output check), and a suite
naming it. Then runs ``evalgate run SUITE --db FRESH.duckdb --json`` as a subprocess ``--runs`` times on a fresh
store under ``/usr/bin/time -v`` (else ``os.wait4``'s rusage) for the child's peak RSS, and the wall time of the
whole command.

    python benchmarks/bench_memory.py [--cases 100000] [--runs 3] [--workdir DIR] [--trace-malloc]

``--trace-malloc`` runs once more in this process with tracemalloc and prints the largest allocation sites at the
peak (slower; for finding where the memory goes, not for the figures).

Target: peak RSS ≤ 400 MB at 100k cases.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
TARGET_PEAK_MB = 400

BOT = '''\
def respond(req):
    text = req["input"].lower()
    route = "refunds" if "refund" in text else "order_status" if "order" in text else "smalltalk"
    return {"route": {"name": route, "confidence": 0.9, "reason": "keyword"},
            "output": f"Happy to help with that ({route}).", "state": {"topic": route}}
'''

SUITE = """\
# written by benchmarks/bench_memory.py: {cases} single-turn cases from one dataset, a python target
name: bench-memory
target: {{python: bot:respond}}
concurrency: 8
cases:
  - file: cases-{cases}.jsonl
gate:
  rules:
    - {{metric: pass_rate, min: 0.5}}
"""

_WORDS = ["I want a refund for order", "where is my order", "hello there, how are you", "refund please, order"]


def ensure_project(workdir: Path, cases: int) -> Path:
    """The project folder for this size: bot, dataset and suite (the dataset written once)."""
    folder = workdir / f"memory-{cases}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bot.py").write_text(BOT, encoding="utf-8")
    data = folder / f"cases-{cases}.jsonl"
    if not data.exists():
        tmp = data.with_suffix(".part")
        with open(tmp, "w", encoding="utf-8") as fh:
            for i in range(cases):
                text = f"{_WORDS[i % 4]} {1000 + i % 9000}"
                route = "refunds" if "refund" in text else "order_status" if "order" in text else "smalltalk"
                fh.write(json.dumps({"id": f"c{i:07d}", "input": text,
                                     "expect": {"route": route, "output": {"not_contains": ["internal"]}}}) + "\n")
        tmp.replace(data)
    suite = folder / "suite.yaml"
    suite.write_text(SUITE.format(cases=cases), encoding="utf-8")
    return suite


_TIME_RSS = re.compile(r"Maximum resident set size \(kbytes\):\s*(\d+)")


def run_once(suite: Path, db: Path) -> dict[str, object]:
    for p in (db, db.with_name(db.name + ".wal"), db.with_name(db.name + ".lock")):
        p.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "evalgate", "run", str(suite), "--db", str(db), "--json"]
    rss_file = db.with_name(db.name + ".time")
    use_time = Path("/usr/bin/time").exists()
    if use_time:
        argv = ["/usr/bin/time", "-v", "-o", str(rss_file), *argv]
    load = Path("/proc/loadavg").read_text().split()[0]
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=suite.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "EVALGATE_DEBUG": "1"})
    if use_time:
        out, err = proc.communicate()
        peak = int(m.group(1)) / 1024 if (m := _TIME_RSS.search(rss_file.read_text())) else None
    else:
        _, status, rusage = os.wait4(proc.pid, 0)
        out, err = proc.stdout.read(), proc.stderr.read()  # type: ignore[union-attr]
        proc.returncode = os.waitstatus_to_exitcode(status)
        peak = rusage.ru_maxrss / 1024
    wall = time.perf_counter() - t0
    cases = None
    try:
        cases = json.loads(out)["suites"][0]["cases"]
    except (ValueError, KeyError, IndexError):
        pass
    return {"wall": wall, "peak": peak, "code": proc.returncode, "cases": cases, "load": load,
            "err": err.decode(errors="replace")[-2000:]}


def trace_malloc(suite: Path, db: Path, top: int = 25) -> None:
    """One run in this process with tracemalloc: the allocation sites holding the most memory at the peak."""
    import tracemalloc

    sys.path.insert(0, str(REPO))
    for p in (db, db.with_name(db.name + ".wal"), db.with_name(db.name + ".lock")):
        p.unlink(missing_ok=True)
    os.chdir(suite.parent)
    tracemalloc.start(8)
    from evalgate.api import run

    snapshots: list[tuple[int, tracemalloc.Snapshot]] = []
    import threading

    stop = threading.Event()

    def sample() -> None:  # keep the snapshot taken at the largest traced size
        while not stop.wait(1.0):
            size = tracemalloc.get_traced_memory()[0]
            if not snapshots or size > snapshots[0][0]:
                snapshots[:] = [(size, tracemalloc.take_snapshot())]

    threading.Thread(target=sample, daemon=True).start()
    run([str(suite)], store_path=db)
    stop.set()
    current, peak = tracemalloc.get_traced_memory()
    print(f"tracemalloc: peak {peak / 1e6:.0f} MB (Python objects only); largest sites at the sampled peak "
          f"({snapshots[0][0] / 1e6:.0f} MB):" if snapshots else "no sample")
    if snapshots:
        for stat in snapshots[0][1].statistics("traceback")[:top]:
            frames = [f"{Path(f.filename).name}:{f.lineno}" for f in stat.traceback if "evalgate" in f.filename][:4]
            print(f"  {stat.size / 1e6:7.1f} MB  {stat.count:>9,}  {' < '.join(frames) or stat.traceback[0]}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workdir", type=Path,
                    default=Path(os.environ.get("EVALGATE_BENCH_DIR", "/tmp/evalgate-bench")))
    ap.add_argument("--trace-malloc", action="store_true")
    args = ap.parse_args(argv)
    import versions

    versions.print_header()  # what the figures below were measured with
    suite = ensure_project(args.workdir, args.cases)
    db = suite.with_name("bench.duckdb")
    if args.trace_malloc:
        trace_malloc(suite, db)
        return 0
    samples = []
    for i in range(args.runs):
        s = run_once(suite, db)
        samples.append(s)
        print(f"  run {i + 1}: exit {s['code']}, {s['cases']} cases, {s['wall']:.1f} s, peak {s['peak']:.0f} MB, "
              f"load {s['load']}", file=sys.stderr)
        if s["code"] not in (0, 1) or s["cases"] != args.cases:
            print(s["err"], file=sys.stderr)
            return 3
    peaks = [float(s["peak"]) for s in samples]  # type: ignore[arg-type]
    walls = [float(s["wall"]) for s in samples]  # type: ignore[arg-type]
    peak = statistics.median(peaks)
    print(f"cases {args.cases:,}: peak RSS {peak:.0f} MB (median of {len(peaks)}: "
          f"{', '.join(f'{p:.0f}' for p in peaks)}), wall {statistics.median(walls):.1f} s "
          f"({', '.join(f'{w:.1f}' for w in walls)}), {args.cases / statistics.median(walls):,.0f} cases/s, "
          f"load average at the starts {', '.join(str(s['load']) for s in samples)}")
    print("targets:")
    print(f"  {'PASS' if peak <= TARGET_PEAK_MB else 'MISS'} peak RSS ≤ {TARGET_PEAK_MB} MB at {args.cases:,} cases "
          f"({peak:.0f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
