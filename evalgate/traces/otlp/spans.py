"""OTLP spans and log records, decoded from their JSON form (ids, times, attribute values)."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any


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
