"""Reads of the store for people: a case's story, the runs' history, named baselines, a stored run's summary.

Each returns a typed record (``to_dict()`` gives the ``--json`` form) or, for a
case's story, the nested dict ``show`` renders.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import UsageError, did_you_mean


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


def latest_run_with_case(con: Any, case_id: str) -> str | None:
    row = con.execute("SELECT r.run_id FROM runs r WHERE r.parent_run IS NULL AND EXISTS (SELECT 1 FROM cases c "
                      "WHERE c.run_id = r.run_id AND c.case_id = ?) ORDER BY r.started_at DESC LIMIT 1", [case_id]).fetchone()
    return str(row[0]) if row else None


def case_story(con: Any, run_id: str, case_id: str, repeat: int | None = None) -> dict[str, Any]:
    """One case of a stored run, turn by turn, with every score."""
    cases = con.execute(
        "SELECT case_id, repeat, tags, user_id, user_groups, passed, errored, error, source, elapsed_ms, session_id "
        "FROM cases WHERE run_id = ? AND case_id = ? ORDER BY repeat", [run_id, case_id]).fetchall()
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
                               "elapsed_ms": c[9], "session_id": c[10], "turns": []}
        turns = con.execute(
            "SELECT turn, input, route, output, state_in, state, elapsed_ms, latency_ms, passed, error, trace, "
            "recorded, changes FROM turns WHERE run_id = ? AND case_id = ? AND repeat = ? ORDER BY turn",
            [run_id, case_id, c[1]]).fetchall()
        for t in turns:
            trace = json.loads(t[10]) if t[10] else {}
            scores = con.execute(
                "SELECT scorer, passed, value, explanation, error, metrics, detail FROM scores WHERE run_id = ? "
                "AND case_id = ? AND repeat = ? AND turn = ? ORDER BY scorer", [run_id, case_id, c[1], t[0]]).fetchall()
            rep["turns"].append({
                "turn": t[0], "input": t[1], "route": trace.get("route"), "output": t[3],
                "context": trace.get("context", []), "tool_calls": trace.get("tool_calls", []),
                "model": trace.get("model"), "state_in": json.loads(t[4]) if t[4] else {},
                "state": json.loads(t[5]) if t[5] else None, "elapsed_ms": t[6], "latency_ms": trace.get("latency_ms"),
                "usage": trace.get("usage"), "passed": bool(t[8]), "error": t[9],
                "feedback": (json.loads(t[11]) if t[11] else trace).get("feedback"),
                "changes": json.loads(t[12]) if t[12] else None,
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


def latest_completed_per_suite(con: Any) -> list[str]:
    """The newest completed run of every suite (confirmation runs left out)."""
    return [str(r[0]) for r in con.execute(
        "SELECT arg_max(run_id, started_at) FROM runs WHERE status = 'completed' AND parent_run IS NULL "
        "GROUP BY suite ORDER BY suite").fetchall()]


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
        "(epoch_ms(coalesce(finished_at, started_at)) - epoch_ms(started_at)) / 1000.0 FROM runs WHERE run_id = ?",
        [run_id]).fetchone()
    if row is None:
        raise UsageError(f"no run '{run_id}' in the store", hint="'evalgate history' lists runs")
    return StoredRun(run_id=run_id, suite=row[0], suite_path=row[1] or "", status=row[2], target=row[3] or "",
                     cases=row[4] or 0, turns=row[5] or 0, duration_s=float(row[7] or 0),
                     summary=json.loads(row[6]) if row[6] else {})


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
