"""Which cases ``no_new_failures`` tests (chosen on this run alone), which it re-runs, and the probes beside them."""

from __future__ import annotations

from ..baseline import CaseOutcome, Snapshot
from ..policy import GateSpec, is_proportion
from ..stats import (
    runs_to_decide,
)


def _rate(c: CaseOutcome) -> float:
    return c.passed / c.judged if c.judged else 0.0


def screen(base: Snapshot, cand: Snapshot) -> list[str]:
    """Cases that did worse now than in their history (and failed at least once now), in case order."""
    out = []
    for case_id, now in cand.cases.items():
        before = base.cases.get(case_id)
        if before is None or before.judged == 0 or now.judged == 0:
            continue
        if now.passed < now.judged and _rate(now) < _rate(before) - 1e-12:
            out.append(case_id)
    return out


def failed_now(base: Snapshot, cand: Snapshot) -> list[str]:
    """Paired cases that failed at least once in this run: the cases ``no_new_failures`` tests.

    Chosen on this run alone, never on the history: the history and the
    confirmation runs are then fresh evidence for every one of them, and the
    family corrects for all of them.
    """
    out = []
    for case_id, now in cand.cases.items():
        before = base.cases.get(case_id)
        if before is not None and before.judged and now.judged and now.passed < now.judged:
            out.append(case_id)
    return out


def _level(gate: GateSpec, tested: int) -> float:
    """The level a tested case starts at: its rule's share of the family, split over the cases tested."""
    groups = 1 + len(statistical_rules(gate, True))
    return (1 - gate.family_confidence) / groups / max(tested, 1)


PROBES = 20
"""At most this many cases that did better now are re-run once, as evidence of how much the system varies."""


def to_confirm(gate: GateSpec, base: Snapshot, cand: Snapshot) -> dict[str, int]:
    """Tested cases worth re-running, and how often at most.

    A case is re-run when it did worse than its history and failing again
    could decide it (significant against its history within ``confirm_max``
    runs), or when it passed every time before (a deterministic system then
    decides it). Skipping the others only forgoes a rejection: it cannot raise
    a false alarm.
    """
    tested = failed_now(base, cand)
    level = _level(gate, len(tested))
    plan = {}
    for case_id in tested:
        before, now = base.cases[case_id], cand.cases[case_id]
        if _rate(now) >= _rate(before) - 1e-12:
            continue
        k = runs_to_decide(before.passed, before.judged, level, gate.confirm_max)
        if k is not None:
            plan[case_id] = max(gate.confirm, k)
        elif before.passed == before.judged:
            plan[case_id] = gate.confirm
    return plan


def probes(base: Snapshot, cand: Snapshot, plan: dict[str, int]) -> list[str]:
    """Cases re-run once beside the confirmation, so that whether the system varies is measured, not assumed.

    Flips go both ways by chance, and a noisy case is likelier to have failed
    somewhere: the cases that did *better* than their history, then those
    that failed before, are the likeliest to show a nondeterministic system
    varying when re-run, where a deterministic one gives the same answer
    again. When there are none and nothing else ran twice, a few cases that
    passed stand in.
    """
    if not plan:
        return []
    paired = [(k, base.cases[k], now) for k, now in cand.cases.items()
              if k in base.cases and k not in plan and base.cases[k].judged and now.judged]
    better = [k for k, before, now in paired if _rate(now) > _rate(before) + 1e-12]
    failed_before = [k for k, before, now in paired if before.passed < before.judged and k not in set(better)]
    chosen = (better + failed_before)[:PROBES]
    if chosen:
        return chosen
    ran_twice = any(c.judged >= 2 for snap in (base, cand) for c in snap.cases.values())
    if ran_twice:
        return []
    return [k for k, _, now in paired if now.passed == now.judged][:3]


def statistical_rules(gate: GateSpec, has_baseline: bool) -> list[int]:
    """Indices of the rules judged in the family (besides no_new_failures)."""
    out = []
    for i, rule in enumerate(gate.rules):
        if rule.max_drop is not None and has_baseline:
            out.append(i)
        elif rule.metric is not None and rule.max_drop is None and is_proportion(rule.metric) and (
                _inner(rule.min) or _inner(rule.max)):
            out.append(i)
    return out


def _inner(limit: float | None) -> bool:
    """A limit strictly inside (0, 1): 'at least 100 %' or 'at most 0 %' is disproved by one case, not estimated."""
    return limit is not None and 0.0 < limit < 1.0


def has_nnf(gate: GateSpec) -> bool:
    return any(r.no_new_failures for r in gate.rules)
