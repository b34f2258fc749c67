"""The built-in scorer catalogue, in process: truth tables worked out by hand."""

from __future__ import annotations

import math
from typing import Any

import pytest

from evalgate.scorers import Score, ScoreContext, ScorerArgError, bind
from evalgate.suite import Case
from evalgate.traces import Trace, User


def _ctx(state_in: dict[str, Any] | None = None, user: User | None = None, **trace: Any) -> ScoreContext:
    u = user or User(id="u-1", groups=["customer"])
    case = Case("c", 0, [], u, {}, (), "x")
    request = {"state": state_in or {}, "user": {"id": u.id, "groups": list(u.groups)}, "repeat": 0}
    return ScoreContext(case, 1, request, Trace(**trace))


def score(name: str, args: Any, **trace: Any) -> Score:
    return bind(name, args).run_sync(_ctx(**trace))


# --- output -------------------------------------------------------------------------------


@pytest.mark.parametrize("args, text, passed, explanation", [
    ({"contains_any": ["refund", "return"]}, "Your RETURN is booked", True, "1 output check(s) passed"),
    ({"contains_any": ["refund", "return"]}, "Booked", False, "none of 'refund', 'return'"),
    ({"contains": ["a b"], "collapse_whitespace": True}, "a \n  b", True, "1 output check(s) passed"),
    ({"contains": ["a b"]}, "a \n  b", False, "missing 'a b'"),
    ({"not_contains": ["Secret"], "case_sensitive": True}, "secret", True, "1 output check(s) passed"),
    ({"not_contains": ["Secret"]}, "secret", False, "contains forbidden 'Secret'"),
    ({"equals": ""}, None, True, "1 output check(s) passed"),  # no output is the empty string
    ({"contains": "x"}, "", False, "missing 'x'"),
])
def test_output_any_case_and_whitespace(args, text, passed, explanation) -> None:
    s = score("output", args, output=text)
    assert (s.passed, s.explanation) == (passed, explanation)


SCHEMA = {"type": "object", "required": ["order_id", "items"],
          "properties": {"order_id": {"type": "string", "pattern": "^[0-9]{4}$"},
                         "items": {"type": "array", "items": {"type": "object"}}}}


@pytest.mark.parametrize("args, text, passed, explanation", [
    (True, '{"a": 1}', True, "valid JSON"),
    (True, "", False, "not JSON (Expecting value: line 1 column 1 (char 0)): empty output"),
    (True, "Sure! {\"a\": 1}", False, "not JSON (Expecting value: line 1 column 1 (char 0)): 'Sure! {\"a\": 1}'"),
    (True, '```json\n{"a": 1}\n```', True, "valid JSON"),  # one fenced block is unwrapped
    ({"schema": SCHEMA}, '{"order_id": "5521", "items": []}', True, "valid JSON, fits the schema"),
    ({"schema": SCHEMA}, '{"order_id": "55", "items": [1]}', False,
     "schema: $.items[0]: 1 is not of type 'object' (+1 more)"),
    ({"schema": SCHEMA}, '{"items": []}', False, "schema: $: 'order_id' is a required property"),
    ({"paths": {"order.items[1].sku": "B-2", "order.paid": True}},
     '{"order": {"items": [{"sku": "A-1"}, {"sku": "B-2"}], "paid": true}}', True, "valid JSON, 2 path(s) as expected"),
    ({"paths": {"order.paid": True}}, '{"order": {"paid": 1}}', False, "order.paid = 1, expected true"),  # 1 is not true
    ({"paths": {"n": 1}}, '{"n": 1.0}', True, "valid JSON, 1 path(s) as expected"),  # 1 is 1.0 in JSON
    ({"paths": {"items[5]": "x"}}, '{"items": []}', False, "items[5] is absent (expected 'x')"),
    ({"paths": {'meta["a.b"]': 2}}, '{"meta": {"a.b": 2}}', True, "valid JSON, 1 path(s) as expected"),
    ({"paths": {"$.a[-1]": 3}}, '{"a": [1, 2, 3]}', True, "valid JSON, 1 path(s) as expected"),
])
def test_json_scorer(args, text, passed, explanation) -> None:
    s = score("json", args, output=text)
    assert (s.passed, s.explanation) == (passed, explanation)


