"""The gate is pure: the same inputs give the same verdict, with its reasons."""

from __future__ import annotations

from evalgate.gate import GateInputs, evaluate
from evalgate.results import RuleData
from evalgate.policy import GateSpec, Rule


def _inputs(rules, data, **kw) -> GateInputs:
    base = dict(gate=GateSpec(rules=rules), gated=bool(rules), run_status="completed", cases=10, errors=0,
                rule_data=data, critical=(2, []), failed_cases=[])
    base.update(kw)
    return GateInputs(**base)


def test_threshold_rules_name_value_limit_and_cases() -> None:
    rules = [Rule(metric="pass_rate", min=0.9), Rule(metric="latency.p95", max=2000, where={"route": "refunds"})]
    v = evaluate(_inputs(rules, [RuleData(0.8, ["a", "b"], 10), RuleData(1500.0, [], 7)]))
    assert (v.status, v.exit_code) == ("fail", 1)
    assert v.rules[0].detail == "80.0% is below the minimum 90.0% over 10" and v.rules[0].cases == ["a", "b"]
    assert v.rules[1].status == "pass" and v.rules[1].rule == "latency.p95 ≤ 2000 where route=refunds"
    assert v.reasons == ["pass_rate ≥ 0.9: 80.0% is below the minimum 90.0% over 10 [a, b]"]


def test_unmeasured_metric_fails_an_explicit_rule() -> None:
    v = evaluate(_inputs([Rule(metric="route.accuracy", min=0.9, where={"tags": ["critical"]})], [RuleData(None)]))
    assert v.status == "fail"
    assert v.rules[0].detail == "route.accuracy was not measured in slice tags=critical: no case or scorer produced it"


def test_critical_cases_must_pass() -> None:
    v = evaluate(_inputs([Rule(critical_cases_pass=True)], [None], critical=(3, ["refund-1"])))
    assert v.status == "fail" and v.rules[0].cases == ["refund-1"]


def test_errors_above_max_error_rate_exit_3_even_when_rules_fail() -> None:
    v = evaluate(_inputs([Rule(metric="pass_rate", min=0.9)], [RuleData(0.5)], errors=1))
    assert (v.status, v.exit_code) == ("error", 3)
    v = evaluate(_inputs([Rule(metric="pass_rate", min=0.9)], [RuleData(0.95)], errors=1,
                         gate=GateSpec(rules=[Rule(metric="pass_rate", min=0.9)], max_error_rate=0.1)))
    assert (v.status, v.exit_code) == ("pass", 0)


def test_interrupted_run_is_never_a_pass() -> None:
    v = evaluate(_inputs([Rule(metric="pass_rate", min=0.5)], [RuleData(1.0)], run_status="interrupted"))
    assert (v.status, v.exit_code) == ("error", 3)


def test_no_gate_requires_every_case_to_pass() -> None:
    v = evaluate(_inputs([], [], failed_cases=["x"]))
    assert v.status == "fail" and v.rules[0].rule == "every case passes (no gate in the suite)"
    assert evaluate(_inputs([], [])).status == "pass"
    # every case errored: the rule has nothing to judge, and the run is an error, never a pass
    v = evaluate(_inputs([], [], cases=2, errors=2))
    assert v.rules[0].status == "skipped" and "no case gave a verdict" in v.rules[0].detail
    assert (v.status, v.exit_code) == ("error", 3)


def test_regression_rules_without_a_baseline_are_skipped_visibly() -> None:
    v = evaluate(_inputs([Rule(no_new_failures=True), Rule(metric="pass_rate", max_drop=0.02)], [None, RuleData(0.9)]))
    assert v.status == "pass"
    assert [r.status for r in v.rules] == ["skipped", "skipped"]
    assert v.notices == ["'no new failures' skipped: no baseline to compare with",
                         "'pass_rate drop ≤ 0.02' skipped: no baseline to compare with"]


def test_leaks_fail_by_default_when_measured() -> None:
    v = evaluate(_inputs([], [RuleData(2.0, ["leaky"])]))  # the implicit rule takes the first data slot
    assert v.status == "fail"
    assert any(r.rule == "permissions.leaks ≤ 0" and r.cases == ["leaky"] for r in v.rules)


def test_critical_cases_that_all_errored_have_nothing_to_judge() -> None:
    v = evaluate(_inputs([Rule(critical_cases_pass=True)], [None], critical=(0, []), critical_errored=6, errors=10,
                         gate=GateSpec(rules=[Rule(critical_cases_pass=True)], max_error_rate=1.0)))
    assert v.rules[0].status == "skipped" and "every critical case run errored (6)" in v.rules[0].detail

