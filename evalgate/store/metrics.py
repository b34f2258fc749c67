"""Run metrics, computed with SQL over the stored results.

Names are ``<scorer>.<stat>`` plus a few run-level ones:

    pass_rate        passed cases ÷ (cases − errored cases); case = one repeat of one case
    error_rate       errored cases ÷ cases
    cases, passed, failed, errors
    <scorer>.pass_rate   passed scores ÷ scores without error (alias: route.accuracy)
    <scorer>.mean        mean score value
    <scorer>.failures    failed scores
    <scorer>.<name>      mean of a named value the scorer reports (Score.metrics), e.g.
                         context.recall@5, context.ndcg@10, judge.cost_usd
    permissions.leaks    leaked documents: the sum of the scorer's ``leaks`` values
    route.precision.<route>   of the turns routed to <route>, the share that should have been
    route.recall.<route>      of the turns that should go to <route>, the share that did
    route.f1.<route>          the harmonic mean of the two: 2·right ÷ (routed there + should go there)
    route.macro_f1            the unweighted mean of route.f1 over the routes expected or taken
    latency.p50|p95|p99|mean|max   per-turn latency in ms: what the system reports
                                   (latency_ms.total), else what evalgate measured
    elapsed.p50|p95|p99|mean|max   per-turn time evalgate measured around the target call
    first_token.p50|p95|p99|mean|max   time to the first streamed text (latency_ms.first_token),
                                   for turns whose answer streamed
    cost.total|mean|max            USD per turn, as the system reports it (usage.cost_usd)
    tokens.total|mean|max          input + output tokens per turn (usage)

A slice (``where``) keeps cases with any of the tags, of a user or group;
``route`` keeps turns on that route (and, for case metrics, cases that
visited it), ``turn_tags`` turns with any of those tags (and, for case
metrics, cases with such a turn).
"""

from __future__ import annotations

import json
from fractions import Fraction
from typing import Any

from ..policy import (
    CASE_METRICS,
    LATENCY_STATS,
    RECOVERY_METRIC,
    REPEAT_METRICS,
    ROUTE_MACRO_F1,
    SCORER_STATS,
    USAGE_STATS,
    Rule,
    Where,
    _meta_text,
    route_class_metric,
)
from ..results import RuleData

__all__ = ["CASE_METRICS", "LATENCY_STATS", "REPEAT_METRICS", "SCORER_STATS", "USAGE_STATS", "RuleData", "compute"]
_USAGE_EXPR = {"cost": "t.cost_usd", "tokens": "(coalesce(t.input_tokens, 0) + coalesce(t.output_tokens, 0))"}
_HIGHER_IS_WORSE = ("error_rate", "errors", "failed", "failures")


def _case_filter(where: Where | None, alias: str = "c") -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if where is not None:
        if where.tags:
            clauses.append(f"list_has_any({alias}.tags, ?::VARCHAR[])")
            params.append(where.tags)
        if where.turn_tags:
            clauses.append(f"list_has_any({alias}.turn_tags, ?::VARCHAR[])")
            params.append(where.turn_tags)
        if where.user:
            clauses.append(f"{alias}.user_id = ?")
            params.append(where.user)
        if where.group:
            clauses.append(f"list_contains({alias}.user_groups, ?)")
            params.append(where.group)
        if where.route:
            clauses.append(f"list_contains({alias}.routes, ?)")
            params.append(where.route)
        if where.case:
            clauses.append(f"{alias}.case_id GLOB ?")
            params.append(where.case)
        if where.recorded is not None:
            clauses.append(f"({alias}.session_id IS NOT NULL) = ?")
            params.append(where.recorded)
        if where.critical is not None:
            clauses.append(f"coalesce({alias}.critical, false) = ?")
            params.append(where.critical)
        for key, value in (where.meta or {}).items():
            values = value if isinstance(value, list) else [value]
            clauses.append(f"json_extract_string({alias}.meta, ?) IN ({', '.join('?' for _ in values)})")
            params.append("$." + json.dumps(key))
            params.extend(_meta_text(v) for v in values)
    return (" AND " + " AND ".join(clauses) if clauses else ""), params


