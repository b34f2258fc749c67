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
