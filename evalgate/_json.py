"""JSON in the hot paths (reading recorded lines, storing columns): orjson where it can, the standard library
where orjson refuses what the standard library takes (integers past 64 bits, NaN, lone surrogates, keys that are
not text), so what evalgate accepts and stores does not depend on the decoder."""

from __future__ import annotations

import json
from typing import Any

import orjson

_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
"""Datetimes and dataclasses go to ``default=str`` as with the standard library."""


def loads(data: bytes | str) -> Any:
    """``json.loads``, about three times faster on a typical recorded line."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


def dumps(value: Any) -> str:
    """Compact JSON text (``json.dumps`` with ``ensure_ascii=False, default=str``), several times faster."""
    try:
        return orjson.dumps(value, default=str, option=_OPTIONS).decode()
    except (TypeError, ValueError):  # JSONEncodeError is a TypeError: an integer past 64 bits, a surrogate, a cycle
        return json.dumps(value, ensure_ascii=False, default=str, separators=(",", ":"))
