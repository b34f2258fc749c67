"""The recordings file: one recorded upstream call per JSON line, sorted by key, written atomically.

A recording's key is (upstream, case, turn, order): the ``order``-th call to that upstream within the turn,
repeats sharing repeat 0's. A call that could not be attributed to a turn is kept under its request hash alone
(case, turn and order empty). Lines are sorted by key with sorted JSON keys, so recording the same run twice
writes the same file and a diff of a committed file reads as what changed.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
)

from .._files import jsonl_records
from ..errors import Location, SuiteError

RECORDINGS_VERSION = 1
VOLATILE_FIELDS = frozenset({"stream", "stream_options", "user", "metadata"})
"""Fields of an OpenAI request that do not change its answer: left out of its hash."""

Key = tuple[str, str | None, int | None, int | None]
"""(upstream, case, turn, order); case, turn and order are None for a call no turn claimed."""

NOT_JSON = object()


class Recording(BaseModel):
    """One recorded call: its key, its request (redacted) and the answer, whole or as its stream's events."""

    model_config = ConfigDict(extra="forbid")

    v: int = RECORDINGS_VERSION
    upstream: str
    case: str | None = None
    turn: int | None = Field(None, ge=1)
    order: int | None = Field(None, ge=0)
    """The call's place among the turn's calls to this upstream, from 0."""
    request_hash: str = Field(min_length=1)
    request: dict[str, Any] = Field(default_factory=dict)
    """method, path, query and body, as sent (secrets redacted): for reading a diff and naming what changed."""
    status: int = 200
    content_type: str | None = None
    body: Any = None
    """The answer's body: JSON when it was JSON, else its text."""
    body_base64: str | None = None
    """An answer whose bytes are not text."""
    events: list[str] | None = None
    """A streamed (text/event-stream) answer, event by event."""
    _bytes: bytes | None = PrivateAttr(default=None)

    @field_validator("v")
    @classmethod
    def _version(cls, value: int) -> int:
        if value != RECORDINGS_VERSION:
            raise ValueError(f"recordings format v{value} is not one this evalgate reads (it reads v{RECORDINGS_VERSION})")
        return value

    @property
    def key(self) -> Key:
        return (self.upstream, self.case, self.turn, self.order)

    def sort_key(self) -> tuple[Any, ...]:
        return (self.upstream, self.case is not None, self.case or "", self.turn or 0, self.order or 0,
                self.request_hash)

    def answer_bytes(self) -> bytes:
        """The recorded body as the bytes to send (encoded once: every repeat is served the same)."""
        if self._bytes is None:
            if self.body_base64 is not None:
                self._bytes = base64.b64decode(self.body_base64)
            elif self.body is None:
                self._bytes = b""
            elif isinstance(self.body, str) and not (self.content_type or "").startswith("application/json"):
                self._bytes = self.body.encode()
            else:
                self._bytes = json.dumps(self.body, ensure_ascii=False, separators=(",", ":")).encode()
        return self._bytes


def canonical(value: Any) -> str:
    """JSON with sorted keys and no spaces: equal values, equal text."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def json_body(body: bytes) -> Any:
    """The body as JSON, or ``NOT_JSON``."""
    if not body:
        return None
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return NOT_JSON


def body_value(body: bytes) -> Any:
    """A request or answer body as kept in a recording: JSON, else text, else a hash of its bytes."""
    parsed = json_body(body)
    if parsed is not NOT_JSON:
        return parsed
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return {"sha256": hashlib.sha256(body).hexdigest()}


def request_hash(openai: bool, method: str, path: str, query: str, body: bytes) -> str:
    """What identifies a request: for an OpenAI-compatible upstream its JSON body without volatile fields, else
    method, path, query and body (JSON canonically)."""
    parsed = json_body(body)
    if openai and isinstance(parsed, dict):
        blob = canonical({k: v for k, v in parsed.items() if k not in VOLATILE_FIELDS})
    else:
        blob = canonical({"method": method.upper(), "path": path,
                          "query": sorted(parse_qsl(query, keep_blank_values=True)), "body": body_value(body)})
    return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def default_path(root: Path, suite: str) -> Path:
    """Where a suite's recordings live unless it says: beside the store, apart from results."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in suite) or "suite"
    return root / ".evalgate" / "recordings" / f"{safe}.jsonl"


def read(path: Path) -> list[Recording]:
    """Every recording of a file; a line that is not one is a SuiteError at that line (exit 2)."""
    out: list[Recording] = []
    for lineno, raw in jsonl_records(path):
        if not isinstance(raw, dict):
            raise SuiteError("a recordings line is a JSON object (one recorded call)", location=Location(str(path), lineno),
                             hint="the file is written by 'evalgate run --upstreams record'; record again or fix the line")
        try:
            out.append(Recording.model_validate(raw))
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "line"
            message = "unknown key" if err["type"] == "extra_forbidden" else str(err["msg"]).removeprefix("Value error, ")
            raise SuiteError(f"not a recorded call: {where}: {message}", location=Location(str(path), lineno),
                             hint="the file is written by 'evalgate run --upstreams record'; record again or fix the "
                                  "line") from None
    return out


def write(path: Path, recordings: Iterable[Recording]) -> int:
    """Write recordings sorted by key, atomically (a temporary file renamed over the old one); returns how many."""
    rows = sorted(recordings, key=Recording.sort_key)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            for rec in rows:
                fh.write(canonical(rec.model_dump(exclude_none=True, exclude_defaults=False)) + "\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return len(rows)

