"""Case runs on a Ray cluster: ``evalgate run --executor ray[:ADDRESS]``.

The driver (the ``evalgate run`` process) keeps everything but the running:
it walks the suite's cases as a local run does, hands them out in batches of
(case seq, repeat), and gives each batch's CaseResults to the run's own
ResultWriter, so the store, the metrics, the gate and the reports are the
local run's. A worker is a Ray actor, one per CPU of the cluster: it loads
the suite from its path itself (a Case holds its bound scorers, closures that
do not pickle), starts the target once in its own event loop and runs its
batches with the run's ``--concurrency``.

A worker that dies (its process killed, its node lost) loses only the
batches it held: Ray restarts the actor and its case runs are sent again,
one per batch, up to ``ATTEMPTS`` times; a case run that still finds no
worker alive is stored as an error, named, as a crash is locally.

Ray is an optional extra (``pip install 'evalgate-release[ray]'``), imported
only here, and only when an executor is asked for. It ships no types: it is
``Any`` at this boundary.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import RunError, UsageError
from .results import CaseResult

if TYPE_CHECKING:
    from .cases import Case
    from .config import Config
    from .runner import Runner, RunOptions
    from .store.writer import ResultWriter
    from .targets import Target
    from .targets.spec import TargetConfig

ATTEMPTS = 3
"""How many workers a case run may lose before it is stored as an error."""
IN_FLIGHT = 2
"""Batches sent to a worker before its first comes back: it never waits for the driver."""
HINT = "pip install -e '.[ray]' in a clone (or pip install 'evalgate-release[ray]')"


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker needs to run a suite's case runs: where the suite is and how to run it."""

    suite_path: Path
    config: Config
    target: TargetConfig
    strict: bool
    tags: list[str] | None
    repeat: int
    concurrency: int
    timeout_s: float
    offline: bool
    cache_mode: str
    cache_path: Path | None


@dataclass
class Batch:
    """A worker's answer: the case runs it finished, and why the run must stop, if it must."""

    results: list[CaseResult]
    stop_reason: str | None = None
    pid: int = 0


class CaseWorker:
    """A Ray actor's body: one loaded suite, one started target, batches of (seq, repeat) in, Batches out."""

    def __init__(self, spec: WorkerSpec):
        self.spec = spec
        self._runner: Runner | None = None
        self._target: Target | None = None
        self._gate: asyncio.Semaphore | None = None
        self._starting: asyncio.Lock | None = None
        self._cases: Iterator[Case] = iter(())
        self._last: Case | None = None

    async def _ready(self) -> Runner:
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self._runner is None:
                from .runner import Runner, RunOptions
                from .store import Store
                from .suite import load_suite

                s = self.spec
                suite = load_suite(s.suite_path, s.config, strict=s.strict)
                suite.target = s.target  # a --target override is the driver's, not the file's
                options = RunOptions(tags=s.tags, repeat=s.repeat, concurrency=s.concurrency, timeout_s=s.timeout_s,
                                     strict=s.strict, root=s.config.root, offline=s.offline, cache_mode=s.cache_mode,
                                     cache_path=s.cache_path)
                runner = Runner(suite, Store(s.config.store), options)  # the store is the driver's: never opened here
                target = runner.make_target()
                await target.start()
                self._gate = asyncio.Semaphore(1 if runner.is_replay else runner.concurrency)
                self._runner, self._target = runner, target
        assert self._runner is not None
        return self._runner

    def _case(self, seq: int) -> Case:
        """The suite's case numbered ``seq``: written ones by index, recorded ones streamed in order."""
        assert self._runner is not None
        suite = self._runner.suite
        if seq < len(suite.static_cases):
            return suite.static_cases[seq]
        if self._last is None or self._last.seq > seq:  # a batch sent again after a later one: read from the start
            self._cases = suite.iter_cases(self.spec.tags)
        while self._last is None or self._last.seq != seq:
            try:
                self._last = next(self._cases)
            except StopIteration:
                raise RunError(f"case {seq} of suite {suite.name} is not in {suite.path} on this worker: "
                               "its files differ from the driver's") from None
            if self._last.seq > seq:
                raise RunError(f"case {seq} of suite {suite.name} is not selected on this worker")
        return self._last

    async def run(self, run_id: str, items: list[tuple[int, int]]) -> Batch:
        runner = await self._ready()
        assert self._target is not None and self._gate is not None
        if runner.run_id != run_id:  # session ids carry the run's id, as a local run's do
            runner.run_id = run_id
            runner.state.stop, runner.state.stop_reason = False, None  # a stop is the run's, not the worker's
        target, gate = self._target, self._gate
        work = [(self._case(seq), r) for seq, r in items]

        async def one(case: Case, repeat: int) -> CaseResult | None:
            async with gate:
                if runner.state.stop:  # the target asked the run to stop: what has not started is left to --resume
                    return None
                return await runner.run_case(target, case, repeat)

        done = await asyncio.gather(*(one(c, r) for c, r in work))
        return Batch([r for r in done if r is not None and not r.stopped], runner.state.stop_reason, os.getpid())

    def pid(self) -> int:
        return os.getpid()


