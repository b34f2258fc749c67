"""Honest latency: what the store keeps for a turn is the system's time, not the time evalgate's own event loop
was busy when the answer had arrived."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from conftest import ModelServer, query, serving, write

from evalgate import Score

SLOW_S = 0.25
"""The server's delay for the turn whose latency is checked."""
BURN_S = 0.6
"""How long a scorer of the other turn keeps the event loop busy, from about 10 ms in."""


class DelayedModel(ModelServer):
    """The test model server with a known delay: SLOW_S for a message with 'slow' in it, 10 ms otherwise."""

    requests: list[dict[str, Any]] = []

    def text(self, body: dict[str, Any]) -> str:
        last = body["messages"][-1]["content"]
        time.sleep(SLOW_S if "slow" in last else 0.01)
        return "echo: " + last


def busy_loop(seconds: float = BURN_S) -> Any:
    """A scorer that keeps the event loop busy (CPU, no await) for ``seconds``: a slow scorer of another turn."""

    async def check(ctx: Any) -> Score:
        end = time.perf_counter() + seconds
        n = 0
        while time.perf_counter() < end:
            n += 1
        return Score(True, n, "burnt the loop")

    return check


def _run_beside_a_busy_loop(tmp_path: Path, target: str) -> Path:
    """Two cases at once against ``target`` (YAML): ``fast``, whose scorer then holds the loop for BURN_S, and
    ``slow``, whose answer comes while it does. Returns the store."""
    from evalgate.api import run
    from evalgate.config import find_config
    from evalgate.runner import RunOptions

    write(tmp_path / "pyproject.toml", '[tool.evalgate]\nsuites = "suites"\n')
    suite = write(tmp_path / "suites" / "latency.yaml", f"""
        name: latency
        scorers:
          busy_loop: {{use: "test_latency:busy_loop", args: {{seconds: {BURN_S}}}}}
        target: {target}
        cases:
          - {{id: fast, input: fast one, expect: {{busy_loop: {{}}}}}}
          - {{id: slow, input: slow one, expect: {{output: {{contains: [echo]}}}}}}
    """)
    db = tmp_path / "store.duckdb"
    report = run([str(suite)], config=find_config(tmp_path), store_path=db,
                 options=RunOptions(concurrency=2, cache_mode="off"))
    assert report.exit_code == 0, report
    return db


def _latency(name: str) -> str:
    """The SQL for a trace's ``latency_ms.NAME``."""
    return f"CAST(json_extract(trace, '$.latency_ms.{name}') AS DOUBLE)"


def _by_case(db: Path, *columns: str) -> dict[str, tuple[Any, ...]]:
    """Each case's turn as ``columns`` (SQL over the turns table)."""
    return {r[0]: r[1:] for r in query(db, f"SELECT case_id, {', '.join(columns)} FROM turns")}


def test_stored_latency_is_the_servers_delay_not_the_event_loops_lag(tmp_path: Path) -> None:
    with serving(DelayedModel) as url:
        pipeline = (f'{{pipeline: {{endpoint: {{base_url: "{url}", max_retries: 0}}, router: {{fallback: answer}}, '
                    'routes: {answer: {model: {name: tiny-model}}}}}')
        db = _run_beside_a_busy_loop(tmp_path, pipeline)
    by_case = _by_case(db, "elapsed_ms", _latency("model"), _latency("total"))
    elapsed, model, total = by_case["slow"]
    # the slow answer arrives at 250 ms while the fast turn's scorer holds the loop until about 610 ms: a time taken
    # when the waiting coroutine resumes says about 610; the bytes' own arrival says 250 (the margin, 120 ms each
    # side, is many times a loaded machine's scheduling noise)
    limit = SLOW_S * 1000 + 120
    assert SLOW_S * 1000 - 5 <= elapsed < limit, by_case
    assert SLOW_S * 1000 - 5 <= model < limit and total < limit, by_case


COMMAND = """
import json, sys, time
for line in sys.stdin:
    req = json.loads(line)
    time.sleep(0.25 if "slow" in req["input"] else 0.01)
    print(json.dumps({"session_id": req["session_id"], "turn": req["turn"], "output": "echo: " + req["input"]}),
          flush=True)
"""


