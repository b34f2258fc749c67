"""What a figure was measured with: Python, evalgate's commit, the dependencies, and constraints.txt.

Every ``bench_*.py`` prints :func:`header` first, so a figure in a log or a README
can be traced to the code and the versions that produced it. As a command:

    python benchmarks/versions.py            # the header alone
    python benchmarks/versions.py --check    # exit 1, naming them, when installed versions differ from constraints.txt
    python benchmarks/versions.py --freeze   # constraints.txt's text for the versions installed here

``--freeze`` lists exactly the distributions ``pip install -e '.[test,ray]'`` needs
(evalgate's requirements and theirs, followed through their markers), not
whatever else the virtualenv holds, so run it in a fresh one (benchmarks/README.md,
"Dependencies and reproducibility").
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parent.parent
CONSTRAINTS = REPO / "constraints.txt"
PROJECT = "evalgate-release"
# the dependencies a figure has been seen to move with, or that do the hot work (store, model client, parsing)
KEY = ("openai", "httpx2", "httpx", "pydantic", "pydantic-core", "duckdb", "pyarrow", "pandas", "numpy",
       "aiohttp", "ijson", "bm25s", "rapidfuzz")


class Drift(NamedTuple):
    name: str
    pinned: str
    installed: str | None  # None: not installed


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_constraints(path: Path = CONSTRAINTS) -> dict[str, str]:
    """Canonical name → pinned version, from ``name==version`` lines."""
    pins: dict[str, str] = {}
    if not path.exists():
        return pins
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[canonical(name)] = version.strip()
    return pins


def installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def project_closure(root: str = PROJECT, extras: tuple[str, ...] = ("ray", "test")) -> dict[str, str]:
    """Canonical name → installed version of every distribution ``ROOT[EXTRAS]`` requires, transitively."""
    from packaging.requirements import Requirement

    found: dict[str, str] = {}
    todo: list[tuple[str, tuple[str, ...]]] = [(root, extras)]
    seen: set[tuple[str, tuple[str, ...]]] = set()
    while todo:
        name, wanted = todo.pop()
        if (canonical(name), wanted) in seen:
            continue
        seen.add((canonical(name), wanted))
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # a marker-less optional dependency that is not installed: nothing to pin
        if canonical(name) != canonical(root):
            found[canonical(name)] = dist.version
        for line in dist.requires or []:
            req = Requirement(line)
            envs = [{"extra": e} for e in wanted] or [{"extra": ""}]
            if req.marker is None or any(req.marker.evaluate(env) for env in envs):
                todo.append((req.name, tuple(sorted(req.extras))))
    return found


def drift(pins: dict[str, str] | None = None) -> list[Drift]:
    """The project's installed requirements whose version is not constraints.txt's, or that it does not pin.

    A pin nothing here requires (a marker for another platform or Python) is not a difference.
    """
    pins = read_constraints() if pins is None else pins
    return [Drift(name, pins.get(name, "(not pinned)"), version) for name, version in sorted(project_closure().items())
            if pins.get(name) != version]


def git_commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False).stdout.strip()

    sha = git("rev-parse", "--short", "HEAD") or "unknown"
    return sha + (" (uncommitted changes)" if git("status", "--porcelain", "--untracked-files=no") else "")


def processor() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def header() -> str:
    """Four lines: machine and load, evalgate's commit and Python, the key dependencies, constraints.txt's verdict."""
    try:
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        load = "n/a"
    deps = ", ".join(f"{name} {installed_version(name) or '-'}" for name in KEY)
    try:
        differ = drift()
    except ImportError:  # packaging comes with the test extra
        differ = None
    if not CONSTRAINTS.exists():
        status = "constraints.txt: missing"
    elif differ is None:
        status = "constraints.txt: not compared (install with '.[test,ray]' for the packaging module)"
    elif not differ:
        status = f"constraints.txt: every requirement installed as pinned ({len(read_constraints())} pins)"
    else:
        listed = ", ".join(f"{d.name} {d.installed or 'missing'} (pinned {d.pinned})" for d in differ[:8])
        status = f"constraints.txt: {len(differ)} differ: {listed}{' …' if len(differ) > 8 else ''}"
    return (f"machine: {processor()}, {os.cpu_count()} cores, load average {load}\n"
            f"evalgate {git_commit()}, Python {platform.python_version()}\n"
            f"versions: {deps}\n{status}")


def print_header() -> None:
    print(header(), flush=True)
    print(flush=True)


def freeze() -> str:
    """constraints.txt's text: a header, then ``name==version`` for the project's requirements as installed."""
    lines = [
        f"# Exact versions of everything `pip install -e '.[test,ray]'` installs, on CPython {platform.python_version()} "
        + f"({platform.machine()} Linux).",
        "# CI, the README's test command and the benchmarks install with `-c constraints.txt`;",
        "# tests/test_constraints.py fails when what is installed differs from it.",
        "# Regenerate it, in a fresh virtualenv, as benchmarks/README.md (\"Dependencies and reproducibility\") says:",
        "#   python3 -m venv /tmp/fresh && /tmp/fresh/bin/pip install -q -e '.[test,ray]'",
        "#   /tmp/fresh/bin/python benchmarks/versions.py --freeze > constraints.txt",
    ]
    lines += [f"{name}=={version}" for name, version in sorted(project_closure().items())]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 when installed versions differ from constraints.txt")
    mode.add_argument("--freeze", action="store_true", help="print constraints.txt for the versions installed here")
    args = ap.parse_args(argv)
    if args.freeze:
        sys.stdout.write(freeze())
        return 0
    print(header())
    if args.check and drift():
        print("differs from constraints.txt: reinstall with `pip install -e '.[test,ray]' -c constraints.txt`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