def test_json_scorer_bad_arguments_fail_at_load() -> None:
    with pytest.raises(ScorerArgError, match="not a valid JSON Schema"):
        bind("json", {"schema": {"type": "no-such-type"}})
    with pytest.raises(ScorerArgError, match="cannot read JSON path 'a..b'"):
        bind("json", {"paths": {"a..b": 1}})


@pytest.mark.parametrize("args, text, passed, value, explanation", [
    ({"max_words": 3}, "one two three", True, 13.0, "13 characters, 3 words"),
    ({"max_words": 2}, "one two three", False, 13.0, "3 words, more than 2"),
    ({"min_chars": 1}, None, False, 0.0, "0 characters, fewer than 1"),
    ({"min_chars": 5, "max_chars": 5}, "  abcde \n", True, 5.0, "5 characters, 1 words"),  # trimmed
])
def test_length_scorer(args, text, passed, value, explanation) -> None:
    s = score("length", args, output=text)
    assert (s.passed, s.value, s.explanation) == (passed, value, explanation)


def test_length_bounds_are_checked() -> None:
    with pytest.raises(ScorerArgError, match="min_chars is larger than max_chars"):
        bind("length", {"min_chars": 5, "max_chars": 2})


def test_similarity_scorer() -> None:
    # token_sort_ratio sorts the words first: the same words in another order are identical
    s = score("similarity", "refund issued for order 5521", output="Order 5521: refund issued for")
    assert s.passed and s.value == 1.0 and s.metrics == {"similarity": 1.0}
    # ratio = 2·|longest common subsequence| / total length: "kitten" vs "sitting" share i,t,t,n → 2·4/13 = 0.6154
    s = score("similarity", {"expected": "kitten", "method": "ratio", "threshold": 0.62}, output="sitting")
    assert not s.passed and s.value == 0.6154 and s.explanation == "ratio similarity 0.62 < 0.62 to 'kitten'"
    s = score("similarity", {"expected": "abc", "threshold": 0.5}, output="")
    assert not s.passed and s.value == 0.0
    with pytest.raises(ScorerArgError, match="argument 'method'"):
        bind("similarity", {"expected": "x", "method": "levenshtein"})


# --- state ----------------------------------------------------------------------------------


def state_score(name: str, args: Any, before: dict[str, Any], **trace: Any) -> Score:
    return bind(name, args).run_sync(_ctx(state_in=before, **trace))


@pytest.mark.parametrize("args, before, after, passed, explanation", [
    ({"present": "order_id", "absent": "refund"}, {}, {"order_id": "1", "refund": None}, True, "2 slot check(s) passed"),
    ({"present": ["order_id"]}, {}, {"order_id": None}, False, "order_id is not set"),
    ({"changed": "order_id", "unchanged": "workflow"}, {"order_id": "5512", "workflow": "refunds"},
     {"order_id": "5521", "workflow": "refunds"}, True, "2 slot check(s) passed"),
    ({"changed": "order_id"}, {"order_id": "5512"}, None, False, "order_id unchanged ('5512')"),  # no state: unchanged
    ({"unchanged": "workflow"}, {"workflow": "refunds"}, {"workflow": "smalltalk"}, False,
     "workflow changed from 'refunds' to 'smalltalk'"),
    ({"changed": "x"}, {}, {"x": None}, True, "1 slot check(s) passed"),  # missing → null is a change
])
def test_slots_scorer(args, before, after, passed, explanation) -> None:
    s = state_score("slots", args, before, output="ok", state=after)
    assert (s.passed, s.explanation) == (passed, explanation)


