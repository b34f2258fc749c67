"""Gold: each recorded turn's own expectations, tags and meta, from a file joined to the turns on a key.

A traces source names a gold file (YAML list, JSONL or CSV) of rows ``{key,
expect, tags, meta}`` and the trace fields the key is made of (default
``session_id`` + ``turn``; any field path, e.g. ``extra.app_turn_id`` mapped
from an OTLP attribute). The rows are validated and their expectations bound
when the suite loads, so a bad scorer argument is an error at the row's line.
The join happens while the sessions stream: only the rows are held, and after
a full pass the join says which rows matched no turn and how many turns had
no row.
"""

from __future__ import annotations

import csv
import io
import json
import typing
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, field_validator

from .._files import jsonl_records, read_text
from .._validation import _validate
from .._yaml import YamlDoc, load_yaml
from ..cases import _Model
from ..datasets import _bind_all, _csv_value
from ..errors import Location, SuiteError, did_you_mean, display_path
from ..policy import _split_tags
from ..scorers import BoundScorer
from ..traces import Trace

DEFAULT_KEY = ("session_id", "turn")
"""A turn is named by its session and its number in it: a row's key ``s-9:2``."""
SHOWN_KEYS = 3
"""Keys a warning names before it says how many more there are."""
GOLD_VERSION = 1


class GoldRow(_Model):
    """One row of a gold file: which turn (its key) and what that turn should do."""

    key: str | int | list[str | int]
    """The values of the source's key fields: separated by ':' (``s-9:2``), or a list (``[s-9, 2]``)."""
    expect: dict[str, Any] = Field(default_factory=dict)
    """Scorer name → arguments, as a turn's expect; replaces the source's expectation of the same scorer."""
    tags: list[str] = Field(default_factory=list)
    """The turn's tags: gate rules slice on them with where: {turn_tags: [...]}."""
    meta: dict[str, str | int | float | bool | None] = Field(default_factory=dict)
    """Fields added to the session's case meta (where: {meta: ...}); a field two turns give keeps the first."""

    @field_validator("tags", mode="before")
    @classmethod
    def _tags(cls, value: Any) -> Any:
        return _split_tags(value)


class _GoldFile(_Model):
    """A YAML gold file as a mapping: a version and its rows."""

    version: int = GOLD_VERSION
    rows: list[Any]

    @field_validator("version")
    @classmethod
    def _version(cls, value: int) -> int:
        if value != GOLD_VERSION:
            raise ValueError(f"gold file version {value} is not one this evalgate reads (it reads {GOLD_VERSION})")
        return value


@dataclass(slots=True)
class GoldEntry:
    """A gold row, bound: what the turn with its key gets."""

    checks: list[BoundScorer]
    expect: dict[str, Any]
    tags: tuple[str, ...]
    meta: dict[str, Any]
    location: Location
    """Where the row is."""


def key_text(value: Any) -> str:
    """How a key value compares: text, with JSON's spelling for booleans and whole numbers without a fraction."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def key_path_problem(path: str) -> str | None:
    """Why ``path`` cannot name a single trace value (None when it can): checked when the suite loads."""
    parts = path.split(".")
    if not all(parts):
        return f"key field '{path}' is not a field path (e.g. extra.app_turn_id, user.id, session_id+turn)"
    model: type[BaseModel] | None = Trace
    for i, part in enumerate(parts):
        if model is None:  # inside a mapping (extra, state, ...): any key
            return None
        shown = ".".join(parts[:i + 1])
        if part not in model.model_fields or part.startswith("_"):
            fields = list(model.model_fields)
            hint = did_you_mean(part, fields) or f"trace fields here: {', '.join(fields)}"
            return f"unknown trace field '{shown}' in key ({hint})"
        kind, inner = _field_kind(model.model_fields[part].annotation)
        last = i == len(parts) - 1
        if kind == "list":
            return f"'{shown}' is a list, and a key is one value per turn"
        if kind == "model":
            if last:
                return f"'{shown}' is an object: name one of its fields ({', '.join(f'{shown}.{f}' for f in inner.model_fields)})"
            model = inner
        elif kind == "mapping":
            if last:
                return f"'{shown}' is a mapping: name a key in it ({shown}.NAME)"
            model = None
        elif not last:
            return f"'{shown}' is a single value: it has no field '{parts[i + 1]}'"
    return None


def _field_kind(annotation: Any) -> tuple[str, Any]:
    """('model', cls), ('mapping', None), ('list', None) or ('value', None) for a field's annotation."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is None and not args:
        args = [annotation]
    elif typing.get_origin(annotation) in (dict, list):
        args = [annotation]
    kinds = []
    for arg in args:
        origin = typing.get_origin(arg)
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return "model", arg
        kinds.append("mapping" if origin is dict or arg is dict else "list" if origin is list or arg is list else "value")
    if "mapping" in kinds:  # e.g. a correction's output: text, or scorer arguments
        return "mapping", None
    return ("list", None) if kinds and all(k == "list" for k in kinds) else ("value", None)