def slice_case_ids(con: Any, run_id: str, where: Where) -> set[str]:
    """The ids of the run's cases in a slice (any repeat in it puts the case in)."""
    cf, cp = _case_filter(where)
    return {r[0] for r in con.execute(f"SELECT DISTINCT case_id FROM cases c WHERE run_id = ?{cf}", [run_id, *cp]).fetchall()}


def _turn_filter(where: Where | None, alias: str = "t", route: bool = True) -> tuple[str, list[Any]]:
    """The slice's conditions on the turn itself: its route (unless ``route`` is false) and its tags."""
    clauses: list[str] = []
    params: list[Any] = []
    if where is not None:
        if route and where.route:
            clauses.append(f"{alias}.route = ?")
            params.append(where.route)
        if where.turn_tags:
            clauses.append(f"list_has_any({alias}.tags, ?::VARCHAR[])")
            params.append(where.turn_tags)
    return (" AND " + " AND ".join(clauses) if clauses else ""), params


_SCORE_TURN = " JOIN turns t ON t.run_id = s.run_id AND t.case_id = s.case_id AND t.repeat = s.repeat AND t.turn = s.turn"
"""A score's turn, for a slice that names the turn's route or tags."""


def _score_turn(turn_filter: str) -> str:
    return _SCORE_TURN if turn_filter else ""


def split_metric(metric: str) -> tuple[str, str]:
    """('route', 'accuracy') for 'route.accuracy'; ('', 'pass_rate') for run metrics."""
    if metric in CASE_METRICS or metric in REPEAT_METRICS:
        return "", metric
    head, _, stat = metric.rpartition(".")
    return head, stat


