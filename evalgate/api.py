"""The library functions behind every command. The CLI only translates.

    run(paths)        load suites → run → metrics → gate → stored verdict
    validate(paths)   load and check suites and the files they name
    case_story(...)   one case of a stored run, turn by turn
    history(...)      the runs in the store
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import assess as assess_mod
from . import baseline as baseline_mod
from . import gate as gate_mod
from .config import Config, find_config
from .errors import EXIT_PASS, EXIT_RUN_ERROR, UsageError
from .results import Execution, RunStatus
from .runner import Progress, Runner, RunOptions, config_hash
from .store import Store, metrics, queries, runs
from .store import baselines as stored
from .suite import Suite, discover, is_default, load_suite


@dataclass
class SuiteReport:
    """One suite's run: outcome, verdict, headline metrics and failing cases."""

    suite: str
    path: str
    run_id: str
    status: str
    verdict: gate_mod.Verdict
    metrics: dict[str, float | None]
    failing: list[dict[str, Any]]
    warnings: list[str]
    bad_lines: list[dict[str, Any]]
    duration_s: float
    cases: int
    turns: int
    target: str
    baseline: dict[str, Any] | None = None
    """The comparison with the baseline: new failures, fixed, changed, ..."""
    statistics: dict[str, Any] | None = None
    """The gate's statistical decisions: flipped, confirmed, flaky and inconclusive cases, drops, shares."""
    upstreams: dict[str, Any] | None = None
    """The upstream proxy's calls: served from recordings, live, changed, missing, failed; the recordings file."""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["verdict"] = self.verdict.to_dict()
        return d


@dataclass
class RunReport:
    """Every suite run by one ``evalgate run``, and the exit code they add up to."""

    store: str
    suites: list[SuiteReport] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        codes = [s.verdict.exit_code for s in self.suites]
        if EXIT_RUN_ERROR in codes:
            return EXIT_RUN_ERROR
        return max(codes, default=EXIT_PASS)

    def to_dict(self) -> dict[str, Any]:
        return {"store": self.store, "exit_code": self.exit_code, "suites": [s.to_dict() for s in self.suites]}


def load_suites(paths: list[str] | None, config: Config, *, strict: bool = False,
                target: str | None = None) -> list[Suite]:
    """Suites named on the command line, or the configured folder's default ones."""
    files = discover(paths or [], config)
    if not paths:
        files = [f for f in files if is_default(f)]
    if not files:
        raise UsageError("no suite files found", hint=f"add YAML suites to {config.suites} or pass suite paths")
    return [load_suite(f, config, strict=strict, target_override=target) for f in files]


