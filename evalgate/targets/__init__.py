"""Targets: the system under test, behind one small interface.

Every target receives the request of one turn (see ``traces.request_for``)
and answers with one trace. ``call`` measures its own elapsed time around
the real work, so time spent queued inside evalgate never counts, and
raises :class:`TargetError` for a failed turn (a crash, a hang, garbage):
the runner stores that as the turn's error and the run goes on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..suite import TargetConfig, Turn


class TargetError(Exception):
    """One turn failed inside the target; the message says how."""


class StopRun(TargetError):
    """The turn failed and no further turn should start (--max-cost reached, offline cache miss)."""


@dataclass(slots=True)
class Reply:
    """What a target answered for one turn and how long the call took."""

    raw: Any
    """A trace as a dict, a Trace, or a plain string (taken as the output)."""
    elapsed_ms: float | None
    """Time around the real work; None when nothing ran (replay)."""


class Target(Protocol):
    """The system under test."""

    async def start(self) -> None:
        """Prepare (import, spawn, connect); raise UsageError for bad configuration."""

    async def call(self, request: dict[str, Any], turn: Turn, timeout_s: float) -> Reply:
        """Run one turn; raise TargetError when it fails."""

    async def close(self) -> None:
        """Release processes and connections."""


def make_target(config: TargetConfig, *, root: Any = None, concurrency: int = 8, documents: Any = None,
                permissions: Any = None, models: Any = None) -> Target:
    """The target for a suite's ``target:`` setting."""
    if config.kind == "replay":
        from .replay import ReplayTarget

        return ReplayTarget()
    if config.kind == "python":
        from .python import PythonTarget

        return PythonTarget(config.spec["python"], search_paths=[p for p in (root, config.base_dir) if p], workers=concurrency)
    if config.kind == "http":
        from .http import HttpTarget

        return HttpTarget(config.spec["http"], config.spec.get("headers") or {}, concurrency=concurrency)
    if config.kind == "command":
        from .command import CommandTarget

        # commands run from the project root, like the shell a user types them in
        return CommandTarget(config.spec["command"], cwd=config.spec.get("cwd"), env=config.spec.get("env") or {},
                             base_dir=root or config.base_dir)
    if config.kind == "pipeline":
        from .pipeline import PipelineTarget

        return PipelineTarget(config.spec["pipeline"], documents=documents, permissions=permissions, models=models,
                              concurrency=concurrency)
    raise ValueError(f"unknown target kind {config.kind}")
