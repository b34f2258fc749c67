"""Whatever a target answers can be stored: text made valid Unicode, deep structures kept as text, oversize text cut.

A target is the system under test, so its answers are untrusted: half an
emoji (a lone surrogate) or a state nested thousands deep must fail that
turn's checks at most, never the write of the whole run. ``storable``
returns the answer with every such value replaced, and notes what it did.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

MAX_TEXT_BYTES = int(os.environ.get("EVALGATE_MAX_TEXT_BYTES", str(1 << 20)))
"""Longest text kept from a target's answer (1 MiB by default; EVALGATE_MAX_TEXT_BYTES sets it)."""
_SURROGATE = re.compile("[\ud800-\udfff]")
MAX_DEPTH = 64
"""Deepest nesting kept as structure; deeper values are kept as (cut) JSON text."""


def _text(value: str, notes: list[str], where: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: not Unicode text, cannot be stored
        value = _SURROGATE.sub("\ufffd", value)
        notes.append(f"{where}: invalid Unicode replaced")
    if len(value) > MAX_TEXT_BYTES // 4 and len(value.encode("utf-8")) > MAX_TEXT_BYTES:
        size = len(value.encode("utf-8"))
        value = value.encode("utf-8")[:MAX_TEXT_BYTES].decode("utf-8", "ignore") + f" … [cut: {size:,} bytes in all]"
        notes.append(f"{where}: {size:,} bytes cut to {MAX_TEXT_BYTES:,}")
    return value


def _flat(value: Any) -> str:
    """A too-deep value as text, without recursing into it (json would overflow the stack)."""
    try:
        return json.dumps(value, ensure_ascii=True, default=str)[:MAX_TEXT_BYTES]
    except (RecursionError, ValueError, TypeError):
        return f"<{type(value).__name__} nested deeper than {MAX_DEPTH} levels>"


def _plainly_storable(raw: Any) -> bool:
    """Whether ``raw`` certainly needs nothing made storable, told in C (json) rather than by walking it: it is JSON
    without NaN or infinity, valid Unicode throughout, too short to hold an oversize text and with too few brackets
    to nest deeper than MAX_DEPTH. An answer this says no to is walked (most of them are fine all the same)."""
    try:
        text = json.dumps(raw, ensure_ascii=False, allow_nan=False, check_circular=False)
    except (TypeError, ValueError, RecursionError):
        return False
    if len(text) > MAX_TEXT_BYTES // 4 or text.count("{") + text.count("[") >= MAX_DEPTH:
        return False
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return False
    return True


def storable(raw: Any) -> tuple[Any, list[str]]:
    """``raw`` with every value made storable, and what was changed (empty when nothing was)."""
    if isinstance(raw, (dict, list)) and _plainly_storable(raw):
        return raw, []
    notes: list[str] = []

    def walk(value: Any, depth: int, where: str) -> Any:
        if isinstance(value, str):
            return _text(value, notes, where)
        if isinstance(value, (dict, list)):
            if depth >= MAX_DEPTH:
                notes.append(f"{where}: nested deeper than {MAX_DEPTH} levels, kept as text")
                return _text(_flat(value), notes, where)
            if isinstance(value, dict):
                return {(_text(k, notes, where) if isinstance(k, str) else k): walk(v, depth + 1, f"{where}.{k}")
                        for k, v in value.items()}
            return [walk(v, depth + 1, f"{where}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, float) and value != value:
            return None  # NaN is not JSON
        return value

    if isinstance(raw, (str, dict, list)):
        return walk(raw, 0, "answer"), notes[:5] + ([f"… and {len(notes) - 5} more"] if len(notes) > 5 else [])
    return raw, notes
