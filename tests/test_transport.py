"""The keep-alive pool against servers that answer in the ways HTTP allows and the ways it does not: each call
gets the answer httpx would read, or fails alone with a message; nothing is sent twice, nothing read unbounded."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import query, write

from evalgate.models.transport import ExchangeError, KeepAlivePool, authority, pooled

Answer = Callable[[int, bytes], "bytes | None"]
"""The raw bytes to answer the n-th request (from 1) with its head and body; None closes the connection unanswered."""

JSON_OK = b'{"choices": [{"message": {"role": "assistant", "content": "fine"}}], "usage": {}}'


def ok(body: bytes = JSON_OK, extra: bytes = b"") -> bytes:
    return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " + str(len(body)).encode()
            + b"\r\n" + extra + b"\r\n" + body)


class Scripted:
    """A server on 127.0.0.1, on its own thread and loop, that answers each request as ``answer`` says and keeps
    every request it read."""

    def __init__(self, answer: Answer):
        self.answer = answer
        self.requests: list[bytes] = []
        self.connections = 0
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self.thread.start()
        ready.wait(10)

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = self.server.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                request = head + (await reader.readexactly(length) if length else b"")
                self.requests.append(request)
                out = self.answer(len(self.requests), request)
                if out is None:
                    break
                writer.write(out)
                await writer.drain()
                if b"\r\nconnection: close\r\n" in out.partition(b"\r\n\r\n")[0].lower() + b"\r\n":
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _close(self) -> None:
        self.server.close()
        handlers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in handlers:
            t.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@contextmanager
def scripted(answer: Answer) -> Iterator[Scripted]:
    server = Scripted(answer)
    try:
        yield server
    finally:
        server.stop()


def request(port: int, path: str = "/v1/chat/completions") -> bytes:
    body = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}'
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def calls(port: int, n: int, **kw) -> list[object]:
    """``n`` exchanges one after another on one pool: each answer's (status, body), or the ExchangeError."""

    async def go() -> list[object]:
        pool = KeepAlivePool()
        out: list[object] = []
        try:
            for _ in range(n):
                try:
                    status, _, body = await pool.exchange("127.0.0.1", port, request(port), {"read": 5, "connect": 5},
                                                          **kw)
                    out.append((status, body))
                except ExchangeError as exc:
                    out.append(exc)
        finally:
            await pool.aclose()
        return out

    return asyncio.run(go())


def test_a_chunked_answer_s_trailers_are_read_to_their_end_and_the_connection_serves_the_next_call() -> None:
    chunked = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nfine\r\n0\r\n"
               b"X-Checksum: 1\r\nX-Other: 2\r\n\r\n")
    with scripted(lambda n, _: chunked if n == 1 else ok(b"two")) as server:
        got = calls(server.port, 2)
    assert got == [(200, b"fine"), (200, b"two")]
    assert server.connections == 1


def test_interim_answers_are_skipped_and_a_204_has_no_body() -> None:
    answers = {1: b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"after continue"),
               2: b"HTTP/1.1 204 No Content\r\n\r\n", 3: ok(b"three")}
    with scripted(lambda n, _: answers[n]) as server:
        got = calls(server.port, 3)
    assert got == [(200, b"after continue"), (204, b""), (200, b"three")]


def test_an_endless_header_block_fails_its_call_and_not_the_next() -> None:
    huge = b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (2 << 20) + b"\r\nContent-Length: 0\r\n\r\n"
    with scripted(lambda n, _: huge if n == 1 else ok(b"next")) as server:
        got = calls(server.port, 2)
    assert isinstance(got[0], ExchangeError) and got[0].kind == "protocol", got[0]
    assert got[1] == (200, b"next")


@pytest.mark.parametrize("shape", ["length", "chunked", "until-close"])
def test_an_answer_over_the_limit_fails_its_call_unread(shape: str) -> None:
    body = b"x" * 50_000
    answers = {"length": ok(body),
               "chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"".join(
                   b"2710\r\n" + body[:10_000] + b"\r\n" for _ in range(5)) + b"0\r\n\r\n",
               "until-close": b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + body}
    with scripted(lambda n, _: answers[shape]) as server:
        got = calls(server.port, 1, max_body=20_000)
    assert isinstance(got[0], ExchangeError) and got[0].kind == "too_large", got[0]
    with scripted(lambda n, _: answers[shape]) as server:
        assert calls(server.port, 1, max_body=60_000) == [(200, body)]


def test_a_request_the_server_read_and_never_answered_is_not_sent_again() -> None:
    """The server takes the second POST on a kept-alive connection and closes it unanswered: the system may have
    acted on it, so the call fails (the client's own retries decide) instead of being sent again behind its back."""
    with scripted(lambda n, _: ok() if n != 2 else None) as server:
        got = calls(server.port, 3)
    assert got[0] == (200, JSON_OK) and got[2] == (200, JSON_OK)
    assert isinstance(got[1], ExchangeError) and "without sending a response" in got[1].message, got[1]
    assert len(server.requests) == 3


