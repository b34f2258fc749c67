"""The README is tested: its two set-up commands, its CI twin, its Python example."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from conftest import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")
DOCS = "\n".join(p.read_text(encoding="utf-8") for p in sorted((REPO / "docs").glob("*.md")))


def _first_screen_commands() -> list[str]:
    first_screen = README.split("## ", 1)[0]
    return re.findall(r"```sh\n(.*?)\n```", first_screen, re.S)


def test_first_screen_has_exactly_two_commands() -> None:
    commands = _first_screen_commands()
    assert len(commands) == 2, commands
    assert commands[0].endswith("evalgate run")
    assert commands[1].endswith("pytest")


def test_ci_runs_the_readme_test_command() -> None:
    ci = (REPO / ".ci" / "run").read_text()
    assert _first_screen_commands()[1] in ci


def test_readme_main_command_runs_the_bundled_example_on_a_fresh_copy(tmp_path: Path) -> None:
    """The first command, exactly as written, in a fresh copy of the repository (its own new venv)."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout.split()
    copy = tmp_path / "evalgate"
    for name in files:
        src = REPO / name
        if src.is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, copy / name)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "EVALGATE_DB")}
    proc = subprocess.run(["bash", "-c", _first_screen_commands()[0]], cwd=copy, env=env, capture_output=True, text=True,
                          timeout=1200)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PASS support" in proc.stdout
    assert (copy / ".evalgate" / "evalgate.duckdb").exists()


def test_readme_python_api_example(tmp_path: Path) -> None:
    block = re.search(r"```python\nimport evalgate\n(.*?)```", DOCS, re.S)
    assert block is not None
    env = {**os.environ, "EVALGATE_DB": str(tmp_path / "api.duckdb")}
    proc = subprocess.run([os.sys.executable, "-c", "import evalgate\n" + block.group(1)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("0 ")


def test_readme_dataframe_example_and_export(tmp_path: Path) -> None:
    """The README's pandas pivot runs on a real stored run; export writes every table in each format."""
    import pandas as pd

    from conftest import run_cli_in_process

    db = tmp_path / "s.duckdb"
    assert run_cli_in_process("run", "suites/support.yaml", "--db", str(db), cwd=REPO).code == 0
    block = re.search(r'```python\nimport evalgate\n\nr = evalgate.tables\("latest"\)\n(.*?)```', DOCS, re.S)
    assert block is not None
    code = 'import evalgate\n\nr = evalgate.tables("latest")\n' + block.group(1)
    proc = subprocess.run([os.sys.executable, "-c", code], cwd=REPO, env={**os.environ, "EVALGATE_DB": str(db)},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "refunds" in proc.stdout and "critical" in proc.stdout  # routes down, tags across
    import duckdb

    import evalgate

    r = evalgate.tables("latest", store=db)
    assert len(r.cases) == 169 and set(r.turns["case_id"]) == set(r.cases["case_id"]) and r.runs["run_id"][0] == r.run_id
    for fmt in ("csv", "parquet", "jsonl"):
        out = tmp_path / fmt
        result = run_cli_in_process("export", "latest", "--format", fmt, "--out", str(out), "--json", "--db", str(db),
                                    cwd=REPO)
        assert result.code == 0, result
        assert result.json()["rows"]["scores"] == len(r.scores)
        read = {"csv": pd.read_csv, "jsonl": lambda p: pd.read_json(p, lines=True),  # Parquet: pandas would need
                "parquet": lambda p: duckdb.sql(f"SELECT * FROM '{p}'").df()}[fmt]    # pyarrow, no dependency
        assert len(read(out / f"cases.{fmt}")) == 169
    bad = run_cli_in_process("export", "latest", "--format", "xlsx", "--db", str(db), cwd=REPO)
    assert bad.code == 2 and "csv, parquet, jsonl" in bad.err


def test_the_documentation_site_builds_strictly(tmp_path: Path) -> None:
    """docs/ is a MkDocs site: every page in the nav, every link and anchor resolving (warnings fail the build)."""
    proc = subprocess.run([os.sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    pages = {p.parent.name for p in (tmp_path / "site").glob("*/index.html")}
    assert {"suites", "targets", "traces", "scorers", "gate", "store", "ci", "commands"} <= pages
    for link in re.findall(r"\]\((docs/[^)#]+)", README):  # the README's links into the documentation
        assert (REPO / link).is_file(), link