def compute(con: Any, run_id: str, metric: str, where: Where | None = None, limit: float | None = None) -> RuleData:
    """One metric on one slice of a stored run; ``limit`` (a rule's max) picks the cases over it."""
    family, stat = split_metric(metric)
    cf, cp = _case_filter(where)
    per_route = route_class_metric(metric)
    # per-route metrics keep their meaning on a route slice (cases that visited it), and take the turn tags
    rf, rp = _turn_filter(where, route=False)
    if per_route is not None and per_route[0] == "f1":
        return _route_f1(con, run_id, per_route[1], cf + rf, cp + rp, bool(rf))
    if per_route is not None:
        return _route_class(con, run_id, per_route[0], per_route[1], cf + rf, cp + rp, bool(rf))
    if metric == ROUTE_MACRO_F1:
        return _route_f1(con, run_id, None, cf + rf, cp + rp, bool(rf))
    if metric in REPEAT_METRICS:
        return _repeat_metric(con, run_id, metric, cf, cp)
    if metric == RECOVERY_METRIC or metric.startswith(RECOVERY_METRIC + "."):
        return _recovery(con, run_id, metric[len(RECOVERY_METRIC) + 1:] or None, cf, cp)
    if family == "":
        row = con.execute(
            "SELECT count(*), count(*) FILTER (passed), count(*) FILTER (errored), "
            "count(*) FILTER (NOT passed AND NOT errored) "
            f"FROM cases c WHERE run_id = ?{cf}", [run_id, *cp]).fetchone()
        n, passed, errors, failed = (int(x or 0) for x in row)
        scored = n - errors
        value: float | None = {
            "pass_rate": passed / scored if scored else None,
            "error_rate": errors / n if n else None,
            "cases": float(n), "passed": float(passed), "failed": float(failed), "errors": float(errors),
        }[stat]
        if stat == "pass_rate":
            bad_sql = "NOT passed AND NOT errored"
        elif stat in ("error_rate", "errors"):
            bad_sql = "errored"
        else:
            bad_sql = "NOT passed AND NOT errored"
        cases = _ids(con, f"SELECT DISTINCT case_id, min(seq) AS s FROM cases c WHERE run_id = ? AND {bad_sql}{cf} "
                          "GROUP BY case_id ORDER BY s", [run_id, *cp])
        return RuleData(value, cases, n, trials=scored if stat == "pass_rate" else None)
    tf, tp = _turn_filter(where)
    if family in _USAGE_EXPR:
        expr = _USAGE_EXPR[family]
        present = "t.cost_usd IS NOT NULL" if family == "cost" else "(t.input_tokens IS NOT NULL OR t.output_tokens IS NOT NULL)"
        agg = {"total": f"sum({expr})", "mean": f"avg({expr})", "max": f"max({expr})"}[stat]
        row = con.execute(f"SELECT {agg.replace(expr, f'CASE WHEN {present} THEN {expr} END')}, "
                          f"count(*) FILTER ({present}), count(*) "
                          f"FROM turns t JOIN cases c USING (run_id, case_id, repeat) "
                          f"WHERE t.run_id = ? AND t.error IS NULL{cf}{tf}", [run_id, *cp, *tp]).fetchone()
        value = float(row[0]) if row[0] is not None else None
        costly = _ids(con, f"SELECT t.case_id, sum({expr}) AS m FROM turns t JOIN cases c USING (run_id, case_id, repeat) "
                           f"WHERE t.run_id = ? AND {present}{cf}{tf} GROUP BY t.case_id ORDER BY m DESC LIMIT 10",
                      [run_id, *cp, *tp]) if value is not None else []
        return RuleData(value, costly, int(row[1]), int(row[2]))
    if family in ("latency", "elapsed", "first_token"):
        expr = {"latency": "coalesce(t.latency_ms, t.elapsed_ms)", "elapsed": "t.elapsed_ms",
                "first_token": FIRST_TOKEN_SQL}[family]
        agg = {"p50": f"quantile_cont({expr}, 0.5)", "p95": f"quantile_cont({expr}, 0.95)",
               "p99": f"quantile_cont({expr}, 0.99)", "mean": f"avg({expr})", "max": f"max({expr})"}[stat]
        row = con.execute(
            f"SELECT {agg}, count({expr}) FROM turns t JOIN cases c USING (run_id, case_id, repeat) "
            f"WHERE t.run_id = ?{cf}{tf}", [run_id, *cp, *tp]).fetchone()
        value = float(row[0]) if row[0] is not None else None
        slow = []
        if value is not None:
            over = limit if limit is not None else value
            slow = _ids(con, f"SELECT t.case_id, max({expr}) AS m FROM turns t JOIN cases c USING (run_id, case_id, repeat) "
                             f"WHERE t.run_id = ?{cf}{tf} AND {expr} > ? GROUP BY t.case_id ORDER BY m DESC",
                        [run_id, *cp, *tp, over])
        return RuleData(value, slow, int(row[1]))
    join = "FROM scores s JOIN cases c USING (run_id, case_id, repeat)"
    route_join = _score_turn(tf)
    if stat not in SCORER_STATS:
        return _named_value(con, run_id, family, stat, join + route_join, cf + tf, [*cp, *tp])
    row = con.execute(
        f"SELECT count(*) FILTER (s.error IS NULL), count(*) FILTER (s.passed AND s.error IS NULL), "
        f"avg(s.value), count(*) FILTER (NOT s.passed AND s.error IS NULL), "
        # a scorer that counts leaks says how many; for others a failed score is one
        f"sum(coalesce(TRY_CAST(json_extract_string(s.metrics, '$.leaks') AS DOUBLE), (NOT s.passed)::INT)) "
        f"FILTER (s.error IS NULL) "
        f"{join}{route_join} WHERE s.run_id = ? AND s.scorer = ?{cf}{tf}",
        [run_id, family, *cp, *tp]).fetchone()
    scored, passed, mean, failures = int(row[0] or 0), int(row[1] or 0), row[2], int(row[3] or 0)
    value = {"pass_rate": passed / scored if scored else None, "accuracy": passed / scored if scored else None,
             "mean": float(mean) if mean is not None else None, "failures": float(failures),
             "leaks": float(row[4] or 0)}.get(stat)
    if stat in ("failures", "leaks") and scored == 0:
        value = None  # the scorer never ran: not measured, which is not the same as zero
    cases = _ids(con, f"SELECT s.case_id, min(c.seq) AS q {join}{route_join} WHERE s.run_id = ? AND s.scorer = ? "
                      f"AND NOT s.passed AND s.error IS NULL{cf}{tf} GROUP BY s.case_id ORDER BY q",
                 [run_id, family, *cp, *tp])
    return RuleData(value, cases, scored, trials=scored if stat in ("pass_rate", "accuracy") else None)


