"""Recovery variants of written cases: ids, tags and the expectations that must still hold.

A variant must reach the same end as its original. So its turns keep only
what the written turns forbid (a tool called too early, a document that
must not be used, words that must not be said) — the way there may differ —
and its last turn carries the end: the written last turn's expectations when
it is that turn, and the ``recovery`` check (the final state, and each tool
called as often as the original calls it, across the whole conversation).
A corrected value is expected in its new form from the correction on.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from ..cases import CRITICAL_TAG, Case, Turn
from ..scorers import BoundScorer
from .operators import APPLY, DraftTurn, Edit, Options, Written

VARIANT_TAG = "variant"
Bind = Callable[[dict[str, Any]], list[BoundScorer]]
"""Expectations → bound checks (the suite's own checks merged in)."""


def variant_id(case_id: str, operator: str, n: int) -> str:
    return f"{case_id}~{operator}-{n}"


def operator_of(tags: Iterable[str]) -> str | None:
    """The operator a variant case was derived with, from its tags."""
    return next((t.split(":", 1)[1] for t in tags if t.startswith(VARIANT_TAG + ":")), None)


def must_nots(expect: dict[str, Any]) -> dict[str, Any]:
    """What a written turn forbids: the part of its expectations every variant turn standing for it keeps."""
    out: dict[str, Any] = {}
    tools = expect.get("tool_calls")
    if isinstance(tools, dict):
        kept = {k: tools[k] for k in ("must_exclude", "unless_state") if tools.get(k) is not None}
        if tools.get("none"):
            kept["none"] = True
        if "must_exclude" in kept or "none" in kept:
            out["tool_calls"] = kept
    context = expect.get("context")
    if isinstance(context, dict) and context.get("must_exclude"):
        out["context"] = {"must_exclude": context["must_exclude"]}
    output = expect.get("output")
    if isinstance(output, dict) and output.get("not_contains"):
        out["output"] = {k: output[k] for k in ("not_contains", "case_sensitive") if k in output}
    if "permissions" in expect:
        out["permissions"] = expect["permissions"]
    return out


def _tool_names(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else [str(v) for v in value] if isinstance(value, list) else []


def expected_tools(expects: Iterable[dict[str, Any]]) -> tuple[dict[str, int], list[dict[str, Any]], list[str]]:
    """How often the written conversation calls each tool it names (must_include, calls), the calls with arguments,
    and the guarded tools: those it forbids on some turn (a refund before the confirmation), whose count is exact."""
    counts: dict[str, int] = {}
    calls: list[dict[str, Any]] = []
    guarded: list[str] = []
    for expect in expects:
        tools = expect.get("tool_calls")
        if isinstance(tools, dict):
            guarded += [n for n in _tool_names(tools.get("must_exclude")) if n not in guarded]
        names = _tool_names(tools) if not isinstance(tools, dict) else _tool_names(tools.get("must_include"))
        for call in (tools.get("calls") or []) if isinstance(tools, dict) else []:
            if isinstance(call, dict) and call.get("name"):
                calls.append(call)
                if call["name"] not in names:
                    names.append(str(call["name"]))
        for name in dict.fromkeys(names):
            counts[name] = counts.get(name, 0) + 1
    return counts, calls, [n for n in guarded if n in counts]


def swap_value(value: Any, old: Any, new: Any) -> Any:
    """``value`` with every occurrence of the old value (a whole token in text) replaced by the new one."""
    if isinstance(value, dict):
        return {k: swap_value(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [swap_value(v, old, new) for v in value]
    if isinstance(value, str):
        return re.sub(rf"(?<![\w]){re.escape(str(old))}(?![\w])", str(new), value)
    if value == old and type(value) is type(old):
        return new
    return value


def _turns(case: Case, edit: Edit, operator: str, bind: Bind, fresh: bool) -> list[Turn]:
    expects = [t.expect for t in case.turns]
    last_written = len(case.turns) - 1
    final_state = expects[-1].get("state") if isinstance(expects[-1].get("state"), dict) else None
    tools, calls, guarded = expected_tools(expects)
    if edit.swap is not None:
        old, new = edit.swap
        final_state = swap_value(final_state, old, new)
        calls = swap_value(calls, old, new)
    turns: list[Turn] = []
    for i, draft in enumerate(edit.turns):
        expect = must_nots(expects[draft.origin])
        text = draft.input
        if edit.swap is not None and i >= edit.swap_from:
            expect = swap_value(expect, *edit.swap)
            if i > edit.swap_from:
                text = swap_value(text, *edit.swap)
        if i == len(edit.turns) - 1:
            if draft.kind == "mapped" and draft.origin == last_written:
                end = {k: v for k, v in expects[-1].items() if k not in ("state", "tool_calls")}
                expect = {**(swap_value(end, *edit.swap) if edit.swap is not None else end), **expect}
            expect["recovery"] = {"operator": operator, "step": edit.step, "state": final_state,
                                  "tools": tools or None, "exact": guarded or None, "calls": calls or None}
        turns.append(Turn(text, bind(expect), expect, resume=draft.resume, fresh=draft.resume and fresh))
    return turns


def derive(case: Case, operators: list[str], per_operator: int, seed: int, options: Options, bind: Bind,
           fresh: bool = False) -> list[Case]:
    """The variants of one written case, in operator order; ids ``<case>~<operator>-<n>``."""
    written = Written(tuple(t.input for t in case.turns), tuple(t.expect for t in case.turns),
                      tuple(t.resume for t in case.turns))
    out: list[Case] = []
    base_tags = [t for t in case.tags if t != CRITICAL_TAG]
    for operator in operators:
        rng = random.Random(f"{seed}:{case.id}:{operator}")
        for n, edit in enumerate(APPLY[operator](written, rng, per_operator, options), 1):
            tags = tuple(dict.fromkeys([*base_tags, VARIANT_TAG, f"{VARIANT_TAG}:{operator}"]))
            out.append(replace(case, id=variant_id(case.id, operator, n), turns=_turns(case, edit, operator, bind, fresh),
                               tags=tags, variant_of=case.id, derived_id=False,
                               description=f"{operator} variant of {case.id}: {edit.step}"))
    return out


__all__ = ["VARIANT_TAG", "DraftTurn", "Edit", "Options", "derive", "expected_tools", "must_nots", "operator_of",
           "swap_value", "variant_id"]
