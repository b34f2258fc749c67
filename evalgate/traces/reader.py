"""Reading recorded trace files: a cheap pass learns the sessions' shape, then they stream.

The reader never holds a whole file: contiguous files are read session by
session; interleaved ones through an index of byte offsets per session.
"""

from __future__ import annotations

import json
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..errors import Location, SuiteError
from .format import TRACE_VERSION, Trace, describe_validation_error


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
