"""Reading OTLP JSON files: one export document or the collector's JSON lines, plain or gzip, streamed."""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from ...errors import Location, SuiteError
from .spans import LogRecord, Span, _attrs, _log, _span


def _bad(path: str, line: int | None, message: str, hint: str) -> SuiteError:
    return SuiteError(message, location=Location(path, line), hint=hint)


_SHAPE_HINT = ("an OTLP JSON file holds export requests: {\"resourceSpans\": [{\"resource\": ..., "
               "\"scopeSpans\": [{\"spans\": [...]}]}]}, one document or one per line")


def _check_request(obj: Any, path: str, line: int | None) -> dict[str, Any]:
    if not isinstance(obj, dict) or not ({"resourceSpans", "resourceLogs"} & set(obj)):
        keys = ", ".join(list(obj)[:5]) if isinstance(obj, dict) else type(obj).__name__
        raise _bad(path, line, f"not an OTLP export request (found {keys or 'an empty object'})", _SHAPE_HINT)
    return obj


def _items_of_request(obj: dict[str, Any], path: str, line: int | None) -> Iterator[Span | LogRecord]:
    for rs in obj.get("resourceSpans") or []:
        if not isinstance(rs, dict):
            raise _bad(path, line, "resourceSpans items must be objects", _SHAPE_HINT)
        resource = _attrs((rs.get("resource") or {}).get("attributes"))
        for ss in rs.get("scopeSpans") or rs.get("instrumentationLibrarySpans") or []:
            for sp in (ss or {}).get("spans") or []:
                if not isinstance(sp, dict) or not sp.get("traceId"):
                    raise _bad(path, line, "a span without a traceId", "each span needs traceId, spanId, name and times")
                yield _span(sp, resource)
    for rl in obj.get("resourceLogs") or []:
        for sl in (rl or {}).get("scopeLogs") or []:
            for lr in (sl or {}).get("logRecords") or []:
                if isinstance(lr, dict):
                    rec = _log(lr)
                    if rec is not None:
                        yield rec


def _open(path: str | Path) -> IO[bytes]:
    """The file's bytes, gunzipped on the fly when it is gzip (collectors often compress what they write)."""
    fh: IO[bytes] = open(path, "rb")
    if fh.read(2) == b"\x1f\x8b":
        fh.close()
        return gzip.open(path, "rb")  # type: ignore[return-value]  # a GzipFile reads like any binary file
    fh.seek(0)
    return fh


def read_items(path: str) -> Iterator[Span | LogRecord]:
    """Spans and span-linked log records from one OTLP JSON file (gzip or not), streamed."""
    try:
        fh = _open(path)
    except FileNotFoundError:
        raise SuiteError(f"OTLP file not found: {path}", hint="check the path") from None
    with fh:
        head = fh.read(1 << 16)
        stripped = head.lstrip()
        if not stripped:
            raise _bad(path, 1, "the file is empty", _SHAPE_HINT)
        if stripped[:1] != b"{":
            raise _bad(path, 1, "not JSON: an OTLP JSON file starts with '{'", _SHAPE_HINT)
        fh.seek(0)
        first = fh.readline()
        try:
            obj = json.loads(first)
            lines = isinstance(obj, dict)
        except ValueError:
            lines = False
        fh.seek(0)
        if lines:
            yield from _read_lines(fh, path)
        else:
            yield from _read_document_fast(fh, path)


