"""The gate's policy as a suite writes it: rules, slices, the family's confidence.

Pure data and the load-time check that a rule names a metric evalgate can
compute; the gate (``gate.py``) decides verdicts from these, the metrics
(``metrics.py``) compute the values they name.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .errors import did_you_mean

CASE_METRICS = ("pass_rate", "error_rate", "cases", "passed", "failed", "errors")
REPEAT_METRICS = ("pass@k", "pass^k", "flaky")
SCORER_STATS = ("pass_rate", "mean", "failures", "accuracy", "leaks")
LATENCY_STATS = ("p50", "p95", "p99", "mean", "max")
USAGE_STATS = ("total", "mean", "max")
LEAK_METRIC = "permissions.leaks"
RECOVERY_METRIC = "recovery.rate"
"""Of the variants whose original passed (same repeat), the share that passed; ``recovery.rate.<operator>`` per operator."""
ROUTE_CLASS_STATS = ("precision", "recall", "f1")
"""Per-route metrics: ``route.<stat>.<route>``."""
ROUTE_MACRO_F1 = "route.macro_f1"
"""The unweighted mean of the per-route F1 over the routes expected or taken."""
PROPORTIONS = ("pass_rate", "pass@k", "pass^k", RECOVERY_METRIC)
"""Run metrics that are shares of cases: their thresholds are judged on an interval, not a point."""
DEFAULT_CONFIDENCE = 0.95


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


def route_class_metric(metric: str) -> tuple[str, str] | None:
    """('precision', 'refunds') for 'route.precision.refunds', ('f1', 'refunds') for 'route.f1.refunds'; else None."""
    parts = metric.split(".", 2)
    if len(parts) == 3 and parts[0] == "route" and parts[1] in ROUTE_CLASS_STATS and parts[2]:
        return parts[1], parts[2]
    return None


def is_proportion(metric: str) -> bool:
    """A share whose threshold is judged with its uncertainty: pass_rate, pass@k, <scorer>.pass_rate, route.accuracy."""
    return metric in PROPORTIONS or metric.endswith((".pass_rate", ".accuracy")) or metric.startswith(RECOVERY_METRIC + ".")


def _split_tags(value: Any) -> Any:
    if isinstance(value, str):
        return [t for t in re.split(r"[,\s]+", value) if t]
    return value




class Where(_Model):
    """A slice of the run: cases with a tag, turns with a tag or on a route, a user or group."""

    tags: list[str] | None = None
    turn_tags: list[str] | None = None
    """Turns with any of these tags (written on a turn, or from a gold file); for case metrics, cases with such a turn."""
    route: str | None = None
    user: str | None = None
    group: str | None = None
    case: str | None = None
    """Case ids matching a glob, e.g. refund-*."""
    recorded: bool | None = None
    """Only cases replayed from recorded traces (true) or only written cases (false)."""
    critical: bool | None = None
    """Only critical cases (true) or only the others (false)."""
    meta: dict[str, str | int | float | bool | list[str | int | float | bool]] | None = None
    """Cases whose own fields match: {locale: de} or {tier: [gold, platinum]} (any of)."""

    @field_validator("tags", "turn_tags", mode="before")
    @classmethod
    def _tags(cls, value: Any) -> Any:
        return _split_tags(value)

    def describe(self) -> str:
        parts = []
        if self.tags:
            parts.append("tags=" + "|".join(self.tags))
        if self.turn_tags:
            parts.append("turn_tags=" + "|".join(self.turn_tags))
        for name in ("route", "user", "group", "case"):
            if getattr(self, name):
                parts.append(f"{name}={getattr(self, name)}")
        if self.recorded is not None:
            parts.append(f"recorded={str(self.recorded).lower()}")
        if self.critical is not None:
            parts.append(f"critical={str(self.critical).lower()}")
        for key, value in (self.meta or {}).items():
            shown = "|".join(_meta_text(v) for v in value) if isinstance(value, list) else _meta_text(value)
            parts.append(f"{key}={shown}")
        return ", ".join(parts)


def _meta_text(value: Any) -> str:
    """How a case field compares: JSON's spelling for booleans, text for the rest."""
    return str(value).lower() if isinstance(value, bool) else str(value)


