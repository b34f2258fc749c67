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
import subprocess
import threading
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


class _Process:
    """The child process, its stdout and stderr read by threads of their own.

    Each stdout line is timestamped on its reader thread as its bytes arrive, so the time a turn took is the
    process's, not the time evalgate's event loop was busy with other turns' scoring when the answer came.
    """

    def __init__(self, argv: list[str], cwd: str, env: dict[str, str], loop: asyncio.AbstractEventLoop):
        self.popen = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      cwd=cwd, env=env)
        self.loop = loop
        self.lines: asyncio.Queue[tuple[bytes | None, float]] = asyncio.Queue()
        """(line, when it arrived); b"" at the end of stdout; None for a line over the limit (reading stops)."""
        self.stderr: collections.deque[str] = collections.deque(maxlen=20)
        assert self.popen.stdin is not None
        self.stdin = self.popen.stdin.fileno()
        os.set_blocking(self.stdin, False)  # a request is written at once when the pipe has room, else on a thread
        for name, read in (("stdout", self._read_stdout), ("stderr", self._read_stderr)):
            threading.Thread(target=read, name=f"evalgate-command-{name}", daemon=True).start()

    def _put(self, item: tuple[bytes | None, float]) -> bool:
        try:
            self.loop.call_soon_threadsafe(self.lines.put_nowait, item)
        except RuntimeError:  # the run's loop is closed: nobody waits for this line any more
            return False
        return True

    def _read_stdout(self) -> None:
        stream = self.popen.stdout
        assert stream is not None
        while True:
            try:
                line = stream.readline(_LINE_LIMIT + 1)
            except (OSError, ValueError):  # closed under us: the process was killed
                line = b""
            arrived = time.perf_counter()
            if len(line) > _LINE_LIMIT:
                self._put((None, arrived))
                return
            if not self._put((line, arrived)) or not line:
                return

    def _read_stderr(self) -> None:
        stream = self.popen.stderr
        assert stream is not None
        with contextlib.suppress(OSError, ValueError):
            for raw in stream:
                self.stderr.append(raw.decode("utf-8", "replace").rstrip())

    def write_now(self, data: bytes) -> bytes:
        """Write what the pipe takes now, without waiting; returns what is left."""
        try:
            return data[os.write(self.stdin, data):]
        except BlockingIOError:
            return data

    def write_rest(self, data: bytes) -> None:
        """The rest of a request the pipe had no room for, waiting (on a worker thread: a process that reads no stdin
        must not block the loop)."""
        os.set_blocking(self.stdin, True)
        try:
            while data:
                data = data[os.write(self.stdin, data):]
        finally:
            os.set_blocking(self.stdin, False)

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()


class CommandTarget:
    """One process at a time; turns are sent in order."""

    def __init__(self, argv: list[str], *, cwd: str | None = None, env: dict[str, str] | None = None,
                 base_dir: Path | None = None):
        self.argv = list(argv)
        self.base_dir = base_dir or Path.cwd()
        self.cwd = str((self.base_dir / cwd).resolve()) if cwd else None
        self.env = {**os.environ, **(env or {})}
        self._proc: _Process | None = None
        self._lock = asyncio.Lock()

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
        self._proc = _Process(self.argv, self.cwd or str(self.base_dir), self.env, asyncio.get_running_loop())

    def _stderr_tail(self) -> str:
        tail = " | ".join(list(self._proc.stderr)[-3:]) if self._proc is not None else ""
        return f"; stderr: {tail[-300:]}" if tail else ""

    async def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.popen.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):  # a process stuck in the kernel: leave it
            await asyncio.to_thread(proc.popen.wait, 5)
        for stream in (proc.popen.stdin, proc.popen.stdout, proc.popen.stderr):
            with contextlib.suppress(OSError, ValueError):
                if stream is not None:
                    stream.close()

    async def call(self, request: dict[str, Any], turn: Any, timeout_s: float) -> Reply:
        line = (json.dumps(request, ensure_ascii=False) + "\n").encode()
        async with self._lock:  # queue time waiting here is not counted in elapsed
            if self._proc is None or self._proc.returncode is not None:
                if self._proc is not None:
                    await self._kill()
                await self._spawn()
            proc = self._proc
            assert proc is not None
            start = time.perf_counter()
            deadline = start + timeout_s
            strays: list[bytes] = []
            arrived = start
            out: bytes | None = b""
            try:
                rest = proc.write_now(line)
                if rest:  # a request larger than the pipe's room: the rest from a worker thread, handed over now
                    await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(None, proc.write_rest, rest),
                                           timeout_s)
                while True:  # lines that are not this turn's trace (a log line, a late answer) are skipped
                    out, arrived = await asyncio.wait_for(proc.lines.get(), max(0.0, deadline - time.perf_counter()))
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
            except (BrokenPipeError, ConnectionResetError, ValueError):
                await asyncio.sleep(0.05)
                tail = self._stderr_tail()
                await self._kill()
                raise TargetError(f"process died before reading the request{tail}") from None
            if out is None:  # a line longer than the reader holds
                await self._kill()
                raise TargetError(f"the process wrote a line over {_LINE_LIMIT // (1024 * 1024)} MiB; process killed "
                                  "and will be restarted")
            elapsed = (arrived - start) * 1000  # when the answer's bytes arrived, on the reader thread
            if not out:
                code = await _exit_code(proc)
                await asyncio.sleep(0.05)  # let the stderr reader catch the last words
                tail = self._stderr_tail()
                await self._kill()
                raise TargetError(f"process exited (code {code}) without answering{_strays(strays)}{tail}")
            return Reply(raw, elapsed)

    async def close(self) -> None:
        proc = self._proc
        if proc is not None and proc.returncode is None and proc.popen.stdin is not None:
            # a polite end first (EOF on stdin); _kill below handles one that will not go
            with contextlib.suppress(subprocess.TimeoutExpired, BrokenPipeError, OSError, ValueError):
                proc.popen.stdin.close()
                await asyncio.to_thread(proc.popen.wait, 2)
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


async def _exit_code(proc: _Process) -> int | None:
    try:
        return await asyncio.to_thread(proc.popen.wait, 2)
    except subprocess.TimeoutExpired:
        return None
