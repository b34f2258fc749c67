"""Soundness of the gate, measured through the real product on a simulated nondeterministic target.

Used by the soundness test and ``benchmarks/bench_gate_soundness.py``. Each
trial is a fresh project and store: a python target whose cases pass with
known probabilities (seeded by run, case and repeat, so every run differs),
``history`` baseline runs of one version, then a candidate run through
``evalgate.run`` with the realistic gate below. Nothing of the statistics is
re-implemented here: the verdicts are evalgate's own.

    no_new_failures · pass_rate ≥ 0.75 · pass_rate drop ≤ 0.02 on all cases ·
    drop ≤ 0.05 on three overlapping tag slices · confidence 0.95
"""

from __future__ import annotations

import json
import os
import random
import tempfile
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TARGET = '''
import json, os, random

_VERSIONS: dict = {}

def respond(req):
    path = os.environ["EVALGATE_SIM_PROBS"]
    table = _VERSIONS.get(path)
    if table is None:
        table = _VERSIONS[path] = json.load(open(path))
    version = table[os.environ["EVALGATE_SIM_VERSION"]]
    # seeded by the trial's own run counter (not the random run id), so a trial is the same every time it runs
    rng = random.Random(f"{os.environ['EVALGATE_SIM_RUN']}|{req['case_id']}|{req['repeat']}")
    ok = rng.random() < version[req["case_id"]]
    if table.get("vary"):  # a sampled answer: the words differ from run to run, as a model's do
        return {"output": ("right " if ok else "wrong ") + str(rng.randrange(10**6))}
    return {"output": "right" if ok else "wrong"}
'''

GATE = """
gate:
  confidence: 0.95
  rules:
    - no_new_failures: true
    - {metric: pass_rate, min: 0.75}
    - {metric: pass_rate, max_drop: 0.02}
    - {metric: pass_rate, max_drop: 0.05, where: {tags: s1}}
    - {metric: pass_rate, max_drop: 0.05, where: {tags: s2}}
    - {metric: pass_rate, max_drop: 0.05, where: {tags: s3}}
"""


def _tags(i: int) -> list[str]:
    tags = []
    if i % 2 == 0:
        tags.append("s1")
    if i % 3 != 0:
        tags.append("s2")
    if i % 4 in (0, 1):
        tags.append("s3")
    return tags


def probabilities(profile: str, cases: int, rng: random.Random) -> list[float]:
    """beta: Beta(4, 1) per case (mean 0.8); steady: 70 % of cases always pass, the rest Beta(4, 1);
    lowp: 90 % always pass, the rest pass 20 % of the time (the few noisy cases rarely pass: the hardest
    system to tell from a deterministic one with one stored run)."""
    if profile == "beta":
        return [rng.betavariate(4, 1) for _ in range(cases)]
    if profile == "steady":
        return [1.0 if rng.random() < 0.7 else rng.betavariate(4, 1) for _ in range(cases)]
    if profile == "lowp":
        return [1.0 if rng.random() < 0.9 else 0.2 for _ in range(cases)]
    raise ValueError(f"unknown profile {profile}")


@dataclass
class Trial:
    """One candidate run against its history, as evalgate judged it."""

    exit_code: int
    failed_rules: list[str]
    regressions: list[str]
    inconclusive: list[str]
    flaky: list[str]
    detectable: float | None
    """The smallest detectable drop evalgate reported for the all-cases max_drop rule."""
    drop_rule_failed: bool
    confirm_runs: int
    truly_broken: list[str] = field(default_factory=list)
    nondeterministic: list[str] = field(default_factory=list)
    mixed: list[str] = field(default_factory=list)
    """Cases whose stored outcomes (all runs of the trial) were mixed: what any method could name flaky."""


