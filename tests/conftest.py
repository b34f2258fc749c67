"""Shared fixtures: a real project folder, the real CLI in a subprocess, a real store."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent

BOT = '''
import os, re, time, asyncio

def respond(req):
    text = req["input"].lower()
    state = dict(req["state"])
    if text.startswith("hold "):  # wait until the test releases the run (a file appears)
        while not os.path.exists(req["input"].split()[1]):
            time.sleep(0.02)
    if "crash" in text:
        raise RuntimeError("the bot fell over")
    if "slow" in text:
        time.sleep(float(text.split()[-1]))
    route = "refunds" if ("refund" in text or state.get("workflow") == "refunds") else "smalltalk"
    m = re.findall(r"\\b(\\d{4})\\b", text)
    if m:
        state["order_id"] = m[0] if "not" not in text else m[0]
    state["workflow"] = route
    ctx = [{"id": "kb/refund-policy", "score": 0.9}] if route == "refunds" else []
    return {"route": {"name": route, "confidence": 0.9, "reason": "keyword"},
            "context": ctx, "output": f"Okay, order {state.get('order_id', 'none')}.", "state": state,
            "latency_ms": {"total": 12.5, "route": 1}}

async def respond_async(req):
    await asyncio.sleep(0)
    return respond(req)
'''

SUITE = '''
name: demo
target: {python: bot:respond}
cases:
  - id: refund-change
    tags: [refunds, critical]
    user: {id: u-1, groups: [customer]}
    turns:
      - input: I want a refund for order 5512
        expect: {route: refunds, state: {order_id: "5512"}}
      - input: sorry, it's 5521 not 5512
        expect:
          route: refunds
          state: {order_id: "5521"}
          output: {contains: ["5521"], not_contains: ["5512"]}
          context: {must_include: [kb/refund-policy]}
  - id: hello
    tags: [smalltalk]
    input: hello there
    expect: {route: smalltalk}
'''


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A small project: pyproject with [tool.evalgate], a bot, one passing suite."""
    write(tmp_path / "pyproject.toml", '[tool.evalgate]\nsuites = "suites"\nstore = ".evalgate/evalgate.duckdb"\n')
    write(tmp_path / "bot.py", BOT)
    write(tmp_path / "suites" / "demo.yaml", SUITE)
    return tmp_path


