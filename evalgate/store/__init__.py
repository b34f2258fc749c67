"""The DuckDB store: runs, cases, turns and scores, one file per project.

DuckDB lets one process open a file for writing at a time, so a run never
holds the file between batches: it opens, appends a batch, and closes.
Readers (``show``, ``history``, ``report``) open read-only and wait briefly
when a batch is being written. A run also holds a lock file for its whole
length, so a second run waits or stops with a clear message.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import RunError, StoreBusyError
from .migrations import SCHEMA_VERSION, migrate

__all__ = ["Store", "RunLock", "SCHEMA_VERSION"]

_LOCK_WAIT_S = 30.0
# DuckDB's buffer pool otherwise grows with the store during checkpoints on close
MEMORY_LIMIT = os.environ.get("EVALGATE_DUCKDB_MEMORY", "512MB")


def _behind(con: Any) -> bool:
    """True when a store lacks migrations this evalgate knows (it was written by an older one)."""
    from .migrations import MIGRATIONS

    try:
        done = {r[0] for r in con.execute("SELECT name FROM schema_migrations").fetchall()}
    except Exception:  # no table at all: nothing to read either; let the query say so
        return False
    return any(name not in done for name, _ in MIGRATIONS)


def _is_lock_error(exc: Exception) -> bool:
    text = str(exc).lower()
    return ("lock" in text or "conflicting" in text or "different configuration" in text
            or "file handle conflict" in text)  # the file attached by another connection of this process


ROW_GROUP_SIZE = 16_384
"""Rows of the row groups the store's tables grow by. A commit's checkpoint (when its connection closes) rewrites
a table's last, partly filled row group: with DuckDB's default of 122,880 rows every batch of a run rewrote up to
that many rows of each table, and a long run slowed as it went (30 batches of 16,000 recorded turns: 25.5 s to
write with the default, 8.3 s with 16,384, the file 400 → 292 MB). Every connection that may write uses the same
size: one with another would rewrite the row groups to its own at its checkpoint."""


def column_types(con: Any) -> dict[str, dict[str, str]]:
    """The DuckDB type of every column of the result tables, read on ``con``: table -> column -> type."""
    found = con.execute("SELECT table_name, column_name, data_type FROM information_schema.columns "
                        "WHERE table_name IN ('cases', 'turns', 'scores')").fetchall()
    types: dict[str, dict[str, str]] = {}
    for table, column, kind in found:
        types.setdefault(table, {})[column] = kind
    return types


class _Attached:
    """A connection whose default database is the attached store, its cursors' too."""

    def __init__(self, con: Any):
        self._con = con

    def cursor(self) -> Any:
        cur = self._con.cursor()
        cur.execute("USE store")
        return cur

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)


