"""End-to-end: the real CLI on real files, exit codes, messages and the store."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import query, write


def test_passing_suite_exits_0_and_stores_every_turn(cli, project: Path) -> None:
    r = cli("run", "--json")
    assert r.code == 0, r
    data = r.json()
    suite = data["suites"][0]
    assert suite["verdict"]["status"] == "pass"
    assert suite["metrics"]["pass_rate"] == 1.0
    assert suite["metrics"]["route.pass_rate"] == 1.0
    db = project / ".evalgate" / "evalgate.duckdb"
    run_id = suite["run_id"]
    assert query(db, "SELECT status, verdict, exit_code, cases_done, turns_done FROM runs WHERE run_id = ?", [run_id]) == [
        ("completed", "pass", 0, 2, 3)]
    # results keyed by (run, case, repeat, turn), turns 1-based
    assert query(db, "SELECT case_id, repeat, turn, route FROM turns WHERE run_id = ? ORDER BY case_id, turn", [run_id]) == [
        ("hello", 0, 1, "smalltalk"), ("refund-change", 0, 1, "refunds"), ("refund-change", 0, 2, "refunds")]
    scores = query(db, "SELECT scorer, count(*) FROM scores WHERE run_id = ? GROUP BY scorer ORDER BY scorer", [run_id])
    assert scores == [("context", 1), ("output", 1), ("route", 3), ("state", 2)]
    # state flows: turn 2 received what turn 1 returned
    state_in = query(db, "SELECT state_in FROM turns WHERE run_id = ? AND case_id = 'refund-change' AND turn = 2", [run_id])
    assert json.loads(state_in[0][0])["order_id"] == "5512"


def test_failing_expectation_exits_1_and_names_rule_and_case(cli, project: Path) -> None:
    write(project / "suites" / "demo.yaml", (project / "suites" / "demo.yaml").read_text().replace(
        "expect: {route: smalltalk}", "expect: {route: refunds}"))
    r = cli("run")
    assert r.code == 1, r
    assert "FAIL demo" in r.out
    assert "every case passes" in r.out
    assert "hello" in r.out and "routed to smalltalk (keyword), expected refunds" in r.out


def test_gate_rules_with_slices_decide_the_verdict(cli, project: Path) -> None:
    suite = (project / "suites" / "demo.yaml").read_text()
    suite = suite.replace("expect: {route: smalltalk}", "expect: {route: refunds}") + """
gate:
  rules:
    - critical_cases_pass: true
    - {metric: route.accuracy, min: 1.0, where: {tags: refunds}}
    - {metric: latency.p95, max: 50, where: {route: refunds}}
"""
    write(project / "suites" / "demo.yaml", suite)
    r = cli("run", "--json")
    assert r.code == 0, r  # the failing case is outside every rule's slice
    rules = r.json()["suites"][0]["verdict"]["rules"]
    assert [x["status"] for x in rules] == ["pass", "pass", "pass"]
    write(project / "suites" / "demo.yaml", suite.replace("min: 1.0, where: {tags: refunds}", "min: 0.9"))
    # 2 of 3 turns routed right is no evidence against 90 % while nothing says how much a run varies ...
    r = cli("run", "--json")
    assert r.code == 0, r
    rule = r.json()["suites"][0]["verdict"]["rules"][1]
    assert rule["status"] == "inconclusive" and rule["cases"] == ["hello"] and "not shown beyond chance" in rule["detail"]
    # ... unless the suite says an undecided rule fails the gate
    strict = suite.replace("min: 1.0, where: {tags: refunds}", "min: 0.9").replace("gate:\n", "gate:\n  inconclusive: fail\n")
    write(project / "suites" / "demo.yaml", strict)
    assert cli("run").code == 1
    # ... or repeats measure that nothing varies: the share is what it is, and it misses
    write(project / "suites" / "demo.yaml", suite.replace("min: 1.0, where: {tags: refunds}", "min: 0.9"))
    r = cli("run", "--json", "--repeat", "2")
    assert r.code == 1, r
    failed = [x for x in r.json()["suites"][0]["verdict"]["rules"] if x["status"] == "fail"]
    assert failed[0]["rule"] == "route.accuracy ≥ 0.9" and failed[0]["cases"] == ["hello"]
    assert "66.7% is below the minimum 90.0%" in failed[0]["detail"] and "nothing varies" in failed[0]["detail"]


def test_target_errors_above_max_error_rate_exit_3(cli, project: Path) -> None:
    suite = (project / "suites" / "demo.yaml").read_text() + """
  - id: boom
    input: please crash now