@pytest.mark.parametrize("args, before, after, output, passed, explanation", [
    ("order_id", {"order_id": "5512"}, {"order_id": "5521"}, "Refund for 5521.", True,
     "order_id corrected from '5512' to '5521'; the old value is gone"),
    ("order_id", {"order_id": "5512"}, {"order_id": "5512"}, "ok", False, "order_id is still '5512'"),
    ("order_id", {"order_id": "5512"}, {"order_id": "5521", "previous": ["5512"]}, "ok", False,
     "old value '5512' still in state at previous[0]"),
    ("order_id", {"order_id": "5512"}, {"order_id": "5521"}, "Refunding 5521, not 5512", False,
     "the answer still mentions '5512'"),
    ("order_id", {"order_id": "5512"}, {"order_id": "5521"}, "order 55123 is another", True,
     "order_id corrected from '5512' to '5521'; the old value is gone"),  # a longer number is not the old one
    ({"slot": "order_id", "new": "5521"}, {"order_id": "5512"}, {"order_id": "5522"}, "ok", False,
     "order_id='5522', expected '5521'"),
    ("order_id", {}, {"order_id": "5521"}, "ok", False, "nothing to correct: order_id was not set before the turn"),
])
def test_corrected_scorer(args, before, after, output, passed, explanation) -> None:
    s = state_score("corrected", args, before, output=output, state=after)
    assert (s.passed, s.explanation) == (passed, explanation)


# --- tools ----------------------------------------------------------------------------------

CALLS = [{"name": "lookup_order", "arguments": {"order_id": "5521", "verbose": True}},
         {"name": "issue_refund", "arguments": {"order_id": "5521"}}]


@pytest.mark.parametrize("args, state, passed, explanation", [
    ({"calls": [{"name": "lookup_order", "arguments": {"order_id": "5521"}}, {"name": "issue_refund"}]}, None, True,
     "called lookup_order, issue_refund"),
    ({"calls": [{"name": "issue_refund"}, {"name": "lookup_order"}]}, None, False,
     "expected lookup_order() in this order; called lookup_order(order_id='5521', verbose=True), "
     "issue_refund(order_id='5521')"),
    ({"calls": [{"name": "issue_refund"}, {"name": "lookup_order"}], "ordered": False}, None, True,
     "called lookup_order, issue_refund"),
    ({"calls": [{"name": "issue_refund", "arguments": {"order_id": "5512"}}]}, None, False,
     "expected issue_refund(order_id='5512'); called lookup_order(order_id='5521', verbose=True), "
     "issue_refund(order_id='5521')"),
    ({"calls": [{"name": "issue_refund"}], "only": True}, None, False, "unexpected lookup_order"),
    ({"must_exclude": "issue_refund", "unless_state": {"confirmed": True}}, {"confirmed": True}, True,
     "called lookup_order, issue_refund"),
    ({"must_exclude": "issue_refund", "unless_state": {"confirmed": True}}, {"confirmed": False}, False,
     "issue_refund called while confirmed=False"),
])
def test_tool_calls_scorer(args, state, passed, explanation) -> None:
    s = score("tool_calls", args, output="ok", tool_calls=CALLS, state=state)
    assert (s.passed, s.explanation) == (passed, explanation)


def test_tool_call_arguments_are_checked() -> None:
    with pytest.raises(ScorerArgError, match=r"argument 'calls\[1\]\.args': unknown key") as exc:
        bind("tool_calls", {"calls": [{"name": "a"}, {"name": "b", "args": {}}]})
    assert exc.value.path == ("calls", 1, "args") and exc.value.at_key  # the YAML line of the misspelt key
    with pytest.raises(ScorerArgError, match=r"argument 'calls\[0\]\.name': Field required"):
        bind("tool_calls", {"calls": [{"arguments": {}}]})
    # of a union's branches, the one that reaches into the value explains best
    with pytest.raises(ScorerArgError, match=r"argument 'relevant\.kb/a': Input should be a valid number"):
        bind("context", {"relevant": {"kb/a": "high"}})
    with pytest.raises(ScorerArgError, match="unless_state goes with must_exclude"):
        bind("tool_calls", {"must_include": "x", "unless_state": {"confirmed": True}})


# --- budgets ------------------------------------------------------------------------------


