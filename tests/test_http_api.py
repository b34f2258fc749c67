"""The http target meets a service's own API: request templates, a response mapping, streamed answers.

The service is a real process (tests/services/support_service.py) with its own API shape, the user in a header,
server-side sessions and its own openai calls to a real model server on 127.0.0.1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import query, service_process, write

TOKEN = "sk-support-0123456789abcdef"

TARGET = """
target:
  http: "{url}/v1/chat{stream}"
  headers:
    Authorization: "Bearer ${{SUPPORT_TOKEN}}"
    X-User-Id: "{{{{ user.id }}}}"
  body:
    conversation: "{{{{ session_id }}}}"
    text: "{{{{ input }}}}"
  response:
    output: {output}
    route: meta.workflow
    context: meta.sources
    state: session
    usage: "usage.{{input_tokens: prompt_tokens, output_tokens: completion_tokens}}"
    extra: {{turns: meta.turns}}
{delta}"""

CASES = """
cases:
  - id: refund
    user: {id: u-17, groups: [customer]}
    turns:
      - input: I want a refund for order 5512
        expect:
          route: billing
          state: {order_id: "5512"}
          context: {must_include: [refund-policy]}
          output: {contains: ["billing", "5512"]}
      - input: and how long does it take?
        expect:
          route: billing
          output: {contains: ["billing"]}
  - id: password
    input: I forgot my password
    expect: {route: account, output: {contains: [account]}}
