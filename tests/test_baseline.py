"""Baselines: naming, exporting to a file, comparing, and the regression rules."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import query, write


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
    # one case of two got worse: a 50-point drop, but one flipped case is no evidence of a drop in pass rate
    drop = rules["pass_rate drop ≤ 0.05"]
    assert drop["status"] == "inconclusive" and "could be noise" in drop["detail"], drop
    assert "over 2 paired case(s)" in drop["detail"] and "exact sign test" in drop["detail"]
    # the regression itself is confirmed: re-run, it fails every time with the same answer, and the other case,
    # re-run beside it, gives its same answer every time: nothing varies, measured on a case other than the suspect
    stats = s["statistics"]
    assert stats["varies"] is False and stats["confirm_runs"] == 3 + 3
    assert [(c["case_id"], c["kind"], c["confirm"]) for c in stats["cases"]] == [("hello", "regression", [0, 3])]
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
    assert data["evalgate_baseline"] == 2 and set(data["suites"]["demo"]["cases"]) == {"refund-change", "hello"}
    hello = data["suites"]["demo"]["cases"]["hello"]
    assert (hello["passed"], hello["runs"], len(hello["digests"])) == (1, 1, 1)  # the pooled counts a CI runner needs
    assert data["suites"]["demo"]["cases"]["refund-change"]["turns"][1]["route"] == "refunds"

    _break_hello(project)
    fresh = tmp_path / "ci.duckdb"  # a CI runner starts without the store
    r = cli("run", "--baseline-file", str(path), "--db", str(fresh), "--json")
    assert r.code == 1, r
    assert r.json()["suites"][0]["baseline"]["new_failures"] == ["hello"]
    # one run, and three confirmation rounds re-running hello (it failed every time) and refund-change (the same
    # answer every time)
    assert query(fresh, "SELECT count(*) FILTER (parent_run IS NULL), count(*) FILTER (parent_run IS NOT NULL), "
                        "sum(cases_done) FILTER (parent_run IS NOT NULL) FROM runs") == [(1, 3, 6)]


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
    assert query(db, "SELECT git_branch FROM runs WHERE parent_run IS NULL ORDER BY started_at") == [("main",), ("feature",)]


def test_untrusted_runs_cannot_be_baselines(cli, project: Path) -> None:
    suite = project / "suites" / "demo.yaml"
    suite.write_text(suite.read_text() + "  - {id: boom, input: please crash}\n")
    r = cli("run", "--json")
    assert r.code == 3
    run_id = r.json()["suites"][0]["run_id"]
    r = cli("baseline", "set", "main", run_id)
    assert r.code == 2 and "have no run that can be a baseline" in r.err and "its verdict could not be trusted" in r.err
    r = cli("run", "--baseline", run_id)
    assert r.code == 2 and "cannot be a baseline" in r.err
    partial = cli("run", "--tags", "smalltalk", "--json").json()["suites"][0]["run_id"]
    assert cli("baseline", "set", "main", partial).code == 2  # ran only some cases


def test_baseline_set_is_all_or_nothing_and_names_every_suite_it_cannot_use(cli, project: Path) -> None:
    from conftest import write

    write(project / "suites" / "other.yaml", "name: other\ntarget: {python: bot:respond}\n"
                                             "cases: [{id: boom, input: please crash}]\n")
    write(project / "suites" / "third.yaml", "name: third\ntarget: {python: bot:respond}\ncases: [{id: a, input: hi}]\n")
    assert cli("run", "suites/demo.yaml").code == 0
    assert cli("run", "suites/other.yaml").code == 3  # every case errored: no verdict to trust
    assert cli("run", "suites/third.yaml", "--target", "python:bot:respond").code == 0  # another target than the suite's
    r = cli("baseline", "set", "main")
    assert r.code == 2, r
    assert "2 of 3 suite(s)" in r.err and "other (run" in r.err and "third (run" in r.err
    assert "it ran with --target" in r.err and "nothing was changed" in r.err
    assert cli("baseline", "show", "--json").json() == []  # not even demo's
    assert cli("run", "suites/other.yaml", "--target", "python:bot:respond").code == 3
    assert cli("run", "suites/third.yaml").code == 0
    write(project / "suites" / "other.yaml", "name: other\ntarget: {python: bot:respond}\ncases: [{id: a, input: hi}]\n")
    assert cli("run", "suites/other.yaml").code == 0
    r = cli("baseline", "set", "main", "--json")
    assert r.code == 0 and sorted(b["suite"] for b in r.json()) == ["demo", "other", "third"], r


def test_require_baseline_lets_a_new_suite_through_with_a_notice(cli, project: Path) -> None:
    from conftest import write

    assert cli("run").code == 0
    assert cli("baseline", "set", "main").code == 0
    write(project / "suites" / "added.yaml", "name: added\ntarget: {python: bot:respond}\ncases: [{id: a, input: hi}]\n")
    r = cli("run", "--baseline", "main", "--require-baseline", "--json")
    assert r.code == 0, r  # the pull request that adds a suite is not failed for it
    added = next(s for s in r.json()["suites"] if s["suite"] == "added")
    assert "baseline 'main' has no run of suite added; regression rules skipped" in added["verdict"]["notices"]
    r = cli("run", "--baseline", "nosuchname", "--require-baseline")
    assert r.code == 2 and "no baseline to compare with ('nosuchname')" in r.err  # a baseline that is not there at all


def test_baselines_carry_the_before_and_compare_prints_the_differences(tmp_path: Path) -> None:
    import json

    from conftest import REPO, run_cli_in_process, write

    write(tmp_path / "mail.py", '''
        def respond(req):
            return {"output": "write to jane.doe@example.com about order 5512", "route": {"name": "refunds"},
                    "context": [{"id": "kb/refund-policy"}]}

        def respond_v2(req):
            return {"output": "Done: refunded order 5512.", "route": {"name": "refunds"},
                    "context": [{"id": "kb/refund-policy"}, {"id": "kb/internal-fraud-rules"}],
                    "tool_calls": [{"name": "issue_refund", "arguments": {"order_id": "5512"}}]}
    ''')
    write(tmp_path / "s.yaml", "name: mail\ntarget: {python: mail:respond}\ncases: [{id: a, input: refund 5512}]\n")
    db = ["--db", str(tmp_path / "s.duckdb")]
    assert run_cli_in_process("run", "s.yaml", *db, cwd=tmp_path).code == 0
    assert run_cli_in_process("baseline", "set", "main", *db, cwd=tmp_path).code == 0
    assert run_cli_in_process("baseline", "export", "main", str(tmp_path / "base.json"), *db, cwd=tmp_path).code == 0
    turn = json.loads((tmp_path / "base.json").read_text())["suites"]["mail"]["cases"]["a"]["turns"][0]
    assert turn["text"].startswith("write to ") and "jane.doe@example.com" not in turn["text"]  # redacted
    assert "order 5512" in turn["text"]
    r = run_cli_in_process("run", "s.yaml", "--target", "python:mail:respond_v2", "--baseline-file",
                           str(tmp_path / "base.json"), "--json", *db, cwd=tmp_path)
    changed = r.json()["suites"][0]["baseline"]["changed"]["a"]
    assert "turn 1 context: +kb/internal-fraud-rules" in changed and "turn 1 tools: +issue_refund" in changed
    out = next(c for c in changed if c.startswith("turn 1 output: "))
    assert '→ "Done: refunded order 5512."' in out and "jane.doe" not in out
