"""Batched writes of case results: rows in memory, scanned by DuckDB as NumPy columns (or a replay worker's
Parquet files)."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from .. import _json
from ..errors import RunError
from ..results import CaseResult
from . import Store, column_types

_CASE_COLS = ["run_id", "seq", "case_id", "repeat", "tags", "user_id", "user_groups", "session_id", "source",
              "critical", "passed", "errored", "error", "n_turns", "elapsed_ms", "routes", "meta", "digest", "variant_of",
              "turn_tags"]
_TURN_COLS = ["run_id", "case_id", "repeat", "turn", "input", "route", "output", "state_in", "state", "elapsed_ms",
              "latency_ms", "passed", "error", "trace", "recorded", "changes", "input_tokens", "output_tokens", "cost_usd",
              "tags", "first_token_ms"]
_SCORE_COLS = ["run_id", "case_id", "repeat", "turn", "scorer", "passed", "value", "explanation", "error", "metrics",
               "detail"]


WRITER_MEMORY_LIMIT = "64MB"
"""DuckDB's buffer pool while appending a batch: enough for a batch, flat for any run length."""


def _dumps(value: Any) -> str | None:
    return None if value is None else _json.dumps(value)


_INT64 = 1 << 63


def _int64(value: Any) -> Any:
    """A count a BIGINT column holds (a token count of 10**30 is no count: not stored)."""
    return value if value is None or -_INT64 <= value < _INT64 else None


def _double(value: Any) -> Any:
    """A number a DOUBLE column holds (an integer past 1e308 cannot be one: not stored; a bool is 0.0 or 1.0)."""
    if isinstance(value, bool):
        return float(value)
    return None if isinstance(value, int) and not -1e308 < value < 1e308 else value


class StoreBroken(RunError):
    """The store stopped taking writes (disk full, read-only, the file gone): the run cannot go on storing."""


@dataclass(frozen=True)
class Unstored:
    """Case runs of one batch (or part of it) that could not be written, and why."""

    first: str
    last: str
    cases: int
    error: str | None
    """Why the store rejected them; None when they were not tried (the store had stopped taking writes)."""

    def describe(self) -> str:
        which = f"case {self.first}" if self.cases == 1 else f"the batch of cases {self.first}..{self.last}"
        return f"{which} failed: {self.error}" if self.error is not None else f"{which} could not be tried"


def _store_broken(exc: BaseException) -> bool:
    """A failure of the store itself, not of what was written: later batches would fail the same way."""
    import duckdb

    if isinstance(exc, (OSError, RunError, duckdb.IOException, duckdb.PermissionException, duckdb.FatalException,
                        duckdb.ConnectionException, duckdb.TransactionException)):  # a commit that could not be written
        return True
    text = str(exc).lower()
    return any(sign in text for sign in ("no space left", "read-only file system", "permission denied", "invalidated"))


