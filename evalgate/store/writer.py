"""Batched writes of case results: columns in memory, Arrow tables into DuckDB."""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

from ..results import CaseResult
from . import Store

_CASE_COLS = ["run_id", "seq", "case_id", "repeat", "tags", "user_id", "user_groups", "session_id", "source",
              "critical", "passed", "errored", "error", "n_turns", "elapsed_ms", "routes", "meta", "digest", "variant_of",
              "turn_tags"]
_TURN_COLS = ["run_id", "case_id", "repeat", "turn", "input", "route", "output", "state_in", "state", "elapsed_ms",
              "latency_ms", "passed", "error", "trace", "recorded", "changes", "input_tokens", "output_tokens", "cost_usd",
              "tags"]
_SCORE_COLS = ["run_id", "case_id", "repeat", "turn", "scorer", "passed", "value", "explanation", "error", "metrics",
               "detail"]


WRITER_MEMORY_LIMIT = "64MB"
"""DuckDB's buffer pool while appending a batch: enough for a batch, flat for any run length."""


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, default=str)


class ResultWriter:
    """Collects case results and appends them to the store in batches.

    Only whole cases are written, so an interrupted run never stores half a
    conversation. A batch is flushed when it reaches ``batch_rows`` turns or
    ``interval_s`` has passed since the last flush.
    """

    def __init__(self, store: Store, run_id: str, *, batch_rows: int = 10_000, interval_s: float = 2.0,
                 same_as_recorded: bool = False):
        self.store = store
        self.run_id = run_id
        self.batch_rows = batch_rows
        self.interval_s = interval_s
        self.same_as_recorded = same_as_recorded
        self._last_flush = time.monotonic()
        self._executor: Any = None
        self._future: Any = None
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
        turn_tags: list[str] = []
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
            tc["trace"].append(tr.to_json() if tr is not None else None)
            rec = t.recorded
            tc["recorded"].append(rec.to_json() if rec is not None and rec is not tr else None)
            tc["changes"].append(_dumps(t.changes) if t.changes else None)
            usage = tr.usage if tr is not None else None
            tc["input_tokens"].append(usage.input_tokens if usage else None)
            tc["output_tokens"].append(usage.output_tokens if usage else None)
            tc["cost_usd"].append(usage.cost_usd if usage else None)
            tc["tags"].append(list(t.tags))
            turn_tags.extend(tag for tag in t.tags if tag not in turn_tags)
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
                sc["metrics"].append(_dumps(s.metrics) if s.metrics else None)
                sc["detail"].append(_dumps(s.detail) if s.detail else None)
        for name, value in (("run_id", rid), ("seq", result.seq), ("case_id", result.case_id),
                            ("repeat", result.repeat), ("tags", list(result.tags)), ("user_id", result.user_id),
                            ("user_groups", result.user_groups), ("session_id", result.session_id),
                            ("source", result.source), ("critical", result.critical), ("passed", result.passed),
                            ("errored", result.errored), ("error", result.error), ("n_turns", len(result.turns)),
                            ("elapsed_ms", result.elapsed_ms), ("routes", routes),
                            ("meta", _dumps(result.meta) if result.meta else None),
                            ("digest", result.digest()), ("variant_of", result.variant_of),
                            ("turn_tags", turn_tags)):
            c[name].append(value)
        self.cases_done += 1
        self.turns_done += len(result.turns)
        self.errors += result.errored
        self.passed += result.passed
        self._pending += max(1, len(result.turns))
        if self._pending >= self.batch_rows or time.monotonic() - self._last_flush >= self.interval_s:
            self.flush(background=True)

    @staticmethod
    def _tables(cases_cols: dict[str, list[Any]], turn_cols: dict[str, list[Any]],
                score_cols: dict[str, list[Any]]) -> tuple[Any, Any, Any]:
        import pyarrow as pa

        _use_system_allocator(pa)
        string_list = pa.list_(pa.string())
        cases = pa.table({
            **cases_cols,
            "tags": pa.array(cases_cols["tags"], string_list),
            "user_groups": pa.array(cases_cols["user_groups"], string_list),
            "routes": pa.array(cases_cols["routes"], string_list),
            "turn_tags": pa.array(cases_cols["turn_tags"], string_list),
            "elapsed_ms": pa.array(cases_cols["elapsed_ms"], pa.float64()),
        })
        types = {"elapsed_ms": pa.float64(), "latency_ms": pa.float64(), "cost_usd": pa.float64(),
                 "input_tokens": pa.int64(), "output_tokens": pa.int64()}
        types["tags"] = string_list
        turns = pa.table({k: pa.array(v, types[k]) if k in types else v for k, v in turn_cols.items()})
        scores = pa.table({**score_cols, "value": pa.array(score_cols["value"], pa.float64()),
                           "metrics": pa.array(score_cols["metrics"], pa.string()),
                           "detail": pa.array(score_cols["detail"], pa.string())})
        return cases, turns, scores

    def flush(self, *, status_update: dict[str, Any] | None = None, background: bool = False) -> None:
        """Append the pending batch (if any) and the run's progress counters.

        With ``background`` the batch is written on a writer thread (DuckDB
        and Arrow release the GIL), so scoring goes on meanwhile; at most one
        batch is in flight, and batches land in order. A flush with a status
        update waits for everything before it.
        """
        has_rows = bool(self._cases["case_id"])
        if not has_rows and status_update is None:
            return
        batch = (self._cases, self._turns, self._scores) if has_rows else None
        sets: dict[str, Any] = {"cases_done": self.cases_done, "turns_done": self.turns_done, "errors": self.errors}
        sets.update(status_update or {})
        self._reset()
        self._last_flush = time.monotonic()
        self.wait()
        if background:
            if self._executor is None:
                from concurrent.futures import ThreadPoolExecutor

                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="evalgate-store")
            self._future = self._executor.submit(self._write, batch, sets)
        else:
            self._write(batch, sets)

    def wait(self) -> None:
        """Wait for the batch in flight; its failure is raised here."""
        future, self._future = self._future, None
        if future is not None:
            future.result()

    def close(self) -> None:
        self.wait()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def _write(self, batch: tuple[dict[str, list[Any]], dict[str, list[Any]], dict[str, list[Any]]] | None,
               sets: dict[str, Any]) -> None:
        tables = self._tables(*batch) if batch is not None else None
        with self.store.connect(memory_limit=WRITER_MEMORY_LIMIT, threads=1) as con:  # the other core scores
            con.execute("BEGIN TRANSACTION")
            if tables is not None:
                cases_tbl, turns_tbl, scores_tbl = tables
                con.register("batch_cases", cases_tbl)
                con.register("batch_turns", turns_tbl)
                con.register("batch_scores", scores_tbl)
                con.execute(f"INSERT INTO cases ({', '.join(_CASE_COLS)}) SELECT {', '.join(_CASE_COLS)} FROM batch_cases")
                con.execute(f"INSERT INTO turns ({', '.join(_TURN_COLS)}) SELECT {', '.join(_TURN_COLS)} FROM batch_turns")
                con.execute(f"INSERT INTO scores ({', '.join(_SCORE_COLS)}) SELECT {', '.join(_SCORE_COLS)} FROM batch_scores")
            assignments = ", ".join(f"{k} = ?" for k in sets)
            con.execute(f"UPDATE runs SET {assignments} WHERE run_id = ?", [*sets.values(), self.run_id])
            con.execute("COMMIT")
        del tables
        _release_freed_memory()


_allocator_set = False


def _use_system_allocator(pa: Any) -> None:
    """Arrow's default pool keeps freed memory for reuse; a long run's memory would only grow."""
    global _allocator_set
    if not _allocator_set:
        _allocator_set = True
        pa.set_memory_pool(pa.system_memory_pool())


def _release_freed_memory() -> None:
    """Give memory DuckDB and Arrow freed back to the system (glibc keeps it otherwise)."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to give back
        ctypes.CDLL("libc.so.6").malloc_trim(0)
