"""Model clients shared across a run: one per endpoint, run options and event loop."""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

_clients: weakref.WeakKeyDictionary[Any, dict[tuple[Any, ...], Any]] = weakref.WeakKeyDictionary()
_caches: dict[str, Any] = {}


def shared_client(base_url: str, api_key_env: str | None, concurrency: int, timeout_s: float, cache: bool,
                  models: Any = None) -> Any:
    """One model client per endpoint, run options and event loop, shared by every caller of the run (judges, the
    simulated user).

    The run's model options (``models``) decide the cache file, its mode and
    offline, as they do for the target's own model calls; without them (a call
    outside a run) the configuration's cache is used.
    """
    from . import ModelClient, ResponseCache

    cache_path = getattr(models, "cache_path", None)
    mode = getattr(models, "cache_mode", "use") if cache else "off"
    offline = bool(getattr(models, "offline", False))
    per_loop = _clients.setdefault(asyncio.get_running_loop(), {})  # the openai client belongs to its loop
    key = (base_url, api_key_env, concurrency, timeout_s, mode, str(cache_path), offline)
    if key not in per_loop:
        response_cache = None
        if mode != "off":
            if cache_path is None:
                from ..config import find_config

                cache_path = find_config().cache
            path = str(cache_path)
            if path not in _caches:
                _caches[path] = ResponseCache(path)
            response_cache = _caches[path]
        per_loop[key] = ModelClient(base_url, api_key_env=api_key_env, concurrency=concurrency, timeout_s=timeout_s,
                                    cache=response_cache, cache_mode=mode, offline=offline)
    return per_loop[key]


async def close_shared() -> None:
    """Close the clients shared on the running loop (a run's end): their connections, their I/O threads."""
    per_loop = _clients.pop(asyncio.get_running_loop(), {})
    for client in per_loop.values():
        await client.close()
