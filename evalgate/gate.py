"""The gate: results + rules → a verdict that says why. Pure: no I/O.

Exit codes: 0 the gate passed; 1 a rule failed; 3 the run cannot be trusted
(interrupted, failed, or errors above ``max_error_rate``). Infrastructure
errors never masquerade as quality failures, nor the reverse.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import EXIT_GATE_FAILED, EXIT_PASS, EXIT_RUN_ERROR
from .policy import LEAK_METRIC, GateSpec, Rule, check_rule_metrics, is_proportion, with_default_rules
from .results import RuleData, RuleStatus, VerdictStatus

if TYPE_CHECKING:
    from .assess import Assessment
    from .stats import ShareTest

__all__ = ["LEAK_METRIC", "GateInputs", "RuleResult", "Verdict", "check_rule_metrics", "evaluate", "with_default_rules"]


@dataclass
class RuleResult:
    """One rule's outcome: its value against its limit, and the cases behind it."""

    rule: str
    status: RuleStatus
    detail: str
    value: float | None = None
    limit: str | None = None
    cases: list[str] = field(default_factory=list)


@dataclass
class Verdict:
    """Pass, fail or error, with every rule's result and the notices."""

    status: VerdictStatus
    exit_code: int
    rules: list[RuleResult]
    reasons: list[str]
    notices: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class GateInputs:
    """What the gate looks at: the run's outcome, rule data and counts."""

    gate: GateSpec
    gated: bool
    run_status: str
    cases: int
    errors: int
    rule_data: list[RuleData | None]
    critical: tuple[int, list[str]]
    failed_cases: list[str]
    bad_lines: int = 0
    run_failure: str | None = None
    comparison: Any = None
    """A baseline.Comparison when there is a baseline."""
    assessment: Assessment | None = None
    """The statistical decisions: regressions, drops and shares, judged as one family."""
    flaky: list[str] = field(default_factory=list)
    """Cases with mixed outcomes across repeats, or in the baseline's history."""
    critical_errored: int = 0
    """Critical case runs that errored: neither passed nor failed."""

    @property
    def has_baseline(self) -> bool:
        return self.comparison is not None


def money(value: float) -> str:
    """US dollars in fixed decimals, two significant digits for small amounts: $1.25, $0.035, $0.000047."""
    import math

    if value == 0 or abs(value) >= 1:
        return f"${value:,.2f}"
    decimals = min(8, max(2, 1 - math.floor(math.log10(abs(value)))))
    return f"${value:.{decimals}f}"


def _fmt(value: float | None, metric: str) -> str:
    if value is None:
        return "not measured"
    if metric.startswith("cost."):
        return money(value)
    if metric.startswith(("latency.", "elapsed.", "first_token.")):
        return f"{value:.1f} ms" if value < 10 else f"{value:.0f} ms"
    if metric in ("pass@k", "pass^k") or is_proportion(metric):
        return f"{value:.1%}"
    if metric.endswith(("rate", "accuracy")) or metric.endswith(".mean"):
        return f"{value:.1%}" if metric.endswith(("rate", "accuracy")) else f"{value:.3f}"
    return f"{value:g}"