def test_a_command_target_s_time_is_when_its_answer_arrived_not_when_the_loop_got_to_it(tmp_path: Path) -> None:
    write(tmp_path / "answer.py", COMMAND)
    db = _run_beside_a_busy_loop(tmp_path, f'{{command: ["{sys.executable}", "answer.py"]}}')
    by_case = {r[0]: r[1] for r in query(db, "SELECT case_id, elapsed_ms FROM turns")}
    # the slow answer is written at about 250 ms, while the fast turn's scorer holds the loop until about 610 ms
    assert SLOW_S * 1000 - 5 <= by_case["slow"] < SLOW_S * 1000 + 120, by_case


def _service_api(url: str, extra_headers: str = "") -> str:
    """The http target on the model server's own API (a body template, a response mapping)."""
    return (f'{{http: "{url}/chat/completions", {extra_headers}body: {{model: tiny-model, messages: '
            '[{role: user, content: "{{ input }}"}]}, response: {output: "choices[0].message.content"}}')


def test_an_http_target_s_time_is_its_exchange_on_the_wire(tmp_path: Path) -> None:
    """A team's service on plain http: its time is the request's bytes out to the answer's bytes in, not when the
    busy loop got back to the call."""
    with serving(DelayedModel) as url:
        db = _run_beside_a_busy_loop(tmp_path, _service_api(url))
    by_case = {r[0]: r[1] for r in query(db, "SELECT case_id, elapsed_ms FROM turns")}
    assert SLOW_S * 1000 - 5 <= by_case["slow"] < SLOW_S * 1000 + 120, by_case


def test_a_header_template_cannot_add_a_header(tmp_path: Path) -> None:
    """A header's template filled with a line break fails that turn; nothing reaches the service as a header."""
    from evalgate.api import run
    from evalgate.config import find_config
    from evalgate.runner import RunOptions

    class Recording(DelayedModel):
        requests: list[dict[str, Any]] = []

        def text(self, body: dict[str, Any]) -> str:
            return "echo: " + body["messages"][-1]["content"]

    with serving(Recording) as url:
        write(tmp_path / "pyproject.toml", '[tool.evalgate]\nsuites = "suites"\n')
        target = _service_api(url, 'headers: {X-Note: "{{ input }}"}, ')
        suite = write(tmp_path / "suites" / "inject.yaml", f"""
            name: inject
            target: {target}
            cases:
              - {{id: plain, input: hello}}
              - {{id: sneaky, input: "hi\\r\\nX-Evil: 1"}}
        """)
        db = tmp_path / "store.duckdb"
        report = run([str(suite)], config=find_config(tmp_path), store_path=db, options=RunOptions(cache_mode="off"))
    errors = dict(query(db, "SELECT case_id, error FROM turns"))
    assert errors["plain"] is None
    assert errors["sneaky"] is not None and "header" in errors["sneaky"].lower(), errors
    assert report.exit_code == 3
    assert len(Recording.requests) == 1 and "x-evil" not in Recording.requests[0]["headers"]


def switch_interval() -> Any:
    """A scorer that notes the interpreter's switch interval while the run is scored."""

    async def check(ctx: Any) -> Score:
        return Score(True, sys.getswitchinterval(), "noted")

    return check


def test_the_scoring_thread_yields_the_gil_to_the_io_thread_within_half_a_millisecond(tmp_path: Path) -> None:
    """While the model I/O thread runs, the thread that scores holds the GIL at most SWITCH_INTERVAL_S at a time
    when the I/O thread asks for it (CPython's 5 ms put up to 5 ms of the loop's work into each timestamp at 256
    calls in flight); the interval is the process's own again once the run is over."""
    from evalgate.api import run
    from evalgate.config import find_config
    from evalgate.models.transport import SWITCH_INTERVAL_S
    from evalgate.runner import RunOptions

    import threading

    before = sys.getswitchinterval()
    sys.setswitchinterval(0.005)  # CPython's default
    others = [t for t in threading.enumerate() if t.name == "evalgate-model-io"]  # another test's client, unclosed
    write(tmp_path / "pyproject.toml", '[tool.evalgate]\nsuites = "suites"\n')
    with serving(DelayedModel) as url:
        suite = write(tmp_path / "suites" / "gil.yaml", f"""
            name: gil
            scorers:
              switch_interval: {{use: "test_latency:switch_interval"}}
            target: {_service_api(url)}
            cases:
              - {{id: one, input: hello, expect: {{switch_interval: {{}}}}}}
        """)
        db = tmp_path / "store.duckdb"
        report = run([str(suite)], config=find_config(tmp_path), store_path=db, options=RunOptions(cache_mode="off"))
    assert report.exit_code == 0, report
    noted = query(db, "SELECT value FROM scores WHERE scorer = 'switch_interval'")
    try:
        assert noted == [(SWITCH_INTERVAL_S,)], noted
        if not others:  # the last I/O thread has stopped: the process's own interval again
            assert sys.getswitchinterval() == 0.005
    finally:
        sys.setswitchinterval(before)