def test_a_model_endpoint_s_307_and_308_are_followed_and_another_origin_gets_no_key(tmp_path: Path,
                                                                                   monkeypatch) -> None:
    from evalgate.api import run
    from evalgate.config import find_config
    from evalgate.runner import RunOptions

    monkeypatch.setenv("REDIRECT_TEST_KEY", "sk-redirect-test-0123456789")
    with scripted(lambda n, _: ok(b'{"choices": [{"message": {"content": "moved here"}}], "usage": {}}')) as there:
        hops = {1: "HTTP/1.1 307 Temporary Redirect\r\nLocation: /v2/chat/completions\r\nContent-Length: 0\r\n\r\n",
                2: (f"HTTP/1.1 308 Permanent Redirect\r\nLocation: http://127.0.0.1:{there.port}/v3/chat/completions"
                    "\r\nContent-Length: 0\r\n\r\n")}
        with scripted(lambda n, _: hops[n].encode()) as here:
            write(tmp_path / "pyproject.toml", '[tool.evalgate]\nsuites = "suites"\n')
            suite = write(tmp_path / "suites" / "moved.yaml", f"""
                name: moved
                target:
                  pipeline:
                    endpoint: {{base_url: "http://127.0.0.1:{here.port}/v1", api_key_env: REDIRECT_TEST_KEY,
                               max_retries: 0}}
                    router: {{fallback: answer}}
                    routes: {{answer: {{model: {{name: m}}}}}}
                cases:
                  - {{id: one, input: hello, expect: {{output: {{contains: [moved]}}}}}}
            """)
            db = tmp_path / "store.duckdb"
            report = run([str(suite)], config=find_config(tmp_path), store_path=db,
                         options=RunOptions(cache_mode="off"))
    assert query(db, "SELECT output, error FROM turns") == [("moved here", None)]
    assert report.exit_code == 0
    assert [r.split(b" ")[1] for r in here.requests] == [b"/v1/chat/completions", b"/v2/chat/completions"]
    assert all(b"sk-redirect-test" in r for r in here.requests)
    [elsewhere] = there.requests
    assert elsewhere.startswith(b"POST /v3/chat/completions") and b"sk-redirect-test" not in elsewhere
    assert elsewhere.endswith(b'"content":"hello"}]}') or b'"hello"' in elsewhere


def test_the_host_header_brackets_an_ipv6_address() -> None:
    assert authority("::1", 8443, True) == "[::1]:8443"
    assert authority("::1", 443, True) == "[::1]"


def test_no_proxy_names_a_domain_s_subdomains_as_httpx_reads_it(monkeypatch) -> None:
    """NO_PROXY=.example.com leaves example.com itself on the proxy (as httpx and curl read it), so it keeps the
    openai client's transport; www.example.com is not proxied and goes by the pool."""
    for name in ("https_proxy", "all_proxy", "no_proxy", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", ".example.com,10.0.0.0/8")
    assert not pooled("https://example.com/v1")
    assert pooled("https://www.example.com/v1")
    assert pooled("https://10.1.2.3/v1") and not pooled("https://11.1.2.3/v1")
    assert pooled("https://example.com/v1", proxies=False)  # the http target, which goes by no proxy


INTERRUPTED = """
import asyncio, sys
from evalgate.models.transport import KeepAlivePool

async def main(port):
    pool = KeepAlivePool()
    head = f"POST / HTTP/1.1\\r\\nHost: 127.0.0.1:{port}\\r\\nContent-Length: 0\\r\\n\\r\\n".encode()
    calls = [asyncio.ensure_future(pool.exchange("127.0.0.1", port, head, {"read": 30})) for _ in range(40)]
    await asyncio.sleep(0.5)
    for c in calls:
        c.cancel()
    await asyncio.gather(*calls, return_exceptions=True)
    await pool.aclose()

asyncio.run(main(int(sys.argv[1])))
import gc; gc.collect()
print("closed")
"""


def test_calls_cancelled_in_flight_end_before_the_pool_closes(tmp_path: Path) -> None:
    """Ctrl-C with calls in flight: each is cancelled and ends on the I/O loop before it stops; none is left
    pending for the interpreter to complain about."""
    script = write(tmp_path / "interrupted.py", INTERRUPTED)
    with scripted(lambda n, _: None) as server:  # reads each request, never answers
        server.answer = lambda n, _: (asyncio.run_coroutine_threadsafe(asyncio.sleep(0), server.loop), b"")[1]
        out = subprocess.run([sys.executable, str(script), str(server.port)], capture_output=True, text=True,
                             timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "closed", out
    assert "destroyed but it is pending" not in out.stderr, out.stderr[-2000:]