class ResultWriter:
    """Collects case results and appends them to the store in batches.

    Only whole cases are written, so an interrupted run never stores half a
    conversation. A batch is flushed when it reaches ``batch_rows`` turns or
    ``interval_s`` has passed since the last flush.

    A batch the store rejects for what it holds is written again in halves
    until only the case runs that cannot be stored are left out (the run is
    then failed); a store that stops taking writes at all (disk full,
    read-only) stops the run (stopped: ``--resume`` finishes it later). Either
    way every earlier batch stays, the counters are what was stored and
    ``failure`` says exactly what was kept.
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
        self.unstored: list[Unstored] = []
        self.broken: str | None = None
        """Why the store stopped taking writes, once it has."""
        self.unmarked: str | None = None
        """Why the run's own row could not be updated at the end (it then reads as interrupted)."""
        self._types: dict[str, dict[str, str]] | None = None
        self._reset()
        # the batches are NumPy columns: imported now, before the first turn, not by the first flush on the writer
        # thread, where its ~0.1 s held the GIL while the model I/O thread had answers to timestamp
        import numpy  # noqa: F401

    def _reset(self) -> None:
        self._rows = Rows()
        self._pending = 0

    def add(self, result: CaseResult) -> None:
        self._rows.add(result, self.run_id)
        self._count(1, len(result.turns), int(result.errored), int(result.passed))

    def add_rows(self, rows: Rows | PartFiles) -> None:
        """Case runs another process made (with this run's id), written as one batch after what was added
        before."""
        if len(self._rows):
            self.flush(background=True)
        cases, turns, errors, passed = rows.counts()
        self.cases_done += cases
        self.turns_done += turns
        self.errors += errors
        self.passed += passed
        self.flush(background=True, rows=rows)
        if self.broken is not None:
            raise StoreBroken(self.failure or self.broken)

    def _count(self, cases: int, turns: int, errors: int, passed: int) -> None:
        self.cases_done += cases
        self.turns_done += turns
        self.errors += errors
        self.passed += passed
        self._pending += max(cases, turns)
        if self._pending >= self.batch_rows or time.monotonic() - self._last_flush >= self.interval_s:
            self.flush(background=True)
            if self.broken is not None:
                raise StoreBroken(self.failure or self.broken)

    @property
    def failure(self) -> str | None:
        """What was kept when something could not be stored (None when everything was)."""
        if not self.unstored and self.broken is None and self.unmarked is None:
            return None
        lost = sum(u.cases for u in self.unstored)
        parts = [f"stored {self.cases_done:,} of {self.cases_done + lost:,} case runs"]
        parts += [u.describe() for u in self.unstored[:3]]
        if len(self.unstored) > 3:
            parts.append(f"and {len(self.unstored) - 3} more batches")
        if self.broken is not None:
            parts.append("the store stopped taking writes, so no more were tried")
        text = "; ".join(parts)
        if self.unmarked is not None:
            same = self.unmarked in (self.broken, *(u.error for u in self.unstored))
            text += (" (the run's status could not be stored " + ("either" if same else f"({self.unmarked})")
                     + ": the next command that opens the store takes it as interrupted, and --resume finishes it)")
        return text

    def flush(self, *, status_update: dict[str, Any] | None = None, background: bool = False,
              rows: Rows | PartFiles | None = None) -> None:
        """Append the pending batch (if any) and the run's progress counters.

        With ``background`` the batch is written on a writer thread (DuckDB
        releases the GIL once the rows are its columns), so scoring goes on meanwhile; at most one
        batch is in flight, and batches land in order. A flush with a status
        update waits for everything before it.
        """
        has_rows = len(self._rows) > 0
        if not has_rows and status_update is None and rows is None:
            return
        batch: Rows | PartFiles | None
        if rows is not None:  # add_rows wrote what was pending first
            batch = rows
        else:
            batch = self._rows if has_rows else None
            self._reset()
        self._last_flush = time.monotonic()
        self.wait()  # the batch before this one: what it could not store comes off the counters first
        if self.broken is not None:  # nothing more can be stored: this batch is lost too, said so
            if batch is not None:
                self._apply(batch.lose(0, len(batch), None, broken=True))
            if status_update is not None:
                self.unmarked = self._mark_status({"cases_done": self.cases_done, "turns_done": self.turns_done,
                                                   "errors": self.errors, **status_update})
            return
        sets: dict[str, Any] = {"cases_done": self.cases_done, "turns_done": self.turns_done, "errors": self.errors}
        sets.update(status_update or {})
        if "status" in sets and self.unstored:  # an earlier batch was left out: the run failed
            sets["status"] = "failed"
        if background:
            if self._executor is None:
                from concurrent.futures import ThreadPoolExecutor

                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="evalgate-store")
            self._future = self._executor.submit(self._write, batch, sets)
        else:
            self._apply(self._write(batch, sets))

    def wait(self) -> None:
        """Wait for the batch in flight and take what it could not store off the counters."""
        future, self._future = self._future, None
        if future is not None:
            self._apply(future.result())

    def close(self) -> None:
        self.wait()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def column_types(self, con: Any = None) -> dict[str, dict[str, str]]:
        """The store's column types (``store.column_types``), read once: on ``con``, or on a connection of their
        own."""
        if self._types is None:
            self._types = column_types(con) if con is not None else self.store.column_types()
        return self._types

    def _apply(self, loss: _Loss) -> None:
        self.cases_done -= loss.cases
        self.turns_done -= loss.turns
        self.errors -= loss.errors
        self.passed -= loss.passed
        self.unstored.extend(loss.unstored)
        if loss.broken is not None and self.broken is None:
            self.broken = loss.broken
        if loss.unmarked is not None:
            self.unmarked = loss.unmarked

    def _write(self, batch: Rows | PartFiles | None, sets: dict[str, Any]) -> _Loss:
        """Write a batch and the counters in one transaction; a batch the store rejects is written again in parts."""
        loss = _Loss()
        final = "status" in sets
        try:
            with self.store.connect(memory_limit=WRITER_MEMORY_LIMIT, threads=1) as con:  # the other core scores
                try:
                    self._commit(con, batch, 0, len(batch) if batch else 0, sets)
                    loss.written = len(batch) if batch else 0  # committed: a failure closing the file loses none of it
                    return loss
                except Exception as exc:
                    if batch is None or _store_broken(exc):
                        raise
                    self._salvage(con, batch, exc, loss)
                if loss.broken is None:  # the counters as stored, the status failed: something was left out
                    self._commit(con, None, 0, 0, loss.stored(sets, failed=final and bool(loss.unstored)))
        except Exception as exc:
            if not _store_broken(exc):
                raise  # an evalgate bug, not the store's
            why = _why(exc)
            if batch is not None and loss.cases + loss.written < len(batch):  # nothing of it was written
                loss.add(batch.lose(0, len(batch), why, broken=True))
            loss.broken = loss.broken or why
        finally:
            if isinstance(batch, PartFiles):  # stored or accounted for as lost: the files have served
                batch.discard()
            _release_freed_memory()
        if final and loss.broken is not None:
            loss.unmarked = self._mark_status(loss.stored(sets, failed=False))
        return loss

    def _mark_status(self, sets: dict[str, Any]) -> str | None:
        """The run's last update on a store that stopped taking writes, tried once more: stopped (``--resume``
        finishes it once the store takes writes again); why it failed, if it did. ``sets`` holds the counters as
        stored."""
        try:
            with self.store.connect(memory_limit=WRITER_MEMORY_LIMIT, threads=1, wait_s=2.0) as con:
                self._commit(con, None, 0, 0, {**sets, "status": "stopped"})
        except Exception as exc:
            if not _store_broken(exc):
                raise
            return _why(exc)
        return None

    def _salvage(self, con: Any, batch: Rows | PartFiles, first: BaseException, loss: _Loss) -> None:
        """Write the parts of a rejected batch that the store takes: halves, then their halves, down to single case
        runs (at most ``_SALVAGE_TRIES`` writes: a batch whose every case is rejected is not written case by case)."""
        n = len(batch)
        todo: list[tuple[int, int, BaseException | None]] = [(0, n, first)]
        tries = 0
        while todo:
            lo, hi, failed = todo.pop()
            if loss.broken is not None:
                loss.add(batch.lose(lo, hi, None, broken=True))
                continue
            if failed is None:
                tries += 1
                try:
                    self._commit(con, batch, lo, hi, None)
                    loss.written += hi - lo
                    continue
                except Exception as exc:
                    if _store_broken(exc):
                        loss.broken = _why(exc)
                        loss.add(batch.lose(lo, hi, loss.broken, broken=True))
                        continue
                    failed = exc
            if hi - lo == 1 or tries >= _SALVAGE_TRIES:
                loss.add(batch.lose(lo, hi, _why(failed)))
                continue
            mid = (lo + hi) // 2
            todo += [(mid, hi, None), (lo, mid, None)]  # the first half is written first: losses come in order

    def _commit(self, con: Any, batch: Rows | PartFiles | None, lo: int, hi: int, sets: dict[str, Any] | None) -> None:
        con.execute("BEGIN TRANSACTION")
        try:
            if batch is not None and hi > lo:
                batch.insert(con, lo, hi, self.column_types(con))
            if sets:
                assignments = ", ".join(f"{k} = ?" for k in sets)
                con.execute(f"UPDATE runs SET {assignments} WHERE run_id = ?", [*sets.values(), self.run_id])
            con.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(Exception):  # the failed statement may have ended the transaction already
                con.execute("ROLLBACK")
            raise


