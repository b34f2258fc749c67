"""pandas is the optional `pandas` extra: a run and an export work without it, evalgate.tables() names the extra.

Each check runs in its own interpreter where `import pandas` fails as it does where pandas is not installed
(``sys.modules["pandas"] = None``): pyarrow, which imports pandas on a run's first Arrow batch whenever it can,
then goes on without it, exactly as in a plain ``pip install``.
"""

from __future__ import annotations

import ast
import csv
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pyarrow.parquet as pq
from conftest import REPO, query

NO_PANDAS = 'import sys\nsys.modules["pandas"] = None  # import pandas: ImportError, as when it is not installed\n'
CLI = NO_PANDAS + """
from evalgate.cli import main
try:
    main(sys.argv[1:])
    code = 0
except SystemExit as exc:
    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
print("loaded: " + ",".join(sorted(m for m, mod in sys.modules.items() if mod is not None)), file=sys.stderr)
sys.exit(code)
"""


def _python(code: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "EVALGATE_DB"} | {"NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def _loaded(proc: subprocess.CompletedProcess[str]) -> set[str]:
    line = [ln for ln in proc.stderr.splitlines() if ln.startswith("loaded: ")][-1]
    return set(line.removeprefix("loaded: ").split(","))


def test_run_and_export_without_pandas_and_tables_names_the_extra(project: Path) -> None:
    db = project / ".evalgate" / "evalgate.duckdb"
    run = _python(CLI, "run", cwd=project)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "PASS demo" in run.stdout and "Traceback" not in run.stderr
    loaded = _loaded(run)
    assert {"pyarrow", "duckdb"} <= loaded  # the store's Arrow batches were written: the path that would import pandas
    assert not [m for m in loaded if m == "pandas" or m.startswith("pandas.")], "a run imported pandas"
    run_id = query(db, "SELECT run_id FROM runs")[0][0]
    stored = query(db, "SELECT case_id, passed FROM cases ORDER BY case_id")
    assert stored == [("hello", True), ("refund-change", True)]
    turns = query(db, "SELECT count(*) FROM turns")[0][0]
    assert turns == 3
    columns = {t: [r[0] for r in query(db, f"DESCRIBE {t}")] for t in ("runs", "cases", "turns", "scores")}
    n_scores = query(db, "SELECT count(*) FROM scores")[0][0]
    assert n_scores > 0

    for fmt in ("csv", "parquet", "jsonl"):
        out = project / "out" / fmt
        done = _python(CLI, "export", "latest", "--format", fmt, "--out", str(out), "--json", cwd=project)
        assert done.returncode == 0, done.stdout + done.stderr
        assert not [m for m in _loaded(done) if m == "pandas" or m.startswith("pandas.")]
        report = json.loads(done.stdout)
        assert report["run_id"] == run_id and report["format"] == fmt
        assert report["rows"] == {"runs": 1, "cases": 2, "turns": 3, "scores": n_scores}
        assert report["files"] == {t: str(out / f"{t}.{fmt}") for t in ("runs", "cases", "turns", "scores")}

    with open(project / "out" / "csv" / "cases.csv", newline="", encoding="utf-8") as f:
        cases = list(csv.DictReader(f))
    assert list(cases[0]) == columns["cases"]
    assert sorted((c["case_id"], c["passed"]) for c in cases) == [("hello", "true"), ("refund-change", "true")]
    with open(project / "out" / "csv" / "scores.csv", newline="", encoding="utf-8") as f:
        scores = list(csv.DictReader(f))
    assert len(scores) == n_scores and list(scores[0]) == columns["scores"]
    route = next(s for s in scores if s["scorer"] == "route" and s["case_id"] == "hello")
    assert json.loads(route["detail"]) == {"expected": ["smalltalk"], "got": "smalltalk"}  # JSON columns as JSON text

    parquet = {t: pq.read_table(project / "out" / "parquet" / f"{t}.parquet") for t in columns}
    assert {t: table.column_names for t, table in parquet.items()} == columns
    assert sorted(parquet["cases"].column("case_id").to_pylist()) == ["hello", "refund-change"]
    assert parquet["runs"].column("run_id").to_pylist() == [run_id]
    assert parquet["turns"].num_rows == 3 and parquet["scores"].num_rows == n_scores

    lines = {t: [json.loads(ln) for ln in (project / "out" / "jsonl" / f"{t}.jsonl").read_text().splitlines()]
             for t in columns}
    assert {t: list(rows[0]) for t, rows in lines.items()} == columns
    refund = next(c for c in lines["cases"] if c["case_id"] == "refund-change")
    assert refund["tags"] == ["refunds", "critical"] and refund["n_turns"] == 2 and refund["passed"] is True
    second = next(t for t in lines["turns"] if t["case_id"] == "refund-change" and t["turn"] == 2)
    assert second["state"]["order_id"] == "5521"  # JSON columns as JSON values, as DuckDB writes them

    frames = _python(NO_PANDAS + """
import json, evalgate
try:
    evalgate.tables("latest", store=sys.argv[1])
except evalgate.UsageError as exc:
    print(json.dumps(exc.to_dict()))
""", str(db), cwd=project)
    assert frames.returncode == 0 and "Traceback" not in frames.stderr, frames.stderr
    error = json.loads(frames.stdout)
    assert error["error"] == "UsageError" and error["exit_code"] == 2 and "pandas" in error["message"]
    assert "pip install 'evalgate-release[pandas]'" in error["hint"] and "pip install -e '.[pandas]'" in error["hint"]


def test_pandas_is_imported_only_where_dataframes_are_built() -> None:
    """No evalgate module imports pandas at import time, and only evalgate.tables() asks for it."""
    package = REPO / "evalgate"
    found = []

    def visit(node: ast.AST, path: Path, where: list[str]) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(child, path, [*where, child.name])
                continue
            names = ([a.name for a in child.names] if isinstance(child, ast.Import) else
                     [child.module or ""] if isinstance(child, ast.ImportFrom) and not child.level else [])
            if any(n == "pandas" or n.startswith("pandas.") for n in names):
                found.append((path.relative_to(package).as_posix(), ".".join(where) or "<module>"))
            visit(child, path, where)

    for path in sorted(package.rglob("*.py")):
        visit(ast.parse(path.read_text(encoding="utf-8")), path, [])
    assert found == [("frames.py", "_need_pandas")]
    declared = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert not [r for r in declared["dependencies"] if r.startswith("pandas")]
    assert declared["optional-dependencies"]["pandas"] == ["pandas>=2.2.2"]
    assert "pandas>=2.2.2" in declared["optional-dependencies"]["test"]