@dataclass
class _Job:
    items: list[tuple[Case, int]]
    attempt: int = 0


@dataclass
class _Pool:
    actors: list[Any]
    busy: dict[int, int] = field(default_factory=dict)
    """Batches in flight per actor (by index)."""


class RayExecutor:
    """Runs a Runner's case runs on Ray actors; the results come back to the Runner's own writer."""

    def __init__(self, ray: Any, owned: bool, config: Config):
        self.ray = ray
        self.config = config
        """The driver's configuration: workers load suites with it."""
        self.owned = owned
        """This executor started the Ray session (and ends it); a caller's own session is left running."""
        self._pools: dict[int, _Pool] = {}

    def workers(self) -> int:
        """Actors per suite: one per CPU of the cluster."""
        return max(1, int(self.ray.cluster_resources().get("CPU", 1)))

    def _pool(self, runner: Runner) -> _Pool:
        key = id(runner.suite)  # a suite's confirmation rounds reuse its workers
        if key not in self._pools:
            self._release()  # suites run one after another: the last one's workers give their CPUs back
            o = runner.options
            assert runner.suite.target is not None
            spec = WorkerSpec(runner.suite.path.resolve(), self.config, runner.suite.target, o.strict, o.tags,
                              runner.repeat, runner.concurrency, runner.timeout_s, o.offline, o.cache_mode,
                              o.cache_path)
            remote = self.ray.remote(CaseWorker).options(num_cpus=1, max_restarts=-1, max_task_retries=0)
            self._pools[key] = _Pool([remote.remote(spec) for _ in range(self.workers())])
        return self._pools[key]

    async def execute(self, runner: Runner, writer: ResultWriter, interrupted: asyncio.Event) -> None:
        """Every case run of ``runner`` on the cluster, as ``Runner._execute`` runs them locally."""
        ray = self.ray
        lost_errors = (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError, ray.exceptions.ObjectLostError)
        pool = self._pool(runner)
        size = 64 if runner.is_replay else max(1, runner.concurrency)
        work = runner._work()
        again: deque[_Job] = deque()
        flying: dict[asyncio.Future[Any], tuple[int, _Job, Any]] = {}

        def next_job() -> _Job | None:
            if again:
                return again.popleft()
            items = [pair for _, pair in zip(range(size), work)]
            return _Job(items) if items else None

        def send() -> None:
            while not runner.state.stop:
                i = min(range(len(pool.actors)), key=lambda a: pool.busy.get(a, 0))
                if pool.busy.get(i, 0) >= IN_FLIGHT:
                    return
                job = next_job()
                if job is None:
                    return
                ref = pool.actors[i].run.remote(runner.run_id, [(c.seq, r) for c, r in job.items])
                flying[asyncio.wrap_future(ref.future())] = (i, job, ref)
                pool.busy[i] = pool.busy.get(i, 0) + 1

        stopper: asyncio.Task[Any] = asyncio.create_task(interrupted.wait())
        try:
            send()
            while flying:
                finished, _ = await asyncio.wait({*flying, stopper}, return_when=asyncio.FIRST_COMPLETED)
                if stopper in finished:  # Ctrl-C: what is in flight is dropped, as locally; --resume runs it
                    return
                for fut in finished:
                    i, job, _ref = flying.pop(fut)
                    pool.busy[i] -= 1
                    try:
                        batch: Batch = fut.result()
                    except lost_errors as exc:
                        self._lost(job, exc, again, writer, runner)
                        continue
                    except ray.exceptions.RayTaskError as exc:
                        raise RunError(f"a Ray worker failed running suite {runner.suite.name}: "
                                       f"{exc.cause if exc.cause is not None else exc}") from None
                    for result in batch.results:
                        writer.add(result)
                    runner.progress.advance(len(batch.results))
                    if batch.stop_reason is not None:
                        runner._stop(batch.stop_reason)
                send()
        finally:
            stopper.cancel()
            for _i, _job, ref in flying.values():
                ray.cancel(ref)

    def _lost(self, job: _Job, exc: BaseException, again: deque[_Job], writer: ResultWriter, runner: Runner) -> None:
        """A worker died holding ``job``: each of its case runs is sent again on its own, or stored as an error."""
        for case, repeat in job.items:
            if job.attempt + 1 < ATTEMPTS:
                again.append(_Job([(case, repeat)], job.attempt + 1))
                continue
            why = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")
            writer.add(CaseResult(case.id, case.seq, repeat, case.tags, case.user.id, list(case.user.groups),
                                  case.session_id, case.source, case.critical, meta=case.meta,
                                  variant_of=case.variant_of,
                                  error=f"the Ray worker running it was lost {ATTEMPTS} times ({why})"))
            runner.progress.advance(1)

    def pids(self) -> list[int]:
        """The process ids of every worker started so far (for tests and diagnostics)."""
        return [int(p) for pool in self._pools.values() for p in self.ray.get([a.pid.remote() for a in pool.actors])]

    def _release(self) -> None:
        for pool in self._pools.values():
            for actor in pool.actors:
                self.ray.kill(actor)
        self._pools.clear()

    def close(self) -> None:
        """Stop the workers; end the Ray session if this executor started it."""
        self._release()
        if self.owned:
            self.ray.shutdown()


