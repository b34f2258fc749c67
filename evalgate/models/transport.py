"""A small HTTP/1.1 keep-alive transport for model endpoints and services.

httpx's connection pool checks every idle connection on every request,
which at 64 calls in flight cost about 0.45 ms of CPU per call here, on the
one thread that also routes, retrieves and scores. This transport keeps a
plain stack of idle connections per host instead, on ``http://`` and on
``https://`` (TLS from the standard library, trusting what httpx trusts:
``SSL_CERT_FILE`` / ``SSL_CERT_DIR``, else certifi's bundle). It speaks just
what a chat-completions exchange needs: a request with a body, a response
with Content-Length or chunked transfer encoding. An ``https://`` endpoint
behind a proxy (``HTTPS_PROXY``, ``ALL_PROXY`` and not ``NO_PROXY``) keeps
the openai client's own transport, which goes through the proxy.

``KeepAlivePool`` moves the bytes and needs no HTTP library: the model
client posts to an endpoint through it directly. ``KeepAliveTransport`` is
the same pool as an httpx2 transport (httpx2 is imported only when it is
asked for).

The exchanges run on an I/O thread with its own event loop, which does
nothing else: the run's loop routes and scores between awaits, and with 64
calls in flight a response could wait there tens of milliseconds before its
coroutine resumed. The I/O thread timestamps the first byte sent and the
last byte received (``exchange.Exchange``), so the call's recorded latency
is the endpoint's, not the loop's lag. While it runs, the interpreter's
switch interval is ``SWITCH_INTERVAL_S``: the I/O thread gets the GIL back
within half a millisecond of asking, instead of CPython's five.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import ssl
import sys
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

from .exchange import EXCHANGE, Exchange

_MAX_HEAD = 64 * 1024
_T = TypeVar("_T")
MAX_BODY_BYTES = 64 * 1024 * 1024
"""The largest answer the pool reads (a model's or a service's); a larger one fails its call, unread."""
_UNKNOWN_ISSUER = (18, 19, 20, 21)
"""OpenSSL's verify codes for a certificate whose issuer is not trusted here (self-signed, or a CA not in the
bundle): the ones SSL_CERT_FILE can mend (a wrong host name or an expired certificate it cannot)."""


class _TooLarge(ValueError):
    """An answer larger than the caller's limit."""

    def __init__(self, max_body: int, detail: str = ""):
        super().__init__(f"the answer is larger than {max_body // 2**20} MiB{detail}")


SWITCH_INTERVAL_S = 0.0005
"""The longest the thread that routes and scores holds the GIL while the I/O thread waits for it, as long as an I/O
thread runs. The I/O thread lets the GIL go at every select and send and needs it back for microseconds each time;
with CPython's 5 ms each of those waits behind a busy scoring loop lasted up to 5 ms, and at 256 calls in flight
to a 50 ms http target the store recorded a p50 of 67-86 ms (p95 100-155 ms) where a bare client in a process of
its own measured 56 ms. At 0.5 ms: p50 52.5-53.2 ms (p95 56-63 ms), and the run at 64 in flight takes 1.86-2.25
s instead of 2.27-2.46 s, its CPU per turn within the runs' spread (bench_http_target.py, 4 interleaved rounds)."""

_switch_lock = threading.Lock()
_switch_holders = 0
_switch_set: tuple[float, float] | None = None  # (the interval before, the interval set) while shortened


def _fast_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def shorten_switch_interval() -> None:
    """SWITCH_INTERVAL_S while an I/O thread (or an async python target) runs: each call is matched by one
    ``restore_switch_interval`` (the interval before is kept for it)."""
    global _switch_holders, _switch_set
    with _switch_lock:
        _switch_holders += 1
        before = sys.getswitchinterval()
        if before > SWITCH_INTERVAL_S:  # also when the process set it longer while another I/O thread ran
            sys.setswitchinterval(SWITCH_INTERVAL_S)
            if _switch_set is None:
                _switch_set = (before, sys.getswitchinterval())


def restore_switch_interval() -> None:
    """The interval as it was before the first holder, when the last one lets go, unless the process has set another
    meanwhile."""
    global _switch_holders, _switch_set
    with _switch_lock:
        _switch_holders -= 1
        if _switch_holders == 0 and _switch_set is not None:
            before, ours = _switch_set
            _switch_set = None
            if sys.getswitchinterval() == ours:
                sys.setswitchinterval(before)


