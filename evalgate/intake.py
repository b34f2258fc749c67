"""What comes into evalgate besides suites: OTLP traces converted to native, and feedback on turns.

    import_traces(files, out)      OTLP JSON → native recorded traces (JSONL), redacted
    join_spans(store, files)       a system's own OTLP spans, stored beside the eval turns they belong to
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


def join_spans(store: Store, files: list[str], *, run: str | None = None, redact: bool = True) -> dict[str, Any]:
    """A system's own OTLP spans for eval runs, joined to the turns whose traceparent they continue.

    Spans whose trace id no stored turn sent are counted and left out (a service that starts its own traces
    instead of continuing the caller's has none to join).
    """
    from .redact import build_redactor
    from .store import spans as stored
    from .traces.otlp.conventions import span_kind
    from .traces.otlp.guard import _STRUCTURE
    from .traces.otlp.read import _SHAPE_HINT, read_items
    from .traces.otlp.spans import Span

    if not files:
        raise UsageError("name at least one OTLP JSON file", hint="evalgate traces join service-spans.otlp.jsonl")
    for f in files:
        if not Path(f).is_file():
            raise UsageError(f"no such file: {f}", hint="traces join takes OTLP JSON files (one document or JSON lines)")
    redactor = build_redactor() if redact else None

    def spans() -> Any:
        for f in files:
            try:
                for item in read_items(f):
                    if isinstance(item, Span):
                        yield item
            except _STRUCTURE as exc:
                from .errors import SuiteError

                raise SuiteError(f"{f}: not a valid OTLP export ({type(exc).__name__}: {str(exc)[:160]})",
                                 hint=_SHAPE_HINT) from None

    ids = {span.trace_id for span in spans()}  # the files are read twice: a large export never sits in memory
    run_id = store.resolve_run(run) if run else None
    with store.connect() as con:
        turns = stored.turns_for(con, ids, run_id)
        rows: list[stored.SpanRow] = []
        joined = 0
        total = 0
        for span in spans():
            total += 1
            key = turns.get(span.trace_id)
            if key is None:
                continue
            attrs = redactor.value(span.attrs) if redactor is not None else span.attrs
            rows.append(stored.SpanRow(key, span.trace_id, span.span_id, span.parent_id or None, span.name,
                                       span_kind(span), span.resource.get("service.name"), span.start_ns,
                                       max(0.0, (span.end_ns - span.start_ns) / 1e6), span.error, attrs))
            if len(rows) >= 5_000:
                joined += stored.store(con, rows)
                rows = []
        joined += stored.store(con, rows)
    runs = sorted({k.run_id for k in turns.values()})
    return {"files": files, "spans": total, "joined": joined, "turns": len(turns), "runs": runs,
            "unmatched_traces": len(ids) - len(turns),
            "redacted": redactor.summary() if redactor is not None else {}}


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