def test_a_switch_interval_set_shorter_by_the_process_is_kept(tmp_path: Path) -> None:
    from evalgate.models.transport import KeepAlivePool

    before = sys.getswitchinterval()
    sys.setswitchinterval(0.0001)
    shorter = sys.getswitchinterval()  # as the interpreter keeps it
    try:
        with serving(DelayedModel) as url:
            port = int(url.split(":")[-1].split("/")[0])

            async def one() -> int:
                pool = KeepAlivePool()
                body = b'{"model": "tiny-model", "messages": [{"role": "user", "content": "hi"}]}'
                head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
                status, _, _ = await pool.exchange("127.0.0.1", port, head + body, {"read": 10, "connect": 10})
                assert sys.getswitchinterval() == shorter
                await pool.aclose()
                return status

            import asyncio

            assert asyncio.run(one()) == 200
        assert sys.getswitchinterval() == shorter
    finally:
        sys.setswitchinterval(before)


class StreamingModel(DelayedModel):
    """A service that streams its answer as server-sent events: the first text at 50 ms, the last at SLOW_S (for
    'slow'), each event a chunk of its own."""

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        import json as _json

        body = _json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        text = body["messages"][-1]["content"]
        slow = "slow" in text
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def event(data: str) -> None:
            raw = f"data: {data}\n\n".encode()
            self.wfile.write(f"{len(raw):x}\r\n".encode() + raw + b"\r\n")
            self.wfile.flush()

        time.sleep(0.05 if slow else 0.005)
        event(_json.dumps({"text": "echo: "}))
        time.sleep(SLOW_S - 0.05 if slow else 0.005)
        event(_json.dumps({"text": text}))
        event("[DONE]")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def test_a_streamed_answer_s_first_text_is_timed_where_its_bytes_arrived(tmp_path: Path) -> None:
    """The first text event arrives at 50 ms and the last at 250 ms while a scorer holds the loop until about 610:
    the stored time to the first token is about 50, the turn's about 250 (as the loop saw them: about 610 each)."""
    with serving(StreamingModel) as url:
        target = (f'{{http: "{url}/chat/completions", body: {{model: tiny-model, messages: '
                  '[{role: user, content: "{{ input }}"}]}, response: {delta: "text"}}')
        db = _run_beside_a_busy_loop(tmp_path, target)
    by_case = _by_case(db, "output", "elapsed_ms", _latency("first_token"))
    output, elapsed, first = by_case["slow"]
    assert output == "echo: slow one", by_case
    assert 45 <= first < 50 + 120, by_case
    assert SLOW_S * 1000 - 5 <= elapsed < SLOW_S * 1000 + 120, by_case


TEAM_APP = """
import asyncio, functools, os, time

from openai import AsyncOpenAI

client = AsyncOpenAI(base_url=os.environ["TEAM_APP_URL"], api_key="team-key", max_retries=0)  # once, at import


async def answer(request):
    reply = await client.chat.completions.create(
        model="tiny-model", messages=[{"role": "user", "content": request["input"]}])
    return reply.choices[0].message.content


def traced(fn):  # a tracing decorator that hands back its coroutine from a plain function, without functools.wraps
    def wrapper(request):
        return fn(request)
    return wrapper


answer_traced = traced(answer)


class Answerer:
    async def __call__(self, request):
        return await answer(request)


answer_object = Answerer()


async def stuck(request):
    if "stuck" in request["input"]:
        time.sleep(2.0)  # a blocking call in an async function: it holds its own loop, not the run's
    return "ok"
"""