def trial(*, cases: int, repeat: int, history: int, profile: str = "beta", scenario: str = "null",
          drop: float = 0.10, seed: int = 0, vary: bool = False, gate: str = GATE) -> Trial:
    """Run one trial in a fresh temporary project; ``scenario`` is null, drop or break3."""
    import evalgate
    from evalgate.config import find_config
    from evalgate.runner import RunOptions

    rng = random.Random(seed)
    probs = probabilities(profile, cases, rng)
    ids = [f"c{i:04d}" for i in range(cases)]
    after = list(probs)
    broken: list[str] = []
    if scenario == "drop":
        after = [max(p - drop, 0.0) for p in probs]
    elif scenario == "break3":
        steady = [i for i, p in enumerate(probs) if p >= 1.0]
        for i in rng.sample(steady, min(3, len(steady))):
            after[i] = 0.0
            broken.append(ids[i])
    elif scenario != "null":
        raise ValueError(f"unknown scenario {scenario}")
    with tempfile.TemporaryDirectory(prefix="evalgate-sim-") as tmp:
        root = Path(tmp)
        (root / "pyproject.toml").write_text('[tool.evalgate]\nsuites = "suites"\nstore = "store.duckdb"\n')
        (root / "sim_target.py").write_text(textwrap.dedent(TARGET))
        table: dict[str, Any] = {"base": dict(zip(ids, probs)), "cand": dict(zip(ids, after)), "vary": vary}
        (root / "probs.json").write_text(json.dumps(table))
        lines = ["name: sim", "target: {python: sim_target:respond}", f"repeat: {repeat}", "concurrency: 1",
                 "cases:"]
        lines += [f"  - {{id: {cid}, input: '{cid}', tags: [{', '.join(_tags(i))}], expect: {{output: {{contains: [right]}}}}}}"
                  for i, cid in enumerate(ids)]
        (root / "suites").mkdir()
        (root / "suites" / "sim.yaml").write_text("\n".join(lines) + "\n" + textwrap.dedent(gate))
        old = {k: os.environ.get(k) for k in ("EVALGATE_SIM_PROBS", "EVALGATE_SIM_VERSION", "EVALGATE_SIM_RUN")}
        cwd = os.getcwd()
        os.environ["EVALGATE_SIM_PROBS"] = str(root / "probs.json")
        try:
            os.chdir(root)
            config = find_config(root)
            os.environ["EVALGATE_SIM_VERSION"] = "base"
            last = None
            for i in range(history):
                os.environ["EVALGATE_SIM_RUN"] = f"{seed}-{i}"
                last = evalgate.run(config=config).suites[0].run_id
            os.environ["EVALGATE_SIM_RUN"] = f"{seed}-candidate"
            os.environ["EVALGATE_SIM_VERSION"] = "cand"
            report = evalgate.run(config=config, options=RunOptions(baseline=last))
            mixed = [str(r[0]) for r in evalgate.Store(root / "store.duckdb").query(
                "SELECT case_id FROM cases GROUP BY case_id HAVING bool_or(passed) AND bool_or(NOT passed)")]
        finally:
            os.chdir(cwd)
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    s = report.suites[0]
    stats = s.statistics or {}
    rules = s.verdict.rules
    failed = [r.rule for r in rules if r.status == "fail"]
    drop_rule = next((r for r in rules if r.rule == "pass_rate drop ≤ 0.02"), None)
    detectable = (stats.get("drops") or {}).get("2", {}).get("detectable")  # GATE's rule 2: all cases
    cases_ = stats.get("cases", [])
    return Trial(report.exit_code, failed, [c["case_id"] for c in cases_ if c["kind"] == "regression"],
                 [c["case_id"] for c in cases_ if c["kind"] == "inconclusive"], list((stats.get("flaky") or {})),
                 detectable, drop_rule is not None and drop_rule.status == "fail", int(stats.get("confirm_runs") or 0),
                 broken, [cid for cid, p in zip(ids, probs) if 0.0 < p < 1.0], mixed)


def false_alarm_rate(trials: int, **kw: Any) -> float:
    """Share of ``trials`` (seeds 0..trials-1) in which the whole gate failed with nothing changed."""
    return sum(trial(seed=s, scenario="null", **kw).exit_code == 1 for s in range(trials)) / trials
