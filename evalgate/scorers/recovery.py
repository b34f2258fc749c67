"""The recovery scorer: a variant of a conversation reached the same end as the written one."""

from __future__ import annotations

from typing import Any

from ..traces import Trace
from . import Check, Score, ScoreContext, scorer
from .tools import ExpectedCall, describe_call, unmatched_calls


def _calls_by_turn(traces: list[Trace]) -> dict[str, list[int]]:
    turns: dict[str, list[int]] = {}
    for i, trace in enumerate(traces, 1):
        for call in trace.tool_calls:
            turns.setdefault(call.name, []).append(i)
    return turns


def _times(n: int) -> str:
    return {1: "once", 2: "twice"}.get(n, f"{n} times")


@scorer("recovery", help="the conversation reached the written one's end: final state, each tool as often as written")
def recovery(operator: str = "", step: str = "", state: dict[str, Any] | None = None, tools: dict[str, int] | None = None,
             exact: list[str] | None = None, calls: list[ExpectedCall] | None = None) -> Check:
    """Check the end of a conversation (on its last turn), across all its turns.

    state: slots the final state must have (after a correction, the new
    value; a slot expected null may be absent); tools: how many times each
    tool must be called over the whole conversation, at least, and exactly
    for the tools named in ``exact`` (those with side effects: never a
    refund issued twice); calls: calls that must be made somewhere in it,
    with these arguments. operator and step say what the variant did, for
    the explanation.
    """
    exactly = set(exact or [])
    what = f"after {step}: " if step else ""

    def check(ctx: ScoreContext) -> Score:
        traces = [*ctx.earlier, ctx.trace]
        problems = []
        final = ctx.trace.state if ctx.trace.state is not None else (ctx.request.get("state") or {})
        for slot, want in (state or {}).items():
            if slot not in final and want is not None:
                problems.append(f"the state has no {slot} (expected {want!r})")
            elif slot in final and final[slot] != want:
                problems.append(f"the state still says {slot}={final[slot]!r} (expected {want!r})")
        made = _calls_by_turn(traces)
        for name, want_n in (tools or {}).items():
            at = made.get(name, [])
            if len(at) < want_n or (name in exactly and len(at) != want_n):
                where = f" (turn{'s' if len(at) > 1 else ''} {', '.join(map(str, at))})" if at else ""
                problems.append(f"{name} called {_times(len(at)) if at else 'never'}{where}; the written conversation "
                                f"calls it {_times(want_n)}")
        if calls:
            every = [c for t in traces for c in t.tool_calls]
            missing = unmatched_calls(every, list(calls), ordered=False)
            problems += [f"{describe_call(w)} never called" for w in missing]
        detail = {"operator": operator, "step": step} if operator else None
        if problems:
            return Score(False, 0.0, what + "; ".join(problems), detail=detail)
        return Score(True, 1.0, what + "reached the same end", detail=detail)

    return check


@scorer("goal", help="the state has reached a goal: every slot has its value (a simulated user's end)", stats=("turns",))
def goal(state: dict[str, Any] | None = None) -> Check:
    """Check that the state after the turn has every slot of ``state``.

    A simulated case's goal (``simulate.stop_when.state``) is checked this way
    on its last turn, with how the conversation ended and ``turns``, the
    number of turns it took (``goal.turns``, a run metric).
    """
    want = dict(state or {})

    def check(ctx: ScoreContext) -> Score:
        final = ctx.trace.state if ctx.trace.state is not None else (ctx.request.get("state") or {})
        off = [f"{k}={final.get(k)!r} (goal {v!r})" for k, v in want.items() if final.get(k) != v]
        if off:
            return Score(False, 0.0, "the state has " + ", ".join(off))
        return Score(True, 1.0, "the state has " + ", ".join(f"{k}={v!r}" for k, v in want.items()) if want else "done")

    return check