"""
    write(project / "suites" / "demo.yaml", suite)
    r = cli("run", "--json")
    assert r.code == 3, r
    s = r.json()["suites"][0]
    assert s["verdict"]["status"] == "error"
    assert "cannot be trusted" in s["verdict"]["reasons"][0]
    assert s["metrics"]["errors"] == 1 and s["metrics"]["pass_rate"] == 1.0  # errors are counted apart
    db = project / ".evalgate" / "evalgate.duckdb"
    err = query(db, "SELECT error FROM turns WHERE case_id = 'boom'")[0][0]
    assert err == "RuntimeError: the bot fell over"
    # with a tolerated error rate the same run passes
    write(project / "suites" / "demo.yaml", suite + "gate: {max_error_rate: 0.5}\n")
    assert cli("run").code == 0


def test_timeout_is_a_turn_error_not_a_crash(cli, project: Path) -> None:
    write(project / "suites" / "slow.yaml", """
        name: slow
        target: {python: bot:respond}
        timeout_s: 0.2
        gate: {max_error_rate: 1.0}
        cases:
          - {id: slow, input: "be slow 2"}
          - {id: fast, input: "hello", expect: {route: smalltalk}}
    """)
    r = cli("run", "suites/slow.yaml", "--json")
    assert r.code == 0, r
    db = project / ".evalgate" / "evalgate.duckdb"
    assert query(db, "SELECT case_id, errored, error FROM cases ORDER BY seq") == [
        ("slow", True, "turn 1: timed out after 0.2s"), ("fast", False, None)]


def test_tags_select_cases_and_unknown_tags_are_usage_errors(cli, project: Path) -> None:
    r = cli("run", "--tags", "smalltalk", "--json")
    assert r.code == 0, r
    assert r.json()["suites"][0]["cases"] == 1
    r = cli("run", "--tags", "nope")
    assert r.code == 2
    assert "no case has any of the tags nope" in r.err


def test_repeat_runs_every_case_k_times(cli, project: Path) -> None:
    r = cli("run", "--repeat", "3", "--json")
    assert r.code == 0, r
    db = project / ".evalgate" / "evalgate.duckdb"
    assert query(db, "SELECT case_id, list(repeat ORDER BY repeat) FROM cases GROUP BY case_id ORDER BY case_id") == [
        ("hello", [0, 1, 2]), ("refund-change", [0, 1, 2])]


def test_show_tells_the_story_of_a_case(cli, project: Path) -> None:
    run_id = cli("run", "--json").json()["suites"][0]["run_id"]
    r = cli("show", run_id[:12], "refund-change")
    assert r.code == 0, r
    for fact in ("turn 1: 'I want a refund for order 5512'", "route refunds (0.90) because keyword",
                 "context used: kb/refund-policy", 'state: {"order_id": "5521", "workflow": "refunds"}',
                 "reported latency (ms): total 12.5, route 1", "✓ output: 2 output check(s) passed"):
        assert fact in r.out, fact
    story = cli("show", "latest", "refund-change", "--json").json()
    turn2 = story["repeats"][0]["turns"][1]
    assert turn2["state_in"]["order_id"] == "5512" and turn2["state"]["order_id"] == "5521"
    assert {s["scorer"] for s in turn2["scores"]} == {"route", "state", "output", "context"}
    r = cli("show", "latest", "refund")
    assert r.code == 2 and "refund-change" in r.err


def test_history_lists_runs_newest_first(cli) -> None:
    first = cli("run", "--json").json()["suites"][0]["run_id"]
    second = cli("run", "--json").json()["suites"][0]["run_id"]
    rows = cli("history", "--json").json()
    assert [r["run_id"] for r in rows[:2]] == [second, first]
    assert rows[0]["verdict"] == "pass" and rows[0]["pass_rate"] == 1.0
    text = cli("history").out
    assert second in text


def test_python_async_target(cli, project: Path) -> None:
    write(project / "suites" / "demo.yaml", (project / "suites" / "demo.yaml").read_text().replace(
        "bot:respond", "bot:respond_async"))
    assert cli("run").code == 0


def test_target_override_and_config_default_target(cli, project: Path) -> None:
    suite = (project / "suites" / "demo.yaml").read_text().replace("target: {python: bot:respond}\n", "")
    write(project / "suites" / "demo.yaml", suite)
    r = cli("run")
    assert r.code == 2 and "has no target" in r.err
    assert cli("run", "--target", "python:bot:respond_async").code == 0
    with open(project / "pyproject.toml", "a") as fh:
        fh.write('target = {python = "bot:respond"}\n')
    assert cli("run").code == 0


def test_db_option_and_env_var_choose_the_store(cli, project: Path, tmp_path: Path) -> None:
    assert cli("run", "--db", str(tmp_path / "a.duckdb")).code == 0
    assert query(tmp_path / "a.duckdb", "SELECT count(*) FROM runs") == [(1,)]
    assert cli("run", env={"EVALGATE_DB": str(tmp_path / "b.duckdb")}).code == 0
    assert query(tmp_path / "b.duckdb", "SELECT count(*) FROM runs") == [(1,)]


def test_works_from_a_subfolder_of_the_project(cli, project: Path) -> None:
    sub = project / "deep" / "er"
    sub.mkdir(parents=True)
    r = cli("run", "--json", cwd=sub)
    assert r.code == 0, r
    assert Path(r.json()["store"]) == project / ".evalgate" / "evalgate.duckdb"


def test_default_false_suites_are_skipped_by_a_bare_run(cli, project: Path) -> None:
    write(project / "suites" / "broken-on-purpose.yaml", """
        name: broken
        default: false
        target: {python: bot:respond}
        cases: [{id: x, input: hi, expect: {route: refunds}}]
    """)
    r = cli("run", "--json")
    assert r.code == 0 and [s["suite"] for s in r.json()["suites"]] == ["demo"]
    r = cli("run", "suites/broken-on-purpose.yaml")
    assert r.code == 1


def test_scorers_lists_builtins_with_arguments(cli) -> None:
    rows = {r["name"]: r for r in cli("scorers", "--json").json()}
    assert {"output", "route", "state", "context", "tool_calls"} <= set(rows)
    assert "not_contains=None" in rows["output"]["arguments"]


def test_validate_checks_without_running(cli, project: Path) -> None:
    r = cli("validate", "--json")
    assert r.code == 0, r
    assert r.json()["suites"][0]["cases"] == 2 and r.json()["suites"][0]["turns"] == 3
    assert not (project / ".evalgate").exists()


def test_cost_and_token_budgets_per_route(cli, project: Path) -> None:
    write(project / "priced.py", '''
        def respond(req):
            refund = "refund" in req["input"]
            return {"output": "ok", "route": "refunds" if refund else "smalltalk",
                    "usage": {"input_tokens": 100 if refund else 10, "output_tokens": 20, "cost_usd": 0.002 if refund else 0.0001}}
    ''')
    write(project / "suites" / "demo.yaml", """
        name: priced
        target: {python: priced:respond}
        cases:
          - {id: a, input: refund please}
          - {id: b, input: hello}
        gate:
          rules:
            - {metric: cost.mean, max: 0.001, where: {route: refunds}}
            - {metric: tokens.total, max: 200}
    """)
    r = cli("run", "--json")
    assert r.code == 1, r
    s = r.json()["suites"][0]
    assert s["metrics"]["cost.total"] == 0.0021 and s["metrics"]["tokens.total"] == 150
    first, second = s["verdict"]["rules"]
    assert first["status"] == "fail" and first["cases"] == ["a"] and "$0.0020 is above the maximum $0.0010" in first["detail"]
    assert second["status"] == "pass"


def test_cost_budget_says_when_turns_report_no_cost(cli, project: Path) -> None:
    write(project / "partly.py", '''
        def respond(req):
            usage = {"cost_usd": 0.001} if req["case_id"] == "a" else None
            return {"output": "ok", "route": "smalltalk", **({"usage": usage} if usage else {})}
    ''')
    write(project / "suites" / "demo.yaml", """
        name: partly
        target: {python: partly:respond}
        cases: [{id: a, input: x}, {id: b, input: y}]
        gate: {rules: [{metric: cost.total, max: 0.01}]}
    """)
    r = cli("run", "--json")
    assert r.code == 0, r
    notices = r.json()["suites"][0]["verdict"]["notices"]
    assert "cost.total: usage reported on 1 of 2 turn(s); turns without it are not counted" in notices


def test_slices_by_case_id_glob_and_recorded(cli, project: Path) -> None:
    suite = (project / "suites" / "demo.yaml").read_text().replace("expect: {route: smalltalk}", "expect: {route: refunds}")
    write(project / "suites" / "demo.yaml", suite + """
