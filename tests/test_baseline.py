"""Baselines: naming, exporting to a file, comparing, and the regression rules."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import query, write

from evalgate.stats import holm, paired_drop

GATE = """
gate:
  rules:
    - no_new_failures: true
    - {metric: pass_rate, max_drop: 0.05, confidence: 0.95}
"""


def _break_hello(project: Path) -> None:
    suite = project / "suites" / "demo.yaml"
    suite.write_text(suite.read_text().replace("expect: {route: smalltalk}", "expect: {route: refunds}"))


def test_new_failures_against_a_named_baseline(cli, project: Path) -> None:
    suite = project / "suites" / "demo.yaml"
    suite.write_text(suite.read_text() + GATE)
    r = cli("run", "--json")
    assert r.code == 0, r
    notices = r.json()["suites"][0]["verdict"]["notices"]
    assert "'no new failures' skipped: no baseline to compare with" in notices
    first = r.json()["suites"][0]["run_id"]
    assert cli("baseline", "set", "main").code == 0
    shown = cli("baseline", "show", "--json").json()
    assert [(b["name"], b["suite"], b["run_id"]) for b in shown] == [("main", "demo", first)]

    _break_hello(project)
    r = cli("run", "--baseline", "main", "--json")
    assert r.code == 1, r
    s = r.json()["suites"][0]
    rules = {x["rule"]: x for x in s["verdict"]["rules"]}
    assert rules["no new failures"]["status"] == "fail" and rules["no new failures"]["cases"] == ["hello"]
    # one case of two got worse: a 50-point drop, but two cases are no evidence
    drop = rules["pass_rate drop ≤ 0.05"]
    assert drop["status"] == "pass" and "too few cases to test" in drop["detail"] and "over 2 paired case(s)" in drop["detail"]
    assert s["baseline"]["new_failures"] == ["hello"] and s["baseline"]["baseline_run"] == first
    assert "changed" in s["baseline"] and s["baseline"]["changed"] == {}
    text = cli("run", "--baseline", "main").out
    assert "against baseline run" in text and "new failure: hello" in text

    second = r.json()["suites"][0]["run_id"]
    cmp = cli("compare", first, second, "--json").json()
    assert cmp["new_failures"] == ["hello"] and cmp["metrics"]["pass_rate"] == {"a": 1.0, "b": 0.5}


def test_baseline_file_round_trip_into_a_fresh_store(cli, project: Path, tmp_path: Path) -> None:
    suite = project / "suites" / "demo.yaml"
    suite.write_text(suite.read_text() + GATE)
    assert cli("run").code == 0
    assert cli("baseline", "set", "main").code == 0
    path = project / "baselines" / "main.json"
    r = cli("baseline", "export", "main", str(path))
    assert r.code == 0, r
    data = json.loads(path.read_text())
    assert data["evalgate_baseline"] == 1 and set(data["suites"]["demo"]["cases"]) == {"refund-change", "hello"}
    assert data["suites"]["demo"]["cases"]["refund-change"]["turns"][1]["route"] == "refunds"

    _break_hello(project)
    fresh = tmp_path / "ci.duckdb"  # a CI runner starts without the store
    r = cli("run", "--baseline-file", str(path), "--db", str(fresh), "--json")
    assert r.code == 1, r
    assert r.json()["suites"][0]["baseline"]["new_failures"] == ["hello"]
    assert query(fresh, "SELECT count(*) FROM runs") == [(1,)]


def test_require_baseline_is_a_usage_error_before_anything_runs(cli, project: Path) -> None:
    r = cli("run", "--require-baseline")
    assert r.code == 2 and "no baseline to compare with" in r.err
    assert not (project / ".evalgate" / "evalgate.duckdb").exists() or \
        query(project / ".evalgate" / "evalgate.duckdb", "SELECT count(*) FROM runs") == [(0,)]
    r = cli("run", "--baseline", "nope", "--json")
    assert r.code == 0
    r = cli("run", "--baseline", "nope", "--json")
    assert "baseline 'nope' has no run of suite demo; regression rules skipped" in r.json()["suites"][0]["verdict"]["notices"]


def test_max_drop_only_on_pass_rate(cli, project: Path) -> None:
    suite = project / "suites" / "demo.yaml"
    suite.write_text(suite.read_text() + "gate:\n  rules:\n    - {metric: route.accuracy, max_drop: 0.1}\n")
    r = cli("validate")
    assert r.code == 2 and "max_drop is tested on pass_rate" in r.err


def _pairs(before: list[float], now: list[float]) -> list[tuple[str, float, float]]:
    return [(f"c{i}", b, a) for i, (b, a) in enumerate(zip(before, now))]


def test_paired_drop_edge_cases() -> None:
    same = paired_drop("pass_rate", _pairs([1, 0, 1] * 10, [1, 0, 1] * 10), 0.02, 0.95)
    assert same.drop == 0 and same.p_value > 0.5 and "within the allowed" in same.describe()
    everything = paired_drop("pass_rate", _pairs([1] * 40, [0] * 40), 0.02, 0.95)
    assert everything.drop == 1.0 and everything.p_value < 1e-6 and len(everything.cases) == 40
    tiny = paired_drop("pass_rate", _pairs([1, 1, 1], [1, 1, 0]), 0.02, 0.95)
    assert tiny.drop > 0.02 and tiny.p_value > 0.05
    holm([tiny])
    assert not tiny.fails and "too few cases to test" in tiny.describe()
    noisy = paired_drop("pass_rate", _pairs([1, 1, 0, 1, 1, 1, 0, 1, 1, 1], [1, 0, 1, 1, 0, 1, 0, 1, 1, 1]), 0.02, 0.95)
    holm([noisy])
    assert not noisy.fails and "could be noise" in noisy.describe()
    two_cases = paired_drop("pass_rate", _pairs([1, 1], [0, 0]), 0.02, 0.95)
    holm([two_cases])
    assert not two_cases.fails  # every case moved, but two cases are not evidence
    empty = paired_drop("pass_rate", [], 0.02, 0.95)
    assert empty.n == 0 and "not measured" in empty.describe()
    # a real 10-point drop on 300 cases is caught; detectable drop is reported
    before = [1.0] * 300
    now = [0.0 if i % 10 == 0 else 1.0 for i in range(300)]
    real = paired_drop("pass_rate", _pairs(before, now), 0.02, 0.95)
    holm([real])
    assert real.fails and real.detectable is not None and real.detectable < 0.1


def test_holm_controls_the_family() -> None:
    def test(p: float):
        t = paired_drop("pass_rate", _pairs([1] * 10, [1] * 8 + [0] * 2), 0.0, 0.95)
        t.p_value, t.drop = p, 0.1
        return t

    a, b = test(0.03), test(0.04)
    holm([a, b])  # 0.03 > 0.05/2: with two rules neither is significant enough
    assert not a.fails and not b.fails
    c, d = test(0.01), test(0.04)
    holm([c, d])
    assert c.fails and d.fails


def test_gate_soundness_false_alarms_and_power() -> None:
    """Nothing changed: at most 5 % of 200 gates fail; a 10-point drop (N=300, repeat 3): at least 80 % fail."""
    from evalgate._simulate import alarm_rate

    assert alarm_rate(0.0, max_drop=0.0) <= 0.05
    assert alarm_rate(0.0) <= 0.05
    assert alarm_rate(0.10) >= 0.80


def _flaky_project(project: Path, policy: str | None, rules: str = "") -> None:
    write(project / "flip.py", '''
        def respond(req):
            flips = req["case_id"] == "flip" and req["repeat"] == 1
            return {"output": "ok", "route": "refunds" if flips else "smalltalk"}
    ''')
    gate = ""
    if policy or rules:
        gate = "gate:\n" + (f"  flaky: {policy}\n" if policy else "") + (f"  rules:\n{rules}" if rules else "")
    write(project / "suites" / "demo.yaml", f"""
