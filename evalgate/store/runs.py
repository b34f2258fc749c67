"""A run's own row: begun when it starts, its verdict and summary written when the gate has decided."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any


@dataclass(frozen=True, kw_only=True)
class NewRun:
    """What is known of a run before its first case."""

    run_id: str
    suite: str
    suite_path: str
    suite_hash: str
    config_hash: str | None
    target: str
    git: dict[str, Any]
    evalgate_version: str
    repeat: int
    selected_tags: list[str]
    cases_total: int
    bad_lines: int
    options: dict[str, Any]
    parent_run: str | None = None


def mark_abandoned(con: Any) -> list[str]:
    """Runs stored as ``running`` whose process died (killed, the machine stopped): ``interrupted`` now.

    Call it only while holding the store's run lock: then no other process is running one.
    """
    rows = con.execute("UPDATE runs SET status = 'interrupted', finished_at = coalesce(finished_at, ?) "
                       "WHERE status = 'running' RETURNING run_id",
                       [datetime.now(timezone.utc).replace(tzinfo=None)]).fetchall()
    return [str(r[0]) for r in rows]


def reopen(con: Any, run_id: str) -> tuple[int, int, int, int]:
    """An interrupted run running again (``--resume``): its status back to running; returns what it stored (case
    runs, turns, errored case runs, passed case runs). The caller holds the run lock."""
    mark_abandoned(con)
    con.execute("UPDATE runs SET status = 'running', finished_at = NULL WHERE run_id = ?", [run_id])
    row = con.execute("SELECT count(*), coalesce(sum(n_turns), 0), count(*) FILTER (errored), count(*) FILTER (passed) "
                      "FROM cases WHERE run_id = ?", [run_id]).fetchone()
    return int(row[0]), int(row[1]), int(row[2]), int(row[3])


def begin(con: Any, run: NewRun) -> None:
    """Insert the run as ``running``; the writer's batches update its counters and, at the end, its status.

    Runs left ``running`` by a process that died are marked interrupted first (the caller holds the run lock).
    """
    mark_abandoned(con)
    con.execute(
        "INSERT INTO runs (run_id, suite, suite_path, suite_hash, config_hash, target, status, started_at, "
        "git_commit, git_branch, git_dirty, evalgate_version, repeat, selected_tags, cases_total, bad_lines, options, "
        "parent_run, git_diff) VALUES (?, ?, ?, ?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [run.run_id, run.suite, run.suite_path, run.suite_hash, run.config_hash, run.target,
         datetime.now(timezone.utc).replace(tzinfo=None), run.git.get("git_commit"), run.git.get("git_branch"),
         run.git.get("git_dirty"), run.evalgate_version, run.repeat, run.selected_tags, run.cases_total, run.bad_lines,
         json.dumps(run.options), run.parent_run, run.git.get("git_diff")])


def record_verdict(con: Any, run_id: str, status: str, exit_code: int, summary: dict[str, Any],
                   confirmations: list[str] | None = None) -> None:
    """The gate's verdict and the run's summary; confirmation runs take their parent's verdict (they are evidence)."""
    con.execute("UPDATE runs SET verdict = ?, exit_code = ?, summary = ? WHERE run_id = ?",
                [status, exit_code, json.dumps(summary, default=str), run_id])
    if confirmations:
        con.execute("UPDATE runs SET verdict = ?, exit_code = ? WHERE list_contains(?, run_id)",
                    [status, exit_code, confirmations])
