"""The command target: a long-lived process speaking JSON lines.

evalgate writes one request per line to the process's stdin and reads one
trace per line from its stdout, in order. Lines that are not this turn's
trace (not JSON, keys no trace has, or another turn's ``session_id`` or
``turn``) are skipped, so a stray log line cannot shift every later answer.
A crash or a hang fails that turn only: the process is killed if needed and
started again for the next turn.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from ..errors import UsageError
from .base import Reply, TargetContext, TargetError, target
from .spec import CommandTargetSpec, TargetConfig


@target("command", spec=CommandTargetSpec)
def command_target(config: TargetConfig, ctx: TargetContext) -> CommandTarget:
    """A long-lived process: one request per stdin line, one trace per stdout line."""
    # commands run from the project root, like the shell a user types them in
    return CommandTarget(config.spec["command"], cwd=config.spec.get("cwd"), env=config.spec.get("env") or {},
                         base_dir=ctx.root or config.base_dir)

_LINE_LIMIT = 64 * 1024 * 1024


def _trace_keys() -> frozenset[str]:
    from ..traces import Trace

    return frozenset(Trace.model_fields) | {"v"}


_TRACE_KEYS = _trace_keys()


class CommandTarget:
    """One process at a time; turns are sent in order."""

    def __init__(self, argv: list[str], *, cwd: str | None = None, env: dict[str, str] | None = None,
                 base_dir: Path | None = None):
        self.argv = list(argv)
        self.base_dir = base_dir or Path.cwd()
        self.cwd = str((self.base_dir / cwd).resolve()) if cwd else None
        self.env = {**os.environ, **(env or {})}
        self._proc: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()
        self._stderr: collections.deque[str] = collections.deque(maxlen=20)
        self._stderr_task: asyncio.Task[None] | None = None

    def _resolve_program(self) -> str:
        prog = self.argv[0]
        if os.sep in prog:
            path = Path(prog) if Path(prog).is_absolute() else (Path(self.cwd or self.base_dir) / prog)
            if not path.exists():
                raise UsageError(f"command target not found: {prog}", hint=f"looked at {path}")
            return str(path)
        found = shutil.which(prog, path=self.env.get("PATH"))
        if found is None:
            raise UsageError(f"command target not found on PATH: {prog}", hint="use an absolute path or install it")
        return found

    async def start(self) -> None:
        self.argv[0] = self._resolve_program()
        await self._spawn()

    async def _spawn(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            *self.argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, cwd=self.cwd or str(self.base_dir), env=self.env, limit=_LINE_LIMIT)
        self._stderr.clear()
        self._stderr_task = asyncio.create_task(self._drain_stderr(self._proc))

    async def _drain_stderr(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None
        while True:
            line = await proc.stderr.readline()
            if not line:
                return
            self._stderr.append(line.decode("utf-8", "replace").rstrip())

    def _stderr_tail(self) -> str:
        tail = " | ".join(list(self._stderr)[-3:])
        return f"; stderr: {tail[-300:]}" if tail else ""

    async def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.returncode is None:
            proc.kill()
        with contextlib.suppress(asyncio.TimeoutError):  # a process stuck in the kernel: leave it
            await asyncio.wait_for(proc.wait(), 5)
        if self._stderr_task is not None:
            self._stderr_task.cancel()

    async def call(self, request: dict[str, Any], turn: Any, timeout_s: float) -> Reply:
        line = (json.dumps(request, ensure_ascii=False) + "\n").encode()
        async with self._lock:  # queue time waiting here is not counted in elapsed
            if self._proc is None or self._proc.returncode is not None:
                if self._proc is not None:
                    await self._kill()
                await self._spawn()
            proc = self._proc
            assert proc is not None and proc.stdin is not None and proc.stdout is not None
            start = time.perf_counter()
            deadline = start + timeout_s
            strays: list[bytes] = []
            try:
                proc.stdin.write(line)
                await proc.stdin.drain()
                while True:  # lines that are not this turn's trace (a log line, a late answer) are skipped
                    out = await asyncio.wait_for(proc.stdout.readline(), max(0.0, deadline - time.perf_counter()))
                    if not out:
                        break
                    raw = _answer_to(request, out)
                    if raw is not None:
                        break
                    strays.append(out)
            except asyncio.TimeoutError:
                await self._kill()
                raise TargetError(f"no answer within {timeout_s:g}s{_strays(strays)}; process killed and will be "
                                  "restarted") from None
            except (BrokenPipeError, ConnectionResetError):
                await asyncio.sleep(0.05)
                await self._kill()
                raise TargetError(f"process died before reading the request{self._stderr_tail()}") from None
            except (ValueError, asyncio.LimitOverrunError):  # a line longer than the reader holds
                await self._kill()
                raise TargetError(f"the process wrote a line over {_LINE_LIMIT // (1024 * 1024)} MiB; process killed "
                                  "and will be restarted") from None
            elapsed = (time.perf_counter() - start) * 1000
            if not out:
                code = await _exit_code(proc)
                await asyncio.sleep(0.05)  # let the stderr drain catch the last words
                tail = self._stderr_tail()
                await self._kill()
                raise TargetError(f"process exited (code {code}) without answering{_strays(strays)}{tail}")
            return Reply(raw, elapsed)

    async def close(self) -> None:
        proc = self._proc
        if proc is not None and proc.returncode is None and proc.stdin is not None:
            # a polite end first (EOF on stdin); _kill below handles one that will not go
            with contextlib.suppress(asyncio.TimeoutError, BrokenPipeError, ConnectionResetError):
                proc.stdin.close()
                await asyncio.wait_for(proc.wait(), 2)
        await self._kill()


def _answer_to(request: dict[str, Any], line: bytes) -> Any:
    """The line as this turn's answer, or None when it is not one: not JSON, not a trace (keys no trace has), or a
    trace of another turn (its ``session_id`` or ``turn`` differs from the request's)."""

    try:
        raw = json.loads(line)
    except (ValueError, RecursionError):
        return None
    if isinstance(raw, str):
        return raw
    if not isinstance(raw, dict) or not raw or not set(raw) <= _TRACE_KEYS:
        return None
    for key in ("session_id", "turn"):
        if raw.get(key) is not None and request.get(key) is not None and raw[key] != request[key]:
            return None
    return raw


def _strays(lines: list[bytes]) -> str:
    if not lines:
        return ""
    first = lines[0].decode("utf-8", "replace").strip()
    return f"; it wrote {len(lines)} line(s) that are not this turn's trace, first {first[:120]!r}"


async def _exit_code(proc: asyncio.subprocess.Process) -> int | None:
    try:
        return await asyncio.wait_for(proc.wait(), 2)
    except asyncio.TimeoutError:
        return None