def _read_lines(fh: IO[bytes], path: str) -> Iterator[Span | LogRecord]:
    for lineno, raw in enumerate(fh, 1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except ValueError as exc:
            raise _bad(path, lineno, f"not valid JSON ({str(exc.args[0]).split(':')[0]})",
                       "each line of a JSON-lines OTLP file is one export request; fix or remove this line") from None
        yield from _items_of_request(_check_request(obj, path, lineno), path, lineno)


_SPAN_PREFIXES = ("resourceSpans.item.scopeSpans.item.spans.item",
                  "resourceSpans.item.instrumentationLibrarySpans.item.spans.item")
_LOG_PREFIX = "resourceLogs.item.scopeLogs.item.logRecords.item"


def _scan_words(fh: IO[bytes], words: tuple[bytes, ...]) -> set[bytes]:
    """Which of ``words`` occur in the file (read in chunks, overlapping so none is split)."""
    found: set[bytes] = set()
    keep = max(len(w) for w in words)
    tail = b""
    fh.seek(0)
    while chunk := fh.read(1 << 22):
        block = tail + chunk
        found.update(w for w in words if w in block)
        tail = block[-keep:]
    fh.seek(0)
    return found


def _read_document_fast(fh: IO[bytes], path: str) -> Iterator[Span | LogRecord]:
    """One document whose spans share one resource (the usual case): spans built by ijson's C backend.

    Documents with several distinct resources, or the older
    ``instrumentationLibrarySpans`` name, take the event-by-event path.
    """
    import ijson

    _check_document_start(fh, path)
    words = _scan_words(fh, (b'"instrumentationLibrarySpans"', b'"resourceLogs"'))
    try:
        resources = [_attrs((r or {}).get("attributes")) for r in ijson.items(fh, "resourceSpans.item.resource")
                     if isinstance(r, dict)]
        distinct = {json.dumps(r, sort_keys=True, default=str) for r in resources}
        if len(distinct) > 1 or b'"instrumentationLibrarySpans"' in words:
            fh.seek(0)
            yield from _read_document(fh, path)
            return
        resource = resources[0] if resources else {}
        fh.seek(0)
        for obj in ijson.items(fh, _SPAN_PREFIXES[0], use_float=True):
            if not isinstance(obj, dict) or not obj.get("traceId"):
                raise _bad(path, None, "a span without a traceId", "each span needs traceId, spanId, name and times")
            yield _span(obj, resource)
        if b'"resourceLogs"' in words:
            fh.seek(0)
            for obj in ijson.items(fh, _LOG_PREFIX, use_float=True):
                rec = _log(obj) if isinstance(obj, dict) else None
                if rec is not None:
                    yield rec
    except ijson.JSONError as exc:
        raise _bad(path, _error_line(fh, path), f"not valid JSON ({exc})", _SHAPE_HINT) from None


def _check_document_start(fh: IO[bytes], path: str) -> None:
    """The document is an object whose first key is resourceSpans or resourceLogs."""
    import ijson

    fh.seek(0)
    try:
        for prefix, event, value in ijson.parse(fh):
            if prefix == "" and event == "map_key":
                if value not in ("resourceSpans", "resourceLogs"):
                    raise _bad(path, 1, f"not an OTLP export request (found {value})", _SHAPE_HINT)
                break
            if prefix == "" and event not in ("start_map",):
                raise _bad(path, 1, "not an OTLP export request " + ("(empty object)" if event == "end_map" else
                                                                     "(the document is not a JSON object)"), _SHAPE_HINT)
    except ijson.JSONError as exc:
        raise _bad(path, _error_line(fh, path), f"not valid JSON ({exc})", _SHAPE_HINT) from None
    fh.seek(0)


def _read_document(fh: IO[bytes], path: str) -> Iterator[Span | LogRecord]:
    """One (large) JSON document, parsed incrementally: one span in memory at a time."""
    import ijson

    resource: dict[str, Any] = {}
    builder: Any = None
    building: str | None = None
    depth = 0
    top_keys = 0
    saw_request = False
    try:
        for prefix, event, value in ijson.parse(fh, use_float=True):
            if builder is not None:
                builder.event(event, value)
                if event in ("start_map", "start_array"):
                    depth += 1
                elif event in ("end_map", "end_array"):
                    depth -= 1
                    if depth == 0:
                        obj, kind = builder.value, building
                        builder, building = None, None
                        if kind == "resource":
                            resource = _attrs((obj or {}).get("attributes"))
                        elif kind == "span":
                            if not isinstance(obj, dict) or not obj.get("traceId"):
                                raise _bad(path, None, "a span without a traceId", "each span needs traceId, spanId, name and times")
                            yield _span(obj, resource)
                        elif kind == "log" and isinstance(obj, dict):
                            rec = _log(obj)
                            if rec is not None:
                                yield rec
                continue
            if event == "map_key" and prefix == "":
                top_keys += 1
                if value in ("resourceSpans", "resourceLogs"):
                    saw_request = True
            elif event == "start_map":
                kind = ("span" if prefix in _SPAN_PREFIXES else "log" if prefix == _LOG_PREFIX
                        else "resource" if prefix == "resourceSpans.item.resource" else None)
                if prefix == "resourceSpans.item":
                    resource = {}
                if kind is not None:
                    builder, building, depth = ijson.ObjectBuilder(), kind, 1
                    builder.event(event, value)
            elif prefix == "" and event in ("start_array", "string", "number", "boolean", "null"):
                raise _bad(path, 1, "not an OTLP export request (the document is not a JSON object)", _SHAPE_HINT)
    except ijson.JSONError as exc:
        raise _bad(path, _error_line(fh, path), f"not valid JSON ({exc})", _SHAPE_HINT) from None
    if not saw_request:
        raise _bad(path, 1, "not an OTLP export request (no resourceSpans)" if top_keys else "not an OTLP export request (empty object)",
                   _SHAPE_HINT)


def _error_line(fh: IO[bytes], path: str) -> int | None:
    """The line of a JSON syntax error, found with the standard parser (small files only)."""
    if os.path.getsize(path) > 256 * 1024 * 1024:
        return None
    try:
        json.loads(Path(path).read_bytes())
    except ValueError as exc:
        return getattr(exc, "lineno", None)
    return None


def is_otlp(path: Path | str) -> bool:
    """Whether a file looks like OTLP JSON (by name, else by its first bytes)."""
    name = str(path).lower()
    if name.endswith((".otlp.json", ".otlp.jsonl", ".otlp.json.gz", ".otlp.jsonl.gz")):
        return True
    try:
        with _open(path) as fh:
            head = fh.read(4096)
    except (OSError, EOFError):
        return False
    return b'"resourceSpans"' in head or b'"resourceLogs"' in head