def _row_key(value: Any, fields: tuple[str, ...]) -> tuple[str, ...]:
    """A row's key as one text per key field; ValueError when it gives another number of them."""
    n = len(fields)
    if isinstance(value, list):
        parts = [key_text(v) for v in value]
    elif n == 1:
        parts = [key_text(value)]
    else:  # a session id may hold ':', the fields after it rarely do
        parts = str(value).rsplit(":", n - 1)
    if len(parts) != n:
        example = ":".join(f"<{f}>" for f in fields)
        raise ValueError(f"key {value!r} gives {len(parts)} value(s) for the {n} key fields ({' + '.join(fields)}): "
                         f"write '{example}' or a list")
    return tuple(parts)


@dataclass
class _Row:
    """A row read from a gold file, and where it is (a YAML node, or a line)."""

    data: Any
    location: Location
    doc: YamlDoc | None = None
    prefix: tuple[Any, ...] = ()
    line: int | None = None


def load_gold(path: Path, key: Sequence[str], aliases: dict[str, tuple[str, Any]]) -> Gold:
    """A gold file joined on the trace fields ``key``, every row validated and its expectations bound (errors at
    the row's file:line)."""
    if not path.is_file():
        raise SuiteError(f"gold file not found: {path}", hint="paths in a suite are relative to the suite's folder")
    fields = tuple(key)
    rows: dict[tuple[str, ...], GoldEntry] = {}
    bound: dict[tuple[str, str], BoundScorer] = {}
    for raw in _read_rows(path):
        row: GoldRow = _validate(GoldRow, raw.data, raw.doc, raw.prefix, str(path), raw.line)
        try:
            key = _row_key(row.key, fields)
        except ValueError as exc:
            location = raw.doc.locate(raw.prefix + ("key",)) if raw.doc is not None else raw.location
            raise SuiteError(str(exc), location=location) from None
        checks = _bind_row(row.expect, aliases, raw, str(path), bound)
        first = rows.get(key)
        if first is not None:
            raise SuiteError(f"gold key '{':'.join(key)}' is given twice (first at {first.location})",
                             location=raw.location, hint="give each turn one row; merge the two rows' expectations")
        rows[key] = GoldEntry(checks, dict(row.expect), tuple(row.tags), dict(row.meta), raw.location)
    return Gold(fields, display_path(path), rows)


def _bind_row(expect: dict[str, Any], aliases: dict[str, tuple[str, Any]], raw: _Row, path: str,
              bound: dict[tuple[str, str], BoundScorer]) -> list[BoundScorer]:
    """A row's expectations, bound; rows repeat a handful of them (a route, mostly), so each is bound once."""
    checks = []
    for name, args in expect.items():
        key = (str(name), json.dumps(args, sort_keys=True, default=str))
        check = bound.get(key)
        if check is None:
            check = _bind_all({name: args}, aliases, raw.doc, raw.prefix + ("expect",), path, raw.line)[0]
            if len(bound) < 10_000:
                bound[key] = check
        checks.append(check)
    return checks


def _read_rows(path: Path) -> Iterator[_Row]:
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        yield from _yaml_rows(path)
    elif suffix == ".jsonl":
        for lineno, item in jsonl_records(path):
            yield _Row(item, Location(str(path), lineno), line=lineno)
    elif suffix == ".csv":
        yield from _csv_rows(path)
    else:
        raise SuiteError(f"unsupported gold file format '{suffix}': {path}", hint="use .yaml, .jsonl or .csv")


def _yaml_rows(path: Path) -> Iterator[_Row]:
    doc = load_yaml(path)
    items = doc.data
    prefix: tuple[str, ...] = ()
    if isinstance(items, dict):
        items = _validate(_GoldFile, items, doc, (), str(path)).rows
        prefix = ("rows",)
    if not isinstance(items, list):
        raise SuiteError("a YAML gold file is a list of rows {key, expect, tags, meta} (or a mapping with 'rows:')",
                         location=Location(str(path), 1))
    for i, item in enumerate(items):
        yield _Row(item, doc.locate(prefix + (i,)), doc, prefix + (i,))


_CSV_COLUMNS = ("key", "tags")


