"""The main commands: run, validate, show, report, routes, history, scorers."""

from __future__ import annotations

import sys
from typing import Annotated, Any, Optional

import typer

from ._shared import DbOption, JsonOption, _stdout_closed, _console, _print_json, _split, _store, app


@app.command()
def run(
    paths: Annotated[Optional[list[str]], typer.Argument(help="Suite files or folders (default: the configured suites folder).")] = None,
    tags: Annotated[Optional[list[str]], typer.Option("--tags", "-t", help="Run only cases with any of these tags (comma-separated).")] = None,
    repeat: Annotated[Optional[int], typer.Option("--repeat", min=1, help="Run every case this many times.")] = None,
    concurrency: Annotated[Optional[int], typer.Option("--concurrency", "-j", min=1, max=10_000, help="Cases in flight at once (default 8).")] = None,
    timeout: Annotated[Optional[float], typer.Option("--timeout", min=0.001, max=86_400, help="Seconds a target may take for one turn (default 60).")] = None,
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
    offline: Annotated[bool, typer.Option("--offline", help="Answer model calls from the cache only; a miss stops the run (exit 3), naming the case. Upstream calls come from recordings only: a missing or changed one fails its turn.")] = False,
    cache_mode: Annotated[str, typer.Option("--cache-mode", help="The model response cache: use (default), refresh (call and overwrite) or off.")] = "use",
    cache: Annotated[Optional[str], typer.Option("--cache", help="Cache path (default: .evalgate/cache.sqlite, or EVALGATE_CACHE).")] = None,
    shard: Annotated[Optional[str], typer.Option("--shard", help="I/N: run the I-th of N stable shares of the cases (a case, its variants and repeats together); 'evalgate merge' joins the shards' runs.")] = None,
    resume: Annotated[Optional[str], typer.Option("--resume", help="Finish an interrupted run: run only the case runs it did not store, into the same run, for one verdict.")] = None,
    upstreams: Annotated[Optional[str], typer.Option("--upstreams", help="The upstream proxy's mode for every suite: record, replay or live (default: the suite's recording.mode, else replay when its recordings file exists, else record).")] = None,
    executor: Annotated[Optional[str], typer.Option("--executor", help="Where case runs run: this process and, for a replay of 20,000 turns or more, a worker process per core (default); local (this process only); processes[:N] (a replay on N worker processes); ray (a local Ray cluster) or ray:ADDRESS (a cluster's head), which need the ray extra.")] = None,
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
    from ..api import run as run_api
    from ..reporters.console import ProgressBar, render_run
    from ..runner import RunOptions

    from pathlib import Path

    options = RunOptions(tags=_split(tags), repeat=repeat, concurrency=concurrency, timeout_s=timeout,
                         strict=strict, wait_s=wait, baseline=baseline,
                         baseline_file=Path(baseline_file) if baseline_file else None,
                         require_baseline=require_baseline, max_cost=max_cost, offline=offline,
                         cache_mode=_cache_mode(cache_mode), cache_path=Path(cache) if cache else None,
                         resume=resume, shard=_shard(shard), upstreams_mode=upstreams,
                         executor=executor)
    console = _console()
    show_progress = not as_json and console.is_terminal
    factory = (lambda suite: ProgressBar(console, suite.name)) if show_progress else None
    report = run_api(paths, store_path=db, options=options, target=target, progress_factory=factory,
                     announce=lambda line: sys.stderr.write(line + "\n"))  # stdout stays the report (or its JSON)
    written = _write_reports(report, junit, markdown, html)
    try:
        if as_json:
            data = report.to_dict()
            if written:
                data["html"] = written
            _print_json(data)
        else:
            render_run(console, report)
            for w in written:
                console.print(f"HTML report: {w['path']}", markup=False)
        sys.stdout.flush()
    except BrokenPipeError:  # `evalgate run | head`: the reader left; the verdict's exit code still stands
        _stdout_closed()
    raise typer.Exit(report.exit_code)


def _cache_mode(value: str) -> str:
    from ..errors import UsageError, did_you_mean
    from ..models.client import CACHE_MODES

    if value not in CACHE_MODES:
        raise UsageError(f"unknown --cache-mode '{value}'", hint=did_you_mean(value, CACHE_MODES) or "use, refresh or off")
    return value


def _write_reports(report: Any, junit: str | None, markdown: str | None, html: str | None) -> list[dict[str, Any]]:
    """Every report the command asked for; GitHub annotations on stderr in GitHub Actions."""
    from ..config import find_config
    from ..reporters import write_reports

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
    from ..api import validate as validate_api
    from ..reporters.console import render_validation

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
    as_case: Annotated[bool, typer.Option("--as-case", help="Write the conversation out as a case (YAML) a suite can "
                                          "hold: a simulated user's transcript becomes a fixed script.")] = False,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """The story of one case: each turn's input, route and why, context, tools, output, state, scores."""
    from ..api import case_story
    from ..reporters.console import render_story

    story = case_story(_store(db), run_id, case_id, repeat)
    if as_case:
        import yaml

        from ..recovery.script import story_as_case

        case = story_as_case(story, repeat)
        if as_json:
            _print_json(case)
        else:
            sys.stdout.write(yaml.safe_dump([case], sort_keys=False, allow_unicode=True))
        return
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
    from ..api import stored_report

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
        from ..reporters.console import render_run

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
    """The route confusion matrix of a run, with per-route precision, recall and F1, the accuracy and the macro-F1."""
    from ..api import route_confusion
    from ..reporters.console import render_routes

    data = route_confusion(_store(db), run_id)
    if as_json:
        _print_json(data)
    else:
        render_routes(_console(), data)


def _shard(text: str | None) -> tuple[int, int] | None:
    from ..errors import UsageError

    if text is None:
        return None
    i, _, n = text.partition("/")
    if not (i.isdigit() and n.isdigit() and 1 <= int(i) <= int(n) <= 1000):
        raise UsageError(f"--shard {text}: expected I/N with 1 ≤ I ≤ N ≤ 1000", hint="e.g. --shard 1/4")
    return int(i), int(n)


@app.command()
def merge(
    stores: Annotated[list[str], typer.Argument(help="The store file of each shard (the --db each shard's job wrote).")],
    suite: Annotated[Optional[str], typer.Option("--suite", help="The suite to merge, when the stores hold several.")] = None,
    baseline: Annotated[Optional[str], typer.Option("--baseline", help="Compare with this baseline: a name, branch:NAME or a run id.")] = None,
    baseline_file: Annotated[Optional[str], typer.Option("--baseline-file", help="Compare with a baseline file written by 'baseline export'.")] = None,
    junit: Annotated[Optional[str], typer.Option("--junit", help="Also write JUnit XML here.")] = None,
    markdown: Annotated[Optional[str], typer.Option("--markdown", help="Also write a Markdown summary here.")] = None,
    html: Annotated[Optional[str], typer.Option("--html", help="Also write the HTML report here.")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Join the runs of a suite's shards (run --shard I/N, one store each) into one run here, with one verdict.

    Exit codes as for run: 0 pass, 1 fail, 2 usage (a shard missing or twice), 3 not trusted.
    """
    from pathlib import Path

    from ..api import merge_shards
    from ..reporters.console import render_run
    from ..runner import RunOptions

    options = RunOptions(baseline=baseline, baseline_file=Path(baseline_file) if baseline_file else None)
    report = merge_shards(stores, suite=suite, store_path=db, options=options)
    _write_reports(report, junit, markdown, html)
    if as_json:
        _print_json(report.to_dict())
    else:
        render_run(_console(), report)
    raise typer.Exit(report.exit_code)


@app.command()
def comment(
    markdown: Annotated[str, typer.Option("--markdown", help="The summary 'evalgate run --markdown PATH' wrote.")] = "evalgate-summary.md",
    as_json: JsonOption = False,
) -> None:
    """Post the run's summary as the pull request's evalgate comment, or update it (one per pull request).

    Reads GITHUB_TOKEN (pull-requests: write), GITHUB_REPOSITORY and GITHUB_EVENT_PATH, as a workflow sets them;
    a token that may not comment (a fork's) writes to the step summary with a notice instead.
    """
    from pathlib import Path

    from ..errors import UsageError
    from ..github import post_comment

    path = Path(markdown)
    if not path.is_file():
        raise UsageError(f"no summary at {path}", hint="run 'evalgate run --markdown PATH' first")
    done = post_comment(path.read_text(encoding="utf-8"))
    if as_json:
        _print_json(done)
    elif done["action"] == "summary":
        sys.stderr.write(f"::notice title=evalgate::{done['why']}; the summary went to the step summary\n")
    else:
        _console().print(f"pull-request comment {done['action']}" + (f": {done['url']}" if done.get("url") else
                                                                      f" ({done.get('why', '')})"), markup=False)


@app.command()
def export(
    run_id: Annotated[str, typer.Argument(help="Run id (a unique prefix, or 'latest').")] = "latest",
    out: Annotated[str, typer.Option("--out", "-o", help="Folder for runs, cases, turns and scores files.")] = "export",
    fmt: Annotated[str, typer.Option("--format", help="csv, parquet or jsonl.")] = "parquet",
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Write a stored run's tables (runs, cases, turns, scores) as CSV, Parquet or JSON lines, for other tools."""
    from ..frames import export as export_run

    done = export_run(run_id, out, fmt=fmt, store=_store(db))
    if as_json:
        _print_json(done)
        return
    for table, path in done["files"].items():
        _console().print(f"wrote {path}: {done['rows'][table]} row(s)", markup=False)


@app.command()
def history(
    suite: Annotated[Optional[str], typer.Argument(help="Only runs of this suite.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="How many runs.")] = 20,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Recent runs with their verdicts and headline metrics."""
    from ..api import history as history_api
    from ..reporters.console import render_history

    rows = history_api(_store(db), suite, limit)
    if as_json:
        _print_json(rows)
    else:
        render_history(_console(), rows)


@app.command()
def scorers(as_json: JsonOption = False) -> None:
    """Every scorer a suite can name, with its arguments and one line of help."""
    from ..reporters.console import render_scorers, scorer_rows

    rows = scorer_rows()
    if as_json:
        _print_json(rows)
    else:
        render_scorers(_console(), rows)
