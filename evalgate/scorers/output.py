"""Output scorers: what the system said."""

from __future__ import annotations

import re

from . import Score, ScoreContext, scorer


def _clip(text: str, n: int = 60) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= n else text[: n - 1] + "…"


@scorer("output", shorthand="equals", help="the answer equals, contains, avoids or matches text")
def output(equals: str | None = None, contains: str | list[str] | None = None,
           not_contains: str | list[str] | None = None, regex: str | None = None,
           case_sensitive: bool = False):
    """Check the turn's output text.

    equals: the whole answer (whitespace trimmed); contains / not_contains:
    every listed piece must (not) appear; regex: a pattern that must match
    somewhere. Comparisons ignore case unless ``case_sensitive``.
    """
    if equals is None and contains is None and not_contains is None and regex is None:
        raise ValueError("give at least one of: equals, contains, not_contains, regex")
    must = [contains] if isinstance(contains, str) else list(contains or [])
    must_not = [not_contains] if isinstance(not_contains, str) else list(not_contains or [])
    flags = 0 if case_sensitive else re.IGNORECASE
    try:
        pattern = re.compile(regex, flags) if regex is not None else None
    except re.error as exc:
        raise ValueError(f"invalid regex {regex!r}: {exc}") from None
    fold = (lambda s: s) if case_sensitive else str.casefold

    def check(ctx: ScoreContext) -> Score:
        text = ctx.trace.output or ""
        folded = fold(text)
        problems: list[str] = []
        checks = 0
        if equals is not None:
            checks += 1
            if fold(text.strip()) != fold(equals.strip()):
                problems.append(f"output is {_clip(text)!r}, expected {_clip(equals)!r}")
        for piece in must:
            checks += 1
            if fold(piece) not in folded:
                problems.append(f"missing {piece!r}")
        for piece in must_not:
            checks += 1
            if fold(piece) in folded:
                problems.append(f"contains forbidden {piece!r}")
        if pattern is not None:
            checks += 1
            if not pattern.search(text):
                problems.append(f"no match for /{pattern.pattern}/")
        if problems:
            return Score(False, 1 - len(problems) / checks, "; ".join(problems))
        return Score(True, 1.0, f"{checks} output check(s) passed")

    return check
