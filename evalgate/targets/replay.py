"""The replay target: runs nothing, answers each turn with its recording."""

from __future__ import annotations

from typing import Any

from .base import Reply, TargetContext, TargetError, target
from .spec import TargetConfig


@target("replay")
def replay_target(config: TargetConfig, ctx: TargetContext) -> ReplayTarget:
    """Runs nothing: scores the recorded traces as they are."""
    return ReplayTarget()


class ReplayTarget:
    """Scores recorded traces as they are."""

    async def start(self) -> None:
        return None

    async def call(self, request: dict[str, Any], turn: Any, timeout_s: float) -> Reply:
        if turn.recorded is None:
            raise TargetError("nothing recorded for this turn")
        return Reply(turn.recorded, None)

    async def close(self) -> None:
        return None
