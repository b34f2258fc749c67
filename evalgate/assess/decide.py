"""Deciding every statistical claim of a gate in one family: regressions, drops, shares."""

from __future__ import annotations

from dataclasses import dataclass

from ..baseline import CaseOutcome, Snapshot
from ..policy import GateSpec
from ..stats import (
    Hypothesis,
    Pair,
    chance_worse,
    family,
    finish_drop,
    finish_share,
    fisher_worse,
    fit_prior,
    paired_drop,
    runs_to_decide,
    share_test,
)
from .records import NNF, Assessment, CaseVerdict
from .screen import (
    _rate,
    failed_now,
    has_nnf,
    screen,
    to_confirm,
)
from .variation import variation


def _pairs(cand: Snapshot, base: Snapshot, in_slice: set[str] | None) -> list[Pair]:
    pairs = []
    for case_id, now in cand.cases.items():
        before = base.cases.get(case_id)
        if before is None or (in_slice is not None and case_id not in in_slice):
            continue
        if now.judged <= 0 or before.judged <= 0:
            continue  # errors are counted apart, never as a drop
        pairs.append(Pair(case_id, _rate(before), _rate(now), now.cluster or case_id))
    return pairs


@dataclass
class ShareData:
    """A threshold rule's share as the metrics computed it, and the slice's cases."""

    passed: float
    n: int
    cases: set[str] | None = None
    case_level: bool = True
    """pass_rate (case runs) rather than a scorer's share of turns."""
    clusters: list[tuple[int, int]] | None = None
    """(passed, scored) per cluster its uncertainty is computed over: per case run for a share of turns, per
    conversation (a written case and its recovery variants) for a share of case runs."""


