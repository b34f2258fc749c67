"""Bad input: one clear message with file, line and a hint, exit 2, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import write


def _suite(project: Path, text: str) -> None:
    write(project / "suites" / "demo.yaml", text)


def _assert_usage(r, *fragments: str) -> None:
    assert r.code == 2, r
    assert "Traceback" not in r.err and "Traceback" not in r.out, r
    for f in fragments:
        assert f in r.err, (f, r.err)


@pytest.mark.parametrize("command", ["run", "validate"])
def test_broken_yaml_points_at_the_line(cli, project: Path, command: str) -> None:
    _suite(project, "name: demo\ncases:\n  - id: a\n    input: [unclosed\n")
    _assert_usage(cli(command), "demo.yaml:5:1: invalid YAML", "hint: check indentation")


def test_misspelt_key_gets_did_you_mean_at_its_line(cli, project: Path) -> None:
    _suite(project, """
        name: demo
        target: {python: bot:respond}
        cases:
          - id: a
            turns:
              - input: hi
                expcet: {route: smalltalk}
    """)
    _assert_usage(cli("run"), "demo.yaml:7:9: unknown key 'expcet'", "did you mean 'expect'?")


def test_unknown_top_level_key(cli, project: Path) -> None:
    _suite(project, "name: demo\ntarget: {python: bot:respond}\ncase: []\n")
    _assert_usage(cli("validate"), "demo.yaml:3:1: unknown key 'case'", "did you mean 'cases'?")


def test_wrong_type_names_the_field(cli, project: Path) -> None:
    _suite(project, "name: demo\ntarget: {python: bot:respond}\nrepeat: many\ncases: [{id: a, input: hi}]\n")
    _assert_usage(cli("validate"), "demo.yaml:3:9: 'repeat': Input should be a valid integer")


def test_unknown_scorer_gets_did_you_mean(cli, project: Path) -> None:
    _suite(project, "name: demo\ntarget: {python: bot:respond}\ncases:\n  - {id: a, input: hi, expect: {rout: smalltalk}}\n")
    _assert_usage(cli("run"), "demo.yaml:4:33: unknown scorer 'rout'", "did you mean 'route'?")


def test_bad_scorer_argument_is_reported_when_the_suite_loads(cli, project: Path) -> None:
    _suite(project, "name: demo\ntarget: {python: bot:respond}\ncases:\n"
                    "  - id: a\n    input: hi\n    expect:\n      output: {contian: x}\n")
    _assert_usage(cli("validate"), "demo.yaml:7:16: scorer 'output' has no argument 'contian'", "did you mean 'contains'?")
    _suite(project, "name: demo\ntarget: {python: bot:respond}\ncases:\n"
                    "  - id: a\n    input: hi\n    expect:\n      output: {regex: '(unclosed'}\n")
    _assert_usage(cli("validate"), "invalid regex '(unclosed'")


def test_missing_dataset_file(cli, project: Path) -> None:
    _suite(project, "name: demo\ntarget: {python: bot:respond}\ncases:\n  - file: ../datasets/nope.yaml\n")
    _assert_usage(cli("run"), "dataset file not found", "nope.yaml")


def test_target_module_that_does_not_import(cli, project: Path) -> None:
    _suite(project, "name: demo\ntarget: {python: no_such_bot:respond}\ncases: [{id: a, input: hi}]\n")
    r = cli("run")
    _assert_usage(r, "target module does not import", "No module named 'no_such_bot'")
    assert not (project / ".evalgate" / "evalgate.duckdb").exists()  # nothing ran, nothing stored


def test_target_function_missing(cli, project: Path) -> None:
    _suite(project, "name: demo\ntarget: {python: bot:nope}\ncases: [{id: a, input: hi}]\n")
    _assert_usage(cli("run"), "target function not found")


def test_unknown_target_kind(cli, project: Path) -> None:
    _suite(project, "name: demo\ntarget: {pyton: bot:respond}\ncases: [{id: a, input: hi}]\n")
    _assert_usage(cli("validate"), "demo.yaml:2:10", "did you mean 'python'?")


def test_duplicate_case_ids(cli, project: Path) -> None:
    _suite(project, "name: demo\ntarget: {python: bot:respond}\ncases:\n  - {id: a, input: hi}\n  - {id: a, input: yo}\n")
    _assert_usage(cli("validate"), "demo.yaml:5:5: duplicate case id 'a' (first defined at", "unique")


def test_unknown_gate_metric(cli, project: Path) -> None:
    _suite(project, "name: demo\ntarget: {python: bot:respond}\ncases: [{id: a, input: hi}]\n"
                    "gate:\n  rules:\n    - {metric: pass_rat, min: 0.9}\n")
    _assert_usage(cli("validate"), "demo.yaml:6:16: unknown metric 'pass_rat'", "did you mean 'pass_rate'?")


def test_rule_without_a_limit(cli, project: Path) -> None:
    _suite(project, "name: demo\ntarget: {python: bot:respond}\ncases: [{id: a, input: hi}]\n"
                    "gate:\n  rules:\n    - {metric: pass_rate}\n")
    _assert_usage(cli("validate"), "demo.yaml:6:7", "needs a limit")


def test_replay_target_with_written_cases(cli, project: Path) -> None:
    _suite(project, "name: demo\ntarget: replay\ncases: [{id: a, input: hi}]\n")
    _assert_usage(cli("validate"), "nothing recorded to replay")


def test_json_errors_are_json_too(cli, project: Path) -> None:
    _suite(project, "name: demo\ntarget: {python: bot:respond}\ncases: [{id: a, input: hi, expect: {rout: x}}]\n")
    r = cli("run", "--json")
    assert r.code == 2
    err = r.json()
    assert err["error"] == "SuiteError" and err["line"] == 3 and err["hint"] == "did you mean 'route'?"


def test_bad_config_setting(cli, project: Path) -> None:
    with open(project / "pyproject.toml", "a") as fh:
        fh.write('suite = "x"\n')
    _assert_usage(cli("run"), "unknown setting 'suite'", "did you mean 'suites'?")


def test_bad_option_value_is_a_usage_error(cli) -> None:
    r = cli("run", "--repeat", "zero")
    assert r.code == 2 and "Traceback" not in r.err


def test_a_key_written_twice_is_an_error_at_the_second(cli, project: Path) -> None:
    _suite(project, """
        name: demo
        target: {python: bot:respond}
        cases:
          - id: a
            input: hi
            expect: {route: smalltalk}
            input: hello
    """)
    _assert_usage(cli("validate"), "demo.yaml:7:5: duplicate key 'input' (first at line 5)")


def test_custom_scorers_import_from_the_project_root_in_a_subfolder(cli, project: Path) -> None:
    write(project / "my_checks.py", """
        def polite(min_count: int = 1):
            def check(ctx):
                return "please" in (ctx.trace.output or "").lower()
            return check
    """)
    _suite(project, """
        name: demo
        target: {python: bot:respond}
        cases:
          - {id: a, input: hi, expect: {"my_checks:polite": {}}}
    """)
    (project / "sub" / "deeper").mkdir(parents=True)
    r = cli("validate", cwd=project / "sub" / "deeper")
    assert r.code == 0, r


def test_yaml_alias_bombs_and_self_references_are_refused_at_their_line(cli, project: Path) -> None:
    levels = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi"):
        levels.append(f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]")
    _suite(project, "\n".join(levels) + "\n")  # 9^9 strings once expanded: "billion laughs" in 700 bytes
    _assert_usage(cli("validate"), "demo.yaml:7:4: YAML aliases expand to more than 1,000,000 values", "hint:")
    _suite(project, "name: demo\ncases: &c\n  - {id: a, input: hi, meta: {again: *c}}\n")
    _assert_usage(cli("validate"), "demo.yaml:", "a YAML alias refers to a value that contains it")
    # a few aliases are fine: teams reuse expectations
    _suite(project, "name: demo\ntarget: {python: bot:respond}\n"
                    "cases:\n  - {id: a, input: hi, expect: &e {route: smalltalk}}\n  - {id: b, input: hello, expect: *e}\n")
    assert cli("validate").code == 0


@pytest.mark.parametrize("setting, says", [("concurrency = 100000000", "concurrency must be a whole number from 1 to 10000"),
                                           ("concurrency = \"lots\"", "concurrency must be a whole number"),
                                           ("timeout_s = -1", "timeout_s must be a number of seconds above 0"),
                                           ("suites = 3", "setting 'suites' must be text")])
def test_pyproject_settings_are_checked(cli, project: Path, setting: str, says: str) -> None:
    write(project / "pyproject.toml", f'[tool.evalgate]\nsuites = "suites"\n{setting}\n'.replace('suites = "suites"\nsuites = 3', 'suites = 3'))
    _assert_usage(cli("validate"), "pyproject.toml", says, "hint:")


def test_concurrency_and_not_a_number_limits_are_refused(cli, project: Path) -> None:
    r = cli("run", "-j", "100000000")
    assert r.code == 2 and "less than or equal to 10000" in r.err, r
    _suite(project, "name: demo\ntarget: {python: bot:respond}\ncases: [{id: a, input: hi}]\n"
                    "gate: {rules: [{metric: pass_rate, min: .nan}]}\n")
    _assert_usage(cli("validate"), "demo.yaml:4", "min must be a number, not nan")


def test_strict_means_the_same_for_run_and_validate(cli, project: Path) -> None:
    write(project / "suites" / "t.jsonl", '{"session_id": "s1", "turn": 1, "input": "hi", "output": "hello"}\n'
                                          '{"session_id": "s2", "turn": 1, "input": "hi", "output": "x", " route": {}}\n')
    _suite(project, "name: demo\ntarget: replay\ntraces: [t.jsonl]\n")
    for command in ("run", "validate"):
        _assert_usage(cli(command, "--strict"), "t.jsonl:2: bad trace line:", "did you mean 'route'?")
    assert cli("run").code == 0  # without --strict the bad line is skipped, and said so


@pytest.mark.parametrize("name", ["gold.jsonl", "gold.csv"])
def test_a_gold_file_that_is_not_utf8_is_an_error_at_its_line(cli, project: Path, name: str) -> None:
    write(project / "suites" / "t.jsonl", '{"session_id": "s1", "turn": 1, "input": "hi", "output": "hello"}\n')
    (project / "suites" / name).write_bytes(b'{"key": "s1:1", "tags": ["a"]}\n\xff\xfe\n' if name.endswith("jsonl")
                                            else b"key,tags\ns1:1,a\n\xff,b\n")
    _suite(project, f"name: demo\ntarget: replay\ntraces: [{{file: t.jsonl, gold: {name}}}]\n")
    _assert_usage(cli("validate"), f"{name}:{2 if name.endswith('jsonl') else 3}:", "not UTF-8 text",
                  "hint: save the file as UTF-8")
