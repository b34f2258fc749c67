"""evalgate init: a starter project that runs offline on the first try, and never clobbers files."""

from __future__ import annotations

from pathlib import Path

from conftest import run_cli_in_process


def test_init_makes_a_project_that_passes_offline(tmp_path: Path) -> None:
    r = run_cli_in_process("init", "proj", "--json", cwd=tmp_path)
    assert r.code == 0, r
    info = r.json()
    assert sorted(info["created"]) == ["datasets/cases.yaml", "datasets/docs.jsonl", "evalgate.toml", "my_target.py",
                                       "pipelines/starter.yaml", "suites/starter.yaml"]
    proj = tmp_path / "proj"
    assert run_cli_in_process("validate", cwd=proj).code == 0
    r = run_cli_in_process("run", "--json", cwd=proj)
    assert r.code == 0, r
    suite = r.json()["suites"][0]
    assert suite["suite"] == "starter" and suite["cases"] == 5 and suite["metrics"]["pass_rate"] == 1.0
    # the adapter template is a valid target: it runs without errors, and the gate says what it gets wrong
    r = run_cli_in_process("run", "--target", "python:my_target:respond", "--json", cwd=proj)
    assert r.code == 1, r
    suite = r.json()["suites"][0]
    assert suite["metrics"]["errors"] == 0 and suite["metrics"]["route.pass_rate"] < 1


def test_init_keeps_existing_files(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.evalgate]\nsuites = "evals"\n')
    (tmp_path / "my_target.py").write_text("# mine\n")
    r = run_cli_in_process("init", "--json", cwd=tmp_path)
    assert r.code == 0, r
    assert set(r.json()["skipped"]) == {"evalgate.toml", "my_target.py"}
    assert not (tmp_path / "evalgate.toml").exists() and (tmp_path / "my_target.py").read_text() == "# mine\n"
    r = run_cli_in_process("init", cwd=tmp_path)
    assert r.code == 0 and "kept     suites/starter.yaml" in r.out, r
    r = run_cli_in_process("init", "--force", "--json", cwd=tmp_path)
    assert "my_target.py" in r.json()["created"]
