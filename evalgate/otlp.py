"""OTLP JSON import: spans in the OpenTelemetry GenAI or OpenInference
conventions → native traces (one turn per request span tree) → sessions.

Input is the protobuf-JSON form of an ExportTraceServiceRequest
(``resourceSpans → scopeSpans → spans``, and ``resourceLogs`` for GenAI
events sent as log records), either as JSON lines (the collector's file
exporter: one request per line) or as one document, streamed with ijson.
Memory stays flat in the file's size: a trace is finished once its root span
has been seen and a window of later spans has passed, and finished turns go
to a temporary file with one (time, offset) pair per turn kept to order the
sessions at the end.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import os
import re
import tempfile
from array import array
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from .errors import Location, SuiteError
from .redact import Redactor

WINDOW_SPANS = 10_000
"""Spans read after a trace's root before the trace is finished (late children still join it)."""

MAX_UNMAPPED_NAMES = 500


# --- the mapping ------------------------------------------------------------


@dataclass(frozen=True)
class FieldRule:
    """Where one native field comes from: attributes, optionally only on spans of one name."""

    attributes: tuple[str, ...]
    span_name: str | None = None


@dataclass(frozen=True)
class Mapping:
    """Where a team keeps route, state, user groups (and more) in its own attributes."""

    route: FieldRule | None = FieldRule(("evalgate.route",))
    state: FieldRule | None = FieldRule(("evalgate.state",))
    groups: FieldRule | None = FieldRule(("evalgate.user.groups",))
    user: FieldRule | None = FieldRule(("user.id", "enduser.id"))
    session: FieldRule | None = FieldRule(("session.id", "gen_ai.conversation.id"))
    input: FieldRule | None = None
    output: FieldRule | None = None

    def attribute_names(self) -> set[str]:
        names: set[str] = set()
        for rule in (self.route, self.state, self.groups, self.user, self.session, self.input, self.output):
            if rule is not None:
                names.update(rule.attributes)
        return names


MAPPING_FIELDS = ("route", "state", "groups", "user", "session", "input", "output")


def parse_mapping(data: Any, where: str = "mapping") -> Mapping:
    """A Mapping from YAML: ``{route: {span_name: route_decision, attribute: app.route}, ...}``.

    A field given replaces its default; ``attribute`` may be a list (first found wins).
    Raises ValueError with a readable message.
    """
    if data is None:
        return Mapping()
    if not isinstance(data, dict):
        raise ValueError(f"{where} is a mapping of field → {{attribute: NAME, span_name: NAME}}")
    rules: dict[str, FieldRule | None] = {}
    for key, value in data.items():
        if key not in MAPPING_FIELDS:
            from .errors import did_you_mean

            hint = did_you_mean(str(key), MAPPING_FIELDS)
            raise ValueError(f"unknown {where} field '{key}'" + (f" ({hint})" if hint else f"; known: {', '.join(MAPPING_FIELDS)}"))
        if value is None:
            rules[key] = None
            continue
        if isinstance(value, str):
            value = {"attribute": value}
        if not isinstance(value, dict) or "attribute" not in value or set(value) - {"attribute", "span_name"}:
            raise ValueError(f"{where}.{key} takes {{attribute: NAME (or a list), span_name: NAME (optional)}}")
        attrs = value["attribute"]
        attrs = (attrs,) if isinstance(attrs, str) else tuple(str(a) for a in attrs)
        span = value.get("span_name")
        rules[key] = FieldRule(attrs, str(span) if span is not None else None)
    return Mapping(**rules)


def load_mapping(path: Path) -> Mapping:
    """A mapping file (YAML), errors at its location."""
    from ._yaml import load_yaml

    if not path.is_file():
        raise SuiteError(f"mapping file not found: {path}", hint="--mapping takes a YAML file of field → {attribute, span_name}")
    doc = load_yaml(path)
    data = doc.data.get("mapping", doc.data) if isinstance(doc.data, dict) else doc.data
    try:
        return parse_mapping(data)
    except ValueError as exc:
        raise SuiteError(str(exc), location=Location(str(path), 1),
                         hint="e.g. route: {span_name: route_decision, attribute: app.route}") from None


# --- spans ------------------------------------------------------------------


@dataclass(slots=True)
class Event:
    """A span event or a log record attached to a span: a name and attributes."""

    name: str
    attrs: dict[str, Any]


