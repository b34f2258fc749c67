"""The http target: evalgate's own JSON protocol by default, or a service's own API (see ``http_api``)."""

from __future__ import annotations

import json
import os
import re
import time
from typing import Any

from ..errors import UsageError
from ..models.exchange import EXCHANGE
from ..models.exchange import Exchange as Exchange_
from ..pipeline.templates import TemplateError
from ..traces import marker_headers
from .base import Reply, TargetContext, TargetError, target
from .http_api import Exchange, RequestShape, ResponseMap, sse_event_value
from .spec import HttpResponseSpec, HttpTargetSpec, TargetConfig


@target("http", spec=HttpTargetSpec)
def http_target(config: TargetConfig, ctx: TargetContext) -> HttpTarget:
    """A URL: evalgate's own JSON protocol, or the service's own API through templates and a response mapping."""
    spec = HttpTargetSpec.model_validate(config.spec)
    return HttpTarget(spec.http, spec.headers, concurrency=ctx.concurrency, method=spec.method, body=spec.body,
                      response=spec.response)


MAX_ANSWER_BYTES = 64 * 1024 * 1024
"""Most bytes read from one answer; a larger one fails its turn (what is stored is cut far below this)."""

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_env(value: str, used_in: str = "an http target header", used: list[str] | None = None) -> str:
    """Replace ${VAR} from the environment; a missing variable is a usage error. ``used`` collects the values."""

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in os.environ:
            raise UsageError(f"environment variable {name} is not set (used in {used_in})",
                             hint=f"export {name}=... before running")
        if used is not None:
            used.append(os.environ[name])
        return os.environ[name]

    return _VAR.sub(sub, value)


