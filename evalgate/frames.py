"""Stored runs for analysis in pandas: every table of a run as a DataFrame.

    import evalgate
    r = evalgate.tables("latest")
    r.cases.pivot_table(index="tags", values="passed")

JSON columns (``state``, ``trace``, ``metrics``, ``detail``, ``meta``, ``summary``) stay JSON text: parse the ones you
need with ``json.loads``.

pandas is the optional extra ``evalgate-release[pandas]``, imported only by :func:`tables`; without it
:func:`tables` is a :class:`~evalgate.errors.UsageError` naming the extra. :func:`export` needs no pandas: DuckDB
writes the files itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UsageError
from .store import Store
from .store.tables import FORMATS, TABLES, frame
from .store.tables import export as export_tables

HINT = "pip install -e '.[pandas]' in a clone (or pip install 'evalgate-release[pandas]')"


@dataclass(frozen=True)
class Results:
    """One stored run as DataFrames: the run row (and its confirmation runs), its case runs, turns and scores."""

    run_id: str
    runs: Any
    cases: Any
    turns: Any
    scores: Any


def _store(store: Store | str | Path | None) -> Store:
    if isinstance(store, Store):
        return store
    if store is None:
        from .config import find_config

        return Store(find_config().store)
    return Store(store)


def _need_pandas() -> None:
    """pandas, imported here and only here (DuckDB's ``.df()`` builds the DataFrames with it), or a UsageError."""
    try:
        import pandas  # noqa: F401
    except ImportError as exc:
        raise UsageError(f"evalgate.tables() gives pandas DataFrames, and pandas cannot be imported ({exc})",
                         hint=f"{HINT}; 'evalgate export' writes the same tables as CSV, Parquet or JSON lines "
                              "without it") from None


def tables(run: str = "latest", *, store: Store | str | Path | None = None) -> Results:
    """The run's tables as pandas DataFrames (``run``: an id, a unique prefix, or 'latest'); needs the pandas extra."""
    _need_pandas()
    db = _store(store)
    run_id = db.resolve_run(run)
    with db.connect(read_only=True) as con:
        return Results(run_id, *(frame(con, t, run_id) for t in TABLES))


def export(run: str, folder: str | Path, *, fmt: str = "parquet", store: Store | str | Path | None = None) -> dict[str, Any]:
    """Write the run's tables to ``folder`` as ``<table>.csv|parquet|jsonl``; returns the files and their rows."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown export format '{fmt}'", hint=f"use one of {', '.join(FORMATS)}")
    db = _store(store)
    run_id = db.resolve_run(run)
    with db.connect(read_only=True) as con:
        rows = export_tables(con, run_id, Path(folder), fmt)
    return {"run_id": run_id, "format": fmt, "files": {t: str(Path(folder) / f"{t}.{fmt}") for t in TABLES}, "rows": rows}
