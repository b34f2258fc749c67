"""Cases → target → scorers → results, with bounded concurrency.

Each (case, repeat) runs its turns in order, carrying state and history from
one turn to the next. Up to ``concurrency`` cases are in flight at once;
results are stored in batches as cases finish and are read back in ``seq``
order, so the order of the output never depends on timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .cases import Case, Turn, _selected
from .errors import RunError, RunStopped, TurnFailed
from .recovery.conversation import SimulatedTurns, WrittenTurns
from .results import CaseResult, Execution, RunStatus, TurnResult
from .sanitize import storable
from .scorers import BoundScorer, Score, ScoreContext
from .scorers.output import SYSTEM_ERROR, system_error
from .store import Store
from .store.writer import ResultWriter
from .suite import Suite
from .targets import Reply, StopRun, Target, TargetError, end_case, make_target
from .traces import BadLine, Trace, describe_validation_error, request_for, traceparent

DEFAULT_CONCURRENCY = 8
DEFAULT_TIMEOUT_S = 60.0


@dataclass
class RunOptions:
    """How to run a suite; unset fields fall back to the suite, then the config."""

    tags: list[str] | None = None
    repeat: int | None = None
    concurrency: int | None = None
    timeout_s: float | None = None
    strict: bool = False
    wait_s: float = 0.0
    """How long to wait for another run to release the store."""
    batch_rows: int = 5_000
    root: Path | None = None
    config_hash: str | None = None
    baseline: str | None = None
    """A baseline name, ``branch:NAME`` or a run id (else the suite's, then the config's)."""
    baseline_file: Path | None = None
    """A baseline JSON file written by ``baseline export`` (wins over ``baseline``)."""
    require_baseline: bool = False
    max_cost: float | None = None
    """USD: a pipeline target starts no new model call once the run's spend reaches this (the run stops, exit 3)."""
    spend: Any = None
    """What this ``evalgate run`` has spent on model calls so far, across its suites (set by api.run)."""
    offline: bool = False
    """A model call the cache cannot answer stops the run (exit 3) instead of reaching the endpoint."""
    cache_mode: str = "use"
    """The response cache: use, refresh or off."""
    cache_path: Path | None = None
    confirm: dict[str, int] | None = None
    """A confirmation run: only these cases, each this many times (set by the gate, not by users)."""
    repeat_offset: int = 0
    """The first repeat index (a confirmation run numbers its repeats after the run it confirms)."""
    parent_run: str | None = None
    """The run a confirmation run confirms."""
    shard: tuple[int, int] | None = None
    """(I, N): run only the I-th of N stable shares of the conversations (a case, its variants and repeats together)."""
    target_override: bool = False
    """The run's target came from --target, not the suite: it is stored so and never becomes a baseline."""
    resume: str | None = None
    """An interrupted run to finish: only its case runs not stored yet are run, into the same run (set by api.run)."""
    done: frozenset[tuple[str, int]] = frozenset()
    """With ``resume``: the (case, repeat) pairs the run stored already."""
    upstreams_mode: str | None = None
    """--upstreams: record, replay or live for every suite's upstream proxy (else each suite's recording.mode)."""
    upstreams: Any = None
    """The run's upstream proxy (upstreams.Upstreams), set by api.run when a suite names upstreams."""
    executor: str | None = None
    """--executor: local (None) or ray[:ADDRESS], where the case runs run (docs/ray.md)."""
    distributed: Any = None
    """The executor running case runs elsewhere (distributed.RayExecutor), set by api.run from ``executor``."""
    processes: Callable[..., Awaitable[bool]] | None = None
    """Runs a long replay on worker processes, if it can (True: it did): set by api.run (evalgate/parallel.py)."""


@dataclass
class Progress:
    """Callbacks the CLI uses to draw a progress bar; all optional."""

    start: Callable[[int], None] = lambda total: None
    advance: Callable[[int], None] = lambda n: None
    stop: Callable[[], None] = lambda: None


@dataclass
class _State:
    stop: bool = False
    stop_reason: str | None = None
    """Why the target asked the run to stop (budget spent, offline cache miss)."""
    bad_lines: list[BadLine] = field(default_factory=list)
    bad_count: int = 0