def evaluate(inputs: GateInputs) -> Verdict:
    """Decide the verdict. Every failed rule names its value, limit and cases."""
    results: list[RuleResult] = []
    notices: list[str] = []
    if inputs.bad_lines:
        notices.append(f"{inputs.bad_lines} bad trace line(s) were skipped (see the run summary; --strict makes them fatal)")
    rules = with_default_rules(inputs.gate)
    data = list(inputs.rule_data) + [None] * (len(rules) - len(inputs.rule_data))

    if inputs.flaky:
        how = {"report": "named, not failed", "fail": "counted as failures"}[inputs.gate.flaky]
        rates = inputs.assessment.flaky if inputs.assessment is not None else {}
        where = "across repeats or in the baseline's history" if rates else "across repeats"
        shown = [f"{c} ({rates[c]})" if c in rates else c for c in inputs.flaky[:10]]
        notices.append(f"{len(inputs.flaky)} flaky case(s), mixed outcomes {where} ({how}): "
                       + ", ".join(shown) + (" …" if len(inputs.flaky) > 10 else ""))

    if not inputs.gated:
        n = inputs.cases - inputs.errors
        failed_cases = inputs.failed_cases
        flaky_note = ""
        if inputs.gate.flaky != "fail" and inputs.flaky:
            failed_cases = [c for c in failed_cases if c not in set(inputs.flaky)]
            flaky_note = f"; {len(inputs.flaky)} flaky case(s) named, not failed"
        if failed_cases:
            results.append(RuleResult("every case passes (no gate in the suite)", "fail",
                                      f"{len(failed_cases)} case(s) failed over {n} case run(s){flaky_note}",
                                      cases=failed_cases))
        elif n == 0:
            results.append(RuleResult("every case passes (no gate in the suite)", "skipped",
                                      "no case gave a verdict (every case errored or none ran)"))
        else:
            results.append(RuleResult("every case passes (no gate in the suite)", "pass",
                                      f"every case passed over {n} case run(s){flaky_note}"))

    for i, (rule, rd) in enumerate(zip(rules, data)):
        implicit = i >= len(inputs.gate.rules)
        result = _evaluate_rule(rule, rd, inputs, implicit=implicit, notices=notices)
        if not (implicit and result.status == "skipped"):  # the default leak rule, when no scorer measures leaks
            results.append(result)

    failed = [r for r in results if r.status == "fail"]
    undecided = [r for r in results if r.status == "inconclusive"]
    if undecided:
        what = "fail the gate (gate.inconclusive: fail)" if inputs.gate.inconclusive == "fail" else \
            "pass, named (gate.inconclusive: pass)"
        unmeasured = inputs.assessment is not None and inputs.assessment.varies is None
        why = (" (run-to-run variation is not measured yet: every case ran once, with no history, so shares are judged "
               "as if every case could flip; repeat: 2 or a baseline measures it)") if unmeasured else ""
        notices.append(f"{len(undecided)} rule(s) inconclusive, which {what}: "
                       + "; ".join(r.rule for r in undecided) + why)
        if inputs.gate.inconclusive == "fail":
            for r in undecided:  # the suite asked for it: an undecided rule is a failed one, everywhere it is read
                r.status = "fail"
                r.detail = f"inconclusive, and the gate fails undecided rules (gate.inconclusive: fail): {r.detail}"
            failed += undecided
    error_rate = inputs.errors / inputs.cases if inputs.cases else 0.0
    reasons: list[str] = []
    status: VerdictStatus
    if inputs.run_status != "completed":
        status, code = "error", EXIT_RUN_ERROR
        rest = ("; 'evalgate run --resume latest' runs the rest" if inputs.run_status in ("interrupted", "stopped")
                else "")
        reasons.append(f"the run was {inputs.run_status}" + (f": {inputs.run_failure}" if inputs.run_failure else "")
                       + f" after {inputs.cases} case(s); results so far are stored{rest}")
    elif error_rate > inputs.gate.max_error_rate:
        status, code = "error", EXIT_RUN_ERROR
        reasons.append(f"{inputs.errors} of {inputs.cases} case(s) errored ({error_rate:.1%}), above max_error_rate "
                       f"{inputs.gate.max_error_rate:.1%}: the run cannot be trusted")
    elif inputs.cases - inputs.errors <= 0:
        status, code = "error", EXIT_RUN_ERROR
        reasons.append("no case ran" if inputs.cases == 0 else "no case run completed without an error")
    elif failed:
        status, code = "fail", EXIT_GATE_FAILED
    else:
        status, code = "pass", EXIT_PASS
    for r in failed:
        cases = f" [{', '.join(r.cases[:5])}{', …' if len(r.cases) > 5 else ''}]" if r.cases else ""
        reasons.append(f"{r.rule}: {r.detail}{cases}")
    if status == "pass":
        passed = sum(1 for r in results if r.status == "pass")
        skipped = sum(1 for r in results if r.status == "skipped")
        extra = (f", {len(undecided)} inconclusive" if undecided else "") + (f", {skipped} skipped" if skipped else "")
        reasons.append(f"{passed} rule(s) passed{extra}" if passed or undecided else f"no rule evaluated ({skipped} skipped)")
    return Verdict(status, code, results, reasons, notices)