def run(paths: list[str] | None = None, *, config: Config | None = None, store_path: str | Path | None = None,
        options: RunOptions | None = None, target: str | None = None,
        progress_factory: Any = None, announce: Any = None) -> RunReport:
    """Load, run, score, store and gate every suite; returns the report.

    Everything that can be checked before the first turn is checked first
    (suites, datasets, traces, scorers, target imports), so usage errors
    exit 2 without running anything.
    """
    config = config or find_config()
    options = options or RunOptions()
    options.root = options.root or config.root
    if options.processes is None:
        options.processes = _replay_on_processes
    options.target_override = target is not None
    if options.cache_path is None:
        options.cache_path = config.cache
    if options.concurrency is None and config.concurrency:
        options.concurrency = config.concurrency
    if options.timeout_s is None and config.timeout_s:
        options.timeout_s = config.timeout_s
    if options.executor is None and config.executor:
        options.executor = config.executor
    if options.resume is not None:
        paths = _prepare_resume(Store(store_path or config.store), options, paths)
    suites = load_suites(paths, config, strict=options.strict, target=target)
    from . import upstreams

    # one proxy for the run's upstreams; every suite's recordings are read now (a bad file is exit 2 here)
    options.upstreams = upstreams.prepare(suites, mode=options.upstreams_mode, offline=options.offline, root=config.root)
    if options.resume is not None:
        _check_resumed_suite(Store(store_path or config.store), options, suites)
    if options.strict:  # as validate --strict: every recorded line is read before anything runs; a bad one is fatal
        for s in suites:
            if s.trace_sources:
                _stream_recorded(s, True)
    if options.max_cost is not None and options.spend is None:
        from .pipeline.model import SpendMeter

        options.spend = SpendMeter(options.max_cost)  # one budget for the whole run, whatever the suites
    store = Store(store_path or config.store)
    if options.tags and not any(s.count_cases(options.tags) for s in suites):
        raise UsageError(f"no case has any of the tags {', '.join(options.tags)}", hint="check --tags")
    report = RunReport(str(store.path))
    baselines = {s.name: resolve_baseline(s, store, options, config) for s in suites}

    async def go() -> None:
        runners = [Runner(s, store, _options_for(s, options), None) for s in suites]
        targets = [r.make_target() for r in runners]
        started = []
        try:
            for t in targets:  # all imports and spawns before the first turn: exit 2 stays honest
                await t.start()
                started.append(t)
            for suite, runner, tgt in zip(suites, runners, targets):
                if options.tags and not suite.count_cases(options.tags):
                    continue
                runner.progress = progress_factory(suite) if progress_factory else Progress()
                if options.upstreams is not None:
                    options.upstreams.activate(suite.name)
                outcome = await runner.run(tgt)
                confirmation = await _confirm(store, suite, runner, tgt, outcome, baselines[suite.name],
                                              progress_factory)
                calls = options.upstreams.finish(suite.name) if options.upstreams is not None else None
                report.suites.append(finish(store, suite, outcome, baselines[suite.name], confirmation, calls))
                if outcome.status in ("interrupted", "stopped") or any(
                        c.status in ("interrupted", "stopped") for c in confirmation):
                    break
        finally:
            for t in started:
                await t.close()
            from .models.shared import close_shared

            await close_shared()  # the judges' and simulated users' clients (their I/O threads) end with the run

    joined = None
    if options.executor is not None and options.distributed is None:
        from .distributed import connect

        joined = options.distributed = connect(options.executor, options, config)  # before any target starts
    try:
        with upstreams.serving(options.upstreams, announce):  # listening before any target starts or imports
            asyncio.run(go())
    finally:
        if joined is not None:
            joined.close()
    return report


async def _replay_on_processes(runner: Runner, target: Any, writer: Any, interrupted: asyncio.Event) -> bool:
    """A replay long enough (or ``--executor processes``) on a worker process per core; False: run it here."""
    from .parallel import replay, workers_for

    processes = workers_for(runner)
    if processes:
        await replay(runner, target, writer, interrupted, processes)
    return processes > 0


def _prepare_resume(store: Store, options: RunOptions, paths: list[str] | None) -> list[str]:
    """``--resume RUN``: the run's own suite, and the case runs it stored already."""
    assert options.resume is not None
    run_id = store.resolve_run(options.resume)
    with store.connect(read_only=True) as con:
        run = queries.stored_run(con, run_id)
        done = queries.stored_case_runs(con, run_id)
    status = run.status
    if status == "running" and not store.writer_alive():
        status = "interrupted"  # its process died
    if status not in ("interrupted", "stopped"):
        raise UsageError(f"run {run_id} is {status}: only an interrupted or stopped run can be resumed",
                         hint="evalgate history lists runs and their status")
    if paths and len(paths) > 1:
        raise UsageError("--resume finishes one run: name no suite, or its own", hint=f"the run's suite is {run.suite_path}")
    options.resume, options.done = run_id, frozenset(done)
    options.repeat, options.tags = run.repeat, list(run.selected_tags) or None  # the case runs it set out to make
    return [run.suite_path]


def _check_resumed_suite(store: Store, options: RunOptions, suites: list[Suite]) -> None:
    with store.connect(read_only=True) as con:
        run = queries.stored_run(con, options.resume or "")
    suite = suites[0]
    if suite.text_hash != run.suite_hash:
        raise UsageError(f"suite {suite.path} changed since run {options.resume} started: its cases may not be the same",
                         hint="start a new run instead of resuming this one")
    if suite.target is not None and suite.target.describe() != run.target:
        raise UsageError(f"run {options.resume} ran {run.target}, not {suite.target.describe()}",
                         hint="resume with the run's own target (the same --target, or none)")


