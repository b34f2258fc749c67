"""Prompt scorer: what the model was actually shown for the turn's answer.

It reads the trace's ``prompt`` (the messages the model received, as sent):
how many there are, their roles, text placed in them, and whether the
conversation's history is carried (the count grows turn by turn).
"""

from __future__ import annotations

from typing import Literal

from ..traces import PromptMessage, Trace
from . import Check, Score, ScoreContext, scorer


def _pieces(value: str | list[str] | None) -> list[str]:
    return [value] if isinstance(value, str) else list(value or [])


def _grown_from(ctx: ScoreContext) -> tuple[int, list[PromptMessage]] | None:
    """The latest earlier turn of this conversation that reported a prompt: (its turn number, its messages).

    A turn that resumes a session starts a new history: nothing earlier to grow from.
    """
    if ctx.request.get("resumed"):
        return None
    earlier: tuple[Trace, ...] = ctx.earlier or ((ctx.previous,) if ctx.previous is not None else ())
    for back, trace in enumerate(reversed(earlier), 1):
        if trace.prompt is not None:
            return (trace.turn if trace.turn is not None else ctx.turn - back), trace.prompt
    return None


def _where(messages: list[PromptMessage], piece: str, fold: bool) -> int | None:
    """The 1-based position of the first message whose text holds ``piece``."""
    needle = piece.casefold() if fold else piece
    for i, m in enumerate(messages, 1):
        if needle in (m.content.casefold() if fold else m.content):
            return i
    return None


@scorer("prompt", help="the messages the model received: count, roles, history carried turn by turn, text placed in them",
        stats=("messages",))
def prompt(min_messages: int | None = None, max_messages: int | None = None, grows: bool = False,
           roles: str | list[str] | None = None, first_role: str | None = None,
           contains: str | list[str] | None = None, not_contains: str | list[str] | None = None,
           case_sensitive: bool = False, missing: Literal["fail", "pass"] = "fail") -> Check:
    """Check the trace's ``prompt``: the messages the model received for the turn's answer.

    min_messages / max_messages: bounds on their count. grows: more messages
    than the latest earlier turn that reported a prompt (history is carried;
    the first turn and a resumed session's first turn have nothing to grow
    from). roles: each of these roles has a message; first_role: the first
    message's role (e.g. system). contains: every piece is in some message;
    not_contains: none is in any (case-insensitive unless case_sensitive).
    missing: a trace without a prompt fails (``fail``, the default) or passes.
    """
    needed_roles = _pieces(roles)
    wanted, forbidden = _pieces(contains), _pieces(not_contains)
    if not (min_messages is not None or max_messages is not None or grows or needed_roles or first_role or wanted
            or forbidden):
        raise ValueError("name a check: min_messages, max_messages, grows, roles, first_role, contains or not_contains")
    if min_messages is not None and max_messages is not None and min_messages > max_messages:
        raise ValueError(f"min_messages {min_messages} is more than max_messages {max_messages}")
    fold = not case_sensitive

    def check(ctx: ScoreContext) -> Score:
        messages = ctx.trace.prompt
        if messages is None:
            why = "the trace has no prompt: the target did not report the messages the model received"
            return Score(missing == "pass", None, why + (" (missing: pass)" if missing == "pass" else ""))
        n = len(messages)
        metrics = {"messages": float(n)}
        wrong: list[str] = []
        said: list[str] = []
        checks = 0
        if min_messages is not None:
            checks += 1
            if n < min_messages:
                wrong.append(f"{n} message(s), fewer than {min_messages}")
        if max_messages is not None:
            checks += 1
            if n > max_messages:
                wrong.append(f"{n} message(s), more than {max_messages}")
        if grows:
            checks += 1
            before = _grown_from(ctx)
            if before is None:
                said.append("nothing earlier to grow from")
            else:
                turn, earlier = before
                if n <= len(earlier):
                    wrong.append(f"{n} message(s), not more than turn {turn}'s {len(earlier)}: the history was not carried")
                else:
                    said.append(f"{n - len(earlier)} more than turn {turn}'s {len(earlier)}")
        present = [m.role for m in messages]
        for role in needed_roles:
            checks += 1
            if role not in present:
                wrong.append(f"no {role} message")
        if first_role is not None:
            checks += 1
            if not messages or messages[0].role != first_role:
                wrong.append(f"the first message is {messages[0].role if messages else 'missing'}, expected {first_role}")
        for piece in wanted:
            checks += 1
            if _where(messages, piece, fold) is None:
                wrong.append(f"missing {piece!r}")
        for piece in forbidden:
            checks += 1
            at = _where(messages, piece, fold)
            if at is not None:
                wrong.append(f"forbidden {piece!r} in message {at} ({messages[at - 1].role})")
        shape = f"{n} message(s) (" + ", ".join(present) + ")" if n <= 12 else f"{n} message(s)"
        if wrong:
            return Score(False, 1 - len(wrong) / checks, "; ".join(wrong) + f"; the prompt has {shape}",
                         metrics=metrics)
        return Score(True, 1.0, shape + ("; " + "; ".join(said) if said else ""), metrics=metrics)

    return check