gate:
  rules:
    - {metric: pass_rate, min: 1.0, where: {case: "refund-*"}}
    - {metric: pass_rate, min: 1.0, where: {case: "hel*", recorded: false}}
""")
    r = cli("run", "--json")
    assert r.code == 1, r
    first, second = r.json()["suites"][0]["verdict"]["rules"]
    assert first["status"] == "pass" and first["rule"] == "pass_rate ≥ 1 where case=refund-*"
    assert second["status"] == "fail" and second["cases"] == ["hello"]


def test_slices_by_case_fields_and_criticality(cli, project: Path) -> None:
    """Cases carry their own fields (YAML meta:, CSV meta.<field> columns); rules slice on them."""
    write(project / "datasets" / "more.csv", """
        id,input,meta.locale,meta.tier,expect.route
        de-1,hallo,de,gold,smalltalk
        de-2,refund bitte,de,silver,smalltalk
        fr-1,bonjour,fr,gold,smalltalk
    """)
    suite = (project / "suites" / "demo.yaml").read_text().replace(
        "  - id: hello\n", "  - id: hello\n    meta: {locale: en, tier: 3, beta: true}\n")
    write(project / "suites" / "demo.yaml", suite + """
  - file: ../datasets/more.csv
gate:
  rules:
    - {metric: pass_rate, min: 1.0, where: {meta: {locale: de}}}
    - {metric: pass_rate, min: 1.0, where: {meta: {locale: [fr, en], tier: [gold, 3]}}}
    - {metric: pass_rate, min: 1.0, where: {meta: {beta: true}}}
    - {metric: pass_rate, min: 1.0, where: {critical: true}}
    - {metric: cases, min: 3, where: {critical: false}}