def _csv_rows(path: Path) -> Iterator[_Row]:
    """CSV: one row per turn; columns key, tags, ``expect.<scorer>[.<argument>]`` and ``meta.<field>``."""
    import yaml

    with io.StringIO(read_text(path), newline="") as fh:
        reader = csv.DictReader(fh)
        columns = reader.fieldnames or []
        for col in columns:
            if col not in _CSV_COLUMNS and not col.startswith(("expect.", "meta.")):
                raise SuiteError(f"unknown CSV column '{col}'", location=Location(str(path), 1),
                                 hint=did_you_mean(col, _CSV_COLUMNS) or "columns: key, tags, expect.<scorer>[.<arg>], "
                                                                          "meta.<field>")
        if "key" not in columns:
            raise SuiteError("a CSV gold file needs a 'key' column", location=Location(str(path), 1))
        for row in reader:
            item: dict[str, Any] = {"key": row.get("key") or ""}
            expect: dict[str, Any] = {}
            meta: dict[str, Any] = {}
            for col, cell in row.items():
                if col is None or cell in (None, ""):
                    continue
                if col == "tags":
                    item["tags"] = cell
                elif col.startswith("expect."):
                    scorer, _, arg = col[len("expect."):].partition(".")
                    if arg:
                        expect.setdefault(scorer, {})[arg] = _csv_value(cell, yaml)
                    else:
                        expect[scorer] = _csv_value(cell, yaml)
                elif col.startswith("meta."):
                    meta[col[len("meta."):]] = cell
            if expect:
                item["expect"] = expect
            if meta:
                item["meta"] = meta
            yield _Row(item, Location(str(path), reader.line_num), line=reader.line_num)


@dataclass
class Gold:
    """A gold file's rows by key, and what the last full pass over the recorded turns matched."""

    fields: tuple[str, ...]
    """The trace fields a key is made of."""
    file: str
    """The gold file, as shown."""
    rows: dict[tuple[str, ...], GoldEntry]
    turns: int = 0
    without: int = 0
    """Turns with a key but no row."""
    missing: dict[str, int] = field(default_factory=dict)
    """Turns without a value for a key field, by the first field missing."""
    _matched: set[tuple[str, ...]] = field(default_factory=set, repr=False)
    _examples: list[str] = field(default_factory=list, repr=False)
    _missing_examples: list[str] = field(default_factory=list, repr=False)
    _paths: list[tuple[str, ...]] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self._paths = [tuple(f.split(".")) for f in self.fields]

    def start(self) -> None:
        """Forget the last pass: a new one begins."""
        self.turns, self.without = 0, 0
        self.missing = {}
        self._matched = set()
        self._examples, self._missing_examples = [], []

    def match(self, trace: Trace, session_id: str, position: int) -> GoldEntry | None:
        """The row for this turn (``position``: its 1-based place in the session), counted either way."""
        self.turns += 1
        key: list[str] = []
        for name, path in zip(self.fields, self._paths):
            value = _trace_value(trace, path, session_id, position)
            if value is None:
                self.missing[name] = self.missing.get(name, 0) + 1
                if len(self._missing_examples) < SHOWN_KEYS:
                    self._missing_examples.append(f"{session_id} turn {position}")
                return None
            key.append(value)
        entry = self.rows.get(tuple(key))
        if entry is None:
            self.without += 1
            if len(self._examples) < SHOWN_KEYS:
                self._examples.append(":".join(key))
            return None
        self._matched.add(tuple(key))
        return entry

    def warnings(self, traces: str, shown: Callable[[str], str] = str) -> list[str]:
        """What the last full pass over ``traces`` found unmatched (``shown`` redacts what is named)."""
        out = []
        unmatched = [k for k in self.rows if k not in self._matched]
        if unmatched:
            named = ", ".join(_quoted(shown(":".join(k))) for k in unmatched[:SHOWN_KEYS])
            more = f" (and {len(unmatched) - SHOWN_KEYS} more)" if len(unmatched) > SHOWN_KEYS else ""
            out.append(f"gold {self.file}: {len(unmatched)} of {len(self.rows)} row(s) matched no recorded turn "
                       f"of {traces}: {named}{more}")
        if self.without:
            named = ", ".join(_quoted(shown(k)) for k in self._examples)
            out.append(f"gold {self.file}: {self.without} of {self.turns} recorded turn(s) of {traces} have no "
                       f"gold row (e.g. {named})")
        for name, n in self.missing.items():
            named = ", ".join(shown(k) for k in self._missing_examples)
            out.append(f"gold {self.file}: {n} recorded turn(s) of {traces} have no {name} to join on "
                       f"(e.g. {named}); check the key, or the OTLP mapping's extra")
        return out


def _quoted(key: str) -> str:
    """A key as a warning names it: quoted when it has a comma or a space, so a list of keys reads as one."""
    return json.dumps(key, ensure_ascii=False) if any(c in key for c in ", \t\n") or not key else key


def _trace_value(trace: Trace, path: tuple[str, ...], session_id: str, position: int) -> str | None:
    """One key field's value on a turn, as text; None when the turn has none (or an object, not a value).

    ``session_id`` is the session the turn was grouped into (its session_id, else its trace_id), ``turn`` its
    recorded number, else its place in the session.
    """
    if path == ("session_id",):
        return session_id
    value: Any = trace
    for part in path:
        if isinstance(value, BaseModel):
            value = getattr(value, part, None)
        elif isinstance(value, dict):
            value = value.get(part)
        else:
            return None
    if path == ("turn",) and value is None:
        value = position
    if value is None or isinstance(value, (dict, list, BaseModel)):
        return None
    return key_text(value)