def _team_app(tmp_path: Path, url: str, monkeypatch: Any) -> None:
    write(tmp_path / "team_app.py", TEAM_APP)
    monkeypatch.setenv("TEAM_APP_URL", url)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("team_app", None)


def test_an_async_python_target_s_time_is_its_own_await_not_the_run_loop_s_lag(tmp_path: Path, monkeypatch: Any) -> None:
    """A team's async function (the openai package's AsyncOpenAI client made at import) runs on a loop of its own:
    its answer, arriving while a scorer of the other turn holds the run's loop, is timed when it arrived."""
    with serving(DelayedModel) as url:
        _team_app(tmp_path, url, monkeypatch)
        db = _run_beside_a_busy_loop(tmp_path, '{python: "team_app:answer"}')
    by_case = _by_case(db, "elapsed_ms", "output")
    # awaited on the run's loop, the slow answer (at 250 ms) resumed when the busy scorer let go, at about 610 ms
    assert SLOW_S * 1000 - 5 <= by_case["slow"][0] < SLOW_S * 1000 + 120, by_case
    assert by_case["slow"][1] == "echo: slow one"


def test_a_client_made_at_import_serves_every_run_and_suite_of_the_process(tmp_path: Path, monkeypatch: Any) -> None:
    """Two runs in one process (a test session), then one run of two suites: the module's client, whose connections
    belong to the loop that first used them, keeps working, and a decorated or callable-object async target is
    awaited, not stored as a coroutine."""
    from evalgate.api import run
    from evalgate.config import find_config
    from evalgate.runner import RunOptions

    with serving(DelayedModel) as url:
        _team_app(tmp_path, url, monkeypatch)
        write(tmp_path / "pyproject.toml", '[tool.evalgate]\nsuites = "suites"\n')
        suites = [write(tmp_path / "suites" / f"{name}.yaml", f"""
            name: {name}
            target: {{python: "team_app:{name}"}}
            cases:
              - {{id: a, input: first, expect: {{output: {{contains: ["echo: first"]}}}}}}
              - {{id: b, input: second, expect: {{output: {{contains: ["echo: second"]}}}}}}
        """) for name in ("answer", "answer_traced", "answer_object")]
        db = tmp_path / "store.duckdb"
        for paths in ([suites[0]], [suites[0]], suites):
            report = run([str(p) for p in paths], config=find_config(tmp_path), store_path=db,
                         options=RunOptions(concurrency=2, cache_mode="off"))
            assert report.exit_code == 0, [(s.suite, s.verdict) for s in report.suites]
    rows = query(db, "SELECT case_id, output, error FROM turns ORDER BY case_id")
    assert len(rows) == 2 * 5 and all(error is None for _, _, error in rows), rows
    assert {output for _, output, _ in rows} == {"echo: first", "echo: second"}


def test_an_async_target_that_blocks_its_loop_times_out_on_the_run_s(tmp_path: Path, monkeypatch: Any) -> None:
    """A blocking call inside an async function holds the target's loop, not the run's: the turn fails at its
    timeout, while the call is still blocked (on the run's loop it ran to its end and passed), and the run ends
    once the call has (the target waits for the calls it gave up on, at most targets.python.DRAIN_S)."""
    from evalgate.api import run
    from evalgate.config import find_config
    from evalgate.runner import RunOptions

    _team_app(tmp_path, "http://127.0.0.1:9/v1", monkeypatch)  # no call reaches the client
    write(tmp_path / "pyproject.toml", '[tool.evalgate]\nsuites = "suites"\n')
    suite = write(tmp_path / "suites" / "stuck.yaml", """
        name: stuck
        target: {python: "team_app:stuck"}
        cases:
          - {id: stuck, input: stuck here}
    """)
    started = time.perf_counter()
    report = run([str(suite)], config=find_config(tmp_path), store_path=tmp_path / "store.duckdb",
                 options=RunOptions(cache_mode="off", timeout_s=0.3))
    took = time.perf_counter() - started
    [(error,)] = query(tmp_path / "store.duckdb", "SELECT error FROM turns")
    assert error is not None and "timed out after 0.3s" in error, error
    assert report.exit_code == 3
    assert took < 4.0, took  # at the blocked call's end (2 s), not at the drain's limit (5 s)
