"""State scorer: is the conversation state right after the turn?"""

from __future__ import annotations

import re
from typing import Any

from . import Check, Score, ScoreContext, scorer

_MISSING = object()


@scorer("state", help="slots in the state after the turn have the expected values")
def state(**expected: Any) -> Check:
    """Each named slot equals its expected value after the turn.

    Write the slots directly: ``state: {order_id: "5521", confirmed: true}``.
    A value of ``null`` expects the slot to be absent or null.
    """
    if not expected:
        raise ValueError("name at least one slot, e.g. state: {order_id: '5521'}")

    def check(ctx: ScoreContext) -> Score:
        actual = ctx.trace.state if ctx.trace.state is not None else (ctx.request.get("state") or {})
        wrong = []
        for slot, want in expected.items():
            got = actual.get(slot, _MISSING)
            if want is None and (got is _MISSING or got is None):
                continue
            if got is _MISSING:
                wrong.append(f"{slot} missing (expected {want!r})")
            elif got != want:
                wrong.append(f"{slot}={got!r}, expected {want!r}")
        if wrong:
            return Score(False, 1 - len(wrong) / len(expected), "; ".join(wrong))
        return Score(True, 1.0, ", ".join(f"{k}={v!r}" for k, v in expected.items()))

    return check


def _before_after(ctx: ScoreContext) -> tuple[dict[str, Any], dict[str, Any]]:
    before = ctx.request.get("state") or {}
    after = ctx.trace.state if ctx.trace.state is not None else before  # absent state means unchanged
    return before, after


def _names(value: str | list[str] | None) -> list[str]:
    return [value] if isinstance(value, str) else list(value or [])


@scorer("slots", help="slots are present, absent, changed or unchanged after the turn")
def slots(present: str | list[str] | None = None, absent: str | list[str] | None = None,
          changed: str | list[str] | None = None, unchanged: str | list[str] | None = None) -> Check:
    """Check slots by kind rather than value, against the state before the turn.

    present: set and not null; absent: missing or null; changed: differs from
    before the turn; unchanged: the same as before the turn.
    """
    kinds = {"present": _names(present), "absent": _names(absent), "changed": _names(changed),
             "unchanged": _names(unchanged)}
    total = sum(len(v) for v in kinds.values())
    if not total:
        raise ValueError("name slots under present, absent, changed or unchanged")

    def check(ctx: ScoreContext) -> Score:
        before, after = _before_after(ctx)
        wrong = []
        for slot in kinds["present"]:
            if after.get(slot) is None:
                wrong.append(f"{slot} is not set")
        for slot in kinds["absent"]:
            if after.get(slot) is not None:
                wrong.append(f"{slot}={after[slot]!r}, expected absent")
        for slot in kinds["changed"]:
            if after.get(slot, _MISSING) == before.get(slot, _MISSING):
                wrong.append(f"{slot} unchanged ({before.get(slot)!r})")
        for slot in kinds["unchanged"]:
            if after.get(slot, _MISSING) != before.get(slot, _MISSING):
                wrong.append(f"{slot} changed from {before.get(slot)!r} to {after.get(slot)!r}")
        if wrong:
            return Score(False, 1 - len(wrong) / total, "; ".join(wrong))
        return Score(True, 1.0, f"{total} slot check(s) passed")

    return check


def _mentions(value: Any, old: str) -> list[str]:
    """Paths inside a state value where the old value still appears (as a whole value)."""
    found: list[str] = []

    def walk(v: Any, path: str) -> None:
        if isinstance(v, dict):
            for k, x in v.items():
                walk(x, f"{path}.{k}" if path else str(k))
        elif isinstance(v, list):
            for i, x in enumerate(v):
                walk(x, f"{path}[{i}]")
        elif v is not None and not isinstance(v, bool) and str(v) == old:
            found.append(path)

    walk(value, "")
    return found


@scorer("corrected", shorthand="slot", help="after a correction the old value is gone from the state and the answer")
def corrected(slot: str, old: Any = None, new: Any = None) -> Check:
    """After the user corrects ``slot``, its old value must be gone everywhere.

    old: the value being corrected (default: the slot's value before the
    turn); new: the value it must now have (optional). Fails when the slot
    still holds the old value, when the old value lingers in any other slot,
    or when the answer still mentions it.
    """

    def check(ctx: ScoreContext) -> Score:
        before, after = _before_after(ctx)
        was = old if old is not None else before.get(slot)
        if was is None:
            return Score(False, 0.0, f"nothing to correct: {slot} was not set before the turn")
        was_text = str(was)
        problems = []
        now = after.get(slot)
        if now is not None and str(now) == was_text:
            problems.append(f"{slot} is still {was!r}")
        elif new is not None and now != new:
            problems.append(f"{slot}={now!r}, expected {new!r}")
        lingering = [p for p in _mentions(after, was_text) if p != slot]
        if lingering:
            problems.append(f"old value {was!r} still in state at {', '.join(lingering)}")
        if re.search(rf"(?<!\w){re.escape(was_text)}(?!\w)", ctx.trace.output or ""):
            problems.append(f"the answer still mentions {was!r}")
        if problems:
            return Score(False, 0.0, "; ".join(problems))
        return Score(True, 1.0, f"{slot} corrected from {was!r} to {now!r}; the old value is gone")

    return check
