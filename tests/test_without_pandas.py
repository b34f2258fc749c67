"""pandas is the optional `pandas` extra and pyarrow no dependency: a run, a long replay on worker processes and
an export work without either, and evalgate.tables() names the extra.

Each check runs in its own interpreter where `import pandas` and `import pyarrow` fail as they do where neither is
installed (``sys.modules[name] = None``), exactly as in a plain ``pip install``: the store's batches are NumPy
columns DuckDB scans itself, and a replay worker's parts are DuckDB's own Parquet files.
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

from conftest import REPO, query

NO_PANDAS = ('import sys\nsys.modules["pandas"] = None  # import pandas: ImportError, as when it is not installed\n'
             'sys.modules["pyarrow"] = None\n')
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
    assert {"numpy", "duckdb"} <= loaded  # the store's batches were written
    assert not [m for m in loaded if m.split(".")[0] in ("pandas", "pyarrow")], "a run imported pandas or pyarrow"
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
        assert not [m for m in _loaded(done) if m.split(".")[0] in ("pandas", "pyarrow")]
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

    import duckdb

    with duckdb.connect() as con:
        files = {t: str(project / "out" / "parquet" / f"{t}.parquet").replace("'", "''") for t in columns}
        assert {t: [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM '{f}'").fetchall()]
                for t, f in files.items()} == columns
        assert con.execute(f"SELECT case_id FROM '{files['cases']}' ORDER BY 1").fetchall() == [("hello",),
                                                                                             ("refund-change",)]
        assert con.execute(f"SELECT run_id FROM '{files['runs']}'").fetchall() == [(run_id,)]
        assert con.execute(f"SELECT count(*) FROM '{files['turns']}'").fetchall() == [(3,)]
        assert con.execute(f"SELECT count(*) FROM '{files['scores']}'").fetchall() == [(n_scores,)]

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


def test_a_replay_on_worker_processes_without_pandas_or_pyarrow(tmp_path: Path) -> None:
    """The workers' parts (Parquet files DuckDB writes and reads) need neither."""
    (tmp_path / "suites").mkdir()
    with (tmp_path / "traces.jsonl").open("w", encoding="utf-8") as fh:
        for i in range(9_000):
            fh.write(json.dumps({"v": 1, "session_id": f"s{i // 3}", "turn": i % 3 + 1, "input": f"order {i}",
                                 "route": {"name": "refunds" if i % 7 else "billing"}, "output": "done"}) + "\n")
    (tmp_path / "suites" / "replay.yaml").write_text(
        "name: replay\ntarget: replay\ntraces: [../traces.jsonl]\nexpect: {route: [refunds]}\n"
        "gate: {rules: [{metric: pass_rate, min: 0.1}]}\n", encoding="utf-8")
    (tmp_path / "pyproject.toml").write_text('[tool.evalgate]\nsuites = "suites"\n', encoding="utf-8")
    run = _python(CLI, "run", "--executor", "processes:2", "--db", "s.duckdb", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert not [m for m in _loaded(run) if m.split(".")[0] in ("pandas", "pyarrow")]
    assert query(tmp_path / "s.duckdb", "SELECT count(*), max(seq), count(*) FILTER (passed) FROM cases") \
        == [(3_000, 2_999, 3_000 - len({i // 3 for i in range(9_000) if i % 7 == 0}))]
    assert query(tmp_path / "s.duckdb", "SELECT count(*) FROM turns") == [(9_000,)]
    assert not list(tmp_path.glob(".s.duckdb.parts-*")), "the workers' files were left behind"


def test_pandas_is_imported_only_where_dataframes_are_built() -> None:
    """No evalgate module imports pandas at import time, only evalgate.tables() asks for it, and none imports
    pyarrow."""
    package = REPO / "evalgate"
    found = []

    def visit(node: ast.AST, path: Path, where: list[str]) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(child, path, [*where, child.name])
                continue
            names = ([a.name for a in child.names] if isinstance(child, ast.Import) else
                     [child.module or ""] if isinstance(child, ast.ImportFrom) and not child.level else [])
            if any(n.split(".")[0] in ("pandas", "pyarrow") for n in names):
                found.append((path.relative_to(package).as_posix(), ".".join(where) or "<module>"))
            visit(child, path, where)

    for path in sorted(package.rglob("*.py")):
        visit(ast.parse(path.read_text(encoding="utf-8")), path, [])
    assert found == [("frames.py", "_need_pandas")]
    declared = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert not [r for r in declared["dependencies"] if r.startswith(("pandas", "pyarrow"))]
    assert declared["optional-dependencies"]["pandas"] == ["pandas>=2.2.2"]
    assert "pandas>=2.2.2" in declared["optional-dependencies"]["test"]
