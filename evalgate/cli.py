"""The command line. Each command parses options, calls one library
function, renders the result and returns an exit code; ``main`` is the one
place where exceptions become messages and exit codes.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated, Any, Optional

import typer

from .errors import EXIT_RUN_ERROR, EvalgateError

app = typer.Typer(
    name="evalgate",
    help="Evaluate an AI system (routing, context, state, output) on suites and recorded traces; "
         "store every run in DuckDB and gate releases on the results.",
    rich_markup_mode=None,
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)

DbOption = Annotated[Optional[str], typer.Option("--db", help="Store path (default: .evalgate/evalgate.duckdb, or EVALGATE_DB).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of the terminal view.")]


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # piped output is read in files and CI logs, not an 80-column terminal
    width = None if stream.isatty() or os.environ.get("COLUMNS") else 160
    return Console(stderr=stderr, highlight=False, soft_wrap=False, width=width)


def _split(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    out = [t for v in values for t in v.replace(" ", ",").split(",") if t]
    return out or None


def _store(db: str | None) -> Any:
    from .config import find_config
    from .store import Store

    return Store(db or find_config().store)


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")


@app.command()
def run(
    paths: Annotated[Optional[list[str]], typer.Argument(help="Suite files or folders (default: the configured suites folder).")] = None,
    tags: Annotated[Optional[list[str]], typer.Option("--tags", "-t", help="Run only cases with any of these tags (comma-separated).")] = None,
    repeat: Annotated[Optional[int], typer.Option("--repeat", min=1, help="Run every case this many times.")] = None,
    concurrency: Annotated[Optional[int], typer.Option("--concurrency", "-j", min=1, help="Cases in flight at once (default 8).")] = None,
    timeout: Annotated[Optional[float], typer.Option("--timeout", min=0.001, help="Seconds a target may take for one turn (default 60).")] = None,
    target: Annotated[Optional[str], typer.Option("--target", help="Override the target: replay, python:pkg.mod:fn, http:URL, command:ARGV.")] = None,
    strict: Annotated[bool, typer.Option("--strict", help="A bad line in a trace file is an error (exit 2) instead of skipped and counted.")] = False,
    wait: Annotated[float, typer.Option("--wait", min=0, help="Seconds to wait for another run to release the store.")] = 0.0,
    baseline: Annotated[Optional[str], typer.Option("--baseline", help="Compare with this baseline: a name, branch:NAME or a run id.")] = None,
    baseline_file: Annotated[Optional[str], typer.Option("--baseline-file", help="Compare with a baseline file written by 'baseline export'.")] = None,
    require_baseline: Annotated[bool, typer.Option("--require-baseline", help="No baseline is a usage error (exit 2) instead of a notice.")] = False,
    junit: Annotated[Optional[str], typer.Option("--junit", help="Also write JUnit XML here (one test per case run).")] = None,
    markdown: Annotated[Optional[str], typer.Option("--markdown", help="Also write a Markdown summary here (and to $GITHUB_STEP_SUMMARY when set).")] = None,
    html: Annotated[Optional[str], typer.Option("--html", help="Also write the HTML report here (one file per suite: NAME-SUITE.html when several ran).")] = None,
    max_cost: Annotated[Optional[float], typer.Option("--max-cost", min=0, help="USD: start no new model call once the run's spend reaches this; the run stops (exit 3).")] = None,
    offline: Annotated[bool, typer.Option("--offline", help="Answer model calls from the cache only; a miss stops the run (exit 3), naming the case.")] = False,
    cache_mode: Annotated[str, typer.Option("--cache-mode", help="The model response cache: use (default), refresh (call and overwrite) or off.")] = "use",
    cache: Annotated[Optional[str], typer.Option("--cache", help="Cache path (default: .evalgate/cache.sqlite, or EVALGATE_CACHE).")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Run suites against their targets, score, store, and gate.

    \b
    Exit codes:
      0  the gate passed
      1  the gate failed on quality (a rule)
      2  usage or configuration error, found before the first turn ran
      3  the run could not be trusted or completed (errors above
         max_error_rate, target unreachable, interrupted, store busy)
    """
    from .api import run as run_api
    from .reporters.console import ProgressBar, render_run
    from .runner import RunOptions

    from pathlib import Path

    options = RunOptions(tags=_split(tags), repeat=repeat, concurrency=concurrency, timeout_s=timeout,
                         strict=strict, wait_s=wait, baseline=baseline,
                         baseline_file=Path(baseline_file) if baseline_file else None,
                         require_baseline=require_baseline, max_cost=max_cost, offline=offline,
                         cache_mode=_cache_mode(cache_mode), cache_path=Path(cache) if cache else None)
    console = _console()
    show_progress = not as_json and console.is_terminal
    factory = (lambda suite: ProgressBar(console, suite.name)) if show_progress else None
    report = run_api(paths, store_path=db, options=options, target=target, progress_factory=factory)
    written = _write_reports(report, junit, markdown, html)
    if as_json:
        data = report.to_dict()
        if written:
            data["html"] = written
        _print_json(data)
    else:
        render_run(console, report)
        for w in written:
            console.print(f"HTML report: {w['path']}", markup=False)
    raise typer.Exit(report.exit_code)