_SALVAGE_TRIES = 64


def _why(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}".rstrip(": ")


_TABLES = (("cases", _CASE_COLS), ("turns", _TURN_COLS), ("scores", _SCORE_COLS))
_SUMMARY = [_CASE_COLS.index(name) for name in ("case_id", "repeat", "n_turns", "errored", "passed")]


@dataclass
class Rows:
    """Case runs as rows of the store's three tables (tuples in ``_CASE_COLS``, ``_TURN_COLS`` and ``_SCORE_COLS``
    order), and where each case run's turn and score rows end.

    Filled by ``add`` (here, or in a replay worker process), written by a ResultWriter.
    """

    cases: list[tuple[Any, ...]] = field(default_factory=list)
    turns: list[tuple[Any, ...]] = field(default_factory=list)
    scores: list[tuple[Any, ...]] = field(default_factory=list)
    ends: list[tuple[int, int]] = field(default_factory=list)

    def add(self, result: CaseResult, rid: str) -> None:
        """One case run's rows, with its turns and scores."""
        case_id, repeat = result.case_id, result.repeat
        routes: list[str] = []
        turn_tags: list[str] = []
        turns, scores = self.turns, self.scores
        for t in result.turns:
            tr = t.trace
            if tr is not None:
                route = tr.route.name if tr.route is not None else None
                usage = tr.usage
                lat = tr.latency_ms.get("total") if tr.latency_ms else None
                trace_cols: tuple[Any, ...] = (route, tr.output, _dumps(t.state_in), _dumps(tr.state),
                                               _double(t.elapsed_ms), _double(lat), t.passed, t.error, tr.to_json())
            else:
                route, usage = None, None
                trace_cols = (None, None, _dumps(t.state_in), None, _double(t.elapsed_ms), None, t.passed, t.error,
                              None)
            if route is not None and route not in routes:
                routes.append(route)
            rec = t.recorded
            turns.append((rid, case_id, repeat, t.turn, t.input, *trace_cols,
                          rec.to_json() if rec is not None and rec is not tr else None,
                          _dumps(t.changes) if t.changes else None,
                          _int64(usage.input_tokens) if usage else None, _int64(usage.output_tokens) if usage else None,
                          _double(usage.cost_usd) if usage else None, list(t.tags),
                          _double(tr.latency_ms.get("first_token")) if tr is not None and tr.latency_ms else None))
            if t.tags:
                turn_tags.extend(tag for tag in t.tags if tag not in turn_tags)
            for sc in t.scores:
                scores.append((rid, case_id, repeat, t.turn, sc.scorer, sc.passed, _double(sc.value), sc.explanation,
                               sc.error, _dumps(sc.metrics) if sc.metrics else None,
                               _dumps(sc.detail) if sc.detail else None))
        self.cases.append((rid, result.seq, case_id, repeat, list(result.tags), result.user_id, result.user_groups,
                           result.session_id, result.source, result.critical, result.passed, result.errored,
                           result.error, len(result.turns), _double(result.elapsed_ms), routes,
                           _dumps(result.meta) if result.meta else None, result.digest(), result.variant_of,
                           turn_tags))
        self.ends.append((len(turns), len(scores)))

    def extend(self, other: Rows) -> None:
        """Another set of rows after these."""
        t0, s0 = len(self.turns), len(self.scores)
        self.cases.extend(other.cases)
        self.turns.extend(other.turns)
        self.scores.extend(other.scores)
        self.ends.extend((t + t0, s + s0) for t, s in other.ends)

    def __len__(self) -> int:
        return len(self.ends)

    def part(self, lo: int, hi: int) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """Case runs lo..hi-1 with their turns and scores."""
        if lo == 0 and hi == len(self):
            return self.cases, self.turns, self.scores
        t0, s0 = self.ends[lo - 1] if lo else (0, 0)
        t1, s1 = self.ends[hi - 1]
        return self.cases[lo:hi], self.turns[t0:t1], self.scores[s0:s1]

    def insert(self, con: Any, lo: int, hi: int, types: dict[str, dict[str, str]]) -> None:
        """Append case runs lo..hi-1 to the store's tables (in the caller's transaction; ``types`` are the store's
        column types, ``store.column_types``)."""
        _scan_every_row(con)
        for (table, names), rows in zip(_TABLES, self.part(lo, hi)):
            if not rows:
                continue
            values = _batch(con, names, rows, types[table])
            try:
                con.execute(f"INSERT INTO {table} ({', '.join(names)}) SELECT {', '.join(values)} FROM batch")
            finally:
                with contextlib.suppress(Exception):  # a failed insert has aborted the transaction: the caller's
                    con.unregister("batch")            # rollback comes first (the connection lets it go at close)

    def renumbered(self, offset: int) -> Rows:
        """The same case runs with ``offset`` added to every ``seq`` (a worker numbers its part from 0)."""
        i = _CASE_COLS.index("seq")
        cases = [(*row[:i], row[i] + offset, *row[i + 1:]) for row in self.cases]
        return Rows(cases, self.turns, self.scores, self.ends)

    @property
    def turn_count(self) -> int:
        return len(self.turns)

    def summary(self, lo: int = 0, hi: int | None = None) -> list[tuple[Any, ...]]:
        """(case_id, repeat, n_turns, errored, passed) of case runs lo..hi-1 (every one by default)."""
        return [tuple(row[i] for i in _SUMMARY) for row in self.cases[lo:hi]]

    def counts(self) -> tuple[int, int, int, int]:
        """Case runs, turns, errored and passed case runs."""
        return _counts(self.summary())

    def lose(self, lo: int, hi: int, why: str | None, *, broken: bool = False) -> _Loss:
        """Case runs lo..hi-1 left out, and why (None: not tried, the store had stopped taking writes)."""
        return _lost(self.summary(lo, hi), why, broken)