name: demo
target: {{python: flip:respond}}
repeat: 3
cases:
  - {{id: flip, input: hi, expect: {{route: smalltalk}}}}
  - {{id: steady, input: hi, expect: {{route: smalltalk}}}}
{gate}""")


def test_repeats_give_pass_at_k_pass_hat_k_and_name_flaky_cases(cli, project: Path) -> None:
    _flaky_project(project, None)
    r = cli("run", "--json")
    s = r.json()["suites"][0]
    assert r.code == 0, r  # flaky cases are named, not failed, by default
    assert (s["metrics"]["pass@k"], s["metrics"]["pass^k"], s["metrics"]["flaky"]) == (1.0, 0.5, 1.0)
    assert s["metrics"]["pass_rate"] == 5 / 6
    assert "1 flaky case(s), mixed outcomes across repeats (named, not failed): flip" in s["verdict"]["notices"]
    _flaky_project(project, "fail")
    assert cli("run").code == 1
    _flaky_project(project, None, '    - {metric: "pass^k", min: 1.0}\n')
    r = cli("run", "--json")
    assert r.code == 1
    assert r.json()["suites"][0]["verdict"]["rules"][0]["cases"] == ["flip"]


def test_branch_baseline_is_the_latest_completed_run_on_that_branch(cli, project: Path) -> None:
    import subprocess

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=project, check=True, capture_output=True)

    git("init", "-q", "-b", "main")
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "--allow-empty", "-m", "start")
    env = {"GITHUB_HEAD_REF": "", "GITHUB_REF_NAME": ""}
    first = cli("run", "--json", env=env).json()["suites"][0]["run_id"]
    git("checkout", "-q", "-b", "feature")
    _break_hello(project)
    suite = project / "suites" / "demo.yaml"
    suite.write_text(suite.read_text() + "gate:\n  rules:\n    - no_new_failures: true\n")
    r = cli("run", "--baseline", "branch:main", "--json", env=env)
    assert r.code == 1, r
    s = r.json()["suites"][0]
    assert s["baseline"]["baseline_run"] == first and s["baseline"]["new_failures"] == ["hello"]
    db = project / ".evalgate" / "evalgate.duckdb"
    assert query(db, "SELECT git_branch FROM runs ORDER BY started_at") == [("main",), ("feature",)]


def test_untrusted_runs_cannot_be_baselines(cli, project: Path) -> None:
    suite = project / "suites" / "demo.yaml"
    suite.write_text(suite.read_text() + "  - {id: boom, input: please crash}\n")
    r = cli("run", "--json")
    assert r.code == 3
    run_id = r.json()["suites"][0]["run_id"]
    r = cli("baseline", "set", "main", run_id)
    assert r.code == 2 and "cannot be a baseline" in r.err
    r = cli("run", "--baseline", run_id)
    assert r.code == 2 and "cannot be a baseline" in r.err
    partial = cli("run", "--tags", "smalltalk", "--json").json()["suites"][0]["run_id"]
    assert cli("baseline", "set", "main", partial).code == 2  # ran only some cases
