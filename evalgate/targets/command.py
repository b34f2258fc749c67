"""The command target: a long-lived process speaking JSON lines.

evalgate writes one request per line to the process's stdin and reads one
trace per line from its stdout, in order. A crash, a hang or a line that is
not JSON fails that turn only: the process is killed if needed and started
again for the next turn.
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
            try:
                proc.stdin.write(line)
                await proc.stdin.drain()
                out = await asyncio.wait_for(proc.stdout.readline(), timeout_s)
            except asyncio.TimeoutError:
                await self._kill()
                raise TargetError(f"no answer within {timeout_s:g}s; process killed and will be restarted") from None
            except (BrokenPipeError, ConnectionResetError):
                await asyncio.sleep(0.05)
                await self._kill()
                raise TargetError(f"process died before reading the request{self._stderr_tail()}") from None
            elapsed = (time.perf_counter() - start) * 1000
            if not out:
                code = await _exit_code(proc)
                await asyncio.sleep(0.05)  # let the stderr drain catch the last words
                tail = self._stderr_tail()
                await self._kill()
                raise TargetError(f"process exited (code {code}) without answering{tail}")
            try:
                raw = json.loads(out)
            except ValueError:
                await self._kill()  # its stdout can no longer be trusted to be in step
                text = out.decode("utf-8", "replace").strip()
                raise TargetError(f"output is not a JSON line: {text[:120]!r}; process restarted") from None
            return Reply(raw, elapsed)

    async def close(self) -> None:
        proc = self._proc
        if proc is not None and proc.returncode is None and proc.stdin is not None:
            # a polite end first (EOF on stdin); _kill below handles one that will not go
            with contextlib.suppress(asyncio.TimeoutError, BrokenPipeError, ConnectionResetError):
                proc.stdin.close()
                await asyncio.wait_for(proc.wait(), 2)
        await self._kill()


async def _exit_code(proc: asyncio.subprocess.Process) -> int | None:
    try:
        return await asyncio.wait_for(proc.wait(), 2)
    except asyncio.TimeoutError:
        return None