class HttpTarget:
    """Sends each turn to a URL. Headers are expanded, never stored; every request is marked as eval traffic."""

    def __init__(self, url: str, headers: dict[str, str], *, concurrency: int = 8, method: str = "POST",
                 body: Any = None, response: HttpResponseSpec | None = None):
        self.url = url
        self.headers = headers
        self.concurrency = concurrency
        self.method = method
        self.body = body
        self.response = ResponseMap(response) if response is not None else None
        self._shape: RequestShape | None = None
        self._client: Any = None
        self._pooled: Any = None
        """An httpx client on the keep-alive pool, for the URLs it takes (``transport.pooled``; None: every request
        goes by httpx's)."""
        self._by_pool: dict[str, bool] = {}
        self._jars: dict[tuple[Any, Any], Any] = {}
        """The cookies a service set, per case run (one user's browser): a turn sends its own case run's only. The
        clients themselves keep none, which sent one case's session cookie with every other case's turns."""
        self._io: Any = None
        self._io_client: Any = None
        """An httpx client on an I/O thread of its own, for streamed answers (None: they are read on the run's loop)."""
        self._secrets: list[str] = []

    async def start(self) -> None:
        import httpx

        used: list[str] = []
        url = expand_env(self.url, "the http target's URL", used)
        headers = {k: expand_env(v, "an http target header", used) for k, v in self.headers.items()}
        # a header without a template is a secret as a whole (an API key); a templated one (X-User-Id: {{ user.id }})
        # is not, but any environment variable in it is. A service may echo them: keep them out of what is stored
        values = {v.strip() for v in headers.values() if not _templated(v)} | {u.strip() for u in used}
        values |= {part for v in values for part in v.split()[1:]}  # "Bearer TOKEN" and TOKEN
        self._secrets = sorted((v for v in values if len(v) >= 8), key=len, reverse=True)
        self._shape = RequestShape(url, self.method, headers, self.body)
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        self._client = httpx.AsyncClient(limits=limits, trust_env=False, cookies=_keeping_none())
        from ..models.transport import pool_transport, pooled

        streamed = self.response is not None and self.response.delta is not None
        if pooled(url, proxies=False) and not streamed:
            # http:// or https:// (no proxy) without a streamed answer: evalgate's keep-alive pool, which times the bytes on its own
            # I/O thread (httpx's pool looks at every idle connection per request: ~10 ms of CPU a turn at 64)
            self._pooled = httpx.AsyncClient(transport=pool_transport("httpx")(max_body=MAX_ANSWER_BYTES),
                                             trust_env=False, cookies=_keeping_none())
        elif streamed and os.environ.get("EVALGATE_HTTP_TRANSPORT") != "default":
            # a streamed answer is read by httpx as before (its decoding, [DONE], its limits), but on an I/O thread
            # of its own, which does nothing else: the time to its first text and to its end are taken there, not
            # when the run's loop, busy scoring other turns, got round to the events
            from ..models.transport import IOThread

            self._io = IOThread()
            self._io_client = await self._io.run(_client_on_this_loop(limits))

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "[redacted]")
        return text

    async def call(self, request: dict[str, Any], turn: Any, timeout_s: float) -> Reply:
        import asyncio

        import httpx

        assert self._shape is not None, "start() first"
        try:
            exchange = self._shape.build(request)
        except TemplateError as exc:
            raise TargetError(self._scrub(f"the http target's request template failed: {exc}")) from None
        start = time.perf_counter()
        try:  # the deadline covers the whole call: connecting, the headers and every byte of the body
            return await asyncio.wait_for(self._exchange(exchange, request, start, timeout_s), timeout_s)
        except (httpx.TimeoutException, asyncio.TimeoutError):
            raise TargetError(f"timed out after {timeout_s:g}s ({self._where(exchange)})") from None
        except httpx.HTTPError as exc:
            raise TargetError(self._scrub(f"{type(exc).__name__}: {exc or 'request failed'} ({self._where(exchange)})")) from None

    def _where(self, exchange: Exchange) -> str:
        return self._scrub(exchange.url)

    async def _exchange(self, exchange: Exchange, request: dict[str, Any], start: float, timeout_s: float) -> Reply:
        headers = {**exchange.headers, **marker_headers(request)}
        jar = self._jars.get((request.get("case_id"), request.get("repeat")))
        if jar:
            sent = _cookie_header(jar, exchange.url)
            if sent:
                own = next((k for k in headers if k.lower() == "cookie"), None)
                headers[own or "Cookie"] = f"{headers[own]}; {sent}" if own else sent
        kwargs: dict[str, Any] = {"json": exchange.json_body} if exchange.text_body is None else {
            "content": exchange.text_body.encode("utf-8")}
        if self.method == "GET":
            kwargs = {}
        if self._io_client is not None:
            reply: Reply = await self._io.run(self._answer(exchange, headers, kwargs, None, timeout_s, None, request,
                                                           self._io_client))
            return reply
        pooled = self._pooled is not None and self._goes_by_pool(exchange.url)
        timing = Exchange_() if pooled else None
        token = EXCHANGE.set(timing) if timing is not None else None
        try:
            return await self._answer(exchange, headers, kwargs, start, timeout_s, timing, request)
        finally:
            if token is not None:
                EXCHANGE.reset(token)

    def _goes_by_pool(self, url: str) -> bool:
        """Whether the keep-alive pool takes a request to ``url`` (a templated URL may name another scheme or host
        than the target's own): asked once per scheme and host."""
        key = url.partition("://")[0] + "://" + url.partition("://")[2].partition("/")[0]
        found = self._by_pool.get(key)
        if found is None:
            from ..models.transport import pooled

            found = self._by_pool[key] = pooled(url, proxies=False)  # httpx here goes by no proxy either
        return found

    def end_case(self, case_id: str, repeat: int) -> None:
        """A case run is over: its cookies go (a run of 20,000 cases kept every one until it ended)."""
        self._jars.pop((case_id, repeat), None)

    def _jar(self, request: dict[str, Any]) -> Any:
        import httpx

        return self._jars.setdefault((request.get("case_id"), request.get("repeat")), httpx.Cookies())

    async def _answer(self, exchange: Exchange, headers: dict[str, str], kwargs: dict[str, Any], start: float | None,
                      timeout_s: float, timing: Any, request: dict[str, Any], client: Any = None) -> Reply:
        """The answer; with ``timing`` (the keep-alive pool's), its time is the exchange's bytes on the wire, and
        there is no time to a first token (the pool reads an answer whole). Without ``start`` (on the streaming I/O
        thread) its time starts now."""
        if start is None:
            start = time.perf_counter()
        if client is None:
            client = self._pooled if timing is not None else self._client
        async with client.stream(self.method, exchange.url, headers=headers, timeout=timeout_s, **kwargs) as resp:
            if "set-cookie" in resp.headers:  # kept for this case's later turns only, as one user's browser keeps them
                self._jar(request).extract_cookies(resp)
            if resp.status_code >= 400:
                body = (await _read(resp, 4096)).decode("utf-8", "replace")
                raise TargetError(self._scrub(f"HTTP {resp.status_code} from {self._where(exchange)}: {body[:200]}"))
            kind = resp.headers.get("content-type", "").partition(";")[0].strip().lower()
            if kind == "text/event-stream":
                return await self._events(resp, start, timing)
            streamed = resp.headers.get("transfer-encoding", "").lower() == "chunked" and kind.startswith("text/plain")
            first: float | None = None
            chunks: list[bytes] = []
            size = 0
            async for chunk in resp.aiter_bytes():
                if first is None and chunk:
                    first = time.perf_counter()
                size += len(chunk)
                if size > MAX_ANSWER_BYTES:
                    raise TargetError(f"the answer is larger than {MAX_ANSWER_BYTES // 2**20} MiB ({self._where(exchange)})")
                chunks.append(chunk)
        elapsed = _elapsed(start, timing)
        text = b"".join(chunks).decode("utf-8", "replace")
        if self._secrets:
            text = self._scrub(text)  # a service that echoes its headers
        if kind.startswith("text/") and kind != "text/json":
            raw: Any = {"output": text}
        else:
            try:
                document = json.loads(text)
            except (ValueError, RecursionError):
                raise TargetError(f"response is not JSON: {text[:120]!r}") from None
            raw = self._mapped(document, text) if self.response is not None else document
        if streamed and first is not None and timing is None:
            raw = _with_first_token(raw, (first - start) * 1000)
        return Reply(raw, elapsed)

    def _mapped(self, document: Any, text: str) -> dict[str, Any]:
        assert self.response is not None
        trace = self.response.from_document(document)
        if "output" not in trace and "error" not in trace:
            raise TargetError(self.response.missing_output(repr(text[:200])))
        return trace

    async def _events(self, resp: Any, start: float, timing: Any = None) -> Reply:
        from httpx_sse import EventSource

        events: list[Any] = []
        first: float | None = None
        size = 0
        async for event in EventSource(resp).aiter_sse():
            data = self._scrub(event.data) if self._secrets else event.data
            if data.strip() == "[DONE]":
                break
            size += len(data)
            if size > MAX_ANSWER_BYTES:
                raise TargetError(f"the streamed answer is larger than {MAX_ANSWER_BYTES // 2**20} MiB")
            value = sse_event_value(data)
            if first is None and self._text_of(value):
                first = time.perf_counter()
            events.append(value)
        elapsed = _elapsed(start, timing)
        if timing is not None:
            first = None  # the pool read the stream whole: no time to its first text
        if self.response is not None:
            raw: Any = self.response.from_events(events)
        else:  # evalgate's own protocol, streamed: text events are the output, a final JSON event the trace
            documents = [e for e in events if isinstance(e, dict)]
            raw = dict(documents[-1]) if documents else {}
            texts = "".join(e for e in events if isinstance(e, str))
            if texts and "output" not in raw:
                raw["output"] = texts
        if self._secrets and isinstance(raw.get("output"), str):  # a secret echoed across two deltas is whole here
            raw["output"] = self._scrub(raw["output"])
        if first is not None:
            raw = _with_first_token(raw, (first - start) * 1000)
        return Reply(raw, elapsed)

    def _text_of(self, value: Any) -> bool:
        """Whether a streamed event carries answer text (the first one is the time to first token)."""
        if isinstance(value, str):
            return bool(value)
        if self.response is not None and self.response.delta is not None:
            return bool(self.response.delta.search(value))
        return isinstance(value, dict) and bool(value.get("output"))

    async def close(self) -> None:
        if self._io is not None:
            io, client, self._io, self._io_client = self._io, self._io_client, None, None
            if client is not None:
                await io.run(client.aclose())
            io.stop()
        if self._client is not None:
            await self._client.aclose()
        if self._pooled is not None:
            await self._pooled.aclose()


