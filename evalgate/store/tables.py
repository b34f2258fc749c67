"""A stored run's tables whole: as pandas DataFrames, or written out as CSV, Parquet or JSON lines.

The files are DuckDB's own ``COPY``, so exporting needs no pandas; only :func:`frame` does (the ``pandas`` extra).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

TABLES = ("runs", "cases", "turns", "scores")
FORMATS = {"csv": "(FORMAT csv, HEADER)", "parquet": "(FORMAT parquet)", "jsonl": "(FORMAT json)"}


def _select(table: str) -> str:
    return f"SELECT * FROM {table} WHERE run_id = ? ORDER BY ALL" if table != "runs" else \
        "SELECT * FROM runs WHERE run_id = ? OR parent_run = ? ORDER BY started_at"


def frame(con: Any, table: str, run_id: str) -> Any:
    """One table's rows of the run (and, for ``runs``, its confirmation runs) as a DataFrame."""
    params = [run_id, run_id] if table == "runs" else [run_id]
    return con.execute(_select(table), params).df()


def export(con: Any, run_id: str, folder: Path, fmt: str) -> dict[str, int]:
    """Write every table of the run to ``folder/<table>.<fmt>``; returns the rows written per table."""
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for table in TABLES:
        path = folder / f"{table}.{fmt}"
        params = [run_id, run_id] if table == "runs" else [run_id]
        quoted = str(path).replace("'", "''")
        con.execute(f"COPY ({_select(table)}) TO '{quoted}' {FORMATS[fmt]}", params)
        written[table] = int(con.execute(f"SELECT count(*) FROM ({_select(table)})", params).fetchone()[0])
    return written
