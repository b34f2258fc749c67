"""The target interface, and the registry every kind of target joins, built-in or plugin.

Every target receives the request of one turn (see ``traces.request_for``)
and answers with one trace. ``call`` measures its own elapsed time around
the real work, so time spent queued inside evalgate never counts, and
raises :class:`TargetError` for a failed turn (a crash, a hang, garbage):
the runner stores that as the turn's error and the run goes on.

A kind is a factory registered under a name, with the pydantic model of what
a suite writes for it::

    @target("grpc", spec=GrpcSpec, help="a gRPC service")
    def grpc_target(config: TargetConfig, ctx: TargetContext) -> Target: ...

Built-ins register the same way; a package ships its own kind in the
``evalgate.targets`` entry-point group (``grpc = "my_pkg.targets:grpc_target"``),
loaded only when a suite names it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel

from ..errors import RunStopped, TurnFailed
from .spec import BUILTIN_SPECS, TargetConfig

ENTRY_POINT_GROUP = "evalgate.targets"
_BUILTIN_MODULES = {"python": "python", "http": "http", "command": "command", "pipeline": "pipeline",
                    "replay": "replay"}


TargetError = TurnFailed
"""One turn failed inside the target; the message says how (the name targets raise)."""
StopRun = RunStopped
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

    async def call(self, request: dict[str, Any], turn: Any, timeout_s: float) -> Reply:
        """Run one turn; raise TargetError when it fails."""

    async def close(self) -> None:
        """Release processes and connections."""


def end_case(target: Any, case_id: str, repeat: int) -> None:
    """Tell ``target`` a case run is over, when it keeps something per case run (``end_case(case_id, repeat)``,
    optional: the http target lets go of the cookies the service set for it)."""
    hook = getattr(target, "end_case", None)
    if hook is not None:
        hook(case_id, repeat)


@dataclass(frozen=True)
class TargetContext:
    """What a target factory is given besides its own configuration."""

    root: Path | None = None
    """The project root (where commands run, where modules import from)."""
    concurrency: int = 8
    documents: Any = None
    permissions: Any = None
    models: Any = None
    """models.client.ModelOptions: cache, offline, budget, for targets that call models."""


Factory = Callable[[TargetConfig, TargetContext], Target]


@dataclass(frozen=True)
class TargetKind:
    """A registered kind of target: its factory, the model of its YAML, one line of help."""

    name: str
    factory: Factory
    spec: Any = None
    """A pydantic model of the suite's ``target:`` mapping (the kind's own key holds its main value)."""
    help: str = ""


_registry: dict[str, TargetKind] = {}


def target(name: str, *, spec: Any = None, help: str = "") -> Callable[[Factory], Factory]:
    """Register a target factory under ``name`` (``target: {name: ...}`` in a suite)."""

    def register(factory: Factory) -> Factory:
        _registry[name] = TargetKind(name, factory, spec, help or (factory.__doc__ or "").strip().split("\n")[0])
        return factory

    return register


def _entry_points() -> dict[str, Any]:
    from ..plugins import installed

    return installed(ENTRY_POINT_GROUP)


def known_kinds() -> list[str]:
    """Every kind a suite can name, without importing any of them."""
    return list(_BUILTIN_MODULES) + [n for n in _entry_points() if n not in _BUILTIN_MODULES and n not in _registry] + [
        n for n in _registry if n not in _BUILTIN_MODULES]


def lookup(name: str) -> TargetKind:
    """The registered kind; built-ins and plugins are imported on first use. KeyError when unknown."""
    if name not in _registry and name in _BUILTIN_MODULES:
        importlib.import_module(f"{__package__}.{_BUILTIN_MODULES[name]}")
    if name not in _registry:
        eps = _entry_points()
        if name not in eps:
            raise KeyError(name)
        loaded = eps[name].load()
        if name not in _registry:  # a bare factory function, not decorated
            _registry[name] = TargetKind(name, loaded, None, (loaded.__doc__ or "").strip().split("\n")[0])
    return _registry[name]


def spec_model(kind: str) -> type[BaseModel] | None:
    """The model a suite's ``target: {kind: ...}`` is validated against (None: the kind takes any mapping)."""
    if kind in BUILTIN_SPECS:
        return BUILTIN_SPECS[kind]
    model = lookup(kind).spec
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None
