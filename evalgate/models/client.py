"""The model client: bounded, timed, retried, cached calls to an OpenAI-compatible endpoint."""

from __future__ import annotations

import asyncio
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import RunStopped, UsageError
from .cache import ResponseCache, cache_key


class ModelError(Exception):
    """A model call failed for good (after retries); the message says why."""


class CacheMiss(ModelError, RunStopped):
    """Offline, and the cache has no answer for this request."""


CACHE_MODES = ("use", "refresh", "off")
"""use: answer from the cache when it can and store new answers; refresh: always call and store; off: no cache."""


@dataclass
class ModelOptions:
    """How a run calls models: the cache, its mode, offline, and the spend limit."""

    cache_path: Any = None
    cache_mode: str = "use"
    offline: bool = False
    """Fail on a cache miss instead of calling the endpoint."""
    max_cost: float | None = None
    """USD: no new model call starts once the run's spend reaches this."""
    concurrency: int | None = None
    meter: Any = None
    """The run's spend so far (a pipeline SpendMeter), shared by all of its suites."""


@dataclass
class ModelRequest:
    """One chat completion: the model, the messages, parameters and the repeat index."""

    model: str
    messages: list[dict[str, Any]]
    params: dict[str, Any] = field(default_factory=dict)
    repeat: int = 0


@dataclass
class ModelResponse:
    """The answer, its usage, and how it was obtained."""

    text: str
    model: str
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached: bool = False
    attempts: int = 0
    latency_ms: float | None = None
    queued_ms: float = 0.0
    """Time spent waiting for a free slot (the run's concurrency bound), not counted as latency."""
    harness_ms: float = 0.0
    """Of the answering attempt, evalgate's own time outside the exchange (building the request, parsing the answer,
    the event loop busy when the last byte had arrived): not counted as latency. 0 where the transport does not
    time the exchange (https endpoints)."""


_RETRY_STATUS = {408, 409, 429}


