"""Reading the text files users give evalgate: UTF-8 (a BOM allowed), or a clear error at the line that is not."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import Location, SuiteError


def read_text(path: Path | str) -> str:
    """The file's text; bytes that are not UTF-8 are a SuiteError at their line (exit 2), never a traceback."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SuiteError(f"file not found: {path}", hint="paths in a suite are relative to the suite's folder") from None
    except OSError as exc:
        raise SuiteError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise SuiteError(f"not UTF-8 text: byte 0x{data[exc.start]:02x} cannot be read", location=Location(str(path), line),
                         hint="save the file as UTF-8") from None


def jsonl_records(path: Path | str) -> Iterator[tuple[int, Any]]:
    """(line number, value) for every non-blank line of a JSON-lines file; a line that is not JSON is a SuiteError at
    its line."""
    for lineno, line in enumerate(read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield lineno, json.loads(line)
        except ValueError as exc:
            raise SuiteError(f"not valid JSON: {exc}", location=Location(str(path), lineno)) from None
