"""The replay target: runs nothing, answers each turn with its recording."""

from __future__ import annotations

from typing import Any

from . import Reply, TargetError


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
