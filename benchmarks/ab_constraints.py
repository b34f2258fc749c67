"""One benchmark under two sets of dependency versions, run in turn: does an update move a figure?

    python benchmarks/ab_constraints.py OLD.txt [--new constraints.txt] [--pairs 5] [--grep REGEX] -- BENCH [ARGS ...]

Builds a virtualenv for each constraints file (once; kept in --venvs, default
/tmp/evalgate-ab, named by the file's and pyproject.toml's hash) with
``pip install -e '.[test]' -c FILE``, then runs ``VENV/bin/python BENCH ARGS`` from
the repository root as old, new, old, new ... after one warm-up run each. Every
run's CPU (user + sys, the benchmark and the processes it waited for) and wall
time come from the operating system; each pair's new ÷ old ratio holds when the
machine's speed drifts between pairs, and the medians of the ratios are the
answer. Lines of each run's output matching --grep (say ``"medians of"`` for
bench_pipeline.py) are printed beside the pair, so the benchmark's own figure
can be compared too. To compare an update with what was there before it:

    git show HEAD~1:constraints.txt > /tmp/old.txt
    python benchmarks/ab_constraints.py /tmp/old.txt --grep "medians of" -- benchmarks/bench_pipeline.py --scenario b
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
import versions

REPO = Path(__file__).resolve().parent.parent


class Sample(NamedTuple):
    cpu_s: float
    wall_s: float
    lines: list[str]


def venv_for(constraints: Path, root: Path) -> Path:
    """A virtualenv with the project installed under CONSTRAINTS (built once per file and pyproject.toml)."""
    digest = hashlib.sha256(constraints.read_bytes() + (REPO / "pyproject.toml").read_bytes()).hexdigest()[:12]
    venv = root / f"venv-{digest}"
    if not (venv / "installed").exists():
        print(f"building {venv} from {constraints} ...", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "-e", f"{REPO}[test]", "-c", str(constraints)],
                       check=True)
        (venv / "installed").write_text(str(constraints.resolve()) + "\n")
    return venv


def run_once(venv: Path, argv: list[str], grep: re.Pattern[str] | None) -> Sample:
    start = time.perf_counter()
    proc = subprocess.Popen([str(venv / "bin" / "python"), *argv], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.stderr.write(out[-3000:])
        raise SystemExit(f"{' '.join(argv)} failed in {venv}")
    lines = [line.strip() for line in out.splitlines() if grep and grep.search(line)]
    return Sample(usage.ru_utime + usage.ru_stime, wall, lines)


def _load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 usage="%(prog)s OLD.txt [options] -- BENCH [ARGS ...]")
    ap.add_argument("old", type=Path, help="the constraints file to compare against")
    ap.add_argument("--new", type=Path, default=REPO / "constraints.txt", help="default: the repository's")
    ap.add_argument("--pairs", type=int, default=5, help="counted old/new pairs (default 5)")
    ap.add_argument("--grep", help="print each run's output lines matching this regular expression")
    ap.add_argument("--venvs", type=Path, default=Path(os.environ.get("EVALGATE_AB_DIR", "/tmp/evalgate-ab")))
    argv = sys.argv[1:] if argv is None else argv
    bench = argv[argv.index("--") + 1:] if "--" in argv else []  # the benchmark's own options are not ours
    args = ap.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    if not bench:
        ap.error("name the benchmark after --, e.g. -- benchmarks/bench_replay.py --sizes 100000 --runs 1")
    grep = re.compile(args.grep) if args.grep else None
    args.venvs.mkdir(parents=True, exist_ok=True)
    old, new = venv_for(args.old, args.venvs), venv_for(args.new, args.venvs)
    pins_old, pins_new = versions.read_constraints(args.old), versions.read_constraints(args.new)
    differ = [f"{name} {pins_old.get(name, '-')} → {pins_new.get(name, '-')}" for name in sorted(pins_old.keys() | pins_new)
              if pins_old.get(name) != pins_new.get(name)]
    print("pins that differ, old → new:", ", ".join(differ) or "none")
    print(f"load average before: {_load()}")
    run_once(old, bench, None), run_once(new, bench, None)  # warm-up: bytecode, page cache
    cpu, wall = [], []
    for i in range(1, args.pairs + 1):
        a, b = run_once(old, bench, grep), run_once(new, bench, grep)
        cpu.append(b.cpu_s / a.cpu_s)
        wall.append(b.wall_s / a.wall_s)
        print(f"pair {i}: cpu old {a.cpu_s:.2f} s, new {b.cpu_s:.2f} s (new/old {cpu[-1]:.3f}); "
              f"wall old {a.wall_s:.2f} s, new {b.wall_s:.2f} s (new/old {wall[-1]:.3f})", flush=True)
        for label, sample in (("old", a), ("new", b)):
            for line in sample.lines:
                print(f"  {label}: {line}")
    print(f"new/old over {args.pairs} pairs: cpu median {statistics.median(cpu):.3f} ({min(cpu):.3f}–{max(cpu):.3f}), "
          f"wall median {statistics.median(wall):.3f} ({min(wall):.3f}–{max(wall):.3f}); load average after: {_load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