def test_budget_scorer_reported_measured_and_missing() -> None:
    trace = {"output": "ok", "latency_ms": {"total": 840}, "usage": {"input_tokens": 500, "output_tokens": 40,
                                                                      "cost_usd": 0.0004}}
    s = score("budget", {"latency_ms": 1000, "tokens": 500, "cost_usd": 0.001}, **trace)
    assert not s.passed and s.explanation == "tokens 540 over 500; latency_ms 840 ≤ 1000; cost_usd 0.0004 ≤ 0.001"
    assert s.metrics == {"latency_ms": 840.0, "tokens": 540.0, "cost_usd": 0.0004}
    ctx = _ctx(**trace)
    ctx.elapsed_ms = 1500.0
    s = bind("budget", {"latency_ms": 1000, "latency": "measured"}).run_sync(ctx)
    assert not s.passed and s.explanation == "latency_ms 1500 over 1000"
    s = score("budget", {"cost_usd": 1}, output="ok")
    assert not s.passed and s.explanation == "cost_usd not reported"
    assert score("budget", {"cost_usd": 1, "missing": "pass"}, output="ok").passed


def test_context_budget_tokens_documents_and_near_duplicates() -> None:
    policy = "Orders can be refunded within 30 days of delivery, back to the original payment method."
    items = [{"id": "kb/a", "tokens": 300, "content": policy},
             {"id": "kb/b", "tokens": 200, "content": policy.replace("30 days", "thirty days")},  # near-duplicate
             {"id": "kb/c", "content": "x" * 400},  # no token count: 400 characters ≈ 100 tokens
             {"id": "kb/a", "tokens": 300, "content": policy},  # the same document twice
             {"id": "kb/d", "tokens": 999, "used": False}]  # not used: not counted
    s = score("context_budget", {"max_tokens": 1000, "max_docs": 4, "max_redundant": 1}, output="ok", context=items)
    assert not s.passed
    assert s.explanation == ("2 redundant (kb/b ~ kb/a; kb/a twice) over 1 (4 document(s), 900 tokens (1 estimated), "
                             "2 redundant)")
    assert s.metrics == {"tokens": 900.0, "docs": 4.0, "redundant": 2.0}
    s = score("context_budget", {"max_docs": 3}, output="ok", context=items[:3])
    assert s.passed and s.explanation == "3 document(s), 600 tokens (1 estimated), 1 redundant"
    s = score("context_budget", {"max_docs": 0}, output="ok")  # no context at all
    assert s.passed and s.metrics == {"tokens": 0.0, "docs": 0.0, "redundant": 0.0}


@pytest.mark.parametrize("expect, where, message", [
    ('{similarity: {expected: x, method: levenstein}}', "demo.yaml:4:", "argument 'method': Input should be 'ratio'"),
    ('{json: {schema: {type: nope}}}', "demo.yaml:4:", "scorer 'json': the schema is not a valid JSON Schema"),
    ('{context: {relevant: [a], min: {recal: 1}}}', "demo.yaml:4:", "min: unknown metric 'recal'"),
    ('{slots: {presnt: [a]}}', "demo.yaml:4:", "did you mean 'present'?"),
])
def test_bad_scorer_arguments_exit_2_at_their_line(cli, project, expect: str, where: str, message: str) -> None:
    from conftest import write

    write(project / "suites" / "demo.yaml",
          f"name: bad\ntarget: {{python: bot:respond}}\ncases:\n  - {{id: a, input: hi, expect: {expect}}}\n")
    r = cli("validate")
    assert r.code == 2 and where in r.err and message in r.err and "Traceback" not in r.err, r


def test_every_builtin_scorer_is_listed_with_arguments_and_one_line_of_help() -> None:
    from evalgate.reporters.console import scorer_rows

    rows = {r["name"]: r for r in scorer_rows() if r["source"] == "built-in"}
    assert set(rows) == {"output", "json", "length", "similarity", "route", "state", "slots", "corrected", "context",
                         "context_budget", "prompt", "permissions", "tool_calls", "budget", "judge", "recovery", "goal",
                         "system_error"}
    for name, row in rows.items():
        assert row["help"] and "\n" not in row["help"], name
        assert row["arguments"] or name == "system_error", name  # the one scorer that takes no arguments
    assert rows["context"]["stats"] == ["recall@k", "precision@k", "ndcg@k", "hit@k", "mrr"]
    assert "calls=None" in rows["tool_calls"]["arguments"] and "rubric" in rows["judge"]["arguments"]
