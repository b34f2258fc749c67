"""The python target: a function in the user's code, sync or async.

A sync function runs in the target's threads and is timed there, around the call. An async one runs on an event
loop of its own, on a thread that does nothing else (one for the process, so a client the user's module made at
import keeps its connections from one run to the next), and is timed there, around its await: the run's loop,
busy scoring other turns when an answer arrives, no longer puts its lag into the turn's time. The module is
imported on that loop's thread, so what it binds to the running loop at import is the loop its calls run on. A
sync function that hands back an awaitable (a decorator that wraps an async function in a plain one) is still
called in a thread, and what it handed back is awaited on that loop. A SystemExit or KeyboardInterrupt the
function raises fails its turn.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from ..references import import_reference
from .base import Reply, TargetContext, TargetError, target
from .spec import PythonTargetSpec, TargetConfig

if TYPE_CHECKING:
    from ..models.transport import IOThread

__all__ = ["PythonTarget", "import_reference", "import_target", "python_target"]


@target("python", spec=PythonTargetSpec)
def python_target(config: TargetConfig, ctx: TargetContext) -> PythonTarget:
    """A function in your code, sync or async: package.module:function."""
    return PythonTarget(config.spec["python"], search_paths=[p for p in (ctx.root, config.base_dir) if p],
                        workers=ctx.concurrency)


class PythonTarget:
    """Calls ``package.module:function(request)``; sync functions run in threads, async ones on the user's loop."""

    def __init__(self, ref: str, *, search_paths: Sequence[Path | str] = (), workers: int = 8):
        self.ref = ref
        self.search_paths = search_paths
        self.workers = workers
        self.fn: Callable[..., Any] | None = None
        self.is_async = False
        self._pool: ThreadPoolExecutor | None = None
        self._holds_switch = False
        self._on_loop = 0
        """This target's calls running on the user's loop (the ones the run gave up on finish there)."""
        self._on_loop_changed = threading.Condition()

    async def start(self) -> None:
        try:  # on the loop its calls will run on: what the module binds to the running loop at import is that one
            fn = await user_loop().run(_imported(self.ref, self.search_paths))
        except ModuleNotFoundError as exc:
            raise UsageError(f"target module does not import: {exc}",
                             hint=f"'{self.ref}' must be importable from the project root or the suite's folder") from None
        except AttributeError as exc:
            raise UsageError(f"target function not found: {exc}", hint=f"check the name after ':' in '{self.ref}'") from None
        except Exception as exc:
            hint = ("evalgate imports the module on the thread of the event loop its async calls run on, not the "
                    "main thread: install signal handlers later, or serve the code as a command target"
                    if "main thread" in str(exc) else None)
            raise UsageError(f"importing target '{self.ref}' failed: {type(exc).__name__}: {exc}", hint=hint) from None
        if not callable(fn):
            raise UsageError(f"target '{self.ref}' is not callable")
        self.fn = fn
        self.is_async = _is_async(fn)
        if self.is_async:
            self._hold_switch()
        else:
            self._pool = ThreadPoolExecutor(max_workers=max(1, self.workers), thread_name_prefix="evalgate-target")

    def _hold_switch(self) -> None:
        """The user's loop gets the GIL back within SWITCH_INTERVAL_S of asking while this target runs (a sync target
        does not: with its many threads a short interval measured dearer and no more honest)."""
        if not self._holds_switch:
            from ..models.transport import shorten_switch_interval

            shorten_switch_interval()
            self._holds_switch = True

    async def call(self, request: dict[str, Any], turn: Any, timeout_s: float) -> Reply:
        assert self.fn is not None
        try:
            if self.is_async:
                return Reply(*await self._awaited_on_loop(functools.partial(self.fn, request), timeout_s))
            loop = asyncio.get_running_loop()
            fut = loop.run_in_executor(self._pool, _timed, self.fn, request)
            raw, elapsed = await asyncio.wait_for(fut, timeout_s)
            if isinstance(raw, _Awaitable):  # a plain function that handed back an awaitable: awaited on the loop
                self._hold_switch()
                raw, more = await self._awaited_on_loop(functools.partial(_given, raw.value), timeout_s)
                elapsed += more
            return Reply(raw, elapsed)
        except asyncio.TimeoutError:
            raise TargetError(f"timed out after {timeout_s:g}s") from None
        except TargetError:
            raise
        except Exception as exc:
            raise TargetError(f"{type(exc).__name__}: {exc}") from None

    async def _awaited_on_loop(self, call: Callable[[], Any], timeout_s: float) -> tuple[Any, float]:
        """``call()`` and its await on the user's loop, timed there; the run gives up on it at ``timeout_s``."""
        return await asyncio.wait_for(user_loop().run(self._counted(_awaited(call))), timeout_s)

    async def _counted(self, coro: Any) -> Any:
        """On the user's loop: ``coro``, counted while it runs (``close`` waits for the ones given up on)."""
        with self._on_loop_changed:
            self._on_loop += 1
        try:
            return await coro
        finally:
            with self._on_loop_changed:
                self._on_loop -= 1
                self._on_loop_changed.notify_all()

    def _drained(self, timeout_s: float) -> bool:
        with self._on_loop_changed:
            return self._on_loop_changed.wait_for(lambda: self._on_loop == 0, timeout_s)

    async def close(self) -> None:
        if self._on_loop:  # calls an interrupt or a timeout gave up on: their finally blocks run before the exit
            await asyncio.get_running_loop().run_in_executor(None, self._drained, DRAIN_S)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        if self._holds_switch:
            from ..models.transport import restore_switch_interval

            restore_switch_interval()
            self._holds_switch = False


