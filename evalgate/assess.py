"""What the runs show, decided as one family: regressions, drops and shares.

Pure: snapshots and counts in, an ``Assessment`` out (the gate turns it into
rule results, the reporters into words). The steps:

1. **Screen.** A case is *flipped* when it did worse this run than in the
   baseline's pooled history (and failed at least once now).
2. **Confirm.** Each flipped case this run makes suspicious is re-run within
   the same ``evalgate run``, in rounds, until it passes once (then it is
   flaky) or has failed ``gate.confirm`` times (more, up to ``confirm_max``,
   when that is what it takes to decide); the confirmation runs are fresh
   evidence, so testing them against the history is honest whatever the
   screen picked.
3. **Decide.** A case is a regression when its confirmation runs are
   significantly worse than its history (Fisher's exact test), judged in one
   family with every other statistical rule of the gate; or, when the
   history is too short for that, when nothing in this version varies from
   run to run (every case that ran twice gave the same answer each time, as
   a deterministic system does), it passed every time before and now fails
   every time with the same answer. Otherwise it is *flaky* (it passed again
   when re-run) or *inconclusive* (it failed every confirmation run, but the
   evidence is too thin), named with what would decide it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .baseline import CaseOutcome, Snapshot
from .policy import GateSpec, is_proportion
from .results import CaseKind
from .stats import (
    DropTest,
    Hypothesis,
    Pair,
    ShareTest,
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

NNF = "no_new_failures"


@dataclass
class CaseVerdict:
    """What the evidence says about one case that did worse than its history."""

    case_id: str
    kind: CaseKind
    before: tuple[int, int]
    """Passes and runs without error in the baseline's history."""
    now: tuple[int, int]
    """Passes and runs without error in this run."""
    confirm: tuple[int, int] | None = None
    """Passes and runs without error when re-run to confirm."""
    p_value: float | None = None
    level: float | None = None
    why: str = ""
    decide: str | None = None
    """For an inconclusive case: what would decide it."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Assessment:
    """Every statistical decision of one gate, and the evidence behind each."""

    confidence: float
    history_runs: int = 0
    varies: bool | None = None
    """Does anything in these versions vary from run to run? None: nothing ran twice, so not measured."""
    flipped: list[str] = field(default_factory=list)
    expected_flips: float | None = None
    """How many cases would do worse than their history by chance alone (empirical Bayes over the history)."""
    cases: list[CaseVerdict] = field(default_factory=list)
    flaky: dict[str, str] = field(default_factory=dict)
    """Case id → its outcomes ("passed 7 of 10 before, 1 of 3 now"): mixed in the history or in this run."""
    confirm_runs: int = 0
    """Extra case runs the confirmation made."""
    confirm_run: str | None = None
    confirm_rounds: list[str] = field(default_factory=list)
    """Every confirmation run (one per round: a case is re-run until it passes or has failed enough)."""
    drops: dict[int, DropTest] = field(default_factory=dict)
    """Rule index → its paired test."""
    shares: dict[int, ShareTest] = field(default_factory=dict)
    """Rule index → its threshold test on a share."""
    nnf_level: float | None = None
    judged: bool = False
    """Were the flipped cases judged (the gate has a no_new_failures rule)?"""
    within_chance: list[str] = field(default_factory=list)
    """Flipped cases this run alone does not make suspicious: not re-run, not a regression."""

    @property
    def regressions(self) -> list[CaseVerdict]:
        return [c for c in self.cases if c.kind == "regression"]

    @property
    def inconclusive(self) -> list[CaseVerdict]:
        return [c for c in self.cases if c.kind == "inconclusive"]

    def words(self) -> str:
        """'11 case(s) did worse than their history; about 9 expected by chance from 5 baseline runs; ...'"""
        if not self.flipped:
            return "no case did worse than its history" + self._behind()
        parts = [f"{len(self.flipped)} case(s) did worse than their history" + self._behind()]
        if not self.judged:
            return parts[0] + " (not confirmed: the gate has no no_new_failures rule)"
        if self.expected_flips is not None:
            parts.append(f"about {self.expected_flips:.0f} expected by chance")
        if self.within_chance:
            parts.append(f"{len(self.within_chance)} by no more than chance makes likely")
        if self.confirm_runs:
            parts.append(f"{len(self.flipped) - len(self.within_chance)} re-run ({self.confirm_runs} case run(s)) to confirm")
        reg = self.regressions
        parts.append(f"{len(reg)} confirmed regression(s)" + (": " + ", ".join(c.case_id for c in reg[:5])
                                                              + (" …" if len(reg) > 5 else "") if reg else ""))
        again = [c for c in self.cases if c.kind == "flaky"]
        if again:
            parts.append(f"{len(again)} passed again (flaky)")
        inc = self.inconclusive
        if inc:
            parts.append(f"{len(inc)} inconclusive: " + ", ".join(c.case_id for c in inc[:5]) + (" …" if len(inc) > 5 else ""))
        return "; ".join(parts)

    def _behind(self) -> str:
        return f" ({self.history_runs} baseline run{'s' if self.history_runs != 1 else ''})" if self.history_runs else ""

    def to_dict(self) -> dict[str, Any]:
        return {"confidence": self.confidence, "history_runs": self.history_runs, "varies": self.varies,
                "judged": self.judged,
                "flipped": self.flipped, "within_chance": self.within_chance, "expected_flips": self.expected_flips,
                "cases": [c.to_dict() for c in self.cases], "flaky": self.flaky,
                "confirm_runs": self.confirm_runs, "confirm_run": self.confirm_run,
                "confirm_rounds": self.confirm_rounds,
                "drops": {str(k): asdict(v) for k, v in self.drops.items()},
                "shares": {str(k): asdict(v) for k, v in self.shares.items()}, "words": self.words()}


# --- 1. screen, 2. plan the confirmation ---------------------------------------------

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

    Flips go both ways by chance: the cases that did *better* than their
    history are the likeliest to show a nondeterministic system varying when
    re-run, where a deterministic one gives the same answer again. When no case
    did better and nothing else ran twice, a few cases that passed stand in.
    """
    if not plan:
        return []
    better = [k for k, now in cand.cases.items() if k in base.cases and k not in plan and base.cases[k].judged
              and now.judged and _rate(now) > _rate(base.cases[k]) + 1e-12]
    if better:
        return better[:PROBES]
    ran_twice = any(c.judged >= 2 for snap in (base, cand) for c in snap.cases.values())
    if ran_twice:
        return []
    return [k for k, now in cand.cases.items() if k in base.cases and k not in plan and now.judged
            and now.passed == now.judged][:3]


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


