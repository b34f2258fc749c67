"""Feedback: ratings and corrections on recorded or evaluated turns, stored
with their provenance, and promoted into permanent cases.

A feedback record names its turn by trace id, or by case id and turn. It is
stored in the ``feedback`` table with where it came from (file:line), who
gave it and when. ``promote`` writes one case per correction: the stored
inputs and user up to that turn, the correction as that turn's expectation,
tagged ``from-feedback``, with an id derived from the turn (trace id, or case
id and turn), so promoting twice adds nothing twice.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    ValidationError,
    field_validator,
    model_validator,
)

from ._files import read_text
from .errors import Location, SuiteError, UsageError
from .store import feedback as store
from .traces import Correction, describe_validation_error

FROM_FEEDBACK_TAG = "from-feedback"


class FeedbackRecord(BaseModel):
    """One line of a feedback file."""

    model_config = ConfigDict(extra="forbid")

    trace_id: str | None = None
    """The recorded or evaluated turn's trace id."""
    case_id: str | None = None
    turn: int | None = None
    """1-based turn of ``case_id``."""
    rating: str | int | float | None = None
    correction: Correction | None = None
    note: str | None = None
    by: str | None = None
    at: str | None = None

    @field_validator("trace_id", "case_id", "by", "at", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value

    @model_validator(mode="after")
    def _names_a_turn(self) -> FeedbackRecord:
        if not self.trace_id and not (self.case_id and self.turn):
            raise ValueError("feedback names its turn: trace_id, or case_id and turn")
        if self.turn is not None and self.turn < 1:
            raise ValueError("turn is 1-based")
        return self

    def feedback_id(self) -> str:
        """Stable in the record's content: importing a file again adds nothing."""
        blob = json.dumps(self.model_dump(mode="json", exclude_none=True), sort_keys=True, ensure_ascii=False)
        return "fb-" + hashlib.sha1(blob.encode()).hexdigest()[:12]

    def promoted_id(self) -> str:
        """The id of the case this correction becomes: from the turn it names, never the correction."""
        key = f"trace:{self.trace_id}" if self.trace_id else f"case:{self.case_id}#{self.turn}"
        return "from-feedback-" + hashlib.sha1(key.encode()).hexdigest()[:10]


_CSV_COLUMNS = {"trace_id", "case_id", "turn", "rating", "note", "by", "at"}
_CSV_CORRECTION = {"correction.route", "correction.output", "correction.context", "correction.state", "correction.tool_calls"}


def read_file(path: Path) -> list[tuple[int, FeedbackRecord]]:
    """(line, record) pairs from a JSONL or CSV feedback file; a bad line is an error at its line."""
    if not path.is_file():
        raise UsageError(f"no such file: {path}", hint="feedback import takes a .jsonl or .csv file")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return list(_read_csv(path))
    if suffix not in (".jsonl", ".json", ".ndjson"):
        raise SuiteError(f"unsupported feedback format '{suffix}': {path}", hint="use .jsonl (one record a line) or .csv")
    out = []
    with io.StringIO(read_text(path)) as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as exc:
                raise SuiteError(f"not valid JSON ({str(exc.args[0]).split(':')[0]})", location=Location(str(path), lineno),
                                 hint="one JSON object a line: {trace_id, rating, correction, note, by, at}") from None
            out.append((lineno, _validate(obj, path, lineno)))
    return out


def _validate(obj: Any, path: Path, lineno: int) -> FeedbackRecord:
    try:
        return FeedbackRecord.model_validate(obj)
    except ValidationError as exc:
        raise SuiteError(f"bad feedback: {describe_validation_error(exc)}", location=Location(str(path), lineno),
                         hint="fields: trace_id (or case_id and turn), rating, correction {route, output, context, "
                              "state, tool_calls}, note, by, at") from None


def _read_csv(path: Path) -> Any:
    import yaml

    with io.StringIO(read_text(path), newline="") as fh:
        reader = csv.DictReader(fh)
        for col in reader.fieldnames or []:
            if col not in _CSV_COLUMNS | _CSV_CORRECTION:
                from .errors import did_you_mean

                raise SuiteError(f"unknown CSV column '{col}'", location=Location(str(path), 1),
                                 hint=did_you_mean(col, _CSV_COLUMNS | _CSV_CORRECTION)
                                 or "columns: trace_id, case_id, turn, rating, note, by, at, correction.<field>")
        for row in reader:
            lineno = reader.line_num
            obj: dict[str, Any] = {k: v for k, v in row.items() if k in _CSV_COLUMNS and v not in (None, "")}
            correction: dict[str, Any] = {}
            for col in _CSV_CORRECTION:
                cell = (row.get(col) or "").strip()
                if not cell:
                    continue
                name = col.split(".", 1)[1]
                if name in ("route", "output") and not cell.startswith("{"):
                    correction[name] = cell
                elif name == "context" and not cell.startswith(("[", "{")):
                    correction[name] = [c for c in cell.replace(",", " ").split() if c]
                else:
                    try:
                        correction[name] = yaml.safe_load(cell)
                    except yaml.YAMLError:
                        raise SuiteError(f"column {col}: not a YAML/JSON value", location=Location(str(path), lineno)) from None
            if correction:
                obj["correction"] = correction
            yield lineno, _validate(obj, path, lineno)


# --- storing and promoting ------------------------------------------------------


@dataclass
class ImportResult:
    """What ``feedback import`` stored."""

    file: str
    read: int = 0
    added: int = 0
    already: int = 0
    corrections: int = 0
    redacted: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "read": self.read, "added": self.added, "already_stored": self.already,
                "corrections": self.corrections, "redacted": self.redacted}