def _named_value(con: Any, run_id: str, family: str, stat: str, joins: str, filters: str,
                 params: list[Any]) -> RuleData:
    """The mean of a value scorers report by name; turns that did not report it are left out."""
    path = '$."' + stat.replace('"', '') + '"'
    expr = "TRY_CAST(json_extract_string(s.metrics, ?) AS DOUBLE)"
    row = con.execute(f"SELECT avg({expr}), count({expr}) {joins} WHERE s.run_id = ? AND s.scorer = ? "
                      f"AND s.error IS NULL{filters}", [path, path, run_id, family, *params]).fetchone()
    value = float(row[0]) if row[0] is not None else None
    cases = _ids(con, f"SELECT s.case_id, min(c.seq) AS q {joins} WHERE s.run_id = ? AND s.scorer = ? "
                      f"AND NOT s.passed AND s.error IS NULL{filters} GROUP BY s.case_id ORDER BY q",
                 [run_id, family, *params])
    return RuleData(value, cases, int(row[1] or 0))


def _route_class(con: Any, run_id: str, kind: str, route: str, cf: str, cp: list[Any], on_turns: bool = False) -> RuleData:
    """Per-route precision (turns routed there that should have been) or recall (turns that should go there that did).

    ``on_turns``: the filter names the turn (``t``) too.
    """
    if kind == "precision":
        cond = "json_extract_string(s.detail, '$.got') = ?"
    else:
        cond = ("CASE WHEN s.passed THEN json_extract_string(s.detail, '$.got') "
                "ELSE json_extract_string(s.detail, '$.expected[0]') END = ?")
    base = (f"FROM scores s JOIN cases c USING (run_id, case_id, repeat){_SCORE_TURN if on_turns else ''} "
            f"WHERE s.run_id = ? AND s.scorer = 'route' AND s.error IS NULL AND {cond}{cf}")
    row = con.execute(f"SELECT count(*), count(*) FILTER (s.passed) {base}", [run_id, route, *cp]).fetchone()
    n, ok = int(row[0] or 0), int(row[1] or 0)
    cases = _ids(con, f"SELECT s.case_id, min(c.seq) AS q {base} AND NOT s.passed GROUP BY s.case_id ORDER BY q",
                 [run_id, route, *cp])
    return RuleData(ok / n if n else None, cases, n, trials=n)


_GOT = "json_extract_string(s.detail, '$.got')"
_EXPECTED = f"CASE WHEN s.passed THEN {_GOT} ELSE json_extract_string(s.detail, '$.expected[0]') END"
NO_ROUTE = "(none)"
"""The confusion matrix's label for a turn that reported no route."""


def _route_f1(con: Any, run_id: str, route: str | None, cf: str, cp: list[Any], on_turns: bool = False) -> RuleData:
    """``route.f1.<route>`` (``route`` given) or ``route.macro_f1`` (None) on a slice of cases.

    The cases behind it are the misrouted ones: those expected on or routed to ``route``, or any for the macro.
    """
    matrix = _route_matrix(con, run_id, cf, cp, on_turns)
    stats = _route_stats(matrix)
    base = (f"FROM scores s JOIN cases c USING (run_id, case_id, repeat){_SCORE_TURN if on_turns else ''} WHERE s.run_id = ? "
            f"AND s.scorer = 'route' AND s.error IS NULL AND s.detail IS NOT NULL AND NOT s.passed{cf}")
    if route is None:
        cases = _ids(con, f"SELECT s.case_id, min(c.seq) AS q {base} GROUP BY s.case_id ORDER BY q", [run_id, *cp])
        return RuleData(macro_f1(stats), cases, sum(sum(row.values()) for row in matrix.values()))
    mine = stats.get(route)
    cases = _ids(con, f"SELECT s.case_id, min(c.seq) AS q {base} AND (coalesce({_GOT}, ?) = ? "
                      f"OR coalesce({_EXPECTED}, ?) = ?) GROUP BY s.case_id ORDER BY q",
                 [run_id, *cp, NO_ROUTE, route, NO_ROUTE, route])
    involved = 0 if mine is None else mine["predicted"] + mine["support"] - mine["correct"]
    return RuleData(None if mine is None else mine["f1"], cases, involved)


