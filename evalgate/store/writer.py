"""Batched writes of case results: columns in memory, Arrow tables into DuckDB."""

from __future__ import annotations

import json
import time
from typing import Any

from ..results import CaseResult
from . import Store

_CASE_COLS = ["run_id", "seq", "case_id", "repeat", "tags", "user_id", "user_groups", "session_id", "source",
              "critical", "passed", "errored", "error", "n_turns", "elapsed_ms", "routes"]
_TURN_COLS = ["run_id", "case_id", "repeat", "turn", "input", "route", "output", "state_in", "state", "elapsed_ms",
              "latency_ms", "passed", "error", "trace", "recorded", "changes", "input_tokens", "output_tokens", "cost_usd"]
_SCORE_COLS = ["run_id", "case_id", "repeat", "turn", "scorer", "passed", "value", "explanation", "error"]


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, default=str)


class ResultWriter:
    """Collects case results and appends them to the store in batches.

    Only whole cases are written, so an interrupted run never stores half a
    conversation. A batch is flushed when it reaches ``batch_rows`` turns or
    ``interval_s`` has passed since the last flush.
    """

    def __init__(self, store: Store, run_id: str, *, batch_rows: int = 20_000, interval_s: float = 2.0,
                 same_as_recorded: bool = False):
        self.store = store
        self.run_id = run_id
        self.batch_rows = batch_rows
        self.interval_s = interval_s
        self.same_as_recorded = same_as_recorded
        self._last_flush = time.monotonic()
        self.cases_done = 0
        self.turns_done = 0
        self.errors = 0
        self.passed = 0
        self._reset()

    def _reset(self) -> None:
        self._cases: dict[str, list[Any]] = {c: [] for c in _CASE_COLS}
        self._turns: dict[str, list[Any]] = {c: [] for c in _TURN_COLS}
        self._scores: dict[str, list[Any]] = {c: [] for c in _SCORE_COLS}
        self._pending = 0

    def add(self, result: CaseResult) -> None:
        rid = self.run_id
        c = self._cases
        routes: list[str] = []
        for t in result.turns:
            tr = t.trace
            route = tr.route.name if tr is not None and tr.route is not None else None
            if route is not None and route not in routes:
                routes.append(route)
            tc = self._turns
            tc["run_id"].append(rid)
            tc["case_id"].append(result.case_id)
            tc["repeat"].append(result.repeat)
            tc["turn"].append(t.turn)
            tc["input"].append(t.input)
            tc["route"].append(route)
            tc["output"].append(tr.output if tr is not None else None)
            tc["state_in"].append(_dumps(t.state_in))
            tc["state"].append(_dumps(tr.state) if tr is not None else None)
            tc["elapsed_ms"].append(t.elapsed_ms)
            lat = tr.latency_ms.get("total") if tr is not None and tr.latency_ms else None
            tc["latency_ms"].append(lat)
            tc["passed"].append(t.passed)
            tc["error"].append(t.error)
            tc["trace"].append(tr.model_dump_json(exclude_defaults=True) if tr is not None else None)
            rec = t.recorded
            tc["recorded"].append(rec.model_dump_json(exclude_defaults=True) if rec is not None and rec is not tr else None)
            tc["changes"].append(_dumps(t.changes) if t.changes else None)
            usage = tr.usage if tr is not None else None
            tc["input_tokens"].append(usage.input_tokens if usage else None)
            tc["output_tokens"].append(usage.output_tokens if usage else None)
            tc["cost_usd"].append(usage.cost_usd if usage else None)
            sc = self._scores
            for s in t.scores:
                sc["run_id"].append(rid)
                sc["case_id"].append(result.case_id)
                sc["repeat"].append(result.repeat)
                sc["turn"].append(t.turn)
                sc["scorer"].append(s.scorer)
                sc["passed"].append(s.passed)
                sc["value"].append(s.value)
                sc["explanation"].append(s.explanation)
                sc["error"].append(s.error)
        for name, value in (("run_id", rid), ("seq", result.seq), ("case_id", result.case_id),
                            ("repeat", result.repeat), ("tags", list(result.tags)), ("user_id", result.user_id),
                            ("user_groups", result.user_groups), ("session_id", result.session_id),
                            ("source", result.source), ("critical", result.critical), ("passed", result.passed),
                            ("errored", result.errored), ("error", result.error), ("n_turns", len(result.turns)),
                            ("elapsed_ms", result.elapsed_ms), ("routes", routes)):
            c[name].append(value)
        self.cases_done += 1
        self.turns_done += len(result.turns)
        self.errors += result.errored
        self.passed += result.passed
        self._pending += max(1, len(result.turns))
        if self._pending >= self.batch_rows or time.monotonic() - self._last_flush >= self.interval_s:
            self.flush()

    def _tables(self) -> tuple[Any, Any, Any]:
        import pyarrow as pa

        cases = pa.table({
            **{k: self._cases[k] for k in _CASE_COLS},
            "tags": pa.array(self._cases["tags"], pa.list_(pa.string())),
            "user_groups": pa.array(self._cases["user_groups"], pa.list_(pa.string())),
            "routes": pa.array(self._cases["routes"], pa.list_(pa.string())),
        })
        types = {"elapsed_ms": pa.float64(), "latency_ms": pa.float64(), "cost_usd": pa.float64(),
                 "input_tokens": pa.int64(), "output_tokens": pa.int64()}
        turns = pa.table({k: pa.array(v, types[k]) if k in types else v for k, v in self._turns.items()})
        scores = pa.table({**self._scores, "value": pa.array(self._scores["value"], pa.float64())})
        return cases, turns, scores

    def flush(self, *, status_update: dict[str, Any] | None = None) -> None:
        """Append the pending batch (if any) and the run's progress counters."""
        has_rows = bool(self._cases["case_id"])
        if not has_rows and status_update is None:
            return
        tables = self._tables() if has_rows else None
        with self.store.connect() as con:
            con.execute("BEGIN TRANSACTION")
            if tables is not None:
                cases_tbl, turns_tbl, scores_tbl = tables
                con.register("batch_cases", cases_tbl)
                con.register("batch_turns", turns_tbl)
                con.register("batch_scores", scores_tbl)
                con.execute(f"INSERT INTO cases ({', '.join(_CASE_COLS)}) SELECT {', '.join(_CASE_COLS)} FROM batch_cases")
                con.execute(f"INSERT INTO turns ({', '.join(_TURN_COLS)}) SELECT {', '.join(_TURN_COLS)} FROM batch_turns")
                con.execute(f"INSERT INTO scores ({', '.join(_SCORE_COLS)}) SELECT {', '.join(_SCORE_COLS)} FROM batch_scores")
            sets = {"cases_done": self.cases_done, "turns_done": self.turns_done, "errors": self.errors}
            sets.update(status_update or {})
            assignments = ", ".join(f"{k} = ?" for k in sets)
            con.execute(f"UPDATE runs SET {assignments} WHERE run_id = ?", [*sets.values(), self.run_id])
            con.execute("COMMIT")
        self._reset()
        self._last_flush = time.monotonic()
