"""Reads of the store for people: a case's story, the runs' history, named baselines, a stored run's summary,
and what the HTML report is drawn from (the run's rows, slices, scorers, trend).

Each returns a typed record (``to_dict()`` gives the ``--json`` form) or, for a
case's story, the nested dict ``show`` renders.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from ..errors import UsageError, did_you_mean
from . import spans as service_spans


@dataclass(frozen=True, kw_only=True)
class HistoryRow:
    """One run in ``evalgate history``."""

    run_id: str
    suite: str
    status: str
    verdict: str | None
    exit_code: int | None
    started_at: str | None
    finished_at: str | None
    git_commit: str | None
    git_branch: str | None
    cases_done: int | None
    turns_done: int | None
    errors: int | None
    bad_lines: int | None
    pass_rate: float | None
    latency_p95: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, kw_only=True)
class BaselineRow:
    """A named baseline's run for one suite."""

    name: str
    suite: str
    run_id: str
    created_at: str
    verdict: str | None
    git_commit: str | None
    git_branch: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, kw_only=True)
class StoredRun:
    """What a finished run stored about itself: enough to report it again."""

    run_id: str
    suite: str
    suite_path: str
    status: str
    target: str
    cases: int
    turns: int
    duration_s: float
    summary: dict[str, Any]
    suite_hash: str = ""
    repeat: int = 1
    selected_tags: tuple[str, ...] = ()


def stored_case_runs(con: Any, run_id: str) -> set[tuple[str, int]]:
    """The (case, repeat) pairs a run stored: what ``--resume`` does not run again."""
    return {(str(c), int(r)) for c, r in con.execute("SELECT case_id, repeat FROM cases WHERE run_id = ?", [run_id]).fetchall()}


def latest_run_with_case(con: Any, case_id: str) -> str | None:
    row = con.execute("SELECT r.run_id FROM runs r WHERE r.parent_run IS NULL AND EXISTS (SELECT 1 FROM cases c "
                      "WHERE c.run_id = r.run_id AND c.case_id = ?) ORDER BY r.started_at DESC LIMIT 1", [case_id]).fetchone()
    return str(row[0]) if row else None


def has_table(con: Any, name: str) -> bool:
    """Whether the store has a table (one opened read-only may predate a migration)."""
    return bool(con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]).fetchone()[0])


def case_story(con: Any, run_id: str, case_id: str, repeat: int | None = None) -> dict[str, Any]:
    """One case of a stored run, turn by turn, with every score."""
    cases = con.execute(
        "SELECT case_id, repeat, tags, user_id, user_groups, passed, errored, error, source, elapsed_ms, session_id, "
        "variant_of FROM cases WHERE run_id = ? AND case_id = ? ORDER BY repeat", [run_id, case_id]).fetchall()
    if not cases:
        like = [r[0] for r in con.execute("SELECT DISTINCT case_id FROM cases WHERE run_id = ? AND case_id ILIKE ? LIMIT 5",
                                          [run_id, f"%{case_id}%"]).fetchall()]
        raise UsageError(f"run {run_id} has no case '{case_id}'",
                         hint=(f"cases like it: {', '.join(like)}" if like else None) or did_you_mean(case_id, like))
    run = con.execute("SELECT suite, target, status, verdict FROM runs WHERE run_id = ?", [run_id]).fetchone()
    story: dict[str, Any] = {"run_id": run_id, "suite": run[0], "target": run[1], "run_status": run[2],
                             "run_verdict": run[3], "case_id": case_id, "repeats": []}
    for c in cases:
        if repeat is not None and c[1] != repeat:
            continue
        rep: dict[str, Any] = {"repeat": c[1], "tags": list(c[2] or []), "user": {"id": c[3], "groups": list(c[4] or [])},
                               "passed": bool(c[5]), "errored": bool(c[6]), "error": c[7], "source": c[8],
                               "elapsed_ms": c[9], "session_id": c[10], "variant_of": c[11], "turns": []}
        turns = con.execute(
            "SELECT turn, input, route, output, state_in, state, elapsed_ms, latency_ms, passed, error, trace, "
            "recorded, changes FROM turns WHERE run_id = ? AND case_id = ? AND repeat = ? ORDER BY turn",
            [run_id, case_id, c[1]]).fetchall()
        joined = service_spans.turn_spans(con, run_id, case_id, c[1]) if has_table(con, "service_spans") else {}
        for t in turns:
            trace = json.loads(t[10]) if t[10] else {}
            scores = con.execute(
                "SELECT scorer, passed, value, explanation, error, metrics, detail FROM scores WHERE run_id = ? "
                "AND case_id = ? AND repeat = ? AND turn = ? ORDER BY scorer", [run_id, case_id, c[1], t[0]]).fetchall()
            rep["turns"].append({
                "turn": t[0], "input": t[1], "route": trace.get("route"), "output": t[3],
                "context": trace.get("context", []), "tool_calls": trace.get("tool_calls", []),
                "model": trace.get("model"), "prompt": trace.get("prompt"), "state_in": json.loads(t[4]) if t[4] else {},
                "state": json.loads(t[5]) if t[5] else None, "elapsed_ms": t[6], "latency_ms": trace.get("latency_ms"),
                "usage": trace.get("usage"), "passed": bool(t[8]), "error": t[9],
                "feedback": (json.loads(t[11]) if t[11] else trace).get("feedback"),
                "changes": json.loads(t[12]) if t[12] else None,
                "upstream_calls": (trace.get("extra") or {}).get("upstream_calls"),
                "trace_id": (trace.get("extra") or {}).get("evalgate_trace_id"),
                "service_spans": joined.get(t[0], []),
                "scores": [{"scorer": s[0], "passed": bool(s[1]), "value": s[2], "explanation": s[3], "error": s[4],
                            "metrics": json.loads(s[5]) if s[5] else None,
                            "detail": json.loads(s[6]) if s[6] else None}
                           for s in scores]})
        story["repeats"].append(rep)
    return story


