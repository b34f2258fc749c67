"""Cases from dataset files: YAML lists, JSON lines and CSV (one row per turn, or per case)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from . import scorers as scorer_registry
from ._files import jsonl_records, read_text
from ._validation import _validate
from ._yaml import YamlDoc, load_yaml
from .cases import Case, CaseSpec, Turn, _merge_checks, derive_case_id
from .errors import Location, SuiteError, did_you_mean, display_path
from .policy import _split_tags
from .recovery.simulate import Simulation
from .scorers import BoundScorer, ScorerArgError

_BOUND: dict[tuple[str, str, str], BoundScorer] = {}
"""Checks already bound, by scorer, arguments and aliases: a dataset of 100k cases expecting the same route binds it
once (a bound check is a frozen value; checks hold no state between turns)."""


def _bind(name: str, args: Any, aliases: dict[str, tuple[str, Any]]) -> BoundScorer:
    try:
        key = (name, json.dumps(args, sort_keys=True), json.dumps(aliases, sort_keys=True, default=repr))
    except (TypeError, ValueError):
        return scorer_registry.bind(name, args, aliases=aliases)
    found = _BOUND.get(key)
    if found is None:
        if len(_BOUND) > 50_000:
            _BOUND.clear()
        found = _BOUND[key] = scorer_registry.bind(name, args, aliases=aliases)
    return found


_SHARED: dict[tuple[str, Any], Any] = {}
"""Equal parts of many cases held once (expectations, their checks, the user): a dataset of 100k cases expecting the
same route keeps one of each instead of 100k (they are read, never changed, once a case is built)."""


def _shared(kind: str, key: Any, value: Any) -> Any:
    found = _SHARED.get((kind, key))
    if found is None:
        if len(_SHARED) > 100_000:
            _SHARED.clear()
        found = _SHARED[(kind, key)] = value
    return found


def _shared_expect(expect: dict[str, Any]) -> dict[str, Any]:
    if not expect:
        return expect
    try:
        key = json.dumps(expect, ensure_ascii=False)
    except (TypeError, ValueError):  # not JSON (a YAML date, a non-text key): kept as it is
        return expect
    shared: dict[str, Any] = _shared("expect", key, expect)
    return shared


def _bind_all(expect: dict[str, Any], aliases: dict[str, tuple[str, Any]], doc: YamlDoc | None,
              prefix: tuple[Any, ...], path: str, line: int | None = None) -> list[BoundScorer]:
    bound = []
    for name, args in expect.items():
        try:
            bound.append(_bind(str(name), args, aliases))
        except ScorerArgError as exc:
            if doc is not None:
                location = doc.locate(prefix + (name,) + exc.path, key=not exc.path or exc.at_key)
            else:
                location = Location(path, line)
            raise SuiteError(str(exc), location=location, hint=exc.hint) from None
    return bound


def _build_case(spec: CaseSpec, seq: int, source: str, aliases: dict[str, tuple[str, Any]],
                suite_checks: list[BoundScorer], doc: YamlDoc | None, prefix: tuple[Any, ...],
                extra_tags: Sequence[str] = (), path: str = "", line: int | None = None) -> Case:
    specs = spec.turn_specs()
    turns = []
    for t, tspec in enumerate(specs):
        tprefix = prefix + (("turns", t, "expect") if spec.turns is not None else ("expect",))
        checks = _merge_checks(suite_checks, _bind_all(tspec.expect, aliases, doc, tprefix, path, line))
        turns.append(Turn(tspec.input, _shared("checks", tuple(map(id, checks)), checks), _shared_expect(tspec.expect),
                          resume=tspec.resume, tags=tuple(tspec.tags)))
    simulation = None
    if spec.simulate is not None:
        expect = spec.expect or {}
        checks = _merge_checks(suite_checks, _bind_all(expect, aliases, doc, prefix + ("expect",), path, line))
        goal_state = spec.simulate.stop_when.state if spec.simulate.stop_when is not None else {}
        goal = scorer_registry.bind("goal", {"state": goal_state})
        simulation = Simulation(spec.simulate, checks, expect, goal)
    derived = spec.id is None
    inputs = [t.input for t in specs] if spec.simulate is None else [spec.simulate.goal]
    case_id = spec.id if spec.id is not None else derive_case_id(spec.user, inputs)
    tags = tuple(dict.fromkeys([*spec.tags, *extra_tags]))
    user = _shared("user", spec.user.model_dump_json(), spec.user)
    return Case(case_id, seq, turns, user, spec.state, tags, source, spec.description,
                spec.variant_of, derived, meta=dict(spec.meta), simulation=simulation)


def _load_dataset(path: Path, tags: Sequence[str], aliases: dict[str, tuple[str, Any]],
                  suite_checks: list[BoundScorer], seq0: int) -> Iterator[Case]:
    suffix = path.suffix.lower()
    if not path.is_file():
        raise SuiteError(f"dataset file not found: {path}", hint="paths in a suite are relative to the suite's folder")
    if suffix in (".yaml", ".yml"):
        doc = load_yaml(path)
        items = doc.data
        prefix0: tuple[str, ...] = ()
        if isinstance(items, dict) and "cases" in items:
            items, prefix0 = items["cases"], ("cases",)
        if not isinstance(items, list):
            raise SuiteError("a YAML dataset is a list of cases (or a mapping with 'cases:')", location=Location(str(path), 1))
        for i, item in enumerate(items):
            cspec = _validate(CaseSpec, item, doc, prefix0 + (i,), str(path))
            yield _build_case(cspec, seq0 + i, str(doc.locate(prefix0 + (i,))), aliases, suite_checks, doc,
                              prefix0 + (i,), tags, str(path))
    elif suffix == ".jsonl":
        shown, where = display_path(path), str(path)  # once for the file, not for each of its lines
        for n, (lineno, item) in enumerate(jsonl_records(path)):
            cspec = _validate(CaseSpec, item, None, (), where, lineno)
            yield _build_case(cspec, seq0 + n, f"{shown}:{lineno}", aliases, suite_checks, None, (),
                              tags, where, lineno)
    elif suffix == ".csv":
        yield from _load_csv(path, tags, aliases, suite_checks, seq0)
    else:
        raise SuiteError(f"unsupported dataset format '{suffix}': {path}", hint="use .yaml, .jsonl or .csv")


_CSV_COLUMNS = {"id", "input", "tags", "user", "groups", "description", "variant_of", "turn"}


def _load_csv(path: Path, tags: Sequence[str], aliases: dict[str, tuple[str, Any]],
              suite_checks: list[BoundScorer], seq0: int) -> Iterator[Case]:
    """CSV: one turn per row; rows sharing an ``id`` are the turns of one case.

    Columns: id, input, tags, user, groups, description, variant_of, and
    ``expect.<scorer>`` or ``expect.<scorer>.<argument>`` cells (YAML values).
    """
    import yaml

    with io.StringIO(read_text(path), newline="") as fh:
        reader = csv.DictReader(fh)
        columns = reader.fieldnames or []
        for col in columns:
            if col not in _CSV_COLUMNS and not col.startswith(("expect.", "meta.")):
                raise SuiteError(f"unknown CSV column '{col}'", location=Location(str(path), 1),
                                 hint=did_you_mean(col, _CSV_COLUMNS) or "columns: id, input, tags, user, groups, expect.<scorer>[.<arg>], meta.<field>")
        if "input" not in columns:
            raise SuiteError("a CSV dataset needs an 'input' column", location=Location(str(path), 1))
        grouped: dict[str, tuple[int, dict[str, Any]]] = {}
        order: list[str] = []
        for row in reader:
            lineno = reader.line_num
            expect: dict[str, Any] = {}
            for col, cell in row.items():
                if col is None or not col.startswith("expect.") or cell in (None, ""):
                    continue
                value = _csv_value(cell, yaml)
                parts = col.split(".")[1:]
                if len(parts) == 1:
                    expect[parts[0]] = value
                else:
                    expect.setdefault(parts[0], {})[parts[1]] = value
            key = row.get("id") or f"__row{lineno}"
            turn = {"input": row.get("input") or "", "expect": expect}
            if key not in grouped:
                case: dict[str, Any] = {"turns": [turn]}
                if row.get("id"):
                    case["id"] = row["id"]
                for name in ("tags", "description", "variant_of"):
                    if row.get(name):
                        case[name] = row[name]
                meta = {col[5:]: cell for col, cell in row.items() if col and col.startswith("meta.") and cell not in (None, "")}
                if meta:
                    case["meta"] = meta
                if row.get("user") or row.get("groups"):
                    case["user"] = {"id": row.get("user") or "anonymous", "groups": _split_tags(row.get("groups") or "")}
                grouped[key] = (lineno, case)
                order.append(key)
            else:
                grouped[key][1]["turns"].append(turn)
        shown, where = display_path(path), str(path)
        for n, key in enumerate(order):
            lineno, item = grouped[key]
            cspec = _validate(CaseSpec, item, None, (), where, lineno)
            yield _build_case(cspec, seq0 + n, f"{shown}:{lineno}", aliases, suite_checks, None, (), tags,
                              where, lineno)


def _csv_value(cell: str, yaml: Any) -> Any:
    """CSV cells are text, except YAML lists/mappings (``[a, b]``) and true/false."""
    text = cell.strip()
    if text in ("true", "false"):
        return text == "true"
    if text.startswith(("[", "{")):
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError:
            return cell
    return cell
