"""The model client against a real OpenAI-compatible server on 127.0.0.1: posted to directly (http://), and through the real
openai client (EVALGATE_HTTP_TRANSPORT=default, as https:// endpoints are)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from evalgate.errors import UsageError
from evalgate.models import ModelClient, ModelError, ModelRequest, ModelResponse, ResponseCache

from conftest import serving


class FakeOpenAI(BaseHTTPRequestHandler):
    """Speaks /v1/chat/completions; a script of failures is consumed per request."""

    script: list[tuple[int, dict[str, str]]] = []
    requests: list[dict[str, Any]] = []
    auth: list[str | None] = []
    in_flight = 0
    max_in_flight = 0
    delay = 0.0
    lock = threading.Lock()

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        cls = FakeOpenAI
        with cls.lock:
            cls.requests.append(body)
            cls.auth.append(self.headers.get("Authorization"))
            step = cls.script.pop(0) if cls.script else (200, {})
            cls.in_flight += 1
            cls.max_in_flight = max(cls.max_in_flight, cls.in_flight)
        time.sleep(cls.delay)
        with cls.lock:  # before answering: the client may send its next request right after
            cls.in_flight -= 1
        status, headers = step
        if status == 0:  # hang longer than the client waits
            time.sleep(3)
            status = 200
        if status == -1:  # malformed JSON with a 200
            status, payload = 200, b'{"id": "c1", "choices": [tru'
        elif status == -2:  # valid JSON, not a chat completion: the body the script gives
            status, payload = 200, headers.pop("body").encode()
        elif status != 200:
            payload = json.dumps({"error": {"message": f"scripted {status}", "type": "x"}}).encode()
        else:
            text = "echo: " + body["messages"][-1]["content"]
            payload = json.dumps({
                "id": "c1", "object": "chat.completion", "created": 0, "model": body["model"],
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}}).encode()
        try:
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting (a timeout's test): no traceback
            pass  # printed seconds later into another test's captured stderr

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server():
    FakeOpenAI.script, FakeOpenAI.requests, FakeOpenAI.auth = [], [], []
    FakeOpenAI.max_in_flight, FakeOpenAI.delay = 0, 0.0
    with serving(FakeOpenAI) as url:
        yield url


def _ask(text: str, repeat: int = 0) -> ModelRequest:
    return ModelRequest("tiny-model", [{"role": "user", "content": text}], {"temperature": 0}, repeat)


def test_answer_usage_and_api_key_from_the_environment(server: str, monkeypatch) -> None:
    monkeypatch.setenv("TEST_MODEL_KEY", "sk-test-456")

    async def go():
        client = ModelClient(server, api_key_env="TEST_MODEL_KEY")
        try:
            return await client.complete(_ask("hello"))
        finally:
            await client.close()

    r = asyncio.run(go())
    assert (r.text, r.model, r.input_tokens, r.output_tokens, r.attempts) == ("echo: hello", "tiny-model", 11, 3, 1)
    assert FakeOpenAI.auth == ["Bearer sk-test-456"] and FakeOpenAI.requests[0]["temperature"] == 0


def test_missing_api_key_variable_is_a_usage_error(server: str) -> None:
    with pytest.raises(UsageError, match="NO_SUCH_KEY_VAR"):
        ModelClient(server, api_key_env="NO_SUCH_KEY_VAR")


def test_retries_429_and_5xx_honouring_retry_after(server: str) -> None:
    FakeOpenAI.script = [(429, {"Retry-After": "0.3"}), (503, {}), (200, {})]

    async def go():
        client = ModelClient(server, backoff_s=0.01, seed=1)
        start = time.perf_counter()
        try:
            return await client.complete(_ask("x")), time.perf_counter() - start
        finally:
            await client.close()

    r, took = asyncio.run(go())
    assert r.attempts == 3 and r.text == "echo: x"
    assert took >= 0.3  # waited as long as the server asked


def test_final_failure_and_bad_requests_are_model_errors(server: str) -> None:
    FakeOpenAI.script = [(500, {})] * 3

    async def go(request: ModelRequest, **kw):
        client = ModelClient(server, backoff_s=0.01, **kw)
        try:
            return await client.complete(request)
        finally:
            await client.close()

    with pytest.raises(ModelError, match=r"HTTP 500: .*scripted 500.* \(after 3 attempts\)"):
        asyncio.run(go(_ask("x"), max_retries=2))
    FakeOpenAI.script = [(400, {})]
    with pytest.raises(ModelError, match="HTTP 400"):
        asyncio.run(go(_ask("y"), max_retries=5))
    assert len(FakeOpenAI.requests) == 4  # the 400 was not retried
    FakeOpenAI.script = [(0, {})]
    with pytest.raises(ModelError, match=r"timed out after 0.5s \(after 1 attempts\)"):
        asyncio.run(go(_ask("z"), max_retries=0, timeout_s=0.5))


def test_concurrency_is_bounded_across_callers(server: str) -> None:
    FakeOpenAI.delay = 0.1

    async def go():
        client = ModelClient(server, concurrency=3)
        try:
            return await asyncio.gather(*(client.complete(_ask(f"q{i}")) for i in range(10)))
        finally:
            await client.close()

    answers = asyncio.run(go())
    assert [a.text for a in answers] == [f"echo: q{i}" for i in range(10)]
    assert FakeOpenAI.max_in_flight == 3


def test_cache_makes_no_call_on_a_warm_rerun_but_repeats_get_fresh_answers(server: str, tmp_path: Path) -> None:
    async def go(cache: ResponseCache):
        client = ModelClient(server, cache=cache)
        try:
            return [await client.complete(_ask("same", repeat=r)) for r in (0, 1, 0)], client.calls
        finally:
            await client.close()

    cache = ResponseCache(tmp_path / "cache.sqlite")
    answers, calls = asyncio.run(go(cache))
    assert calls == 2 and [a.cached for a in answers] == [False, False, True]
    cache.close()
    warm = ResponseCache(tmp_path / "cache.sqlite")
    answers, calls = asyncio.run(go(warm))
    assert calls == 0 and all(a.cached for a in answers) and answers[0].text == "echo: same"
    assert warm.stats()["entries"] == 2
    exported = tmp_path / "cache.jsonl"
    assert warm.export(exported) == 2
    fresh = ResponseCache(tmp_path / "other.sqlite")
    assert fresh.load(exported) == 2 and fresh.stats()["entries"] == 2
    assert warm.clear() == 2 and warm.stats()["entries"] == 0


def test_cache_commands(server: str, tmp_path: Path) -> None:
    from conftest import run_cli_in_process

    path = tmp_path / "c.sqlite"
    cache = ResponseCache(path)

    async def go():
        client = ModelClient(server, cache=cache)
        try:
            await client.complete(_ask("a"))
        finally:
            await client.close()

    asyncio.run(go())
    cache.close()
    stats = run_cli_in_process("cache", "stats", "--cache", str(path), "--json", cwd=tmp_path).json()
    assert stats["entries"] == 1 and stats["by_model"] == {"tiny-model": 1}
    assert run_cli_in_process("cache", "export", str(tmp_path / "c.jsonl"), "--cache", str(path), cwd=tmp_path).code == 0
    assert json.loads((tmp_path / "c.jsonl").read_text())["response"]["text"] == "echo: a"
    r = run_cli_in_process("cache", "clear", "--cache", str(path), cwd=tmp_path)
    assert r.code == 0 and "deleted 1 response(s)" in r.out


def test_cache_modes_and_offline(server: str, tmp_path: Path) -> None:
    from evalgate.models import CacheMiss

    cache = ResponseCache(tmp_path / "cache.sqlite")

    async def go(mode: str, offline: bool = False) -> tuple[ModelResponse, int]:
        client = ModelClient(server, cache=cache, cache_mode=mode, offline=offline)
        try:
            return await client.complete(_ask("m")), client.calls
        finally:
            await client.close()

    with pytest.raises(CacheMiss, match="offline and no cached answer for model tiny-model"):
        asyncio.run(go("use", offline=True))
    assert len(FakeOpenAI.requests) == 0
    assert asyncio.run(go("off"))[1] == 1 and cache.stats()["entries"] == 0  # off: neither read nor written
    assert asyncio.run(go("use"))[1] == 1 and cache.stats()["entries"] == 1
    answer, calls = asyncio.run(go("use", offline=True))
    assert calls == 0 and answer.cached
    answer, calls = asyncio.run(go("refresh"))  # refresh: asks again and overwrites
    assert calls == 1 and not answer.cached and len(FakeOpenAI.requests) == 3
    with pytest.raises(UsageError, match="unknown cache mode"):
        ModelClient(server, cache_mode="sometimes")


@pytest.mark.parametrize("body", ['{"foo": 1}', '{"choices": null}', '{"choices": []}', '{"choices": [{"message": null}]}',
                                  '{"choices": [{"message": {"role": "assistant", "content": null}}]}'])
def test_an_answer_that_is_not_a_completion_is_an_error_and_never_cached(server: str, tmp_path: Path, body: str) -> None:
    """A 200 whose body is not an answer is an infrastructure fault, not an empty answer to score (or to cache)."""
    from evalgate.models import ResponseCache

    FakeOpenAI.script = [(-2, {"body": body}), (-2, {"body": body})]
    cache = ResponseCache(tmp_path / "c.sqlite")

    async def go():
        client = ModelClient(server, backoff_s=0.01, max_retries=1, cache=cache)
        try:
            return await client.complete(_ask("x"))
        finally:
            await client.close()

    with pytest.raises(ModelError, match=r"malformed response .*\(after 2 attempts\)"):
        asyncio.run(go())
    assert cache.stats()["entries"] == 0
    assert asyncio.run(go()).text == "echo: x"  # the next, proper answer is taken (and only it is cached)
    assert cache.stats()["entries"] == 1


def test_token_counts_that_are_not_numbers_are_left_out(server: str) -> None:
    FakeOpenAI.script = [(-2, {"body": json.dumps({"model": "m", "usage": {"prompt_tokens": "11", "completion_tokens": -3},
                                                    "choices": [{"message": {"content": "hi"}}]})})]

    async def go():
        client = ModelClient(server)
        try:
            return await client.complete(_ask("x"))
        finally:
            await client.close()

    answer = asyncio.run(go())
    assert (answer.text, answer.input_tokens, answer.output_tokens) == ("hi", None, None)


def test_malformed_json_is_a_model_error_after_retries(server: str) -> None:
    FakeOpenAI.script = [(-1, {}), (-1, {})]

    async def go():
        client = ModelClient(server, backoff_s=0.01, max_retries=1)
        try:
            return await client.complete(_ask("x"))
        finally:
            await client.close()

    with pytest.raises(ModelError, match=r"malformed response .*\(after 2 attempts\)"):
        asyncio.run(go())
    assert len(FakeOpenAI.requests) == 2


class KeepAliveOpenAI(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive; answers chunked when the message says so, closes when it says so."""

    protocol_version = "HTTP/1.1"
    connections: set[int] = set()

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        KeepAliveOpenAI.connections.add(self.client_address[1])  # one source port per connection
        text = body["messages"][-1]["content"]
        payload = json.dumps({"id": "c", "object": "chat.completion", "created": 0, "model": body["model"],
                              "choices": [{"index": 0, "message": {"role": "assistant", "content": "echo: " + text}}],
                              "usage": {"prompt_tokens": 2, "completion_tokens": 2}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if "close" in text:
            self.send_header("Connection", "close")
            self.close_connection = True
        if "chunked" in text:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (payload[:10], payload[10:]):
                self.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


def test_plain_http_endpoints_reuse_connections_and_read_chunked_answers() -> None:
    KeepAliveOpenAI.connections = set()

    async def go(url: str) -> list[str]:
        client = ModelClient(url)
        try:
            texts = []
            for text in ("a", "b chunked", "c", "d close", "e", "f"):
                texts.append((await client.complete(_ask(text))).text)
            return texts
        finally:
            await client.close()

    with serving(KeepAliveOpenAI) as url:
        texts = asyncio.run(go(url))
    assert texts == ["echo: a", "echo: b chunked", "echo: c", "echo: d close", "echo: e", "echo: f"]
    assert len(KeepAliveOpenAI.connections) == 2  # one until the server closed it, one after


def test_the_small_transport_can_be_turned_off(server: str, monkeypatch) -> None:
    from evalgate.models.transport import http_client_for

    for proxy in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    assert http_client_for("http://127.0.0.1:9/v1", 5) is not None
    assert http_client_for("https://api.example.com/v1", 5) is not None
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")  # https through a proxy: the openai client's transport
    assert http_client_for("https://api.example.com/v1", 5) is None
    monkeypatch.setenv("EVALGATE_HTTP_TRANSPORT", "default")
    assert http_client_for("http://127.0.0.1:9/v1", 5) is None

    async def go():  # the openai client's own transport answers the same
        client = ModelClient(server)
        try:
            return await client.complete(_ask("plain"))
        finally:
            await client.close()

    assert asyncio.run(go()).text == "echo: plain"


@pytest.mark.parametrize("script", [[(200, {})], [(500, {})] * 2, [(404, {})], [(-1, {})] * 2, [(-2, {"body": "null"})] * 2,
                                    [(429, {"Retry-After": "0.01"}), (200, {})]])
def test_an_http_endpoint_is_called_without_the_openai_package_and_answers_as_through_it(
        server: str, monkeypatch, script: list[tuple[int, dict[str, str]]]) -> None:
    """http:// endpoints are posted to directly: the same answers, errors and messages as the openai client's."""
    import os
    import subprocess
    import sys

    async def go():
        client = ModelClient(server, backoff_s=0.01, max_retries=1)
        try:
            r = await client.complete(_ask("same"))
            return (r.text, r.model, r.input_tokens, r.output_tokens, r.attempts)
        except ModelError as exc:
            return str(exc)
        finally:
            await client.close()

    got = {}
    for transport in ("keep-alive", "default"):  # default: the openai client and its own transport
        if transport == "default":
            monkeypatch.setenv("EVALGATE_HTTP_TRANSPORT", "default")
        FakeOpenAI.script, FakeOpenAI.auth = [(s, dict(h)) for s, h in script], []
        got[transport] = (asyncio.run(go()), FakeOpenAI.auth[:1])
    assert got["keep-alive"] == got["default"]
    code = (f"import asyncio, sys; from evalgate.models import ModelClient, ModelRequest\n"
            f"async def go():\n    c = ModelClient({server!r})\n"
            f"    try: return (await c.complete(ModelRequest('m', [{{'role': 'user', 'content': 'x'}}], {{}}))).text\n"
            f"    finally: await c.close()\n"
            f"assert asyncio.run(go()) == 'echo: x'; assert 'openai' not in sys.modules, 'openai imported'")
    FakeOpenAI.script = []
    env = {k: v for k, v in os.environ.items() if k != "EVALGATE_HTTP_TRANSPORT"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
