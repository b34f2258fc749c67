"""The upstream proxy: record a run's model calls, replay them offline, and see exactly which calls changed.

Everything is real: an OpenAI-compatible server on 127.0.0.1 that counts its requests, the real ``openai``
client inside a python target and a command target, the real CLI, the real store and recordings file.
"""

from __future__ import annotations

import json
import socket
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ModelServer, query, serving, write
from test_report import _blobs

SECRET = "up-secret-7f3a9c1e5b"

BOT = '''
import os
from openai import OpenAI
from evalgate.traces import traceparent


def _client(req):
    how = os.environ.get("BOT_ATTRIBUTION", "path")
    if how == "path":  # the per-turn URL the runner put in the request
        return OpenAI(base_url=req["upstreams"]["model"], max_retries=0)
    if how == "traceparent":  # OPENAI_BASE_URL, and the turn's trace context on every call
        return OpenAI(max_retries=0, default_headers={"traceparent": traceparent(req)})
    return OpenAI(max_retries=0)  # OPENAI_BASE_URL alone


def messages_for(req):
    route = "refunds" if "refund" in req["input"].lower() else "general"
    system = os.environ.get("BOT_REFUND_PROMPT", "You are the refunds desk.") if route == "refunds" \\
        else "You are the general desk."
    return route, [{"role": "system", "content": system}, *req["history"], {"role": "user", "content": req["input"]}]


def respond(req):
    route, messages = messages_for(req)
    client = _client(req)
    if os.environ.get("BOT_STREAM"):
        chunks = client.chat.completions.create(model="m", messages=messages, stream=True)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        text = client.chat.completions.create(model="m", messages=messages).choices[0].message.content
    return {"route": route, "output": text}
'''

COMMAND_BOT = '''
import json, sys
from openai import OpenAI
from llmbot import messages_for

for line in sys.stdin:
    req = json.loads(line)
    route, messages = messages_for(req)
    client = OpenAI(base_url=req["upstreams"]["model"], max_retries=0)
    text = client.chat.completions.create(model="m", messages=messages).choices[0].message.content
    print(json.dumps({"session_id": req["session_id"], "turn": req["turn"], "route": route, "output": text}), flush=True)
'''

CASES = '''
cases:
  - id: refund
    turns:
      - input: I want a refund for order 5512
        expect: {route: refunds, output: {contains: ["5512"]}}
      - input: it is 5521 actually
        expect: {output: {contains: ["5521"]}}
  - id: hello
    input: hello there
    expect: {route: general, output: {contains: ["hello"]}}
  - id: weather
    input: how is the weather
    expect: {route: general, output: {contains: ["weather"]}}
'''


class Model(ModelServer):
    """The model server of these tests: answers with the desk its system prompt names and the user's last message;
    keeps each request's body and Authorization; with ``echo``, says the Authorization it got."""

    requests: list[dict[str, Any]] = []
    echo = False
    model_name = "local"

    def text(self, body: dict[str, Any]) -> str:
        messages = body["messages"]
        text = f"({messages[0]['content'].split()[-2]} desk) you said: {messages[-1]['content']}"
        return text + (f" [auth {self.headers.get('Authorization')}]" if Model.echo else "")

    def keep(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"body": body, "authorization": self.headers.get("Authorization"),
                "headers": {k.lower(): v for k, v in self.headers.items()}}

    def usage(self, body: dict[str, Any], text: str) -> dict[str, int]:
        return {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}


@pytest.fixture
def model() -> Iterator[str]:
    Model.requests, Model.echo = [], False
    with serving(Model) as url:
        yield url


def _suite(project: Path, url: str, *, target: str = "{python: llmbot:respond}", extra: str = "",
           concurrency: int = 4, name: str = "calls") -> Path:
    write(project / "llmbot.py", BOT)
    (project / "suites" / "demo.yaml").unlink(missing_ok=True)
    head = textwrap.dedent(f"""
        name: {name}
        target: {target}
        concurrency: {concurrency}
        upstreams:
          model: {{url: "{url}", openai: true}}
        """).lstrip("\n")
    return write(project / "suites" / f"{name}.yaml", head + extra + "\n" + CASES)


def _upstreams(r: Any) -> dict[str, Any]:
    assert r.code in (0, 1, 3) and r.out.startswith("{"), r
    summary: dict[str, Any] = r.json()["suites"][0]["upstreams"]
    return summary


