"""Budget scorers: what one turn cost in time, tokens and money, and how much context it used.

``budget`` holds a turn to latency, token and cost limits: the latency the
system reports (``latency_ms.total``) or the time evalgate measured around
the call. ``context_budget`` holds the context the turn used to a token and
document budget and counts near-duplicate documents as redundancy.
"""

from __future__ import annotations

from typing import Literal

from . import Check, Score, ScoreContext, scorer


@scorer("budget", help="the turn stays within latency, token and cost limits",
        stats=("latency_ms", "tokens", "cost_usd", "first_token_ms"))
def budget(latency_ms: float | None = None, tokens: int | None = None, cost_usd: float | None = None,
           latency: Literal["reported", "measured"] = "reported", missing: Literal["fail", "pass"] = "fail",
           first_token_ms: float | None = None) -> Check:
    """Per-turn limits: latency_ms, tokens (input + output), cost_usd, first_token_ms (a streamed answer's
    time to its first text: ``latency_ms.first_token``, measured by the http target or reported by the system).

    latency: ``reported`` uses the system's own ``latency_ms.total`` (else
    what evalgate measured); ``measured`` uses only evalgate's measurement.
    A limit the turn reports nothing for fails (``missing: pass`` lets it by).
    """
    if latency_ms is None and tokens is None and cost_usd is None and first_token_ms is None:
        raise ValueError("give at least one of: latency_ms, tokens, cost_usd, first_token_ms")

    def check(ctx: ScoreContext) -> Score:
        trace = ctx.trace
        usage = trace.usage
        seen: dict[str, float | None] = {}
        if latency == "reported" and trace.reported_total_ms is not None:
            seen["latency_ms"] = trace.reported_total_ms
        else:
            seen["latency_ms"] = ctx.elapsed_ms
        used_tokens = None
        if usage is not None and (usage.input_tokens is not None or usage.output_tokens is not None):
            used_tokens = float((usage.input_tokens or 0) + (usage.output_tokens or 0))
        seen["tokens"] = used_tokens
        seen["cost_usd"] = usage.cost_usd if usage is not None else None
        seen["first_token_ms"] = (trace.latency_ms or {}).get("first_token")
        limits = {"latency_ms": latency_ms, "tokens": tokens, "cost_usd": cost_usd, "first_token_ms": first_token_ms}
        problems: list[str] = []
        notes: list[str] = []
        for name, limit in limits.items():
            if limit is None:
                continue
            value = seen[name]
            if value is None:
                (problems if missing == "fail" else notes).append(f"{name} not reported")
            elif value > limit:
                problems.append(f"{name} {value:g} over {limit:g}")
            else:
                notes.append(f"{name} {value:g} ≤ {limit:g}")
        metrics = {k: float(v) for k, v in seen.items() if v is not None}
        if problems:
            return Score(False, 0.0, "; ".join(problems + notes), metrics=metrics)
        return Score(True, 1.0, "; ".join(notes), metrics=metrics)

    return check


def _estimate_tokens(text: str) -> int:
    return max(1, round(len(text) / 4)) if text else 0  # ≈ 4 characters a token, as usual for English


@scorer("context_budget", help="the context used stays within token and document budgets, without near-duplicates",
        stats=("tokens", "docs", "redundant"))
def context_budget(max_tokens: int | None = None, max_docs: int | None = None, max_redundant: int | None = None,
                   duplicate_at: float = 0.9) -> Check:
    """Hold the used context to a budget.

    max_tokens: total tokens of the used items (their ``tokens``, else
    estimated from the text at ~4 characters a token); max_docs: how many
    were used; max_redundant: how many repeat an earlier one, by id or
    near-duplicate text (rapidfuzz ratio ≥ ``duplicate_at``, 0–1; text from
    the item's ``content``, else the suite's document set).
    """
    if max_tokens is None and max_docs is None and max_redundant is None:
        raise ValueError("give at least one of: max_tokens, max_docs, max_redundant")
    if not 0 < duplicate_at <= 1:
        raise ValueError("duplicate_at is a similarity in (0, 1], e.g. 0.9")
    from rapidfuzz import fuzz

    def check(ctx: ScoreContext) -> Score:
        used = [c for c in ctx.trace.context if c.used]
        texts: list[str] = []
        total = 0
        estimated = 0
        for item in used:
            text = item.content
            if text is None and ctx.documents is not None and item.id in ctx.documents:
                text = ctx.documents[item.id].text
            texts.append(text or "")
            if item.tokens is not None:
                total += item.tokens
            else:
                total += _estimate_tokens(text or "")
                estimated += 1
        redundant: list[str] = []
        for i, item in enumerate(used):
            for j in range(i):
                same_id = used[j].id == item.id
                close = bool(texts[i] and texts[j]) and fuzz.ratio(texts[i], texts[j]) / 100 >= duplicate_at
                if same_id or close:
                    redundant.append(f"{item.id} ~ {used[j].id}" if not same_id else f"{item.id} twice")
                    break
        problems = []
        if max_tokens is not None and total > max_tokens:
            problems.append(f"{total} context tokens over {max_tokens}")
        if max_docs is not None and len(used) > max_docs:
            problems.append(f"{len(used)} documents over {max_docs}")
        if max_redundant is not None and len(redundant) > max_redundant:
            problems.append(f"{len(redundant)} redundant ({'; '.join(redundant)}) over {max_redundant}")
        note = f" ({estimated} estimated)" if estimated else ""
        summary = f"{len(used)} document(s), {total} tokens{note}, {len(redundant)} redundant"
        metrics = {"tokens": float(total), "docs": float(len(used)), "redundant": float(len(redundant))}
        if problems:
            return Score(False, 0.0, "; ".join(problems) + f" ({summary})", metrics=metrics)
        return Score(True, 1.0, summary, metrics=metrics)

    return check
