"""The scorer extension point: built-ins, module:function, entry points, argument checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import query, write

from evalgate.scorers import ScoreContext, ScorerArgError, bind
from evalgate.suite import Case
from evalgate.traces import Trace, User


def _ctx(**trace) -> ScoreContext:
    case = Case("c", 0, [], User(), {}, (), "x")
    return ScoreContext(case, 1, {"state": {}}, Trace(**trace))


@pytest.mark.parametrize("args, trace, passed, explanation", [
    ({"contains": ["5521"], "not_contains": ["5512"]}, {"output": "Refund for 5521"}, True, "2 output check(s) passed"),
    ({"contains": "5521"}, {"output": "Refund for 5512"}, False, "missing '5521'"),
    ({"equals": "Hello"}, {"output": " hello "}, True, "1 output check(s) passed"),
    ({"equals": "Hello", "case_sensitive": True}, {"output": "hello"}, False, "output is 'hello', expected 'Hello'"),
    ({"regex": r"order \d{4}"}, {"output": "no number"}, False, "no match for /order \\d{4}/"),
])
def test_output_scorer(args, trace, passed, explanation) -> None:
    score = bind("output", args).run_sync(_ctx(**trace))
    assert (score.passed, score.explanation) == (passed, explanation)


def test_route_state_context_tools_scorers() -> None:
    ctx = _ctx(output="x", route={"name": "refunds", "reason": "keyword"}, state={"order_id": "5521"},
               context=[{"id": "kb/a"}, {"id": "kb/secret", "used": False, "excluded": "permission"}],
               tool_calls=[{"name": "issue_refund"}])
    assert bind("route", ["refunds", "orders"]).run_sync(ctx).passed
    s = bind("route", "orders").run_sync(ctx)
    assert not s.passed and s.explanation == "routed to refunds (keyword), expected orders"
    s = bind("state", {"order_id": "5512", "confirmed": True}).run_sync(ctx)
    assert not s.passed and s.value == 0.0 and s.explanation == "order_id='5521', expected '5512'; confirmed missing (expected True)"
    assert bind("context", {"must_include": ["kb/a"], "must_exclude": ["kb/secret"]}).run_sync(ctx).passed  # unused is not used
    s = bind("context", {"must_include": "kb/b"}).run_sync(ctx)
    assert not s.passed and s.explanation == "missing kb/b"
    s = bind("tool_calls", {"must_exclude": ["issue_refund"]}).run_sync(ctx)
    assert not s.passed and s.explanation == "issue_refund called but must not be"


def test_arguments_are_checked_against_the_signature() -> None:
    with pytest.raises(ScorerArgError, match="has no argument 'contian'") as exc:
        bind("output", {"contian": "x"})
    assert exc.value.hint == "did you mean 'contains'?"
    with pytest.raises(ScorerArgError, match="argument 'case_sensitive': Input should be a valid boolean"):
        bind("output", {"contains": "x", "case_sensitive": "perhaps"})
    with pytest.raises(ScorerArgError, match="give at least one of"):
        bind("output", {})
    with pytest.raises(ScorerArgError, match="takes a mapping"):
        bind("state", "x")


def test_user_scorers_module_function_sync_async_and_raising(cli, project: Path) -> None:
    write(project / "checks.py", '''
        import asyncio
        from evalgate import Score

        def polite(word: str = "please"):
            """The answer says the magic word."""
            def check(ctx):
                return word in (ctx.trace.output or "").lower()
            return check

        def slow_judge(min_len: int):
            async def check(ctx):
                await asyncio.sleep(0)
                n = len(ctx.trace.output or "")
                return Score(n >= min_len, n, f"{n} characters")
            return check

        def broken():
            def check(ctx):
                raise KeyError("oops")
            return check
    ''')
    write(project / "suites" / "demo.yaml", """
        name: user
        target: {python: bot:respond}
        gate: {max_error_rate: 1.0}
        scorers:
          long_enough: {use: "checks:slow_judge", args: {min_len: 5}}
        cases:
          - {id: a, input: hello, expect: {"checks:polite": {word: okay}, long_enough: {}}}
          - {id: b, input: hello, expect: {"checks:polite": {word: zebra}}}
          - {id: c, input: hello, expect: {"checks:broken": {}}}
    """)
    r = cli("run", "--json")
    assert r.code == 1, r
    db = project / ".evalgate" / "evalgate.duckdb"
    rows = query(db, "SELECT case_id, scorer, passed, value, error FROM scores ORDER BY case_id, scorer")
    assert rows == [("a", "checks:polite", True, 1.0, None), ("a", "long_enough", True, 17.0, None),
                    ("b", "checks:polite", False, 0.0, None), ("c", "checks:broken", False, None, "KeyError: 'oops'")]
    assert query(db, "SELECT case_id, errored FROM cases ORDER BY seq") == [("a", False), ("b", False), ("c", True)]
    write(project / "suites" / "demo.yaml", "name: u\ntarget: {python: bot:respond}\n"
                                            "cases: [{id: a, input: hi, expect: {'checks:polite': {wrod: x}}}]\n")
    r = cli("validate")
    assert r.code == 2 and "scorer 'checks:polite' has no argument 'wrod'" in r.err and "did you mean 'word'?" in r.err


def test_entry_point_scorers_are_found_and_listed(cli, project: Path) -> None:
    # a real installed distribution: a .dist-info folder with entry_points.txt on the path
    site = project / "site"
    write(site / "shouty_scorers.py", '''
        def shouty(min_caps: int = 1):
            """Counts capital letters in the answer."""
            def check(ctx):
                n = sum(ch.isupper() for ch in ctx.trace.output or "")
                return n >= min_caps
            return check
    ''')
    write(site / "shouty_scorers-1.0.dist-info" / "METADATA", "Metadata-Version: 2.1\nName: shouty-scorers\nVersion: 1.0\n")
    write(site / "shouty_scorers-1.0.dist-info" / "entry_points.txt", "[evalgate.scorers]\nshouty = shouty_scorers:shouty\n")
    env = {"PYTHONPATH": str(site)}
    rows = {r["name"]: r for r in cli("scorers", "--json", env=env).json()}
    assert rows["shouty"]["source"] == "shouty_scorers:shouty"
    assert rows["shouty"]["help"] == "Counts capital letters in the answer."
    write(project / "suites" / "demo.yaml", "name: ep\ntarget: {python: bot:respond}\n"
                                            "cases: [{id: a, input: hi, expect: {shouty: {min_caps: 1}}}]\n")
    r = cli("run", "--json", env=env)
    assert r.code == 0, r
    assert r.json()["suites"][0]["metrics"]["shouty.pass_rate"] == 1.0