def _verdict(r: Any) -> tuple[str, list[str]]:
    suite = r.json()["suites"][0]
    return suite["verdict"]["status"], sorted(f["case_id"] for f in suite["failing"])


def _recordings(project: Path, name: str = "calls") -> list[dict[str, Any]]:
    path = project / ".evalgate" / "recordings" / f"{name}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_recorded_run_replays_offline_with_the_model_stopped_and_the_same_verdict(cli, project: Path) -> None:
    with serving(Model) as url:
        Model.requests = []
        _suite(project, url)
        first = cli("run", "--json")
        recorded = _upstreams(first)
        assert (recorded["mode"], recorded["calls"], recorded["live"], recorded["saved"]) == ("record", 4, 4, 4)
        assert len(Model.requests) == 4
        # the calls reached the model marked as eval traffic, though the system passed no marker on itself
        run_id = first.json()["suites"][0]["run_id"]
        marked = sorted((q["headers"]["x-evalgate-run"], q["headers"]["x-evalgate-case"], q["headers"]["x-evalgate-turn"])
                        for q in Model.requests)
        assert marked == sorted([(run_id, "hello", "1"), (run_id, "refund", "1"), (run_id, "refund", "2"),
                                 (run_id, "weather", "1")])
        stored = {json.loads(t[0])["evalgate_trace_id"] for t in query(
            project / ".evalgate" / "evalgate.duckdb", "SELECT trace->'extra' FROM turns")}
        assert {q["headers"]["traceparent"].split("-")[1] for q in Model.requests} == stored
        again = cli("run", "--json")  # the file exists now: replay, and nothing reaches the model
        assert len(Model.requests) == 4
        assert (_upstreams(again)["recorded"], _upstreams(again)["live"]) == (4, 0)
    offline = cli("run", "--json", "--offline")  # the model server is gone
    replayed = _upstreams(offline)
    assert (replayed["mode"], replayed["recorded"], replayed["live"], replayed["failed"]) == ("replay", 4, 0, 0)
    assert _verdict(offline) == _verdict(first) == ("pass", [])
    assert len(Model.requests) == 4
    story = cli("show", "latest", "refund")  # each turn says which calls were served from recordings
    assert story.code == 0, story
    assert "upstream model POST /v1/chat/completions recorded" in story.out


def test_a_prompt_changed_for_one_case_sends_exactly_its_calls_live_and_names_them(cli, project: Path, model: str) -> None:
    _suite(project, model)
    assert cli("run", "--json").code == 0
    before = len(Model.requests)
    r = cli("run", "--json", env={"BOT_REFUND_PROMPT": "You are the returns desk."})
    after = len(Model.requests)
    summary = _upstreams(r)
    assert (summary["recorded"], summary["changed"], summary["live"], summary["missing"]) == (2, 2, 0, 0)
    assert sorted((c["case"], c["turn"]) for c in summary["changes"]) == [("refund", 1), ("refund", 2)]
    assert "message 1 (system) now 'you are the returns desk.', was 'you are the refunds desk.'" in \
        summary["changes"][0]["note"].lower()
    assert after - before == 2  # the changed calls went live; the others were served as recorded
    assert "changed: case refund turn 1 model POST /v1/chat/completions" in cli("run", env={
        "BOT_REFUND_PROMPT": "You are the returns desk."}).out
    before = len(Model.requests)

    text = (project / "suites" / "calls.yaml").read_text()
    (project / "suites" / "calls.yaml").write_text(text.replace("upstreams:", "recording: {on_change: fail}\nupstreams:"))
    failed = cli("run", "--json", env={"BOT_REFUND_PROMPT": "You are the returns desk."})
    assert failed.code == 3, failed  # an errored case is a run error: the gate cannot trust it
    suite = failed.json()["suites"][0]
    assert _upstreams(failed)["failed"] == 1  # the conversation stops at its failed turn
    refund = next(f for f in suite["failing"] if f["case_id"] == "refund")
    assert refund["errored"]
    reason = " ".join(refund["reasons"])
    assert "upstream model call 1 POST /v1/chat/completions (case refund, turn 1)" in reason
    assert "recording.on_change: fail" in reason
    assert len(Model.requests) == before  # a failed call never reaches the upstream


