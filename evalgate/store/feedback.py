"""The ``feedback`` table: stored ratings and corrections, and the stored turns they name.

Reads and writes only; parsing feedback files and building cases from
corrections is ``evalgate.feedback``'s.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, kw_only=True)
class NewFeedback:
    """One feedback record to store, with where it came from."""

    feedback_id: str
    trace_id: str | None
    case_id: str | None
    turn: int | None
    rating: str | None
    correction: dict[str, Any] | None
    note: str | None
    author: str | None
    given_at: str | None
    source: str
    """file:line it was imported from."""


def add_new(con: Any, records: Sequence[NewFeedback]) -> list[NewFeedback]:
    """Store the records not stored yet, in one transaction; returns those it added."""
    added = []
    con.execute("BEGIN TRANSACTION")
    try:
        for rec in records:
            if con.execute("SELECT 1 FROM feedback WHERE feedback_id = ?", [rec.feedback_id]).fetchone():
                continue
            con.execute("INSERT INTO feedback (feedback_id, trace_id, case_id, turn, rating, correction, note, author, given_at, "
                        "source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [rec.feedback_id, rec.trace_id, rec.case_id, rec.turn, rec.rating,
                         json.dumps(rec.correction) if rec.correction is not None else None, rec.note, rec.author,
                         rec.given_at, rec.source])
            added.append(rec)
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    return added


@dataclass(frozen=True, kw_only=True)
class StoredFeedback:
    """A stored feedback record, and the case it was promoted to (if it was)."""

    feedback_id: str
    trace_id: str | None
    case_id: str | None
    turn: int | None
    rating: str | None
    correction: dict[str, Any] | None
    note: str | None
    author: str | None
    at: str | None
    """When the feedback was given, as its file says."""
    source: str | None
    imported_at: str | None
    promoted_case: str | None
    promoted_at: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_COLUMNS = ("feedback_id, trace_id, case_id, turn, rating, correction, note, author, given_at, source, imported_at, "
            "promoted_case, promoted_at")


def _stored(row: tuple[Any, ...]) -> StoredFeedback:
    return StoredFeedback(feedback_id=row[0], trace_id=row[1], case_id=row[2], turn=row[3], rating=row[4],
                          correction=json.loads(row[5]) if row[5] else None, note=row[6], author=row[7], at=row[8],
                          source=row[9], imported_at=str(row[10]) if row[10] is not None else None,
                          promoted_case=row[11], promoted_at=str(row[12]) if row[12] is not None else None)


def stored_feedback(con: Any) -> list[StoredFeedback]:
    """Every stored feedback record, newest first."""
    return [_stored(r) for r in con.execute(
        f"SELECT {_COLUMNS} FROM feedback ORDER BY imported_at DESC, feedback_id").fetchall()]


def stored_corrections(con: Any) -> list[StoredFeedback]:
    """The stored records that carry a correction, in the order they were imported."""
    return [_stored(r) for r in con.execute(
        f"SELECT {_COLUMNS} FROM feedback WHERE correction IS NOT NULL ORDER BY imported_at, feedback_id").fetchall()]


@dataclass(frozen=True, kw_only=True)
class TurnRef:
    """Where a stored turn is: run, case, repeat and 1-based turn."""

    run_id: str
    case_id: str
    repeat: int
    turn: int


def _ref(row: tuple[Any, ...] | None) -> TurnRef | None:
    return TurnRef(run_id=str(row[0]), case_id=str(row[1]), repeat=int(row[2]), turn=int(row[3])) if row else None


def turn_by_trace(con: Any, trace_id: str) -> TurnRef | None:
    """The turn recorded or evaluated with this trace id, in the latest run that has it."""
    return _ref(con.execute(
        "SELECT t.run_id, t.case_id, t.repeat, t.turn FROM turns t JOIN runs r USING (run_id) "
        "WHERE json_extract_string(t.recorded, '$.trace_id') = ? OR json_extract_string(t.trace, '$.trace_id') = ? "
        "ORDER BY r.started_at DESC, t.repeat LIMIT 1", [trace_id, trace_id]).fetchone())


def turn_by_case(con: Any, case_id: str | None, turn: int | None) -> TurnRef | None:
    """Turn ``turn`` of case ``case_id``, in the latest run that has it."""
    return _ref(con.execute(
        "SELECT t.run_id, t.case_id, t.repeat, t.turn FROM turns t JOIN runs r USING (run_id) "
        "WHERE t.case_id = ? AND t.turn = ? ORDER BY r.started_at DESC, t.repeat LIMIT 1", [case_id, turn]).fetchone())


@dataclass(frozen=True, kw_only=True)
class TurnInput:
    """What a stored turn was given: its input and the state before it."""

    turn: int
    input: str | None
    state_in: dict[str, Any] | None


def inputs_up_to(con: Any, ref: TurnRef) -> list[TurnInput]:
    """The inputs of the referenced turn's case run, from its first turn to that one."""
    return [TurnInput(turn=t[0], input=t[1], state_in=json.loads(t[2]) if t[2] else None) for t in con.execute(
        "SELECT turn, input, state_in FROM turns WHERE run_id = ? AND case_id = ? AND repeat = ? AND turn <= ? "
        "ORDER BY turn", [ref.run_id, ref.case_id, ref.repeat, ref.turn]).fetchall()]


@dataclass(frozen=True, kw_only=True)
class CaseUser:
    """The user a stored case run ran as."""

    user_id: str | None
    groups: list[str]


def case_user(con: Any, ref: TurnRef) -> CaseUser | None:
    row = con.execute("SELECT user_id, user_groups FROM cases WHERE run_id = ? AND case_id = ? AND repeat = ?",
                      [ref.run_id, ref.case_id, ref.repeat]).fetchone()
    return CaseUser(user_id=row[0], groups=list(row[1] or [])) if row is not None else None


def mark_promoted(con: Any, marks: Sequence[tuple[str, str]]) -> None:
    """Record (feedback id, case id) promotions; a record promoted before keeps its first time."""
    for feedback_id, case_id in marks:
        con.execute("UPDATE feedback SET promoted_case = ?, promoted_at = coalesce(promoted_at, current_timestamp) "
                    "WHERE feedback_id = ?", [case_id, feedback_id])
