"""Targets against real parts: a subprocess, an HTTP server on 127.0.0.1, python functions."""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from conftest import query, run_cli, write

COMMAND_BOT = r'''
import json, os, sys, time
marker = os.environ["MARKER"]
for line in sys.stdin:
    req = json.loads(line)
    text = req["input"]
    if text == "crash" and not os.path.exists(marker):
        open(marker, "w").close()
        print("about to die", file=sys.stderr, flush=True)
        os._exit(7)
    if text == "hang":
        time.sleep(60)
    if text == "garbage":
        print("this is not json", flush=True)
        continue
    if text == "flood":  # one line longer than the reader holds (64 MiB), then nothing
        sys.stdout.write("x" * (65 * 1024 * 1024))
        sys.stdout.flush()
        time.sleep(60)
    if text == "chatty":  # a log line on stdout, then the answer
        print(json.dumps({"level": "info", "msg": "thinking"}), flush=True)
    if text == "late":  # answers the previous turn again, late, before this one
        print(json.dumps({"output": "stale", "route": "echo", "session_id": req["session_id"], "turn": req["turn"] - 1}),
              flush=True)
    out = {"output": "echo: " + text, "route": "echo", "state": {"turns": req["state"].get("turns", 0) + 1, "pid": os.getpid()}}
    print(json.dumps(out), flush=True)
'''


def _command_suite(project: Path, inputs: list[str], timeout: float = 1.0) -> None:
    cases = "\n".join(f"  - {{id: c{i}, input: {json.dumps(text)}, expect: {{route: echo}}}}" for i, text in enumerate(inputs))
    write(project / "bot_cmd.py", COMMAND_BOT)
    write(project / "suites" / "demo.yaml",
          f"name: cmd\ntarget: {{command: [{json.dumps(sys.executable)}, bot_cmd.py], env: {{MARKER: {json.dumps(str(project / 'crashed'))}}}}}\n"
          f"timeout_s: {timeout}\ngate: {{max_error_rate: 1.0}}\ncases:\n{cases}\n")


def test_command_target_survives_crash_hang_and_garbage(cli, project: Path) -> None:
    _command_suite(project, ["hello", "crash", "after crash", "hang", "after hang", "garbage", "after garbage", "flood",
                             "after flood"], timeout=2.0)
    r = cli("run", "--json", "-j", "1")
    assert r.code == 0, r
    rows = query(project / ".evalgate" / "evalgate.duckdb",
                 "SELECT case_id, turns.passed, turns.error, output FROM cases JOIN turns USING (run_id, case_id, repeat) ORDER BY seq")
    by_id = {row[0]: row for row in rows}
    assert by_id["c0"][1:] == (True, None, "echo: hello")
    assert by_id["c1"][2].startswith("process exited (code 7) without answering; stderr: about to die")
    assert by_id["c2"][1:] == (True, None, "echo: after crash")  # restarted
    assert by_id["c3"][2] == "no answer within 2s; process killed and will be restarted"
    assert by_id["c4"][1:] == (True, None, "echo: after hang")
    assert by_id["c5"][2] == ("no answer within 2s; it wrote 1 line(s) that are not this turn's trace, first "
                              "'this is not json'; process killed and will be restarted")
    assert by_id["c6"][1:] == (True, None, "echo: after garbage")
    assert by_id["c7"][2] == "the process wrote a line over 64 MiB; process killed and will be restarted"
    assert by_id["c8"][1:] == (True, None, "echo: after flood")


def test_command_target_answers_cannot_shift_to_other_turns(cli, project: Path) -> None:
    """A log line on stdout, or a late answer to an earlier turn, is skipped: every turn gets its own answer."""
    _command_suite(project, [])
    write(project / "suites" / "demo.yaml", (project / "suites" / "demo.yaml").read_text().replace("cases:\n", "") + """
cases:
  - id: conv
    turns:
      - {input: one, expect: {output: "echo: one"}}
      - {input: chatty, expect: {output: "echo: chatty"}}
      - {input: late, expect: {output: "echo: late"}}
      - {input: four, expect: {output: "echo: four"}}
""")
    r = cli("run", "--json", "-j", "1")
    assert r.code == 0, r
    outputs = [o for (o,) in query(project / ".evalgate" / "evalgate.duckdb", "SELECT output FROM turns ORDER BY turn")]
    assert outputs == ["echo: one", "echo: chatty", "echo: late", "echo: four"]


