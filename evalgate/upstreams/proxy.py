"""The proxy: each upstream served on 127.0.0.1 (a port each) by aiohttp, in its own thread and event loop.

None of the proxy's work runs on the runner's event loop or in the system under test's threads: a call is
decided (a few look-ups in the suite's book), then answered from its recording or passed to the real upstream,
a streamed answer event by event as it arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
from collections.abc import Mapping
from functools import partial
from typing import Any, Protocol

from ..errors import UsageError
from .book import Book, Decision, Secrets, Upstream, Visit
from .chat import completion, completion_events, events_completion, wants_stream
from .recordings import json_body, request_hash

_TURN_PATH = re.compile(r"/_t/([0-9a-f]{32})(/.*)?")
"""A per-turn URL: /_t/<trace id> before the upstream's own path."""
_NOT_FORWARDED = frozenset({"host", "connection", "keep-alive", "proxy-connection", "proxy-authorization", "te",
                            "trailer", "transfer-encoding", "upgrade", "content-length", "accept-encoding"})
_MAX_BODY = 64 * 1024 * 1024


class Router(Protocol):
    """Who a call belongs to: the turn in flight it is attributed to (if any) and the book that decides it."""

    def attribute(self, headers: Mapping[str, str], trace_id: str | None) -> tuple[Visit | None, Book]: ...


class Proxy:
    """Serves every upstream until stopped; ``urls`` maps each upstream to its proxy origin (http://127.0.0.1:PORT)."""

    def __init__(self, upstreams: list[Upstream], router: Router, secrets: Secrets):
        self.upstreams = upstreams
        self.router = router
        self.secrets = secrets
        self.urls: dict[str, str] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._runners: list[Any] = []
        self._client: Any = None

    def start(self, timeout_s: float = 15.0) -> None:
        """Listen on every upstream's port; a port that cannot be had is a UsageError (exit 2)."""
        self._thread = threading.Thread(target=self._serve, name="evalgate-upstreams", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise UsageError("the upstream proxy did not start", hint="see whether 127.0.0.1 accepts connections here")
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)

    def _serve(self) -> None:
        loop = self._loop = _new_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._open())
        except BaseException as exc:  # reported by start(), in the runner's thread
            self._error = exc
            self._ready.set()
            loop.run_until_complete(self._close())
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._close())
            loop.close()

    async def _open(self) -> None:
        import aiohttp
        from aiohttp import web

        self._client = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
                                             timeout=aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=600),
                                             trust_env=False, auto_decompress=True)
        for up in self.upstreams:
            app = web.Application(client_max_size=_MAX_BODY)
            app.router.add_route("*", "/{tail:.*}", partial(self._handle, up))
            # a call still in flight when the run ends (a stream its caller left) holds the run's end 2 s at most
            runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
            await runner.setup()
            self._runners.append(runner)
            site = web.TCPSite(runner, "127.0.0.1", up.port, backlog=1024)
            try:
                await site.start()
            except OSError as exc:
                raise UsageError(f"upstream {up.name}: cannot listen on 127.0.0.1:{up.port}: {exc.strerror or exc}",
                                 hint="choose another port: for this upstream, or port: 0 for any free one") from None
            host, port = runner.addresses[-1][:2]
            self.urls[up.name] = f"http://{host}:{port}"

    async def _close(self) -> None:
        for runner in self._runners:
            await runner.cleanup()
        if self._client is not None:
            await self._client.close()

    # --- one call ---------------------------------------------------------------

    async def _handle(self, up: Upstream, request: Any) -> Any:
        body = await request.read()
        path, query = request.rel_url.raw_path, request.rel_url.raw_query_string
        token = None
        m = _TURN_PATH.fullmatch(path)
        if m is not None:
            token, path = m.group(1), m.group(2) or "/"
        visit, book = self.router.attribute(request.headers, token)
        d = book.decide(up, visit, request.method, path, query, body,
                        request_hash(up.openai, request.method, path, query, body))
        try:
            if d.served == "recorded":
                return await self._recorded(request, up, d)
            if d.served == "failed":
                return _refusal(d)
            return await self._forward(request, up, d, book, visit.markers if visit is not None else {})
        except (ConnectionError, asyncio.CancelledError):  # the caller left
            raise
        except Exception as exc:  # a recording this proxy cannot serve: the call fails, named, and the run goes on
            book.failed(d, f"the proxy could not answer it: {type(exc).__name__}: {exc}")
            return _refusal(d)
        finally:
            book.settle(d)  # once: a live answer was settled with what to keep already

    async def _recorded(self, request: Any, up: Upstream, d: Decision) -> Any:
        from aiohttp import web

        stream = up.openai and wants_stream(json_body(d.body))
        events: list[str] | None = None
        if d.seed is not None:
            answer = completion(d.seed.output, d.seed.model, id=f"chatcmpl-{d.entry['request_hash']}", usage=d.seed.usage)
            if stream:
                events = completion_events(answer)
            status, ctype, data = 200, "application/json", _json_bytes(answer)
        else:
            rec = d.recording
            assert rec is not None
            status, ctype = rec.status, rec.content_type or "application/octet-stream"
            if rec.events is not None:
                whole = events_completion(rec.events) if up.openai and not stream else None
                if whole is None:
                    events = rec.events
                data, ctype = (_json_bytes(whole), "application/json") if whole is not None else (b"", ctype)
            else:
                data = rec.answer_bytes()
                if stream and isinstance(rec.body, dict) and status < 400:
                    events = completion_events(rec.body)
        headers = {"X-Evalgate-Served": "recorded"}
        if events is None:
            return web.Response(status=status, body=data, headers={**headers, "Content-Type": ctype})
        out = web.StreamResponse(status=status, headers={**headers, "Content-Type": "text/event-stream",
                                                         "Cache-Control": "no-cache"})
        out.enable_chunked_encoding()
        await out.prepare(request)
        for event in events:
            await out.write(event.encode() + b"\n\n")
        await out.write_eof()
        return out

    async def _forward(self, request: Any, up: Upstream, d: Decision, book: Book, markers: dict[str, str]) -> Any:
        import aiohttp
        from aiohttp import web

        added = {k.lower() for k in up.headers}
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _NOT_FORWARDED and k.lower() not in added}
        headers.update(up.headers)
        sent = {k.lower() for k in headers}
        # eval traffic is marked upstream too: the turn's markers where the system did not pass its own on
        headers.update({k: v for k, v in markers.items() if k.lower() not in sent})
        url = up.origin + d.path + (f"?{d.query}" if d.query else "")
        served: dict[str, str] = {"X-Evalgate-Served": d.served}
        try:
            async with self._client.request(request.method, url, data=d.body or None, headers=headers,
                                            allow_redirects=False) as resp:
                ctype = resp.headers.get("Content-Type", "")
                if ctype.startswith("text/event-stream"):
                    return await self._stream(request, resp, d, book, served)
                data = self.secrets.data(await resp.read())
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            book.failed(d, f"upstream {up.name} did not answer: {type(exc).__name__}: {exc}")
            return _refusal(d)
        book.settle(d, resp.status, ctype or None, data)
        return web.Response(status=resp.status, body=data, headers={**served, **({"Content-Type": ctype} if ctype else {})})

    async def _stream(self, request: Any, resp: Any, d: Decision, book: Book, served: dict[str, str]) -> Any:
        """A streamed answer, passed on event by event as it arrives, and kept as its events."""
        import aiohttp
        from aiohttp import web

        out = web.StreamResponse(status=resp.status, headers={**served, "Content-Type": resp.headers["Content-Type"],
                                                               "Cache-Control": "no-cache"})
        out.enable_chunked_encoding()
        await out.prepare(request)
        events: list[str] = []
        pending = b""
        complete = True
        relay = _Relay(out, self.secrets, events)
        try:
            async for chunk in resp.content.iter_any():
                pending = (pending + chunk).replace(b"\r\n", b"\n")
                while b"\n\n" in pending:
                    raw, pending = pending.split(b"\n\n", 1)
                    await relay.event(raw)
            if pending.strip():
                await relay.event(pending.rstrip(b"\n"))
            if not relay.caller_gone:
                with contextlib.suppress(ConnectionError):
                    await out.write_eof()
        except asyncio.CancelledError:  # the run is ending: nothing to keep
            complete = False
            raise
        except aiohttp.ClientError as exc:  # the upstream broke off mid-stream
            complete = False
            book.failed(d, f"upstream {d.entry['upstream']} broke off its stream: {type(exc).__name__}: {exc}")
            with contextlib.suppress(ConnectionError):
                await out.write_eof()
        finally:
            if complete:
                book.settle(d, resp.status, resp.headers["Content-Type"], events=events)
            else:
                d.keep = False
        return out



