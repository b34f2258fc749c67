"""What comes into evalgate besides suites: OTLP traces converted to native, and feedback on turns.

    import_traces(files, out)      OTLP JSON → native recorded traces (JSONL), redacted
    import_feedback(store, file)   ratings and corrections, stored with their provenance
    list_feedback(store)           stored feedback, newest first
    promote_feedback(store, out)   one permanent case per correction, once
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import UsageError
from .store import Store


def import_traces(files: list[str], out: str | Path | None = None, *, mapping: str | Path | None = None,
                  redact: bool = True, redact_patterns: dict[str, str] | None = None,
                  redact_python: str | None = None) -> dict[str, Any]:
    """OTLP JSON files → native recorded traces (JSONL); returns what was read, made, redacted and left unmapped."""
    from .redact import build_redactor
    from .traces import otlp

    if not files:
        raise UsageError("name at least one OTLP JSON file", hint="evalgate traces import export.otlp.json --out datasets/prod.jsonl")
    paths = [Path(f) for f in files]
    for p in paths:
        if not p.is_file():
            raise UsageError(f"no such file: {p}", hint="traces import takes OTLP JSON files (one document or JSON lines)")
    target = Path(out) if out else default_import_path(paths[0])
    if target.resolve() in {p.resolve() for p in paths}:
        raise UsageError(f"the output {target} is one of the inputs", hint="pass --out with another path")
    rules = otlp.load_mapping(Path(mapping)) if mapping else otlp.Mapping()
    redactor = None
    if redact:
        try:
            redactor = build_redactor(None, redact_patterns, redact_python)
        except ValueError as exc:
            raise UsageError(str(exc), hint="--redact-pattern NAME=REGEX, --redact-python module:function") from None
    from .traces.otlp.guard import checked_import

    return checked_import(paths, target, mapping=rules, redactor=redactor).to_dict()


def default_import_path(first: Path) -> Path:
    """``export.otlp.json`` → ``export.jsonl`` beside it."""
    name = first.name
    for suffix in (".otlp.jsonl", ".otlp.json", ".jsonl", ".json"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return first.with_name(name + ".jsonl")


def import_feedback(store: Store, file: str | Path, *, redact: bool = True) -> dict[str, Any]:
    """Store the ratings and corrections of a JSONL or CSV feedback file, with their provenance."""
    from . import feedback

    records = feedback.read_file(Path(file))  # a bad file is reported before the store is touched
    with store.connect() as con:
        return feedback.import_feedback(con, str(file), records, redact=redact).to_dict()


def list_feedback(store: Store) -> list[dict[str, Any]]:
    """Every stored feedback record, newest first."""
    from . import feedback

    if not store.path.exists():
        return []
    with store.connect() as con:  # writable: an older store gets the feedback table
        return feedback.list_feedback(con)


def promote_feedback(store: Store, out: str | Path) -> dict[str, Any]:
    """One permanent case per stored correction, appended to ``out`` once."""
    from . import feedback

    with store.connect() as con:
        return feedback.promote(con, Path(out)).to_dict()
