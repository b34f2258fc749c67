"""Baselines: what a run is compared with, and the per-case comparison.

A baseline reference names one trusted run of the same suite: a name set
in the store (``baseline set NAME``), ``branch:main`` (the latest trusted
run on that branch) or a run id. The baseline is that run's *version*: every
stored trusted run of the same suite, target, suite text and git commit
(newest first, up to the gate's ``history``), pooled per case across all
their repeats, so a nondeterministic case's history is many outcomes, not
one. A versioned JSON file (``baseline export``) carries the same pooled
counts, because a CI runner starts without the store.

The records live here (``CaseOutcome``, ``Snapshot``, ``Comparison``) with
``compare`` (pure: new failures, fixed, still failing, new and removed cases,
behaviour changes where both pass) and the baseline file's reader; reading
them from the store is ``store.baselines``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import UsageError

BASELINE_FILE_VERSION = 2
READABLE_FILE_VERSIONS = (1, 2)
MAX_DIGESTS = 16
"""Distinct answers kept per case: enough to tell a case that varies from one that does not."""


@dataclass(slots=True)
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
    turns_read: bool = True
    """False for a store snapshot read without turn fingerprints (``store.baselines.add_turns`` reads some)."""

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
        if _same_answers(before, now):
            continue  # one answer, the same digest: every turn did what it did before
        # a case whose answers already varied within its history changes its words every run: not news
        what = _changes(before.turns, now.turns, words=len(before.digests) <= 1)
        if what:
            out.changed[case_id] = what
    out.removed_cases = [c for c in base.cases if c not in cand.cases]
    return out


def _same_answers(before: CaseOutcome, now: CaseOutcome) -> bool:
    """Both gave one answer, the same one, and never errored: their turns are alike (the digest covers each turn's
    route, context, tools, output, state and error)."""
    return (not before.errored and not now.errored and len(now.digests) == 1 and now.digests == before.digests)


def turns_needed(base: Snapshot, cand: Snapshot) -> list[str]:
    """The cases whose turns ``compare`` reads: in both snapshots, and not plainly the same answers."""
    return [case_id for case_id, now in cand.cases.items()
            if (before := base.cases.get(case_id)) is not None and not _same_answers(before, now)]


def _changes(before: list[dict[str, Any]], now: list[dict[str, Any]], words: bool = True) -> list[str]:
    what: list[str] = []
    if len(before) != len(now):
        what.append(f"turns {len(before)} → {len(now)}")
    for i, (b, n) in enumerate(zip(before, now), 1):
        for key in ("route", "context", "tools", "output") if words else ("route", "context", "tools"):
            if b.get(key) != n.get(key):
                what.append(f"turn {i} {key}{_difference(key, b, n)}")
    return what


def _difference(key: str, before: dict[str, Any], now: dict[str, Any]) -> str:
    """The change itself: ``refunds → smalltalk``, ``+kb/internal-fraud-rules −kb/refund-policy``, the answers."""
    b, n = before.get(key), now.get(key)
    if key == "route":
        return f" {b} → {n}"
    if key in ("context", "tools"):
        b, n = list(b or []), list(n or [])
        added = [f"+{x}" for x in n if x not in b]
        removed = [f"−{x}" for x in b if x not in n]
        return (": " + " ".join(added + removed)) if added or removed else f": {b} → {n} (order)"
    if "text" in before or "text" in now:  # baseline files written by earlier evalgate kept only a hash
        return f": {json.dumps(before.get('text'), ensure_ascii=False)} → {json.dumps(now.get('text'), ensure_ascii=False)}"
    return ""
