"""Replay throughput and memory: ``evalgate run`` on large recorded-trace files.

For each size, generates (once, cached in the work folder) a native trace
file with ``gen_traces.py``, writes a replay suite beside it whose
suite-level ``expect`` uses the route, output, context and state scorers,
then runs ``evalgate run SUITE --db FRESH.duckdb --json`` as a subprocess
several times on a fresh store, measuring wall time and peak RSS of the
child (``/usr/bin/time -v`` when present, else ``os.wait4``'s rusage).

    python benchmarks/bench_replay.py [--sizes 100000,1000000] [--runs 3] [--interleave]

Targets checked (issue 18's):
  * throughput ≥ 50,000 turns/s at 100k turns (whole command, wall clock);
  * peak RSS ≤ 150 MB at the largest size (the largest single process: the run's own or a replay worker);
  * memory flat: peak RSS at the largest size ÷ at the smallest ≈ 1 (≤ 1.25).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import gen_traces  # noqa: E402
import versions

TARGET_TURNS_PER_S = 50_000
TARGET_PEAK_MB = 150
TARGET_FLAT_RATIO = 1.25
TARGET_AT = 100_000

SUITE = """\
# written by benchmarks/bench_replay.py: replay {turns} generated turns and score every one
name: bench-replay-{tag}
target: replay
traces:
  - {file}
expect:
  route: [refunds, order_status, account, smalltalk]
  output: {{not_contains: ["internal"]}}
  context: {{must_exclude: [kb/internal-fraud-rules]}}
  state: {{channel: web, escalated: null}}
gate:
  rules:
    - {{metric: pass_rate, min: 0.5}}
    - {{metric: route.accuracy, min: 0.9}}
    - {{metric: context.pass_rate, min: 0.99}}