def test_command_target_keeps_one_process_across_turns(cli, project: Path) -> None:
    write(project / "bot_cmd.py", COMMAND_BOT)
    write(project / "suites" / "demo.yaml", f"""
        name: cmd
        target: {{command: "{sys.executable} bot_cmd.py", env: {{MARKER: "{project / 'm'}"}}}}
        cases:
          - id: conv
            turns:
              - {{input: one, expect: {{state: {{turns: 1}}}}}}
              - {{input: two, expect: {{state: {{turns: 2}}}}}}
              - {{input: three, expect: {{state: {{turns: 3}}}}}}
    """)
    r = cli("run", "--json")
    assert r.code == 0, r
    states = query(project / ".evalgate" / "evalgate.duckdb", "SELECT state FROM turns ORDER BY turn")
    assert len({json.loads(s[0])["pid"] for s in states}) == 1


def test_a_request_larger_than_the_pipe_reaches_a_command_target_whole(cli, project: Path) -> None:
    write(project / "echo_len.py", """
        import json, sys
        for line in sys.stdin:
            req = json.loads(line)
            print(json.dumps({"session_id": req["session_id"], "turn": req["turn"], "output": str(len(req["input"]))}),
                  flush=True)
    """)
    big = "x" * 600_000  # many times a pipe's buffer: written partly at once, the rest from a worker thread
    write(project / "suites" / "demo.yaml", f"""
        name: big
        target: {{command: "{sys.executable} echo_len.py"}}
        cases:
          - {{id: big, input: "{big}", expect: {{output: "600000"}}}}
          - {{id: small, input: "abc", expect: {{output: "3"}}}}
    """)
    r = cli("run")
    assert r.code == 0, r


def test_command_not_found_is_a_usage_error(cli, project: Path) -> None:
    write(project / "suites" / "demo.yaml", "name: cmd\ntarget: {command: [./no-such-program]}\ncases: [{id: a, input: hi}]\n")
    r = cli("run")
    assert r.code == 2 and "command target not found: ./no-such-program" in r.err


