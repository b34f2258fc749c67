"""Recorded traces: the native JSONL format, the request a target receives,
and a streaming reader that groups turns into sessions.

A trace is what the system did for one turn (route, context, tool calls,
model, output, state, latency, usage, feedback). Targets return one per
turn; recorded files hold one per line. The reader never holds a whole file:
it makes one cheap pass to learn the sessions' shape, then streams them.
"""

from __future__ import annotations

import json
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from .errors import Location, SuiteError

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
    """Which model answered, and with which parameters."""

    name: str | None = None
    provider: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)


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
                history: list[dict[str, str]], state: dict[str, Any], user: User, run_id: str = "") -> dict[str, Any]:
    """The request a target receives for one turn (version ``v`` 1)."""
    return {"v": REQUEST_VERSION, "run_id": run_id, "case_id": case_id, "session_id": session_id, "turn": turn,
            "repeat": repeat, "input": input, "history": history, "state": state,
            "user": {"id": user.id, "groups": list(user.groups)}}


def describe_validation_error(exc: ValidationError) -> str:
    """One line naming the first bad field, e.g. ``route.name: field required``."""
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        from .errors import did_you_mean

        field_name = str(err["loc"][-1])
        hint = did_you_mean(field_name, Trace.model_fields)
        msg = "unknown field" + (f" ({hint})" if hint else "")
    more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return f"{where}: {msg}{more}" if where else f"{msg}{more}"


# --- reading recorded files -------------------------------------------------


@dataclass
class BadLine:
    """A line of a trace file that could not be read, and why."""

    path: str
    line: int
    message: str


@dataclass
class TraceFileInfo:
    """What the shape pass learned about one trace file."""

    path: str
    turns: int = 0
    sessions: int = 0
    contiguous: bool = True
    bad: list[BadLine] = field(default_factory=list)
    """The first bad lines, for the report (all are counted in ``bad_count``)."""
    bad_count: int = 0
    _bad_lines: array[int] = field(default_factory=lambda: array("q"), repr=False)
    # interleaved files only: session -> (line numbers, byte offsets), in order of first appearance
    _index: dict[str, tuple[array[int], array[int]]] | None = field(default=None, repr=False)


@dataclass
class RecordedSession:
    """The turns of one recorded session, in order."""

    session_id: str
    turns: list[Trace]
    path: str
    first_line: int


MAX_BAD_LINES_KEPT = 50


def _session_key(obj: dict[str, Any]) -> str | None:
    sid = obj.get("session_id") or obj.get("trace_id")
    return str(sid) if sid is not None else None


def _line_problem(raw: bytes) -> tuple[str | None, str | None]:
    """(session key, problem) for one raw line; cheap checks only."""
    try:
        obj = json.loads(raw)
    except ValueError as exc:
        return None, f"not valid JSON ({str(exc.args[0]).split(':')[0]})"
    if not isinstance(obj, dict):
        return None, "expected a JSON object"
    sid = _session_key(obj)
    if sid is None:
        return None, "missing session_id (or trace_id)"
    v = obj.get("v", TRACE_VERSION)
    if v != TRACE_VERSION:
        return sid, f"trace format v{v} is not one this evalgate reads (it reads v{TRACE_VERSION})"
    if not isinstance(obj.get("input"), str):
        return sid, "missing input (a recorded turn needs the user's message as a string)"
    return sid, None


def scan(path: Path | str, *, strict: bool = False) -> TraceFileInfo:
    """First pass: count turns and sessions, find bad lines, detect interleaving.

    Memory stays small when sessions are contiguous (the common export
    order: one set entry per session); interleaved files also keep one
    offset per turn so the second pass can seek.
    """
    path = str(path)
    info = TraceFileInfo(path)
    seen: set[str] = set()
    prev: str | None = None
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        raise SuiteError(f"trace file not found: {path}",
                         hint="check the path; relative paths are resolved from the suite's folder") from None
    with fh:
        for lineno, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            sid, problem = _line_problem(raw)
            if problem is not None:
                _record_bad(info, BadLine(path, lineno, problem), strict)
                continue
            assert sid is not None
            info.turns += 1
            if sid != prev:
                if sid in seen:
                    info.contiguous = False
                else:
                    seen.add(sid)
                prev = sid
    info.sessions = len(seen)
    del seen
    if not info.contiguous:
        info._index = _build_index(info)
    return info


