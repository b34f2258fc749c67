"""The whole ``evalgate run`` command as a user waits for it, and optionally promptfoo on the same scenario.

    .venv/bin/python benchmarks/bench_side_by_side.py [--runs 5] [--big] [--promptfoo CMD] [--json-out FILE]

The server and the suite are bench_pipeline.py's (imported, not copied): an OpenAI-compatible server in a
child process on 127.0.0.1 with a fixed delay per request (50 ms) and a request counter at GET /count, and
1,000 single-turn cases through the reference ``pipeline:`` target. Each run is a fresh process, timed from
its start to its exit:

- live: ``evalgate run SUITE -j 64 --cache-mode off --db FRESH.duckdb``, 1,000 requests;
- warm re-run: one run fills a response cache (untimed; it is also the warm-up), then
  ``evalgate run SUITE -j 64 --cache-mode use --cache CACHE --db FRESH.duckdb`` (``--offline`` too with
  ``--offline``), 0 requests, checked at the server's counter;
- ``--big``: live at 10,000 cases, 64 in flight.

Per scenario: wall (median of --runs and every run), CPU per test (the child's user + system time from
``os.wait4``'s rusage ÷ cases), peak RSS (``ru_maxrss``), efficiency = ideal (cases × delay ÷ concurrency) ÷
wall, requests counted at the server, and for live runs the latency the store recorded (``turns.elapsed_ms``
and the trace's ``latency_ms.model``, p50/p95) against the server's delay.

``--promptfoo CMD`` (e.g. ``'npx promptfoo@0.123.1'`` or a path to its executable) also runs
``CMD eval -c promptfooconfig.yaml --no-progress-bar -j 64 [--no-cache] -o out.json`` on the same 1,000
prompts against the same server (provider ``openai:chat:bench-model`` with ``apiBaseUrl`` at the server,
``maxConcurrency`` 64, one ``contains`` assertion per test; cache off live, on for the warm re-run, each config
in a folder of its own), measured the same way, its recorded latency from the output's per-result ``latencyMs``.
promptfoo 0.123 needs Node.js 22.22 or later on PATH. The two tools' runs alternate
(A B A B). Everything stays on 127.0.0.1. Prints the versions, every run, and a table of figures against the
targets with PASS/MISS (evalgate's figures); exits 0 whether or not a target is met.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_pipeline
import versions

MODEL = "bench-model"
# evalgate's targets; the recorded p50 is held to the server's delay ± 10 %
TARGET_WALL_1K_S = 1.5
TARGET_CPU_MS_PER_TEST = 0.8
TARGET_WARM_S = 0.6
TARGET_WALL_10K_S = 10.0
TARGET_RSS_MIB = 120.0
TARGET_P50_TOLERANCE = 0.10

# what the pipeline target renders as the system message for each case (bench_pipeline's documents, the
# customer's two passages, the order id from the slot): the promptfoo prompt sends the same text
SYSTEM = ("You answer customer questions using only the passages below.\n"
          "[kb/refund-policy] Refund policy: Orders can be refunded within 30 days of delivery. "
          "Refunds take 5 to 7 business days.\n"
          "[kb/shipping] Shipping times: Standard shipping takes 3 to 5 business days; express takes 1 to 2.\n"
          'State: {"order_id": "{{ order_id }}"}')


def pct(values: list[float], q: float) -> float:
    return bench_pipeline.pct(sorted(values), q)


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# --- one fresh process, measured -----------------------------------------------------------


def measure(argv: list[str], cwd: Path, server: bench_pipeline.Server, log: Path, timeout_s: float,
            env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run argv to its exit: wall, the child's CPU and peak RSS (os.wait4), requests the server counted."""
    before, load_before = server.count(), load()
    with open(log.with_suffix(".out"), "wb") as out, open(log.with_suffix(".err"), "wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        killer = threading.Timer(timeout_s, proc.kill)
        killer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            killer.cancel()
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait for it again
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "user_s": usage.ru_utime,
            "sys_s": usage.ru_stime, "peak_rss_mib": usage.ru_maxrss / 1024, "exit": proc.returncode,
            "requests": server.count() - before, "load_before": load_before, "load_after": load(),
            "log": str(log.with_suffix(".out"))}