class Store:
    """A path to a DuckDB file, and short-lived connections to it."""

    def __init__(self, path: Path | str):
        self.path = Path(path)

    @contextlib.contextmanager
    def connect(self, *, read_only: bool = False, wait_s: float = _LOCK_WAIT_S,
                memory_limit: str | None = None, threads: int | None = None) -> Iterator[Any]:
        """A connection, retried while another process holds the file briefly; one that may write appends row
        groups of ``ROW_GROUP_SIZE`` rows."""
        import duckdb

        if read_only and not self.path.exists():
            from ..errors import (
                UsageError,  # nothing to read yet is a usage matter (exit 2), not a failed run
            )

            raise UsageError(f"no store at {self.path}", hint="run 'evalgate run' first, or pass --db")
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + wait_s
        delay = 0.01
        while True:
            try:
                con = self._open(duckdb, read_only)
                break
            except duckdb.Error as exc:
                if not _is_lock_error(exc):
                    raise RunError(f"cannot open the store {self.path}: {exc}") from None
                if time.monotonic() >= deadline:
                    raise StoreBusyError(f"the store {self.path} stayed locked by another process for {wait_s:g}s",
                                         hint="wait for the other evalgate command to finish, or pass --db") from None
                time.sleep(delay)
                delay = min(delay * 2, 0.2)
        try:
            if read_only and _behind(con):  # written by an older evalgate: migrate it forward once, then read
                con.close()
                with self.connect(wait_s=wait_s) as writer:
                    migrate(writer)
                con = duckdb.connect(str(self.path), read_only=True)
            con.execute("SET enable_progress_bar = false")  # DuckDB's own bar would garble ours
            con.execute(f"SET memory_limit = '{memory_limit or MEMORY_LIMIT}'")
            if threads is not None:
                con.execute(f"SET threads = {int(threads)}")
            if not read_only:
                migrate(con)
            yield con
        finally:
            con.close()

    def _open(self, duckdb: Any, read_only: bool) -> Any:
        if read_only:  # a reader never checkpoints: the file's row groups stay as they are
            return duckdb.connect(str(self.path), read_only=True)
        con = duckdb.connect(":memory:")  # the store attached with its row group size, and made the default
        try:
            path = str(self.path).replace("'", "''")
            con.execute(f"ATTACH '{path}' AS store (ROW_GROUP_SIZE {ROW_GROUP_SIZE})")
            con.execute("USE store")
            spill = str(self.path.with_name(self.path.name + ".tmp")).replace("'", "''")
            con.execute(f"SET temp_directory = '{spill}'")  # beside the store, as a file connection spills
        except BaseException:
            con.close()
            raise
        return _Attached(con)

    def column_types(self) -> dict[str, dict[str, str]]:
        """The DuckDB type of every column of the result tables: table -> column -> type."""
        with self.connect(read_only=True) as con:
            return column_types(con)

    def run_lock(self, *, wait_s: float = 0.0, run_id: str = "") -> RunLock:
        return RunLock(self.path.with_name(self.path.name + ".lock"), wait_s, run_id)

    def writer_alive(self) -> bool:
        """Whether an evalgate process holds the run lock now: a run stored as ``running`` without one has died."""
        path = self.path.with_name(self.path.name + ".lock")
        if not path.exists():
            return False
        with open(path, "a+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(fh, fcntl.LOCK_UN)
        return False

    # --- reading ----------------------------------------------------------

    def query(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        with self.connect(read_only=True) as con:
            rows: list[tuple[Any, ...]] = con.execute(sql, params or []).fetchall()
            return rows

    def query_dicts(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        with self.connect(read_only=True) as con:
            cur = con.execute(sql, params or [])
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, row)) for row in cur.fetchall()]

    def resolve_run(self, ref: str | None, suite: str | None = None) -> str:
        """A run id from an id, a unique prefix, 'latest' or None (latest)."""
        if ref in (None, "latest", "last"):
            where, params = ("AND suite = ?", [suite]) if suite else ("", [])
            rows = self.query(f"SELECT run_id FROM runs WHERE parent_run IS NULL {where} ORDER BY started_at DESC LIMIT 1",
                              params)
            if not rows:
                from ..errors import UsageError

                raise UsageError("the store has no runs yet", hint="run 'evalgate run' first")
            return str(rows[0][0])
        rows = self.query("SELECT run_id FROM runs WHERE run_id LIKE ? || '%' ORDER BY started_at DESC", [ref])
        if not rows:
            from ..errors import UsageError

            raise UsageError(f"no run '{ref}' in {self.path}", hint="'evalgate history' lists runs")
        if len(rows) > 1 and rows[0][0] != ref:
            from ..errors import UsageError

            raise UsageError(f"run prefix '{ref}' matches {len(rows)} runs", hint="give more characters of the id")
        return str(rows[0][0])


@dataclass
class RunLock:
    """An exclusive lock file held while a run writes to the store."""

    path: Path
    wait_s: float
    run_id: str
    _fh: Any = None

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a+")
        deadline = time.monotonic() + self.wait_s
        while True:
            try:
                fcntl.flock(self._fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    self._fh.seek(0)
                    holder = self._fh.read().strip()
                    self._fh.close()
                    who = ""
                    with contextlib.suppress(ValueError):
                        info = json.loads(holder)
                        who = f" (run {info.get('run_id')}, pid {info.get('pid')})"
                    raise StoreBusyError(f"another evalgate run is writing to {self.path.with_suffix('')}{who}",
                                         hint="wait for it to finish (--wait SECONDS), or use another store with --db")
                time.sleep(0.2)
        self._fh.seek(0)
        self._fh.truncate()
        self._fh.write(json.dumps({"pid": os.getpid(), "run_id": self.run_id}))
        self._fh.flush()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fh is not None:
            with contextlib.suppress(OSError):
                self._fh.truncate(0)
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