def _route_matrix(con: Any, run_id: str, cf: str = "", cp: list[Any] | None = None,
                  on_turns: bool = False) -> dict[str, dict[str, int]]:
    """``matrix[expected][taken]``: scored route turns (of the cases in the filter), by the route expected and taken."""
    rows = con.execute(f"SELECT s.passed, {_GOT}, json_extract_string(s.detail, '$.expected[0]'), count(*) "
                       f"FROM scores s JOIN cases c USING (run_id, case_id, repeat){_SCORE_TURN if on_turns else ''} WHERE s.run_id = ? "
                       f"AND s.scorer = 'route' AND s.error IS NULL AND s.detail IS NOT NULL{cf} GROUP BY ALL",
                       [run_id, *(cp or [])]).fetchall()
    matrix: dict[str, dict[str, int]] = {}
    for passed, got, first, n in rows:
        taken = got if got is not None else NO_ROUTE
        expected = taken if passed else (first or NO_ROUTE)
        matrix.setdefault(expected, {})
        matrix[expected][taken] = matrix[expected].get(taken, 0) + int(n)
    return matrix


def route_f1(correct: int, predicted: int, actual: int) -> float | None:
    """The harmonic mean of a route's precision and recall, ``2·correct ÷ (predicted + actual)``.

    0.0 when nothing was routed there correctly, including a route expected but never taken (precision
    undefined) or taken but never expected (recall undefined); None when it was neither expected nor taken.
    """
    return 2 * correct / (predicted + actual) if predicted + actual else None


def macro_f1(stats: dict[str, dict[str, Any]]) -> float | None:
    """The unweighted mean of the per-route F1 over the routes expected or taken; None when there are none.

    As sklearn's ``f1_score(average="macro", zero_division=0)`` over the labels in expected ∪ taken: a route
    expected but never taken, or taken but never expected, counts with F1 0 (it is never left out). Turns
    that reported no route count against the route expected (its recall), but ``(none)`` is not a route
    and is not averaged.
    """
    # summed exactly, so the mean of 2/3 and 1/2 is the float nearest 7/12
    scores = [Fraction(2 * s["correct"], s["predicted"] + s["support"])
              for route, s in stats.items() if route != NO_ROUTE and s["predicted"] + s["support"]]
    return float(sum(scores, Fraction(0)) / len(scores)) if scores else None


def _route_stats(matrix: dict[str, dict[str, int]]) -> dict[str, dict[str, Any]]:
    """Per label of the matrix (expected or taken): precision, recall, F1, support, and the counts behind them."""
    labels = sorted({e for e in matrix} | {t for row in matrix.values() for t in row})
    out: dict[str, dict[str, Any]] = {}
    for route in labels:
        tp = matrix.get(route, {}).get(route, 0)
        predicted = sum(row.get(route, 0) for row in matrix.values())
        actual = sum(matrix.get(route, {}).values())
        out[route] = {"precision": tp / predicted if predicted else None, "recall": tp / actual if actual else None,
                      "f1": route_f1(tp, predicted, actual), "support": actual, "predicted": predicted, "correct": tp}
    return out


def _repeat_metric(con: Any, run_id: str, metric: str, cf: str, cp: list[Any]) -> RuleData:
    """Across the k repeats of each case (errored repeats left out):

    pass@k = cases that passed at least once ÷ cases; pass^k = cases that
    passed every time ÷ cases; flaky = cases with both outcomes.
    """
    rows = con.execute(
        "SELECT case_id, count(*) FILTER (passed) AS p, count(*) FILTER (NOT errored) AS n, min(seq) AS s "
        f"FROM cases c WHERE run_id = ?{cf} GROUP BY case_id HAVING count(*) FILTER (NOT errored) > 0 ORDER BY s",
        [run_id, *cp]).fetchall()
    n = len(rows)
    if metric == "pass@k":
        bad = [r[0] for r in rows if r[1] == 0]
        return RuleData((n - len(bad)) / n if n else None, bad, n, trials=n)
    if metric == "pass^k":
        bad = [r[0] for r in rows if r[1] < r[2]]
        return RuleData((n - len(bad)) / n if n else None, bad, n, trials=n)
    flaky = [r[0] for r in rows if 0 < r[1] < r[2]]
    return RuleData(float(len(flaky)), flaky, n)


