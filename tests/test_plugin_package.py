"""A scorer plugin installed as a real package (its own pyproject), found through the evalgate.scorers entry points."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, query, write

PLUGIN = REPO / "tests" / "plugins" / "evalgate_demo_plugin"


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pip installs the plugin (offline, no build isolation) into a folder that goes on PYTHONPATH."""
    work = tmp_path_factory.mktemp("plugin")
    source = work / "src"
    shutil.copytree(PLUGIN, source)  # the build writes next to the sources: keep the repository clean
    site = work / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                           "--no-build-isolation", "--target", str(site), str(source)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (site / "evalgate_demo_plugin-1.0.0.dist-info" / "entry_points.txt").is_file()
    return site


def test_installed_plugin_is_listed_runs_and_its_arguments_are_checked(cli, project: Path, plugin_site: Path) -> None:
    env = {"PYTHONPATH": str(plugin_site)}
    rows = {r["name"]: r for r in cli("scorers", "--json", env=env).json()}
    assert rows["courtesy"]["source"] == "evalgate_demo_plugin"
    assert rows["courtesy"]["help"] == "the answer says please or thanks the user"
    assert rows["courtesy"]["arguments"] == ["min_words=1"] and rows["courtesy"]["stats"] == ["words"]
    assert "courtesy" not in {r["name"] for r in cli("scorers", "--json").json()}  # not installed: not there
    write(project / "suites" / "demo.yaml", """
        name: plugin
        target: {python: bot:respond}
        cases:
          - {id: a, input: hello, expect: {courtesy: {min_words: 0}}}
          - {id: b, input: hello, expect: {courtesy: {min_words: 1}}}
        gate:
          rules: [{metric: courtesy.words, max: 0}, {metric: courtesy.pass_rate, min: 1}]
    """)
    r = cli("run", "--json", env=env)
    assert r.code == 1, r  # b fails: the demo bot never says please
    assert query(project / ".evalgate" / "evalgate.duckdb",
                 "SELECT case_id, passed, explanation FROM scores WHERE scorer = 'courtesy' ORDER BY case_id") == [
        ("a", True, "0 courtesy word(s)"), ("b", False, "0 courtesy word(s)")]
    rules = {x["rule"]: x["status"] for x in r.json()["suites"][0]["verdict"]["rules"]}
    assert rules == {"courtesy.words ≤ 0": "pass", "courtesy.pass_rate ≥ 1": "fail"}
    write(project / "suites" / "demo.yaml", "name: p\ntarget: {python: bot:respond}\n"
                                            "cases: [{id: a, input: hi, expect: {courtesy: {min_wrds: 1}}}]\n")
    r = cli("validate", env=env)
    assert r.code == 2 and "suites/demo.yaml:3" in r.err and "did you mean 'min_words'?" in r.err, r


def test_an_installed_target_kind_runs_and_its_yaml_is_checked(cli, project: Path, plugin_site: Path) -> None:
    env = {"PYTHONPATH": str(plugin_site)}
    write(project / "suites" / "demo.yaml", """
        name: echo
        target: {echo: "you said: ", upper: true}
        cases:
          - {id: a, input: hello, expect: {output: {contains: ["YOU SAID: HELLO"]}, route: echo}}
    """)
    r = cli("run", "--json", env=env)
    assert r.code == 0, r
    assert r.json()["suites"][0]["target"] == "echo: you said: "
    write(project / "suites" / "demo.yaml", "name: e\ntarget: {echo: hi, uper: true}\ncases: [{id: a, input: hi}]\n")
    r = cli("validate", env=env)
    assert r.code == 2 and "suites/demo.yaml:2" in r.err and "did you mean 'upper'?" in r.err, r
    r = cli("validate")  # not installed: an unknown kind, at its line
    assert r.code == 2 and "target needs exactly one of" in r.err, r



def test_a_sync_plugin_or_project_scorer_that_hangs_is_an_error_after_the_timeout(project: Path, plugin_site: Path) -> None:
    """A plugin's sync check sleeping 30 s and the project's own check that never returns, under --timeout 1: each is
    that turn's error score, the other cases are scored (a call of the same scorer waiting behind the hung one gets
    its own deadline), and the process exits with the verdict's code."""
    from conftest import run_cli

    write(project / "stuck.py", '''
        import threading
        from evalgate import Score

        def forever():
            def check(ctx):
                threading.Event().wait()  # never set
                return Score(True, 1.0, "never")
            return check
    ''')
    write(project / "suites" / "demo.yaml", """
        name: hung-scorers
        target: {python: bot:respond}
        cases:
          - {id: plugin-hangs, input: hello, expect: {dwell: {seconds: 30}}}
          - {id: project-hangs, input: hello, expect: {"stuck:forever": {}}}
          - {id: quick, input: slow 0.5, expect: {dwell: {seconds: 0}, route: smalltalk}}  # its dwell waits its turn
    """)
    r = run_cli("run", "--timeout", "1", "--json", cwd=project, env={"PYTHONPATH": str(plugin_site)}, timeout=25)
    assert r.code == 3, r  # two of three case runs errored: over the default max_error_rate
    db = project / ".evalgate" / "evalgate.duckdb"
    assert query(db, "SELECT case_id, scorer, passed, error FROM scores WHERE scorer <> 'route' ORDER BY case_id") == [
        ("plugin-hangs", "dwell", False, "timed out after 1s (--timeout bounds each scorer too)"),
        ("project-hangs", "stuck:forever", False, "timed out after 1s (--timeout bounds each scorer too)"),
        ("quick", "dwell", True, None)]
    assert query(db, "SELECT status, cases_done, errors FROM runs") == [("completed", 3, 2)]
    s = r.json()["suites"][0]
    assert s["metrics"]["errors"] == 2 and s["metrics"]["passed"] == 1