def test_a_call_with_no_recording_under_offline_fails_its_turn_naming_the_call(cli, project: Path, model: str) -> None:
    path = _suite(project, model)
    assert cli("run").code == 0
    path.write_text(path.read_text() + "  - id: brand-new\n    input: a question nobody asked <img src=x onerror=alert(1)>\n")
    r = cli("run", "--json", "--offline")
    summary = _upstreams(r)
    assert (summary["recorded"], summary["failed"]) == (4, 1)
    new = next(f for f in r.json()["suites"][0]["failing"] if f["case_id"] == "brand-new")
    reason = " ".join(new["reasons"])
    assert "(case brand-new, turn 1): no recording of it: POST /v1/chat/completions, last message (user) " \
           "'a question nobody asked <img src=x onerror=alert(1)>'" in reason
    assert "--offline" in reason
    without = cli("run", "--json")  # not offline: the missing call goes live and is named
    assert _upstreams(without)["missing"] == 1
    assert _upstreams(without)["missing_calls"][0]["case"] == "brand-new"
    assert cli("report", "latest", "--html", "r.html").code == 0  # the turn story says how each call was served
    page = (project / "r.html").read_text()
    assert "<img src=x" not in page  # the call's note quotes the input: escaped, or inside the compressed stories
    assert ("<dt>Upstream calls</dt><dd>5 (replay, <code>.evalgate/recordings/calls.jsonl</code>): 4 from recordings"
            " · 0 live · 0 changed · 1 missing · 0 failed</dd>") in page
    _, _, chunks = _blobs(page)
    served = {c["id"]: [call["s"] for t in c["reps"][0]["turns"] for call in t.get("up", [])]
              for chunk in chunks for c in chunk}
    assert served == {"refund": ["recorded", "recorded"], "hello": ["recorded"], "weather": ["recorded"],
                      "brand-new": ["missing"]}


def test_a_streamed_answer_is_recorded_as_its_events_and_replayed_as_a_stream(cli, project: Path) -> None:
    with serving(Model) as url:
        Model.requests = []
        _suite(project, url)
        first = cli("run", "--json", env={"BOT_STREAM": "1"})
        assert _verdict(first) == ("pass", [])
    lines = _recordings(project)
    assert all(line["events"][-1] == "data: [DONE]" and "body" not in line for line in lines)
    assert all(line["content_type"].startswith("text/event-stream") for line in lines)
    replayed = cli("run", "--json", "--offline", env={"BOT_STREAM": "1"})
    assert _upstreams(replayed)["recorded"] == 4
    assert _outputs(project, replayed) == _outputs(project, first)


def test_a_call_recorded_whole_is_served_streamed_when_it_asks_and_the_other_way_round(cli, project: Path) -> None:
    with serving(Model) as url:
        Model.requests = []
        _suite(project, url)
        whole = cli("run", "--json")  # recorded whole
    streamed = cli("run", "--json", "--offline", env={"BOT_STREAM": "1"})
    assert (_upstreams(streamed)["recorded"], _outputs(project, streamed)) == (4, _outputs(project, whole))
    (project / ".evalgate" / "recordings" / "calls.jsonl").unlink()
    with serving(Model) as url:
        _suite(project, url)
        first = cli("run", "--json", env={"BOT_STREAM": "1"})  # recorded as a stream
    again = cli("run", "--json", "--offline")
    assert (_upstreams(again)["recorded"], _outputs(project, again)) == (4, _outputs(project, first))


def _outputs(project: Path, r: Any) -> list[tuple[str, int, str]]:
    run_id = r.json()["suites"][0]["run_id"]
    rows = query(project / ".evalgate" / "evalgate.duckdb",
                 "SELECT case_id, turn, output FROM turns WHERE run_id = ? ORDER BY case_id, turn", [run_id])
    return [(str(a), int(b), str(c)) for a, b, c in rows]


@pytest.mark.parametrize("how, concurrency", [("traceparent", 4), ("path", 4), ("only", 1)])
def test_calls_are_attributed_by_traceparent_by_path_and_to_the_only_turn_in_flight(
        cli, project: Path, model: str, how: str, concurrency: int) -> None:
    _suite(project, model, concurrency=concurrency)
    r = cli("run", "--json", env={"BOT_ATTRIBUTION": how})
    assert _upstreams(r)["unattributed"] == 0
    keys = [(line["case"], line["turn"], line["order"]) for line in _recordings(project)]
    assert keys == [("hello", 1, 0), ("refund", 1, 0), ("refund", 2, 0), ("weather", 1, 0)]
    stored = query(project / ".evalgate" / "evalgate.duckdb", "SELECT trace FROM turns WHERE case_id = 'refund' ORDER BY turn")
    calls = [json.loads(t[0])["extra"]["upstream_calls"] for t in stored]
    assert [c[0]["served"] for c in calls] == ["live", "live"]
    again = cli("run", "--json", "--offline", env={"BOT_ATTRIBUTION": how})
    assert _upstreams(again)["recorded"] == 4