"""


def suite(url: str, *, stream: bool = False) -> str:
    if stream:
        return TARGET.format(url=url, stream="/stream", output="reply.text", delta="    delta: text\n") + CASES
    return TARGET.format(url=url, stream="", output="reply.text", delta="") + CASES


@pytest.fixture
def service(model_server):
    url, requests = model_server
    with service_process({"OPENAI_BASE_URL": url, "SUPPORT_TOKEN": TOKEN}) as base:
        yield base, requests


def test_a_service_with_its_own_api_is_run_through_templates_and_a_mapping(cli, project: Path, service) -> None:
    base, requests = service
    write(project / "suites" / "demo.yaml", "name: support\n" + suite(base))
    r = cli("run", "--json", env={"SUPPORT_TOKEN": TOKEN})
    assert r.code == 0, r
    assert r.json()["suites"][0]["metrics"]["pass_rate"] == 1.0
    db = project / ".evalgate" / "evalgate.duckdb"
    rows = query(db, "SELECT case_id, turn, route, state, trace FROM turns ORDER BY case_id, turn")
    first = json.loads(rows[1][4])
    assert rows[1][2] == "billing" and json.loads(rows[1][3]) == {"order_id": "5512", "route": "billing"}
    assert first["usage"] == {"input_tokens": 20, "output_tokens": first["usage"]["output_tokens"]}
    assert first["context"] == [{"id": "refund-policy"}] and first["extra"]["turns"] == 1
    # the service kept the session itself: the second turn's prompt held the first turn
    second = json.loads(rows[2][4])
    assert second["extra"]["turns"] == 2
    assert sorted(len(q["body"]["messages"]) for q in requests) == [2, 2, 4]
    # the user reached the service in its header, the eval markers through to its model calls
    assert {q["headers"].get("x-evalgate-case") for q in requests} == {"refund", "password"}
    assert all(q["headers"]["traceparent"].split("-")[1] for q in requests)
    trace_ids = {json.loads(t[0])["evalgate_trace_id"] for t in query(db, "SELECT trace->'extra' FROM turns")}
    assert trace_ids == {q["headers"]["traceparent"].split("-")[1] for q in requests}
    dump = "\n".join(str(row) for table in ("runs", "cases", "turns", "scores")
                     for row in query(db, f"SELECT * FROM {table}"))
    assert TOKEN not in dump and TOKEN not in r.out + r.err


def test_a_streamed_answer_is_read_event_by_event_with_its_time_to_first_token(cli, project: Path, service) -> None:
    base, _ = service
    gate = "gate:\n  rules:\n    - {metric: first_token.p95, max: 60000}\n    - {metric: first_token.max, max: 0.001}\n"
    text = suite(base, stream=True).replace("    expect: {route: account,", "    expect: {budget: {first_token_ms: 60000}, route: account,")
    write(project / "suites" / "demo.yaml", "name: support\n" + gate + text)
    r = cli("run", "--json", env={"SUPPORT_TOKEN": TOKEN})
    assert r.code == 1, r  # the answers streamed, but none began within a microsecond
    s = r.json()["suites"][0]
    assert 0 < s["metrics"]["first_token.p50"] <= s["metrics"]["first_token.p95"] < 60000
    assert [rule["status"] for rule in s["verdict"]["rules"]] == ["pass", "fail"], s["verdict"]["rules"]
    db = project / ".evalgate" / "evalgate.duckdb"
    rows = query(db, "SELECT output, trace, elapsed_ms FROM turns WHERE case_id = 'refund' ORDER BY turn")
    output, trace, elapsed = rows[0][0], json.loads(rows[0][1]), rows[0][2]
    assert output.startswith("[billing] about: I want a refund for order 5512")
    assert trace["route"] == {"name": "billing"} and trace["state"]["order_id"] == "5512"
    assert 0 < trace["latency_ms"]["first_token"] <= elapsed


def test_a_wrong_token_echoed_by_the_service_is_redacted_everywhere(cli, project: Path, service) -> None:
    base, _ = service
    write(project / "suites" / "demo.yaml", "name: support\n" + suite(base))
    wrong = "sk-wrong-token-zyxwvutsrq"
    r = cli("run", env={"SUPPORT_TOKEN": wrong})
    assert r.code == 3, r
    db = project / ".evalgate" / "evalgate.duckdb"
    errors = [e for (e,) in query(db, "SELECT error FROM turns")]
    assert errors and all(e.startswith("HTTP 401 from ") and "[redacted]" in e for e in errors), errors
    dump = "\n".join(str(row) for table in ("runs", "cases", "turns") for row in query(db, f"SELECT * FROM {table}"))
    assert wrong not in dump and wrong not in r.out + r.err


def test_a_mapping_that_finds_no_output_names_its_expression(cli, project: Path, service) -> None:
    base, _ = service
    text = suite(base).replace("output: reply.text", "output: reply.txt")
    write(project / "suites" / "demo.yaml", "name: support\n" + text)
    r = cli("run", env={"SUPPORT_TOKEN": TOKEN})
    assert r.code == 3, r
    errors = {e for (e,) in query(project / ".evalgate" / "evalgate.duckdb", "SELECT error FROM turns")}
    assert len(errors) == 2 and all(e.startswith("response mapping output ('reply.txt') found no text") for e in errors)


@pytest.mark.parametrize(("old", "new", "expected"), [
    ("output: reply.text", "output: reply.[", "not a JMESPath expression"),
    ('X-User-Id: "{{ user.id }}"', 'X-User-Id: "{{ user.id "', "template syntax error"),
    ("    extra: {turns: meta.turns}", "    colour: meta.colour", "colour"),
])
def test_a_bad_template_or_expression_is_exit_2_at_its_line(cli, project: Path, old: str, new: str, expected: str) -> None:
    text = suite("http://127.0.0.1:9").replace(old, new)
    write(project / "suites" / "demo.yaml", "name: support\n" + text)
    r = cli("validate")
    assert r.code == 2, r
    assert expected in r.err and "demo.yaml:" in r.err, r.err


def test_an_undefined_template_variable_fails_the_turn_and_says_which(cli, project: Path, service) -> None:
    base, _ = service
    write(project / "suites" / "demo.yaml", "name: support\n" + suite(base).replace("{{ input }}", "{{ inptu }}"))
    r = cli("run", env={"SUPPORT_TOKEN": TOKEN})
    assert r.code == 3, r
    errors = {e for (e,) in query(project / ".evalgate" / "evalgate.duckdb", "SELECT error FROM turns")}
    assert errors == {"the http target's request template failed: UndefinedError: 'inptu' is undefined"}


def test_two_runs_in_a_row_do_not_share_the_service_s_sessions(cli, project: Path, service) -> None:
    base, requests = service
    write(project / "suites" / "demo.yaml", "name: support\n" + suite(base))
    for _ in range(2):
        r = cli("run", env={"SUPPORT_TOKEN": TOKEN})
        assert r.code == 0, r
    db = project / ".evalgate" / "evalgate.duckdb"
    turns = query(db, "SELECT trace->>'$.extra.turns' FROM turns WHERE case_id = 'refund' ORDER BY run_id, turn")
    assert [t[0] for t in turns] == ["1", "2", "1", "2"]  # the service counted each run's conversation from 1
    assert sorted(len(q["body"]["messages"]) for q in requests) == [2, 2, 2, 2, 4, 4]


def test_a_plain_text_answer_is_the_output(cli, project: Path, service) -> None:
    base, _ = service
    text = suite(base).replace("/v1/chat\"", "/v1/chat/text\"")
    text = text[:text.index("  response:")] + CASES.replace("route: billing\n", "").replace(
        "          state: {order_id: \"5512\"}\n          context: {must_include: [refund-policy]}\n", "").replace(
        "{route: account, ", "{")
    write(project / "suites" / "demo.yaml", "name: support\n" + text)
    r = cli("run", env={"SUPPORT_TOKEN": TOKEN})
    assert r.code == 0, r
    outputs = [o for (o,) in query(project / ".evalgate" / "evalgate.duckdb", "SELECT output FROM turns ORDER BY case_id")]
    assert outputs[0] == "[account] about: I forgot my password"


def test_the_service_s_own_spans_join_the_turns_whose_traceparent_they_continue(cli, project: Path, model_server,
                                                                                tmp_path: Path) -> None:
    pytest.importorskip("opentelemetry.sdk")
    url, requests = model_server
    exported = tmp_path / "service-spans.otlp.jsonl"
    with service_process({"OPENAI_BASE_URL": url, "SUPPORT_TOKEN": TOKEN, "SUPPORT_OTLP_FILE": str(exported)}) as base:
        write(project / "suites" / "demo.yaml", "name: support\n" + suite(base))
        r = cli("run", "--json", env={"SUPPORT_TOKEN": TOKEN})
        assert r.code == 0, r
        run_id = r.json()["suites"][0]["run_id"]
        # traffic the service served that was not evalgate's: its own trace, nothing to join
        import httpx

        httpx.post(f"{base}/v1/chat", json={"conversation": "prod-1", "text": "hello"},
                   headers={"Authorization": f"Bearer {TOKEN}", "X-User-Id": "u-9"}, timeout=10)
        import time

        deadline = time.monotonic() + 10  # a server span ends (and is exported) just after its answer is sent
        while len(exported.read_text().splitlines()) < 8 and time.monotonic() < deadline:
            time.sleep(0.02)
    r = cli("traces", "join", str(exported), "--json")
    assert r.code == 0, r
    info = r.json()
    assert (info["spans"], info["joined"], info["turns"], info["unmatched_traces"]) == (8, 6, 3, 1)
    assert info["runs"] == [run_id]
    story = cli("show", run_id, "refund", "--json").json()
    first = story["repeats"][0]["turns"][0]
    names = [(s["name"], s["kind"], s["depth"]) for s in first["service_spans"]]
    assert names == [("POST /v1/chat", "CHAIN", 0), ("chat support-model", "LLM", 1)]
    llm = first["service_spans"][1]
    assert llm["attributes"]["support.route"] == "billing" and llm["attributes"]["gen_ai.response.model"] == "local-model"
    assert llm["duration_ms"] > 0 and llm["service"] == "support-service"
    # the model call carried the LLM span's own context: the same trace, the span as parent
    sent = [q for q in requests if q["headers"].get("x-evalgate-case") == "refund"][0]["headers"]["traceparent"]
    assert sent.split("-")[1] == first["trace_id"] and sent.split("-")[2] == llm["span_id"]
    text = cli("show", run_id, "refund").out
    assert "the system's own spans" in text and "chat support-model [LLM]" in text
    page = tmp_path / "report.html"
    assert cli("report", run_id, "--html", str(page)).code == 0
    from test_report import _blobs

    stories = {c["id"]: c for chunk in _blobs(page.read_text())[2] for c in chunk}
    shown = stories["refund"]["reps"][0]["turns"][0]["spans"]
    assert [(s["name"], s["kind"], s["d"]) for s in shown] == [("POST /v1/chat", "CHAIN", 0), ("chat support-model", "LLM", 1)]
    again = cli("traces", "join", str(exported), "--run", run_id, "--json").json()
    assert again["joined"] == 6  # joined again: replaced, never doubled
    story = cli("show", run_id, "refund", "--json").json()
    assert len(story["repeats"][0]["turns"][0]["service_spans"]) == 2


def test_joining_a_file_that_is_not_otlp_is_exit_2_and_stores_nothing(cli, project: Path, tmp_path: Path) -> None:
    bad = tmp_path / "spans.json"
    bad.write_text('{"resourceSpans": [{"scopeSpans": 3}]}\n')
    r = cli("traces", "join", str(bad))
    assert r.code == 2 and "not a valid OTLP export" in r.err, r
    r = cli("traces", "join", str(tmp_path / "missing.json"))
    assert r.code == 2 and "no such file" in r.err, r


def _run_against(tmp_path: Path, handler: type, target: str, cases: str, **options: Any) -> Path:
    """The http target ``target`` (YAML lines, ``{url}`` for the service's base URL) against ``handler`` served on
    127.0.0.1, ``cases`` (YAML lines) run in this process; returns the store."""
    from conftest import serving

    from evalgate.api import run
    from evalgate.config import find_config
    from evalgate.runner import RunOptions

    write(tmp_path / "pyproject.toml", '[tool.evalgate]\nsuites = "suites"\n')
    with serving(handler) as url:
        suite = write(tmp_path / "suites" / "service.yaml",
                      f"name: service\ntarget:\n{target.format(url=url)}\ncases:\n{cases}")
        db = tmp_path / "store.duckdb"
        run([str(suite)], config=find_config(tmp_path), store_path=db, options=RunOptions(cache_mode="off", **options))
    return db


def test_a_secret_echoed_across_two_streamed_deltas_is_redacted(tmp_path: Path, monkeypatch) -> None:
    """Each event is scrubbed of the suite's secrets, and so is the output they join into: a token split over two
    deltas is whole only there."""
    from http.server import BaseHTTPRequestHandler

    token = "sk-streamed-secret-0123456789"

    class Splitting(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            self.rfile.read(int(self.headers["Content-Length"]))
            said = self.headers["Authorization"].removeprefix("Bearer ")
            body = b"".join(f"data: {json.dumps({'text': piece})}\n\n".encode()
                            for piece in ("your key is ", said[:10], said[10:], "."))
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    monkeypatch.setenv("SPLIT_TOKEN", token)
    db = _run_against(tmp_path, Splitting, """  http: "{url}/chat"
  headers: {{Authorization: "Bearer ${{SPLIT_TOKEN}}"}}
  body: {{text: "{{{{ input }}}}"}}
  response: {{delta: text}}""", "  - {id: one, input: hello}\n")
    [(output, trace)] = query(db, "SELECT output, trace FROM turns")
    assert output == "your key is [redacted].", output
    assert token not in trace and token[:10] not in trace.replace("[redacted]", ""), trace


def _cookie_sessions() -> type:
    """A service that keeps its sessions by cookie: a request without one is given ``sid=sN``; answers echo the
    Cookie header."""
    import itertools
    from http.server import BaseHTTPRequestHandler

    numbers = itertools.count(1)

    class CookieSessions(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            self.rfile.read(int(self.headers["Content-Length"]))
            got = self.headers.get("Cookie", "")
            out = json.dumps({"output": f"cookie [{got}]"}).encode()
            self.send_response(200)
            if "sid=" not in got:
                self.send_header("Set-Cookie", f"sid=s{next(numbers)}; Path=/; HttpOnly")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

    return CookieSessions


def test_a_session_cookie_stays_with_its_own_case(tmp_path: Path) -> None:
    """Each case run's later turns send the cookie its first turn was given, and no other case's (an httpx client's
    own jar sent the first case's cookie with every case's turns)."""
    db = _run_against(tmp_path, _cookie_sessions(), """  http: "{url}/chat"
  headers: {{Cookie: "theme=dark"}}
  body: {{text: "{{{{ input }}}}"}}""", """  - {id: alice, turns: [{input: hi}, {input: again}, {input: once more}]}
  - {id: bob, turns: [{input: hello}, {input: more}]}
""", concurrency=1)
    got = {(c, t): o for c, t, o in query(db, "SELECT case_id, turn, output FROM turns")}
    own = "[redacted]"  # the suite's own Cookie header, a value without a template: a secret, scrubbed from answers
    first_alice = got[("alice", 2)].removeprefix(f"cookie [{own}; ").rstrip("]")
    assert got[("alice", 1)] == f"cookie [{own}]" and got[("bob", 1)] == f"cookie [{own}]", got
    assert first_alice.startswith("sid=s") and got[("alice", 3)] == got[("alice", 2)], got
    first_bob = got[("bob", 2)].removeprefix(f"cookie [{own}; ").rstrip("]")
    assert first_bob.startswith("sid=s") and first_bob != first_alice, got


def test_a_case_run_s_cookies_go_when_it_ends(tmp_path: Path) -> None:
    """The target is told when a case run is over and lets go of its jar: 200 case runs, each given a cookie, leave
    none behind (each was kept until the run ended), and each one's second turn still sent its own."""
    import asyncio

    from conftest import serving

    from evalgate.runner import Runner, RunOptions
    from evalgate.store import Store
    from evalgate.suite import load_suite

    cases = "".join(f"  - {{id: c{i}, turns: [{{input: hi}}, {{input: again}}]}}\n" for i in range(200))
    with serving(_cookie_sessions()) as url:
        path = write(tmp_path / "service.yaml", f"""name: service
target:
  http: "{url}/chat"
  body: {{text: "{{{{ input }}}}"}}
cases:
{cases}""")
        runner = Runner(load_suite(path), Store(tmp_path / "store.duckdb"), RunOptions(cache_mode="off", concurrency=8))
        target = runner.make_target()

        async def go() -> None:
            await target.start()
            try:
                await runner.run(target)
            finally:
                await target.close()

        asyncio.run(go())
    assert target._jars == {}  # type: ignore[attr-defined]
    seconds = [o for (o,) in query(tmp_path / "store.duckdb", "SELECT output FROM turns WHERE turn = 2")]
    assert len(seconds) == 200 and all(o.startswith("cookie [sid=s") for o in seconds), seconds[:3]
    assert len(set(seconds)) == 200  # each its own
