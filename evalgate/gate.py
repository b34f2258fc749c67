"""The gate: results + rules → a verdict that says why. Pure: no I/O.

Exit codes: 0 the gate passed; 1 a rule failed; 3 the run cannot be trusted
(interrupted, failed, or errors above ``max_error_rate``). Infrastructure
errors never masquerade as quality failures, nor the reverse.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import EXIT_GATE_FAILED, EXIT_PASS, EXIT_RUN_ERROR, did_you_mean
from .metrics import CASE_METRICS, LATENCY_STATS, REPEAT_METRICS, SCORER_STATS, USAGE_STATS, RuleData, route_class_metric
from .suite import GateSpec, Rule

LEAK_METRIC = "permissions.leaks"


@dataclass
class RuleResult:
    """One rule's outcome: its value against its limit, and the cases behind it."""

    rule: str
    status: str  # pass | fail | skipped
    detail: str
    value: float | None = None
    limit: str | None = None
    cases: list[str] = field(default_factory=list)


@dataclass
class Verdict:
    """Pass, fail or error, with every rule's result and the notices."""

    status: str  # pass | fail | error
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
    drops: list[Any] = field(default_factory=list)
    flaky: list[str] = field(default_factory=list)
    """Cases with mixed outcomes across repeats."""
    """One stats.DropTest per max_drop rule, in rule order (None for others)."""

    @property
    def has_baseline(self) -> bool:
        return self.comparison is not None


def check_rule_metrics(rule: Rule, scorer_names: set[str],
                       aliases: dict[str, tuple[str, Any]] | None = None) -> tuple[str, str | None] | None:
    """A load-time check that a rule names a metric evalgate can compute."""
    from . import scorers

    if rule.metric is None:
        return None
    metric = rule.metric
    if rule.max_drop is not None and metric != "pass_rate":
        return (f"max_drop is tested on pass_rate (paired per case), not '{metric}'",
                "write {metric: pass_rate, max_drop: 0.02}, with where: to slice by tags")
    if rule.max_drop is not None and rule.where is not None and (
            rule.where.route or rule.where.user or rule.where.group or rule.where.recorded is not None):
        return ("a max_drop rule slices by tags and case ids only", "use where: {tags: [...]} or {case: 'refund-*'}")
    if metric in CASE_METRICS or metric in REPEAT_METRICS or metric == LEAK_METRIC:
        return None
    if route_class_metric(metric) is not None:
        return None
    family, _, stat = metric.rpartition(".")
    if family in ("latency", "elapsed"):
        if stat in LATENCY_STATS:
            return None
        return (f"unknown statistic '{stat}' for {family}", did_you_mean(stat, LATENCY_STATS) or f"use one of {', '.join(LATENCY_STATS)}")
    if family in ("cost", "tokens"):
        if stat in USAGE_STATS:
            return None
        return (f"unknown statistic '{stat}' for {family}", did_you_mean(stat, USAGE_STATS) or f"use one of {', '.join(USAGE_STATS)}")
    known = {i.name for i in scorers.available()} | scorer_names
    if family and family in known:
        declared = _declared_stats(aliases[family][0] if aliases and family in aliases else family)
        if stat in SCORER_STATS or _stat_matches(stat, declared):
            return None
        names = list(SCORER_STATS) + list(declared)
        return (f"unknown statistic '{stat}' for scorer {family}", did_you_mean(stat, names) or f"use one of {', '.join(names)}")
    names = list(CASE_METRICS) + list(REPEAT_METRICS) + [f"{s}.pass_rate" for s in sorted(known)] + [f"latency.{s}" for s in LATENCY_STATS]
    return (f"unknown metric '{metric}'", did_you_mean(metric, names) or "metrics: pass_rate, error_rate, <scorer>.pass_rate, latency.p95, ...")


def _declared_stats(family: str) -> tuple[str, ...]:
    """The named values a scorer declares it reports (``@scorer(..., stats=...)``)."""
    from . import scorers

    try:
        return scorers.lookup(family).stats
    except scorers.ScorerArgError:  # an alias: its own name is not registered
        return ()