class Rule(_Model):
    """One gate rule: a threshold on a metric, or a case-level requirement."""

    metric: str | None = None
    min: float | None = None
    max: float | None = None
    max_drop: float | None = None
    """Largest allowed drop against the baseline (regression rule)."""
    confidence: float | None = None
    """The rule's confidence (max_drop): the gate's family uses the highest one named, unless the gate sets its own."""
    where: Where | None = None
    critical_cases_pass: bool | None = None
    no_new_failures: bool | None = None
    name: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Rule:
        kinds = [k for k in ("metric", "critical_cases_pass", "no_new_failures") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("a rule is one of: {metric: NAME, min|max|max_drop: N}, "
                             "{critical_cases_pass: true}, {no_new_failures: true}")
        if self.metric is not None and self.min is None and self.max is None and self.max_drop is None:
            raise ValueError(f"rule on '{self.metric}' needs a limit: min, max or max_drop")
        if self.max_drop is not None and (self.min is not None or self.max is not None):
            raise ValueError("a rule is either a threshold (min, max) or a regression (max_drop): write two rules")
        if self.metric is None and any(v is not None for v in (self.min, self.max, self.max_drop, self.where)):
            raise ValueError("min, max, max_drop and where go with 'metric'")
        if self.confidence is not None and not 0.5 <= self.confidence < 1:
            raise ValueError("confidence must be in [0.5, 1), e.g. 0.95")
        for name in ("min", "max", "max_drop"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):  # every comparison with NaN is false: the rule would pass
                raise ValueError(f"{name} must be a number, not {value}")
        return self

    def describe(self) -> str:
        if self.name:
            return self.name
        if self.critical_cases_pass:
            return "critical cases pass"
        if self.no_new_failures:
            return "no new failures"
        limits = []
        if self.min is not None:
            limits.append(f"≥ {self.min:g}")
        if self.max is not None:
            limits.append(f"≤ {self.max:g}")
        if self.max_drop is not None:
            limits.append(f"drop ≤ {self.max_drop:g}")
        where = f" where {self.where.describe()}" if self.where else ""
        return f"{self.metric} {' and '.join(limits)}{where}"


class GateSpec(_Model):
    """The release gate: rules, the error rate a run may have, and how chance is handled."""

    rules: list[Rule] = Field(default_factory=list)
    max_error_rate: float = Field(0.0, ge=0, le=1)
    """Errored cases ÷ cases above this exits 3 (the run cannot be trusted)."""
    flaky: Literal["report", "fail"] = "report"
    """Cases with mixed outcomes (in the baseline's history or across this run's repeats): named with
    their pass rates and judged by the statistics (report), or, when they always passed before, counted
    as new failures outright (fail). Metrics always count every repeat."""
    confidence: float | None = None
    """The whole gate's confidence: every statistical decision (each case confirmed as a regression,
    each max_drop rule, each threshold on a share) is one family whose chance of any false alarm is
    at most 1 − confidence. Default: the highest confidence a rule names, else 0.95."""
    confirm: int = Field(default=3, ge=0, le=100)
    """Cases that did worse than their history are re-run this many times in the same evalgate run
    (0: no confirmation; then every paired case is tested on this run's repeats alone)."""
    confirm_max: int = Field(default=10, ge=0, le=1000)
    """A screened case gets more confirmation runs, up to this many, when that is what it takes for
    failing all of them to be significant against its history."""
    history: int = Field(default=20, ge=1, le=1000)
    """At most this many stored runs of the baseline version are pooled per case (newest first)."""
    inconclusive: Literal["pass", "fail"] = "pass"
    """What an undecided statistical rule means for the exit code: named in the verdict either way."""

    @model_validator(mode="after")
    def _levels(self) -> GateSpec:
        if self.confidence is not None and not 0.5 <= self.confidence < 1:
            raise ValueError("confidence must be in [0.5, 1), e.g. 0.95")
        if self.confirm_max < self.confirm:
            self.confirm_max = self.confirm
        return self

    @property
    def family_confidence(self) -> float:
        if self.confidence is not None:
            return self.confidence
        named = [r.confidence for r in self.rules if r.confidence is not None]
        return max(named) if named else DEFAULT_CONFIDENCE


def check_rule_metrics(rule: Rule, scorer_names: set[str], aliases: dict[str, tuple[str, Any]] | None = None,
                       declared_stats: Callable[[str], tuple[str, ...]] = lambda name: (),
                       operators: tuple[str, ...] = ()) -> tuple[str, str | None] | None:
    """A load-time check that a rule names a metric evalgate can compute.

    ``scorer_names`` are the scorers the suite can name (bound, aliased, registered);
    ``declared_stats`` gives the named values a scorer declares (``@scorer(..., stats=...)``);
    ``operators`` the recovery operators (``recovery.rate.<operator>``).
    """
    if rule.metric is None:
        return None
    metric = rule.metric
    if rule.max_drop is not None and metric != "pass_rate":
        return (f"max_drop is tested on pass_rate (paired per case), not '{metric}'",
                "write {metric: pass_rate, max_drop: 0.02}, with where: to slice by tags")
    if rule.max_drop is not None and rule.where is not None and (
            rule.where.route or rule.where.user or rule.where.group or rule.where.recorded is not None):
        return ("a max_drop rule slices by tags and case ids only", "use where: {tags: [...]} or {case: 'refund-*'}")
    if metric in CASE_METRICS or metric in REPEAT_METRICS or metric in (LEAK_METRIC, RECOVERY_METRIC):
        return None
    if metric.startswith(RECOVERY_METRIC + "."):
        operator = metric[len(RECOVERY_METRIC) + 1:]
        if operator in operators:
            return None
        return (f"unknown recovery operator '{operator}'", did_you_mean(operator, operators) or f"use one of {', '.join(operators)}")
    if route_class_metric(metric) is not None or metric == ROUTE_MACRO_F1:
        return None
    bare = metric.rstrip(".")
    if bare in [f"route.{s}" for s in ROUTE_CLASS_STATS]:  # route.f1 with no route named
        also = f", or {ROUTE_MACRO_F1} for the mean over the routes" if bare == "route.f1" else ""
        return (f"'{metric}' needs a route: {bare}.<route>", f"write e.g. {bare}.refunds{also}")
    family, _, stat = metric.rpartition(".")
    if family in ("latency", "elapsed", "first_token"):
        if stat in LATENCY_STATS:
            return None
        return (f"unknown statistic '{stat}' for {family}", did_you_mean(stat, LATENCY_STATS) or f"use one of {', '.join(LATENCY_STATS)}")
    if family in ("cost", "tokens"):
        if stat in USAGE_STATS:
            return None
        return (f"unknown statistic '{stat}' for {family}", did_you_mean(stat, USAGE_STATS) or f"use one of {', '.join(USAGE_STATS)}")
    known = scorer_names
    if family and family in known:
        declared = declared_stats(aliases[family][0] if aliases and family in aliases else family)
        if stat in SCORER_STATS or _stat_matches(stat, declared):
            return None
        names = list(SCORER_STATS) + list(declared) + (["macro_f1"] if family == "route" else [])
        return (f"unknown statistic '{stat}' for scorer {family}", did_you_mean(stat, names) or f"use one of {', '.join(names)}")
    names = list(CASE_METRICS) + list(REPEAT_METRICS) + [f"{s}.pass_rate" for s in sorted(known)] + [f"latency.{s}" for s in LATENCY_STATS]
    return (f"unknown metric '{metric}'", did_you_mean(metric, names) or "metrics: pass_rate, error_rate, <scorer>.pass_rate, latency.p95, ...")


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


def with_default_rules(gate: GateSpec) -> list[Rule]:
    """The suite's rules plus the ones every gate has: no leaks (``permissions.leaks ≤ 0``)."""
    rules = list(gate.rules)
    if not any(r.metric == LEAK_METRIC for r in rules):
        rules.append(Rule(metric=LEAK_METRIC, max=0))
    return rules
