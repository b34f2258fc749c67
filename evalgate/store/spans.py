"""A system's own spans joined to the turns of eval runs (``evalgate traces join``).

Every call evalgate makes carries a W3C ``traceparent`` whose trace id is
stored with the turn (``extra.evalgate_trace_id``). A service that continues
that context exports spans under the same trace id, so its spans can be put
beside the turn that caused them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

TRACE_ID_SQL = "json_extract_string(trace, '$.extra.evalgate_trace_id')"


class TurnKey(NamedTuple):
    """The eval turn a trace id belongs to."""

    run_id: str
    case_id: str
    repeat: int
    turn: int


@dataclass(slots=True)
class SpanRow:
    """One span to store for a turn."""

    key: TurnKey
    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    kind: str
    service: str | None
    start_ns: int
    duration_ms: float
    error: str | None
    attributes: dict[str, Any]


def turns_for(con: Any, trace_ids: Iterable[str], run_id: str | None = None) -> dict[str, TurnKey]:
    """The stored turns these trace ids were sent for (in one run, or any)."""
    ids = sorted(set(trace_ids))
    found: dict[str, TurnKey] = {}
    for i in range(0, len(ids), 1000):
        chunk = ids[i:i + 1000]
        marks = ",".join("?" * len(chunk))
        where = f"{TRACE_ID_SQL} IN ({marks})" + (" AND run_id = ?" if run_id else "")
        for tid, run, case, repeat, turn in con.execute(
                f"SELECT {TRACE_ID_SQL}, run_id, case_id, repeat, turn FROM turns WHERE {where}",
                [*chunk, *([run_id] if run_id else [])]).fetchall():
            found[tid] = TurnKey(run, case, repeat, turn)
    return found


def store(con: Any, rows: list[SpanRow]) -> int:
    """Store spans; a span joined again (the same file twice) replaces its earlier row."""
    if not rows:
        return 0
    con.execute("BEGIN TRANSACTION")
    try:
        con.executemany("DELETE FROM service_spans WHERE trace_id = ? AND span_id = ?",
                        [[r.trace_id, r.span_id] for r in rows])
        con.executemany(
            "INSERT INTO service_spans (run_id, case_id, repeat, turn, trace_id, span_id, parent_id, name, kind, "
            "service, start_ns, duration_ms, error, attributes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [[*r.key, r.trace_id, r.span_id, r.parent_id, r.name, r.kind, r.service, r.start_ns, r.duration_ms,
              r.error, json.dumps(r.attributes, ensure_ascii=False, default=str)] for r in rows])
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    return len(rows)


def turn_spans(con: Any, run_id: str, case_id: str, repeat: int) -> dict[int, list[dict[str, Any]]]:
    """A case run's joined spans by turn, in the order they started, each with its depth in the span tree."""
    rows = con.execute(
        "SELECT turn, span_id, parent_id, name, kind, service, start_ns, duration_ms, error, attributes "
        "FROM service_spans WHERE run_id = ? AND case_id = ? AND repeat = ? ORDER BY turn, start_ns, span_id",
        [run_id, case_id, repeat]).fetchall()
    by_turn: dict[int, list[dict[str, Any]]] = {}
    for turn, span_id, parent, name, kind, service, start, duration, error, attrs in rows:
        by_turn.setdefault(turn, []).append({"span_id": span_id, "parent_id": parent, "name": name, "kind": kind,
                                             "service": service, "start_ns": start, "duration_ms": duration,
                                             "error": error, "attributes": json.loads(attrs) if attrs else {}})
    for spans in by_turn.values():
        depth: dict[str, int] = {}
        for span in spans:  # parents start first; a parent outside the turn's spans is the call itself
            span["depth"] = depth.get(span["parent_id"], -1) + 1
            depth[span["span_id"]] = span["depth"]
    return by_turn
