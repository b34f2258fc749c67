"""The few exceptions evalgate raises, and the exit codes they map to.

    EvalgateError            base; carries an exit code
    ├── UsageError           exit 2: bad input found before the first turn ran
    │   └── SuiteError       a suite, dataset or trace file is wrong (file:line)
    └── RunError             exit 3: the run could not be trusted or completed
        └── StoreBusyError   another process holds the store

Core code raises these; only ``cli.main`` turns them into a message and an
exit code. Per-turn failures (a target crash, a timeout, a scorer that
raises) are never exceptions: they are stored results with an error.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable
from dataclasses import dataclass

EXIT_PASS = 0
EXIT_GATE_FAILED = 1
EXIT_USAGE = 2
EXIT_RUN_ERROR = 3


@dataclass(frozen=True)
class Location:
    """Where in an input file a problem is: 1-based line and column."""

    path: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        parts = [display_path(self.path)]
        if self.line is not None:
            parts.append(str(self.line))
            if self.column is not None:
                parts.append(str(self.column))
        return ":".join(parts)


class EvalgateError(Exception):
    """Base class: a problem evalgate reports as a message, never a traceback."""

    exit_code = EXIT_RUN_ERROR

    def __init__(self, message: str, *, hint: str | None = None, location: Location | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.location = location

    def __str__(self) -> str:
        text = f"{self.location}: {self.message}" if self.location else self.message
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text

    def to_dict(self) -> dict[str, object]:
        return {
            "error": type(self).__name__,
            "message": self.message,
            "hint": self.hint,
            "file": self.location.path if self.location else None,
            "line": self.location.line if self.location else None,
            "column": self.location.column if self.location else None,
            "exit_code": self.exit_code,
        }


class UsageError(EvalgateError):
    """Bad command-line usage or configuration, found before anything ran (exit 2)."""

    exit_code = EXIT_USAGE


class SuiteError(UsageError):
    """A suite, dataset or trace file is invalid; the location says where (exit 2)."""


class RunError(EvalgateError):
    """The run could not be completed or trusted (exit 3)."""

    exit_code = EXIT_RUN_ERROR


class StoreBusyError(RunError):
    """Another evalgate process is writing to the store (exit 3)."""


class TurnFailed(Exception):
    """One turn failed — in the target, a template, a model call — and the message says how; the run goes on.

    Targets raise it (as ``TargetError``) for a turn that could not be answered.
    """


class RunStopped(TurnFailed):
    """The turn failed and no further turn should start: --max-cost reached, offline with no cached answer.

    Raised where it happens and caught once, by the runner, which stores what finished and says why it stopped.
    """


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """A hint naming the closest known word, or None when nothing is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None


def display_path(path: str | os.PathLike[str]) -> str:
    """A path as a person wants to read it: relative to the working folder when inside it."""
    full = os.path.normpath(os.path.abspath(path))
    try:
        rel = os.path.relpath(full)
    except ValueError:  # another drive on Windows
        return full
    return full if rel.startswith("..") else rel