def history(con: Any, suite: str | None = None, limit: int = 20) -> list[HistoryRow]:
    """Recent runs (not confirmation runs), newest first, with verdicts and headline metrics."""
    where, params = ("AND suite = ?", [suite]) if suite else ("", [])
    rows = con.execute(
        f"SELECT run_id, suite, status, verdict, exit_code, started_at, finished_at, git_commit, git_branch, "
        f"cases_done, turns_done, errors, bad_lines, summary FROM runs WHERE parent_run IS NULL {where} "
        f"ORDER BY started_at DESC LIMIT ?", [*params, limit]).fetchall()
    out = []
    for r in rows:
        metrics = (json.loads(r[13]) if r[13] else {}).get("metrics", {})
        out.append(HistoryRow(run_id=r[0], suite=r[1], status=r[2], verdict=r[3], exit_code=r[4],
                              started_at=str(r[5]) if r[5] else None, finished_at=str(r[6]) if r[6] else None,
                              git_commit=r[7], git_branch=r[8], cases_done=r[9], turns_done=r[10], errors=r[11],
                              bad_lines=r[12], pass_rate=metrics.get("pass_rate"), latency_p95=metrics.get("latency.p95")))
    return out


def latest_run_per_suite(con: Any) -> list[str]:
    """The newest run of every suite (confirmation runs left out), whatever its status."""
    return [str(r[0]) for r in con.execute(
        "SELECT arg_max(run_id, started_at) FROM runs WHERE parent_run IS NULL GROUP BY suite ORDER BY suite").fetchall()]


def baselines(con: Any, name: str | None = None) -> list[BaselineRow]:
    """Named baselines with their runs' verdicts."""
    where, params = ("WHERE b.name = ?", [name]) if name else ("", [])
    rows = con.execute(
        f"SELECT b.name, b.suite, b.run_id, b.created_at, r.verdict, r.git_commit, r.git_branch "
        f"FROM baselines b LEFT JOIN runs r USING (run_id) {where} ORDER BY b.name, b.suite", params).fetchall()
    return [BaselineRow(name=r[0], suite=r[1], run_id=r[2], created_at=str(r[3]), verdict=r[4], git_commit=r[5],
                        git_branch=r[6]) for r in rows]


def stored_run(con: Any, run_id: str) -> StoredRun:
    row = con.execute(
        "SELECT suite, suite_path, status, target, cases_done, turns_done, summary, "
        "(epoch_ms(coalesce(finished_at, started_at)) - epoch_ms(started_at)) / 1000.0, suite_hash, repeat, selected_tags "
        "FROM runs "
        "WHERE run_id = ?",
        [run_id]).fetchone()
    if row is None:
        raise UsageError(f"no run '{run_id}' in the store", hint="'evalgate history' lists runs")
    return StoredRun(run_id=run_id, suite=row[0], suite_path=row[1] or "", status=row[2], target=row[3] or "",
                     cases=row[4] or 0, turns=row[5] or 0, duration_s=float(row[7] or 0),
                     summary=json.loads(row[6]) if row[6] else {}, suite_hash=row[8] or "",
                     repeat=int(row[9] or 1), selected_tags=tuple(row[10] or ()))


