"""Context scorer: did the right documents reach the model, and the wrong ones not?"""

from __future__ import annotations

from . import Score, ScoreContext, scorer


def _ids(value: str | list[str] | None) -> list[str]:
    return [value] if isinstance(value, str) else list(value or [])


@scorer("context", shorthand="must_include", help="documents that must (not) be in the context used")
def context(must_include: str | list[str] | None = None, must_exclude: str | list[str] | None = None):
    """Check the ids of the documents the turn used (``used: true`` items).

    must_include: every id must be used; must_exclude: none may be.
    """
    need, forbid = _ids(must_include), _ids(must_exclude)
    if not need and not forbid:
        raise ValueError("give must_include and/or must_exclude (document ids)")

    def check(ctx: ScoreContext) -> Score:
        used = set(ctx.trace.used_context_ids)
        missing = [d for d in need if d not in used]
        leaked = [d for d in forbid if d in used]
        total = len(need) + len(forbid)
        if missing or leaked:
            parts = []
            if missing:
                parts.append("missing " + ", ".join(missing))
            if leaked:
                parts.append("must not use " + ", ".join(leaked))
            return Score(False, 1 - (len(missing) + len(leaked)) / total, "; ".join(parts))
        return Score(True, 1.0, f"{len(used)} document(s) used; {len(need)} required present, {len(forbid)} forbidden absent")

    return check
