"""The command line. Each command parses options, calls one library
function, renders the result and returns an exit code; ``main`` is the one
place where exceptions become messages and exit codes.

The commands live in ``commands`` and ``groups``, registered on the one
typer ``app`` in ``_shared`` when this package is imported.
"""

from __future__ import annotations

import contextlib
import os
import sys

from ..errors import EXIT_RUN_ERROR, EvalgateError
from . import commands, groups  # noqa: F401  (importing them registers their commands, in this order)
from ._shared import _console, _escape, _print_json, _stdout_closed, app

__all__ = ["app", "main"]


_USER_CODE_THREADS = ("evalgate-target", "evalgate-scorer")
"""Threads that run the user's sync code (python targets, plugin and project scorers): one may never return."""


def _exit_past_hung_threads(exc: SystemExit) -> None:
    """Exit now when a thread still runs a call into the user's code that never returned (a sync python target or
    scorer that hangs).

    Python joins such threads before it exits, so the verdict would be printed and the exit code never reach
    the shell; everything evalgate writes is flushed and stored by now.
    """
    import threading
    import time

    targets = sys.modules.get("evalgate.targets.python")  # async targets' loop: its tasks' finally blocks run first
    stuck = targets is not None and not targets.stop_user_loop()
    deadline = time.monotonic() + 0.5  # idle pool threads end as soon as their pool is shut down
    for t in threading.enumerate():
        if t.name.startswith(_USER_CODE_THREADS):
            t.join(max(0.0, deadline - time.monotonic()))
    if stuck or any(t.name.startswith(_USER_CODE_THREADS) and t.is_alive() for t in threading.enumerate()):
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):  # a closed or detached stream has nothing left to flush
                stream.flush()
        os._exit(code)


class _Interrupted(BaseException):
    """Ctrl-C outside a run's own handling (loading suites, importing targets): the command line framework would
    swallow a KeyboardInterrupt and exit 130 without a word."""


def _interrupted(signum: int, frame: object) -> None:
    raise _Interrupted


def main(argv: list[str] | None = None) -> None:
    """Entry point: run a command, turn evalgate's errors into messages and exit codes."""
    args = sys.argv[1:] if argv is None else argv
    if args == ["--version"]:  # asked for often, by scripts: answered before the command line framework builds itself
        from .. import __version__

        sys.stdout.write(f"evalgate {__version__}\n")
        raise SystemExit(0)
    want_json = "--json" in args
    if argv is None:  # the evalgate process itself: Ctrl-C is said, not swallowed (a run installs its own handler)
        import signal

        signal.signal(signal.SIGINT, _interrupted)
    try:
        app(args=args, prog_name="evalgate")  # exits through SystemExit with the command's code
    except _Interrupted:
        sys.stderr.write("interrupted (Ctrl-C); what finished is stored\n")
        raise SystemExit(EXIT_RUN_ERROR) from None
    except SystemExit as exc:
        if argv is None:  # the evalgate process itself, not a caller's: it may exit hard
            _exit_past_hung_threads(exc)
        raise
    except EvalgateError as exc:
        if want_json:
            _print_json(exc.to_dict())
        _console(stderr=True).print(f"[bold red]error:[/] {_escape(str(exc))}", soft_wrap=True)
        raise SystemExit(exc.exit_code) from None
    except BrokenPipeError:  # the reader of stdout left (`evalgate history | head`): not a failure
        _stdout_closed()
        raise SystemExit(0) from None
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        raise SystemExit(EXIT_RUN_ERROR) from None
    except Exception as exc:  # an evalgate bug: say so plainly, keep the traceback for debugging
        if os.environ.get("EVALGATE_DEBUG"):
            raise
        sys.stderr.write(f"internal error: {type(exc).__name__}: {exc}\n"
                         "  set EVALGATE_DEBUG=1 for the traceback, and please report it\n")
        raise SystemExit(EXIT_RUN_ERROR) from None
