"""Large replays on every core: worker processes read, score and make rows of recorded sessions.

A replay runs nothing but evalgate's own work (parsing recorded lines, binding and running scorers, building the
store's rows), so one process uses one core. For a replay of at least ``MIN_TURNS`` recorded turns the run forks
worker processes, one per core it may use, and gives each a part of the trace file at a time (parts start at a
session and hold about ``reader.MARK_TURNS`` turns; the shape pass marks them). A worker sends back its part's
rows; the run's own process writes them, in the file's order, with its one ResultWriter, so the store, the
counters, the gate and the reports are a one-process run's.

What must see every session in order stays in the run's process: a session the redactor would change is sent back
unread and run there, in order, so its placeholders are numbered as a one-process run numbers them (``<EMAIL_1>``
is the same value in every part). Suites the workers cannot run exactly as one process does run in one process:
several trace files (their session ids are made unique across files), a gold file (its join is one pass), an
interleaved file, a redaction hook, an async scorer (a judge calls a model), a confirmation run, a cluster
executor, or a platform without ``fork``.

Forked workers share the loaded suite with the run (bound scorers are closures, which do not pickle); they are
started before anything else runs, ignore Ctrl-C (the run stops them) and hold no store connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .cases import _selected
from .runner import shard_of
from .store.writer import PartFiles, Rows
from .traces.reader import BadLine, FilePart, RecordedSession, iter_part

if TYPE_CHECKING:
    from .runner import Runner
    from .store.writer import ResultWriter
    from .suite.loader import RecordedSource
    from .targets import Target

MIN_TURNS = 20_000
"""A replay this long runs on worker processes (a shorter one is over before they would pay for their start)."""
WINDOW = 3
"""Parts handed to each worker ahead of the one the run is writing: workers never wait for the run."""
BATCH_TURNS = 16_000
"""Turns of finished parts written in one batch when the workers are ahead of the store (each write's checkpoint
costs less per row in larger batches; measured 2-3 times less per row at 12,000 rows than at 4,000)."""
RESTARTS = 2
"""How many times the workers are started again after one died, before the run fails."""


@dataclass
class PartResult:
    """A worker's answer for one part: its rows, the sessions it left to the run, and the lines it could not read."""

    rows: PartFiles | Rows | None
    """The part's case runs as files of the store's tables (made on the worker's core), or as rows when the
    files could not be made."""
    deferred: list[tuple[int, RecordedSession]] = field(default_factory=list)
    """(seq, session) of the sessions the redactor would change: the run's process makes their case runs."""
    bad: list[BadLine] = field(default_factory=list)
    made: int = 0
    """Case runs the part made (rows and deferred sessions' alike): the progress bar's step."""
    sessions: int = 0
    """Recorded sessions the part holds (its cases are numbered from 0: the run's process renumbers them)."""


def workers_for(runner: Runner) -> int:
    """How many worker processes would replay ``runner``'s suite (0: it runs in this process)."""
    suite, options = runner.suite, runner.options
    kind, _, count = (options.executor or "").partition(":")
    if not runner.is_replay or kind == "local" or options.distributed is not None or options.confirm is not None:
        return 0
    if sys.platform != "linux" or len(suite.trace_sources) != 1:
        return 0
    rec = suite.trace_sources[0]
    if rec.gold is not None or rec.info._index is not None or options.upstreams is not None:
        return 0
    if suite.redactor is not None and suite.redactor.hook is not None:
        return 0
    if any(check.is_async for check in (*suite.suite_checks, *rec.checks)):
        return 0
    if kind != "processes" and suite.count_turns(options.tags) < MIN_TURNS:
        return 0
    cores = len(os.sched_getaffinity(0))
    wanted = int(count) if count.isdigit() and int(count) > 0 else cores
    return min(wanted, len(rec.info.parts())) if wanted > 1 else 0


# --- the worker side (a forked process) ------------------------------------------------


