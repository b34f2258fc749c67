"""The native trace format and the request a target receives.

A trace is what the system did for one turn (route, context, tool calls,
model, output, state, latency, usage, feedback). Targets return one per
turn; recorded files hold one per line.
"""

from __future__ import annotations

from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
)

TRACE_VERSION = 1
REQUEST_VERSION = 1


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class User(_Model):
    """Who a conversation runs as: the id and the groups that decide permissions."""

    id: str = "anonymous"
    """Stable user id, passed to the target."""
    groups: list[str] = Field(default_factory=list)
    """Groups the user belongs to (e.g. customer, support, finance)."""


class Route(_Model):
    """Which workflow the router chose, how sure it was, and why."""

    name: str
    confidence: float | None = None
    reason: str | None = None


class ContextItem(_Model):
    """One document the system considered for the turn's context."""

    id: str
    score: float | None = None
    rank: int | None = None
    groups: list[str] | None = None
    """Groups the system believed may read it (evalgate checks the truth elsewhere)."""
    tokens: int | None = None
    used: bool = True
    """True when the document reached the model (or the answer)."""
    excluded: str | None = None
    """Why it was left out: permission, budget, threshold, ..."""
    title: str | None = None
    content: str | None = None


class ToolCall(_Model):
    """A tool the system called during the turn."""

    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    result: Any = None
    error: str | None = None


class ModelInfo(_Model):
    """Which model answered, which one was asked for, and with which parameters."""

    name: str | None = None
    """The model that answered (e.g. ``gpt-4o-mini-2024-07-18``); absent when the call failed."""
    requested: str | None = None
    """The model the system asked for (e.g. ``gpt-4o-mini``), when it says."""
    provider: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)


MAX_PROMPT_CHARS = 65_536
"""Longest message text an import keeps in ``prompt`` (what a live target answers is cut by the store's 1 MiB rule)."""
MAX_PROMPT_MESSAGES = 2_000
"""Most messages an import keeps in ``prompt``: the first (the system prompt) and the latest."""


def content_text(content: Any) -> str:
    """A message's content as text: content parts (a list) give their text ones, as the model read them."""
    if content is None:
        return ""
    if isinstance(content, list):
        texts = [str(p.get("text", p.get("content", ""))) for p in content
                 if isinstance(p, dict) and p.get("type", "text") == "text"]
        return "\n".join(t for t in texts if t)
    return str(content)


class PromptMessage(_Model):
    """One message the model received: its role and its text, as in a chat completion request."""

    role: str
    content: str = ""
    """Its text; a list of content parts (``[{"type": "text", "text": ...}]``) is read as their text, joined."""
    name: str | None = None
    tool_call_id: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    """The tool calls an earlier assistant message asked for."""

    @field_validator("content", mode="before")
    @classmethod
    def _content_text(cls, value: Any) -> Any:
        return content_text(value) if value is None or isinstance(value, list) else value