class CLIResult:
    def __init__(self, proc: subprocess.CompletedProcess[str]):
        self.code = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr

    def json(self) -> Any:
        return json.loads(self.out)

    def __repr__(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.out}\n--- stderr\n{self.err}"


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120) -> CLIResult:
    """The real command line, as a user runs it, in a subprocess."""
    full_env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", **(env or {})}
    full_env.pop("EVALGATE_DB", None)
    if env and "EVALGATE_DB" in env:
        full_env["EVALGATE_DB"] = env["EVALGATE_DB"]
    proc = subprocess.run([sys.executable, "-m", "evalgate", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
    return CLIResult(proc)


class _InProcess:
    """What ``subprocess.run`` would have given: the exit code and both streams."""

    def __init__(self, code: int, out: str, err: str):
        self.returncode, self.stdout, self.stderr = code, out, err


_KEEP_ROOTS = (str(Path(sys.prefix).resolve()), str(Path(sys.base_prefix).resolve()), str(REPO / "evalgate"))


def run_cli_in_process(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120) -> CLIResult:
    """The same command line through ``evalgate.cli.main`` in this process: no interpreter start-up, same code.

    The working directory, environment and ``sys.path`` are put back afterwards, and the modules of the
    user's code it imported (the project's bot, scorers, the bundled assistant) are forgotten, so the next
    test imports its own.
    """
    import io
    from contextlib import redirect_stderr, redirect_stdout

    from evalgate import cli as cli_module
    from evalgate import scorers

    saved_env, saved_cwd, saved_path = dict(os.environ), os.getcwd(), list(sys.path)
    before = set(sys.modules)
    out, err = io.StringIO(), io.StringIO()
    code = 0
    try:
        os.environ.pop("EVALGATE_DB", None)
        os.environ.update({"NO_COLOR": "1", "COLUMNS": "200", **(env or {})})
        os.chdir(cwd)
        with redirect_stdout(out), redirect_stderr(err):
            try:
                cli_module.main(list(args))
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        sys.path[:] = saved_path
        for name in set(sys.modules) - before:
            origin = str(getattr(sys.modules.get(name), "__file__", None) or "")
            if origin and not origin.startswith(_KEEP_ROOTS):
                del sys.modules[name]
        for name, info in list(scorers._registry.items()):  # scorers the forgotten modules registered
            if getattr(info.factory, "__module__", "evalgate") not in sys.modules:
                del scorers._registry[name]
    return CLIResult(_InProcess(code, out.getvalue(), err.getvalue()))  # type: ignore[arg-type]


def _loop_running() -> bool:
    """An event loop runs in this thread (Playwright's, in the browser tests): asyncio.run cannot nest in it."""
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


@pytest.fixture
def cli(project: Path):
    """Run evalgate in the project folder: in this process, or in a subprocess with ``subprocess=True``.

    A subprocess is what signals, locks held across processes, start-up and PYTHONPATH-installed plugins need.
    """

    def call(*args: str, subprocess: bool = False, **kw: Any) -> CLIResult:
        kw.setdefault("cwd", project)
        env = kw.get("env") or {}
        if subprocess or "PYTHONPATH" in env or os.environ.get("EVALGATE_TEST_SUBPROCESS") or _loop_running():
            return run_cli(*args, **kw)
        return run_cli_in_process(*args, **kw)

    return call


def query(db: Path, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    """Read the store with DuckDB, as a user with SQL would."""
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


@contextlib.contextmanager
def serving(handler: type[BaseHTTPRequestHandler], tls: tuple[Path, Path] | None = None) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 with ``handler``; yields its OpenAI-style base URL (…/v1). With ``tls`` (a
    certificate and its key, e.g. the ``certificate`` fixture's) it serves https."""
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if tls is not None:
        import ssl

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
        # each connection's handshake on its own handler thread, at its first read
        srv.socket = context.wrap_socket(srv.socket, server_side=True, do_handshake_on_connect=False)
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{srv.server_address[1]}/v1"
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made by openssl for this test session (trusted by nothing until a
    test names it in SSL_CERT_FILE)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "server.crt", folder / "server.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


SUPPORT_SERVICE = REPO / "tests" / "services" / "support_service.py"


@contextlib.contextmanager
def service_process(env: dict[str, str], script: Path = SUPPORT_SERVICE) -> Iterator[str]:
    """A service in its own process on 127.0.0.1 (it prints ``listening on PORT``); yields its base URL."""
    proc = subprocess.Popen([sys.executable, str(script)], env={**os.environ, **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("listening on "):
            raise RuntimeError(f"the service did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}")
        yield f"http://127.0.0.1:{int(line.split()[-1])}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class ModelServer(BaseHTTPRequestHandler):
    """An OpenAI-compatible chat-completions endpoint that answers from the prompt (its system message's fourth
    word and the user's last words), streamed when asked, counts every request and keeps the headers it received.

    A test's own server subclasses it and changes what it answers (``text``), what it keeps (``keep``), the model
    it names and the usage it reports."""

    protocol_version = "HTTP/1.1"
    requests: list[dict[str, Any]] = []
    model_name = "local-model"
    lock = threading.Lock()

    def log_message(self, *args: Any) -> None:
        pass

    def text(self, body: dict[str, Any]) -> str:
        messages = body.get("messages") or []
        system = next((m["content"] for m in messages if m["role"] == "system"), "")
        last = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        return f"[{system.split()[3] if len(system.split()) > 3 else system}] about: {last}"

    def keep(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"path": self.path, "body": body, "headers": {k.lower(): v for k, v in self.headers.items()}}

    def usage(self, body: dict[str, Any], text: str) -> dict[str, int]:
        prompt = 10 * len(body.get("messages") or [])
        return {"prompt_tokens": prompt, "completion_tokens": len(text.split()),
                "total_tokens": prompt + len(text.split())}

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        with self.lock:
            type(self).requests.append(self.keep(body))
        text = self.text(body)
        if body.get("stream"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for word in text.split(" "):
                chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": self.model_name,
                         "choices": [{"index": 0, "delta": {"content": word + " "}, "finish_reason": None}]}
                self._chunk(f"data: {json.dumps(chunk)}\n\n")
            self._chunk("data: [DONE]\n\n")
            self.wfile.write(b"0\r\n\r\n")
            return
        answer = {"id": "c1", "object": "chat.completion", "created": 0, "model": self.model_name,
                  "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                  "usage": self.usage(body, text)}
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _chunk(self, text: str) -> None:
        data = text.encode()
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


@pytest.fixture
def model_server() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A real OpenAI-compatible model server on 127.0.0.1: (its base URL …/v1, the requests it received)."""
    handler = type("Model", (ModelServer,), {"requests": []})
    with serving(handler) as url:
        yield url, handler.requests
