"""How often the whole gate fails on a nondeterministic system: nothing changed, a real drop, broken cases.

    .venv/bin/python benchmarks/bench_gate_soundness.py [--trials 60] [--jobs 2] [--quick] [--json PATH]

Every trial goes through the real product (``evalgate.run`` on a simulated
python target, a fresh store each time; see ``evalgate/_simulate.py``): a
baseline history of 1, 5 or 10 runs, then a candidate run, judged by the
realistic gate (no_new_failures, pass_rate ≥ 0.75, drop ≤ 0.02 on all cases,
drop ≤ 0.05 on three overlapping tag slices, confidence 0.95). Cases pass
with probabilities from Beta(4, 1) ("beta") or, second profile, 70 % always
pass and the rest Beta(4, 1) ("steady"), and, third, 90 % always pass and
the rest pass 20 % of the time ("lowp"). Answers are canned ("right" or
"wrong"), the hardest case for telling a deterministic system apart.

Targets: nothing changed, the gate fails ≤ 5 % in every cell; a 10-point
drop is detected ≥ 90 % at N = 300 × 3 and ≥ 80 % at N = 300 × 1 with 10
stored runs; three broken always-passing cases at N = 300 × 3 are found
≥ 95 % of the time with ≥ 95 % of the named cases truly broken; the
reported smallest detectable drop is within a point of the drop the rule
detects 4 times in 5.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evalgate._simulate import trial  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import versions

DROP_RULES = ("pass_rate drop ≤ 0.02", "pass_rate drop ≤ 0.05 where tags=s1", "pass_rate drop ≤ 0.05 where tags=s2",
              "pass_rate drop ≤ 0.05 where tags=s3")


def _one(kw: dict[str, Any]) -> dict[str, Any]:
    return asdict(trial(**kw))


def _run(cells: list[dict[str, Any]], trials: int, jobs: int) -> list[list[dict[str, Any]]]:
    work = [(i, {**cell, "seed": 1000 * i + s}) for i, cell in enumerate(cells) for s in range(cell.get("trials", trials))]
    for kw in (w[1] for w in work):
        kw.pop("trials", None)
    out: list[list[dict[str, Any]]] = [[] for _ in cells]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for (i, _), result in zip(work, pool.map(_one, [w[1] for w in work], chunksize=1)):
            out[i].append(result)
    return out


def _pct(x: float) -> str:
    return f"{x:6.1%}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=60, help="trials per cell (nothing changed)")
    ap.add_argument("--power-trials", type=int, default=40, help="trials per cell (a real drop, broken cases)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--quick", action="store_true", help="N = 30 and 100 only, fewer trials")
    ap.add_argument("--json", type=Path, help="write every trial's result here")
    args = ap.parse_args()
    versions.print_header()  # what the figures below were measured with
    started = time.time()
    print(f"evalgate gate soundness · python {platform.python_version()} · load {os.getloadavg()[0]:.2f} · "
          f"{args.jobs} process(es)")
    sizes = (30, 100) if args.quick else (30, 100, 300)
    null_cells = [dict(cases=n, repeat=r, history=h, profile=p, scenario="null")
                  for p in ("beta", "steady") for n in sizes for r in (1, 3) for h in (1, 5, 10)]
    null_cells += [dict(cases=n, repeat=1, history=h, profile="lowp", scenario="null") for n in sizes for h in (1, 5)]
    results: dict[str, Any] = {}

    print("\nNothing changed: share of trials in which the gate failed (target ≤ 5 %)")
    print(f"{'profile':>7} {'N':>4} {'rep':>3} {'hist':>4} {'trials':>6} {'gate':>7} {'nnf':>7} {'drops':>7} {'min':>7}"
          f" {'flaky named':>11} {'of mixed':>8} {'confirm runs':>12}")
    null = _run(null_cells, args.trials, args.jobs)
    results["null"] = []
    for cell, rows in zip(null_cells, null):
        k = len(rows)
        gate = sum(r["exit_code"] == 1 for r in rows) / k
        nnf = sum("no new failures" in r["failed_rules"] for r in rows) / k
        drops = sum(any(d in r["failed_rules"] for d in DROP_RULES) for r in rows) / k
        mins = sum("pass_rate ≥ 0.75" in r["failed_rules"] for r in rows) / k
        named = [len(set(r["flaky"]) & set(r["nondeterministic"])) / max(len(r["nondeterministic"]), 1) for r in rows]
        of_mixed = [len(set(r["flaky"]) & set(r["mixed"])) / max(len(r["mixed"]), 1) for r in rows]
        extra = statistics.mean(r["confirm_runs"] for r in rows)
        runs = cell["cases"] * cell["repeat"]
        print(f"{cell['profile']:>7} {cell['cases']:>4} {cell['repeat']:>3} {cell['history']:>4} {k:>6} {_pct(gate)} "
              f"{_pct(nnf)} {_pct(drops)} {_pct(mins)} {_pct(statistics.mean(named)):>11} "
              f"{_pct(statistics.mean(of_mixed)):>8} {extra:>6.0f} ({extra / runs:4.0%})")
        results["null"].append({**cell, "trials": k, "gate": gate, "nnf": nnf, "drops": drops, "min": mins,
                                "flaky_named": statistics.mean(named), "flaky_of_mixed": statistics.mean(of_mixed),
                                "confirm_runs": extra})

    big = 100 if args.quick else 300
    power_cells = [dict(cases=big, repeat=r, history=h, profile="beta", scenario="drop", drop=0.10, trials=args.power_trials)
                   for r in (1, 3) for h in (5, 10)]
    print(f"\nA real 10-point drop (N = {big}, beta): share detected (targets: ≥ 90 % at × 3, ≥ 80 % at × 1 with 10 runs)")
    print(f"{'rep':>3} {'hist':>4} {'trials':>6} {'gate':>7} {'drop rule':>9} {'reported MDE':>12}")
    results["drop"] = []
    for cell, rows in zip(power_cells, _run(power_cells, args.power_trials, args.jobs)):
        k = len(rows)
        gate = sum(r["exit_code"] == 1 for r in rows) / k
        rule = sum(r["drop_rule_failed"] for r in rows) / k
        mde = statistics.median(r["detectable"] for r in rows if r["detectable"] is not None)
        print(f"{cell['repeat']:>3} {cell['history']:>4} {k:>6} {_pct(gate)} {_pct(rule):>9} {mde:>12.1%}")
        results["drop"].append({**cell, "trials": k, "gate": gate, "drop_rule": rule, "mde": mde})

    break_cells = [dict(cases=big, repeat=3, history=h, profile="steady", scenario="break3", trials=args.power_trials)
                   for h in (5, 10)]
    print(f"\nThree always-passing cases broken (N = {big} × 3, steady): all three found, and the named cases truly broken")
    print(f"{'hist':>4} {'trials':>6} {'all found':>9} {'precision':>9} {'confirm runs':>12}")
    results["break3"] = []
    for cell, rows in zip(break_cells, _run(break_cells, args.power_trials, args.jobs)):
        k = len(rows)
        found = sum(set(r["truly_broken"]) <= set(r["regressions"]) for r in rows) / k
        named = sum(len(r["regressions"]) for r in rows)
        right = sum(len(set(r["regressions"]) & set(r["truly_broken"])) for r in rows)
        precision = right / named if named else 1.0
        extra = statistics.mean(r["confirm_runs"] for r in rows)
        print(f"{cell['history']:>4} {k:>6} {_pct(found):>9} {_pct(precision):>9} {extra:>12.0f}")
        results["break3"].append({**cell, "trials": k, "found": found, "precision": precision, "confirm_runs": extra})

    sweep = (0.04, 0.06, 0.08, 0.10, 0.12, 0.14)
    mde_cells = [dict(cases=big, repeat=1, history=10, profile="beta", scenario="drop", drop=d, trials=args.power_trials)
                 for d in sweep]
    print(f"\nThe smallest detectable drop (N = {big} × 1, 10 stored runs): the all-cases rule's detection by true drop")
    print(f"{'drop':>5} {'trials':>6} {'rule fired':>10} {'reported MDE':>12}")
    curve = []
    for cell, rows in zip(mde_cells, _run(mde_cells, args.power_trials, args.jobs)):
        k = len(rows)
        rate = sum(r["drop_rule_failed"] for r in rows) / k
        mde = statistics.median(r["detectable"] for r in rows if r["detectable"] is not None)
        curve.append((cell["drop"], rate, mde))
        print(f"{cell['drop']:>5.0%} {k:>6} {_pct(rate):>10} {mde:>12.1%}")
    at80 = None
    for (d0, r0, _), (d1, r1, _) in zip(curve, curve[1:]):
        if r0 < 0.8 <= r1:
            at80 = d0 + (0.8 - r0) / (r1 - r0) * (d1 - d0)
    reported = statistics.median(m for _, _, m in curve)
    print(f"detected 4 times in 5 at a drop of {at80:.1%}" if at80 is not None else "80 % not crossed in the sweep",
          f"· reported {reported:.1%} (target: within one point)")
    results["mde"] = {"curve": curve, "at80": at80, "reported": reported}
    print(f"\n{time.time() - started:.0f} s in all")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