@dataclass(slots=True)
class Span:
    """One OTLP span, its attribute values decoded."""

    trace_id: str
    span_id: str
    parent_id: str
    name: str
    start_ns: int
    end_ns: int
    attrs: dict[str, Any]
    events: list[Event]
    error: str | None
    resource: dict[str, Any]


def _any_value(v: Any) -> Any:
    """An OTLP AnyValue (``{stringValue: ...}`` etc.) as a Python value."""
    if type(v) is not dict:
        return v
    s = v.get("stringValue")
    if s is not None:
        return s
    for key, val in v.items():
        if key == "intValue":
            try:
                return int(val)
            except (TypeError, ValueError):
                return val
        if key == "doubleValue":
            try:
                return float(val)
            except (TypeError, ValueError):
                return val
        if key == "boolValue":
            return bool(val)
        if key == "arrayValue":
            return [_any_value(x) for x in (val or {}).get("values", []) or []]
        if key == "kvlistValue":
            return _attrs((val or {}).get("values"))
        if key == "bytesValue":
            return val
    return None


def _attrs(items: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if not isinstance(items, list):
        return out
    for kv in items:
        try:
            out[kv["key"]] = _any_value(kv.get("value"))
        except (TypeError, KeyError, AttributeError):
            continue
    return out


_HEX = re.compile(r"[0-9a-fA-F]+")


def _id(value: Any) -> str:
    """Trace and span ids as lower-case hex (the JSON encoding), also from base64 exporters."""
    if not value:
        return ""
    text = str(value)
    if _HEX.fullmatch(text) and len(text) in (16, 32):
        return text.lower()
    try:
        raw = base64.b64decode(text, validate=True)
        if len(raw) in (8, 16):
            return raw.hex()
    except (binascii.Error, ValueError):
        pass
    return text


def _ns(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


_ERROR_CODES = {2, "2", "STATUS_CODE_ERROR", "ERROR"}


def _span(d: dict[str, Any], resource: dict[str, Any]) -> Span:
    status = d.get("status") or {}
    events = [Event(str(e.get("name", "")), _attrs(e.get("attributes"))) for e in d.get("events") or [] if isinstance(e, dict)]
    error = None
    if isinstance(status, dict) and status.get("code") in _ERROR_CODES:
        error = str(status.get("message") or "error status")
    return Span(_id(d.get("traceId")), _id(d.get("spanId")), _id(d.get("parentSpanId")), str(d.get("name", "")),
                _ns(d.get("startTimeUnixNano")), _ns(d.get("endTimeUnixNano")), _attrs(d.get("attributes")),
                events, error, resource)


@dataclass(slots=True)
class LogRecord:
    """A log record tied to a span (GenAI events sent as logs)."""

    trace_id: str
    span_id: str
    event: Event


def _log(d: dict[str, Any]) -> LogRecord | None:
    attrs = _attrs(d.get("attributes"))
    name = str(d.get("eventName") or attrs.pop("event.name", "") or "")
    body = _any_value(d.get("body")) if d.get("body") is not None else None
    if isinstance(body, dict):
        attrs = {**attrs, **body}
    elif body is not None:
        attrs["content"] = body
    tid, sid = _id(d.get("traceId")), _id(d.get("spanId"))
    if not tid or not name:
        return None
    return LogRecord(tid, sid, Event(name, attrs))


# --- reading files ------------------------------------------------------------


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


# --- conventions ----------------------------------------------------------------

OI_KIND = "openinference.span.kind"
LLM_OPERATIONS = {"chat", "text_completion", "generate_content", "completion", "embeddings"}
_IDX = re.compile(r"\.\d+(?=\.|$)")

# attribute names (indices as .N) that the import maps; anything else is reported as unmapped
KNOWN = {
    OI_KIND, "input.value", "input.mime_type", "output.value", "output.mime_type", "session.id", "user.id",
    "llm.model_name", "llm.provider", "llm.system", "llm.invocation_parameters",
    "llm.token_count.prompt", "llm.token_count.completion", "llm.token_count.total",
    "llm.input_messages.N.message.role", "llm.input_messages.N.message.content",
    "llm.input_messages.N.message.contents.N.message_content.type",
    "llm.input_messages.N.message.contents.N.message_content.text",
    "llm.output_messages.N.message.role", "llm.output_messages.N.message.content",
    "llm.output_messages.N.message.contents.N.message_content.type",
    "llm.output_messages.N.message.contents.N.message_content.text",
    "llm.output_messages.N.message.tool_calls.N.tool_call.function.name",
    "llm.output_messages.N.message.tool_calls.N.tool_call.function.arguments",
    "llm.output_messages.N.message.tool_calls.N.tool_call.id",
    "retrieval.documents.N.document.id", "retrieval.documents.N.document.score",
    "retrieval.documents.N.document.content", "retrieval.documents.N.document.metadata",
    "tool.name", "tool.parameters", "tool.description",
    "gen_ai.operation.name", "gen_ai.system", "gen_ai.provider.name", "gen_ai.request.model", "gen_ai.response.model",
    "gen_ai.request.temperature", "gen_ai.request.max_tokens", "gen_ai.request.top_p", "gen_ai.request.top_k",
    "gen_ai.request.seed", "gen_ai.request.frequency_penalty", "gen_ai.request.presence_penalty",
    "gen_ai.request.stop_sequences",
    "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "gen_ai.usage.prompt_tokens",
    "gen_ai.usage.completion_tokens", "gen_ai.conversation.id",
    "gen_ai.tool.name", "gen_ai.tool.call.id", "gen_ai.tool.call.arguments", "gen_ai.tool.call.result",
    "gen_ai.tool.description", "gen_ai.tool.type",
    "gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions",
    "gen_ai.prompt.N.role", "gen_ai.prompt.N.content", "gen_ai.completion.N.role", "gen_ai.completion.N.content",
    "gen_ai.completion.N.finish_reason", "gen_ai.response.finish_reasons", "gen_ai.response.id",
    "error.type", "enduser.id",
}
KNOWN_EVENTS = {"exception", "gen_ai.system.message", "gen_ai.user.message", "gen_ai.assistant.message",
                "gen_ai.tool.message", "gen_ai.choice", "gen_ai.content.prompt", "gen_ai.content.completion",
                "gen_ai.client.inference.operation.details"}
PARAM_ATTRS = {"gen_ai.request.temperature": "temperature", "gen_ai.request.max_tokens": "max_tokens",
               "gen_ai.request.top_p": "top_p", "gen_ai.request.top_k": "top_k", "gen_ai.request.seed": "seed",
               "gen_ai.request.frequency_penalty": "frequency_penalty",
               "gen_ai.request.presence_penalty": "presence_penalty", "gen_ai.request.stop_sequences": "stop"}


def _normal(key: str) -> str:
    return _IDX.sub(".N", key)


def _json(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _kind(span: Span) -> str:
    """LLM, RETRIEVER, TOOL, CHAIN, AGENT, ... from either convention."""
    kind = span.attrs.get(OI_KIND)
    if isinstance(kind, str) and kind:
        return kind.upper()
    op = span.attrs.get("gen_ai.operation.name")
    if op == "execute_tool":
        return "TOOL"
    if op in ("invoke_agent", "create_agent"):
        return "AGENT"
    if op in LLM_OPERATIONS or "gen_ai.request.model" in span.attrs or "gen_ai.prompt.0.content" in span.attrs:
        return "LLM"
    if any(k.startswith("retrieval.documents.") for k in span.attrs):
        return "RETRIEVER"
    return "CHAIN"


def _indexed(attrs: dict[str, Any], prefix: str) -> dict[int, dict[str, Any]]:
    """``prefix.N.rest`` attributes grouped by N: {N: {rest: value}}."""
    out: dict[int, dict[str, Any]] = {}
    dotted = prefix + "."
    plen = len(dotted)
    for key, value in attrs.items():
        if key.startswith(dotted):
            idx, _, rest = key[plen:].partition(".")
            if idx.isdigit():
                out.setdefault(int(idx), {})[rest] = value
    return dict(sorted(out.items())) if len(out) > 1 else out


def _text_of(content: Any) -> str | None:
    """Message content as text: a string, OI content items, or GenAI parts."""
    if content is None:
        return None
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [t for t in (_text_of(p) for p in content) if t]
        return "\n".join(texts) if texts else None
    if isinstance(content, dict):
        for key in ("content", "text"):
            if isinstance(content.get(key), str):
                return str(content[key])
        if "parts" in content:
            return _text_of(content["parts"])
    return None


@dataclass
class Message:
    role: str
    content: str | None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)


def _genai_message(m: Any) -> Message | None:
    m = _json(m)
    if not isinstance(m, dict):
        return None
    calls: list[dict[str, Any]] = []
    parts = _list(m.get("parts"))
    texts = []
    for p in parts:
        if isinstance(p, dict) and p.get("type") == "tool_call":
            calls.append({"name": p.get("name"), "arguments": _json(p.get("arguments"))})
        elif isinstance(p, dict) and p.get("type") == "text":
            texts.append(str(p.get("content", "")))
    for tc in _list(m.get("tool_calls")):
        fn = tc.get("function") if isinstance(tc, dict) else None
        if isinstance(fn, dict):
            calls.append({"name": fn.get("name"), "arguments": _json(fn.get("arguments"))})
    content = "\n".join(texts) if texts else _text_of(m.get("content"))
    return Message(str(m.get("role") or "assistant"), content, calls)


def _messages(span: Span) -> tuple[list[Message], list[Message]]:
    """(input messages, output messages) of an LLM span, from whichever convention it uses."""
    a = span.attrs
    ins: list[Message] = []
    outs: list[Message] = []
    for key, target in (("llm.input_messages", ins), ("llm.output_messages", outs)):
        for _, m in _indexed(a, key).items():
            content = m.get("message.content")
            if content is None:
                parts = [v for k, v in sorted(m.items()) if k.endswith("message_content.text")]
                content = "\n".join(str(p) for p in parts) if parts else None
            calls = _oi_tool_calls(m)
            target.append(Message(str(m.get("message.role") or ""), None if content is None else str(content), calls))
    for key, target in (("gen_ai.input.messages", ins), ("gen_ai.output.messages", outs)):
        value = _json(a.get(key))
        if isinstance(value, list):
            target.extend(m for m in map(_genai_message, value) if m is not None)
    for key, target in (("gen_ai.prompt", ins), ("gen_ai.completion", outs)):
        for _, m in _indexed(a, key).items():
            target.append(Message(str(m.get("role") or ""), None if m.get("content") is None else str(m.get("content"))))
    for ev in span.events:
        n = ev.name
        if n in ("gen_ai.system.message", "gen_ai.user.message", "gen_ai.assistant.message", "gen_ai.tool.message"):
            role = str(ev.attrs.get("role") or n.split(".")[1])
            msg = _genai_message({**ev.attrs, "role": role})
            if msg is not None:
                ins.append(msg)
        elif n == "gen_ai.choice":
            body = _json(ev.attrs.get("message"))
            msg = _genai_message(body if isinstance(body, dict) else {"role": "assistant", "content": ev.attrs.get("content")})
            if msg is not None:
                outs.append(msg)
        elif n == "gen_ai.client.inference.operation.details":  # the latest conventions: messages on one event
            for key, target in (("gen_ai.input.messages", ins), ("gen_ai.output.messages", outs)):
                target.extend(m for m in map(_genai_message, _list(ev.attrs.get(key))) if m is not None)
        elif n == "gen_ai.content.prompt":
            for m in _list(ev.attrs.get("gen_ai.prompt")):
                msg = _genai_message(m)
                if msg is not None:
                    ins.append(msg)
        elif n == "gen_ai.content.completion":
            for m in _list(ev.attrs.get("gen_ai.completion")):
                msg = _genai_message(m)
                if msg is not None:
                    outs.append(msg)
    return ins, outs


def _list(value: Any) -> list[Any]:
    value = _json(value)
    return value if isinstance(value, list) else []


def _oi_tool_calls(m: dict[str, Any]) -> list[dict[str, Any]]:
    calls: dict[int, dict[str, Any]] = {}
    for k, v in m.items():
        if not k.startswith("message.tool_calls."):
            continue
        idx, _, rest = k[len("message.tool_calls."):].partition(".")
        if idx.isdigit():
            c = calls.setdefault(int(idx), {})
            if rest == "tool_call.function.name":
                c["name"] = v
            elif rest == "tool_call.function.arguments":
                c["arguments"] = _json(v)
    return [calls[i] for i in sorted(calls) if calls[i].get("name")]


def _first(attrs: dict[str, Any], *names: str) -> Any:
    for n in names:
        v = attrs.get(n)
        if v is not None and v != "":
            return v
    return None


def _int(v: Any) -> int | None:
    try:
        return int(v) if v is not None and not isinstance(v, bool) else None
    except (TypeError, ValueError):
        return None


_TEXT_KEYS = ("input", "query", "question", "message", "content", "text", "prompt", "output", "answer", "response", "result")


def _value_text(value: Any) -> str | None:
    """``input.value``/``output.value`` as the turn's text: a string, or a JSON object's main text field."""
    value = _json(value)
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        for key in _TEXT_KEYS:
            if isinstance(value.get(key), str):
                return str(value[key])
        if isinstance(value.get("messages"), list):
            users = [m for m in value["messages"] if isinstance(m, dict) and m.get("role") in ("user", "human")]
            if users:
                return _text_of(users[-1])
    return json.dumps(value, ensure_ascii=False)


def _context(retrievers: list[Span]) -> list[dict[str, Any]]:
    """Retrieved documents, in order across the retriever spans, ranked from 1."""
    context: list[dict[str, Any]] = []
    for s in retrievers:
        for n, d in _indexed(s.attrs, "retrieval.documents").items():
            meta = _json(d.get("document.metadata"))
            item: dict[str, Any] = {"id": str(d.get("document.id", f"{s.name}#{n}")), "rank": len(context) + 1}
            score = d.get("document.score")
            if isinstance(score, (int, float)) and not isinstance(score, bool):
                item["score"] = float(score)
            if isinstance(d.get("document.content"), str):
                item["content"] = d["document.content"]
            if isinstance(meta, dict) and isinstance(meta.get("groups"), list):
                item["groups"] = [str(g) for g in meta["groups"]]
            context.append(item)
    return context


def _requested_calls(messages: list[tuple[list[Message], list[Message]]]) -> list[dict[str, Any]]:
    """Tool calls the model asked for, when no tool span recorded them."""
    calls = []
    for _, outs in messages:
        for m in outs:
            for c in m.tool_calls:
                args = c.get("arguments")
                calls.append({"name": str(c.get("name")), "arguments": args if isinstance(args, dict) else {}})
    return calls


def _model(last: dict[str, Any]) -> dict[str, Any]:
    """Model name, provider and parameters from the last model call's attributes."""
    name = _first(last, "gen_ai.response.model", "llm.model_name", "gen_ai.request.model")
    provider = _first(last, "gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system")
    params = _json(last.get("llm.invocation_parameters"))
    params = dict(params) if isinstance(params, dict) else {}
    for attr, pname in PARAM_ATTRS.items():
        if attr in last:
            params[pname] = last[attr]
    if name is None and isinstance(params.get("model"), str):
        name = params["model"]  # a failed call has no response model: the requested one
    model: dict[str, Any] = {}
    if name is not None:
        model["name"] = str(name)
    if provider is not None:
        model["provider"] = str(provider)
    if params:
        model["params"] = params
    return model


def _usage(llms: list[Span]) -> dict[str, int] | None:
    """Tokens summed over the model calls; None when none reported any."""
    tin = tout = 0
    seen = False
    for s in llms:
        i = _int(_first(s.attrs, "gen_ai.usage.input_tokens", "llm.token_count.prompt", "gen_ai.usage.prompt_tokens"))
        o = _int(_first(s.attrs, "gen_ai.usage.output_tokens", "llm.token_count.completion", "gen_ai.usage.completion_tokens"))
        seen = seen or i is not None or o is not None
        tin += i or 0
        tout += o or 0
    return {"input_tokens": tin, "output_tokens": tout} if seen else None


def _latency(root: Span, tree: list[Span], kinds: list[str]) -> dict[str, float]:
    """The root span's duration, and the time spent in model, retriever and tool spans."""
    latency = {"total": round((root.end_ns - root.start_ns) / 1e6, 3)}
    for label, kind in (("model", "LLM"), ("context", "RETRIEVER"), ("tools", "TOOL")):
        spans = [s for s, k in zip(tree, kinds) if k == kind]
        if spans:
            latency[label] = round(sum(s.end_ns - s.start_ns for s in spans) / 1e6, 3)
    return latency


# --- spans → turns ------------------------------------------------------------


@dataclass
class ImportStats:
    """What an import read and made, and what it could not map."""

    files: list[str] = field(default_factory=list)
    spans: int = 0
    late_spans: int = 0
    """Spans that arrived after their trace was finished (more than the window after its root); not used."""
    log_records: int = 0
    log_records_unattached: int = 0
    traces: int = 0
    turns: int = 0
    error_turns: int = 0
    sessions: int = 0
    documents: int = 0
    tool_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    models: Counter[str] = field(default_factory=Counter)
    unmapped: Counter[str] = field(default_factory=Counter)
    """Attribute (and event) names the import did not map, with how many spans carried them."""
    redacted: dict[str, int] = field(default_factory=dict)
    out: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"files": self.files, "out": self.out, "spans": self.spans, "late_spans": self.late_spans,
                "log_records": self.log_records,
                "log_records_unattached": self.log_records_unattached, "traces": self.traces, "turns": self.turns,
                "error_turns": self.error_turns, "sessions": self.sessions, "documents": self.documents,
                "tool_calls": self.tool_calls, "tokens": {"input": self.input_tokens, "output": self.output_tokens},
                "models": dict(self.models.most_common()), "unmapped": dict(self.unmapped.most_common()),
                "redacted": self.redacted}


class TurnBuilder:
    """Turns one request's span tree into a native trace (a dict)."""

    def __init__(self, mapping: Mapping, stats: ImportStats):
        self.mapping = mapping
        self.stats = stats
        self.known = KNOWN | mapping.attribute_names()

    def _note_unmapped(self, span: Span) -> None:
        unmapped = self.stats.unmapped
        for key in span.attrs:
            if key in self.known:
                continue
            norm = _normal(key)
            if norm in self.known:
                continue
            if norm in unmapped or len(unmapped) < MAX_UNMAPPED_NAMES:
                unmapped[norm] += 1
        for ev in span.events:
            if ev.name not in KNOWN_EVENTS:
                key = f"event:{ev.name}"
                if key in unmapped or len(unmapped) < MAX_UNMAPPED_NAMES:
                    unmapped[key] += 1

    def _lookup(self, rule: FieldRule | None, tree: list[Span]) -> Any:
        if rule is None:
            return None
        for span in tree:
            if rule.span_name is not None and span.name != rule.span_name:
                continue
            v = _first(span.attrs, *rule.attributes)
            if v is not None:
                return v
        if rule.span_name is None:
            return _first(tree[0].resource, *rule.attributes)
        return None

    def build(self, root: Span, tree: list[Span], trace_id: str) -> dict[str, Any]:
        """The native trace (a dict, native field order) of one request's span tree, root first."""
        st = self.stats
        for s in tree:
            self._note_unmapped(s)
        kinds = [_kind(s) for s in tree]
        llms = [s for s, k in zip(tree, kinds) if k == "LLM"]
        messages = [_messages(s) for s in llms]

        turn: dict[str, Any] = {"v": 1, "trace_id": trace_id}
        session = self._lookup(self.mapping.session, tree)
        turn["session_id"] = str(session) if session is not None else trace_id
        turn["timestamp"] = datetime.fromtimestamp(root.start_ns / 1e9, tz=timezone.utc).isoformat().replace("+00:00", "Z")
        user = self._user(tree)
        if user is not None:
            turn["user"] = user
        turn["input"] = self._input(root, tree, messages)
        route = self._lookup(self.mapping.route, tree)
        if route is not None:
            turn["route"] = {"name": str(route)}
        context = _context([s for s, k in zip(tree, kinds) if k == "RETRIEVER"])
        if context:
            turn["context"] = context
            st.documents += len(context)
        calls = [self._tool_call(s) for s, k in zip(tree, kinds) if k == "TOOL"] or _requested_calls(messages)
        if calls:
            turn["tool_calls"] = calls
            st.tool_calls += len(calls)
        if llms:
            model = _model(llms[-1].attrs)
            if model:
                turn["model"] = model
                if "name" in model:
                    st.models[model["name"]] += 1
            usage = _usage(llms)
            if usage is not None:
                turn["usage"] = usage
                st.input_tokens += usage["input_tokens"]
                st.output_tokens += usage["output_tokens"]
        output = self._output(root, tree, messages)
        if output is not None:
            turn["output"] = output
        state = _json(self._lookup(self.mapping.state, tree))
        if isinstance(state, dict):
            turn["state"] = state
        turn["latency_ms"] = _latency(root, tree, kinds)
        error = self._turn_error(root, tree)
        if error is not None:
            turn["error"] = error
            st.error_turns += 1
        extra: dict[str, Any] = {"span": root.name}
        service = root.resource.get("service.name")
        if service is not None:
            extra["service"] = service
        turn["extra"] = {"otlp": extra}
        return turn

    def _user(self, tree: list[Span]) -> dict[str, Any] | None:
        user_id = self._lookup(self.mapping.user, tree)
        groups = _json(self._lookup(self.mapping.groups, tree))
        if isinstance(groups, str):
            groups = [g for g in re.split(r"[,\s]+", groups) if g]
        if user_id is None and not groups:
            return None
        return {"id": str(user_id) if user_id is not None else "anonymous",
                "groups": [str(g) for g in groups] if isinstance(groups, list) else []}

    def _input(self, root: Span, tree: list[Span], messages: list[tuple[list[Message], list[Message]]]) -> str:
        """The mapping's, else the root's ``input.value``, else the first model call's last user message."""
        text = self._lookup(self.mapping.input, tree) if self.mapping.input else None
        if text is None:
            text = _value_text(root.attrs.get("input.value"))
        if text is None:
            for ins, _ in messages:
                users = [m for m in ins if m.role in ("user", "human") and m.content]
                if users:
                    text = users[-1].content
                    break
        return str(text) if text is not None else ""

    def _output(self, root: Span, tree: list[Span], messages: list[tuple[list[Message], list[Message]]]) -> str | None:
        """The mapping's, else the root's ``output.value``, else the last model call's answer."""
        output = self._lookup(self.mapping.output, tree) if self.mapping.output else None
        if output is None:
            output = _value_text(root.attrs.get("output.value"))
        if output is None:
            for _, outs in reversed(messages):
                texts = [m.content for m in outs if m.content]
                if texts:
                    output = texts[-1]
                    break
        return str(output) if output is not None else None

    def _tool_call(self, s: Span) -> dict[str, Any]:
        """A TOOL / execute_tool span as a native tool call."""
        name = _first(s.attrs, "tool.name", "gen_ai.tool.name") or s.name.removeprefix("execute_tool ").strip()
        args = _json(_first(s.attrs, "gen_ai.tool.call.arguments", "input.value"))
        if not isinstance(args, dict):
            params = _json(s.attrs.get("tool.parameters"))
            args = params if isinstance(params, dict) and "properties" not in params else ({} if args is None else {"input": args})
        call: dict[str, Any] = {"name": str(name), "arguments": args}
        result = _json(_first(s.attrs, "gen_ai.tool.call.result", "output.value"))
        if result is not None:
            call["result"] = result
        err = self._span_error(s)
        if err:
            call["error"] = err
        return call

    def _turn_error(self, root: Span, tree: list[Span]) -> str | None:
        """The root's error, else the first error status or exception event in the tree."""
        error = self._span_error(root)
        if error is None:
            for s in tree[1:]:
                exc = self._span_error(s)
                if exc is not None:
                    return f"{s.name}: {exc}"
        return error

    @staticmethod
    def _exception(span: Span) -> str | None:
        for ev in span.events:
            if ev.name == "exception":
                t, m = ev.attrs.get("exception.type"), ev.attrs.get("exception.message")
                return ": ".join(str(x) for x in (t, m) if x) or "exception"
        return None

    def _span_error(self, span: Span) -> str | None:
        exc = self._exception(span)
        if exc is not None:
            return exc
        if span.error is not None:
            etype = span.attrs.get("error.type")
            return f"{etype}: {span.error}" if etype and str(etype) not in span.error else span.error
        return None


# --- traces → sessions → the output file ---------------------------------------


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

    def add(self, session: str, start_ns: int, turn: dict[str, Any]) -> None:
        """One turn; stored as its head (up to ``"turn":``) and the rest, to number it without re-parsing."""
        head = {"v": turn.pop("v"), "trace_id": turn.pop("trace_id"), "session_id": turn.pop("session_id")}
        rest = json.dumps(turn, ensure_ascii=False, separators=(",", ":"))[1:]
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
            turn = builder.build(root, tree, turn_id)
            if redactor is not None and redactor.enabled:
                trace_hex = turn.pop("trace_id")  # OTLP ids are hex: nothing to redact, and costly to scan
                if redactor.finds(json.dumps(turn, ensure_ascii=False)):
                    turn = redactor.value(turn)
                turn["trace_id"] = trace_hex
            stats.turns += 1
            sessions.add(str(turn["session_id"]), root.start_ns, turn)
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