def _record_bad(info: TraceFileInfo, bad: BadLine, strict: bool) -> None:
    if strict:
        raise SuiteError(f"bad trace line: {bad.message}", location=Location(bad.path, bad.line),
                         hint="fix or remove the line, or run without --strict to skip and count it")
    info.bad_count += 1
    info._bad_lines.append(bad.line)
    if len(info.bad) < MAX_BAD_LINES_KEPT:
        info.bad.append(bad)


def _build_index(info: TraceFileInfo) -> dict[str, tuple[array[int], array[int]]]:
    """Per-session line numbers and byte offsets, for files whose sessions interleave."""
    index: dict[str, tuple[array[int], array[int]]] = {}
    bad = set(info._bad_lines)
    pos = 0
    with open(info.path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            start = pos
            pos += len(raw)
            if not raw.strip() or lineno in bad:
                continue
            sid, _ = _line_problem(raw)
            assert sid is not None
            lines, offsets = index.setdefault(sid, (array("q"), array("q")))
            lines.append(lineno)
            offsets.append(start)
    return index


def iter_sessions(info: TraceFileInfo, *, on_bad: Callable[[BadLine], None] | None = None) -> Iterator[RecordedSession]:
    """Second pass: stream sessions in order of first appearance.

    Lines that pass the scan but fail full validation are reported through
    ``on_bad`` and skipped, so nothing is dropped silently.
    """
    if info._index is None:
        yield from _iter_contiguous(info, on_bad)
    else:
        yield from _iter_indexed(info, on_bad)


def _parse(raw: bytes, path: str, lineno: int, on_bad: Callable[[BadLine], None] | None) -> Trace | None:
    try:
        trace = Trace.model_validate_json(raw)
        trace._raw = raw
        return trace
    except ValidationError as exc:
        if on_bad is not None:
            on_bad(BadLine(path, lineno, describe_validation_error(exc)))
        return None


def _finish(sid: str, turns: list[tuple[int, Trace]], path: str) -> RecordedSession:
    first_line = turns[0][0]
    traces = [t for _, t in turns]
    if any(t.turn is not None for t in traces):
        traces.sort(key=lambda t: (t.turn is None, t.turn or 0))
    return RecordedSession(sid, traces, path, first_line)


def _iter_contiguous(info: TraceFileInfo, on_bad: Callable[[BadLine], None] | None) -> Iterator[RecordedSession]:
    bad = set(info._bad_lines)
    current: str | None = None
    turns: list[tuple[int, Trace]] = []
    with open(info.path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if lineno in bad or not raw.strip():
                continue
            trace = _parse(raw, info.path, lineno, on_bad)
            if trace is None:
                continue
            sid = trace.session_id or trace.trace_id
            assert sid is not None
            if sid != current:
                if turns and current is not None:
                    yield _finish(current, turns, info.path)
                current, turns = sid, []
            turns.append((lineno, trace))
    if turns and current is not None:
        yield _finish(current, turns, info.path)


def _iter_indexed(info: TraceFileInfo, on_bad: Callable[[BadLine], None] | None) -> Iterator[RecordedSession]:
    assert info._index is not None
    with open(info.path, "rb") as fh:
        for sid, (lines, offsets) in info._index.items():
            turns: list[tuple[int, Trace]] = []
            for lineno, offset in zip(lines, offsets):
                fh.seek(offset)
                trace = _parse(fh.readline(), info.path, lineno, on_bad)
                if trace is not None:
                    turns.append((lineno, trace))
            if turns:
                yield _finish(sid, turns, info.path)