class ModelClient:
    """One client per run, shared by the pipeline and the judge.

    ``api_key_env`` names the environment variable holding the key: the key
    itself never appears in configuration, results or reports. ``headers``
    (already expanded) go with every call; like the key, they are not part of
    the cache key and are scrubbed from error messages.
    """

    def __init__(self, base_url: str, *, api_key_env: str | None = None, concurrency: int = 8, timeout_s: float = 60.0,
                 max_retries: int = 4, backoff_s: float = 0.5, max_backoff_s: float = 30.0,
                 cache: ResponseCache | None = None, seed: int | None = None, cache_mode: str = "use",
                 offline: bool = False, headers: dict[str, str] | None = None):
        if cache_mode not in CACHE_MODES:
            raise UsageError(f"unknown cache mode '{cache_mode}'", hint="use, refresh or off")
        self.base_url = base_url
        self.cache_mode = cache_mode
        self.offline = offline
        key = "not-needed"
        if api_key_env:
            if api_key_env not in os.environ:
                raise UsageError(f"environment variable {api_key_env} (the model API key) is not set",
                                 hint=f"export {api_key_env}=... before running")
            key = os.environ[api_key_env]
        self._key = key
        self._headers = dict(headers or {})
        self._client: Any = None
        """The openai client, built at the first call the cache cannot answer: a warm re-run never imports it."""
        self._plain: Any = None
        """For an http:// endpoint, the httpx2 client on evalgate's keep-alive transport, posted to directly: the
        openai package (about 0.33 s to import) is never imported for it."""
        values = [key if api_key_env else "", *(headers or {}).values()]
        # "Bearer TOKEN" and TOKEN: an endpoint that echoes what it was sent must not put them in a stored error
        parts = {v.strip() for v in values} | {p for v in values for p in v.split()[1:]}
        self._secrets = sorted((p for p in parts if len(p) >= 8), key=len, reverse=True)
        self._slots = asyncio.Semaphore(concurrency)
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.cache = cache if cache_mode != "off" else None
        self._random = random.Random(seed)
        self.calls = 0

    async def complete(self, request: ModelRequest) -> ModelResponse:
        """The model's answer, from the cache when it has one; raises ModelError when it fails for good."""
        key = cache_key(self.base_url, request.model, request.messages, request.params, request.repeat)
        if self.cache is not None and self.cache_mode == "use":
            hit = self.cache.get(key)
            if hit is not None:
                return ModelResponse(**{**hit, "cached": True, "attempts": 0})
        if self.offline:
            raise CacheMiss(f"offline and no cached answer for model {request.model} (cache mode {self.cache_mode})")
        response = await self._call_with_retries(request)
        if self.cache is not None:
            self.cache.put(key, request.model, {"text": response.text, "model": response.model,
                                                "input_tokens": response.input_tokens,
                                                "output_tokens": response.output_tokens})
        return response

    def _openai(self) -> Any:
        if self._client is None:
            from openai import AsyncOpenAI

            try:
                from .transport import http_client_for

                http_client = http_client_for(self.base_url, self.timeout_s)
            except ImportError:  # an openai built on httpx rather than httpx2: its own transport then
                http_client = None
            # retries are ours (Retry-After, jitter, one budget for the run), so the SDK's are off
            self._client = AsyncOpenAI(base_url=self.base_url, api_key=self._key, max_retries=0,
                                       timeout=self.timeout_s, http_client=http_client,
                                       default_headers=self._headers)
        return self._client

    def _connect(self) -> None:
        """Build what the calls go through: the keep-alive pool for the endpoints it takes (``transport.pooled``),
        else the openai client."""
        if self._plain is None and self._client is None:
            from .transport import pooled

            if pooled(self.base_url):
                self._plain = _PlainEndpoint(self.base_url, self._key, self._headers, self.timeout_s)
            else:
                self._openai()

    async def _post(self, body: dict[str, Any]) -> Any:
        """One chat-completions POST; its failures as the openai client reports them (``_Failed``)."""
        if self._plain is not None:
            return await self._plain.post(body)
        import openai

        try:
            # the low-level post: same auth, URL and error classes as chat.completions.create, without
            # the typed request transform and response model (about 1.5 ms of CPU per call here)
            return await self._openai().post("/chat/completions", cast_to=object, body=body)
        except openai.APITimeoutError:
            raise _Failed("timeout") from None
        except openai.APIConnectionError as exc:
            raise _Failed("connection", str(exc)) from None
        except openai.APIStatusError as exc:
            raise _Failed("status", str(exc.message), exc.status_code, exc.response.headers.get("retry-after")) from None

    async def _call_with_retries(self, request: ModelRequest) -> ModelResponse:
        self._connect()  # built before any attempt is timed
        from .exchange import EXCHANGE, Exchange

        last = "no attempt made"
        queued = 0.0
        for attempt in range(1, self.max_retries + 2):
            retry_after: float | None = None
            waiting = time.perf_counter()
            async with self._slots:  # waiting for a slot is not counted as the call's latency
                start = time.perf_counter()
                queued += (start - waiting) * 1000
                timing = Exchange()
                EXCHANGE.set(timing)  # the transport times the bytes on the wire: first sent, last received
                try:
                    self.calls += 1
                    data: Any = await self._post({"model": request.model, "messages": request.messages,
                                                  **request.params})
                    elapsed = (time.perf_counter() - start) * 1000
                    exchange = timing.ms
                    return _answer(data, request.model, attempt, elapsed if exchange is None else exchange, queued,
                                   0.0 if exchange is None else max(0.0, elapsed - exchange))
                except (ValueError, AttributeError, TypeError, IndexError) as exc:  # a body that is not the JSON promised
                    last = f"malformed response ({exc})"
                except _Failed as exc:
                    if exc.kind == "timeout":
                        last = f"timed out after {self.timeout_s:g}s"
                    elif exc.kind == "connection":
                        last = f"connection failed: {exc.message}"
                    else:
                        status = exc.status
                        last = f"HTTP {status}: {exc.message[:200]}"
                        if status < 500 and status not in _RETRY_STATUS:
                            raise ModelError(self._scrub(last)) from None  # a bad request will not get better by asking again
                        retry_after = _retry_after(exc.retry_after)
            if attempt > self.max_retries:
                break
            delay = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
            delay = delay / 2 + self._random.uniform(0, delay / 2)  # jitter: spread retries of many callers
            if retry_after is not None:
                delay = max(delay, min(retry_after, self.max_backoff_s))
            await asyncio.sleep(delay)
        raise ModelError(self._scrub(f"{last} (after {self.max_retries + 1} attempts)"))

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "[redacted]")
        return text

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
        if self._plain is not None:
            await self._plain.close()


class _Failed(Exception):
    """A call that failed as the openai client tells it: ``timeout``, ``connection`` (its message), or ``status``
    (its message, the HTTP status and the Retry-After header)."""

    def __init__(self, kind: str, message: str = "", status: int = 0, retry_after: str | None = None):
        super().__init__(kind, message)
        self.kind, self.message, self.status, self.retry_after = kind, message, status, retry_after


def _json_default(value: Any) -> Any:
    from datetime import datetime

    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"Object of type {value.__class__.__name__} is not JSON serializable")