class Usage(_Model):
    """Tokens and cost the turn consumed, as the system reports them."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None


class Correction(_Model):
    """What a person said the turn should have done; it becomes the expectation."""

    route: str | None = None
    output: str | dict[str, Any] | None = None
    """The right answer (exact text), or output-scorer arguments."""
    context: list[str] | dict[str, Any] | None = None
    """Documents that should have been used, or context-scorer arguments."""
    state: dict[str, Any] | None = None
    tool_calls: dict[str, Any] | None = None
    """tool_calls-scorer arguments, e.g. {must_exclude: [issue_refund]}."""


class Feedback(_Model):
    """A user's or reviewer's reaction to a recorded turn."""

    rating: str | int | float | None = None
    correction: Correction | None = None
    note: str | None = None
    by: str | None = None
    at: str | None = None


class Trace(_Model):
    """What the system did for one turn: the native trace format (``v`` 1)."""

    v: int = TRACE_VERSION
    trace_id: str | None = None
    session_id: str | None = None
    turn: int | None = None
    timestamp: str | None = None
    user: User | None = None
    input: str | None = None
    route: Route | None = None
    context: list[ContextItem] = Field(default_factory=list)
    tool_calls: list[ToolCall] = Field(default_factory=list)
    model: ModelInfo | None = None
    prompt: list[PromptMessage] | None = None
    """The messages the model received for this turn's answer, as sent (system prompt, context as placed, earlier
    turns, the user's message); the last model call's when there were several. Absent: not reported."""
    output: str | None = None
    state: dict[str, Any] | None = None
    """Conversation state after the turn; absent means unchanged."""
    latency_ms: dict[str, float] | None = None
    """Latency the system reports about itself, by step; ``total`` for the turn."""
    usage: Usage | None = None
    feedback: Feedback | None = None
    error: str | None = None
    """The system's own report that the turn failed."""
    extra: dict[str, Any] = Field(default_factory=dict)
    """Anything else, passed through to custom scorers."""
    _raw: bytes | None = PrivateAttr(default=None)
    """The recorded line this trace was read from, stored as is instead of re-encoded."""

    def to_json(self) -> str:
        """The trace as compact JSON: the recorded line when there is one."""
        if self._raw is not None:
            return self._raw.decode("utf-8").strip()
        return self.model_dump_json(exclude_defaults=True)

    @field_validator("route", mode="before")
    @classmethod
    def _route_shorthand(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @field_validator("latency_ms", mode="before")
    @classmethod
    def _latency_shorthand(cls, value: Any) -> Any:
        return {"total": value} if isinstance(value, (int, float)) and not isinstance(value, bool) else value

    @field_validator("v")
    @classmethod
    def _known_version(cls, value: int) -> int:
        if value > TRACE_VERSION or value < 1:
            raise ValueError(f"trace format v{value} is not one this evalgate reads (it reads v{TRACE_VERSION})")
        return value

    @property
    def route_name(self) -> str | None:
        return self.route.name if self.route else None

    @property
    def used_context_ids(self) -> list[str]:
        return [c.id for c in self.context if c.used]

    @property
    def reported_total_ms(self) -> float | None:
        return self.latency_ms.get("total") if self.latency_ms else None


def request_for(*, case_id: str, session_id: str, turn: int, repeat: int, input: str,
                history: list[dict[str, str]], state: dict[str, Any], user: User, run_id: str = "",
                resumed_from: str | None = None) -> dict[str, Any]:
    """The request a target receives for one turn (version ``v`` 1).

    A turn that opens a resumed session (the user left and came back) also has
    ``resumed: true`` and ``resumed_from``, the session it continues; its
    history is empty and its session id new.
    """
    request = {"v": REQUEST_VERSION, "run_id": run_id, "case_id": case_id, "session_id": session_id, "turn": turn,
               "repeat": repeat, "input": input, "history": history, "state": state,
               "user": {"id": user.id, "groups": list(user.groups)}}
    if resumed_from is not None:
        request["resumed"] = True
        request["resumed_from"] = resumed_from
    return request


def traceparent(request: dict[str, Any]) -> str:
    """The W3C trace context of one turn's call: the same run, case, repeat and turn always give the same trace id,
    so a service's own spans for an eval call can be found and joined to the turn."""
    import hashlib

    seed = f"{request.get('run_id')}:{request.get('case_id')}:{request.get('repeat')}:{request.get('turn')}"
    digest = hashlib.sha256(seed.encode()).hexdigest()
    return f"00-{digest[:32]}-{digest[32:48]}-01"


def marker_headers(request: dict[str, Any]) -> dict[str, str]:
    """Headers that mark every request evalgate sends as eval traffic: run, case, turn, repeat, trace context."""
    return {"X-Evalgate-Run": str(request.get("run_id") or ""), "X-Evalgate-Case": str(request.get("case_id") or ""),
            "X-Evalgate-Turn": str(request.get("turn") or ""), "X-Evalgate-Repeat": str(request.get("repeat") or 0),
            "traceparent": traceparent(request)}


def describe_validation_error(exc: ValidationError) -> str:
    """One line naming the first bad field, e.g. ``route.name: field required``."""
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        from ..errors import did_you_mean

        field_name = str(err["loc"][-1])
        hint = did_you_mean(field_name, Trace.model_fields)
        msg = "unknown field" + (f" ({hint})" if hint else "")
    more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return f"{where}: {msg}{more}" if where else f"{msg}{more}"
