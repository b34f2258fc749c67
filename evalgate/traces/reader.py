"""Reading recorded trace files: a cheap pass learns the sessions' shape, then they stream.

The reader never holds a whole file: contiguous files are read session by
session; interleaved ones through an index of byte offsets per session.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .. import _json
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
    # contiguous files: where a session starts every MARK_TURNS turns or so, as (byte offset, line number) pairs:
    # replay workers read the parts between two marks
    _marks: array[int] = field(default_factory=lambda: array("q"), repr=False)

    def parts(self) -> list[FilePart]:
        """The file in parts that start at a session (contiguous files; the whole file when it is short)."""
        m = self._marks
        marks = [(m[i], m[i + 1]) for i in range(0, len(m), 2)] or [(0, 1)]
        ends = [offset for offset, _ in marks[1:]] + [-1]
        return [FilePart(self.path, start, end, line) for (start, line), end in zip(marks, ends)]


@dataclass(frozen=True)
class FilePart:
    """Sessions of a contiguous trace file between two byte offsets (``end`` -1: to the end of the file)."""

    path: str
    start: int
    end: int
    first_line: int


@dataclass
class RecordedSession:
    """The turns of one recorded session, in order."""

    session_id: str
    turns: list[Trace]
    path: str
    first_line: int


MAX_BAD_LINES_KEPT = 50
MARK_TURNS = 4_000
"""About how many turns lie between two of a contiguous file's marks (a replay worker's part)."""


def _session_key(obj: dict[str, Any]) -> str | None:
    sid = obj.get("session_id") or obj.get("trace_id")
    return str(sid) if sid is not None else None


def _line_problem(raw: bytes) -> tuple[str | None, str | None]:
    """(session key, problem) for one raw line; cheap checks only."""
    try:
        obj = _json.loads(raw)
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
    marks = info._marks
    marks.extend((0, 1))
    last_mark = 0
    pos = 0
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        raise SuiteError(f"trace file not found: {path}",
                         hint="check the path; relative paths are resolved from the suite's folder") from None
    with fh:
        for lineno, raw in enumerate(fh, 1):
            start = pos
            pos += len(raw)
            if not raw.strip():
                continue
            sid, problem = _line_problem(raw)
            if problem is not None:
                _record_bad(info, BadLine(path, lineno, problem), strict)
                continue
            assert sid is not None
            if sid != prev:
                if sid in seen:
                    info.contiguous = False
                else:
                    if info.turns - last_mark >= MARK_TURNS:
                        marks.extend((start, lineno))
                        last_mark = info.turns
                    seen.add(sid)
                prev = sid
            info.turns += 1
    info.sessions = len(seen)
    del seen
    if not info.contiguous:
        del marks[2:]
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
    yield from iter_part(FilePart(info.path, 0, -1, 1), set(info._bad_lines), on_bad)


def iter_part(part: FilePart, bad_lines: set[int],
              on_bad: Callable[[BadLine], None] | None = None) -> Iterator[RecordedSession]:
    """The sessions of one part of a contiguous file, in order, as ``iter_sessions`` streams them."""
    current: str | None = None
    turns: list[tuple[int, Trace]] = []
    with open(part.path, "rb") as fh:
        fh.seek(part.start)
        pos = part.start
        for lineno, raw in enumerate(fh, part.first_line):
            if 0 <= part.end <= pos:
                break
            pos += len(raw)
            if lineno in bad_lines or not raw.strip():
                continue
            trace = _parse(raw, part.path, lineno, on_bad)
            if trace is None:
                continue
            sid = trace.session_id or trace.trace_id
            assert sid is not None
            if sid != current:
                if turns and current is not None:
                    yield _finish(current, turns, part.path)
                current, turns = sid, []
            turns.append((lineno, trace))
    if turns and current is not None:
        yield _finish(current, turns, part.path)


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