def merge_shards(stores: Sequence[str | Path], *, suite: str | None = None, config: Config | None = None,
                 store_path: str | Path | None = None, options: RunOptions | None = None) -> RunReport:
    """The runs of a suite's shards (``run --shard I/N``, one store each) as one run of this store, with one verdict:
    the same metrics, comparison and gate as an unsharded run of the same cases."""
    from .runner import new_run_id
    from .store.merge import merge

    config = config or find_config()
    options = options or RunOptions()
    store = Store(store_path or config.store)
    run_id = new_run_id()
    with store.run_lock(wait_s=options.wait_s, run_id=run_id), store.connect() as con:
        shards, children = merge(con, [Path(p) for p in stores], suite, run_id)
        counts = queries.run_counts(con, run_id)
        child_counts = [(c, queries.run_counts(con, c)) for c in children]
    first = shards[0]
    loaded = load_suite(first.suite_path, config)
    if loaded.text_hash != first.suite_hash:
        raise UsageError(f"suite {first.suite_path} here is not the one the shards ran (its text changed)",
                         hint="merge in a checkout of the commit the shards ran")
    base = resolve_baseline(loaded, store, options, config)
    status: RunStatus = "completed" if all(r.status == "completed" for r in shards) else "interrupted"
    outcome = Execution(run_id, loaded.name, status, *counts, 0, 0.0)
    confirmation = [Execution(c, loaded.name, "completed", *n, 0, 0.0) for c, n in child_counts]
    report = RunReport(str(store.path))
    report.suites.append(finish(store, loaded, outcome, base, confirmation))
    return report


def _options_for(suite: Suite, options: RunOptions) -> RunOptions:
    opts = RunOptions(**{**options.__dict__})
    opts.config_hash = config_hash(suite, options)
    return opts


@dataclass
class BaselineChoice:
    """The baseline a suite's run is compared with, or why there is none."""

    wanted: str | None
    snapshot: baseline_mod.Snapshot | None = None
    exists: bool = False
    """The baseline was found (for other suites, at least): a suite it lacks is new, not a missing baseline."""


def resolve_baseline(suite: Suite, store: Store, options: RunOptions, config: Config) -> BaselineChoice:
    """Find the suite's baseline before anything runs (so --require-baseline can exit 2)."""
    if options.baseline_file is not None:
        choice = BaselineChoice(str(options.baseline_file), baseline_mod.read_file(Path(options.baseline_file), suite.name),
                                exists=True)  # read_file refuses a missing or bad file
    else:
        ref = options.baseline or suite.spec.baseline or config.baseline
        choice = BaselineChoice(ref)
        if ref and store.path.exists():
            with store.connect() as con:
                run_id = stored.find_run(con, ref, suite.name)
                choice.exists = run_id is not None or bool(queries.baselines(con, ref))
                if run_id is not None:
                    pooled = stored.version_runs(con, run_id, suite.gate.history)
                    choice.snapshot = stored.snapshot(con, run_id, pooled, turns=False)  # read when compared
    if choice.snapshot is None and options.require_baseline and not choice.exists:
        what = f"'{choice.wanted}'" if choice.wanted else "none was named"
        raise UsageError(f"suite {suite.name}: no baseline to compare with ({what})",
                         hint="pass --baseline NAME, --baseline-file PATH, or drop --require-baseline")
    return choice