def new_run_id() -> str:
    """Sortable and unique: UTC time then randomness, e.g. 20261125T231500-3f9a1c."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]


def git_info(folder: Path) -> dict[str, Any]:
    """Commit, branch and dirtiness of the repository holding ``folder``, if any."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True, timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"git_commit": None, "git_branch": None, "git_dirty": None, "git_diff": None}
    branch = os.environ.get("GITHUB_HEAD_REF") or os.environ.get("GITHUB_REF_NAME") or git("rev-parse", "--abbrev-ref", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    dirty = bool(status) if status is not None else None
    diff = None
    if dirty:  # runs of the same uncommitted changes are one version: their history pools
        text = git("diff", "HEAD", "--no-ext-diff", "--no-color")
        diff = hashlib.blake2b(text.encode("utf-8", "surrogateescape"), digest_size=8).hexdigest() if text else None
    return {"git_commit": commit, "git_branch": branch, "git_dirty": dirty, "git_diff": diff}


def shard_of(conversation: str, shards: int) -> int:
    """Which of ``shards`` shares (1-based) a conversation belongs to: stable across runs, machines and Pythons."""
    return int(hashlib.sha256(conversation.encode()).hexdigest()[:12], 16) % shards + 1


def coerce_trace(raw: Any) -> Trace:
    """A target's answer as a Trace; a plain string is taken as the output.

    Values that could not be stored (invalid Unicode, nesting too deep, oversize text) are made storable first;
    what was changed is noted in the trace's ``extra.evalgate_sanitized``.
    """
    if isinstance(raw, Trace):
        return raw  # validated already (a recorded line, or a target's own Trace)
    raw, notes = storable(raw)
    if isinstance(raw, str):
        trace = Trace(output=raw)
    elif isinstance(raw, dict):
        trace = Trace.model_validate(raw)
    else:
        raise TypeError(f"a target must return a trace object (dict) or a string, got {type(raw).__name__}")
    if notes:
        trace.extra["evalgate_sanitized"] = notes
    return trace


def diff_recorded(recorded: Trace, now: Trace) -> dict[str, Any]:
    """What changed against the recording: route, context ids, tool calls, output."""
    changes: dict[str, Any] = {}
    if recorded.route_name != now.route_name:
        changes["route"] = {"recorded": recorded.route_name, "now": now.route_name}
    before, after = recorded.used_context_ids, now.used_context_ids
    if before != after:
        changes["context"] = {"added": [d for d in after if d not in before],
                              "removed": [d for d in before if d not in after]}
        if not changes["context"]["added"] and not changes["context"]["removed"]:
            changes["context"]["reordered"] = True
    tools_before, tools_after = [t.name for t in recorded.tool_calls], [t.name for t in now.tool_calls]
    if tools_before != tools_after:
        changes["tool_calls"] = {"recorded": tools_before, "now": tools_after}
    if (recorded.output or "").strip() != (now.output or "").strip():
        changes["output"] = {"recorded": (recorded.output or "")[:500], "now": (now.output or "")[:500]}
    return changes


class _Stopped(Exception):
    """The run stopped (StopRun) when this turn was to run: its case is not evaluated."""

    def __init__(self, turn: TurnResult):
        super().__init__(turn.error)
        self.turn = turn


class Runner:
    """Runs one loaded suite against its target and stores the results."""

    def __init__(self, suite: Suite, store: Store, options: RunOptions, progress: Progress | None = None):
        self.suite = suite
        self.store = store
        self.options = options
        self.progress = progress or Progress()
        self.repeat = options.repeat or suite.repeat
        self.concurrency = options.concurrency or suite.spec.concurrency or DEFAULT_CONCURRENCY
        self.timeout_s = options.timeout_s or suite.spec.timeout_s or DEFAULT_TIMEOUT_S
        self.state = _State()
        if suite.target is None:
            from .errors import UsageError

            raise UsageError(f"suite '{suite.name}' has no target",
                             hint="add target: {python: pkg.module:function} (or http, command, replay) to the suite, "
                                  "set target in [tool.evalgate], or pass --target")
        self.target_config = suite.target
        self.is_replay = suite.target.kind == "replay"
        self.run_id = ""
        self._models: Any = None
        self._scorer_pool: Any = None
        self._scorer_turns: dict[str, asyncio.Lock] = {}

    # --- one case -------------------------------------------------------------

    async def run_case(self, target: Target, case: Case, repeat: int) -> CaseResult:
        """One case run, turn by turn; the target is told when it is over (``targets.end_case``)."""
        try:
            return await self._run_case(target, case, repeat)
        finally:
            end_case(target, case.id, repeat)

    async def _run_case(self, target: Target, case: Case, repeat: int) -> CaseResult:
        result = CaseResult(case.id, case.seq, repeat, case.tags, case.user.id, list(case.user.groups),
                            case.session_id, case.source, case.critical, meta=case.meta, variant_of=case.variant_of)
        source = (WrittenTurns(case.turns) if case.simulation is None
                  else SimulatedTurns(case.simulation, self.models, repeat))
        state: dict[str, Any] = dict(case.state)
        history: list[dict[str, str]] = []
        base_session = case.session_id or f"{case.id}#{repeat}"
        # a target that keeps sessions must not find the last run's state under this run's: ids are the run's own
        run_tag = f"@{self.run_id}" if self.run_id and not self.is_replay else ""
        session_id = base_session + run_tag
        resumed_from: str | None = None
        earlier: list[Trace] = []
        transcript: list[tuple[str, str]] = []
        index, request = 0, {}
        while True:
            index += 1
            try:
                turn = await source.next(index, transcript)
            except RunStopped as exc:
                self._stop(str(exc))
                result.error, result.stopped = f"turn {index}: {exc}", True
                break
            except TurnFailed as exc:
                result.error = f"turn {index}: {exc}"
                break
            if turn is None:
                break
            if turn.resume:  # the user left and came back: a new session, no history
                resumed_from, session_id = session_id, f"{base_session}~{index}{run_tag}"
                history = []
                if turn.fresh:
                    state = dict(case.state)
            request = request_for(case_id=case.id, session_id=session_id, turn=index, repeat=repeat,
                                  input=turn.input, history=list(history), state=state, user=case.user,
                                  run_id=self.run_id, resumed_from=resumed_from if turn.resume else None)
            proxy = self.options.upstreams if not self.is_replay else None
            visit = proxy.visit(self.suite.name, case.id, repeat, index, request, turn.recorded) if proxy else None
            try:
                with visit or contextlib.nullcontext():  # the turn's upstream calls are attributed to it while it runs
                    tr = await self._run_turn(target, case, turn, index, request, state, tuple(earlier))
            except _Stopped as stop:  # the run stopped before this turn could run: the case is not evaluated
                tr, result.stopped = stop.turn, True
            if visit is not None:
                visit.attach(tr)
            tr.tags = turn.tags
            result.turns.append(tr)
            if tr.error is not None:
                result.error = f"turn {index}: {tr.error}"
                break  # later turns depend on this one's state: stop the conversation here
            scorer_errors = [s for s in tr.scores if s.error]
            if scorer_errors and result.error is None:
                result.error = f"turn {index}: scorer {scorer_errors[0].scorer} failed: {scorer_errors[0].error}"
            assert tr.trace is not None
            if tr.trace.state is not None:
                state = tr.trace.state
            history.append({"role": "user", "content": turn.input})
            history.append({"role": "assistant", "content": tr.trace.output or ""})
            transcript.append((turn.input, tr.trace.output or ""))
            earlier.append(tr.trace)
            if source.ends_after(index, tr.trace):
                break
        closing = source.closing()
        last = result.turns[-1] if result.turns else None
        if closing is not None and last is not None and last.trace is not None and result.error is None:
            ctx = self._context(case, last.turn, request, last.trace, None, last.elapsed_ms, tuple(earlier[:-1]))
            last.scores.append(closing.run_sync(ctx))
        return result

    async def _score(self, check: BoundScorer, ctx: ScoreContext) -> Score:
        """One scorer on one turn. Built-in sync scorers run inline (they are fast and cannot hang); an async one (a
        judge calling a model) and a plugin's or the project's sync one (it may loop or sleep) run within the turn's
        --timeout: past it, an error score, and a sync one's thread is left behind (it cannot hold the exit code)."""
        if check.is_async:
            return await self._bounded(check.run(ctx), check)
        if not check.user_code:
            return check.run_sync(ctx)
        if self._scorer_pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._scorer_pool = ThreadPoolExecutor(max_workers=max(1, self.concurrency),
                                                   thread_name_prefix="evalgate-scorer")
        # one call of a scorer at a time, as when they ran on the event loop (a scorer's own state needs no lock);
        # the deadline counts from when its call starts, so a call hung before it costs the next one only the wait
        async with self._scorer_turns.setdefault(check.name, asyncio.Lock()):
            call = asyncio.get_running_loop().run_in_executor(self._scorer_pool, check.run_sync, ctx)
            return await self._bounded(call, check)

    async def _bounded(self, call: Awaitable[Score], check: BoundScorer) -> Score:
        try:
            return await asyncio.wait_for(call, self.timeout_s)
        except asyncio.TimeoutError:
            message = f"timed out after {self.timeout_s:g}s (--timeout bounds each scorer too)"
            return Score(False, None, f"scorer {message}", message, check.name)

    def _stop(self, reason: str) -> None:
        if self.state.stop_reason is None:
            self.state.stop_reason = reason
        self.state.stop = True

    def _context(self, case: Case, index: int, request: dict[str, Any], trace: Trace, recorded: Trace | None,
                 elapsed_ms: float | None, earlier: tuple[Trace, ...]) -> ScoreContext:
        return ScoreContext(case, index, request, trace, recorded, earlier[-1] if earlier else None,
                            self.suite.documents, self.suite.permissions, elapsed_ms, self.models, earlier)

    async def _run_turn(self, target: Target, case: Case, turn: Turn, index: int, request: dict[str, Any],
                        state: dict[str, Any], earlier: tuple[Trace, ...]) -> TurnResult:
        if self.is_replay:
            if turn.recorded is None:
                return TurnResult(index, turn.input, state, None, None, "nothing recorded for this turn", [])
            reply = Reply(turn.recorded, None)  # nothing ran: no elapsed time to report
        else:
            try:
                reply = await target.call(request, turn, self.timeout_s)
            except StopRun as exc:
                self._stop(str(exc))
                raise _Stopped(TurnResult(index, turn.input, state, None, None, str(exc), [], turn.recorded)) from None
            except TargetError as exc:
                return TurnResult(index, turn.input, state, None, None, str(exc), [], turn.recorded)
        try:
            trace = coerce_trace(reply.raw)
        except ValidationError as exc:
            return TurnResult(index, turn.input, state, None, reply.elapsed_ms,
                              f"target returned an invalid trace: {describe_validation_error(exc)}", [], turn.recorded)
        except TypeError as exc:
            return TurnResult(index, turn.input, state, None, reply.elapsed_ms, str(exc), [], turn.recorded)
        if not self.is_replay:  # the trace context the call carried (http targets send it as traceparent)
            trace.extra["evalgate_trace_id"] = traceparent(request).split("-")[1]
        if trace.output is None and not trace.error and not self.is_replay:
            return TurnResult(index, turn.input, state, trace, reply.elapsed_ms,
                              "target returned a trace without output", [], turn.recorded)
        ctx = self._context(case, index, request, trace, turn.recorded, reply.elapsed_ms, earlier)
        scores = []
        for check in turn.checks:
            scores.append(await self._score(check, ctx))
        if trace.error and not any(c.name == SYSTEM_ERROR for c in turn.checks):
            scores.append(system_error(trace.error))  # the system failed its user: a failed turn, scored like any other
        changes = diff_recorded(turn.recorded, trace) if turn.recorded is not None and not self.is_replay else None
        return TurnResult(index, turn.input, state, trace, reply.elapsed_ms, None, scores,
                          turn.recorded if not self.is_replay else None, changes)

    # --- the run ---------------------------------------------------------------

    def _bad_line(self, bad: BadLine) -> None:
        """A recorded line that passed the shape pass and failed full validation: counted, the first ones kept."""
        self.state.bad_count += 1
        if len(self.state.bad_lines) < 50:
            self.state.bad_lines.append(bad)

    def _repeats(self, case: Case) -> Iterator[int]:
        """The repeats of ``case`` this run makes (not a confirmation run's)."""
        first = self.options.repeat_offset
        for r in range(first, first + self.repeat):
            if (case.id, r) not in self.options.done:
                yield r

    def _work(self) -> Iterator[tuple[Case, int]]:
        on_bad = self._bad_line
        only = self.options.confirm
        first = self.options.repeat_offset
        done = self.options.done
        shard = self.options.shard
        for case in self.suite.iter_cases(self.options.tags, on_bad=on_bad):
            if only is not None and case.id not in only:
                continue
            if shard is not None and only is None and shard_of(case.variant_of or case.id, shard[1]) != shard[0]:
                continue
            for r in range(first, first + (only[case.id] if only is not None else self.repeat)):
                if (case.id, r) not in done:
                    yield case, r

    def total(self) -> int:
        """Case runs this run will make."""
        if self.options.confirm is not None:
            return sum(self.options.confirm.values())
        n = self.suite.count_cases(self.options.tags)
        if self.options.shard is not None:  # written cases exactly; recorded sessions are streamed, so estimated
            i, of = self.options.shard
            static = [c for c in self.suite.static_cases if _selected(c.tags, self.options.tags)]
            mine = sum(1 for c in static if shard_of(c.variant_of or c.id, of) == i)
            n = mine + (n - len(static)) // of
        return max(0, n * self.repeat - len(self.options.done))

    @property
    def models(self) -> Any:
        """How this run calls models, target and judge alike (models.ModelOptions)."""
        if self._models is None:
            from .models.client import ModelOptions

            self._models = ModelOptions(cache_path=self.options.cache_path, cache_mode=self.options.cache_mode,
                                        offline=self.options.offline, max_cost=self.options.max_cost,
                                        concurrency=self.concurrency, meter=self.options.spend)
        return self._models

    def make_target(self) -> Target:
        return make_target(self.target_config, root=self.options.root, concurrency=self.concurrency,
                           documents=self.suite.documents, permissions=self.suite.permissions, models=self.models)

    async def run(self, target: Target) -> Execution:
        """Run every selected case through a started target; stores the run even when interrupted."""
        run_id = self.run_id = self.options.resume or new_run_id()
        with self.store.run_lock(wait_s=self.options.wait_s, run_id=run_id):
            try:
                return await self._run_locked(run_id, target)
            finally:
                if self._scorer_pool is not None:  # a scorer still hung in its thread is left to the exit
                    self._scorer_pool.shutdown(wait=False, cancel_futures=True)
                    self._scorer_pool = None

    async def _run_locked(self, run_id: str, target: Target) -> Execution:
        suite = self.suite
        total = self.total()
        started = time.perf_counter()
        info = git_info(suite.path.parent)
        from .store import runs

        with self.store.connect() as con:
            if self.options.resume:  # the same run goes on: what it stored stays, the rest is added to it
                prior = runs.reopen(con, run_id)
            else:
                prior = None
                runs.begin(con, runs.NewRun(
                    run_id=run_id, suite=suite.name, suite_path=str(suite.path), suite_hash=suite.text_hash,
                    config_hash=self.options.config_hash, target=self.target_config.describe(), git=info,
                    evalgate_version=_version(), repeat=self.repeat, selected_tags=self.options.tags or [],
                    cases_total=total, bad_lines=suite.notes.bad_line_count,
                    options={"concurrency": self.concurrency, "timeout_s": self.timeout_s, "strict": self.options.strict,
                             "target_override": self.options.target_override,
                             "shard": f"{self.options.shard[0]}/{self.options.shard[1]}" if self.options.shard else None},
                    parent_run=self.options.parent_run))
        writer = ResultWriter(self.store, run_id, batch_rows=self.options.batch_rows)
        if prior is not None:  # the counters go on from what the run stored
            writer.cases_done, writer.turns_done, writer.errors, writer.passed = prior
        self.progress.start(total)
        status: RunStatus = "completed"
        failure: str | None = None
        loop = asyncio.get_running_loop()
        interrupted = asyncio.Event()
        main_task = asyncio.current_task()

        def on_sigint() -> None:
            self.state.stop = True
            interrupted.set()
            loop.remove_signal_handler(signal.SIGINT)  # a second Ctrl-C interrupts for real

        try:
            loop.add_signal_handler(signal.SIGINT, on_sigint)
            loop.add_signal_handler(signal.SIGTERM, on_sigint)  # a CI job cancelled: the same as Ctrl-C
            installed = True
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
            installed = False
        gc_thresholds = gc.get_threshold()
        # what was loaded before the run (modules, suite, documents) is never garbage: keep the collector off it,
        # and collect young objects less often; full collections stalled every turn in flight (measured in
        # benchmarks/bench_pipeline.py: run-phase efficiency 88% → 93% at 2,000 turns)
        gc.freeze()
        gc.set_threshold(50_000, 20, 100)
        try:
            await self._execute(target, writer, interrupted)
            if self.state.stop_reason is not None:
                status, failure = "stopped", self.state.stop_reason
            elif self.state.stop:
                status = "interrupted"
        except asyncio.CancelledError:
            status = "interrupted"
            if main_task is not None:
                main_task.uncancel()
        except Exception as exc:  # an evalgate bug: keep what finished, then report it
            status, failure = "failed", f"{type(exc).__name__}: {exc}"
        finally:
            gc.set_threshold(*gc_thresholds)
            gc.unfreeze()
            self.progress.stop()
            if installed:
                with contextlib.suppress(RuntimeError, ValueError):  # the loop may be closing
                    loop.remove_signal_handler(signal.SIGINT)
                    loop.remove_signal_handler(signal.SIGTERM)
        bad = suite.notes.bad_line_count + self.state.bad_count
        try:
            writer.flush(status_update={"status": status, "bad_lines": bad,
                                        "finished_at": datetime.now(timezone.utc).replace(tzinfo=None)})
        finally:
            writer.close()
        if writer.failure is not None:  # a write failed: the run says exactly what it kept
            status, failure = ("stopped" if writer.broken is not None else "failed"), writer.failure
        return Execution(run_id, suite.name, status, writer.cases_done, writer.turns_done, writer.errors,
                          writer.passed, bad, time.perf_counter() - started, failure)

    async def _execute(self, target: Target, writer: ResultWriter, interrupted: asyncio.Event) -> None:
        if self.options.distributed is not None:  # on a cluster's workers; results come back to this writer
            await self.options.distributed.execute(self, writer, interrupted)
            return
        if self.is_replay and self.options.processes is not None:  # a long replay may run on worker processes
            if await self.options.processes(self, target, writer, interrupted):
                return
        work = self._work()

        async def worker() -> None:
            n = 0
            for case, r in work:  # a shared iterator: each worker pulls the next case
                if self.state.stop:
                    return
                result = await self.run_case(target, case, r)
                if result.stopped:  # not evaluated: left to --resume, as the cases the stop kept from starting
                    return
                writer.add(result)
                self.progress.advance(1)
                n += 1
                if n % 64 == 0:
                    await asyncio.sleep(0)  # replay never suspends: let signals and others in

        workers = [asyncio.create_task(worker()) for _ in range(1 if self.is_replay else self.concurrency)]
        stopper: asyncio.Task[Any] = asyncio.create_task(interrupted.wait())
        pending: set[asyncio.Task[Any]] = set(workers)
        while pending:
            finished, pending = await asyncio.wait(pending | {stopper}, return_when=asyncio.FIRST_COMPLETED)
            pending.discard(stopper)
            if stopper in finished:
                for w in pending:
                    w.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
                break
            for task in finished:
                exc = task.exception() if task is not stopper else None
                if exc is not None:
                    for other in pending:
                        other.cancel()
                    raise exc
        stopper.cancel()


def _version() -> str:
    from . import __version__

    return __version__


def config_hash(suite: Suite, options: RunOptions) -> str:
    """A short hash of what decides the results: suite text, target and options."""
    blob = json.dumps([suite.text_hash, suite.target.describe() if suite.target else None, options.repeat,
                       options.tags], default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def run_suite(suite: Suite, store: Store, options: RunOptions | None = None, progress: Progress | None = None) -> Execution:
    """Run a loaded suite and store its results (a blocking call)."""
    options = options or RunOptions()
    if options.config_hash is None:
        options.config_hash = config_hash(suite, options)
    runner = Runner(suite, store, options, progress)

    async def go() -> Execution:
        target = runner.make_target()
        await target.start()
        try:
            return await runner.run(target)
        finally:
            await target.close()
            from .models.shared import close_shared

            await close_shared()  # the judges' clients (their I/O threads) end with the run, as in api.run

    try:
        return asyncio.run(go())
    except KeyboardInterrupt:
        raise RunError("interrupted before the run could be stored") from None
