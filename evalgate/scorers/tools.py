"""Tool-call scorer: which tools the system called during the turn."""

from __future__ import annotations

from . import Score, ScoreContext, scorer


def _names(value: str | list[str] | None) -> list[str]:
    return [value] if isinstance(value, str) else list(value or [])


@scorer("tool_calls", shorthand="must_include", help="tools that must (not) be called in the turn")
def tool_calls(must_include: str | list[str] | None = None, must_exclude: str | list[str] | None = None,
               none: bool = False):
    """Check the names of the tools called in the turn.

    must_include: each must be called; must_exclude: none may be called
    (e.g. no refund issued before the user confirmed); none: no tool at all.
    """
    need, forbid = _names(must_include), _names(must_exclude)
    if not need and not forbid and not none:
        raise ValueError("give must_include, must_exclude or none: true")

    def check(ctx: ScoreContext) -> Score:
        called = [c.name for c in ctx.trace.tool_calls]
        problems = [f"{n} not called" for n in need if n not in called]
        problems += [f"{n} called but must not be" for n in forbid if n in called]
        if none and called:
            problems.append("expected no tool calls, got " + ", ".join(called))
        if problems:
            return Score(False, 0.0, "; ".join(problems))
        return Score(True, 1.0, "called " + (", ".join(called) if called else "no tools"))

    return check