def plan_confirmation(gate: GateSpec, base: Snapshot, cand: Snapshot) -> dict[str, int]:
    """Case id → how many times to re-run it at most (rounds stop at its first pass)."""
    if gate.confirm <= 0 or not has_nnf(gate):
        return {}
    plan = to_confirm(gate, base, cand)
    return {**plan, **dict.fromkeys(probes(base, cand, plan), 1)}


# --- 3. decide -------------------------------------------------------------------

@dataclass
class Variation:
    """What the runs show about run-to-run variation in these versions."""

    varies: bool
    """Some case gave different outcomes or answers across runs of one version."""
    observed: set[str]
    """Cases that ran at least twice within one version (history, repeats or re-runs)."""
    observed_before_confirming: set[str]
    """The same, from the history and this run's repeats only (no confirmation run)."""

    def steady_for(self, case_id: str) -> bool:
        """Nothing varies, and some *other* case shows it: a case is never its own evidence of determinism."""
        return not self.varies and bool(self.observed - {case_id})

    @property
    def measured(self) -> bool | None:
        """For shares: True (varies), False (measured steady without the re-runs), None (not measured)."""
        if self.varies:
            return True
        return False if self.observed_before_confirming else None


def variation(base: Snapshot | None, cand: Snapshot, confirm: Snapshot | None) -> Variation:
    """Any case of these versions with different outcomes or answers across its runs, and who ran twice."""
    out = Variation(False, set(), set())
    for snap in (base, cand):
        if snap is None:
            continue
        for case_id, c in snap.cases.items():
            if c.judged >= 2:
                out.observed.add(case_id)
                out.observed_before_confirming.add(case_id)
            runs, passed, digests = c.judged, c.passed, set(c.digests)
            if snap is cand and confirm is not None and case_id in confirm.cases:
                more = confirm.cases[case_id]
                runs, passed, digests = runs + more.judged, passed + more.passed, digests | set(more.digests)
                if runs >= 2:
                    out.observed.add(case_id)
            if 0 < passed < runs or len(digests) > 1:
                out.varies = True
    return out


def version_varies(base: Snapshot | None, cand: Snapshot, confirm: Snapshot | None) -> bool | None:
    """True when some case varies, False when cases ran twice and none did, None when nothing ran twice."""
    v = variation(base, cand, confirm)
    return True if v.varies else (False if v.observed else None)


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
    """For a share of turns: (passed, scored) per case run, the clusters its uncertainty is computed over."""


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
                        out.within_chance.append(case_id)
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
        out.nnf_level = h.level if out.nnf_level is None else min(out.nnf_level, h.level)
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


def _design(data: ShareData, cand: Snapshot, base: Snapshot | None, varies: bool | None) -> float:
    """Run-to-run variance of the share, relative to independent pass-or-fail trials (1), measured where it can be."""
    if varies is False:
        return 0.0
    if not data.case_level:
        return _cluster_design(data.clusters) if data.clusters else 1.0
    if varies is None:
        return 1.0
    counts: list[tuple[int, int]] = []
    for case_id, now in cand.cases.items():
        before = base.cases.get(case_id) if base is not None else None
        counts.append((now.passed + (before.passed if before else 0), now.judged + (before.judged if before else 0)))
    prior = fit_prior(counts)
    if prior is None:
        return 1.0
    mu = prior.a / (prior.a + prior.b) if prior.a + prior.b > 0 else 0.0
    if mu <= 0 or mu >= 1:
        return 0.0
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


def expected_words(a: Assessment) -> list[str]:
    """The flaky and inconclusive cases, one line each, for reporters."""
    lines = []
    for v in a.inconclusive:
        lines.append(f"inconclusive: {v.case_id}: {v.why}" + (f"; would be decided by {v.decide}" if v.decide else ""))
    for case_id, text in a.flaky.items():
        lines.append(f"flaky: {case_id}: {text}")
    return lines


__all__ = ["Assessment", "CaseVerdict", "ShareData", "assess", "expected_words", "plan_confirmation", "screen",
           "statistical_rules", "version_varies"]