def connect(spec: str, options: RunOptions, config: Config) -> RayExecutor | None:
    """The executor ``--executor SPEC`` names (None for ``local``); connects to the cluster now, before any turn runs.

    ``ray`` starts a Ray cluster on this machine (or joins the one ``RAY_ADDRESS`` names); ``ray:ADDRESS`` joins an existing
    one: ``auto``, ``HOST:6379`` (a head's GCS) or ``ray://HOST:10001`` (Ray Client, which needs ``ray[client]``).
    """
    kind, _, address = spec.partition(":")
    if kind == "local" and not address:
        return None
    if kind == "processes":  # a replay on this machine's worker processes (evalgate/parallel.py)
        if address and not (address.isdigit() and 1 <= int(address) <= 256):
            raise UsageError(f"--executor {spec}: the number of worker processes must be 1 to 256",
                             hint="--executor processes (one per core) or processes:N")
        return None
    if kind != "ray":
        raise UsageError(f"unknown executor '{spec}'",
                         hint="--executor local, processes[:N] (a replay on this machine's cores), ray (a local Ray "
                              "cluster) or ray:ADDRESS")
    if options.upstreams is not None:
        raise UsageError("--executor ray cannot serve the suite's upstreams: their proxy runs in this process",
                         hint="run suites with upstreams: locally (--executor local)")
    if options.max_cost is not None:
        raise UsageError("--max-cost is one budget in one process: Ray workers cannot share it",
                         hint="drop --max-cost, or run locally (--executor local)")
    try:
        ray: Any = importlib.import_module("ray")
    except ImportError:
        raise UsageError("--executor ray needs Ray, which is not installed", hint=HINT) from None
    if ray.is_initialized():  # a library caller's own session (or a test's): used, and left running
        return RayExecutor(ray, False, config)
    try:
        ray.init(address=address or None, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.WARNING)
    except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError... for an address it cannot use
        raise UsageError(f"cannot connect to the Ray cluster {address or '(local)'}: {type(exc).__name__}: {exc}",
                         hint="ray:auto joins the cluster `ray start` runs here; ray:HOST:6379 a head's address; "
                              "ray://HOST:10001 needs pip install 'ray[client]'") from None
    return RayExecutor(ray, True, config)