def _cache_mode(value: str) -> str:
    from .errors import UsageError, did_you_mean
    from .models.client import CACHE_MODES

    if value not in CACHE_MODES:
        raise UsageError(f"unknown --cache-mode '{value}'", hint=did_you_mean(value, CACHE_MODES) or "use, refresh or off")
    return value


def _write_reports(report: Any, junit: str | None, markdown: str | None, html: str | None) -> list[dict[str, Any]]:
    """Every report the command asked for; GitHub annotations on stderr in GitHub Actions."""
    from .config import find_config
    from .reporters import write_reports

    written = write_reports(report, junit=junit, markdown=markdown, html=html, trace_url=find_config().trace_url)
    for line in written.annotations:
        sys.stderr.write(line + "\n")
    return written.html


@app.command()
def validate(
    paths: Annotated[Optional[list[str]], typer.Argument(help="Suite files or folders (default: the configured suites folder).")] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Treat bad trace lines as errors.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Check suites and every file they name, without running anything."""
    from .api import validate as validate_api
    from .reporters.console import render_validation

    report = validate_api(paths, strict=strict)
    if as_json:
        _print_json(report.to_dict())
    else:
        render_validation(_console(), report)


@app.command()
def show(
    run_id: Annotated[str, typer.Argument(help="Run id (a unique prefix, or 'latest').")],
    case_id: Annotated[str, typer.Argument(help="Case id.")],
    repeat: Annotated[Optional[int], typer.Option("--repeat", help="Only this repeat.")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """The story of one case: each turn's input, route and why, context, tools, output, state, scores."""
    from .api import case_story
    from .reporters.console import render_story

    story = case_story(_store(db), run_id, case_id, repeat)
    if as_json:
        _print_json(story)
    else:
        render_story(_console(), story)


@app.command()
def report(
    run_id: Annotated[str, typer.Argument(help="Run id (a unique prefix, or 'latest').")] = "latest",
    html: Annotated[Optional[str], typer.Option("--html", help="Write the HTML report to this file.")] = None,
    junit: Annotated[Optional[str], typer.Option("--junit", help="Write JUnit XML here (one test per case run).")] = None,
    markdown: Annotated[Optional[str], typer.Option("--markdown", help="Write the Markdown summary here (and to $GITHUB_STEP_SUMMARY when set).")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Report a stored run: a self-contained HTML file (no network), JUnit XML, Markdown, or the verdict as JSON."""
    from .api import stored_report

    store = _store(db)
    report = stored_report(store, [run_id])
    html_written = _write_reports(report, junit, markdown, html)
    info = html_written[0] if html_written else None
    if as_json:
        data = report.to_dict()
        if info:
            data["html"] = info
        _print_json(data)
        return
    if not (html or junit or markdown):
        from .reporters.console import render_run

        render_run(_console(), report)
        return
    console = _console()
    if info:
        console.print(f"wrote {info['path']}: {info['suite']} run {info['run_id']}, {info['cases']} case(s), "
                      f"{info['bytes'] / 1e6:.2f} MB", markup=False)
    for label, path in (("JUnit XML", junit), ("Markdown", markdown)):
        if path:
            console.print(f"wrote {label} to {path}", markup=False)


@app.command()
def routes(
    run_id: Annotated[str, typer.Argument(help="Run id (a unique prefix, or 'latest').")] = "latest",
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """The route confusion matrix of a run, with per-route precision and recall."""
    from .api import route_confusion
    from .reporters.console import render_routes

    data = route_confusion(_store(db), run_id)
    if as_json:
        _print_json(data)
    else:
        render_routes(_console(), data)


@app.command()
def history(
    suite: Annotated[Optional[str], typer.Argument(help="Only runs of this suite.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="How many runs.")] = 20,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Recent runs with their verdicts and headline metrics."""
    from .api import history as history_api
    from .reporters.console import render_history

    rows = history_api(_store(db), suite, limit)
    if as_json:
        _print_json(rows)
    else:
        render_history(_console(), rows)


@app.command()
def scorers(as_json: JsonOption = False) -> None:
    """Every scorer a suite can name, with its arguments and one line of help."""
    from .reporters.console import render_scorers, scorer_rows

    rows = scorer_rows()
    if as_json:
        _print_json(rows)
    else:
        render_scorers(_console(), rows)


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
    from .api import set_baseline

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
    from .api import show_baselines
    from .reporters.console import render_baselines

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
    from .api import export_baseline

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
    from .config import find_config
    from .models.cache import ResponseCache

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

    from .errors import UsageError

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
            from .errors import UsageError

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
    from .intake import import_traces
    from .reporters.console import render_import

    stats = import_traces(files, out, mapping=mapping, redact=not no_redact, redact_patterns=_pairs(redact_pattern),
                          redact_python=redact_python)
    if as_json:
        _print_json(stats)
    else:
        render_import(_console(), stats)


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
    from .intake import import_feedback

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
    from .intake import list_feedback
    from .reporters.console import render_feedback

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
    from .intake import promote_feedback

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
    from .api import compare_runs
    from .reporters.console import render_comparison

    data = compare_runs(_store(db), run_a, run_b)
    if as_json:
        _print_json(data)
    else:
        render_comparison(_console(), data)


@app.command()
def init(
    folder: Annotated[str, typer.Argument(help="Project folder (default: here).")] = ".",
    force: Annotated[bool, typer.Option("--force", help="Overwrite starter files that already exist.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Start a project: configuration, a suite, a small offline pipeline, documents, cases, an adapter template."""
    from .scaffold import init_project

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
    console.print(f"\nnext: {where}evalgate run   (then: evalgate run --html report.html)", markup=False)


@app.callback(invoke_without_command=True)
def _root(version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False) -> None:
    if version:
        from . import __version__

        sys.stdout.write(f"evalgate {__version__}\n")
        raise typer.Exit(0)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run a command, turn evalgate's errors into messages and exit codes."""
    args = sys.argv[1:] if argv is None else argv
    want_json = "--json" in args
    try:
        app(args=args, prog_name="evalgate")  # exits through SystemExit with the command's code
    except EvalgateError as exc:
        if want_json:
            _print_json(exc.to_dict())
        _console(stderr=True).print(f"[bold red]error:[/] {_escape(str(exc))}", soft_wrap=True)
        raise SystemExit(exc.exit_code) from None
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        raise SystemExit(EXIT_RUN_ERROR) from None
    except Exception as exc:  # an evalgate bug: say so plainly, keep the traceback for debugging
        if os.environ.get("EVALGATE_DEBUG"):
            raise
        sys.stderr.write(f"internal error: {type(exc).__name__}: {exc}\n"
                         "  set EVALGATE_DEBUG=1 for the traceback, and please report it\n")
        raise SystemExit(EXIT_RUN_ERROR) from None


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