async def _confirm(store: Store, suite: Suite, runner: Runner, target: Any, outcome: Execution,
                   base: BaselineChoice, progress_factory: Any) -> list[Execution]:
    """Re-run the cases that did worse than their history, in rounds, as confirmation runs of this run.

    Each round re-runs once every case still failing; a case leaves as soon as
    it passes or once it has failed its planned number of times; a probe (a case
    re-run beside them to show whether the system varies) goes on while it answers
    as it did in this run. The outcomes
    these rounds can produce are a subset of a fixed number of re-runs' (a run
    after a pass is never made), so every rejection is one the fixed design
    would make too, at its level, for a fraction of the runs.
    """
    if outcome.status != "completed" or base.snapshot is None or not assess_mod.has_nnf(suite.gate):
        return []
    with store.connect(read_only=True) as con:
        cand = stored.snapshot(con, outcome.run_id, turns=False)
    if suite.gate.confirm <= 0:
        return []
    suspects = assess_mod.to_confirm(suite.gate, base.snapshot, cand)
    probing = set(assess_mod.probes(base.snapshot, cand, suspects))
    plan = {**suspects, **dict.fromkeys(probing, suite.gate.confirm)}
    rounds: list[Execution] = []
    failed = dict.fromkeys(plan, 0)
    offset = runner.repeat
    while True:
        todo = {case_id: 1 for case_id, k in plan.items() if failed.get(case_id, -1) >= 0 and failed[case_id] < k}
        if not todo:
            return rounds
        opts = RunOptions(**{**runner.options.__dict__})
        opts.confirm, opts.repeat_offset, opts.parent_run = todo, offset, outcome.run_id
        again = Runner(suite, store, opts, progress_factory(suite) if progress_factory else Progress())
        done = await again.run(target)
        rounds.append(done)
        offset += 1
        if done.status != "completed":
            return rounds
        with store.connect(read_only=True) as con:
            now = stored.snapshot(con, done.run_id, turns=False)
        for case_id in todo:
            c = now.cases.get(case_id)
            first = cand.cases.get(case_id)
            if c is None or c.judged == 0:
                failed[case_id] = -1  # errored: no more rounds for it
            elif case_id in probing:  # a probe goes on while it answers as it did in this run
                same = first is not None and bool(c.passed) == (first.passed == first.judged) and \
                    set(c.digests) <= set(first.digests)
                failed[case_id] = failed[case_id] + 1 if same else -1
            elif c.passed:
                failed[case_id] = -1  # passed again: flaky, not broken
            else:
                failed[case_id] += 1


def _share_rules(con: Any, run_id: str, suite: Suite, rules: list[Any], data: list[metrics.RuleData | None],
                 slices: dict[int, set[str] | None], has_baseline: bool) -> dict[int, assess_mod.ShareData]:
    out = {}
    for i in assess_mod.statistical_rules(suite.gate, has_baseline):
        rule, rd = rules[i], data[i]
        if rule.max_drop is not None or rd is None or rd.value is None or not rd.trials:
            continue
        metric = rule.metric or ""
        turn_level = metric.endswith((".pass_rate", ".accuracy")) and metric.count(".") == 1
        clusters: list[tuple[int, int]] | None
        if turn_level:
            clusters = metrics.score_clusters(con, run_id, metric, rule.where)
        else:  # a conversation and its variants move together (none: each case run is its own cluster)
            clusters = metrics.conversation_clusters(con, run_id, metric, rule.where)
        out[i] = assess_mod.ShareData(rd.value * rd.trials, rd.trials, slices.get(i),
                                      case_level=metric == "pass_rate", clusters=clusters)
    return out


_HEADLINE_APART_TURNS = 20_000
"""From this many turns the headline metrics are read on a connection of their own, so what DuckDB held for them is
let go before the gate reads the run; below it a connection of its own cost more time (~20 ms) than it saved."""