@dataclass(frozen=True, kw_only=True)
class CaseRunRow:
    """One case run, as a test report lists it."""

    case_id: str
    repeat: int
    passed: bool
    errored: bool
    error: str | None
    elapsed_ms: float | None
    source: str | None


def case_runs(con: Any, run_id: str) -> list[CaseRunRow]:
    """Every case run of a run, in case order."""
    return [CaseRunRow(case_id=r[0], repeat=r[1], passed=bool(r[2]), errored=bool(r[3]), error=r[4], elapsed_ms=r[5],
                       source=r[6])
            for r in con.execute("SELECT case_id, repeat, passed, errored, error, elapsed_ms, source FROM cases "
                                 "WHERE run_id = ? ORDER BY seq, repeat", [run_id]).fetchall()]


def failure_reasons(con: Any, run_id: str) -> dict[tuple[str, int], list[str]]:
    """(case, repeat) → one line per failed or errored score: why the case run did not pass."""
    out: dict[tuple[str, int], list[str]] = {}
    for case_id, repeat, turn, scorer, explanation, error in con.execute(
            "SELECT case_id, repeat, turn, scorer, explanation, error FROM scores WHERE run_id = ? "
            "AND (NOT passed OR error IS NOT NULL) ORDER BY case_id, repeat, turn, scorer", [run_id]).fetchall():
        out.setdefault((case_id, repeat), []).append(f"turn {turn} {scorer}: {error or explanation}")
    return out


# --- what the HTML report reads ----------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ReportRun:
    """A stored run's own row: what the report's header and verdict are drawn from."""

    suite: str
    suite_path: str | None
    target: str | None
    status: str
    verdict: str | None
    exit_code: int | None
    started_at: datetime
    finished_at: datetime | None
    git_commit: str | None
    git_branch: str | None
    git_dirty: bool | None
    version: str | None
    repeat: int | None
    cases_total: int | None
    cases_done: int | None
    turns_done: int | None
    errors: int | None
    bad_lines: int | None
    summary: dict[str, Any]


def report_run(con: Any, run_id: str) -> ReportRun:
    row = con.execute(
        "SELECT suite, suite_path, target, status, verdict, exit_code, started_at, finished_at, git_commit, "
        "git_branch, git_dirty, evalgate_version, repeat, cases_total, cases_done, turns_done, errors, bad_lines, "
        "summary FROM runs WHERE run_id = ?", [run_id]).fetchone()
    if row is None:
        raise UsageError(f"no run '{run_id}' in the store", hint="'evalgate history' lists runs")
    return ReportRun(suite=row[0], suite_path=row[1], target=row[2], status=row[3], verdict=row[4], exit_code=row[5],
                     started_at=row[6], finished_at=row[7], git_commit=row[8], git_branch=row[9], git_dirty=row[10],
                     version=row[11], repeat=row[12], cases_total=row[13], cases_done=row[14], turns_done=row[15],
                     errors=row[16], bad_lines=row[17], summary=(json.loads(row[18]) if row[18] else None) or {})


@dataclass(frozen=True)
class RunRows:
    """A run's case, turn and score rows, each streamed in batches from its own cursor.

    cases:  (case_id, repeat, seq, tags, user_id, user_groups, critical, source, session_id, passed, errored,
             error, elapsed_ms, n_turns)
    turns:  (case_id, repeat, turn, input, route, output, state, elapsed_ms, latency_ms, passed, error, trace,
             recorded, changes, input_tokens, output_tokens, cost_usd)
    scores: (case_id, repeat, turn, scorer, passed, value, explanation, error)
    """

    cases: Iterator[tuple[Any, ...]]
    turns: Iterator[tuple[Any, ...]]
    scores: Iterator[tuple[Any, ...]]


def _batches(cur: Any, batch: int) -> Iterator[tuple[Any, ...]]:
    while True:
        chunk = cur.fetchmany(batch)
        if not chunk:
            return
        yield from chunk