def assess(gate: GateSpec, cand: Snapshot, base: Snapshot | None, confirm: Snapshot | None,
           slices: dict[int, set[str] | None], shares: dict[int, ShareData]) -> Assessment:
    """Decide every statistical claim of the gate in one family."""
    confidence = gate.family_confidence
    alpha = 1 - confidence
    out = Assessment(confidence, base.runs if base is not None else 0)
    var = variation(base, cand, confirm)
    out.varies = True if var.varies else (False if var.observed else None)
    if confirm is not None:
        out.confirm_run = confirm.run_id
        out.confirm_rounds = confirm.history
        out.confirm_runs = sum(c.runs for c in confirm.cases.values())
    hyps: list[Hypothesis] = []
    case_hyps: dict[str, Hypothesis] = {}
    verdicts: dict[str, CaseVerdict] = {}

    if base is not None:
        _flaky(out, base, cand, confirm)
        prior = fit_prior([(c.passed, c.judged) for c in base.cases.values()])
        out.flipped = screen(base, cand)
        if prior is not None:
            out.expected_flips = sum(chance_worse(prior, b.passed, b.judged, cand.cases[k].judged)
                                     for k, b in base.cases.items() if k in cand.cases and b.judged
                                     and cand.cases[k].judged)
        if has_nnf(gate):
            out.judged = True
            confirming = gate.confirm > 0
            flipped = set(out.flipped)
            # with re-runs, the cases that failed now; without, every paired case (the test then sees the same runs
            # the choice did, so the family must count them all)
            tested = failed_now(base, cand) if confirming else [k for k in cand.cases if k in base.cases]
            rerun = to_confirm(gate, base, cand) if confirming else {}
            for case_id in tested:
                before, now = base.cases[case_id], cand.cases[case_id]
                if confirming and case_id not in rerun:
                    hyps.append(Hypothesis(NNF, case_id, 1.0))  # counted, never rejected: it was not re-run
                    if case_id in flipped:
                        out.not_rerun.append(case_id)
                    if gate.flaky == "fail" and before.passed == before.judged:
                        verdicts[case_id] = CaseVerdict(case_id, "inconclusive", (before.passed, before.judged),
                                                        (now.passed, now.judged))
                    continue
                if not confirming and case_id not in flipped:
                    hyps.append(Hypothesis(NNF, case_id, fisher_worse(before.passed, before.judged, now.passed,
                                                                      now.judged)))
                    continue
                v, h = _case(case_id, before, now, confirm.cases.get(case_id) if confirm is not None else None,
                             var.steady_for(case_id), confirming)
                verdicts[case_id] = v
                if h is not None:
                    case_hyps[case_id] = h
                    hyps.append(h)
        for i, rule in enumerate(gate.rules):
            if rule.max_drop is None:
                continue
            test = paired_drop(rule.metric or "pass_rate", _pairs(cand, base, slices.get(i)), rule.max_drop,
                               confidence)
            test.runs_behind = f" against {base.describe()}"
            out.drops[i] = test
            hyps.append(Hypothesis(f"rule:{i}", "", test.p_value))
    for i, data in shares.items():
        rule = gate.rules[i]
        side, limit = ("min", rule.min) if rule.min is not None else ("max", rule.max)
        assert limit is not None
        design = _design(data, cand, base, var.measured)
        share = share_test(data.passed, data.n, limit, side, design, alpha)
        out.shares[i] = share
        hyps.append(Hypothesis(f"rule:{i}", "", share.p_value))
        if rule.min is not None and rule.max is not None:  # both limits: the max side is a second claim
            test_max = share_test(data.passed, data.n, rule.max, "max", design, alpha)
            hyps.append(Hypothesis(f"rule:{i}", "max", test_max.p_value))

    family(hyps, alpha)
    by_rule = {h.group: h for h in hyps if h.key == ""}
    for i, test in out.drops.items():
        h = by_rule[f"rule:{i}"]
        finish_drop(test, h.level, rejected=h.rejected)
    for i, st in out.shares.items():
        group = [h for h in hyps if h.group == f"rule:{i}"]
        both = gate.rules[i].max if gate.rules[i].min is not None else None
        finish_share(st, group[0].level, rejected=any(h.rejected for h in group), upper=both)
    for case_id, h in case_hyps.items():
        v = verdicts[case_id]
        v.p_value, v.level = h.p, h.level
        if h.rejected:
            v.kind = "regression"
            v.why = _said(v) + f": significantly worse (p = {h.p:.2g} at the corrected level {h.level:.2g})"
        elif v.kind == "inconclusive":
            v.decide = _what_decides(v, h.level)
    if gate.flaky == "fail":  # the suite's choice: a case that always passed before and fails now is a new failure
        for case_id, v in verdicts.items():
            if v.kind != "regression" and v.before[0] == v.before[1] and v.now[0] < v.now[1]:
                v.kind = "regression"
                v.why = _said(v) + ": passed every time before and failed now (flaky: fail)"
    out.cases = [verdicts[k] for k in out.flipped if k in verdicts] + [
        v for k, v in verdicts.items() if k not in set(out.flipped)]
    for v in out.cases:
        if v.kind == "flaky":
            out.flaky[v.case_id] = _said(v)
    return out


def _case(case_id: str, before: CaseOutcome, now: CaseOutcome, confirm: CaseOutcome | None, steady: bool,
          confirming: bool) -> tuple[CaseVerdict, Hypothesis | None]:
    """One flipped case: a verdict, and the claim the family judges (none when the rule of determinism decides)."""
    v = CaseVerdict(case_id, "inconclusive", (before.passed, before.judged), (now.passed, now.judged),
                    (confirm.passed, confirm.judged) if confirm is not None else None)
    if confirming and (confirm is None or confirm.judged == 0):
        v.why = _said(v) + ": could not be re-run to confirm" + (" (every confirmation run errored)" if confirm else "")
        v.decide = "a run whose confirmation runs complete"
        return v, None
    if confirm is not None:
        p = fisher_worse(before.passed, before.judged, confirm.passed, confirm.judged)
        failed_all = confirm.passed == 0
    else:
        p = fisher_worse(before.passed, before.judged, now.passed, now.judged)
        failed_all = now.passed == 0
    answers = set(now.digests) | (set(confirm.digests) if confirm is not None else set())
    if (steady and failed_all and now.passed == 0 and before.passed == before.judged and len(answers) == 1
            and len(before.digests) == 1):
        v.kind = "regression"
        runs = now.judged + (confirm.judged if confirm is not None else 0)
        v.why = (f"passed all {before.judged} run(s) before and fails all {runs} now with the same answer each time; "
                 "no case that ran more than once varied, so this is no chance")
        return v, None
    if not failed_all:
        v.kind = "flaky"
    v.why = _said(v)
    return v, Hypothesis(NNF, case_id, p)


