"""A suite's recordings and what each incoming call is served: recorded, live, changed, missing or failed.

The book is shared by the proxy's thread (deciding calls, keeping answers) and the runner's (opening and
closing turns), so every change to it happens under its lock; each decision is a few dictionary look-ups.
"""

from __future__ import annotations

import base64
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from ..errors import display_path
from ..redact import Redactor, build_redactor
from .chat import Messages, normalised
from .recordings import (
    NOT_JSON,
    VOLATILE_FIELDS,
    Key,
    Recording,
    body_value,
    canonical,
    json_body,
)
from .recordings import write as write_recordings

Mode = Literal["record", "replay", "live"]
Served = Literal["recorded", "live", "changed", "missing", "failed"]
_LISTED = 50
"""Changed and missing calls a summary names, at most (the counts are whole)."""


@dataclass
class Upstream:
    """One upstream as the run serves it: the real URL and the headers added to calls that reach it."""

    name: str
    url: str
    openai: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    """Expanded values: secrets, never recorded, stored or printed."""
    port: int = 0

    @property
    def origin(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def base_path(self) -> str:
        """The real URL's path (``/v1``), which the proxy's URL keeps so clients append to it as usual."""
        return urlsplit(self.url).path.rstrip("/")


class Secrets:
    """The values of the headers the proxy adds, scrubbed from everything it records, answers or reports."""

    def __init__(self, upstreams: list[Upstream]):
        values = {v.strip() for u in upstreams for v in u.headers.values()}
        values |= {part for u in upstreams for v in u.headers.values() for part in v.split()[1:]}
        self.values = sorted((v for v in values if len(v) >= 8), key=len, reverse=True)  # "Bearer TOKEN", TOKEN
        self._bytes = [(v.encode(), b"[redacted]") for v in self.values]

    def text(self, text: str) -> str:
        for secret in self.values:
            if secret in text:
                text = text.replace(secret, "[redacted]")
        return text

    def data(self, data: bytes) -> bytes:
        for secret, mark in self._bytes:
            if secret in data:
                data = data.replace(secret, mark)
        return data


@dataclass
class Seed:
    """Production's answer for one turn, from its recorded trace: the prompt the model received and what it said."""

    messages: Messages
    output: str
    model: str
    usage: dict[str, int] | None = None


def seed_from(recorded: Any) -> Seed | None:
    """The seed of a recorded trace that has its prompt and output, else None."""
    if recorded is None or not getattr(recorded, "prompt", None) or recorded.output is None:
        return None
    messages = normalised([{"role": m.role, "content": m.content} for m in recorded.prompt])
    if messages is None:
        return None
    model = (recorded.model.name or recorded.model.requested) if recorded.model is not None else None
    usage = None
    if recorded.usage is not None and recorded.usage.input_tokens is not None and recorded.usage.output_tokens is not None:
        usage = {"prompt_tokens": recorded.usage.input_tokens, "completion_tokens": recorded.usage.output_tokens,
                 "total_tokens": recorded.usage.input_tokens + recorded.usage.output_tokens}
    return Seed(messages, recorded.output, model or "recorded", usage)


@dataclass
class Visit:
    """One turn in flight, as the proxy attributes calls to it."""

    book: Book
    case: str
    repeat: int
    turn: int
    trace_id: str
    seed: Seed | None = None
    calls: list[dict[str, Any]] = field(default_factory=list)
    """What the turn shows: one entry per call, in arrival order."""
    markers: dict[str, str] = field(default_factory=dict)
    """The eval-traffic headers of the turn's own request (run, case, turn, repeat, traceparent), added to each
    call passed through that does not carry them itself."""
    orders: Counter[str] = field(default_factory=Counter)
    used: set[Key] = field(default_factory=set)


@dataclass
class Decision:
    """What one call is served, and what the proxy needs to answer it and keep its answer."""

    entry: dict[str, Any]
    key: Key
    method: str
    path: str
    query: str
    body: bytes
    repeat: int = 0
    recording: Recording | None = None
    seed: Seed | None = None
    keep: bool = False
    settled: bool = False

    @property
    def served(self) -> Served:
        served: Served = self.entry["served"]
        return served


class Book:
    """One suite's recordings file, its mode, and every call of the suite's runs."""

    def __init__(self, suite: str, path: Path, mode: Mode, *, on_change: Literal["live", "fail"] = "live",
                 offline: bool = False, existing: list[Recording] | None = None, secrets: Secrets | None = None):
        self.suite = suite
        self.path = path
        self.mode = mode
        self.on_change = on_change
        self.offline = offline
        self.secrets = secrets or Secrets([])
        self._lock = threading.Lock()
        self._settled = threading.Condition(self._lock)
        self._pending = 0
        self._existing = list(existing or [])
        self._at: dict[Key, Recording] = {}
        self._by_turn: dict[tuple[str, str, int], list[Recording]] = {}
        self._by_hash: dict[tuple[str, str], Recording] = {}
        for rec in sorted(self._existing, key=Recording.sort_key):
            if rec.case is not None and rec.turn is not None:
                self._at.setdefault(rec.key, rec)
                self._by_turn.setdefault((rec.upstream, rec.case, rec.turn), []).append(rec)
            self._by_hash.setdefault((rec.upstream, rec.request_hash), rec)
        self._kept: dict[Key, tuple[int, Recording]] = {}
        self._kept_loose: dict[tuple[str, str], Recording] = {}
        self._ran: set[tuple[str, int]] = set()
        self._notes = build_redactor(["api_key", "bearer"])
        self.counts: Counter[str] = Counter()
        self.unattributed = 0
        self.listed: dict[str, list[dict[str, Any]]] = {"changed": [], "missing": [], "failed": []}
        self.saved: int | None = None

    # --- deciding a call (the proxy's thread) ----------------------------------

    def decide(self, up: Upstream, visit: Visit | None, method: str, path: str, query: str, body: bytes,
               hash_: str) -> Decision:
        """What this call is served; the entry is added to its turn before any byte of the answer is sent."""
        with self._lock:
            self._pending += 1
            if visit is not None:
                order = visit.orders[up.name]
                visit.orders[up.name] += 1
                key: Key = (up.name, visit.case, visit.turn, order)
            else:
                order, key = None, (up.name, None, None, None)
                self.unattributed += 1
            decision = Decision({"upstream": up.name, "order": order, "method": method, "path": path,
                                 "served": "live", "request_hash": hash_, "note": None},
                                key, method, path, query, body, visit.repeat if visit is not None else 0)
            if self.mode == "record":
                decision.keep = True
                if visit is not None:
                    self._ran.add((visit.case, visit.turn))
            elif self.mode == "replay":
                self._replay(up, visit, decision)
            self.counts[decision.served] += 1
            if decision.served in self.listed and len(self.listed[decision.served]) < _LISTED:
                self.listed[decision.served].append(self._listing(decision, visit))
            if visit is not None:
                visit.calls.append(decision.entry)
            return decision

    def _replay(self, up: Upstream, visit: Visit | None, d: Decision) -> None:
        hash_ = d.entry["request_hash"]
        found: Recording | None = None
        if visit is not None:
            rec = self._at.get(d.key)
            if rec is not None and rec.request_hash == hash_ and rec.key not in visit.used:
                found = rec
            else:  # calls made concurrently within a turn may arrive in another order
                found = next((r for r in self._by_turn.get((up.name, visit.case, visit.turn), ())
                              if r.request_hash == hash_ and r.key not in visit.used), None)
            if found is not None:
                visit.used.add(found.key)
        if found is None and (visit is None or d.key not in self._at):  # recorded unclaimed, or under another turn
            found = self._by_hash.get((up.name, hash_))
        if found is not None:
            d.recording = found
            d.entry["served"] = "recorded"
            return
        if visit is not None and visit.seed is not None and up.openai:
            body = json_body(d.body)
            now = normalised(body.get("messages")) if isinstance(body, dict) else None
            if now == visit.seed.messages:
                d.seed = visit.seed
                d.entry["served"] = "recorded"
                d.entry["note"] = "production's answer, from the recorded trace"
                return
            if d.key not in self._at:
                self._went_astray(d, "changed", "its messages differ from the recorded trace's prompt"
                                  + (f": {_messages_note(visit.seed.messages, now)}" if now is not None else ""))
                return
        before = self._at.get(d.key) if visit is not None else None
        if before is not None:
            self._went_astray(d, "changed", "its request changed since it was recorded: "
                              + _change_note(up.openai, before.request, d))
        else:
            self._went_astray(d, "missing", "no recording of it: " + _excerpt(up.openai, d))

    def _went_astray(self, d: Decision, what: Served, note: str) -> None:
        d.entry["note"] = self._clean(note)
        if self.offline:
            d.entry["served"] = "failed"
            d.entry["note"] += " (--offline: no call goes live)"
        elif what == "changed" and self.on_change == "fail":
            d.entry["served"] = "failed"
            d.entry["note"] += " (recording.on_change: fail)"
        else:
            d.entry["served"] = what

    def _listing(self, d: Decision, visit: Visit | None) -> dict[str, Any]:
        return {"upstream": d.entry["upstream"], "case": visit.case if visit else None,
                "turn": visit.turn if visit else None, "order": d.entry["order"],
                "call": f"{d.method} {d.path}", "note": d.entry["note"]}

    def _clean(self, text: str) -> str:
        return self._notes.text(self.secrets.text(text))

    def failed(self, d: Decision, note: str) -> None:
        """A live call that did not get an answer from the upstream."""
        with self._lock:
            self.counts[d.served] -= 1
            d.entry["served"] = "failed"
            d.entry["note"] = self._clean(note)
            self.counts["failed"] += 1
            if len(self.listed["failed"]) < _LISTED:
                self.listed["failed"].append({"upstream": d.entry["upstream"], "call": f"{d.method} {d.path}",
                                              "note": d.entry["note"], "order": d.entry["order"],
                                              "case": d.key[1], "turn": d.key[2]})
            d.keep = False

    def settle(self, d: Decision, status: int = 0, content_type: str | None = None, answer: bytes | None = None,
               events: list[str] | None = None) -> None:
        """The call is done (once; later calls do nothing): keep its answer when recording."""
        with self._lock:
            if d.settled:
                return
            d.settled = True
            self._pending -= 1
            if d.keep and status:
                rec = self._recording(d, status, content_type, answer, events)
                if d.key[1] is None:
                    self._kept_loose.setdefault((rec.upstream, rec.request_hash), rec)
                else:
                    had = self._kept.get(d.key)
                    if had is None or d.repeat < had[0]:  # repeats share repeat 0's recording
                        self._kept[d.key] = (d.repeat, rec)
            self._settled.notify_all()

    def _recording(self, d: Decision, status: int, content_type: str | None, answer: bytes | None,
                   events: list[str] | None) -> Recording:
        upstream, case, turn, order = d.key
        request = {"method": d.method, "path": d.path, "body": body_value(d.body)}
        if d.query:
            request["query"] = d.query
        rec = Recording(upstream=upstream, case=case, turn=turn, order=order, request_hash=d.entry["request_hash"],
                        request=request, status=status, content_type=content_type)
        if events is not None:
            rec.events = events
        elif answer:
            parsed = json_body(answer)
            if parsed is not NOT_JSON:
                rec.body = parsed
            else:
                try:
                    rec.body = answer.decode("utf-8")
                except UnicodeDecodeError:
                    rec.body_base64 = base64.b64encode(answer).decode()
        return rec

    # --- the suite's end (the runner's thread) ---------------------------------

    def summary(self) -> dict[str, Any]:
        """Calls served from recordings, live, changed, missing and failed, and the file."""
        with self._lock:
            return {"mode": self.mode, "file": display_path(self.path), "on_change": self.on_change,
                    "offline": self.offline, "calls": sum(self.counts.values()),
                    **{k: self.counts.get(k, 0) for k in ("recorded", "live", "changed", "missing", "failed")},
                    "unattributed": self.unattributed, "saved": self.saved,
                    "changes": list(self.listed["changed"]), "missing_calls": list(self.listed["missing"]),
                    "failed_calls": list(self.listed["failed"])}

    def save(self, wait_s: float = 5.0) -> int | None:
        """Record mode: rewrite the file, this run's calls replacing those of the turns it ran. None otherwise."""
        if self.mode != "record":
            return None
        with self._lock:
            self._settled.wait_for(lambda: self._pending <= 0, timeout=wait_s)
            kept = [rec for _, rec in self._kept.values()] + list(self._kept_loose.values())
            keep_old = [r for r in self._existing
                        if (r.case is not None and r.turn is not None and (r.case, r.turn) not in self._ran
                            and r.key not in self._kept)
                        or (r.case is None and (r.upstream, r.request_hash) not in self._kept_loose)]
        redactor = build_redactor(["api_key", "bearer"])
        rows = sorted(keep_old + kept, key=Recording.sort_key)
        self.saved = write_recordings(self.path, [_redacted(r, redactor, self.secrets) for r in rows])
        return self.saved


def _redacted(rec: Recording, redactor: Redactor, secrets: Secrets) -> Recording:
    """The recording with secrets out of its request and answer (keys found by the detectors, header values)."""

    def clean(value: Any) -> Any:
        if isinstance(value, str):
            return redactor.text(secrets.text(value))
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    return rec.model_copy(update={"request": clean(rec.request), "body": clean(rec.body),
                                  "events": clean(rec.events) if rec.events is not None else None})


def _quote(text: str, width: int = 60) -> str:
    return repr(text if len(text) <= width else text[:width] + "…")


def _messages_note(before: Messages, now: Messages) -> str:
    for i, (a, b) in enumerate(zip(before, now), 1):
        if a != b:
            if a[0] != b[0]:
                return f"message {i} is {b[0]} now, was {a[0]}"
            return f"message {i} ({b[0]}) now {_quote(b[1])}, was {_quote(a[1])}"
    return f"{len(now)} message(s) now, {len(before)} recorded"


def _change_note(openai: bool, before: dict[str, Any], d: Decision) -> str:
    """What differs between the recorded request and this one, in a line."""
    was, now = before.get("body"), json_body(d.body)
    if openai and isinstance(was, dict) and isinstance(now, dict):
        msgs_was, msgs_now = normalised(was.get("messages")), normalised(now.get("messages"))
        if msgs_was is not None and msgs_now is not None and msgs_was != msgs_now:
            return _messages_note(msgs_was, msgs_now)
        keys = sorted(k for k in set(was) | set(now) if k not in VOLATILE_FIELDS and k != "messages"
                      and was.get(k) != now.get(k))
        if keys:
            return "; ".join(f"{k} now {_quote(canonical(now.get(k)), 40)}, was "
                             f"{_quote(canonical(was.get(k)), 40)}" for k in keys[:3])
        return "its body changed"
    if before.get("path") != d.path:
        return f"path now {d.path}, was {before.get('path')}"
    if (before.get("query") or "") != d.query:
        return f"query now {_quote(d.query)}, was {_quote(str(before.get('query') or ''))}"
    return "body now " + _quote(_text_of(d.body))


def _excerpt(openai: bool, d: Decision) -> str:
    """The call in a line: method and path, and its last message (an OpenAI call) or the start of its body."""
    body = json_body(d.body)
    if openai and isinstance(body, dict):
        messages = normalised(body.get("messages"))
        if messages:
            role, text = messages[-1]
            return f"{d.method} {d.path}, last message ({role}) {_quote(text)}"
    text = _text_of(d.body)
    return f"{d.method} {d.path}" + (f"?{d.query}" if d.query else "") + (f", body {_quote(text)}" if text else "")


def _text_of(body: bytes) -> str:
    return body.decode("utf-8", "replace").strip()
