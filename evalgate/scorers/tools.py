"""Tool-call scorer: which tools the system called during the turn, with which arguments, in which order."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..traces import ToolCall
from . import Check, Score, ScoreContext, scorer


class ExpectedCall(BaseModel):
    """A tool call the turn must make: its name and a subset of its arguments."""

    model_config = ConfigDict(extra="forbid")
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    """Each given argument must have this value; others may be anything."""


def _names(value: str | list[str] | None) -> list[str]:
    return [value] if isinstance(value, str) else list(value or [])


def _fits(call: ToolCall, want: ExpectedCall) -> bool:
    return call.name == want.name and all(k in call.arguments and call.arguments[k] == v
                                          for k, v in want.arguments.items())


def describe_call(want: ExpectedCall) -> str:
    args = ", ".join(f"{k}={v!r}" for k, v in want.arguments.items())
    return f"{want.name}({args})"


def unmatched_calls(calls: list[ToolCall], expected: list[ExpectedCall], ordered: bool) -> list[ExpectedCall]:
    """The expected calls left unmatched; in order, each must come after the previous match."""
    missing = []
    start = 0
    taken: set[int] = set()
    for want in expected:
        found = None
        for i in range(start if ordered else 0, len(calls)):
            if i not in taken and _fits(calls[i], want):
                found = i
                break
        if found is None:
            missing.append(want)
        else:
            taken.add(found)
            if ordered:
                start = found + 1
    return missing


@scorer("tool_calls", shorthand="must_include", help="tools called (name, argument subset, order), forbidden or none")
def tool_calls(must_include: str | list[str] | None = None, must_exclude: str | list[str] | None = None,
               none: bool = False, calls: list[ExpectedCall] | None = None, ordered: bool = True,
               only: bool = False, unless_state: dict[str, Any] | None = None) -> Check:
    """Check the tools called in the turn.

    must_include: each name must be called; must_exclude: none may be called
    (e.g. no refund issued before the user confirmed), unless the state the
    turn ends in has every slot of ``unless_state`` (e.g. ``{confirmed:
    true}``); none: no tool at all. calls: expected calls, each a name and a
    subset of its arguments, matched in order unless ``ordered: false``;
    only: no call other than the expected ones.
    """
    need, forbid = _names(must_include), _names(must_exclude)
    expected = list(calls or [])
    if not need and not forbid and not none and not expected:
        raise ValueError("give must_include, must_exclude, calls or none: true")
    if unless_state is not None and not forbid:
        raise ValueError("unless_state goes with must_exclude: it says when a forbidden tool is allowed")
    if only and not expected:
        raise ValueError("only: true needs calls: the expected calls")

    def check(ctx: ScoreContext) -> Score:
        made = ctx.trace.tool_calls
        called = [c.name for c in made]
        problems = [f"{n} not called" for n in need if n not in called]
        banned = [n for n in forbid if n in called]
        if banned and unless_state is not None:
            state = ctx.trace.state if ctx.trace.state is not None else (ctx.request.get("state") or {})
            if all(state.get(k) == v for k, v in unless_state.items()):
                banned = []
            else:
                why = ", ".join(f"{k}={state.get(k)!r}" for k in unless_state)
                problems += [f"{n} called while {why}" for n in banned]
                banned = []
        problems += [f"{n} called but must not be" for n in banned]
        if none and called:
            problems.append("expected no tool calls, got " + ", ".join(called))
        if expected:
            missing = unmatched_calls(made, expected, ordered)
            if missing:
                order = " in this order" if ordered and len(expected) > 1 else ""
                problems.append(f"expected {', '.join(describe_call(w) for w in missing)}{order}; called "
                                + (", ".join(describe_call(ExpectedCall(name=c.name, arguments=c.arguments)) for c in made)
                                   or "nothing"))
            if only:
                extra = [c.name for c in made if not any(_fits(c, w) for w in expected)]
                if extra:
                    problems.append("unexpected " + ", ".join(extra))
        if problems:
            return Score(False, 0.0, "; ".join(problems))
        return Score(True, 1.0, "called " + (", ".join(called) if called else "no tools"))

    return check