class _Handler(BaseHTTPRequestHandler):
    seen: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Handler.seen.append({"body": body, "auth": self.headers.get("Authorization"),
                              "marks": {k: v for k, v in self.headers.items() if k.lower().startswith(("x-evalgate", "traceparent"))}})
        if body["input"] == "fail":
            self.send_response(500)
            self.end_headers()
            self.wfile.write(b"upstream exploded")
            return
        if body["input"] == "echo":  # a 401 that echoes the token it was sent, with a trailing newline
            self.send_response(401)
            self.end_headers()
            self.wfile.write(f"bad token: {self.headers.get('Authorization')}\n".encode())
            return
        if body["input"] == "echo-ok":  # a service that repeats its headers in its answer (the token alone, too)
            auth = self.headers.get("Authorization") or ""
            data = json.dumps({"output": f"you sent {auth}; token {auth.split()[-1]}"}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        if body["input"] == "trickle":  # headers at once, then the body a byte at a time
            data = json.dumps({"output": "slow " * 40}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            for i in range(len(data)):
                self.wfile.write(data[i:i + 1])
                self.wfile.flush()
                time.sleep(0.05)
            return
        trace = {"output": f"got {body['input']}", "route": {"name": "web"}, "state": {"n": body["turn"]}}
        data = json.dumps(trace).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def http_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    _Handler.seen = []
    yield f"http://127.0.0.1:{server.server_address[1]}/turn"
    server.shutdown()


def test_http_target_posts_the_request_and_keeps_secrets_out_of_the_store(cli, project: Path, http_server: str) -> None:
    write(project / "suites" / "demo.yaml", f"""
        name: web
        target: {{http: "{http_server}", headers: {{Authorization: "Bearer ${{WEB_TOKEN}}"}}}}
        gate: {{max_error_rate: 0.5}}
        cases:
          - id: conv
            user: {{id: u-9, groups: [customer]}}
            turns:
              - {{input: hi, expect: {{route: web, output: {{contains: "got hi"}}}}}}
              - {{input: again, expect: {{state: {{n: 2}}}}}}
          - {{id: broken, input: fail}}
    """)
    r = cli("run", "--json", "-j", "1", env={"WEB_TOKEN": "sk-secret-123"})
    assert r.code == 0, r
    first, second = _Handler.seen[0], _Handler.seen[1]
    assert first["auth"] == "Bearer sk-secret-123"
    run_id = r.json()["suites"][0]["run_id"]
    assert first["body"] == {"v": 1, "run_id": run_id, "case_id": "conv", "session_id": f"conv#0@{run_id}", "turn": 1, "repeat": 0,
                             "input": "hi", "history": [], "state": {}, "user": {"id": "u-9", "groups": ["customer"]}}
    assert second["body"]["history"] == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "got hi"}]
    assert second["body"]["state"] == {"n": 1}
    # every request is marked as eval traffic, with a W3C trace context stored with its turn
    marks = {k.lower(): v for k, v in second["marks"].items()}
    assert (marks["x-evalgate-run"], marks["x-evalgate-case"], marks["x-evalgate-turn"], marks["x-evalgate-repeat"]) == \
        (run_id, "conv", "2", "0")
    version, trace_id, span_id, flags = marks["traceparent"].split("-")
    assert (version, len(trace_id), len(span_id), flags) == ("00", 32, 16, "01")
    stored = json.loads(query(project / ".evalgate" / "evalgate.duckdb",
                              "SELECT trace FROM turns WHERE case_id = 'conv' AND turn = 2")[0][0])
    assert stored["extra"]["evalgate_trace_id"] == trace_id
    db = project / ".evalgate" / "evalgate.duckdb"
    assert query(db, "SELECT error FROM turns WHERE case_id = 'broken'")[0][0].startswith("HTTP 500 from")
    dump = "\n".join(str(row) for table in ("runs", "cases", "turns", "scores") for row in query(db, f"SELECT * FROM {table}"))
    assert "sk-secret-123" not in dump  # headers are expanded at call time and never stored


def test_http_target_missing_env_var_is_a_usage_error(cli, project: Path, http_server: str) -> None:
    write(project / "suites" / "demo.yaml", f"""
        name: web
        target: {{http: "{http_server}", headers: {{Authorization: "Bearer ${{NOT_SET_ANYWHERE}}"}}}}
        cases: [{{id: a, input: hi}}]
    """)
    r = cli("run")
    assert r.code == 2 and "NOT_SET_ANYWHERE is not set" in r.err


def test_http_target_unreachable_is_an_error_exit_3(cli, project: Path) -> None:
    write(project / "suites" / "demo.yaml", "name: web\ntarget: {http: 'http://127.0.0.1:9/x'}\ncases: [{id: a, input: hi}]\n")
    r = cli("run", "--json")
    assert r.code == 3, r
    assert "ConnectError" in r.json()["suites"][0]["failing"][0]["reasons"][0]


def test_invalid_trace_from_a_target_is_a_turn_error(cli, project: Path) -> None:
    write(project / "weird.py", "def respond(req):\n    return {'output': 'x', 'routee': 'a'}\n")
    write(project / "suites" / "demo.yaml", "name: w\ntarget: {python: weird:respond}\ncases: [{id: a, input: hi}]\n")
    r = cli("run", "--json")
    assert r.code == 3
    reason = r.json()["suites"][0]["failing"][0]["reasons"][0]
    assert reason == "error: turn 1: target returned an invalid trace: routee: unknown field (did you mean 'route'?)"


def test_elapsed_excludes_time_queued_behind_other_cases(cli, project: Path) -> None:
    # one worker process, four cases of 0.3 s each: each turn's elapsed is ~0.3 s, not up to 1.2 s
    write(project / "slow_cmd.py", "import json,sys,time\nfor l in sys.stdin:\n    time.sleep(0.3)\n"
                                   "    print(json.dumps({'output': 'ok'}), flush=True)\n")
    cases = "\n".join(f"  - {{id: c{i}, input: x}}" for i in range(4))
    write(project / "suites" / "demo.yaml", f"name: q\ntarget: {{command: [{json.dumps(sys.executable)}, slow_cmd.py]}}\ncases:\n{cases}\n")
    r = cli("run", "-j", "4")
    assert r.code == 0, r
    elapsed = [row[0] for row in query(project / ".evalgate" / "evalgate.duckdb", "SELECT elapsed_ms FROM turns")]
    assert len(elapsed) == 4 and all(250 < e < 600 for e in elapsed), elapsed