def finish(store: Store, suite: Suite, outcome: Execution, base: BaselineChoice | None = None,
           confirmation: list[Execution] | None = None, upstream_calls: dict[str, Any] | None = None) -> SuiteReport:
    """Compute metrics, compare with the baseline, decide the verdict, and store them."""
    base = base or BaselineChoice(None)
    apart = outcome.turns >= _HEADLINE_APART_TURNS
    if apart:  # on its own: what DuckDB holds for the headline's queries is let go (~50 MB at 100k)
        with store.connect() as con:
            head = metrics.headline(con, outcome.run_id)
    with store.connect() as con:
        if not apart:
            head = metrics.headline(con, outcome.run_id)
        cand = stored.snapshot(con, outcome.run_id, turns=False)  # only the turns a comparison reads
        rounds = [c.run_id for c in confirmation or []]
        confirmed = stored.snapshot(con, rounds[0], rounds, turns=False) if rounds else None
        if base.snapshot is not None:
            stored.turns_to_compare(con, base.snapshot, cand)
        comparison = baseline_mod.compare(base.snapshot, cand) if base.snapshot is not None else None
        rules = gate_mod.with_default_rules(suite.gate)
        data = metrics.rule_data(con, outcome.run_id, rules)
        stat_rules = assess_mod.statistical_rules(suite.gate, base.snapshot is not None)
        slices: dict[int, set[str] | None] = {}
        for i in stat_rules:
            where = rules[i].where
            slices[i] = metrics.slice_case_ids(con, outcome.run_id, where) if where is not None else None
        assessment = assess_mod.assess(suite.gate, cand, base.snapshot, confirmed, slices,
                                       _share_rules(con, outcome.run_id, suite, rules, data, slices,
                                                    base.snapshot is not None))
        if comparison is not None:
            if assess_mod.has_nnf(suite.gate):  # judged: only confirmed regressions are new failures
                comparison.new_failures = [v.case_id for v in assessment.regressions]
            comparison.flaky = list(assessment.flaky)
            comparison.inconclusive = [v.case_id for v in assessment.inconclusive]
            comparison.flipped = list(assessment.flipped)
            comparison.baseline_runs = base.snapshot.runs if base.snapshot is not None else 1
        critical = metrics.critical_failures(con, outcome.run_id)
        failed_ids = metrics.compute(con, outcome.run_id, "failed").cases
        flaky = metrics.compute(con, outcome.run_id, "flaky").cases
        flaky += [c for c in assessment.flaky if c not in flaky]
        status, failure = outcome.status, outcome.failure
        unfinished = next((c for c in confirmation or [] if c.status != "completed"), None)
        if unfinished is not None and status == "completed":  # stopped while re-running flipped cases
            status, failure = unfinished.status, f"while confirming flipped cases{': ' + unfinished.failure if unfinished.failure else ''}"
        # a confirmation run that errored is a run error like any other (and decides nothing)
        extra_runs = sum(c.cases for c in confirmation or [])
        extra_errors = sum(c.errors for c in confirmation or [])
        inputs = gate_mod.GateInputs(suite.gate, suite.gated, status, outcome.cases + extra_runs,
                                     outcome.errors + extra_errors,
                                     data, critical, failed_ids, outcome.bad_lines, failure,
                                     comparison, assessment, flaky, metrics.critical_errored(con, outcome.run_id))
        verdict = gate_mod.evaluate(inputs)
        if base.wanted and base.snapshot is None:
            verdict.notices.insert(0, f"baseline '{base.wanted}' has no run of suite {suite.name}; regression rules skipped")
        redacted = suite.redactor.summary() if suite.redactor is not None else {}
        if redacted:
            verdict.notices.append("redacted from recorded traces: "
                                   + ", ".join(f"{kind} {n}" for kind, n in redacted.items()))
        failing = metrics.failing_cases(con, outcome.run_id)
        statistics = assessment.to_dict()
        summary = {"metrics": head, "verdict": verdict.to_dict(),
                   "baseline": comparison.to_dict() if comparison else None, "redacted": redacted,
                   "warnings": list(suite.notes.warnings), "statistics": statistics}
        routes = metrics.route_confusion(con, outcome.run_id)
        if routes["turns"]:
            summary["routes"] = routes
        if upstream_calls is not None:
            summary["upstreams"] = upstream_calls
        runs.record_verdict(con, outcome.run_id, verdict.status, verdict.exit_code, summary, rounds)
    bad = [{"file": b.path, "line": b.line, "message": b.message} for b in suite.notes.bad_lines]
    return SuiteReport(suite.name, str(suite.path), outcome.run_id, outcome.status, verdict, head, failing,
                       list(suite.notes.warnings), bad, outcome.duration_s, outcome.cases, outcome.turns,
                       suite.target.describe() if suite.target else "",
                       comparison.to_dict() if comparison else None, statistics, upstream_calls)


@dataclass
class ValidationReport:
    """What ``validate`` found: per suite, its cases, turns, sources and warnings."""

    suites: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {"suites": self.suites, "ok": True}


