"""Command groups (baseline, cache, traces, feedback) and the last commands: compare, init, --version."""

from __future__ import annotations

import sys
from typing import Annotated, Any, Optional

import typer

from ._shared import DbOption, JsonOption, _console, _print_json, _store, app


baseline_app = typer.Typer(help="Name, list and export baselines: the runs new runs are compared with.",
                           rich_markup_mode=None, no_args_is_help=True)
app.add_typer(baseline_app, name="baseline")


@baseline_app.command("set")
def baseline_set(
    name: Annotated[str, typer.Argument(help="Baseline name, e.g. main or release-1.4.")],
    run_id: Annotated[Optional[str], typer.Argument(help="Run id (default: the latest completed run of every suite).")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Point a baseline name at a run (one per suite)."""
    from ..api import set_baseline

    rows = set_baseline(_store(db), name, run_id)
    if as_json:
        _print_json(rows)
    else:
        for r in rows:
            _console().print(f"baseline {r['name']} for suite {r['suite']} → run {r['run_id']}", markup=False)


@baseline_app.command("show")
def baseline_show(
    name: Annotated[Optional[str], typer.Argument(help="Only this baseline.")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """List named baselines and the runs they point at."""
    from ..api import show_baselines
    from ..reporters.console import render_baselines

    rows = show_baselines(_store(db), name)
    if as_json:
        _print_json(rows)
    else:
        render_baselines(_console(), rows)


@baseline_app.command("export")
def baseline_export(
    name: Annotated[str, typer.Argument(help="Baseline name.")],
    path: Annotated[str, typer.Argument(help="JSON file to write (commit it; use it with run --baseline-file).")],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Write a baseline's per-case outcomes and metrics to a versioned JSON file."""
    from ..api import export_baseline

    info = export_baseline(_store(db), name, path)
    if as_json:
        _print_json(info)
    else:
        _console().print(f"wrote baseline {info['name']} ({', '.join(info['suites'])}) to {info['path']}", markup=False)


cache_app = typer.Typer(help="The model response cache: stats, export, import, clear.", rich_markup_mode=None,
                        no_args_is_help=True)
app.add_typer(cache_app, name="cache")
CacheOption = Annotated[Optional[str], typer.Option("--cache", help="Cache path (default: .evalgate/cache.sqlite, or EVALGATE_CACHE).")]


def _cache(path: str | None) -> Any:
    from ..config import find_config
    from ..models.cache import ResponseCache

    return ResponseCache(path or find_config().cache)


@cache_app.command("stats")
def cache_stats(cache: CacheOption = None, as_json: JsonOption = False) -> None:
    """Entries, size and models in the response cache."""
    stats = _cache(cache).stats()
    if as_json:
        _print_json(stats)
    else:
        models = ", ".join(f"{m} {n}" for m, n in stats["by_model"].items()) or "none"
        _console().print(f"{stats['path']}: {stats['entries']} response(s), {stats['bytes']} bytes; models: {models}",
                         markup=False)


@cache_app.command("export")
def cache_export(path: Annotated[str, typer.Argument(help="JSON-lines file to write (a repository can commit it).")],
                 cache: CacheOption = None) -> None:
    """Write every cached response to a file, sorted by key."""
    n = _cache(cache).export(path)
    _console().print(f"wrote {n} response(s) to {path}", markup=False)


@cache_app.command("import")
def cache_import(path: Annotated[str, typer.Argument(help="A JSON-lines file written by 'cache export'.")],
                 cache: CacheOption = None) -> None:
    """Merge an exported file into the cache (e.g. in CI, before run --offline)."""
    from pathlib import Path

    from ..errors import UsageError

    if not Path(path).is_file():
        raise UsageError(f"no such cache export: {path}", hint="write one with 'evalgate cache export FILE'")
    try:
        n = _cache(cache).load(path)
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{path} is not a cache export: {type(exc).__name__}: {exc}",
                         hint="a JSON-lines file written by 'evalgate cache export'") from None
    _console().print(f"imported {n} response(s) from {path}", markup=False)


@cache_app.command("clear")
def cache_clear(cache: CacheOption = None) -> None:
    """Delete every cached response."""
    n = _cache(cache).clear()
    _console().print(f"deleted {n} response(s)", markup=False)


traces_app = typer.Typer(help="Recorded traces: import OTLP JSON (OpenTelemetry GenAI or OpenInference spans).",
                         rich_markup_mode=None, no_args_is_help=True)
app.add_typer(traces_app, name="traces")


def _pairs(values: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values or []:
        name, sep, regex = v.partition("=")
        if not sep or not name:
            from ..errors import UsageError

            raise UsageError(f"--redact-pattern takes NAME=REGEX, got '{v}'", hint="e.g. --redact-pattern order_ref='ORD-\\d{6}'")
        out[name] = regex
    return out


@traces_app.command("import")
def traces_import(
    files: Annotated[list[str], typer.Argument(help="OTLP JSON files: one export request per file, or JSON lines (the collector's file exporter).")],
    out: Annotated[Optional[str], typer.Option("--out", "-o", help="Native traces JSONL to write (default: beside the first file, NAME.jsonl).")] = None,
    mapping: Annotated[Optional[str], typer.Option("--mapping", help="YAML file: where route, state, user groups, ... live in your own attributes.")] = None,
    no_redact: Annotated[bool, typer.Option("--no-redact", help="Keep values as recorded (redaction is on by default).")] = False,
    redact_pattern: Annotated[Optional[list[str]], typer.Option("--redact-pattern", help="Also redact NAME=REGEX (repeatable).")] = None,
    redact_python: Annotated[Optional[str], typer.Option("--redact-python", help="Also redact what module:function(text) finds: (kind, value) pairs.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Turn OTLP spans into native recorded traces: one turn per request span tree, sessions by session id.

    Personal data and secrets are redacted before anything is written; the summary says what was read,
    made, redacted (by kind) and could not be mapped (by attribute).
    """
    from ..intake import import_traces
    from ..reporters.console import render_import

    stats = import_traces(files, out, mapping=mapping, redact=not no_redact, redact_patterns=_pairs(redact_pattern),
                          redact_python=redact_python)
    if as_json:
        _print_json(stats)
    else:
        render_import(_console(), stats)


@traces_app.command("join")
def traces_join(
    files: Annotated[list[str], typer.Argument(help="OTLP JSON files your system exported while evalgate ran it.")],
    run: Annotated[Optional[str], typer.Option("--run", help="Only this run's turns (default: any stored run).")] = None,
    no_redact: Annotated[bool, typer.Option("--no-redact", help="Keep attribute values as recorded (redaction is on by default).")] = False,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Store your system's own spans beside the eval turns they belong to: the spans of each turn's call carry the
    trace id of the traceparent evalgate sent with it. `evalgate show RUN CASE` then lists them under each turn."""
    from ..intake import join_spans

    info = join_spans(_store(db), files, run=run, redact=not no_redact)
    if as_json:
        _print_json(info)
        return
    console = _console()
    console.print(f"read {info['spans']} span(s): {info['joined']} joined to {info['turns']} turn(s) of "
                  f"{len(info['runs'])} run(s); {info['unmatched_traces']} trace(s) no eval turn sent", markup=False)
    if info["spans"] and not info["joined"]:
        console.print("hint: the service must continue the traceparent header evalgate sends (OpenTelemetry's "
                      "propagation does) for its spans to share the turn's trace id", markup=False)


feedback_app = typer.Typer(help="Ratings and corrections on turns: import, list, and promote into permanent cases.",
                           rich_markup_mode=None, no_args_is_help=True)
app.add_typer(feedback_app, name="feedback")


@feedback_app.command("import")
def feedback_import(
    file: Annotated[str, typer.Argument(help="JSONL or CSV: trace_id (or case_id and turn), rating, correction, note, by, at.")],
    no_redact: Annotated[bool, typer.Option("--no-redact", help="Keep notes as written (personal data is redacted by default).")] = False,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Store feedback with its provenance (file:line, who, when); a record already stored is skipped."""
    from ..intake import import_feedback

    info = import_feedback(_store(db), file, redact=not no_redact)
    if as_json:
        _print_json(info)
    else:
        redacted = ", ".join(f"{k} {v}" for k, v in info["redacted"].items())
        _console().print(f"read {info['read']} record(s) from {info['file']}: {info['added']} added "
                         f"({info['corrections']} with a correction), {info['already_stored']} already stored"
                         + (f"; redacted from notes: {redacted}" if redacted else ""), markup=False)


@feedback_app.command("list")
def feedback_list(db: DbOption = None, as_json: JsonOption = False) -> None:
    """Stored feedback, newest first: the turn it names, rating, correction, who, and the case it became."""
    from ..intake import list_feedback
    from ..reporters.console import render_feedback

    rows = list_feedback(_store(db))
    if as_json:
        _print_json(rows)
    else:
        render_feedback(_console(), rows)


@feedback_app.command("promote")
def feedback_promote(
    out: Annotated[str, typer.Option("--out", "-o", help="Cases file to append to (a suite includes it with cases: [{file: ...}]).")] = "datasets/feedback.jsonl",
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Write one permanent case per correction: the stored inputs and user up to that turn, the correction as its
    expectation, tagged from-feedback. Promoting again adds nothing twice."""
    from ..intake import promote_feedback

    info = promote_feedback(_store(db), out)
    if as_json:
        _print_json(info)
    else:
        console = _console()
        if not (info["written"] or info["already_promoted"] or info["skipped"]):
            console.print("no stored correction to promote (import some with 'evalgate feedback import FILE')",
                          markup=False)
            return
        console.print(f"wrote {len(info['written'])} case(s) to {info['out']}"
                      + (f"; {len(info['already_promoted'])} already there" if info["already_promoted"] else ""),
                      markup=False)
        for case_id in info["written"]:
            console.print(f"  + {case_id}", markup=False)
        for s in info["skipped"]:
            console.print(f"  skipped {s['feedback_id']}: {s['reason']}", markup=False)


@app.command()
def compare(
    run_a: Annotated[str, typer.Argument(help="The earlier run (the baseline).")],
    run_b: Annotated[str, typer.Argument(help="The later run.")],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """What changed from run A to run B: new failures, fixed, changed behaviour, metrics."""
    from ..api import compare_runs
    from ..reporters.console import render_comparison

    data = compare_runs(_store(db), run_a, run_b)
    if as_json:
        _print_json(data)
    else:
        render_comparison(_console(), data)


@app.command()
def init(
    folder: Annotated[str, typer.Argument(help="Project folder (default: here).")] = ".",
    http: Annotated[Optional[str], typer.Option("--http", help="Write a suite for the HTTP service at this URL.")] = None,
    python: Annotated[Optional[str], typer.Option("--python", help="Write a suite for this module:function.")] = None,
    command: Annotated[Optional[str], typer.Option("--command", help="Write a suite for this long-lived command.")] = None,
    name: Annotated[str, typer.Option("--name", help="The suite's name (with --http, --python or --command).")] = "service",
    force: Annotated[bool, typer.Option("--force", help="Overwrite starter files that already exist.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Start a project: a starter suite that runs offline, or (--http, --python, --command) a suite for your own system."""
    from ..errors import UsageError
    from ..scaffold import System, init_project, init_system

    given = [(kind, value) for kind, value in (("http", http), ("python", python), ("command", command)) if value]
    if len(given) > 1:
        raise UsageError("give one of --http, --python and --command", hint="one suite describes one system")
    if given:
        kind, value = given[0]
        info = init_system(folder, System(kind, value), name=name, force=force)  # type: ignore[arg-type]
    else:
        info = init_project(folder, force=force)
    if as_json:
        _print_json(info)
        return
    console = _console()
    for rel in info["created"]:
        console.print(f"created  {rel}", markup=False)
    for rel in info["skipped"]:
        console.print(f"kept     {rel} (exists; --force overwrites)", markup=False)
    where = "" if folder == "." else f"cd {folder} && "
    if given:
        console.print(f"\nnext: {info['next'][0]}, then {where}evalgate validate && evalgate run", markup=False)
    else:
        console.print(f"\nnext: {where}evalgate run   (then: evalgate run --html report.html)", markup=False)


@app.callback(invoke_without_command=True)
def _root(version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False) -> None:
    if version:
        from .. import __version__

        sys.stdout.write(f"evalgate {__version__}\n")
        raise typer.Exit(0)