def run_rows(con: Any, run_id: str, *, ordered: bool = False, batch: int = 2000) -> RunRows:
    """The three streams in insertion order, or (``ordered``) sorted by case id, repeat, turn and scorer."""
    order = (" ORDER BY case_id, repeat", " ORDER BY case_id, repeat, turn", " ORDER BY case_id, repeat, turn, scorer") \
        if ordered else ("", "", "")
    cases, turns, scores = con.cursor(), con.cursor(), con.cursor()
    cases.execute("SELECT case_id, repeat, seq, tags, user_id, user_groups, critical, source, session_id, passed, "
                  f"errored, error, elapsed_ms, n_turns FROM cases WHERE run_id = ?{order[0]}", [run_id])
    turns.execute("SELECT case_id, repeat, turn, input, route, output, state, elapsed_ms, latency_ms, passed, error, "
                  "trace, recorded, changes, input_tokens, output_tokens, cost_usd FROM turns WHERE run_id = ?"
                  f"{order[1]}", [run_id])
    scores.execute("SELECT case_id, repeat, turn, scorer, passed, value, explanation, error FROM scores "
                   f"WHERE run_id = ?{order[2]}", [run_id])
    return RunRows(_batches(cases, batch), _batches(turns, batch), _batches(scores, batch))


def spill_to_temp(con: Any) -> None:
    """Let a large sorted read spill to the temporary directory rather than fail for memory."""
    con.execute(f"SET temp_directory = '{tempfile.gettempdir()}/evalgate-report-spill'")


@dataclass(frozen=True, kw_only=True)
class _Slice:
    name: str
    n: int
    passed: int
    errors: int

    @property
    def rate(self) -> float | None:
        """Passed ÷ judged (errored ones left out); None when none was judged."""
        return self.passed / (self.n - self.errors) if self.n > self.errors else None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rate": self.rate}


@dataclass(frozen=True, kw_only=True)
class RouteSlice(_Slice):
    """The turns of a run that took one route (``(none)``: no route)."""

    p50: float | None
    """Elapsed ms, as evalgate measured it."""
    p95: float | None
    lat95: float | None
    """Latency p95 in ms, as the system reports it."""
    cost: float | None


@dataclass(frozen=True, kw_only=True)
class TagSlice(_Slice):
    """The case runs of a run with one tag."""


@dataclass(frozen=True, kw_only=True)
class GroupSlice(_Slice):
    """The case runs of a run whose user is in one group (``(none)``: in none)."""

    leaks: float | None
    """Documents the permissions scorer found leaked, summed over these case runs."""


def route_slices(con: Any, run_id: str) -> list[RouteSlice]:
    rows = con.execute(
        "SELECT coalesce(route, '(none)') AS r, count(*), count(*) FILTER (passed), count(*) FILTER (error IS NOT NULL), "
        "quantile_cont(elapsed_ms, 0.5), quantile_cont(elapsed_ms, 0.95), quantile_cont(latency_ms, 0.95), sum(cost_usd) "
        "FROM turns WHERE run_id = ? GROUP BY r ORDER BY count(*) DESC, r", [run_id]).fetchall()
    return [RouteSlice(name=r[0], n=r[1], passed=r[2], errors=r[3], p50=r[4], p95=r[5], lat95=r[6], cost=r[7])
            for r in rows]


def tag_slices(con: Any, run_id: str) -> list[TagSlice]:
    rows = con.execute(
        "SELECT tag, count(*), count(*) FILTER (passed), count(*) FILTER (errored) FROM "
        "(SELECT unnest(tags) AS tag, passed, errored FROM cases WHERE run_id = ?) GROUP BY tag "
        "ORDER BY count(*) DESC, tag", [run_id]).fetchall()
    return [TagSlice(name=t[0], n=t[1], passed=t[2], errors=t[3]) for t in rows]


def group_slices(con: Any, run_id: str) -> list[GroupSlice]:
    # leaks per case run: the permissions scorer's named value, summed over the case's turns
    rows = con.execute(
        "WITH leaks AS (SELECT case_id, repeat, sum(TRY_CAST(metrics->>'leaks' AS DOUBLE)) AS n FROM scores "
        "WHERE run_id = ? AND scorer = 'permissions' GROUP BY ALL) "
        "SELECT g, count(*), count(*) FILTER (passed), count(*) FILTER (errored), sum(l.n) FROM "
        "(SELECT unnest(CASE WHEN len(user_groups) > 0 THEN user_groups ELSE ['(none)'] END) AS g, case_id, repeat, "
        "passed, errored FROM cases WHERE run_id = ?) c LEFT JOIN leaks l USING (case_id, repeat) "
        "GROUP BY g ORDER BY count(*) DESC, g", [run_id, run_id]).fetchall()
    return [GroupSlice(name=g[0], n=g[1], passed=g[2], errors=g[3], leaks=g[4]) for g in rows]


