"""LLM judge: a model grades the turn against a rubric, pass/fail or on a 1–5 scale.

The judge sees only what the suite lets it see (``sees``: the input, the
conversation so far, the context documents, the answer, an expected
answer) and calls any OpenAI-compatible endpoint through evalgate's model
client: bounded, retried, and cached in the response cache, whose key
includes the repeat index, so every repeat of a case gets a fresh verdict
while a re-run with a warm cache makes no call. ``votes: n`` asks n times
(independent cache entries) and takes the majority (1–5: the median);
every vote, its reason and the judge's own tokens and cost are kept with
the score, apart from the system's usage.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import statistics
from typing import Any, Literal

from ..models.prices import DEFAULT_PRICES
from ..models.shared import shared_client
from . import Check, Score, ScoreContext, scorer

Part = Literal["input", "history", "context", "output", "expected"]
_PASS_FAIL = ('Reply with JSON only: {"verdict": "pass" or "fail", "reason": "one sentence"}. '
              "pass means the answer meets every point of the rubric.")
_SCALE = ('Reply with JSON only: {"score": an integer from 1 (fails the rubric) to 5 (meets it fully), '
          '"reason": "one sentence"}.')
_JSON = re.compile(r"\{.*\}", re.DOTALL)


def read_verdict(text: str, scale: str) -> tuple[float, str] | None:
    """(1.0 pass / 0.0 fail, or a 1–5 score; the reason) from a judge's answer; None if unreadable."""
    reason = ""
    data: Any = None
    m = _JSON.search(text)
    if m:
        try:
            data = json.loads(m.group(0))
        except ValueError:
            data = None
    if isinstance(data, dict):
        reason = str(data.get("reason") or "")
        if scale == "pass_fail":
            verdict = data.get("verdict", data.get("passed"))
            if isinstance(verdict, bool):
                return (1.0 if verdict else 0.0), reason
            if isinstance(verdict, str) and verdict.strip().lower() in ("pass", "fail"):
                return (1.0 if verdict.strip().lower() == "pass" else 0.0), reason
        else:
            score = data.get("score")
            if isinstance(score, (int, float)) and not isinstance(score, bool) and 1 <= score <= 5:
                return float(score), reason
        return None
    words = re.findall(r"\b(pass|fail)\b", text, re.IGNORECASE) if scale == "pass_fail" else re.findall(r"\b([1-5])\b", text)
    if len(set(w.lower() for w in words)) == 1:  # one unambiguous verdict in plain text
        v = words[0].lower()
        return (1.0 if v == "pass" else 0.0) if scale == "pass_fail" else float(v), text.strip()[:200]
    return None


def _context_text(ctx: ScoreContext, limit: int = 4000) -> str:
    parts = []
    for item in ctx.trace.context:
        if not item.used:
            continue
        text = item.content
        if text is None and ctx.documents is not None and item.id in ctx.documents:
            text = ctx.documents[item.id].text
        parts.append(f"[{item.id}] {text or item.title or ''}".strip())
    joined = "\n".join(parts) or "(no context)"
    return joined[:limit]


def build_messages(ctx: ScoreContext, rubric: str, scale: str, sees: list[str],
                   expected: str | None) -> list[dict[str, str]]:
    """The judge's prompt: the rubric, then only the parts the suite lets it see."""
    sections = [f"## Rubric\n{rubric.strip()}"]
    if "history" in sees:
        history = ctx.request.get("history") or []
        lines = [f"{m.get('role', '?')}: {m.get('content', '')}" for m in history]
        sections.append("## Conversation so far\n" + ("\n".join(lines) or "(first turn)"))
    if "input" in sees:
        sections.append(f"## User message\n{ctx.request.get('input', '')}")
    if "context" in sees:
        sections.append(f"## Context documents\n{_context_text(ctx)}")
    if "expected" in sees and expected is not None:
        sections.append(f"## Expected answer\n{expected}")
    if "output" in sees:
        sections.append(f"## Answer to grade\n{ctx.trace.output or ''}")
    system = "You grade an AI assistant's answer against a rubric. " + (_PASS_FAIL if scale == "pass_fail" else _SCALE)
    return [{"role": "system", "content": system}, {"role": "user", "content": "\n\n".join(sections)}]


@scorer("judge", shorthand="rubric", help="an LLM judge grades the turn against a rubric (pass/fail or 1–5), with votes",
        stats=("score", "agreement", "input_tokens", "output_tokens", "cost_usd", "calls"))