class _Job:
    __slots__ = ("coro", "future", "loop", "task", "cancelled")

    def __init__(self, coro: Coroutine[Any, Any, Any], future: asyncio.Future[Any], loop: asyncio.AbstractEventLoop):
        self.coro = coro
        self.future = future
        self.loop = loop
        self.task: asyncio.Task[Any] | None = None
        self.cancelled = False


class IOThread:
    """A daemon thread running an event loop that does nothing but what is handed to it: socket I/O (on uvloop where
    installed), or a user's async target (``fast=False``: the standard library's loop, as the user's own program
    would run it). While it runs, the switch interval is ``SWITCH_INTERVAL_S`` (``short_switch=False``: its owner
    shortens it while it needs to).

    Hand-offs are batched both ways: a wake-up of the other loop (a write to its self-pipe) is sent only when its
    queue was empty, so at 64 calls in flight one wake-up carries many requests or many answers.
    """

    def __init__(self, *, name: str = "evalgate-model-io", fast: bool = True, short_switch: bool = True) -> None:
        self.loop: asyncio.AbstractEventLoop = _fast_loop() if fast else asyncio.new_event_loop()
        self._lock = threading.Lock()
        self._inbox: list[_Job] = []
        self._outbox: dict[asyncio.AbstractEventLoop, list[_Job]] = {}
        self._short_switch = short_switch
        self._stop_asked = False
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        if short_switch:
            shorten_switch_interval()
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            with contextlib.suppress(Exception):  # a user's async generators left open get their finally blocks
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()
            if self._short_switch:
                restore_switch_interval()

    async def run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Await ``coro`` on the I/O loop from another loop (cancelling this cancels it there)."""
        loop = asyncio.get_running_loop()
        job = _Job(coro, loop.create_future(), loop)
        with self._lock:
            self._inbox.append(job)
            wake = len(self._inbox) == 1
        if wake:
            self.loop.call_soon_threadsafe(self._start_jobs)
        try:
            return await job.future  # type: ignore[no-any-return]
        except asyncio.CancelledError:
            self.loop.call_soon_threadsafe(self._cancel, job)
            raise

    # --- on the I/O thread ---

    def _start_jobs(self) -> None:
        with self._lock:
            jobs, self._inbox = self._inbox, []
        for job in jobs:
            if job.cancelled:
                job.coro.close()
                continue
            job.task = self.loop.create_task(job.coro)
            job.task.add_done_callback(functools.partial(self._finished, job))

    def _cancel(self, job: _Job) -> None:
        job.cancelled = True
        if job.task is not None:
            job.task.cancel()

    def _finished(self, job: _Job, _task: asyncio.Task[Any]) -> None:
        with self._lock:
            box = self._outbox.setdefault(job.loop, [])
            box.append(job)
            wake = len(box) == 1
        if wake:
            try:
                job.loop.call_soon_threadsafe(self._deliver, job.loop)
            except RuntimeError:  # the caller's loop has closed: nobody is waiting for what is in its box
                with self._lock:
                    self._outbox.pop(job.loop, None)

    # --- on the caller's loop ---

    def _deliver(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            jobs = self._outbox.pop(loop, [])
        for job in jobs:
            task, future = job.task, job.future
            if future.done() or task is None:  # the caller gave up (a timeout, an interrupt)
                if task is not None and not task.cancelled():
                    task.exception()  # what it ended with is nobody's now: no "exception was never retrieved"
                continue
            if task.cancelled():
                future.cancel()
            elif task.exception() is not None:
                future.set_exception(task.exception())  # type: ignore[arg-type]
            else:
                future.set_result(task.result())

    def stop(self) -> None:
        """Stop the loop once the exchanges still on it have been cancelled and have ended (an interrupted run's),
        waiting at most 5 s (once: a loop stuck in a blocking call is not waited for again)."""
        if self.loop.is_closed() or self._stop_asked:
            return
        self._stop_asked = True
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self._stop_when_drained)
        if threading.current_thread() is not self.thread:
            self.thread.join(5)

    def _stop_when_drained(self) -> None:
        pending = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
        for task in pending:
            task.cancel()
        if not pending:
            self.loop.stop()
            return
        drained = asyncio.gather(*pending, return_exceptions=True)
        drained.add_done_callback(lambda _: self.loop.stop())


class _Connection:
    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class ExchangeError(Exception):
    """An exchange that failed: ``kind`` is connect_timeout, connect, read_timeout, read, protocol or too_large."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind, self.message = kind, message


def pooled(url: str, *, proxies: bool = True) -> bool:
    """Whether calls to ``url`` go through the keep-alive pool: http://, and https:// unless (with ``proxies``) the
    environment sends it through a proxy; neither with EVALGATE_HTTP_TRANSPORT=default."""
    if os.environ.get("EVALGATE_HTTP_TRANSPORT") == "default":
        return False
    if url.startswith("http://"):
        return True
    return url.startswith("https://") and not (proxies and _proxied(url))


def _proxied(url: str) -> bool:
    """Whether the openai client (httpx2, its environment trusted) sends ``url`` through a proxy: asked of httpx2's
    own reading of HTTPS_PROXY, ALL_PROXY and NO_PROXY (``.example.com`` is its subdomains only, as in curl), and
    httpx2 imported only when such a proxy is set."""
    from urllib.request import getproxies

    proxies = getproxies()
    if not (proxies.get("https") or proxies.get("all")):
        return False
    import httpx2
    from httpx2._utils import URLPattern, get_environment_proxies

    target = httpx2.URL(url)
    patterns = sorted((URLPattern(key), proxy) for key, proxy in get_environment_proxies().items())
    for pattern, proxy in patterns:  # most specific first, as httpx2 mounts them
        if pattern.matches(target):
            return proxy is not None
    return False


def tls_context() -> Any:
    """What an https connection of the pool trusts: SSL_CERT_FILE and SSL_CERT_DIR when set (as httpx with its
    environment trusted, and the openai client, read them), else certifi's bundle (httpx's default), else the
    system's certificates."""
    return _tls_context(os.environ.get("SSL_CERT_FILE") or None, os.environ.get("SSL_CERT_DIR") or None)


@functools.lru_cache(maxsize=4)
def _tls_context(cafile: str | None, capath: str | None) -> Any:
    if cafile is None and capath is None:
        with contextlib.suppress(ImportError):  # without certifi: the system's certificates
            import certifi

            cafile = certifi.where()
    context = ssl.create_default_context(cafile=cafile, capath=capath)
    context.set_alpn_protocols(["http/1.1"])
    return context


def authority(host: str, port: int, tls: bool) -> str:
    """The Host header's value: an IPv6 address in brackets, the port left out where it is the scheme's own."""
    name = f"[{host}]" if ":" in host else host
    return name if port == (443 if tls else 80) else f"{name}:{port}"


class KeepAlivePool:
    """HTTP/1.1 over asyncio streams with a stack of idle connections per host, on the I/O thread."""

    def __init__(self, max_idle: int = 256):
        self.max_idle = max_idle
        self._idle: dict[tuple[str, int, bool], list[_Connection]] = {}
        self._io: IOThread | None = None

    async def exchange(self, host: str, port: int, payload: bytes, timeouts: dict[str, Any],
                       tls: bool = False, max_body: int = MAX_BODY_BYTES) -> tuple[int, list[tuple[str, str]], bytes]:
        """Send ``payload`` (a whole request) and read the response: status, headers, body (de-chunked, at most
        ``max_body`` bytes); over TLS (``tls_context``) with ``tls``."""
        timing = EXCHANGE.get()
        if timing is None:
            timing = Exchange()
        if self._io is None:
            self._io = IOThread()
        return await self._io.run(self._exchange((host, port, tls), payload, timeouts, timing, max_body))

    async def _exchange(self, where: tuple[str, int, bool], payload: bytes, timeouts: dict[str, Any],
                        timing: Exchange, max_body: int) -> tuple[int, list[tuple[str, str]], bytes]:
        """One request and its response, on the I/O loop. A request is sent once: a connection that fails after it
        was written may have been answered by the system (the client's retries decide, as through httpx)."""
        conn = await self._connection(where, timeouts.get("connect"))
        try:
            timing.sent = time.perf_counter()
            conn.writer.write(payload)
            status, headers, content, keep = await asyncio.wait_for(self._read(conn.reader, max_body),
                                                                    timeouts.get("read"))
            timing.received = time.perf_counter()
        except asyncio.TimeoutError:
            conn.close()
            raise ExchangeError("read_timeout", f"no response within {timeouts.get('read')}s") from None
        except asyncio.IncompleteReadError as exc:
            conn.close()
            said = "without sending a response" if not exc.partial else "in the middle of the response"
            raise ExchangeError("read", f"the server disconnected {said}") from None
        except asyncio.LimitOverrunError:
            conn.close()
            raise ExchangeError("protocol", f"a response line or header block longer than {_MAX_HEAD * 16} bytes"
                                ) from None
        except (ConnectionError, OSError) as exc:
            conn.close()
            raise ExchangeError("read", f"{type(exc).__name__}: {exc}") from None
        except _TooLarge as exc:
            conn.close()
            raise ExchangeError("too_large", str(exc)) from None
        except ValueError as exc:
            conn.close()
            raise ExchangeError("protocol", str(exc)) from None
        except BaseException:  # cancelled (a deadline, Ctrl-C): the connection may be mid-answer
            conn.close()
            raise
        if keep:
            self._release(where, conn)
        else:
            conn.close()
        return status, headers, content

    async def _connection(self, where: tuple[str, int, bool], timeout: float | None) -> _Connection:
        """An idle connection the server has not closed, else a new one."""
        idle = self._idle.get(where)
        while idle:
            conn = idle.pop()
            if not conn.reader.at_eof() and not conn.writer.is_closing():
                return conn
            conn.close()
        host, port, tls = where
        try:
            opening = (asyncio.open_connection(host, port, limit=_MAX_HEAD * 16, ssl=tls_context(),
                                               server_hostname=host) if tls
                       else asyncio.open_connection(host, port, limit=_MAX_HEAD * 16))
            reader, writer = await asyncio.wait_for(opening, timeout)
        except asyncio.TimeoutError:
            raise ExchangeError("connect_timeout", f"no connection to {host}:{port} within {timeout}s") from None
        except ssl.SSLError as exc:
            unknown_issuer = isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_code in _UNKNOWN_ISSUER
            hint = " (SSL_CERT_FILE names the certificates to trust: a bundle with your CA's)" if unknown_issuer else ""
            raise ExchangeError("connect", f"{host}:{port}: {exc}{hint}") from None
        except OSError as exc:
            raise ExchangeError("connect", f"{host}:{port}: {exc}") from None
        return _Connection(reader, writer)

    def _release(self, where: tuple[str, int, bool], conn: _Connection) -> None:
        idle = self._idle.setdefault(where, [])
        if len(idle) < self.max_idle:
            idle.append(conn)
        else:
            conn.close()

    @staticmethod
    async def _read(reader: asyncio.StreamReader, max_body: int) -> tuple[int, list[tuple[str, str]], bytes, bool]:
        while True:
            raw = await reader.readuntil(b"\r\n\r\n")
            lines = raw[:-4].decode("latin-1").split("\r\n")
            version, _, rest = lines[0].partition(" ")
            if not version.startswith("HTTP/1."):
                raise ValueError(f"not an HTTP/1.x response: {lines[0][:80]!r}")
            status = int(rest.split(" ", 1)[0])
            if not 100 <= status < 200 or status == 101:
                break  # an interim answer (100 Continue, 103 Early Hints) is followed by the response
        if status == 101:
            raise ValueError("the server switched protocols (101), which a request and its answer do not")
        headers: list[tuple[str, str]] = []
        length: int | None = None
        chunked = False
        connection = ""
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name, value = name.strip(), value.strip()
            headers.append((name, value))
            lower = name.lower()
            if lower == "content-length":
                length = int(value)
            elif lower == "transfer-encoding":
                chunked = "chunked" in value.lower()
            elif lower == "connection":
                connection = value.lower()
        keep = connection != "close" and (version == "HTTP/1.1" or connection == "keep-alive")
        if status in (204, 304):  # no body, whatever the headers say
            return status, headers, b"", keep
        if chunked:
            parts = []
            size = 0
            while True:
                chunk = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
                if chunk == 0:
                    while await reader.readuntil(b"\r\n") != b"\r\n":
                        pass  # trailers, up to the blank line (model endpoints send none worth reading)
                    break
                size += chunk
                if size > max_body:
                    raise _TooLarge(max_body)
                parts.append(await reader.readexactly(chunk))
                await reader.readexactly(2)
            content = b"".join(parts)
            headers = [(n, v) for n, v in headers if n.lower() != "transfer-encoding"]
        elif length is not None:
            if length > max_body:
                raise _TooLarge(max_body, f" (Content-Length {length})")
            content = await reader.readexactly(length)
        else:  # the body is what comes until the server closes
            parts, size = [], 0
            while block := await reader.read(1 << 16):
                size += len(block)
                if size > max_body:
                    raise _TooLarge(max_body)
                parts.append(block)
            content, keep = b"".join(parts), False
        return status, headers, content, keep

    async def aclose(self) -> None:
        io, self._io = self._io, None
        if io is None:
            return
        with contextlib.suppress(RuntimeError):
            await io.run(self._close_idle())
        io.stop()

    async def _close_idle(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
        await asyncio.sleep(0)  # let the transports' close callbacks run before the loop stops


@functools.lru_cache(maxsize=2)
def pool_transport(library: str = "httpx2") -> Any:
    """The keep-alive pool as a transport class of ``library`` (httpx2, which the openai client is built on, or
    httpx, which the http target uses): the same requests on the wire, the library's own decoding and errors."""
    import importlib

    lib = importlib.import_module(library)
    errors = {"connect_timeout": lib.ConnectTimeout, "connect": lib.ConnectError, "read_timeout": lib.ReadTimeout,
              "read": lib.ReadError, "protocol": lib.RemoteProtocolError, "too_large": lib.ReadError}

    class KeepAliveTransport(lib.AsyncBaseTransport):  # type: ignore[misc,name-defined]
        """The keep-alive pool as a transport; an answer larger than ``max_body`` bytes is a ReadError."""

        def __init__(self, max_idle: int = 256, max_body: int = MAX_BODY_BYTES):
            self.pool = KeepAlivePool(max_idle)
            self.max_body = max_body

        async def handle_async_request(self, request: Any) -> Any:
            url = request.url
            if url.scheme not in ("http", "https"):
                raise lib.UnsupportedProtocol(f"KeepAliveTransport speaks http and https, not {url.scheme}")
            tls = url.scheme == "https"
            host, port = url.host, url.port or (443 if tls else 80)
            timeouts = request.extensions.get("timeout") or {}
            body = await request.aread()
            target = url.raw_path.decode("ascii")
            head = [f"{request.method} {target} HTTP/1.1", f"Host: {authority(host, port, tls)}"]
            for name, value in request.headers.multi_items():
                if any(c in name or c in value for c in "\r\n\0"):  # a templated value cannot add a header
                    raise lib.LocalProtocolError(f"illegal character in the header {name!r}")
                if name.lower() not in ("host", "content-length", "transfer-encoding", "connection"):
                    head.append(f"{name}: {value}")
            head.append(f"Content-Length: {len(body)}")
            try:
                payload = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
            except UnicodeEncodeError as exc:
                raise lib.LocalProtocolError(f"a header is not Latin-1 text: {exc}") from None
            try:
                status, headers, content = await self.pool.exchange(host, port, payload, timeouts, tls, self.max_body)
            except ExchangeError as exc:
                if exc.kind.startswith("connect"):
                    raise errors[exc.kind](exc.message) from None
                raise errors[exc.kind](exc.message, request=request) from None
            return lib.Response(status, headers=headers, stream=lib.ByteStream(content),
                                extensions={"http_version": b"HTTP/1.1"})

        async def aclose(self) -> None:
            await self.pool.aclose()

    return KeepAliveTransport


def __getattr__(name: str) -> Any:
    if name == "KeepAliveTransport":  # httpx2 is imported only for it
        return pool_transport()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def http_client_for(base_url: str, timeout_s: float) -> Any:
    """An httpx2 client on the keep-alive transport for the endpoints it serves (``pooled``); None (the openai
    default) otherwise.

    ``EVALGATE_HTTP_TRANSPORT=default`` keeps the openai client's own transport everywhere (for a proxy or
    server this small transport does not speak to).
    """
    if not pooled(base_url):
        return None
    import httpx2

    return httpx2.AsyncClient(transport=pool_transport()(), timeout=timeout_s, trust_env=False)
