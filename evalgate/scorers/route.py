"""Route scorer: did the system choose the right workflow?

Each score keeps the expected route(s) and the route taken, so a run has a
confusion matrix (``evalgate.api.route_confusion``) and per-route metrics
``route.precision.<route>``, ``route.recall.<route>``, ``route.f1.<route>``
and ``route.macro_f1``. A turn whose
expectation lists several routes counts under the one taken when it is
among them, else under the first listed.
"""

from __future__ import annotations

from . import Check, Score, ScoreContext, scorer


@scorer("route", shorthand="expected", help="the router chose the expected route (or one of several)")
def route(expected: str | list[str]) -> Check:
    """The turn's route name equals ``expected`` (or is one of a list)."""
    allowed = [expected] if isinstance(expected, str) else list(expected)
    if not allowed:
        raise ValueError("expected at least one route name")
    label = allowed[0] if len(allowed) == 1 else " or ".join(allowed)

    def check(ctx: ScoreContext) -> Score:
        got = ctx.trace.route_name
        why = f" ({ctx.trace.route.reason})" if ctx.trace.route and ctx.trace.route.reason else ""
        detail = {"expected": allowed, "got": got}  # for the confusion matrix and per-route metrics
        if got in allowed:
            return Score(True, 1.0, f"routed to {got}{why}", detail=detail)
        if got is None:
            return Score(False, 0.0, f"no route reported, expected {label}", detail=detail)
        return Score(False, 0.0, f"routed to {got}{why}, expected {label}", detail=detail)

    return check
