"""The http target: the request as a JSON POST, the trace as JSON back."""

from __future__ import annotations

import json
import os
import re
import time
from typing import Any

from ..errors import UsageError
from ..traces import marker_headers
from .base import Reply, TargetContext, TargetError, target
from .spec import HttpTargetSpec, TargetConfig


@target("http", spec=HttpTargetSpec)
def http_target(config: TargetConfig, ctx: TargetContext) -> HttpTarget:
    """A URL that takes the request as a JSON POST and answers with a trace."""
    return HttpTarget(config.spec["http"], config.spec.get("headers") or {}, concurrency=ctx.concurrency)

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_env(value: str, used_in: str = "an http target header") -> str:
    """Replace ${VAR} from the environment; a missing variable is a usage error."""

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in os.environ:
            raise UsageError(f"environment variable {name} is not set (used in {used_in})",
                             hint=f"export {name}=... before running")
        return os.environ[name]

    return _VAR.sub(sub, value)


class HttpTarget:
    """POSTs each turn's request to a URL. Headers are expanded, never stored."""

    def __init__(self, url: str, headers: dict[str, str], *, concurrency: int = 8):
        self.url = url
        self.headers = headers
        self.concurrency = concurrency
        self._client: Any = None
        self._secrets: list[str] = []

    async def start(self) -> None:
        import httpx

        headers = {k: expand_env(v) for k, v in self.headers.items()}
        # every header value is a secret to keep out of what evalgate stores or prints (the target may echo it)
        values = {v.strip() for v in headers.values()} | {part for v in headers.values() for part in v.split()[1:]}
        self._secrets = sorted((v for v in values if len(v) >= 8), key=len, reverse=True)  # "Bearer TOKEN" and TOKEN
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        self._client = httpx.AsyncClient(headers=headers, limits=limits, trust_env=False)

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "[redacted]")
        return text

    async def call(self, request: dict[str, Any], turn: Any, timeout_s: float) -> Reply:
        import asyncio

        import httpx

        start = time.perf_counter()
        try:  # the deadline covers the whole call: connecting, the headers and every byte of the body
            resp = await asyncio.wait_for(self._client.post(self.url, json=request, timeout=timeout_s,
                                                            headers=marker_headers(request)), timeout_s)
        except (httpx.TimeoutException, asyncio.TimeoutError):
            raise TargetError(f"timed out after {timeout_s:g}s ({self.url})") from None
        except httpx.HTTPError as exc:
            raise TargetError(self._scrub(f"{type(exc).__name__}: {exc or 'request failed'} ({self.url})")) from None
        elapsed = (time.perf_counter() - start) * 1000
        if resp.status_code >= 400:
            raise TargetError(self._scrub(f"HTTP {resp.status_code} from {self.url}: {resp.text[:200]}"))
        text = self._scrub(resp.text) if self._secrets else resp.text  # a service that echoes its headers
        try:
            raw = json.loads(text)
        except (ValueError, RecursionError):
            raise TargetError(f"response is not JSON: {text[:120]!r}") from None
        return Reply(raw, elapsed)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()