_ANALYZE_ALL = 1 << 62
"""DuckDB infers a NumPy object column's type from a sample of its values (1,000 by default): one text in a
column of nulls past the sample would fail the batch. Every value is looked at instead."""


def _scan_every_row(con: Any) -> None:
    con.execute(f"SET pandas_analyze_sample = {_ANALYZE_ALL}")


def _batch(con: Any, names: list[str], rows: list[tuple[Any, ...]], types: dict[str, str]) -> list[str]:
    """Register ``rows`` on ``con`` as the view ``batch``, a NumPy column each (which DuckDB scans without pandas
    or Arrow), and return the select list that reads them as ``names``.

    A column of one value throughout (the run's id) is a literal, not a column; numbers and flags are typed arrays
    (a missing DOUBLE is NaN, which DuckDB reads as NULL), which DuckDB takes as they are; the rest are object
    columns, whose every value DuckDB looks at to type them (a list stays one value)."""
    import numpy as np

    n = len(rows)
    arrays: dict[str, Any] = {}
    values: list[str] = []
    for name, column in zip(names, zip(*rows)):
        kind = types[name]
        first = column[0]
        if name == "run_id" and isinstance(first, str) and column.count(first) == n:
            values.append("'" + first.replace("'", "''") + "'")
            continue
        values.append(name)
        if kind == "DOUBLE":
            arrays[name] = floats = np.array(column, dtype=np.float64)
            missing = np.isnan(floats)
            if missing.any():  # DuckDB reads a NaN as NULL: a NaN a scorer gave (not None) is stored as NaN
                nan = np.zeros(n, dtype=np.bool_)
                nan[[i for i in np.flatnonzero(missing) if column[i] is not None]] = True
                if nan.any():
                    arrays[f"{name}__nan"] = nan
                    values[-1] = f"CASE WHEN {name}__nan THEN 'NaN'::DOUBLE ELSE {name} END"
        elif kind in ("INTEGER", "BIGINT") and None not in column:
            arrays[name] = np.array(column, dtype=np.int64)
        elif kind == "BOOLEAN" and column.count(True) + column.count(False) == n:  # flags only: DuckDB casts the rest
            arrays[name] = np.array(column, dtype=np.bool_)
        else:
            arrays[name] = np.fromiter(column, dtype=object, count=n)
    con.register("batch", arrays)
    return values