def _recovery(con: Any, run_id: str, operator: str | None, cf: str, cp: list[Any]) -> RuleData:
    """Of the variants whose original passed in the same repeat, the share that passed too (errored ones left out).

    A variant of a conversation the system fails as written says nothing about
    recovering: it is left out, so the rate measures recovery alone.
    """
    tag = f"variant:{operator}" if operator else "variant"
    rows = con.execute(
        "SELECT c.case_id, c.passed, c.seq FROM cases c JOIN cases o ON o.run_id = c.run_id AND o.case_id = c.variant_of "
        "AND o.repeat = c.repeat "
        f"WHERE c.run_id = ? AND list_contains(c.tags, ?) AND o.passed AND NOT c.errored{cf} ORDER BY c.seq",
        [run_id, tag, *cp]).fetchall()
    n = len(rows)
    failed = list(dict.fromkeys(str(r[0]) for r in rows if not r[1]))
    return RuleData((n - sum(1 for r in rows if not r[1])) / n if n else None, failed, n, trials=n)


def _ids(con: Any, sql: str, params: list[Any]) -> list[str]:
    return [str(r[0]) for r in con.execute(sql, params).fetchall()]


FIRST_TOKEN_SQL = "t.first_token_ms"
"""A turn's time to first token, from its stored trace (streamed answers only)."""


def _scorer_stat(metric: str) -> bool:
    """Whether ``compute`` reads ``metric`` as a scorer's own statistic (a scorer named like another family is not)."""
    family, stat = split_metric(metric)
    return (stat in SCORER_STATS and family not in ("", "latency", "elapsed", "first_token") and family not in _USAGE_EXPR
            and route_class_metric(metric) is None and metric != ROUTE_MACRO_F1 and metric not in REPEAT_METRICS
            and metric != RECOVERY_METRIC and not metric.startswith(RECOVERY_METRIC + "."))