@dataclass
class _Job:
    runner: Runner
    target: Target
    rec: RecordedSource
    parts: list[FilePart]
    per_session: int
    """Case runs per session (one per run_as user)."""
    directory: str
    """Where the workers write their parts' files (beside the store; removed when the replay ends)."""
    types: dict[str, dict[str, str]]
    """The store's column types, table by table."""


_JOB: _Job | None = None
"""What the workers run; set before they are forked, so they share it."""


def _start_worker() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C (and a cancelled CI job's SIGTERM) is the run's: it
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # stops the workers; a worker whose run has died reads EOF and ends
    with contextlib.suppress(ValueError):  # (not the main thread: there is none to clear)
        signal.set_wakeup_fd(-1)  # the run's event loop's signal pipe is not this process's
    if _JOB is not None:
        _JOB.runner._scorer_pool = None  # threads do not cross a fork


def _replay_part(index: int) -> PartResult:
    assert _JOB is not None
    return asyncio.run(_run_part(_JOB, index))


async def _run_part(job: _Job, index: int) -> PartResult:
    runner, suite = job.runner, job.runner.suite
    options = runner.options
    part = job.parts[index]
    out = PartResult(None)
    rows = Rows()
    ids = {c.id for c in suite.static_cases}
    bad_lines = set(job.rec.info._bad_lines)
    seq = 0  # numbered within the part: the run's process adds the sessions before it (a session whose every
    # line fails validation is no case, so the shape pass's count cannot number them)
    repeats = range(options.repeat_offset, options.repeat_offset + runner.repeat)
    for session in iter_part(part, bad_lines, out.bad.append):
        if suite.needs_redaction(session):
            out.deferred.append((seq, session))
            out.made += sum(1 for case in _chosen(runner, suite.session_cases(session, job.rec, seq, set(ids)))
                            for r in repeats if (case.id, r) not in options.done)
            seq += job.per_session
            continue
        for case in _chosen(runner, suite.session_cases(session, job.rec, seq, ids, redact=False)):
            for r in repeats:
                if (case.id, r) not in options.done:
                    rows.add(await runner.run_case(job.target, case, r), runner.run_id)
                    out.made += 1
        seq += job.per_session
    out.sessions = seq // job.per_session
    if len(rows):
        import duckdb

        try:
            out.rows = PartFiles.write(rows, os.path.join(job.directory, f"part-{index}-{os.getpid()}"), job.types)
        except (duckdb.Error, OSError):  # a value the store's types do not take: the rows go back, and the run's
            out.rows = rows                 # writer keeps every other case run and names the one it could not store
    return out


def _chosen(runner: Runner, cases: list[Any]) -> list[Any]:
    """The cases a run selects (its tags, its shard), as ``Runner._work`` selects them."""
    tags, shard = runner.options.tags, runner.options.shard
    return [c for c in cases if _selected(c.tags, tags)
            and (shard is None or shard_of(c.variant_of or c.id, shard[1]) == shard[0])]


# --- the run's side ----------------------------------------------------------------


async def replay(runner: Runner, target: Target, writer: ResultWriter, interrupted: asyncio.Event,
                 workers: int) -> None:
    """Every case run of ``runner``'s replay: recorded sessions on ``workers`` processes, written ones here.

    A worker that dies (killed, out of memory, a scorer that ends its process) loses the parts in flight: the
    workers are started again and those parts sent again, up to ``RESTARTS`` times; then the run stops, keeping
    what was written (``--resume`` finishes it).
    """
    global _JOB
    suite = runner.suite
    rec = suite.trace_sources[0]
    parts = rec.info.parts()
    per_session = len(suite.run_as or [None])
    first_seq = len(suite.static_cases)
    store = writer.store
    directory = tempfile.mkdtemp(prefix=f".{store.path.name}.parts-", dir=store.path.parent)
    _JOB = _Job(runner, target, rec, parts, per_session, directory, writer.column_types())
    import multiprocessing

    fork = multiprocessing.get_context("fork")
    pool = ProcessPoolExecutor(workers, mp_context=fork, initializer=_start_worker)
    flying: deque[tuple[int, Future[PartResult]]] = deque()
    upcoming: deque[int] = deque(range(len(parts)))
    restarts = 0

    def send() -> None:
        while len(flying) < workers * WINDOW and upcoming:
            index = upcoming.popleft()
            flying.append((index, pool.submit(_replay_part, index)))

    held: list[PartFiles] = []

    def write_held() -> None:
        if held:
            writer.add_rows(PartFiles.join(held))
            held.clear()

    stopped = False
    try:
        send()  # the workers fork now, before this process starts a thread or runs a case
        for case in suite.static_cases:  # a replay suite's written cases (few): here, first, as in one process
            for r in runner._repeats(case):
                if interrupted.is_set():
                    return
                writer.add(await runner.run_case(target, case, r))
                runner.progress.advance(1)
        ids = {c.id for c in suite.static_cases}
        while flying:
            waiting: asyncio.Future[PartResult] = asyncio.wrap_future(flying[0][1])
            stop: asyncio.Future[Any] = asyncio.ensure_future(interrupted.wait())
            done, _ = await asyncio.wait([waiting, stop], return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            if waiting not in done:  # Ctrl-C: what is in flight is dropped, as in one process; --resume runs it
                stopped = True
                write_held()
                return
            try:
                result = waiting.result()
            except BrokenProcessPool as exc:
                if interrupted.is_set():  # the workers went with a signal to the whole process group
                    stopped = True
                    write_held()
                    return
                if restarts >= RESTARTS:  # the run stops (resumable), keeping what was written
                    first = parts[flying[0][0]]
                    runner._stop(f"replay worker processes died {restarts + 1} times, the last while replaying the "
                                 f"sessions from {first.path}:{first.first_line} on ({exc}); what was stored is kept: "
                                 "evalgate run --resume RUN finishes the run")
                    write_held()
                    return
                restarts += 1
                upcoming.extendleft(reversed([index for index, _ in flying]))  # sent again, in order
                flying.clear()
                _kill(pool)  # a live worker could block for ever sending its answer to a pool that reads no more
                pool.shutdown(wait=True, cancel_futures=True)
                writer.wait()  # no write in flight while the new workers fork
                pool = ProcessPoolExecutor(workers, mp_context=fork, initializer=_start_worker)
                send()
                continue
            flying.popleft()
            send()
            for bad in result.bad:
                runner._bad_line(bad)
            if isinstance(result.rows, Rows):
                write_held()
                writer.add_rows(result.rows.renumbered(first_seq))
            elif result.rows is not None:
                held.append(result.rows.renumbered(first_seq))
            for seq, session in result.deferred:
                for case in _chosen(runner, suite.session_cases(session, rec, first_seq + seq, set(ids))):
                    for r in runner._repeats(case):
                        writer.add(await runner.run_case(target, case, r))
            first_seq += result.sessions * per_session
            if sum(r.turn_count for r in held) >= BATCH_TURNS or not flying or not flying[0][1].done():
                write_held()  # parts the workers are ahead with are written together: fewer, larger writes
            runner.progress.advance(result.made)
            await asyncio.sleep(0)
        write_held()
    finally:
        _JOB = None
        for _, fut in flying:
            fut.cancel()
        if getattr(pool, "_broken", False):  # its live workers may block for ever sending to a pool that reads
            _kill(pool)                     # no more (a worker killed mid-send would block the reader instead)
            pool.shutdown(wait=True, cancel_futures=True)
        else:  # stopped, or an error: the parts in flight finish and are dropped; the process's exit waits for them
            pool.shutdown(wait=not (stopped or flying), cancel_futures=True)
        try:
            writer.wait()  # the last batch's files are read before they go
        finally:
            shutil.rmtree(directory, ignore_errors=True)


def _kill(pool: ProcessPoolExecutor) -> None:
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        proc.kill()
