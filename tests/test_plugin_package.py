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