def _stat_matches(stat: str, declared: tuple[str, ...]) -> bool:
    """``recall@5`` matches a declared ``recall@k``."""
    for name in declared:
        if name.endswith("@k"):
            head, _, k = stat.partition("@")
            if head == name[:-2] and k.isdigit() and int(k) > 0:
                return True
        elif stat == name:
            return True
    return False


def _fmt(value: float | None, metric: str) -> str:
    if value is None:
        return "not measured"
    if metric.startswith("cost."):
        return f"${value:.4f}"
    if metric.startswith(("latency.", "elapsed.")):
        return f"{value:.1f} ms" if value < 10 else f"{value:.0f} ms"
    if metric in ("pass@k", "pass^k"):
        return f"{value:.1%}"
    if metric.endswith(("rate", "accuracy")) or metric.endswith(".mean"):
        return f"{value:.1%}" if metric.endswith(("rate", "accuracy")) else f"{value:.3f}"
    return f"{value:g}"


def with_default_rules(gate: GateSpec) -> list[Rule]:
    """The suite's rules plus the ones every gate has: no leaks (``permissions.leaks ≤ 0``)."""
    rules = list(gate.rules)
    if not any(r.metric == LEAK_METRIC for r in rules):
        rules.append(Rule(metric=LEAK_METRIC, max=0))
    return rules


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
        notices.append(f"{len(inputs.flaky)} flaky case(s), mixed outcomes across repeats ({how}): "
                       + ", ".join(inputs.flaky[:10]) + (" …" if len(inputs.flaky) > 10 else ""))
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
    error_rate = inputs.errors / inputs.cases if inputs.cases else 0.0
    reasons: list[str] = []
    if inputs.run_status != "completed":
        status, code = "error", EXIT_RUN_ERROR
        reasons.append(f"the run was {inputs.run_status}" + (f": {inputs.run_failure}" if inputs.run_failure else "")
                       + f" after {inputs.cases} case(s); results so far are stored")
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
        reasons.append(f"{passed} rule(s) passed" + (f", {skipped} skipped" if skipped else "") if passed
                       else f"no rule evaluated ({skipped} skipped)")
    return Verdict(status, code, results, reasons, notices)


def _evaluate_rule(rule: Rule, rd: RuleData | None, inputs: GateInputs, *, implicit: bool,
                   notices: list[str]) -> RuleResult:
    name = rule.describe()
    if rule.critical_cases_pass:
        n, bad = inputs.critical
        if bad:
            return RuleResult(name, "fail", f"{len(bad)} critical case(s) failed", cases=bad)
        return RuleResult(name, "pass", f"all {n} critical case run(s) passed" if n else "no critical cases in this run")
    if rule.no_new_failures or rule.max_drop is not None:
        if not inputs.has_baseline:
            notices.append(f"'{name}' skipped: no baseline to compare with")
            return RuleResult(name, "skipped", "no baseline")
        cmp = inputs.comparison
        if rule.no_new_failures:
            new = list(cmp.new_failures)
            if inputs.gate.flaky == "fail":
                new += cmp.flaky_regressed
                flaky = f"; {len(cmp.flaky_regressed)} of them flaky" if cmp.flaky_regressed else ""
            else:
                flaky = f"; {len(cmp.flaky)} flaky case(s) left out" if cmp.flaky else ""
            if new:
                return RuleResult(name, "fail", f"{len(new)} case(s) passed in baseline "
                                  f"{cmp.baseline_run} and fail now{flaky}", float(len(new)), cases=new)
            return RuleResult(name, "pass", f"no new failures against {cmp.baseline_run} over {cmp.paired} "
                              f"paired case(s); {len(cmp.fixed)} fixed{flaky}", 0.0)
        test = next((d for r, d in zip(inputs.gate.rules, inputs.drops) if r is rule), None)
        if test is None:
            return RuleResult(name, "skipped", "no paired data for this rule")
        if test.n == 0:
            return RuleResult(name, "fail", test.describe(), None, f"drop ≤ {rule.max_drop:g}")
        return RuleResult(name, "fail" if test.fails else "pass", test.describe(), test.drop,
                          f"drop ≤ {rule.max_drop:g}", test.cases if test.fails else [])
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
    if problems:
        return RuleResult(name, "fail", "; ".join(problems) + over, value, limit, rd.cases)
    return RuleResult(name, "pass", f"{_fmt(value, rule.metric)} ({limit}){over}", value, limit)