def test_calls_no_turn_claims_are_replayed_by_their_request_alone(cli, project: Path, model: str) -> None:
    _suite(project, model, concurrency=4)
    first = cli("run", "--json", env={"BOT_ATTRIBUTION": "env"})  # OPENAI_BASE_URL, no marker, turns in flight
    assert _upstreams(first)["calls"] == 4
    lines = _recordings(project)
    unclaimed = [line for line in lines if line.get("case") is None]
    assert unclaimed and all("turn" not in line and "order" not in line for line in unclaimed)
    again = cli("run", "--json", "--offline", env={"BOT_ATTRIBUTION": "env"})
    assert (_upstreams(again)["recorded"], _verdict(again)) == (4, ("pass", []))


def test_a_command_target_s_openai_calls_are_recorded_and_replayed(cli, project: Path) -> None:
    write(project / "cmdbot.py", COMMAND_BOT)
    with serving(Model) as url:
        Model.requests = []
        _suite(project, url, target=f"{{command: [{sys.executable}, cmdbot.py]}}")
        first = cli("run", "--json")
        assert (_upstreams(first)["live"], len(Model.requests)) == (4, 4)
    again = cli("run", "--json", "--offline")
    assert (_upstreams(again)["recorded"], _verdict(again)) == (4, ("pass", []))


def test_upstream_header_secrets_never_reach_recordings_store_or_console(cli, project: Path, model: str) -> None:
    Model.echo = True  # the upstream says the Authorization it received: the proxy scrubs it from the answer
    extra = 'recording: {file: recordings/calls.jsonl}'
    path = _suite(project, model, extra=extra)
    path.write_text(path.read_text().replace('openai: true}', 'openai: true, headers: {Authorization: "Bearer ${UP_TOKEN}"}}'))
    env = {"UP_TOKEN": SECRET, "OPENAI_API_KEY": "sk-client-key-aaaaaaaaaaaaaaaaaaaa"}
    r = cli("run", "--json", env=env)
    assert _upstreams(r)["live"] == 4
    assert {q["authorization"] for q in Model.requests} == {f"Bearer {SECRET}"}  # added to every upstream call
    shown = cli("show", "latest", "refund", env=env)
    text = cli("run", "--upstreams", "record", env=env)
    recordings_text = (project / "recordings" / "calls.jsonl").read_text()
    assert "[redacted]" in recordings_text
    db = project / ".evalgate" / "evalgate.duckdb"
    tables = [t[0] for t in query(db, "SELECT table_name FROM information_schema.tables")]
    dump = "".join(str(query(db, f'SELECT * FROM "{t}"')) for t in tables)
    for where in (recordings_text, dump, r.out, r.err, shown.out, shown.err, text.out, text.err):
        assert SECRET not in where
        assert "sk-client-key" not in where


def test_a_corrupt_recordings_file_is_exit_2_at_its_line(cli, project: Path, model: str) -> None:
    _suite(project, model)
    assert cli("run").code == 0
    path = project / ".evalgate" / "recordings" / "calls.jsonl"
    lines = path.read_text().splitlines()
    lines[2] = lines[2][:40]
    path.write_text("\n".join(lines) + "\n")
    r = cli("run")
    assert r.code == 2, r
    assert ".evalgate/recordings/calls.jsonl:3: not valid JSON" in r.err
    assert "Traceback" not in r.err
    lines[2] = json.dumps({"upstream": "model", "request_hash": "x", "stauts": 200})
    path.write_text("\n".join(lines) + "\n")
    r = cli("run")
    assert r.code == 2 and "calls.jsonl:3: not a recorded call: stauts: unknown key" in r.err, r
    r = cli("validate")  # validate reads it as run does
    assert r.code == 2 and "calls.jsonl:3: not a recorded call" in r.err, r