def _said(v: CaseVerdict) -> str:
    text = f"passed {v.before[0]} of {v.before[1]} before, {v.now[0]} of {v.now[1]} now"
    if v.confirm is not None:
        text += f", {v.confirm[0]} of {v.confirm[1]} when re-run"
    return text


def _what_decides(v: CaseVerdict, level: float) -> str:
    b, n = v.before
    k = runs_to_decide(b, n, level, 1000)
    runs = v.confirm[1] if v.confirm is not None else v.now[1]
    more = []
    if k is not None and k > runs:
        more.append(f"{k} failing confirmation runs (gate.confirm_max)")
    if b == n:
        # the shortest all-passing history against which these runs, all failing, are significant
        need = next((h for h in range(n + 1, 10_000) if fisher_worse(h, h, 0, runs) <= level), None)
        if need is not None:
            more.append(f"a history of {need} passing run(s) (now {n}; run the baseline again)")
    return " or ".join(more) or "more baseline runs and confirmation runs"


def _flaky(out: Assessment, base: Snapshot, cand: Snapshot, confirm: Snapshot | None) -> None:
    """Cases with mixed outcomes in the baseline's history or within this version (its runs and re-runs)."""
    for case_id, now in cand.cases.items():
        before = base.cases.get(case_id)
        again = confirm.cases.get(case_id) if confirm is not None else None
        passed, judged = now.passed + (again.passed if again else 0), now.judged + (again.judged if again else 0)
        mixed_before = before is not None and 0 < before.passed < before.judged
        if mixed_before or 0 < passed < judged:
            text = (f"passed {before.passed} of {before.judged} before, " if before is not None else "") + \
                   f"{now.passed} of {now.judged} now" + (f", {again.passed} of {again.judged} when re-run" if again else "")
            out.flaky[case_id] = text


MIN_RUNS_FOR_SPREAD = 5
"""Runs per case (history and this run) before a share's run-to-run variance is fitted rather than assumed."""


def _design(data: ShareData, cand: Snapshot, base: Snapshot | None, varies: bool | None) -> float:
    """Run-to-run variance of the share, relative to independent pass-or-fail trials (1), measured where it can be."""
    if varies is False:
        return 0.0
    if not data.case_level:
        return _cluster_design(data.clusters) if data.clusters else 1.0
    if varies is None:  # as if every case run could flip; a conversation's variants flip together
        return _cluster_design(data.clusters) if data.clusters else 1.0
    counts: list[tuple[int, int]] = []
    for case_id, now in cand.cases.items():
        before = base.cases.get(case_id) if base is not None else None
        counts.append((now.passed + (before.passed if before else 0), now.judged + (before.judged if before else 0)))
    if not counts or sum(n for _, n in counts) / len(counts) < MIN_RUNS_FOR_SPREAD:
        return 1.0  # a spread fitted from two or three runs a case would claim more certainty than it has
    prior = fit_prior(counts)
    if prior is None:
        return 1.0
    mu = prior.a / (prior.a + prior.b) if prior.a + prior.b > 0 else 0.0
    if mu <= 0 or mu >= 1:
        return 1.0  # something varies, yet every case run passed (or failed): no spread to fit, assume the most
    weighted = total = 0.0
    for (passed, n), (case_id, now) in zip(counts, cand.cases.items()):
        if data.cases is not None and case_id not in data.cases:
            continue
        weighted += now.judged * prior.variance(passed, n)
        total += now.judged
    if total == 0:
        return 1.0
    return min(1.0, weighted / total / (mu * (1 - mu)))


def _cluster_design(clusters: list[tuple[int, int]]) -> float:
    """How much more a share of turns varies than independent trials would, when a conversation's turns move together.

    The cluster-robust variance over case runs against the binomial one; never below 1 (independence is the
    most a share of turns can hope for).
    """
    total = sum(n for _, n in clusters)
    passed = sum(x for x, _ in clusters)
    c = len(clusters)
    if total == 0 or c < 2 or passed in (0, total):
        return 1.0
    p = passed / total
    robust = c / (c - 1) * sum((x - p * n) ** 2 for x, n in clusters)
    return max(1.0, robust / (p * (1 - p) * total))
