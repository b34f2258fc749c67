"""Targets: the system under test, behind one small interface (see ``targets.base``).

``make_target`` builds the target a suite's ``target:`` names, through the
registry every kind joins (built-ins and ``evalgate.targets`` plugins alike).
"""

from __future__ import annotations

from typing import Any

from .base import (
    Reply,
    StopRun,
    Target,
    TargetContext,
    TargetError,
    TargetKind,
    end_case,
    known_kinds,
    lookup,
    target,
)
from .spec import TargetConfig

__all__ = ["Reply", "StopRun", "Target", "TargetConfig", "TargetContext", "TargetError", "TargetKind", "end_case",
           "known_kinds", "lookup", "make_target", "target"]


def make_target(config: TargetConfig, *, root: Any = None, concurrency: int = 8, documents: Any = None,
                permissions: Any = None, models: Any = None) -> Target:
    """The target for a suite's ``target:`` setting."""
    try:
        kind = lookup(config.kind)
    except KeyError:
        raise ValueError(f"unknown target kind {config.kind}") from None
    return kind.factory(config, TargetContext(root, concurrency, documents, permissions, models))