def test_a_hung_sync_target_cannot_keep_the_exit_code_from_the_shell(tmp_path: Path) -> None:
    """The call timed out, the verdict is printed: the process exits although the target's thread never returns."""
    write(tmp_path / "hb.py", 'import time\ndef respond(req):\n    if req["input"] == "hang":\n        time.sleep(3600)\n'
                              '    return {"output": "ok"}\n')
    write(tmp_path / "h.yaml", "name: h\ntarget: {python: hb:respond}\ntimeout_s: 1\n"
                               "cases: [{id: a, input: hang}, {id: b, input: fine}]\n")
    started = time.monotonic()
    r = run_cli("run", "h.yaml", "--json", "--db", str(tmp_path / "s.duckdb"), cwd=tmp_path, timeout=60)
    assert r.code == 3 and time.monotonic() - started < 30, r  # the timed-out case is an error; nothing waits for it
    s = r.json()["suites"][0]
    assert s["metrics"]["errors"] == 1 and s["metrics"]["passed"] == 1


def test_http_secrets_never_come_back_and_the_deadline_covers_the_whole_body(cli, project: Path, http_server: str) -> None:
    write(project / "suites" / "demo.yaml", f"""
        name: web
        target: {{http: "{http_server}", headers: {{Authorization: "Bearer ${{WEB_TOKEN}}"}}}}
        timeout_s: 1
        gate: {{max_error_rate: 1}}
        cases:
          - {{id: echo, input: echo}}
          - {{id: echo-ok, input: echo-ok}}
          - {{id: trickle, input: trickle}}
    """)
    started = time.monotonic()
    r = cli("run", "--json", "-j", "3", env={"WEB_TOKEN": "sk-secret-456"})
    assert time.monotonic() - started < 8, r  # the trickled body (about 10 s) is cut at the 1 s deadline
    db = project / ".evalgate" / "evalgate.duckdb"
    errors = dict(query(db, "SELECT case_id, error FROM turns"))
    assert errors["trickle"] == f"timed out after 1s ({http_server})"
    assert errors["echo"].startswith("HTTP 401") and "[redacted]" in errors["echo"]
    assert query(db, "SELECT output FROM turns WHERE case_id = 'echo-ok'") == [("you sent [redacted]; token [redacted]",)]
    dump = "\n".join(str(row) for table in ("runs", "cases", "turns", "scores") for row in query(db, f"SELECT * FROM {table}"))
    assert "sk-secret-456" not in dump and "sk-secret-456" not in r.out + r.err


def test_two_runs_against_a_service_with_its_own_sessions_do_not_share_state(tmp_path: Path) -> None:
    """A service that keeps each session's state itself (here in a file) starts every run's conversations afresh."""
    from conftest import run_cli_in_process

    write(tmp_path / "svc.py", '''
        import json, pathlib
        STORE = pathlib.Path(__file__).with_name("sessions.json")

        def respond(req):
            sessions = json.loads(STORE.read_text()) if STORE.exists() else {}
            seen = sessions.get(req["session_id"], 0) + 1
            sessions[req["session_id"]] = seen
            STORE.write_text(json.dumps(sessions))
            return {"output": f"message {seen} of this session"}
    ''')
    write(tmp_path / "s.yaml", "name: svc\ntarget: {python: svc:respond}\n"
                               "cases: [{id: a, turns: [{input: hi, expect: {output: {equals: 'message 1 of this session'}}},"
                               " {input: again, expect: {output: {equals: 'message 2 of this session'}}}]}]\n")
    for _ in range(2):
        r = run_cli_in_process("run", "s.yaml", "--db", str(tmp_path / "s.duckdb"), cwd=tmp_path)
        assert r.code == 0, r  # the second run does not continue the first run's session
    assert len(json.loads((tmp_path / "sessions.json").read_text())) == 2
