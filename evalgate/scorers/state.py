"""State scorer: is the conversation state right after the turn?"""

from __future__ import annotations

from typing import Any

from . import Score, ScoreContext, scorer

_MISSING = object()


@scorer("state", help="slots in the state after the turn have the expected values")
def state(**expected: Any):
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