def validate(paths: list[str] | None = None, *, config: Config | None = None, strict: bool = False,
             check_target: bool = True) -> ValidationReport:
    """Load every suite and the files it names, without running anything.

    Raises SuiteError (exit 2) on the first problem; warnings are returned.
    """
    config = config or find_config()
    suites = load_suites(paths, config, strict=strict)
    out = []
    for s in suites:
        if check_target and s.target is not None and s.target.kind == "python":
            from .targets.python import import_target

            try:  # as a run imports it, on the loop its async calls run on
                import_target(s.target.spec["python"], [config.root, s.path.parent])
            except Exception as exc:
                raise UsageError(f"suite {s.path}: target '{s.target.spec['python']}' does not import: {exc}") from None
        sessions, bad_total, bad_msgs = _stream_recorded(s, strict)
        warnings = list(s.notes.warnings)
        if s.target is not None and s.target.kind == "pipeline":
            key_env = ((s.target.spec.get("pipeline") or {}).get("endpoint") or {}).get("api_key_env")
            if key_env and key_env not in os.environ:
                warnings.append(f"the pipeline's model key {key_env} is not set: 'run' will stop (exit 2) "
                                "unless every answer is cached and it runs with --offline")
        if bad_total:
            warnings.append(f"{bad_total} bad trace line(s) will be skipped (run with --strict to make them fatal)")
        out.append({"suite": s.name, "path": str(s.path), "default": s.spec.default,
                    "target": s.target.describe() if s.target else None,
                    "cases": s.count_cases(), "turns": s.count_turns(), "recorded_sessions": sessions,
                    "repeat": s.repeat, "gated": s.gated, "rules": len(s.gate.rules),
                    "leak_rule": (s.documents is not None or s.permissions is not None)
                    and not any(r.metric == gate_mod.LEAK_METRIC for r in s.gate.rules),
                    "warnings": warnings, "bad_lines": bad_msgs})
        if s.spec.upstreams:  # the recordings file is read as run reads it: a bad line is exit 2 here too
            from .upstreams import recordings_of

            out[-1]["upstreams"] = recordings_of(s, config.root)
    return ValidationReport(out)


def _stream_recorded(suite: Suite, strict: bool) -> tuple[int, int, list[dict[str, Any]]]:
    """Read every recorded session in full (the scan pass only checks lines cheaply)."""
    from .errors import Location, SuiteError

    bad_total = suite.notes.bad_line_count
    bad_msgs = [{"file": b.path, "line": b.line, "message": b.message} for b in suite.notes.bad_lines]

    def on_bad(b: Any) -> None:
        nonlocal bad_total
        bad_total += 1
        if strict:
            raise SuiteError(f"bad trace line: {b.message}", location=Location(b.path, b.line))
        if len(bad_msgs) < 50:
            bad_msgs.append({"file": b.path, "line": b.line, "message": b.message})

    sessions = sum(1 for case in suite.iter_cases(on_bad=on_bad) if case.session_id is not None)
    return sessions, bad_total, bad_msgs


def case_story(store: Store, run_ref: str | None, case_id: str, repeat: int | None = None) -> dict[str, Any]:
    """One case of a stored run, turn by turn, with every score.

    ``latest`` means the latest run that has this case.
    """
    if run_ref in (None, "latest", "last"):
        with store.connect(read_only=True) as con:
            found = queries.latest_run_with_case(con, case_id)
        run_id = found or store.resolve_run(None)
    else:
        run_id = store.resolve_run(run_ref)
    with store.connect(read_only=True) as con:
        return queries.case_story(con, run_id, case_id, repeat)


def route_confusion(store: Store, run_ref: str | None = None) -> dict[str, Any]:
    """The route confusion matrix of a run, with per-route precision, recall, F1 and support, and the macro-F1.

    ``matrix[expected][taken]`` counts scored turns; a turn whose expectation
    lists several routes counts under the one taken when it is among them,
    else under the first listed. ``(none)`` is a turn that reported no route.
    """
    run_id = store.resolve_run(run_ref)
    with store.connect(read_only=True) as con:
        return {"run_id": run_id, **metrics.route_confusion(con, run_id)}