@dataclass(frozen=True, kw_only=True)
class ScorerRow:
    """One scorer over a run's turns, with what its own model calls cost (a judge's)."""

    name: str
    n: int
    passed: int
    errors: int
    mean: float | None
    cost: float | None
    calls: float | None

    @property
    def rate(self) -> float | None:
        """Passed ÷ scored turns (an errored score counts as not passed)."""
        return self.passed / self.n if self.n else None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rate": self.rate}


def scorer_rows(con: Any, run_id: str) -> list[ScorerRow]:
    rows = con.execute(
        "SELECT scorer, count(*), count(*) FILTER (passed AND error IS NULL), count(*) FILTER (error IS NOT NULL), "
        "avg(value), sum(TRY_CAST(metrics->>'cost_usd' AS DOUBLE)), sum(TRY_CAST(metrics->>'calls' AS DOUBLE)) "
        "FROM scores WHERE run_id = ? GROUP BY scorer ORDER BY scorer", [run_id]).fetchall()
    return [ScorerRow(name=r[0], n=r[1], passed=r[2], errors=r[3], mean=r[4], cost=r[5], calls=r[6]) for r in rows]


@dataclass(frozen=True, kw_only=True)
class TrendPoint:
    """One earlier (or this) run of a suite, for the report's trend charts."""

    run_id: str
    at: str
    """Started, to the minute."""
    verdict: str | None
    current: bool
    """The run the report is about."""
    pass_rate: float | None
    p95: float | None
    """Reported latency p95."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def trend(con: Any, suite: str, run_id: str, started: datetime, limit: int) -> list[TrendPoint]:
    """The suite's last ``limit`` completed or interrupted runs up to ``run_id``'s start, oldest first."""
    rows = con.execute(
        "SELECT run_id, started_at, verdict, summary FROM runs WHERE suite = ? AND started_at <= ? "
        "AND status IN ('completed', 'interrupted') AND parent_run IS NULL ORDER BY started_at DESC LIMIT ?",
        [suite, started, limit]).fetchall()
    out = []
    for rid, at, verdict, summary in reversed(rows):
        metrics = ((json.loads(summary) if summary else None) or {}).get("metrics", {})
        out.append(TrendPoint(run_id=rid, at=str(at)[:16], verdict=verdict, current=rid == run_id,
                              pass_rate=metrics.get("pass_rate"), p95=metrics.get("latency.p95")))
    return out


@dataclass(frozen=True, kw_only=True)
class RecoveryRow:
    """One recovery operator over a run: its variants, those whose original passed, and of those the ones that passed."""

    operator: str
    variants: int
    judged: int
    """Variants whose original passed in the same repeat: the ones ``recovery.rate`` counts."""
    recovered: int
    passed: int
    """Variants that passed, whatever their original did."""

    @property
    def rate(self) -> float | None:
        return self.recovered / self.judged if self.judged else None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rate": self.rate}


def recovery_rows(con: Any, run_id: str) -> list[RecoveryRow]:
    """Per operator (from the ``variant:<operator>`` tag), worst rate first."""
    rows = con.execute(
        "SELECT split_part(tag, ':', 2) AS op, count(*), count(*) FILTER (o.passed AND NOT c.errored), "
        "count(*) FILTER (o.passed AND NOT c.errored AND c.passed), count(*) FILTER (c.passed) "
        "FROM (SELECT *, unnest(tags) AS tag FROM cases WHERE run_id = ? AND variant_of IS NOT NULL) c "
        "LEFT JOIN cases o ON o.run_id = c.run_id AND o.case_id = c.variant_of AND o.repeat = c.repeat "
        "WHERE tag LIKE 'variant:%' GROUP BY op", [run_id]).fetchall()
    out = [RecoveryRow(operator=str(r[0]), variants=int(r[1]), judged=int(r[2]), recovered=int(r[3]), passed=int(r[4]))
           for r in rows]
    return sorted(out, key=lambda r: (r.rate is None, r.rate if r.rate is not None else 0.0, r.operator))


def run_counts(con: Any, run_id: str) -> tuple[int, int, int, int]:
    """(case runs, turns, errored case runs, passed case runs) as the run's cases table holds them."""
    row = con.execute("SELECT count(*), coalesce(sum(n_turns), 0), count(*) FILTER (errored), count(*) FILTER (passed) "
                      "FROM cases WHERE run_id = ?", [run_id]).fetchone()
    return int(row[0]), int(row[1]), int(row[2]), int(row[3])
