"""Traces → sessions → the native JSONL file: the streaming import, window by window."""

from __future__ import annotations

import json
import os
import tempfile
from array import array
from collections import deque
from pathlib import Path
from typing import IO, Any

from ...redact import Redactor
from .mapping import Mapping
from .read import read_items
from .spans import LogRecord, Span
from .turns import ImportStats, TurnBuilder

WINDOW_SPANS = 10_000
"""Spans read after a trace's root before the trace is finished (late children still join it)."""

class _Sessions:
    """Finished turns in a temporary file; per turn, its session number, start time and offset (24 bytes)."""

    def __init__(self, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        self.tmp = tempfile.TemporaryFile(dir=folder)
        self.number: dict[str, int] = {}
        self.first_start = array("q")
        self.session_of = array("l")
        self.starts = array("q")
        self.offsets = array("q")

    def add(self, start_ns: int, turn: dict[str, Any], redactor: Redactor | None = None) -> None:
        """One turn, redacted; stored as its head (up to ``"turn":``) and the rest, to number it without re-parsing.

        The text written is the text scanned for redaction: a turn with nothing to redact is encoded once.
        """
        head = {"v": turn.pop("v"), "trace_id": turn.pop("trace_id"), "session_id": turn.pop("session_id")}
        rest = json.dumps(turn, ensure_ascii=False, separators=(",", ":"))[1:]
        # OTLP trace ids are hex: nothing to redact, and costly to scan
        if redactor is not None and redactor.enabled and redactor.finds(f"{head['session_id']}\n{rest}"):
            head["session_id"] = redactor.value(head["session_id"])
            rest = json.dumps(redactor.value(turn), ensure_ascii=False, separators=(",", ":"))[1:]
        session = str(head["session_id"])
        line = (json.dumps(head, ensure_ascii=False, separators=(",", ":"))[:-1] + ',"turn":\0'
                + ("," + rest if rest != "}" else "}")).encode() + b"\n"
        no = self.number.get(session)
        if no is None:
            no = self.number[session] = len(self.first_start)
            self.first_start.append(start_ns)
        elif start_ns < self.first_start[no]:
            self.first_start[no] = start_ns
        self.session_of.append(no)
        self.starts.append(start_ns)
        self.offsets.append(self.tmp.tell())
        self.tmp.write(line)

    def write(self, out: IO[bytes]) -> int:
        """Sessions in order of their first turn, turns numbered by start time; returns sessions written."""
        self.tmp.flush()
        n_sessions = len(self.first_start)
        self.number.clear()
        # a counting sort groups turns by session in one array, without a list per session
        begin = array("q", [0]) * (n_sessions + 1)
        for no in self.session_of:
            begin[no + 1] += 1
        for i in range(n_sessions):
            begin[i + 1] += begin[i]
        fill = array("q", begin)
        grouped = array("q", [0]) * len(self.session_of)
        for i, no in enumerate(self.session_of):
            grouped[fill[no]] = i
            fill[no] += 1
        del fill
        starts, offsets = self.starts, self.offsets
        for no in sorted(range(n_sessions), key=self.first_start.__getitem__):
            turns = sorted(grouped[begin[no]:begin[no + 1]], key=lambda j: (starts[j], j))
            for n, i in enumerate(turns, 1):
                self.tmp.seek(offsets[i])
                out.write(self.tmp.readline().replace(b"\0", str(n).encode(), 1))
        self.tmp.close()
        return n_sessions


def import_otlp(paths: list[Path], out: Path, *, mapping: Mapping | None = None,
                redactor: Redactor | None = None, window: int = WINDOW_SPANS) -> ImportStats:
    """Read OTLP JSON files and write native traces (JSONL) to ``out``; returns what was read and made.

    Everything is checked before ``out`` is replaced: a bad file leaves no
    half-written output.
    """
    mapping = mapping or Mapping()
    stats = ImportStats(files=[str(p) for p in paths])
    builder = TurnBuilder(mapping, stats)
    sessions = _Sessions(out.parent)
    pending: dict[str, list[Span]] = {}
    logs: dict[str, list[LogRecord]] = {}
    finished_roots: deque[tuple[int, str]] = deque()
    done: set[str] = set()  # the last 2 windows of finished traces: a span of one of them is counted as late
    done_order: deque[str] = deque()

    last_seen: dict[str, int] = {}

    def finish(tid: str) -> None:
        last_seen.pop(tid, None)
        spans = pending.pop(tid, None)
        recs = logs.pop(tid, [])
        if not spans:
            stats.log_records_unattached += len(recs)
            return
        by_id = {s.span_id: s for s in spans}
        for rec in recs:
            target = by_id.get(rec.span_id)
            if target is None:
                stats.log_records_unattached += 1
            else:
                target.events.append(rec.event)
        children: dict[str, list[Span]] = {}
        roots = []
        for s in spans:
            if s.parent_id and s.parent_id in by_id and s.parent_id != s.span_id:
                children.setdefault(s.parent_id, []).append(s)
            else:
                roots.append(s)
        roots.sort(key=lambda s: s.start_ns)
        stats.traces += 1
        for root in roots:
            tree: list[Span] = []
            stack = [root]
            while stack:
                s = stack.pop()
                tree.append(s)
                stack.extend(sorted(children.get(s.span_id, []), key=lambda c: c.start_ns, reverse=True))
            turn_id = tid if len(roots) == 1 else f"{tid}-{root.span_id}"
            stats.turns += 1
            sessions.add(root.start_ns, builder.build(root, tree, turn_id), redactor)
        done.add(tid)
        done_order.append(tid)
        if len(done_order) > 2 * window:
            done.discard(done_order.popleft())

    n = 0
    for path in paths:
        for item in read_items(str(path)):
            if isinstance(item, LogRecord):
                stats.log_records += 1
                if item.trace_id in done:
                    stats.log_records_unattached += 1
                else:
                    logs.setdefault(item.trace_id, []).append(item)
                continue
            n += 1
            stats.spans += 1
            tid = item.trace_id
            if tid in done:  # a straggler after its trace was finished: counted, not silently merged
                stats.late_spans += 1
                continue
            pending.setdefault(tid, []).append(item)
            last_seen[tid] = n
            if not item.parent_id:
                finished_roots.append((n, tid))
            while finished_roots and finished_roots[0][0] + window <= n:
                _, old = finished_roots.popleft()
                if old in pending:
                    finish(old)
            if n % window == 0:  # traces whose root never came: finished once idle, so memory stays flat
                for old in [t for t, seen in last_seen.items() if seen + 2 * window <= n]:
                    finish(old)
    while finished_roots:
        _, old = finished_roots.popleft()
        if old in pending:
            finish(old)
    for tid in list(pending):  # traces whose root never arrived: each top span is a turn
        finish(tid)
    for tid in list(logs):
        stats.log_records_unattached += len(logs.pop(tid))
    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.with_name(out.name + ".part")
    with open(part, "wb") as fh:
        stats.sessions = sessions.write(fh)
    os.replace(part, out)
    stats.out = str(out)
    if redactor is not None:
        stats.redacted = redactor.summary()
    return stats
