"""Baselines: what a run is compared with, and the per-case comparison.

A baseline reference names one trusted run of the same suite: a name set
in the store (``baseline set NAME``), ``branch:main`` (the latest trusted
run on that branch) or a run id. The baseline is that run's *version*: every
stored trusted run of the same suite, target, suite text and git commit
(newest first, up to the gate's ``history``), pooled per case across all
their repeats, so a nondeterministic case's history is many outcomes, not
one. A versioned JSON file (``baseline export``) carries the same pooled
counts, because a CI runner starts without the store.

``snapshot`` reads runs' per-case outcomes and turn fingerprints;
``compare`` (pure) says what changed: new failures, fixed, still failing,
new and removed cases, and behaviour changes where both pass.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import UsageError

BASELINE_FILE_VERSION = 2
READABLE_FILE_VERSIONS = (1, 2)
MAX_DIGESTS = 16
"""Distinct answers kept per case: enough to tell a case that varies from one that does not."""


@dataclass
class CaseOutcome:
    """One case across its repeats, and what its turns did (first repeat)."""

    passed: int
    runs: int
    errored: int
    tags: list[str] = field(default_factory=list)
    turns: list[dict[str, Any]] = field(default_factory=list)
    """Per turn: route, context ids used, tool names, a hash of the output."""
    digests: list[str] = field(default_factory=list)
    """The distinct answers the case gave (runs without error; up to 16): one means it never varied."""
    cluster: str | None = None
    """The conversation this case is a variant of: the statistics count a conversation once."""

    @property
    def judged(self) -> int:
        """Repeats that ran without error: the ones that say pass or fail."""
        return self.runs - self.errored

    @property
    def all_passed(self) -> bool:
        return self.judged > 0 and self.passed == self.judged

    @property
    def any_failed(self) -> bool:
        return self.passed < self.judged

    @property
    def flaky(self) -> bool:
        return 0 < self.passed < self.judged


@dataclass
class Snapshot:
    """A run reduced to what a comparison needs."""

    suite: str
    run_id: str
    git_commit: str | None
    git_branch: str | None
    metrics: dict[str, Any]
    cases: dict[str, CaseOutcome]
    source: str = "store"
    history: list[str] = field(default_factory=list)
    """The runs pooled, newest first (the first is ``run_id``)."""

    @property
    def runs(self) -> int:
        return max(len(self.history), 1)

    def describe(self) -> str:
        """'5 baseline runs (15 case runs per case)' or 'baseline run X'."""
        per = max((c.judged for c in self.cases.values()), default=0)
        if self.runs == 1:
            return f"baseline run {self.run_id}" + (f" ({per} repeats per case)" if per > 1 else "")
        return f"{self.runs} baseline runs (up to {per} case runs per case)"

    def to_dict(self) -> dict[str, Any]:
        return {"suite": self.suite, "run_id": self.run_id, "git_commit": self.git_commit,
                "git_branch": self.git_branch, "metrics": self.metrics, "history": self.history or [self.run_id],
                "cases": {k: asdict(v) for k, v in self.cases.items()}}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str) -> Snapshot:
        fields = set(CaseOutcome.__dataclass_fields__)
        cases = {k: CaseOutcome(**{f: x for f, x in v.items() if f in fields}) for k, v in data["cases"].items()}
        return cls(data["suite"], data["run_id"], data.get("git_commit"), data.get("git_branch"),
                   data.get("metrics", {}), cases, source, list(data.get("history") or [data["run_id"]]))


def _fingerprint(trace_json: str | None, route: str | None, output: str | None) -> dict[str, Any]:
    trace = json.loads(trace_json) if trace_json else {}
    context = [c["id"] for c in trace.get("context", []) if c.get("used", True)]
    tools = [t["name"] for t in trace.get("tool_calls", [])]
    digest = hashlib.sha1((output or "").strip().encode()).hexdigest()[:12] if output is not None else None
    return {"route": route, "context": context, "tools": tools, "output": digest}


def snapshot(con: Any, run_id: str, pooled: list[str] | None = None) -> Snapshot:
    """Read stored outcomes: ``run_id``'s, pooled per case with the runs in ``pooled`` (its version).

    Turn fingerprints (for behaviour changes) come from ``run_id``'s first repeat.
    """
    run = con.execute("SELECT suite, git_commit, git_branch, summary FROM runs WHERE run_id = ?", [run_id]).fetchone()
    if run is None:
        raise UsageError(f"no run '{run_id}' in the store")
    summary = json.loads(run[3]) if run[3] else {}
    runs = [run_id] + [r for r in (pooled or []) if r != run_id]
    cases: dict[str, CaseOutcome] = {}
    for case_id, passed, n, errored, tags, digests, cluster in con.execute(
            "SELECT case_id, count(*) FILTER (passed), count(*), count(*) FILTER (errored), any_value(tags), "
            "list(DISTINCT digest) FILTER (NOT errored AND digest IS NOT NULL), any_value(variant_of) FROM cases "
            "WHERE list_contains(?, run_id) GROUP BY case_id ORDER BY min(seq)", [runs]).fetchall():
        cases[case_id] = CaseOutcome(int(passed), int(n), int(errored), list(tags or []),
                                     digests=sorted(digests or [])[:MAX_DIGESTS], cluster=cluster)
    first_repeat = con.execute("SELECT min(repeat) FROM cases WHERE run_id = ?", [run_id]).fetchone()[0] or 0
    for case_id, trace, route, output in con.execute(
            "SELECT case_id, trace, route, output FROM turns WHERE run_id = ? AND repeat = ? ORDER BY case_id, turn",
            [run_id, first_repeat]).fetchall():
        if case_id in cases:
            cases[case_id].turns.append(_fingerprint(trace, route, output))
    return Snapshot(run[0], run_id, run[1], run[2], summary.get("metrics", {}), cases, history=runs)


def version_runs(con: Any, run_id: str, limit: int) -> list[str]:
    """The trusted runs of ``run_id``'s version, newest first: same suite, target, suite text and commit.

    Runs made with uncommitted changes are one version when their changes are
    the same (``git_diff``); without git, every run of the same suite text and
    target is one version.
    """
    row = con.execute("SELECT suite, target, suite_hash, git_commit, coalesce(git_dirty, false), git_diff FROM runs "
                      "WHERE run_id = ?", [run_id]).fetchone()
    if row is None or (row[4] and row[5] is None):
        return [run_id]
    rows = con.execute(
        f"SELECT run_id FROM runs WHERE suite = ? AND target IS NOT DISTINCT FROM ? AND suite_hash IS NOT DISTINCT "
        f"FROM ? AND git_commit IS NOT DISTINCT FROM ? AND coalesce(git_dirty, false) = ? "
        f"AND git_diff IS NOT DISTINCT FROM ? AND {TRUSTED} "
        f"AND started_at <= (SELECT started_at FROM runs WHERE run_id = ?) ORDER BY started_at DESC LIMIT ?",
        [row[0], row[1], row[2], row[3], row[4], row[5], run_id, limit]).fetchall()
    runs = [str(r[0]) for r in rows]
    return runs if run_id in runs else [run_id, *runs[: limit - 1]]


# a run fit to be a baseline: it finished, its verdict can be trusted (exit 0 or 1), and it ran
# every case (no --tags selection)
TRUSTED = ("status = 'completed' AND exit_code IN (0, 1) AND coalesce(len(selected_tags), 0) = 0 "
           "AND parent_run IS NULL")


def find_run(con: Any, ref: str, suite: str) -> str | None:
    """The run a baseline reference names for ``suite``: a stored name, ``latest``, ``branch:NAME`` or a run id."""
    if con.execute("SELECT 1 FROM runs WHERE run_id = ? AND suite = ?", [ref, suite]).fetchone():
        if not con.execute(f"SELECT 1 FROM runs WHERE run_id = ? AND {TRUSTED}", [ref]).fetchone():
            raise UsageError(f"run {ref} cannot be a baseline: it did not complete with a trusted verdict, "
                             "or it ran only some cases (--tags)")
        return ref
    if ref == "latest":
        row = con.execute(f"SELECT run_id FROM runs WHERE suite = ? AND {TRUSTED} ORDER BY started_at DESC LIMIT 1",
                          [suite]).fetchone()
    elif ref.startswith("branch:"):
        row = con.execute(f"SELECT run_id FROM runs WHERE suite = ? AND git_branch = ? AND {TRUSTED} "
                          "ORDER BY started_at DESC LIMIT 1", [suite, ref.removeprefix("branch:")]).fetchone()
    else:
        row = con.execute("SELECT run_id FROM baselines WHERE name = ? AND suite = ?", [ref, suite]).fetchone()
    return str(row[0]) if row else None


def set_baseline(con: Any, name: str, run_ids: list[str]) -> list[dict[str, str]]:
    """Point ``name`` at each run (one per suite); returns what was set."""
    out = []
    for run_id in run_ids:
        row = con.execute("SELECT suite, status FROM runs WHERE run_id = ?", [run_id]).fetchone()
        if row is None:
            raise UsageError(f"no run '{run_id}' in the store")
        if not con.execute(f"SELECT 1 FROM runs WHERE run_id = ? AND {TRUSTED}", [run_id]).fetchone():
            raise UsageError(f"run {run_id} cannot be a baseline ({row[1]})",
                             hint="a baseline must be a completed run of every case whose verdict was pass or fail")
        con.execute("INSERT OR REPLACE INTO baselines (name, suite, run_id, created_at) VALUES (?, ?, ?, ?)",
                    [name, row[0], run_id, datetime.now(timezone.utc).replace(tzinfo=None)])
        out.append({"name": name, "suite": str(row[0]), "run_id": run_id})
    return out


def export(con: Any, name: str, path: Path, history: int = 20) -> dict[str, Any]:
    """Write the named baseline (every suite it covers, each pooled over its version's runs) as a versioned JSON file."""
    rows = con.execute("SELECT suite, run_id FROM baselines WHERE name = ? ORDER BY suite", [name]).fetchall()
    if not rows:
        raise UsageError(f"no baseline named '{name}'", hint="evalgate baseline set NAME [RUN] first; 'baseline show' lists them")
    data = {"evalgate_baseline": BASELINE_FILE_VERSION, "name": name,
            "suites": {suite: snapshot(con, run_id, version_runs(con, run_id, history)).to_dict()
                       for suite, run_id in rows}}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)
    return {"name": name, "path": str(path), "suites": [r[0] for r in rows]}