def test_a_header_naming_an_unset_variable_is_exit_2_unless_offline(cli, project: Path, model: str) -> None:
    path = _suite(project, model)
    path.write_text(path.read_text().replace('openai: true}', 'openai: true, headers: {X-Key: "${NOT_SET_ANYWHERE}"}}'))
    r = cli("run")
    assert r.code == 2 and "NOT_SET_ANYWHERE is not set (used in upstreams.model.headers.X-Key)" in r.err, r
    assert len(Model.requests) == 0
    offline = cli("run", "--json", "--offline")  # no call goes live: the header is never needed
    assert offline.code == 3 and _upstreams(offline)["failed"] == 3, offline  # refund stops at its turn 1
    assert cli("validate", "--json").json()["suites"][0]["upstreams"] == {
        "names": ["model"], "file": ".evalgate/recordings/calls.jsonl", "recordings": None}


def test_recording_twice_writes_the_same_sorted_file(cli, project: Path, model: str) -> None:
    _suite(project, model)
    assert cli("run", "--upstreams", "record").code == 0
    path = project / ".evalgate" / "recordings" / "calls.jsonl"
    first = path.read_bytes()
    assert cli("run", "--upstreams", "record", "--repeat", "2").code == 0
    assert path.read_bytes() == first
    keys = [(line["upstream"], line["case"], line["turn"], line["order"]) for line in _recordings(project)]
    assert keys == sorted(keys)
    assert all(list(line) == sorted(line) for line in _recordings(project))


def test_repeats_share_the_first_repeat_s_recording(cli, project: Path, model: str) -> None:
    _suite(project, model)
    assert cli("run").code == 0
    r = cli("run", "--json", "--repeat", "3", "--offline")
    assert (_upstreams(r)["recorded"], _upstreams(r)["failed"]) == (12, 0)


def test_live_mode_passes_through_and_keeps_nothing(cli, project: Path, model: str) -> None:
    _suite(project, model)
    r = cli("run", "--json", "--upstreams", "live")
    assert (_upstreams(r)["live"], _upstreams(r)["saved"], len(Model.requests)) == (4, None, 4)
    assert not (project / ".evalgate" / "recordings" / "calls.jsonl").exists()
    bad = cli("run", "--upstreams", "live", "--offline")
    assert bad.code == 2 and "--offline lets no call reach an upstream" in bad.err, bad


PRODUCTION = [
    {"session_id": "s-1", "turn": 1, "input": "I want a refund for order 5512", "output": "(refunds desk) production says 5512",
     "prompt": [{"role": "system", "content": "You are the refunds desk."},
                {"role": "user", "content": "I want a refund for order 5512"}],
     "model": {"name": "prod-model"}},
    {"session_id": "s-2", "turn": 1, "input": "hello there", "output": "(general desk) production says hello",
     "prompt": [{"role": "system", "content": "You are the general desk, in production."},
                {"role": "user", "content": "hello there"}]},
]


def test_production_sessions_are_answered_with_production_s_answers_where_the_prompt_is_the_same(
        cli, project: Path, model: str) -> None:
    write(project / "traces" / "prod.jsonl", "\n".join(json.dumps(t) for t in PRODUCTION) + "\n")
    write(project / "llmbot.py", BOT)
    (project / "suites" / "demo.yaml").unlink()
    write(project / "suites" / "prod.yaml", f"""
        name: prod
        target: {{python: llmbot:respond}}
        upstreams:
          model: {{url: "{model}", openai: true}}
        traces: [../traces/prod.jsonl]
        expect: {{output: {{contains: [production]}}}}
        """)
    r = cli("run", "--json", env={"BOT_STREAM": "1"})
    summary = _upstreams(r)
    assert (summary["recorded"], summary["changed"]) == (1, 1), json.dumps(summary)  # s-2's prompt is not the one production sent
    assert [(c["case"], c["turn"]) for c in summary["changes"]] == [("s-2", 1)]
    assert "message 1 (system) now 'you are the general desk.'" in summary["changes"][0]["note"].lower()
    assert len(Model.requests) == 1
    assert _verdict(r) == ("fail", ["s-2"])  # only the changed prompt's call was answered anew
    assert ("s-1", 1, "(refunds desk) production says 5512") in _outputs(project, r)