def _counts(summary: list[tuple[Any, ...]]) -> tuple[int, int, int, int]:
    return (len(summary), sum(s[2] for s in summary), sum(bool(s[3]) for s in summary),
            sum(bool(s[4]) for s in summary))


@dataclass
class _Part:
    paths: tuple[str, str, str]
    """The cases, turns and scores files."""
    summary: list[tuple[Any, ...]]
    """(case_id, repeat, n_turns, errored, passed) of each case run, for the counters and for what was lost."""
    ends: list[tuple[int, int]]
    seq_offset: int = 0


@dataclass
class PartFiles:
    """Case runs a replay worker made into Parquet files of the store's three tables, on its own core, so the
    run's process only copies them in (DuckDB to DuckDB, no Python objects); one part or several, in order."""

    parts: list[_Part]
    _rows: Rows | None = None

    @classmethod
    def write(cls, rows: Rows, stem: str, types: dict[str, dict[str, str]]) -> PartFiles:
        """``rows`` as ``stem``.cases/turns/scores.parquet, typed as the store's columns (``types``: table ->
        column -> DuckDB type; the JSON columns are parsed here, not in the run's process)."""
        import duckdb

        paths = (f"{stem}.cases.parquet", f"{stem}.turns.parquet", f"{stem}.scores.parquet")
        con = duckdb.connect(config={"threads": 1})
        try:
            _scan_every_row(con)
            for (table, names), part, path in zip(_TABLES, (rows.cases, rows.turns, rows.scores), paths):
                if part:
                    values, source = _batch(con, names, part, types[table]), "batch"
                else:
                    values, source = names, f"(SELECT {', '.join(f'NULL AS {n}' for n in names)} LIMIT 0)"
                casts = ", ".join(f"CAST({v} AS {types[table][n]}) AS {n}" for n, v in zip(names, values))
                con.execute(f"COPY (SELECT {casts} FROM {source}) TO '{_quoted(path)}' "
                            f"(FORMAT parquet, COMPRESSION snappy, ROW_GROUP_SIZE {PART_ROW_GROUP})")
                if part:
                    con.unregister("batch")
        finally:
            con.close()
        return cls([_Part(paths, rows.summary(), rows.ends)])

    @classmethod
    def join(cls, parts: list[PartFiles]) -> PartFiles:
        """Several sets of files as one batch, in order."""
        return cls([p for files in parts for p in files.parts])

    def renumbered(self, offset: int) -> PartFiles:
        """The same case runs with ``offset`` added to every ``seq`` (a worker numbers its part from 0)."""
        return PartFiles([_Part(p.paths, p.summary, p.ends, p.seq_offset + offset) for p in self.parts])

    def __len__(self) -> int:
        return sum(len(p.ends) for p in self.parts)

    @property
    def turn_count(self) -> int:
        return sum(p.ends[-1][0] if p.ends else 0 for p in self.parts)

    def counts(self) -> tuple[int, int, int, int]:
        """Case runs, turns, errored and passed case runs."""
        return _counts([s for p in self.parts for s in p.summary])

    def insert(self, con: Any, lo: int, hi: int, types: dict[str, dict[str, str]]) -> None:
        if lo == 0 and hi == len(self):
            for p in self.parts:
                for (table, names), path in zip(_TABLES, p.paths):
                    cols = ", ".join(f"seq + {int(p.seq_offset)}" if n == "seq" else n for n in names)
                    con.execute(f"INSERT INTO {table} ({', '.join(names)}) SELECT {cols} "
                                f"FROM read_parquet('{_quoted(path)}')")
        else:  # a rejected batch written again in parts (rare): its rows read back once, as one process has them
            if self._rows is None:
                self._rows = self.rows()
            self._rows.insert(con, lo, hi, types)

    def rows(self) -> Rows:
        """The case runs as rows, read back from the files (on a connection of their own: the writer's small
        memory limit may be what the batch failed on)."""
        import duckdb

        con = duckdb.connect(config={"threads": 1})
        try:
            return self._read(con)
        finally:
            con.close()

    def _read(self, con: Any) -> Rows:
        out = Rows()
        for p in self.parts:
            part = Rows()
            for (table, names), path, into in zip(_TABLES, p.paths, (part.cases, part.turns, part.scores)):
                cols = ", ".join(f"seq + {int(p.seq_offset)}" if n == "seq" else n for n in names)
                into.extend(con.execute(f"SELECT {cols} FROM read_parquet('{_quoted(path)}')").fetchall())
            part.ends = list(p.ends)
            out.extend(part)
        return out

    def lose(self, lo: int, hi: int, why: str | None, *, broken: bool = False) -> _Loss:
        return _lost([s for p in self.parts for s in p.summary][lo:hi], why, broken)

    def discard(self) -> None:
        import os

        for p in self.parts:
            for path in p.paths:
                with contextlib.suppress(OSError):
                    os.unlink(path)