# --- evalgate ------------------------------------------------------------------------------


def evalgate_argv() -> list[str]:
    script = Path(sys.executable).parent / "evalgate"
    return [str(script)] if script.exists() else [sys.executable, "-m", "evalgate"]


def evalgate_latency(db: Path) -> dict[str, list[float]]:
    """What the store kept for each turn: turns.elapsed_ms and the trace's latency_ms.model."""
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute("SELECT elapsed_ms, CAST(json_extract(trace, '$.latency_ms.model') AS DOUBLE) "
                           "FROM turns").fetchall()
    finally:
        con.close()
    return {"elapsed": sorted(r[0] for r in rows if r[0] is not None),
            "model": sorted(r[1] for r in rows if r[1] is not None)}


class Evalgate:
    name = "evalgate"

    def __init__(self, folder: Path, n: int, server: bench_pipeline.Server, concurrency: int, offline: bool,
                 timeout_s: float):
        self.folder, self.n, self.server, self.concurrency = folder, n, server, concurrency
        self.offline, self.timeout_s = offline, timeout_s
        self.suite = bench_pipeline.write_suite(folder, n, server.base_url)
        self.cache = folder / "cache.sqlite"
        self.runs = 0

    def version(self) -> str:
        import importlib.util

        spec = importlib.util.find_spec("evalgate")  # the package the child imports too (same environment)
        where = Path(spec.origin).parent if spec and spec.origin else "?"
        return f"{versions.git_commit()} (package {where}, command {shlex.join(evalgate_argv())})"

    def _run(self, extra: list[str], tag: str) -> tuple[dict[str, Any], Path]:
        self.runs += 1
        db = self.folder / f"{tag}-{self.runs}.duckdb"
        db.unlink(missing_ok=True)
        argv = [*evalgate_argv(), "run", str(self.suite), "-j", str(self.concurrency), *extra, "--db", str(db)]
        res = measure(argv, self.folder, self.server, self.folder / f"{tag}-{self.runs}", self.timeout_s)
        res["argv"] = shlex.join(argv)
        return res, db

    def live(self) -> dict[str, Any]:
        res, db = self._run(["--cache-mode", "off"], "live")
        if res["exit"] in (0, 1):
            res.update(evalgate_latency(db))
        return res

    def fill(self) -> dict[str, Any]:
        self.cache.unlink(missing_ok=True)
        return self._run(["--cache-mode", "use", "--cache", str(self.cache)], "fill")[0]

    def warm(self) -> dict[str, Any]:
        extra = ["--cache-mode", "use", "--cache", str(self.cache)] + (["--offline"] if self.offline else [])
        return self._run(extra, "warm")[0]


# --- promptfoo -----------------------------------------------------------------------------


