"""The pytest plugin, run as a user runs it: ``pytest --evalgate SUITES`` in a subprocess, on the bundled example."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO, query, write


def _example(tmp_path: Path) -> Path:
    for name in ("pyproject.toml", "suites", "datasets", "assistant", "pipelines"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    return tmp_path


def _pytest(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:xdist", "-p", "no:cacheprovider", "-o", "addopts=",
                           "-q", "--evalgate", "--evalgate-db", str(cwd / "s.duckdb"), *args],
                          cwd=cwd, capture_output=True, text=True, timeout=600)


def test_cases_are_items_failures_show_the_story_and_the_gate_decides(tmp_path: Path) -> None:
    work = _example(tmp_path)
    ok = _pytest(work, "suites/support.yaml")
    assert ok.returncode == 0, ok.stdout[-2000:]
    assert "170 passed" in ok.stdout  # 169 case runs and the gate
    bad = _pytest(work, "suites/support-regressed.yaml", "-m", "critical", "-rN")
    assert bad.returncode == 1, bad.stdout[-2000:]
    assert "6 failed, 3 passed, 161 deselected" in bad.stdout  # the tags are markers: the 9 critical cases
    assert "evalgate case refund-changes-order-number" in bad.stdout
    assert "✗ tool_calls: issue_refund called but must not be" in bad.stdout  # the story, as show prints it
    # the results are stored like any run's
    suites = [s for (s,) in query(work / "s.duckdb", "SELECT suite FROM runs ORDER BY started_at")]
    assert suites == ["support", "support-regressed"]


def test_a_failure_within_a_passing_gate_is_an_expected_failure(tmp_path: Path) -> None:
    write(tmp_path / "bot.py", "def respond(req):\n    return {'output': 'hi', 'route': {'name': 'smalltalk'}}\n")
    write(tmp_path / "suites" / "lenient.yaml", """
        name: lenient
        target: {python: bot:respond}
        cases:
          - {id: fine, input: hello, expect: {route: smalltalk}}
          - {id: misrouted, input: refund please, expect: {route: refunds}}
        gate: {rules: [{metric: pass_rate, min: 0.4}], inconclusive: pass}
    """)
    write(tmp_path / "pyproject.toml", "[tool.evalgate]\nsuites = 'suites'\n")
    r = _pytest(tmp_path, "suites/")
    assert r.returncode == 0, r.stdout[-2000:]
    assert "2 passed, 1 xfailed" in r.stdout, r.stdout[-1000:]
    strict = tmp_path / "suites" / "lenient.yaml"
    strict.write_text(strict.read_text().replace("min: 0.4}], inconclusive: pass", "min: 0.9}], inconclusive: fail"))
    r = _pytest(tmp_path, "suites/")
    assert r.returncode == 1 and "2 failed, 1 passed" in r.stdout and "lenient: FAIL" in r.stdout, r.stdout[-2000:]

    broken = tmp_path / "suites" / "broken.yaml"
    broken.write_text("name: broken\ntarget: {python: bot:respond}\ncases: [{id: a, input: hi, expect: {rout: x}}]\n")
    r = _pytest(tmp_path, "suites/broken.yaml")
    assert r.returncode != 0 and "evalgate: " in r.stdout + r.stderr and "did you mean 'route'" in r.stdout + r.stderr, r


def test_cases_written_in_python_run_through_evalgate() -> None:
    import os

    from evalgate.testing import case, check

    cwd = os.getcwd()
    os.chdir(REPO)  # the assistant imports from the project root, as in a team's own tests
    try:
        good = check("python:assistant.bot:respond", [
            case("refund-corrected", [("I want a refund for order 5512", {"route": "refunds"}),
                                      ("sorry, it's 5521 not 5512", {"state": {"order_id": "5521"}})],
                 user={"id": "u-1", "groups": ["customer"]}),
        ], documents="datasets/docs.jsonl")
        assert good.passed, good.explain()
        bad = check("python:assistant.bot_regressed:respond", [
            case("refund-corrected", [("I want a refund for order 5512", {"tool_calls": {"must_exclude": "issue_refund"}})],
                 user={"id": "u-1", "groups": ["customer"]}),
        ], documents="datasets/docs.jsonl")
    finally:
        os.chdir(cwd)
    assert not bad.passed
    assert "refund-corrected: turn 1 " in bad.explain() and "issue_refund called but must not be" in bad.explain()