PART_ROW_GROUP = 2048
"""Rows per row group of a part's files: the run's process reads them a group at a time within the writer's memory
limit, even with a few answers of megabytes among them."""


def _quoted(path: str) -> str:
    return path.replace("'", "''")


def _lost(summary: list[tuple[Any, ...]], why: str | None, broken: bool) -> _Loss:
    label = [f"{summary[i][0]}#{summary[i][1]}" for i in (0, -1)]
    cases, turns, errors, passed = _counts(summary)
    loss = _Loss(cases, turns, errors, passed, [Unstored(label[0], label[1], cases, why)])
    loss.broken = (why or "the store had stopped taking writes") if broken else None
    return loss


@dataclass
class _Loss:
    """What one write could not store, to come off the counters."""

    cases: int = 0
    turns: int = 0
    errors: int = 0
    passed: int = 0
    unstored: list[Unstored] = field(default_factory=list)
    written: int = 0
    """Case runs of the batch that were committed (all of it, or the parts of a rejected one)."""
    broken: str | None = None
    unmarked: str | None = None

    def stored(self, sets: dict[str, Any], *, failed: bool) -> dict[str, Any]:
        """The run's update with the counters of what was stored."""
        out = {**sets, "cases_done": sets["cases_done"] - self.cases, "turns_done": sets["turns_done"] - self.turns,
               "errors": sets["errors"] - self.errors}
        if failed:
            out["status"] = "failed"
        return out

    def add(self, other: _Loss) -> None:
        self.cases += other.cases
        self.turns += other.turns
        self.errors += other.errors
        self.passed += other.passed
        self.unstored.extend(other.unstored)
        self.broken = self.broken or other.broken


def _release_freed_memory() -> None:
    """Give memory DuckDB freed back to the system (glibc keeps it otherwise)."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to give back
        ctypes.CDLL("libc.so.6").malloc_trim(0)
