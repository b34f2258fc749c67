"""The project's workflows and the composite action pass actionlint."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from conftest import REPO


def _actionlint() -> str:
    found = shutil.which("actionlint", path=str(Path(sys.executable).parent)) or shutil.which("actionlint")
    assert found, "actionlint is installed with the test extras (pip install -e '.[test]')"
    return found


def test_workflows_pass_actionlint() -> None:
    proc = subprocess.run([_actionlint()], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_actionlint_checks_the_action_inputs(tmp_path: Path) -> None:
    # a copy with a misspelt input must be caught: the check above is real
    shutil.copy(REPO / "action.yml", tmp_path / "action.yml")
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    text = (REPO / ".github" / "workflows" / "evalgate-example.yml").read_text().replace("args:", "argz:")
    (tmp_path / ".github" / "workflows" / "example.yml").write_text(text)
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    proc = subprocess.run([_actionlint()], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode != 0 and "argz" in proc.stdout


def test_the_workflow_init_writes_passes_actionlint_against_the_action(tmp_path: Path) -> None:
    from conftest import run_cli_in_process

    assert run_cli_in_process("init", "--http", "http://127.0.0.1:8000/chat", cwd=tmp_path).code == 0
    workflow = tmp_path / ".github" / "workflows" / "evalgate.yml"
    workflow.write_text(workflow.read_text().replace("your-org/evalgate@main", "./"))  # the action's inputs, checked
    shutil.copy(REPO / "action.yml", tmp_path / "action.yml")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    proc = subprocess.run([_actionlint()], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_action_installs_from_its_own_checkout_never_by_name() -> None:
    action = yaml.safe_load((REPO / "action.yml").read_text())
    scripts = "\n".join(step.get("run", "") for step in action["runs"]["steps"])
    assert 'install -q "$ACTION_PATH"' in scripts
    assert "pip install evalgate" not in scripts


def test_action_step_runs_the_gate_and_writes_every_report(tmp_path: Path) -> None:
    """The action's own shell step, run by bash on the bundled example, as a runner would."""
    action = yaml.safe_load((REPO / "action.yml").read_text())
    step = next(s for s in action["runs"]["steps"] if s.get("id") == "run")
    work = tmp_path / "repo"
    work.mkdir()
    for name in ("pyproject.toml", "suites", "datasets", "assistant", "pipelines"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, work / name)
    venv_bin = tmp_path / "runner" / "evalgate-venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "evalgate").symlink_to(Path(sys.executable).with_name("evalgate"))
    output = tmp_path / "github_output"
    env = {"PATH": "/usr/bin:/bin", "RUNNER_TEMP": str(tmp_path / "runner"), "GITHUB_OUTPUT": str(output),
           "SUITES": "", "BASELINE_FILE": "", "REQUIRE_BASELINE": "false", "EXTRA_ARGS": "-j 4",
           "NO_COLOR": "1", "HOME": str(tmp_path)}
    proc = subprocess.run(["bash", "-e", "-c", step["run"]], cwd=work, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert output.read_text().strip() == "exit-code=0"
    reports = sorted(p.name for p in work.glob("evalgate-report*.html"))
    assert reports == ["evalgate-report-support-pipeline.html", "evalgate-report-support-replay.html",
                       "evalgate-report-support-sampled.html", "evalgate-report-support.html"]
    assert "✓ PASS" in (work / "evalgate-report-support.html").read_text()
    assert (work / "evalgate-junit.xml").is_file() and (work / "evalgate-summary.md").is_file()


def test_action_runs_as_a_matrix_of_shards_and_merges(tmp_path: Path) -> None:
    """The action's step with shard: 1/2 and 2/2 in two checkouts, then merge-stores in a third: one verdict."""
    action = yaml.safe_load((REPO / "action.yml").read_text())
    step = next(s for s in action["runs"]["steps"] if s.get("id") == "run")
    venv_bin = tmp_path / "runner" / "evalgate-venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "evalgate").symlink_to(Path(sys.executable).with_name("evalgate"))

    def job(name: str, **inputs: str) -> tuple[subprocess.CompletedProcess[str], Path]:
        work = tmp_path / name
        work.mkdir()
        for item in ("pyproject.toml", "suites", "datasets", "assistant", "pipelines"):
            src = REPO / item
            (shutil.copytree if src.is_dir() else shutil.copy)(src, work / item)
        env = {"PATH": "/usr/bin:/bin", "RUNNER_TEMP": str(tmp_path / "runner"), "GITHUB_OUTPUT": str(work / "out"),
               "SUITES": "suites/support-regressed.yaml", "BASELINE_FILE": "", "REQUIRE_BASELINE": "false",
               "EXTRA_ARGS": "", "NO_COLOR": "1", "HOME": str(tmp_path), **inputs}
        return subprocess.run(["bash", "-e", "-c", step["run"]], cwd=work, env=env, capture_output=True, text=True), work

    shards = []
    for i in (1, 2):
        proc, work = job(f"shard{i}", SHARD=f"{i}/2")
        assert proc.returncode == 0, proc.stdout + proc.stderr  # a shard's failed gate is partial: the job goes on
        assert (work / "out").read_text().strip() == "exit-code=1"
        shards.append(str(work / ".evalgate" / "evalgate.duckdb"))
    proc, work = job("merge", MERGE_STORES=" ".join(shards))
    assert proc.returncode == 1, proc.stdout + proc.stderr  # the merged run's verdict fails the job
    assert "FAIL support-regressed" in proc.stdout and "169 case run(s)" in proc.stdout
    assert (work / "evalgate-summary.md").read_text().startswith("### ❌ support-regressed: FAIL")