DRAIN_S = 5.0
"""How long a target's close waits for its calls still on the user's loop (cancelled, in their finally blocks)."""


def _is_async(fn: Callable[..., Any]) -> bool:
    """An ``async def`` function, or an object whose ``__call__`` is one. (A plain function wrapping one, which
    may run it with ``asyncio.run``, is called in a thread; if it hands back an awaitable, that is awaited.)"""
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None))


class _Awaitable:
    """What a sync call handed back when it was an awaitable (kept apart from a trace that is one by accident)."""

    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value


def _failed(exc: BaseException) -> TargetError:
    """A SystemExit or KeyboardInterrupt the user's code raised: that turn's failure, not the end of the run or of
    the loop the calls run on."""
    return TargetError(f"the target raised {type(exc).__name__}: {exc}")


def _given(value: Any) -> Any:
    return value


async def _imported(ref: str, search_paths: Sequence[Path | str]) -> Any:
    return import_reference(ref, search_paths)


def import_target(ref: str, search_paths: Sequence[Path | str]) -> Any:
    """What ``ref`` names, imported as a run imports it: on the user's loop (``validate`` checks it so)."""
    return asyncio.run_coroutine_threadsafe(_imported(ref, search_paths), user_loop().loop).result()


def _timed(fn: Callable[..., Any], request: dict[str, Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    try:
        raw = fn(request)
    except Exception:
        raise
    except BaseException as exc:
        raise _failed(exc) from None
    elapsed = (time.perf_counter() - start) * 1000
    return (_Awaitable(raw) if inspect.isawaitable(raw) else raw), elapsed


async def _awaited(call: Callable[[], Any]) -> tuple[Any, float]:
    """On the user's loop: ``call()`` and, when it hands back an awaitable, its await, timed there."""
    start = time.perf_counter()
    try:
        raw = call()
        if inspect.isawaitable(raw):
            raw = await raw
    except (Exception, asyncio.CancelledError):
        raise
    except BaseException as exc:
        raise _failed(exc) from None
    return raw, (time.perf_counter() - start) * 1000


_user_loop: IOThread | None = None
_user_loop_lock = threading.Lock()


def user_loop() -> IOThread:
    """The event loop async targets run on (a ``transport.IOThread`` on the standard library's loop), started at the
    first target's start and kept for the process: a client the user's module made at import, whose connections
    belong to the loop that first used them, works in every later run as it would in the user's own program. At
    the interpreter's exit its tasks (the user's own background ones too) are cancelled and their finally blocks
    run; a loop that has died (a background task raised SystemExit) is replaced."""
    global _user_loop
    if _user_loop is None or not _user_loop.thread.is_alive():
        with _user_loop_lock:
            if _user_loop is None or not _user_loop.thread.is_alive():
                import atexit

                from ..models.transport import IOThread

                _user_loop = IOThread(name=USER_LOOP_THREAD, fast=False, short_switch=False)
                atexit.register(_stop_at_exit, _user_loop, os.getpid())
    return _user_loop


USER_LOOP_THREAD = "evalgate-user-loop"


def stop_user_loop() -> bool:
    """Cancel what still runs on the user's loop (a target's own background tasks too), let their finally blocks
    run, and stop it (waiting at most ``IOThread.stop``'s 5 s); False when it is stuck in a blocking call."""
    loop = _user_loop
    if loop is None or not loop.thread.is_alive():
        return True
    loop.stop()
    return not loop.thread.is_alive()


def _stop_at_exit(loop: IOThread, pid: int) -> None:
    if os.getpid() == pid and loop is _user_loop:  # a forked child shares the loop's wake-up pipe: never its parent's
        stop_user_loop()


def _forget_user_loop() -> None:
    global _user_loop, _user_loop_lock
    _user_loop, _user_loop_lock = None, threading.Lock()  # a forked child has the object but not the thread


os.register_at_fork(after_in_child=_forget_user_loop)