def headline(con: Any, run_id: str) -> dict[str, float | None]:
    """The metrics every summary shows: case counts, rates, latency, each scorer's pass rate.

    The values ``compute`` gives for the same names, read with a few queries that each compute many (a headline
    needs no case lists): one over the cases, one over the turns, one per scorer family.
    """
    out: dict[str, float | None] = {}
    row = con.execute("SELECT count(*), count(*) FILTER (passed), count(*) FILTER (errored), "
                      "count(*) FILTER (NOT passed AND NOT errored) FROM cases c WHERE run_id = ?", [run_id]).fetchone()
    n, passed, errors, failed = (int(x or 0) for x in row)
    scored = n - errors
    case_values: dict[str, float | None] = {
        "pass_rate": passed / scored if scored else None, "error_rate": errors / n if n else None,
        "cases": float(n), "passed": float(passed), "failed": float(failed), "errors": float(errors)}
    for m in CASE_METRICS:
        out[m] = case_values[m]
    if con.execute("SELECT max(repeat) FROM cases WHERE run_id = ?", [run_id]).fetchone()[0]:
        for m in REPEAT_METRICS:
            out[m] = compute(con, run_id, m).value
    latency, elapsed = "coalesce(t.latency_ms, t.elapsed_ms)", "t.elapsed_ms"
    sums = []
    for family in ("cost", "tokens"):  # as compute: turns that reported it, errored turns left out
        expr = _USAGE_EXPR[family]
        present = "t.cost_usd IS NOT NULL" if family == "cost" else "(t.input_tokens IS NOT NULL OR t.output_tokens IS NOT NULL)"
        sums.append(f"sum(CASE WHEN {present} THEN {expr} END) FILTER (t.error IS NULL)")
    row = con.execute(
        f"SELECT quantile_cont({latency}, 0.5), quantile_cont({latency}, 0.95), quantile_cont({elapsed}, 0.5), "
        f"quantile_cont({elapsed}, 0.95), {', '.join(sums)} "
        "FROM turns t JOIN cases c USING (run_id, case_id, repeat) WHERE t.run_id = ?", [run_id]).fetchone()
    for m, value in zip(("latency.p50", "latency.p95", "elapsed.p50", "elapsed.p95", "cost.total", "tokens.total"), row):
        out[m] = float(value) if value is not None else None
    # only runs whose answers streamed have it
    p50, p95 = con.execute(f"SELECT quantile_cont({FIRST_TOKEN_SQL}, 0.5), quantile_cont({FIRST_TOKEN_SQL}, 0.95) "
                           "FROM turns t WHERE t.run_id = ?", [run_id]).fetchone()
    if p50 is not None:
        out["first_token.p50"], out["first_token.p95"] = float(p50), float(p95)
    scorers = [r[0] for r in con.execute("SELECT DISTINCT scorer FROM scores WHERE run_id = ? ORDER BY scorer",
                                         [run_id]).fetchall()]
    per_scorer: dict[str, tuple[int, int, Any]] = {}
    if scorers:  # compute's pass_rate and leaks of every scorer, at once
        for scorer, n_scored, n_passed, leaks in con.execute(
                "SELECT s.scorer, count(*) FILTER (s.error IS NULL), count(*) FILTER (s.passed AND s.error IS NULL), "
                "sum(coalesce(TRY_CAST(json_extract_string(s.metrics, '$.leaks') AS DOUBLE), (NOT s.passed)::INT)) "
                "FILTER (s.error IS NULL) FROM scores s JOIN cases c USING (run_id, case_id, repeat) "
                "WHERE s.run_id = ? GROUP BY s.scorer", [run_id]).fetchall():
            per_scorer[scorer] = (int(n_scored or 0), int(n_passed or 0), leaks)
    for scorer in scorers:
        n_scored, n_passed, leaks = per_scorer.get(scorer, (0, 0, None))
        name = f"{scorer}.pass_rate"
        out[name] = (n_passed / n_scored if n_scored else None) if _scorer_stat(name) else compute(con, run_id, name).value
        if scorer == "route":
            out[ROUTE_MACRO_F1] = macro_f1(_route_stats(_route_matrix(con, run_id)))
        if scorer == "permissions":
            out["permissions.leaks"] = float(leaks or 0) if n_scored else None
        if scorer == "goal":  # a simulated user's conversations: how many turns they took
            out["goal.turns"] = compute(con, run_id, "goal.turns").value
        if scorer == "recovery":
            out[RECOVERY_METRIC] = compute(con, run_id, RECOVERY_METRIC).value
            for (tag,) in con.execute("SELECT DISTINCT t FROM (SELECT unnest(tags) AS t FROM cases WHERE run_id = ?) "
                                      "WHERE t LIKE 'variant:%' ORDER BY t", [run_id]).fetchall():
                name = f"{RECOVERY_METRIC}.{tag.split(':', 1)[1]}"
                out[name] = compute(con, run_id, name).value
    return out


def rule_data(con: Any, run_id: str, rules: list[Rule]) -> list[RuleData | None]:
    """The data each metric rule needs (None for rules that are not on a metric)."""
    return [compute(con, run_id, r.metric, r.where, r.max) if r.metric else None for r in rules]


def critical_failures(con: Any, run_id: str) -> tuple[int, list[str]]:
    """(critical case runs that gave a verdict, ids of critical cases that failed in any repeat).

    Errored runs are counted apart (an error is neither a pass nor a failure).
    """
    n = con.execute("SELECT count(*) FROM cases WHERE run_id = ? AND critical AND NOT errored", [run_id]).fetchone()[0]
    ids = _ids(con, "SELECT case_id, min(seq) AS s FROM cases WHERE run_id = ? AND critical AND NOT passed "
                    "AND NOT errored GROUP BY case_id ORDER BY s", [run_id])  # errors are counted apart
    return int(n), ids


def critical_errored(con: Any, run_id: str) -> int:
    """Critical case runs that errored."""
    return int(con.execute("SELECT count(*) FROM cases WHERE run_id = ? AND critical AND errored", [run_id]).fetchone()[0])