class _Relay:
    """Passes a stream's events on to the caller and keeps them. A caller that stops reading (an openai client
    closes its connection at ``[DONE]``) is not a failed call: the upstream's stream is read, and kept, to its end."""

    def __init__(self, out: Any, secrets: Secrets, events: list[str]):
        self.out = out
        self.secrets = secrets
        self.events = events
        self.caller_gone = False

    async def event(self, raw: bytes) -> None:
        data = self.secrets.data(raw)
        self.events.append(data.decode("utf-8", "replace"))
        if self.caller_gone:
            return
        try:
            await self.out.write(data + b"\n\n")
        except ConnectionError:
            self.caller_gone = True


def _new_loop() -> asyncio.AbstractEventLoop:
    """uvloop where it is installed (the ``fast`` extra): it halves what relaying a call costs the proxy's thread."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def _json_bytes(value: Any) -> bytes:
    import json

    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _refusal(d: Decision) -> Any:
    """The proxy's own answer to a call it may not pass on: 502, a JSON error naming the call, and no retry."""
    from aiohttp import web

    message = (f"evalgate upstream proxy: {d.entry['upstream']} {d.method} {d.path}: {d.entry['note']}")
    return web.json_response({"error": {"message": message, "type": "evalgate_upstream", "code": "upstream_refused"}},
                             status=502, headers={"X-Evalgate-Served": "failed", "x-should-retry": "false"})
