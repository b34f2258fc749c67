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


def test_action_installs_from_its_own_checkout_never_by_name() -> None:
    action = yaml.safe_load((REPO / "action.yml").read_text())
    scripts = "\n".join(step.get("run", "") for step in action["runs"]["steps"])
    assert 'install -q "$ACTION_PATH"' in scripts
    assert "pip install evalgate" not in scripts