"""


@dataclass
class Sample:
    wall_s: float
    peak_rss_mb: float | None
    exit_code: int
    store_bytes: int
    report: dict[str, Any] | None = None
    stderr_tail: str = ""


@dataclass
class SizeResult:
    turns: int
    sessions: int
    trace_bytes: int
    samples: list[Sample] = field(default_factory=list)

    def median(self, attr: str) -> float | None:
        values = [getattr(s, attr) for s in self.samples if getattr(s, attr) is not None]
        return statistics.median(values) if values else None


def evalgate_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("evalgate")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("evalgate")
    return [found] if found else [sys.executable, "-m", "evalgate"]


def ensure_traces(workdir: Path, turns: int, seed: int, interleave: bool) -> tuple[Path, int]:
    """The cached trace file for this size (generated when missing or stale)."""
    tag = f"{turns}{'-il' if interleave else ''}-s{seed}"
    path = workdir / f"traces-{tag}.jsonl"
    meta_path = path.with_suffix(".meta.json")
    gen_src = (HERE / "gen_traces.py").read_bytes()
    import hashlib

    want = {"turns": turns, "seed": seed, "interleave": interleave,
            "generator": hashlib.sha256(gen_src).hexdigest()[:16]}
    if path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if {k: meta.get(k) for k in want} == want and path.stat().st_size == meta.get("bytes"):
            return path, int(meta["sessions"])
    print(f"  generating {turns:,} turns → {path} ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    tmp = path.with_suffix(".jsonl.part")
    sessions = gen_traces.write(tmp, turns, seed=seed, interleave=interleave)
    tmp.replace(path)
    meta_path.write_text(json.dumps({**want, "sessions": sessions, "bytes": path.stat().st_size}))
    print(f"  generated in {time.perf_counter() - t0:.1f}s ({path.stat().st_size / 1e6:.0f} MB)", file=sys.stderr)
    return path, sessions


def write_suite(trace_file: Path, turns: int) -> Path:
    tag = trace_file.stem.removeprefix("traces-")
    suite = trace_file.with_name(f"suite-{tag}.yaml")
    suite.write_text(SUITE.format(turns=f"{turns:,}", tag=tag, file=trace_file.name), encoding="utf-8")
    return suite


_TIME_RSS = re.compile(r"Maximum resident set size \(kbytes\):\s*(\d+)")


def run_once(suite: Path, db: Path, *, cwd: Path) -> Sample:
    """One ``evalgate run`` on a fresh store: wall time, peak RSS, exit code, JSON report."""
    for p in (db, db.with_name(db.name + ".wal"), db.with_name(db.name + ".lock")):
        p.unlink(missing_ok=True)
    argv = [*evalgate_cmd(), "run", str(suite), "--db", str(db), "--json"]
    use_time = Path("/usr/bin/time").exists()
    rss_file = db.with_name(db.name + ".time")
    if use_time:
        argv = ["/usr/bin/time", "-v", "-o", str(rss_file), *argv]
    env = {**os.environ, "EVALGATE_DEBUG": "1"}
    out_path = db.with_name(db.name + ".stdout")
    err_path = db.with_name(db.name + ".stderr")
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, cwd=cwd, env=env)
        if use_time:
            code = proc.wait()
            rusage = None
        else:
            _, status, rusage = os.wait4(proc.pid, 0)
            code = os.waitstatus_to_exitcode(status)
            proc.returncode = code
        wall = time.perf_counter() - t0
    peak = None
    if use_time and rss_file.exists():
        m = _TIME_RSS.search(rss_file.read_text())
        peak = int(m.group(1)) / 1024 if m else None
    elif rusage is not None:
        peak = rusage.ru_maxrss / 1024  # kB on Linux
    report = None
    try:
        report = json.loads(out_path.read_text(encoding="utf-8"))
    except (ValueError, OSError):
        pass
    store_bytes = sum(p.stat().st_size for p in (db, db.with_name(db.name + ".wal")) if p.exists())
    tail = err_path.read_text(encoding="utf-8", errors="replace")[-3000:]
    return Sample(wall, peak, code, store_bytes, report, tail)


def _fmt(v: float | None, spec: str) -> str:
    return "n/a" if v is None else format(v, spec)


def _check(ok: bool | None) -> str:
    return "   n/a" if ok is None else ("  PASS" if ok else "  MISS")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="100000,1000000", help="comma-separated turn counts (default 100000,1000000)")
    ap.add_argument("--runs", type=int, default=3, help="runs per size (default 3)")
    ap.add_argument("--interleave", action="store_true", help="interleave the sessions' turns in the trace files")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workdir", default=os.environ.get("EVALGATE_BENCH_DIR", "/tmp/evalgate-bench"),
                    help="where trace files are cached and stores written (default /tmp/evalgate-bench)")
    ap.add_argument("--json-out", help="also write the figures as JSON to this file")
    args = ap.parse_args(argv)
    versions.print_header()  # what the figures below were measured with
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"evalgate: {' '.join(evalgate_cmd())}   workdir: {workdir}   cores: {os.cpu_count()}", file=sys.stderr)

    results: list[SizeResult] = []
    failures = 0
    for turns in sizes:
        trace_file, sessions = ensure_traces(workdir, turns, args.seed, args.interleave)
        suite = write_suite(trace_file, turns)
        sr = SizeResult(turns, sessions, trace_file.stat().st_size)
        for i in range(args.runs):
            db = workdir / f"store-{trace_file.stem.removeprefix('traces-')}.duckdb"
            s = run_once(suite, db, cwd=workdir)
            sr.samples.append(s)
            rep = (s.report or {}).get("suites", [{}])
            rep0 = rep[0] if rep else {}
            verdict = (rep0.get("verdict") or {}).get("status")
            print(f"  {turns:>9,} turns  run {i + 1}/{args.runs}: {s.wall_s:7.2f}s  "
                  f"{turns / s.wall_s:9,.0f} turns/s  peak {_fmt(s.peak_rss_mb, '.0f')} MB  "
                  f"exit {s.exit_code}  verdict {verdict}  stored turns {rep0.get('turns')}  "
                  f"pass_rate {_fmt((rep0.get('metrics') or {}).get('pass_rate'), '.3f')}",
                  file=sys.stderr, flush=True)
            if s.exit_code not in (0, 1) or rep0.get("turns") != turns:
                failures += 1
                print(f"    !! unexpected result (exit {s.exit_code}, turns {rep0.get('turns')} of {turns}); "
                      f"stderr tail:\n{s.stderr_tail}", file=sys.stderr)
        results.append(sr)

    print()
    print(f"replay benchmark ({'interleaved' if args.interleave else 'contiguous'} sessions, "
          f"{args.runs} run(s) per size, {os.cpu_count()} cores)")
    print(f"{'turns':>10} {'sessions':>9} {'traces MB':>9} {'wall s (median)':>15} {'wall s (all)':>24} "
          f"{'turns/s':>9} {'peak MB':>8} {'store MB':>8}")
    for r in results:
        walls = ", ".join(f"{s.wall_s:.2f}" for s in r.samples)
        wall = r.median("wall_s")
        tps = statistics.median(r.turns / s.wall_s for s in r.samples) if r.samples else None
        print(f"{r.turns:>10,} {r.sessions:>9,} {r.trace_bytes / 1e6:>9.0f} {_fmt(wall, '.2f'):>15} {walls:>24} "
              f"{_fmt(tps, ',.0f'):>9} {_fmt(r.median('peak_rss_mb'), '.0f'):>8} "
              f"{_fmt(r.median('store_bytes') / 1e6 if r.samples else None, '.0f'):>8}")

    print()
    print("targets:")
    at = next((r for r in results if r.turns == TARGET_AT), results[0] if results else None)
    if at is not None and at.samples:
        tps = statistics.median(at.turns / s.wall_s for s in at.samples)
        print(f"{_check(tps >= TARGET_TURNS_PER_S)}  throughput at {at.turns:,} turns: {tps:,.0f} turns/s "
              f"(target ≥ {TARGET_TURNS_PER_S:,})")
    largest = results[-1] if results and results[-1].samples else None
    if largest is not None:
        peak = largest.median("peak_rss_mb")
        print(f"{_check(None if peak is None else peak <= TARGET_PEAK_MB)}  peak RSS at {largest.turns:,} turns: "
              f"{_fmt(peak, '.0f')} MB (target ≤ {TARGET_PEAK_MB})")
    if len(results) >= 2:
        small, big = results[0], results[-1]
        a, b = small.median("peak_rss_mb"), big.median("peak_rss_mb")
        ratio = b / a if a and b else None
        print(f"{_check(None if ratio is None else ratio <= TARGET_FLAT_RATIO)}  memory flat: peak at "
              f"{big.turns:,} ÷ peak at {small.turns:,} = {_fmt(ratio, '.2f')} (target ≈ 1, ≤ {TARGET_FLAT_RATIO})")
    else:
        print("     -  memory flat: needs two sizes (--sizes 100000,1000000)")
    if failures:
        print(f"\n{failures} run(s) did not complete as expected (see above)")

    if args.json_out:
        Path(args.json_out).write_text(json.dumps([
            {"turns": r.turns, "sessions": r.sessions, "trace_bytes": r.trace_bytes,
             "runs": [{"wall_s": s.wall_s, "peak_rss_mb": s.peak_rss_mb, "exit_code": s.exit_code,
                       "store_bytes": s.store_bytes} for s in r.samples]} for r in results], indent=2))
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