""")
    r = cli("run", "--json")
    assert r.code == 1, r
    rules = r.json()["suites"][0]["verdict"]["rules"]
    assert [x["status"] for x in rules] == ["fail", "pass", "pass", "pass", "pass"], rules
    assert rules[0]["rule"] == "pass_rate ≥ 1 where locale=de" and rules[0]["cases"] == ["de-2"]
    assert "over 2" in rules[1]["detail"] and "over 1" in rules[2]["detail"]  # fr-1 and hello; hello
    assert "over 1" in rules[3]["detail"]  # refund-change is the only critical case
    assert rules[4]["value"] == 4
    write(project / "suites" / "demo.yaml", suite + """
gate:
  rules:
    - {metric: pass_rate, min: 1.0, where: {meta: {locale: {nested: no}}}}
""")
    r = cli("validate")
    assert r.code == 2 and "demo.yaml:" in r.err and "Traceback" not in r.err, r


def test_reading_a_store_that_does_not_exist_yet_is_a_usage_error(cli, project: Path) -> None:
    for args in (("history",), ("show", "latest", "hello"), ("report",), ("routes",)):
        r = cli(*args)
        assert r.code == 2 and "no store at" in r.err and "run 'evalgate run' first" in r.err, (args, r)


def test_a_closed_pipe_keeps_the_gates_exit_code(project: Path) -> None:
    """`evalgate run | head`: the reader leaving is not a failure; the verdict's exit code still reaches the shell."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "NO_COLOR": "1"}
    for args, code in ((["run"], 0), (["history"], 0)):
        proc = subprocess.Popen([sys.executable, "-m", "evalgate", *args], cwd=project, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout is not None
        proc.stdout.close()  # the reader is gone before evalgate writes a byte
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == code, (args, proc.returncode, err)
        assert b"Traceback" not in err and b"internal error" not in err