def read_file(path: Path, suite: str) -> Snapshot | None:
    """The suite's snapshot from a baseline file (None when the file does not cover it)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"baseline file not found: {path}", hint="write one with 'evalgate baseline export NAME PATH'") from None
    except ValueError as exc:
        raise UsageError(f"baseline file {path} is not valid JSON: {exc}") from None
    version = data.get("evalgate_baseline") if isinstance(data, dict) else None
    if version not in READABLE_FILE_VERSIONS:
        raise UsageError(f"{path} is not an evalgate baseline file of version {BASELINE_FILE_VERSION} (found {version!r})",
                         hint="write one with 'evalgate baseline export NAME PATH'")
    entry = data.get("suites", {}).get(suite)
    return Snapshot.from_dict(entry, str(path)) if entry else None


@dataclass
class Comparison:
    """What changed between a baseline and a candidate run, case by case."""

    baseline_run: str
    baseline_source: str
    new_failures: list[str] = field(default_factory=list)
    fixed: list[str] = field(default_factory=list)
    still_failing: list[str] = field(default_factory=list)
    new_cases: list[str] = field(default_factory=list)
    removed_cases: list[str] = field(default_factory=list)
    flaky: list[str] = field(default_factory=list)
    flaky_regressed: list[str] = field(default_factory=list)
    """Flaky now, passed every time in the baseline."""
    errored: list[str] = field(default_factory=list)
    """Cases that only errored now (no repeat gave a verdict): neither failed nor passed."""
    changed: dict[str, list[str]] = field(default_factory=dict)
    """Case id → what changed in its turns (route, context, tools, output), pass or fail."""
    paired: int = 0
    flipped: list[str] = field(default_factory=list)
    """Cases that did worse than their history (the gate then confirms or clears each)."""
    inconclusive: list[str] = field(default_factory=list)
    """Flipped cases the evidence cannot decide yet."""
    baseline_runs: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare(base: Snapshot, cand: Snapshot) -> Comparison:
    """Per-case comparison; flaky cases (mixed outcomes in either run) are kept apart."""
    out = Comparison(base.run_id, base.source)
    for case_id, now in cand.cases.items():
        before = base.cases.get(case_id)
        if before is None:
            out.new_cases.append(case_id)
            continue
        out.paired += 1
        if now.judged == 0:
            out.errored.append(case_id)
        elif now.flaky or before.flaky:
            out.flaky.append(case_id)
            if before.all_passed:
                out.flaky_regressed.append(case_id)
        elif before.all_passed and now.any_failed:
            out.new_failures.append(case_id)
        elif before.any_failed and now.all_passed:
            out.fixed.append(case_id)
        elif before.any_failed and now.any_failed:
            out.still_failing.append(case_id)
        # a case whose answers already varied within its history changes its words every run: not news
        what = _changes(before.turns, now.turns, words=len(before.digests) <= 1)
        if what:
            out.changed[case_id] = what
    out.removed_cases = [c for c in base.cases if c not in cand.cases]
    return out


def _changes(before: list[dict[str, Any]], now: list[dict[str, Any]], words: bool = True) -> list[str]:
    what: list[str] = []
    if len(before) != len(now):
        what.append(f"turns {len(before)} → {len(now)}")
    for i, (b, n) in enumerate(zip(before, now), 1):
        for key in ("route", "context", "tools", "output") if words else ("route", "context", "tools"):
            if b.get(key) != n.get(key):
                label = f"turn {i} {key}"
                if key == "route":
                    label += f" {b.get(key)} → {n.get(key)}"
                what.append(label)
    return what