def write_promptfoo_config(path: Path, n: int, base_url: str, concurrency: int, cache: bool) -> Path:
    """The same cases as bench_pipeline.write_suite (input, order id) as a promptfoo config, one assertion each."""
    prompt = json.dumps([{"role": "system", "content": SYSTEM}, {"role": "user", "content": "{{ input }}"}])
    lines = [
        "# written by benchmarks/bench_side_by_side.py: the cases of bench_pipeline.write_suite for promptfoo",
        "description: bench-side-by-side",
        "prompts:",
        f"  - {json.dumps(prompt)}",
        "providers:",
        f"  - id: openai:chat:{MODEL}",
        "    config:",
        f"      apiBaseUrl: {json.dumps(base_url)}",
        "      apiKey: bench",
        "      temperature: 0",
        "evaluateOptions:",
        f"  maxConcurrency: {concurrency}",
        f"  cache: {'true' if cache else 'false'}",
        "tests:",
    ]
    for i in range(n):
        order = str(1000 + i)
        test = {"description": f"c{i:05d}",
                "vars": {"input": f"refund for order {order} please, how long does it take?", "order_id": order},
                "assert": [{"type": "contains", "value": f"order {order}"}]}
        lines.append(f"  - {json.dumps(test)}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def promptfoo_latency(out: Path) -> dict[str, list[float]]:
    data = json.loads(out.read_text(encoding="utf-8"))
    results = data.get("results", {})
    rows = results.get("results", []) if isinstance(results, dict) else results
    return {"elapsed": sorted(float(r["latencyMs"]) for r in rows if r.get("latencyMs") is not None),
            "passed": [sum(1 for r in rows if r.get("success")), len(rows)]}


class Promptfoo:
    name = "promptfoo"

    def __init__(self, cmd: str, folder: Path, n: int, server: bench_pipeline.Server, concurrency: int,
                 timeout_s: float):
        self.cmd, self.folder, self.n, self.server, self.concurrency = shlex.split(cmd), folder, n, server, concurrency
        self.timeout_s = timeout_s
        # each config in a folder of its own, run from there: promptfoo takes the defaults of its command-line
        # options (--no-cache among them) from a promptfooconfig.yaml in the working folder
        for sub in ("live", "warm"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        self.live_config = write_promptfoo_config(folder / "live" / "promptfooconfig.yaml", n, server.base_url,
                                                  concurrency, False)
        self.warm_config = write_promptfoo_config(folder / "warm" / "promptfooconfig.yaml", n, server.base_url,
                                                  concurrency, True)
        self.cache = folder / "cache"
        self.runs = 0

    def env(self, home: Path) -> dict[str, str]:
        env = dict(os.environ)
        env.update({"PROMPTFOO_CONFIG_DIR": str(home), "PROMPTFOO_CACHE_PATH": str(self.cache),
                    "PROMPTFOO_CACHE_TYPE": "disk", "PROMPTFOO_DISABLE_TELEMETRY": "1",
                    "PROMPTFOO_DISABLE_UPDATE": "1", "PROMPTFOO_DISABLE_SHARING": "1", "OPENAI_API_KEY": "bench"})
        env.pop("OPENAI_BASE_URL", None)
        env.pop("OPENAI_API_BASE_URL", None)
        return env

    def version(self) -> str:
        home = self.folder / "home-version"
        found = subprocess.run([*self.cmd, "--version"], capture_output=True, text=True, env=self.env(home),
                               timeout=300, check=False)
        lines = [ln for ln in found.stdout.splitlines() if ln.strip()]
        node = self.cmd[0] if Path(self.cmd[0]).name.startswith("node") else shutil.which("node") or "node"
        try:
            node_v = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
        except OSError:
            node_v = "?"
        return f"{lines[-1] if lines else '?'} (Node.js {node_v})"

    def _run(self, config: Path, extra: list[str], tag: str, latency: bool = True) -> dict[str, Any]:
        self.runs += 1
        home = self.folder / f"home-{tag}-{self.runs}"  # a fresh promptfoo database each run, as evalgate's store
        shutil.rmtree(home, ignore_errors=True)
        out = self.folder / f"{tag}-{self.runs}.json"
        out.unlink(missing_ok=True)
        argv = [*self.cmd, "eval", "-c", str(config), "--no-progress-bar", "-j", str(self.concurrency),
                *extra, "-o", str(out)]
        res = measure(argv, config.parent, self.server, self.folder / f"{tag}-{self.runs}", self.timeout_s,
                      env=self.env(home))
        res["argv"] = shlex.join(argv)
        if out.exists():
            try:
                got = promptfoo_latency(out)
                if not latency:  # answers from the cache carry the latency of the call that filled it
                    got.pop("elapsed")
                res.update(got)
            except (ValueError, KeyError, TypeError) as exc:
                res["output_error"] = repr(exc)
        return res

    def live(self) -> dict[str, Any]:
        return self._run(self.live_config, ["--no-cache"], "live")

    def fill(self) -> dict[str, Any]:
        shutil.rmtree(self.cache, ignore_errors=True)
        return self._run(self.warm_config, [], "fill")

    def warm(self) -> dict[str, Any]:
        return self._run(self.warm_config, [], "warm", latency=False)


# --- scenarios -----------------------------------------------------------------------------


def show(tool: str, label: str, r: int, res: dict[str, Any], n: int) -> None:
    lat = ""
    if res.get("elapsed"):
        e = res["elapsed"]
        lat = f"; recorded p50 {pct(e, .5):.1f} ms p95 {pct(e, .95):.1f} ms"
        if res.get("model"):
            lat += f" (latency_ms.model p50 {pct(res['model'], .5):.1f} ms)"
    if res.get("passed"):
        lat += f"; {res['passed'][0]}/{res['passed'][1]} passed"
    print(f"  {label} {tool:9s} run {r}: wall {res['wall_s']:.2f} s, CPU {res['cpu_s']:.2f} s "
          f"({res['cpu_s'] / n * 1000:.2f} ms/test), peak RSS {res['peak_rss_mib']:.0f} MiB, "
          f"{res['requests']} requests, exit {res['exit']}{lat}; load {res['load_before'][0]:.2f}", flush=True)


def summarize(runs: list[dict[str, Any]], n: int, ideal_s: float) -> dict[str, Any]:
    walls = [r["wall_s"] for r in runs]
    wall = statistics.median(walls)
    out: dict[str, Any] = {
        "cases": n, "ideal_s": ideal_s, "wall_s": wall, "walls_s": walls, "efficiency": ideal_s / wall,
        "cpu_s": statistics.median(r["cpu_s"] for r in runs),
        "cpu_ms_per_test": statistics.median(r["cpu_s"] / n * 1000 for r in runs),
        "peak_rss_mib": statistics.median(r["peak_rss_mib"] for r in runs),
        "requests": [r["requests"] for r in runs], "exits": [r["exit"] for r in runs],
        "load_before": [r["load_before"] for r in runs]}
    if all(r.get("elapsed") for r in runs):
        out["p50_ms"] = statistics.median(pct(r["elapsed"], .5) for r in runs)
        out["p95_ms"] = statistics.median(pct(r["elapsed"], .95) for r in runs)
    if all(r.get("model") for r in runs):
        out["model_p50_ms"] = statistics.median(pct(r["model"], .5) for r in runs)
        out["model_p95_ms"] = statistics.median(pct(r["model"], .95) for r in runs)
    return out


def scenario(label: str, tools: list[Any], kind: str, runs: int, n: int, ideal_s: float) -> dict[str, Any]:
    """runs of each tool's `kind` (live or warm), the tools alternating: A B A B."""
    got: dict[str, list[dict[str, Any]]] = {t.name: [] for t in tools}
    for r in range(1, runs + 1):
        for tool in tools:
            res = getattr(tool, kind)()
            got[tool.name].append(res)
            show(tool.name, label, r, res, n)
    return {name: {"summary": summarize(rs, n, ideal_s), "runs": rs} for name, rs in got.items()}


# --- the table -----------------------------------------------------------------------------


def fmt_wall(s: dict[str, Any]) -> str:
    walls = s["walls_s"]
    return f"{s['wall_s']:.2f} s ({min(walls):.2f}–{max(walls):.2f}; {s['efficiency']:.0%} of ideal)"


def table(results: dict[str, Any], delay_ms: float, n: int, conc: int, big_n: int, with_pf: bool) -> list[list[str]]:
    """Rows: figure | evalgate | promptfoo | target | evalgate against it."""
    rows: list[list[str]] = []

    def row(figure: str, key: str, cell: Callable[[dict[str, Any]], str], target: str,
            ok: Callable[[dict[str, Any]], bool] | None) -> None:
        eg = results.get(key, {}).get("evalgate", {}).get("summary")
        pf = results.get(key, {}).get("promptfoo", {}).get("summary")
        if eg is None:
            return
        verdict = "" if ok is None else ("PASS" if ok(eg) else "MISS")
        rows.append([figure, cell(eg), cell(pf) if pf else "–", target, verdict])

    live, warm, big = "live", "warm", "big"
    row(f"whole command {n:,}@{conc} (ideal {n * delay_ms / 1000 / conc:.2f} s)", live, fmt_wall,
        f"≤ {TARGET_WALL_1K_S} s", lambda s: s["wall_s"] <= TARGET_WALL_1K_S)
    row(f"CPU per test, {n:,}@{conc}", live, lambda s: f"{s['cpu_ms_per_test']:.2f} ms ({s['cpu_s']:.2f} s)",
        f"≤ {TARGET_CPU_MS_PER_TEST} ms", lambda s: s["cpu_ms_per_test"] <= TARGET_CPU_MS_PER_TEST)
    row(f"peak RSS, {n:,} tests", live, lambda s: f"{s['peak_rss_mib']:.0f} MiB",
        f"≤ {TARGET_RSS_MIB:.0f} MiB", lambda s: s["peak_rss_mib"] <= TARGET_RSS_MIB)
    lo, hi = delay_ms * (1 - TARGET_P50_TOLERANCE), delay_ms * (1 + TARGET_P50_TOLERANCE)

    def lat(s: dict[str, Any]) -> str:
        if "p50_ms" not in s:
            return "n/a"
        text = f"p50 {s['p50_ms']:.1f} / p95 {s['p95_ms']:.1f} ms"
        if "model_p50_ms" in s:
            text += f" (model call {s['model_p50_ms']:.1f} / {s['model_p95_ms']:.1f})"
        return text

    row(f"recorded latency, server {delay_ms:.0f} ms", live, lat, f"p50 {lo:.0f}–{hi:.0f} ms",
        lambda s: "p50_ms" in s and lo <= s["p50_ms"] <= hi)
    row("requests per live run", live, lambda s: ", ".join(f"{x:,}" for x in sorted(set(s["requests"]))), f"{n:,}",
        lambda s: set(s["requests"]) == {n})
    row("warm-cache re-run, wall", warm, lambda s: f"{s['wall_s']:.2f} s ({min(s['walls_s']):.2f}–"
        f"{max(s['walls_s']):.2f})", f"≤ {TARGET_WARM_S} s", lambda s: s["wall_s"] <= TARGET_WARM_S)
    row("warm re-run: CPU, peak RSS", warm, lambda s: f"{s['cpu_s']:.2f} s, {s['peak_rss_mib']:.0f} MiB", "", None)
    row("warm re-run: requests", warm, lambda s: ", ".join(f"{x:,}" for x in sorted(set(s["requests"]))), "0",
        lambda s: set(s["requests"]) == {0})
    row(f"whole command {big_n:,}@{conc} (ideal {big_n * delay_ms / 1000 / conc:.2f} s)", big, fmt_wall,
        f"≤ {TARGET_WALL_10K_S:.0f} s", lambda s: s["wall_s"] <= TARGET_WALL_10K_S)
    row(f"{big_n:,}@{conc}: CPU per test, peak RSS", big,
        lambda s: f"{s['cpu_ms_per_test']:.2f} ms, {s['peak_rss_mib']:.0f} MiB", "", None)
    row(f"{big_n:,}@{conc}: recorded latency", big, lat, f"p50 {lo:.0f}–{hi:.0f} ms",
        lambda s: "p50_ms" in s and lo <= s["p50_ms"] <= hi)
    if not with_pf:
        rows = [[r[0], r[1], r[3], r[4]] for r in rows]
    return rows


def print_table(rows: list[list[str]], with_pf: bool) -> None:
    head = ["figure", "evalgate", "promptfoo", "target", "evalgate"] if with_pf else \
        ["figure", "evalgate", "target", "evalgate"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(r) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each scenario and tool (default 5)")
    parser.add_argument("--cases", type=int, default=1000, help="cases of the live and warm scenarios (default 1000)")
    parser.add_argument("--concurrency", type=int, default=64, help="in flight, both tools (default 64)")
    parser.add_argument("--delay-ms", type=float, default=50.0, help="the server's delay per request (default 50)")
    parser.add_argument("--big", action="store_true", help="also live at --big-cases cases (10,000)")
    parser.add_argument("--big-cases", type=int, default=10_000)
    parser.add_argument("--no-warm", action="store_true", help="skip the warm-cache re-run")
    parser.add_argument("--offline", action="store_true", help="evalgate's warm re-runs with --offline as well")
    parser.add_argument("--promptfoo", metavar="CMD", help="also run promptfoo: its command, e.g. 'npx promptfoo@0.123.1'")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds one run may take before it is killed")
    parser.add_argument("--json-out", metavar="FILE", help="write every figure and run here")
    parser.add_argument("--workdir", default=os.environ.get("EVALGATE_BENCH_DIR", os.path.join(
        tempfile.gettempdir(), "evalgate-bench-side-by-side")))
    args = parser.parse_args()
    versions.print_header()
    header = versions.header()
    workdir = Path(args.workdir)
    shutil.rmtree(workdir, ignore_errors=True)
    delay_s, n, conc = args.delay_ms / 1000, args.cases, args.concurrency
    load_start = load()
    server = bench_pipeline.Server(delay_s)
    results: dict[str, Any] = {}
    tool_versions: dict[str, str] = {}
    try:
        tools: list[Any] = [Evalgate(workdir / "evalgate", n, server, conc, args.offline, args.timeout)]
        if args.promptfoo:
            tools.append(Promptfoo(args.promptfoo, workdir / "promptfoo", n, server, conc, args.timeout))
        for tool in tools:
            tool_versions[tool.name] = tool.version()
        print("tools: " + "; ".join(f"{k} {v}" for k, v in tool_versions.items()))
        print(f"server delay {args.delay_ms:.0f} ms, {n:,} cases at {conc} in flight, {args.runs} runs each; "
              f"work folder {workdir}", flush=True)
        # the cache fill: untimed, and each tool's first run (its files read, .pyc written) before any timed one
        fills = {}
        for tool in tools:
            res = tool.fill()
            fills[tool.name] = res
            show(tool.name, "fill", 0, res, n)
        ideal = n * delay_s / conc
        print(f"live: {n:,} cases at {conc}, cache off (ideal {ideal:.2f} s)", flush=True)
        results["live"] = scenario("live", tools, "live", args.runs, n, ideal)
        if not args.no_warm:
            print("warm-cache re-run (the cache filled above)", flush=True)
            results["warm"] = scenario("warm", tools, "warm", args.runs, n, ideal)
        if args.big:
            big_n = args.big_cases
            big_tools: list[Any] = [Evalgate(workdir / "evalgate-big", big_n, server, conc, args.offline, args.timeout)]
            if args.promptfoo:
                big_tools.append(Promptfoo(args.promptfoo, workdir / "promptfoo-big", big_n, server, conc, args.timeout))
            ideal_big = big_n * delay_s / conc
            print(f"big: {big_n:,} cases at {conc}, cache off (ideal {ideal_big:.2f} s)", flush=True)
            results["big"] = scenario("big", big_tools, "live", args.runs, big_n, ideal_big)
    finally:
        server.stop()
    load_end = load()
    rows = table(results, args.delay_ms, n, conc, args.big_cases, bool(args.promptfoo))
    print()
    print(f"medians of {args.runs} runs; load average {load_start} at the start, {load_end} at the end")
    print_table(rows, bool(args.promptfoo))
    if (n, conc, args.delay_ms, args.big_cases) != (1000, 64, 50.0, 10_000):
        print("note: the targets are set for 1,000 and 10,000 cases at 64 in flight and a 50 ms server; "
              "PASS/MISS above holds these settings to the same numbers")
    for tool, res in fills.items():
        if res["exit"] != 0:
            print(f"note: {tool}'s cache-filling run exited {res['exit']} (see {res['log']})")
    for key, by_tool in results.items():
        for tool, got in by_tool.items():
            for res in got["runs"]:
                if res["exit"] != 0:
                    print(f"note: a {key} run of {tool} exited {res['exit']} (see {res['log']})")
    if args.json_out:
        payload = {"header": header, "tools": tool_versions, "load_start": load_start, "load_end": load_end,
                   "settings": {"runs": args.runs, "cases": n, "concurrency": conc, "delay_ms": args.delay_ms,
                                "big_cases": args.big_cases if args.big else None, "offline": args.offline},
                   "fills": fills, "results": results, "table": rows}
        Path(args.json_out).write_text(json.dumps(payload, indent=1), encoding="utf-8")
        print(f"figures written to {args.json_out}")


if __name__ == "__main__":
    main()