async def _client_on_this_loop(limits: Any) -> Any:
    """An httpx client made on the loop that will use it (the streaming I/O thread's)."""
    import httpx

    return httpx.AsyncClient(limits=limits, trust_env=False, cookies=_keeping_none())


def _keeping_none() -> Any:
    """A cookie jar that stores nothing (an httpx client's own would share cookies among all the cases)."""
    from http.cookiejar import CookieJar, DefaultCookiePolicy

    class _Refusing(DefaultCookiePolicy):
        def set_ok(self, cookie: Any, request: Any) -> bool:
            return False

    return CookieJar(policy=_Refusing())


def _cookie_header(jar: Any, url: str) -> str | None:
    """The Cookie header ``jar`` sends to ``url`` (its domain, path, expiry and secure rules)."""
    import httpx

    probe = httpx.Request("GET", url)
    jar.set_cookie_header(probe)
    sent: str | None = probe.headers.get("cookie")
    return sent


def _elapsed(start: float, timing: Any) -> float:
    """The call's time: the pool's exchange on the wire when it timed one, else from the call's start."""
    ms = timing.ms if timing is not None else None
    return ms if ms is not None else (time.perf_counter() - start) * 1000


def _templated(value: str) -> bool:
    return "{{" in value or "{%" in value


async def _read(resp: Any, limit: int) -> bytes:
    """At most ``limit`` bytes of a body (an error page is quoted, never read whole)."""
    out = b""
    async for chunk in resp.aiter_bytes():
        out += chunk
        if len(out) >= limit:
            break
    return out[:limit]


def _with_first_token(raw: Any, ms: float) -> Any:
    """The time to the first streamed text, as ``latency_ms.first_token`` (unless the system reports its own)."""
    if isinstance(raw, dict):
        latency = raw.get("latency_ms")
        latency = {"total": latency} if isinstance(latency, (int, float)) and not isinstance(latency, bool) else latency
        latency = dict(latency) if isinstance(latency, dict) else {}
        latency.setdefault("first_token", round(ms, 3))
        return {**raw, "latency_ms": latency}
    return raw
