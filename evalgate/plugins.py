"""Installed plugins: the entry points of a group, read once per import path.

Reading the installed distributions' metadata costs milliseconds a time, and
suites, validation and listings ask for them often; the answer only changes
when ``sys.path`` does.
"""

from __future__ import annotations

import sys
from functools import lru_cache
from importlib.metadata import EntryPoint, entry_points


def installed(group: str) -> dict[str, EntryPoint]:
    """Name → entry point for every installed plugin in ``group``."""
    return dict(_installed(group, tuple(sys.path)))


@lru_cache(maxsize=16)
def _installed(group: str, path: tuple[str, ...]) -> tuple[tuple[str, EntryPoint], ...]:
    return tuple((ep.name, ep) for ep in entry_points(group=group))
