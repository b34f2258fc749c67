"""HTML report at scale: file size, time to write it, and time to open it in Chromium.

Replays generated traces into a fresh store once (sessions become cases), then
measures, over several runs:

- ``evalgate report RUN --html`` wall time and the file's size (target: at
  most 25 MB for 100,000 cases);
- the time headless Chromium takes from navigation until the case list is on
  screen (target: at most 3 s), and then to open one case's story.

    python benchmarks/bench_report.py [--cases 100000] [--runs 3]

Needs the Debian package ``chromium`` and the Python package ``playwright``
for the browser figures; without them only size and write time are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_replay  # noqa: E402
import gen_traces  # noqa: E402
import versions

TURNS_PER_SESSION = 3.5  # gen_traces' average


def prepare(workdir: Path, cases: int, seed: int) -> tuple[Path, str, int]:
    """A store holding one replay run with about ``cases`` cases (cached between invocations)."""
    workdir.mkdir(parents=True, exist_ok=True)
    turns = int(cases * TURNS_PER_SESSION)
    traces, sessions = bench_replay.ensure_traces(workdir, turns, seed, False)
    while sessions < cases:  # top up until there are enough sessions
        turns = int(turns * cases / sessions) + 10
        traces, sessions = bench_replay.ensure_traces(workdir, turns, seed, False)
    db = workdir / f"report-{sessions}.duckdb"
    marker = db.with_suffix(".run")
    if db.exists() and marker.exists():
        return db, marker.read_text().strip(), sessions
    suite = bench_replay.write_suite(traces, turns)
    print(f"  replaying {turns:,} turns in {sessions:,} sessions into {db} ...", file=sys.stderr, flush=True)
    sample = bench_replay.run_once(suite, db, cwd=workdir)
    if sample.report is None:
        raise SystemExit(f"the replay run failed (exit {sample.exit_code}):\n{sample.stderr_tail}")
    run_id = sample.report["suites"][0]["run_id"]
    marker.write_text(run_id)
    return db, run_id, sessions


def write_report(db: Path, run_id: str, out: Path) -> tuple[float, dict]:
    argv = [*bench_replay.evalgate_cmd(), "report", run_id, "--db", str(db), "--html", str(out), "--json"]
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"evalgate report failed: {proc.stderr}")
    return wall, json.loads(proc.stdout)["html"]


def open_in_browser(path: Path, runs: int) -> list[tuple[float, float]] | None:
    chromium = shutil.which("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if chromium is None:
        return None
    out = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        for _ in range(runs):
            page = browser.new_page()
            t0 = time.perf_counter()
            page.goto(path.as_uri())
            page.wait_for_selector("body[data-ready='1']", timeout=60_000)
            ready = time.perf_counter() - t0
            t1 = time.perf_counter()
            page.click("#cases-list > li:first-child summary")
            page.wait_for_selector("#cases-list > li:first-child .turn", timeout=60_000)
            story = time.perf_counter() - t1
            page.close()
            out.append((ready, story))
        browser.close()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workdir", default=os.environ.get("EVALGATE_BENCH_DIR", "/tmp/evalgate-bench"))
    args = ap.parse_args(argv)
    versions.print_header()  # what the figures below were measured with

    db, run_id, cases = prepare(Path(args.workdir), args.cases, args.seed)
    out = Path(args.workdir) / f"report-{cases}.html"
    walls, info = [], {}
    for _ in range(args.runs):
        wall, info = write_report(db, run_id, out)
        walls.append(wall)
    size_mb = out.stat().st_size / 1e6
    print(f"report of {info['cases']:,} cases ({cases:,} sessions replayed), run {run_id}")
    print(f"  file size            {size_mb:8.1f} MB   (target ≤ 25 MB)  {'ok' if size_mb <= 25 else 'OVER'}")
    print(f"  write, median of {len(walls)}   {statistics.median(walls):8.2f} s    ({', '.join(f'{w:.2f}' for w in walls)})")
    opened = open_in_browser(out, args.runs)
    if opened is None:
        print("  browser figures skipped: needs the chromium package and playwright")
        return 0
    ready = [r for r, _ in opened]
    story = [s for _, s in opened]
    med = statistics.median(ready)
    print(f"  open in Chromium     {med:8.2f} s    (target ≤ 3 s)  {'ok' if med <= 3 else 'OVER'}  "
          f"({', '.join(f'{r:.2f}' for r in ready)})")
    print(f"  open one story       {statistics.median(story) * 1000:8.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