def _evaluate_rule(rule: Rule, rd: RuleData | None, inputs: GateInputs, *, implicit: bool,
                   notices: list[str]) -> RuleResult:
    name = rule.describe()
    if rule.critical_cases_pass:
        n, bad = inputs.critical
        errored = f"; {inputs.critical_errored} errored (counted apart)" if inputs.critical_errored else ""
        if bad:
            return RuleResult(name, "fail", f"{len(bad)} critical case(s) failed{errored}", cases=bad)
        if n == 0 and inputs.critical_errored:
            return RuleResult(name, "skipped", f"nothing to judge: every critical case run errored "
                                               f"({inputs.critical_errored})")
        return RuleResult(name, "pass", f"all {n} critical case run(s) passed{errored}" if n
                          else "no critical cases in this run")
    if rule.no_new_failures or rule.max_drop is not None:
        if not inputs.has_baseline or inputs.assessment is None:
            notices.append(f"'{name}' skipped: no baseline to compare with")
            return RuleResult(name, "skipped", "no baseline")
        a = inputs.assessment
        cmp = inputs.comparison
        if rule.no_new_failures:
            return _no_new_failures(name, a, cmp)
        index = next(i for i, r in enumerate(inputs.gate.rules) if r is rule)
        test = a.drops.get(index)
        if test is None:
            return RuleResult(name, "skipped", "no paired data for this rule")
        if test.n == 0:
            return RuleResult(name, "fail", test.describe(), None, f"drop ≤ {rule.max_drop:g}")
        outcome: RuleStatus = "fail" if test.fails else "inconclusive" if test.drop > test.max_drop else "pass"
        return RuleResult(name, outcome, test.describe(), test.drop, f"drop ≤ {rule.max_drop:g}",
                          test.cases if outcome != "pass" else [])
    assert rule.metric is not None
    if rd is None or rd.value is None:
        if implicit:
            return RuleResult(name, "skipped", "not measured (no scorer produced it)")
        where = f" in slice {rule.where.describe()}" if rule.where else ""
        return RuleResult(name, "fail", f"{rule.metric} was not measured{where}: no case or scorer produced it",
                          limit=None)
    value = rd.value
    problems = []
    if rule.min is not None and value < rule.min:
        problems.append(f"{_fmt(value, rule.metric)} is below the minimum {_fmt(rule.min, rule.metric)}")
    if rule.max is not None and value > rule.max:
        problems.append(f"{_fmt(value, rule.metric)} is above the maximum {_fmt(rule.max, rule.metric)}")
    limit = " and ".join(x for x in (f"≥ {_fmt(rule.min, rule.metric)}" if rule.min is not None else "",
                                     f"≤ {_fmt(rule.max, rule.metric)}" if rule.max is not None else "") if x)
    over = f" over {rd.sample}" if rd.sample else ""
    if rd.population is not None and rd.sample < rd.population:
        notices.append(f"{rule.metric}: usage reported on {rd.sample} of {rd.population} turn(s); "
                       "turns without it are not counted")
    at = next((i for i, r in enumerate(inputs.gate.rules) if r is rule), None)
    share = inputs.assessment.shares.get(at) if inputs.assessment is not None and at is not None else None
    if share is not None:
        return _share_result(name, rule, share, problems, limit, over, rd)
    if problems:
        return RuleResult(name, "fail", "; ".join(problems) + over, value, limit, rd.cases)
    return RuleResult(name, "pass", f"{_fmt(value, rule.metric)} ({limit}){over}", value, limit)


def _share_result(name: str, rule: Rule, share: ShareTest, problems: list[str], limit: str, over: str,
                  rd: RuleData) -> RuleResult:
    """A threshold on a share, judged with its run-to-run uncertainty: pass, fail or inconclusive."""
    assert rule.metric is not None
    conf = f"{1 - share.level:.1%}".replace(".0%", "%")
    if share.design == 0:
        bounds = "nothing varies from run to run, so the share is what it is"
    else:
        bounds = f"at {conf} confidence {share.low:.1%} to {share.high:.1%}"
    if share.status == "fail":
        return RuleResult(name, "fail", "; ".join(problems or [f"{_fmt(share.value, rule.metric)} is off the limit"])
                          + f"{over} ({bounds})", share.value, limit, rd.cases)
    if share.status == "pass":
        return RuleResult(name, "pass", f"{_fmt(share.value, rule.metric)} ({limit}){over} ({bounds})", share.value, limit)
    need = share.needed()
    more = f"; about {need} case runs would decide it" if need and need > share.n else ""
    side = "off the limit" if problems else "within the limit"
    return RuleResult(name, "inconclusive", f"{_fmt(share.value, rule.metric)} ({limit}){over}: {side} but not "
                      f"shown beyond chance ({bounds}){more}", share.value, limit, rd.cases if problems else [])


def _no_new_failures(name: str, a: Assessment, cmp: Any) -> RuleResult:
    """Confirmed regressions fail; the rest of the flipped cases are explained in words."""
    reg = a.regressions
    inc = a.inconclusive
    words = a.words()
    fixed = f"; {len(cmp.fixed)} fixed" if cmp is not None and cmp.fixed else ""
    if reg:
        return RuleResult(name, "fail", f"{words}{fixed}", float(len(reg)), cases=[v.case_id for v in reg])
    if inc:
        return RuleResult(name, "inconclusive", f"{words}{fixed}", 0.0, cases=[v.case_id for v in inc])
    paired = f" over {cmp.paired} paired case(s)" if cmp is not None else ""
    return RuleResult(name, "pass", f"no new failures{paired}: {words}{fixed}", 0.0)