class _PlainEndpoint:
    """Chat-completions POSTs to an http:// or https:// endpoint on the keep-alive pool, without the openai package
    or httpx2.

    What the endpoint is sent and what a call gives back are the openai client's (on the same pool), as
    ``ModelClient`` uses it (no SDK retries, the body as given): the same URL (the base URL's path and
    ``chat/completions``), body (compact JSON), ``Authorization: Bearer KEY``, ``OpenAI-Organization`` /
    ``OpenAI-Project`` from ``OPENAI_ORG_ID`` / ``OPENAI_PROJECT_ID``, the configured headers over those, and
    httpx's ``Accept-Encoding``; the answer decoded (gzip, deflate) and parsed as JSON when its content type says
    JSON, else its text (its charset, else UTF-8); a timeout, a failed connection ("Connection error.") or a status
    other than 2xx ("Error code: N", with the body's error message) told apart as the SDK's errors are. Only the
    SDK's own telemetry headers (``X-Stainless-*``, its User-Agent) are not sent.
    """

    def __init__(self, base_url: str, key: str, headers: dict[str, str], timeout_s: float):
        from urllib.parse import urlsplit

        from .. import __version__
        from .transport import KeepAlivePool

        self.pool, self.timeout_s = KeepAlivePool(), timeout_s
        parts = urlsplit(base_url)
        self.tls = parts.scheme == "https"
        self.host, self.port = parts.hostname or "", parts.port or (443 if self.tls else 80)
        path = parts.path if parts.path.endswith("/") else parts.path + "/"  # as the SDK joins it (query and all)
        self.target = path + (f"?{parts.query}" if parts.query else "") + "chat/completions"
        merged = {"accept": ("Accept", "application/json"), "accept-encoding": ("Accept-Encoding", "gzip, deflate"),
                  "content-type": ("Content-Type", "application/json"),
                  "user-agent": ("User-Agent", f"evalgate/{__version__}"),
                  "authorization": ("Authorization", f"Bearer {key}")}
        for header, env in (("OpenAI-Organization", "OPENAI_ORG_ID"), ("OpenAI-Project", "OPENAI_PROJECT_ID")):
            if os.environ.get(env) is not None:
                merged[header.lower()] = (header, os.environ[env])
        for name, value in headers.items():  # the configured headers win, whatever their case
            merged[name.lower()] = (name, value)
        sent = [(name, value) for name, value in merged.values()
                if name.lower() not in ("host", "content-length", "transfer-encoding", "connection")]
        self.head = "".join(f"{name}: {value}\r\n" for name, value in sent)
        self.head_elsewhere = "".join(f"{name}: {value}\r\n" for name, value in sent if name.lower() != "authorization")
        """The headers for another origin a redirect leads to: without the key, as httpx sends them."""
        self.bad_header: Exception | None = None
        try:  # httpx takes header values as ASCII: any other is an error at each call, as through it
            for name, value in merged.values():
                name.encode("ascii"), value.encode("ascii")
        except UnicodeEncodeError as exc:
            self.bad_header = exc

    async def post(self, body: dict[str, Any]) -> Any:
        import json

        from .transport import ExchangeError, authority

        content = json.dumps(body, default=_json_default, ensure_ascii=False, separators=(",", ":"),
                             allow_nan=False).encode()
        if self.bad_header is not None:
            raise self.bad_header
        timeouts = {"connect": self.timeout_s, "read": self.timeout_s, "write": self.timeout_s, "pool": self.timeout_s}
        where, head = (self.tls, self.host, self.port, self.target), self.head
        for _ in range(_MAX_REDIRECTS + 1):
            tls, host, port, target = where
            payload = (f"POST {target} HTTP/1.1\r\nHost: {authority(host, port, tls)}\r\n{head}"
                       f"Content-Length: {len(content)}\r\n\r\n").encode("latin-1") + content
            try:
                status, headers, data = await self.pool.exchange(host, port, payload, timeouts, tls)
            except ExchangeError as exc:
                if exc.kind.endswith("timeout"):
                    raise _Failed("timeout") from None
                # the SDK says only "Connection error."; what evalgate can tell more is said after it
                raise _Failed("connection", f"Connection error. {exc.message}") from None
            answer = _Answer(status, headers, data)
            location = answer.header("location") if status in (307, 308) else None
            if location is None:
                break
            # a 307 or 308 is followed with the same POST, as the openai client follows it; another origin is not
            # sent the key
            where = _redirected(where, location)
            if where[:3] != (self.tls, self.host, self.port):
                head = self.head_elsewhere
        else:
            raise _Failed("connection", f"Connection error. more than {_MAX_REDIRECTS} redirects") from None
        if not 200 <= status < 300:
            raise _Failed("status", _status_message(answer), status, answer.header("retry-after"))
        content_type = (answer.header("content-type") or "*").split(";")[0]
        if not content_type.endswith("json"):
            return answer.text
        return json.loads(answer.content)

    async def close(self) -> None:
        await self.pool.aclose()


