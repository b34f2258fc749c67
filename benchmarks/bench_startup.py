"""CLI cold start: how long ``evalgate --help`` takes, and what importing the CLI pulls in.

    python benchmarks/bench_startup.py [--runs 10]

Targets checked:
  * ``evalgate --help`` median wall time ≤ 0.3 s (a fresh process each time);
  * ``import evalgate.cli`` loads none of the heavy modules (openai, pandas,
    pyarrow, duckdb, jinja2, numpy, httpx, pydantic): they belong to the
    commands that need them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import versions

HEAVY = ["openai", "pandas", "pyarrow", "duckdb", "jinja2", "numpy", "httpx", "pydantic"]
TARGET_HELP_S = 0.3

PROBE = f"""
import json, sys, time
t0 = time.perf_counter()
import evalgate.cli
dt = time.perf_counter() - t0
heavy = {HEAVY!r}
print(json.dumps({{"import_s": dt, "modules": len(sys.modules),
                  "heavy": [m for m in heavy if m in sys.modules]}}))
"""


def evalgate_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("evalgate")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("evalgate")
    return [found] if found else [sys.executable, "-m", "evalgate"]


def time_cmd(argv: list[str], runs: int) -> tuple[list[float], int]:
    times, code = [], 0
    for _ in range(runs):
        t0 = time.perf_counter()
        proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        times.append(time.perf_counter() - t0)
        code = proc.returncode
        if code != 0:
            sys.stderr.write(proc.stderr.decode(errors="replace"))
    return times, code


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10, help="fresh processes per measurement (default 10)")
    args = ap.parse_args(argv)
    versions.print_header()  # what the figures below were measured with
    cmd = evalgate_cmd()

    subprocess.run([*cmd, "--help"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # warm the page cache / .pyc
    help_times, code = time_cmd([*cmd, "--help"], args.runs)
    base_times, _ = time_cmd([sys.executable, "-c", "pass"], args.runs)
    probe = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True)
    if probe.returncode != 0:
        print(probe.stderr, file=sys.stderr)
        return 1
    info = json.loads(probe.stdout)
    # who imports the heavy modules: -X importtime, the first importer of each
    imp = subprocess.run([sys.executable, "-X", "importtime", "-c", "import evalgate.cli"], capture_output=True, text=True)
    cumulative: dict[str, int] = {}
    for line in imp.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            name = parts[2].rstrip()
            cumulative[name.strip()] = int(parts[1])
    top = sorted(((us, name) for name, us in cumulative.items() if "." not in name or name.startswith("evalgate")),
                 reverse=True)[:12]

    med = statistics.median(help_times)
    print(f"evalgate --help: median {med:.3f}s over {args.runs} runs "
          f"(min {min(help_times):.3f}, max {max(help_times):.3f}; exit {code}); "
          f"bare interpreter: {statistics.median(base_times):.3f}s")
    print(f"import evalgate.cli: {info['import_s']:.3f}s in-process, {info['modules']} modules in sys.modules")
    heavy = info["heavy"]
    print("heavy modules pulled in by `import evalgate.cli`: " + (", ".join(heavy) if heavy else "none"))
    print("largest imports (cumulative, -X importtime):")
    for us, name in top:
        print(f"  {us / 1000:8.1f} ms  {name}")
    print()
    print("targets:")
    print(f"  {'PASS' if med <= TARGET_HELP_S else 'MISS'}  evalgate --help median {med:.3f}s (target ≤ {TARGET_HELP_S}s)")
    print(f"  {'PASS' if not heavy else 'MISS'}  no heavy module on CLI import "
          f"({', '.join(heavy) if heavy else 'none of ' + ', '.join(HEAVY)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
