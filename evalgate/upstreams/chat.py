"""Chat completions as an OpenAI-compatible endpoint writes them: whole (JSON) or streamed (server-sent events).

The proxy uses these to answer from a recorded production trace (its prompt and output), and to serve a
recording made streamed to a call that is not, or the other way round.
"""

from __future__ import annotations

import json
from typing import Any

from ..traces.format import content_text

Messages = tuple[tuple[str, str], ...]
"""A prompt as compared: each message's role and its text, whitespace normalised."""


def normalised(messages: Any) -> Messages | None:
    """A request's (or a trace's) messages as (role, text) pairs with whitespace collapsed; None when it has none."""
    if not isinstance(messages, list):
        return None
    out = []
    for m in messages:
        if not isinstance(m, dict):
            return None
        out.append((str(m.get("role") or "").strip().lower(), " ".join(content_text(m.get("content")).split())))
    return tuple(out)


def wants_stream(body: Any) -> bool:
    """The call asked for a streamed answer (``stream: true``)."""
    return isinstance(body, dict) and body.get("stream") is True


def completion(text: str, model: str, *, id: str, usage: dict[str, Any] | None = None) -> dict[str, Any]:
    """A chat completion answering ``text``."""
    out: dict[str, Any] = {"id": id, "object": "chat.completion", "created": 0, "model": model,
                           "choices": [{"index": 0, "finish_reason": "stop",
                                        "message": {"role": "assistant", "content": text}}]}
    if usage:
        out["usage"] = usage
    return out


def completion_events(body: dict[str, Any]) -> list[str] | None:
    """A whole chat completion as the events of a streamed one (None when it is not a chat completion)."""
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not all(
            isinstance(c, dict) and isinstance(c.get("message") or {}, dict) for c in choices):
        return None
    base = {"id": body.get("id", "evalgate"), "object": "chat.completion.chunk", "created": body.get("created", 0),
            "model": body.get("model", "")}
    events = []
    for choice in choices:
        message = choice.get("message") or {}
        delta: dict[str, Any] = {"role": message.get("role", "assistant"), "content": message.get("content") or ""}
        if message.get("tool_calls"):
            delta["tool_calls"] = [{"index": i, **call} for i, call in enumerate(message["tool_calls"])]
        events.append(_event({**base, "choices": [{"index": choice.get("index", 0), "delta": delta,
                                                   "finish_reason": None}]}))
        events.append(_event({**base, "choices": [{"index": choice.get("index", 0), "delta": {},
                                                   "finish_reason": choice.get("finish_reason") or "stop"}]}))
    if body.get("usage"):
        events.append(_event({**base, "choices": [], "usage": body["usage"]}))
    events.append("data: [DONE]")
    return events


def events_completion(events: list[str]) -> dict[str, Any] | None:
    """The events of a streamed chat completion as one whole completion (None when they are not one)."""
    text: list[str] = []
    out: dict[str, Any] | None = None
    finish, role, usage = "stop", "assistant", None
    for event in events:
        for line in event.splitlines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                continue
            try:
                chunk = json.loads(data)
            except ValueError:
                return None
            if not isinstance(chunk, dict):
                return None
            if out is None:
                out = {"id": chunk.get("id", "evalgate"), "created": chunk.get("created", 0), "model": chunk.get("model", "")}
            usage = chunk.get("usage") or usage
            choices = chunk.get("choices") or []
            for choice in choices if isinstance(choices, list) else []:
                delta = choice.get("delta") if isinstance(choice, dict) else None
                if not isinstance(delta, dict):
                    return None
                role = str(delta.get("role") or role)
                text.append(str(delta.get("content") or ""))
                finish = str(choice.get("finish_reason") or finish)
    if out is None:
        return None
    result = completion("".join(text), str(out["model"]), id=str(out["id"]), usage=usage)
    result["created"] = out["created"]
    result["choices"][0]["message"]["role"] = role
    result["choices"][0]["finish_reason"] = finish
    return result


def _event(data: dict[str, Any]) -> str:
    return "data: " + json.dumps(data, ensure_ascii=False, separators=(",", ":"))
