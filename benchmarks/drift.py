"""Does a dependency update move a figure? The pinned versions against the newest ones allowed, side by side.

    python benchmarks/drift.py [--pinned VENV] [--newest VENV] [--runs 5] [--threshold 0.15] [--json-out FILE]

Two virtualenvs of this checkout, made when missing: ``--pinned`` (default ``$EVALGATE_BENCH_DIR/venv-pinned``,
``pip install -e . -c constraints.txt``) and ``--newest`` (default ``$EVALGATE_BENCH_DIR/venv-newest``,
``pip install -e . --upgrade --upgrade-strategy eager``: what a user installing today gets within pyproject's
ranges). Both hold evalgate's own dependencies only. It prints
which distributions differ between them, then times the same whole commands in each, A B A B, a fresh process
every run:

- replay: ``evalgate run`` of 20,000 recorded turns (gen_traces.py) in one process (``--executor local``);
- pipeline: ``evalgate run`` of 1,000 single-turn cases at 64 in flight against bench_pipeline.py's mock model
  server (50 ms, cache off);
- startup: ``evalgate --version``.

The figure is CPU seconds (user + system) of the whole command, which moves much less than wall time with the
machine's load; it compares ratios newest ÷ pinned pair by pair and takes their median. A ratio above
``1 + --threshold`` for any figure is a move: the script names it with the versions that differ and exits 1
(0 otherwise, 2 when a command fails). `.github/workflows/dependency-drift.yml` runs it every week.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_pipeline
import gen_traces

REPO = Path(__file__).resolve().parent.parent


def ensure_venv(venv: Path, *, pinned: bool) -> None:
    """A virtualenv of this checkout with the pinned versions, or the newest ones pyproject allows (kept: delete
    it to take newer ones). Both get evalgate's own dependencies only, so they import the same packages."""
    if (venv / "bin" / "evalgate").exists():
        return
    print(f"  making {venv} with the {'pinned' if pinned else 'newest allowed'} versions ...", file=sys.stderr,
          flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    how = ["-c", str(REPO / "constraints.txt")] if pinned else ["--upgrade", "--upgrade-strategy", "eager"]
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *how, "-e", str(REPO)], check=True)


def installed(venv: Path) -> dict[str, str]:
    code = ("import json; from importlib import metadata; "
            "print(json.dumps({d.metadata['Name'].lower(): d.version for d in metadata.distributions()}))")
    out = subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, check=True)
    return dict(json.loads(out.stdout))


def cpu_of(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    """CPU seconds (user + system) of one whole command, its children included."""
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read() if proc.stderr else ""
    if proc.returncode not in (0, 1):
        sys.exit(f"drift: {' '.join(argv)} exited {proc.returncode}:\n{err[-2000:]}")
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    bench_dir = Path(os.environ.get("EVALGATE_BENCH_DIR", "/tmp/evalgate-bench"))
    ap.add_argument("--pinned", type=Path, default=bench_dir / "venv-pinned")
    ap.add_argument("--newest", type=Path, default=bench_dir / "venv-newest")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threshold", type=float, default=0.15)
    ap.add_argument("--json-out", type=Path)
    args = ap.parse_args()
    ensure_venv(args.pinned, pinned=True)
    ensure_venv(args.newest, pinned=False)
    for label, venv in (("pinned", args.pinned), ("newest", args.newest)):
        head = subprocess.run([str(venv / "bin" / "python"), str(Path(__file__).with_name("versions.py"))],
                              capture_output=True, text=True, cwd=REPO).stdout
        print(f"{label} ({venv}):\n  " + head.strip().replace("\n", "\n  "), flush=True)
    pinned, newest = installed(args.pinned), installed(args.newest)
    differ = {n: (pinned.get(n), newest.get(n)) for n in sorted(set(pinned) | set(newest))
              if pinned.get(n) != newest.get(n) and n in newest}
    print("\nversions that differ (pinned → newest):" if differ else "\nthe newest allowed versions are the pinned ones")
    for name, (a, b) in differ.items():
        print(f"  {name}: {a or '-'} → {b}")

    work = Path(tempfile.mkdtemp(prefix="evalgate-drift-"))
    traces = work / "traces.jsonl"
    gen_traces.write(traces, 20_000, seed=1)
    (work / "replay.yaml").write_text(
        "name: drift-replay\ntarget: replay\ntraces:\n  - file: traces.jsonl\n"
        "    expect: {route: [refunds, order_status, account, smalltalk], output: {not_contains: [internal]}}\n")
    server = bench_pipeline.Server(0.05)
    suite = bench_pipeline.write_suite(work / "pipeline", 1_000, server.base_url)
    env = {**os.environ, "NO_COLOR": "1"}

    def commands(venv: Path, tag: str) -> dict[str, list[str]]:
        exe = str(venv / "bin" / "evalgate")
        return {"replay": [exe, "run", str(work / "replay.yaml"), "--executor", "local", "--db", str(work / f"r-{tag}.duckdb")],
                "pipeline": [exe, "run", str(suite), "-j", "64", "--cache-mode", "off",
                             "--db", str(work / f"p-{tag}.duckdb")],
                "startup": [exe, "--version"]}

    results: dict[str, Any] = {"differ": differ, "figures": {}, "load": []}
    moved = []
    try:
        for figure in ("replay", "pipeline", "startup"):
            ratios, a_cpu, b_cpu = [], [], []
            for i in range(args.runs + 1):  # the first pair warms the file cache
                results["load"].append(os.getloadavg()[0])
                for db in work.glob("*.duckdb*"):
                    db.unlink()
                a = cpu_of(commands(args.pinned, "a")[figure], work, env)
                b = cpu_of(commands(args.newest, "b")[figure], work, env)
                if i:
                    a_cpu.append(a)
                    b_cpu.append(b)
                    ratios.append(b / a)
            ratio = statistics.median(ratios)
            results["figures"][figure] = {"pinned_cpu_s": statistics.median(a_cpu),
                                          "newest_cpu_s": statistics.median(b_cpu), "ratio": ratio,
                                          "ratios": ratios}
            flag = "MOVED" if ratio > 1 + args.threshold else "same"
            if flag == "MOVED":
                moved.append(figure)
            print(f"  {figure:<9} CPU pinned {statistics.median(a_cpu):6.2f} s  newest {statistics.median(b_cpu):6.2f} s"
                  f"  newest/pinned {ratio:.3f} ({min(ratios):.3f}-{max(ratios):.3f})  {flag}", flush=True)
    finally:
        server.stop()
    load = results["load"]
    print(f"\nload average (1 min) {min(load):.2f}-{max(load):.2f}; {args.runs} A/B pairs per figure")
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=2))
    if moved:
        print(f"a dependency update moved: {', '.join(moved)} (over {args.threshold:.0%} more CPU); "
              f"the versions that differ are listed above")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
