"""The python target: a function in the user's code, sync or async."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..references import import_reference
from .base import Reply, TargetContext, TargetError, target
from .spec import PythonTargetSpec, TargetConfig

__all__ = ["PythonTarget", "import_reference", "python_target"]


@target("python", spec=PythonTargetSpec)
def python_target(config: TargetConfig, ctx: TargetContext) -> PythonTarget:
    """A function in your code, sync or async: package.module:function."""
    return PythonTarget(config.spec["python"], search_paths=[p for p in (ctx.root, config.base_dir) if p],
                        workers=ctx.concurrency)


class PythonTarget:
    """Calls ``package.module:function(request)``; sync functions run in threads."""

    def __init__(self, ref: str, *, search_paths: Sequence[Path | str] = (), workers: int = 8):
        self.ref = ref
        self.search_paths = search_paths
        self.workers = workers
        self.fn: Callable[..., Any] | None = None
        self.is_async = False
        self._pool: ThreadPoolExecutor | None = None

    async def start(self) -> None:
        try:
            fn = import_reference(self.ref, self.search_paths)
        except ModuleNotFoundError as exc:
            raise UsageError(f"target module does not import: {exc}",
                             hint=f"'{self.ref}' must be importable from the project root or the suite's folder") from None
        except AttributeError as exc:
            raise UsageError(f"target function not found: {exc}", hint=f"check the name after ':' in '{self.ref}'") from None
        except Exception as exc:
            raise UsageError(f"importing target '{self.ref}' failed: {type(exc).__name__}: {exc}") from None
        if not callable(fn):
            raise UsageError(f"target '{self.ref}' is not callable")
        self.fn = fn
        self.is_async = inspect.iscoroutinefunction(fn)
        if not self.is_async:
            self._pool = ThreadPoolExecutor(max_workers=max(1, self.workers), thread_name_prefix="evalgate-target")

    async def call(self, request: dict[str, Any], turn: Any, timeout_s: float) -> Reply:
        assert self.fn is not None
        try:
            if self.is_async:
                start = time.perf_counter()
                raw = await asyncio.wait_for(self.fn(request), timeout_s)
                return Reply(raw, (time.perf_counter() - start) * 1000)
            loop = asyncio.get_running_loop()
            fut = loop.run_in_executor(self._pool, _timed, self.fn, request)
            raw, elapsed = await asyncio.wait_for(fut, timeout_s)
            return Reply(raw, elapsed)
        except asyncio.TimeoutError:
            raise TargetError(f"timed out after {timeout_s:g}s") from None
        except Exception as exc:
            raise TargetError(f"{type(exc).__name__}: {exc}") from None

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


def _timed(fn: Callable[..., Any], request: dict[str, Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    raw = fn(request)
    return raw, (time.perf_counter() - start) * 1000