def history(store: Store, suite: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
    """Recent runs, newest first, with verdicts and headline metrics."""
    with store.connect(read_only=True) as con:
        rows = [row.to_dict() for row in queries.history(con, suite, limit)]
    if any(r["status"] == "running" for r in rows) and not store.writer_alive():
        for r in rows:  # no process holds the run lock: a run still marked running died with its process
            if r["status"] == "running":
                r["status"] = "interrupted"
    return rows


def set_baseline(store: Store, name: str, run_ref: str | None = None) -> list[dict[str, str]]:
    """Name a baseline: the given run, or the latest run of every suite, all or nothing."""
    if run_ref is not None:
        run_ids = [store.resolve_run(run_ref)]
    else:
        with store.connect(read_only=True) as con:
            run_ids = queries.latest_run_per_suite(con)
        if not run_ids:
            raise UsageError("the store has no run to name", hint="run 'evalgate run' first")
    with store.connect() as con:
        return stored.set_baseline(con, name, run_ids)


def show_baselines(store: Store, name: str | None = None) -> list[dict[str, Any]]:
    """Named baselines with their runs' verdicts."""
    with store.connect() as con:  # migrates an older store so the table exists
        return [row.to_dict() for row in queries.baselines(con, name)]


def export_baseline(store: Store, name: str, path: str | Path) -> dict[str, Any]:
    """Write a named baseline to a JSON file a repository can commit."""
    with store.connect() as con:
        return stored.export(con, name, Path(path))


def stored_report(store: Store, run_refs: list[str]) -> RunReport:
    """The report of stored runs, as ``run`` returned it: for Markdown, JUnit and JSON after the fact."""
    report = RunReport(str(store.path))
    for ref in run_refs:
        run_id = store.resolve_run(ref)
        with store.connect(read_only=True) as con:
            run = queries.stored_run(con, run_id)
            failing = metrics.failing_cases(con, run_id)
        summary = run.summary
        status = run.status
        if status == "running" and not store.writer_alive():
            status = "interrupted"  # its process died: no run lock is held
        if not summary.get("verdict") and status == "running":
            raise UsageError(f"run {run_id} has no verdict yet: it is still running",
                             hint="a run gets its verdict when it finishes; 'evalgate history' lists runs")
        v = summary.get("verdict") or {
            "status": "error", "exit_code": EXIT_RUN_ERROR, "rules": [],
            "reasons": [f"the run was {status} after {run.cases} case run(s), before it had a verdict "
                        "(its process was killed or died); what finished is stored"]}
        verdict = gate_mod.Verdict(v["status"], v["exit_code"], [gate_mod.RuleResult(**r) for r in v["rules"]],
                                   v["reasons"], v.get("notices", []))
        report.suites.append(SuiteReport(run.suite, run.suite_path, run_id, status, verdict,
                                         summary.get("metrics", {}), failing, summary.get("warnings", []), [],
                                         run.duration_s, run.cases, run.turns, run.target, summary.get("baseline"),
                                         summary.get("statistics"), summary.get("upstreams")))
    return report


def html_report(store: Store, run_ref: str | None, path: str | Path, *, config: Config | None = None) -> dict[str, Any]:
    """Write the self-contained HTML report of a stored run; returns its path, size and counts."""
    from .reporters.html import build

    config = config or find_config()
    return build(store, run_ref, path, trace_url=config.trace_url)


def compare_runs(store: Store, run_a: str, run_b: str) -> dict[str, Any]:
    """What changed from run A (the baseline) to run B, case by case."""
    a, b = store.resolve_run(run_a), store.resolve_run(run_b)
    with store.connect(read_only=True) as con:
        base, cand = stored.snapshot(con, a), stored.snapshot(con, b)
    if base.suite != cand.suite:
        raise UsageError(f"runs are of different suites ({base.suite}, {cand.suite})")
    out = baseline_mod.compare(base, cand).to_dict()
    out.update({"suite": cand.suite, "run_a": a, "run_b": b,
                "metrics": {k: {"a": base.metrics.get(k), "b": cand.metrics.get(k)}
                            for k in sorted(set(base.metrics) | set(cand.metrics))}})
    return out