def test_upstream_keys_are_checked_at_their_line(cli, project: Path, model: str) -> None:
    path = _suite(project, model)
    path.write_text(path.read_text().replace("  model: {", "  Model-X: {"))
    r = cli("run")
    assert r.code == 2 and "calls.yaml:5:3: upstream name 'Model-X' is not a lower-case name" in r.err, r
    path.write_text(path.read_text().replace("  Model-X: {", "  model: {").replace("openai: true", "openai: true, prot: 1"))
    r = cli("run")
    assert r.code == 2 and "unknown key 'prot'" in r.err and "did you mean 'port'?" in r.err, r


def test_a_port_already_taken_is_exit_2_naming_the_upstream(cli, project: Path, model: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = _suite(project, model)
        path.write_text(path.read_text().replace("openai: true}", f"openai: true, port: {port}}}"))
        r = cli("run")
    assert r.code == 2 and f"upstream model: cannot listen on 127.0.0.1:{port}" in r.err, r
    assert "Traceback" not in r.err


def _free_port() -> int:
    """A free port below the kernel's ephemeral range: the proxy binds it in several runs one after another, and a
    port the kernel hands out to any client socket in between (another test's) would be taken by then."""
    import random

    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0]) \
        if Path("/proc/sys/net/ipv4/ip_local_port_range").exists() else 32768
    for port in random.sample(range(max(1024, low - 12000), low), 200):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


SERVICE_SUITE = """
name: service
concurrency: 4
target:
  http: "{service}/v1/chat"
  headers: {{Authorization: "Bearer {token}", X-User-Id: "{{{{ user.id }}}}"}}
  body: {{conversation: "{{{{ session_id }}}}", text: "{{{{ input }}}}"}}
  response: {{output: reply.text, route: meta.workflow, state: session}}
upstreams:
  model: {{url: "{model}", openai: true, port: {port}}}
cases:
  - id: refund
    turns:
      - input: I want a refund for order 5512
        expect: {{route: billing, state: {{order_id: "5512"}}, output: {{contains: ["5512"]}}}}
      - input: and how long does it take?
        expect: {{route: billing, output: {{contains: ["how long"]}}}}
  - id: password
    input: I forgot my password
    expect: {{route: account, output: {{contains: [password]}}}}
  - id: hello
    input: hello there
    expect: {{route: general, output: {{contains: [hello]}}}}
"""


def test_a_service_s_own_model_calls_are_recorded_replayed_offline_and_a_changed_prompt_goes_live(
        cli, project: Path) -> None:
    """A real service process, the http target, and the service's own openai client pointed at the proxy."""
    from conftest import service_process

    port, token = _free_port(), "support-token-0123456789"
    env = {"OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1", "SUPPORT_TOKEN": token}
    (project / "suites" / "demo.yaml").unlink()

    def suite(service: str, model: str) -> None:
        write(project / "suites" / "service.yaml", SERVICE_SUITE.format(service=service, token=token, model=model,
                                                                         port=port))

    with serving(Model) as model, service_process(env) as service:
        Model.requests = []
        suite(service, model)
        first = cli("run", "--json")
        assert _verdict(first) == ("pass", []), first.json()["suites"][0]["failing"]
        recorded = _upstreams(first)
        assert (recorded["live"], recorded["unattributed"], len(Model.requests)) == (4, 0, 4)
    keys = [(line["case"], line["turn"]) for line in _recordings(project, "service")]
    assert keys == [("hello", 1), ("password", 1), ("refund", 1), ("refund", 2)]

    with service_process(env) as service:  # the model server is gone
        suite(service, model)
        offline = cli("run", "--json", "--offline")
    assert _verdict(offline) == _verdict(first)
    assert (_upstreams(offline)["recorded"], len(Model.requests)) == (4, 4)

    with serving(Model) as model, service_process({**env, "SUPPORT_BILLING_PROMPT": "You are the new billing desk."}) \
            as service:  # a release that changed the billing route's prompt
        Model.requests = []
        suite(service, model)
        changed = cli("run", "--json")
    summary = _upstreams(changed)
    assert (summary["recorded"], summary["changed"]) == (2, 2)
    assert sorted((c["case"], c["turn"]) for c in summary["changes"]) == [("refund", 1), ("refund", 2)]
    assert len(Model.requests) == 2  # only the billing route's calls reached the model
    assert {r["body"]["messages"][0]["content"] for r in Model.requests} == {"You are the new billing desk."}