def failing_cases(con: Any, run_id: str, limit: int = 20) -> list[dict[str, Any]]:
    """The first failing or errored cases with the reasons: written cases in case order, then recovery variants."""
    rows = con.execute(
        "SELECT case_id, repeat, errored, error, critical, source FROM cases WHERE run_id = ? AND NOT passed "
        "ORDER BY variant_of IS NOT NULL, seq, repeat LIMIT ?", [run_id, limit]).fetchall()
    out = []
    for case_id, repeat, errored, error, critical, source in rows:
        reasons = [f"error: {error}"] if error else []
        for turn, scorer, explanation, serr in con.execute(
                "SELECT turn, scorer, explanation, error FROM scores WHERE run_id = ? AND case_id = ? AND repeat = ? "
                "AND (NOT passed OR error IS NOT NULL) ORDER BY turn, scorer", [run_id, case_id, repeat]).fetchall():
            reasons.append(f"turn {turn} {scorer}: {serr or explanation}")
        out.append({"case_id": case_id, "repeat": repeat, "errored": bool(errored), "critical": bool(critical),
                    "source": source, "reasons": reasons})
    return out


def route_confusion(con: Any, run_id: str) -> dict[str, Any]:
    """The route confusion matrix (expected × taken) with per-route precision, recall, F1 and support,
    the accuracy and the macro-F1 (see ``macro_f1``)."""
    matrix = _route_matrix(con, run_id)
    stats = _route_stats(matrix)
    per_route = {route: {k: st[k] for k in ("precision", "recall", "f1", "support")} for route, st in stats.items()}
    total = sum(st["support"] for st in stats.values())
    correct = sum(st["correct"] for st in stats.values())
    return {"labels": list(stats), "matrix": matrix, "per_route": per_route, "turns": total,
            "accuracy": correct / total if total else None, "macro_f1": macro_f1(stats)}


def score_clusters(con: Any, run_id: str, metric: str, where: Where | None = None) -> list[tuple[int, int]]:
    """(passed, scored) per case run for a scorer's share (``route.accuracy``, ``<scorer>.pass_rate``) on a slice.

    The turns of one conversation move together: these are the clusters its uncertainty is computed over.
    """
    family, _, _ = metric.rpartition(".")
    cf, cp = _case_filter(where)
    tf, tp = _turn_filter(where)
    route_join = _score_turn(tf)
    rows = con.execute(
        f"SELECT count(*) FILTER (s.passed), count(*) FROM scores s JOIN cases c USING (run_id, case_id, repeat)"
        f"{route_join} WHERE s.run_id = ? AND s.scorer = ? AND s.error IS NULL{cf}{tf} GROUP BY s.case_id, s.repeat",
        [run_id, family, *cp, *tp]).fetchall()
    return [(int(a), int(b)) for a, b in rows]


def conversation_clusters(con: Any, run_id: str, metric: str, where: Where | None = None) -> list[tuple[int, int]] | None:
    """(passed, judged) per conversation and repeat — a written case with its recovery variants — for a share of
    case runs (``pass_rate``, ``recovery.rate``); None when the run has no variants (every case run stands alone)."""
    cf, cp = _case_filter(where)
    if metric == RECOVERY_METRIC or metric.startswith(RECOVERY_METRIC + "."):
        operator = metric[len(RECOVERY_METRIC) + 1:]
        rows = con.execute(
            "SELECT count(*) FILTER (c.passed), count(*) FROM cases c JOIN cases o ON o.run_id = c.run_id "
            "AND o.case_id = c.variant_of AND o.repeat = c.repeat "
            f"WHERE c.run_id = ? AND list_contains(c.tags, ?) AND o.passed AND NOT c.errored{cf} "
            "GROUP BY c.variant_of, c.repeat", [run_id, f"variant:{operator}" if operator else "variant", *cp]).fetchall()
        return [(int(a), int(b)) for a, b in rows]
    if metric != "pass_rate" or not con.execute("SELECT count(*) FROM cases WHERE run_id = ? AND variant_of IS NOT NULL",
                                                [run_id]).fetchone()[0]:
        return None
    rows = con.execute(
        "SELECT count(*) FILTER (c.passed), count(*) FROM cases c "
        f"WHERE c.run_id = ? AND NOT c.errored{cf} GROUP BY coalesce(c.variant_of, c.case_id), c.repeat",
        [run_id, *cp]).fetchall()
    return [(int(a), int(b)) for a, b in rows]