_MAX_REDIRECTS = 20
"""As httpx's."""


def _redirected(where: tuple[bool, str, int, str], location: str) -> tuple[bool, str, int, str]:
    """Where a redirect's Location leads from ``where`` (tls, host, port, target)."""
    from urllib.parse import urljoin, urlsplit

    from .transport import authority

    tls, host, port, target = where
    base = f"{'https' if tls else 'http'}://{authority(host, port, tls)}{target}"
    parts = urlsplit(urljoin(base, location))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _Failed("connection", f"Connection error. a redirect to {location[:200]!r}")
    tls = parts.scheme == "https"
    return tls, parts.hostname, parts.port or (443 if tls else 80), (parts.path or "/") + (
        f"?{parts.query}" if parts.query else "")


class _Answer:
    """A response as httpx reads it: headers looked up in any case (repeats joined), the body decoded as its
    Content-Encoding says (gzip, deflate; others left as they are), text in its charset (else UTF-8, bad bytes
    replaced)."""

    def __init__(self, status: int, headers: list[tuple[str, str]], content: bytes):
        self.status_code, self.headers = status, headers
        self.content = content
        codings = [e.strip().lower() for v in self._values("content-encoding") for e in v.split(",")]
        codings = [e for e in codings if e in ("gzip", "deflate")]
        if len(codings) > 5:  # httpx decodes up to 5
            raise _Failed("connection", "Connection error.")
        if codings:
            import zlib

            try:
                for encoding in reversed(codings):
                    if encoding == "gzip":
                        d = zlib.decompressobj(zlib.MAX_WBITS | 16)
                        self.content = d.decompress(self.content) + d.flush()
                    elif encoding == "deflate":
                        try:
                            d = zlib.decompressobj()
                            decoded = d.decompress(self.content)
                        except zlib.error:  # raw deflate, without the zlib header
                            d = zlib.decompressobj(-zlib.MAX_WBITS)
                            decoded = d.decompress(self.content)
                        self.content = decoded + d.flush()
            except zlib.error:
                raise _Failed("connection", "Connection error.") from None  # httpx's DecodingError, a request error

    def _values(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n.lower() == name]

    def header(self, name: str) -> str | None:
        values = self._values(name)
        return ", ".join(values) if values else None

    @property
    def text(self) -> str:
        if not self.content:
            return ""
        import codecs
        from email.message import Message

        encoding = "utf-8"
        content_type = self.header("content-type")
        if content_type:
            msg = Message()
            msg["content-type"] = content_type
            charset = msg.get_content_charset(failobj=None)
            if charset:
                try:
                    codecs.lookup(charset)
                    encoding = charset
                except LookupError:
                    pass
        return self.content.decode(encoding, errors="replace")


def _status_message(response: Any) -> str:
    """The openai client's message for a failed status: the code, and the body's error message when it has one."""
    import json
    from collections.abc import Mapping

    message = f"Error code: {response.status_code}"
    try:
        body = json.loads(response.text.strip())
    except Exception:
        return message
    error = body.get("error", body) if isinstance(body, Mapping) else None
    text = error.get("message") if isinstance(error, Mapping) else None
    if isinstance(text, str) and text:
        message += f" - {text}"
    return message


def _count(value: Any) -> int | None:
    """A token count as the usage block gives it; anything but a whole number is not one."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _answer(data: Any, requested: str, attempt: int, elapsed: float, queued: float,
            harness: float = 0.0) -> ModelResponse:
    """A chat completion body as a response; anything else (no choices, no message) is malformed: an error, never an
    empty answer that would be cached and scored as the system's."""
    if not isinstance(data, dict):
        raise ValueError(f"not a chat completion: {str(data)[:200]}")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ValueError(f"no choices in the answer: {str(data)[:200]}")
    message = choices[0].get("message")
    if not isinstance(message, dict) or not isinstance(message.get("content", ""), (str, type(None))):
        raise ValueError(f"no message in the first choice: {str(choices[0])[:200]}")
    content = message.get("content")
    if content is None and not message.get("tool_calls") and not message.get("refusal"):
        raise ValueError(f"the message has no content: {str(message)[:200]}")
    raw_usage = data.get("usage")
    usage: dict[str, Any] = raw_usage if isinstance(raw_usage, dict) else {}
    model = data.get("model")
    return ModelResponse(content or "", model if isinstance(model, str) and model else requested,
                         _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens")),
                         attempts=attempt, latency_ms=elapsed, queued_ms=queued, harness_ms=harness)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - time.time())