def import_feedback(con: Any, path: str, records: list[tuple[int, FeedbackRecord]], *,
                    redact: bool = True) -> ImportResult:
    """Store the records read from a feedback file once each (a record already stored is skipped)."""
    result = ImportResult(path, read=len(records))
    redactor = None
    if redact:
        from .redact import build_redactor

        redactor = build_redactor()
    rows = []
    seen: set[str] = set()
    for lineno, rec in records:
        fid = rec.feedback_id()
        if fid in seen:
            result.already += 1
            continue
        seen.add(fid)
        note = redactor.text(rec.note) if redactor is not None and rec.note else rec.note
        correction = rec.correction.model_dump(exclude_none=True) if rec.correction else None
        rows.append(store.NewFeedback(feedback_id=fid, trace_id=rec.trace_id, case_id=rec.case_id, turn=rec.turn,
                                      rating=None if rec.rating is None else str(rec.rating),
                                      correction=correction or None, note=note, author=rec.by, given_at=rec.at,
                                      source=f"{path}:{lineno}"))
    added = store.add_new(con, rows)
    result.already += len(rows) - len(added)
    result.added = len(added)
    result.corrections = sum(row.correction is not None for row in added)
    if redactor is not None:
        result.redacted = redactor.summary()
    return result


def list_feedback(con: Any) -> list[dict[str, Any]]:
    """Every stored feedback record, newest first."""
    return [r.to_dict() for r in store.stored_feedback(con)]


@dataclass
class PromoteResult:
    """What ``feedback promote`` wrote, and what it could not."""

    out: str
    written: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"out": self.out, "written": self.written, "already_promoted": self.already, "skipped": self.skipped}


def _existing_ids(out: Path) -> set[str]:
    ids: set[str] = set()
    if out.is_file():
        with open(out, encoding="utf-8") as fh:
            for line in fh:
                try:
                    ids.add(str(json.loads(line).get("id")))
                except (ValueError, AttributeError):
                    continue
    return ids


def _locate(con: Any, fb: store.StoredFeedback) -> store.TurnRef | None:
    """The stored turn a feedback record names, from the latest run that has it."""
    if fb.trace_id:
        return store.turn_by_trace(con, fb.trace_id)
    return store.turn_by_case(con, fb.case_id, fb.turn)


def promote(con: Any, out: Path) -> PromoteResult:
    """Write one permanent case per stored correction to ``out`` (JSONL cases), once each."""
    from .cases import correction_to_expect

    result = PromoteResult(str(out))
    existing = _existing_ids(out)
    new_cases: list[dict[str, Any]] = []
    marks: list[tuple[str, str]] = []
    for fb in store.stored_corrections(con):
        rec = FeedbackRecord(trace_id=fb.trace_id, case_id=fb.case_id, turn=fb.turn)
        case_id = rec.promoted_id()
        if case_id in existing:
            result.already.append(case_id)
            marks.append((fb.feedback_id, case_id))
            continue
        where = _locate(con, fb)
        if where is None:
            named = f"trace {fb.trace_id}" if fb.trace_id else f"case {fb.case_id} turn {fb.turn}"
            result.skipped.append({"feedback_id": fb.feedback_id,
                                   "reason": f"{named} is in no stored run: run the suite that replays it first"})
            continue
        turns = store.inputs_up_to(con, where)
        user = store.case_user(con, where)
        correction = Correction.model_validate(fb.correction)
        case_turns: list[dict[str, Any]] = [{"input": t.input or ""} for t in turns]
        case_turns[-1]["expect"] = correction_to_expect(correction)
        state = turns[0].state_in if turns and turns[0].state_in else {}
        case: dict[str, Any] = {"id": case_id, "tags": [FROM_FEEDBACK_TAG]}
        if fb.note:
            case["description"] = fb.note
        if user is not None:
            case["user"] = {"id": user.user_id or "anonymous", "groups": user.groups}
        if state:
            case["state"] = state
        case["turns"] = case_turns
        meta: dict[str, Any] = {"feedback_id": fb.feedback_id, "from_case": where.case_id, "from_turn": where.turn,
                                "from_run": where.run_id}
        if fb.trace_id:
            meta["from_trace"] = fb.trace_id
        if fb.author:
            meta["by"] = fb.author
        if fb.at:
            meta["at"] = fb.at
        case["meta"] = meta
        new_cases.append(case)
        existing.add(case_id)
        result.written.append(case_id)
        marks.append((fb.feedback_id, case_id))
    if new_cases:
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "a", encoding="utf-8") as fh:
            for case in new_cases:
                fh.write(json.dumps(case, ensure_ascii=False) + "\n")
    store.mark_promoted(con, marks)
    return result