def judge(rubric: str, scale: Literal["pass_fail", "1-5"] = "pass_fail", pass_at: int = 4,
          sees: list[Part] | None = None, expected: str | None = None, votes: int = 1,
          model: str | None = None, base_url: str | None = None, api_key_env: str | None = None,
          temperature: float = 0.0, max_tokens: int = 300, price_in: float | None = None,
          price_out: float | None = None, cache: bool = True, concurrency: int = 4, timeout_s: float = 60.0) -> Check:
    """Ask a model to grade the turn.

    rubric: what a good answer does; scale: ``pass_fail`` or ``1-5``
    (passes at ``pass_at`` or above); sees: what the judge is shown, from
    input, history, context, output, expected (default: input and output);
    expected: a reference answer; votes: how many verdicts to ask for (the
    majority decides; a tie fails). model / base_url default to the
    EVALGATE_JUDGE_MODEL / EVALGATE_JUDGE_BASE_URL environment variables;
    api_key_env names the variable holding the key. price_in / price_out:
    USD per million tokens, for the judge's cost.
    """
    if not rubric.strip():
        raise ValueError("the rubric is empty")
    if votes < 1 or votes > 25:
        raise ValueError("votes must be between 1 and 25")
    if not 1 <= pass_at <= 5:
        raise ValueError("pass_at is a score from 1 to 5")
    model = model or os.environ.get("EVALGATE_JUDGE_MODEL")
    base_url = base_url or os.environ.get("EVALGATE_JUDGE_BASE_URL")
    if not model or not base_url:
        raise ValueError("the judge needs a model and an endpoint: give model and base_url, or set "
                         "EVALGATE_JUDGE_MODEL and EVALGATE_JUDGE_BASE_URL")
    if api_key_env and api_key_env not in os.environ:  # found before the first turn, not on every turn
        raise ValueError(f"environment variable {api_key_env} (the judge's API key) is not set")
    shown = list(sees or ["input", "output"])
    if "expected" in shown and expected is None:
        raise ValueError("sees includes expected, but no expected answer is given")

    async def check(ctx: ScoreContext) -> Score:
        from ..models import ModelRequest

        messages = build_messages(ctx, rubric, scale, shown, expected)
        repeat = int(ctx.request.get("repeat") or 0)
        params = {"temperature": temperature, "max_tokens": max_tokens}
        assert model is not None and base_url is not None
        requests = [ModelRequest(model, messages, params, repeat * votes + v) for v in range(votes)]
        client = shared_client(base_url, api_key_env, concurrency, timeout_s, cache, ctx.models)
        meter = getattr(ctx.models, "meter", None)
        if meter is not None:
            meter.check()  # --max-cost: no new judge call once the run's budget is spent
        answers = await asyncio.gather(*(client.complete(r) for r in requests))
        read = [read_verdict(a.text, scale) for a in answers]
        valid = [r for r in read if r is not None]
        tokens_in = sum(a.input_tokens or 0 for a in answers if not a.cached)
        tokens_out = sum(a.output_tokens or 0 for a in answers if not a.cached)
        metrics: dict[str, float] = {"input_tokens": float(tokens_in), "output_tokens": float(tokens_out),
                                     "calls": float(sum(not a.cached for a in answers))}
        if price_in is not None or price_out is not None:
            metrics["cost_usd"] = (tokens_in * (price_in or 0) + tokens_out * (price_out or 0)) / 1e6
        elif model in DEFAULT_PRICES:  # the same table the pipeline prices its calls with
            p_in, p_out = DEFAULT_PRICES[model]
            metrics["cost_usd"] = (tokens_in * p_in + tokens_out * p_out) / 1e6
        if meter is not None:
            for a in answers:
                if not a.cached:
                    meter.add(None)
            meter.spent += metrics.get("cost_usd", 0.0)
        detail: dict[str, Any] = {"model": model, "votes": [
            {"verdict": None if r is None else (("pass" if r[0] else "fail") if scale == "pass_fail" else r[0]),
             "reason": r[1] if r is not None else a.text[:300], "cached": a.cached}
            for r, a in zip(read, answers)]}
        if not valid:
            message = f"the judge's answer could not be read: {answers[0].text[:120]!r}"
            return Score(False, None, message, message, metrics=metrics, detail=detail)
        unread = len(read) - len(valid)
        if scale == "pass_fail":
            yes = sum(1 for v, _ in valid if v == 1.0)
            passed = yes * 2 > len(valid)  # a tie fails
            value = yes / len(valid)
            agree = max(yes, len(valid) - yes) / len(valid)
            verdict = "pass" if passed else "fail"
        else:
            value = float(statistics.median(v for v, _ in valid))
            passed = value >= pass_at
            agree = sum(1 for v, _ in valid if (v >= pass_at) == passed) / len(valid)
            verdict = f"{value:g}/5"
        metrics["score"] = value
        metrics["agreement"] = agree
        reason = next((r for v, r in valid if (v >= pass_at if scale != "pass_fail" else v == 1.0) == passed), "")
        votes_note = ""
        if len(read) > 1:
            if scale == "pass_fail":
                shown_votes = f"{yes} pass, {len(valid) - yes} fail"
            else:
                shown_votes = "scores " + ", ".join(f"{v:g}" for v in sorted(v for v, _ in valid))
            votes_note = f" (votes: {shown_votes}; {agree:.0%} agree" + (f"; {unread} unreadable" if unread else "") + ")"
        return Score(passed, value, f"judge: {verdict}{votes_note}: {reason}".rstrip(": "), metrics=metrics,
                     detail=detail)

    return check
