"""The pull-request comment against a local server speaking the part of GitHub's REST API it uses."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO, run_cli_in_process

from evalgate.github import MARKER, comment_body


class FakeGitHub(BaseHTTPRequestHandler):
    comments: list[dict[str, Any]] = []
    calls: list[tuple[str, str, str | None]] = []
    read_only = False

    def _reply(self, status: int, data: Any) -> None:
        body = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> dict[str, Any]:
        return json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")

    def do_GET(self) -> None:  # noqa: N802
        FakeGitHub.calls.append(("GET", self.path, self.headers.get("Authorization")))
        self._reply(200, FakeGitHub.comments if "page=1" in self.path else [])

    def do_POST(self) -> None:  # noqa: N802
        FakeGitHub.calls.append(("POST", self.path, self.headers.get("Authorization")))
        if FakeGitHub.read_only:
            return self._reply(403, {"message": "Resource not accessible by integration"})
        new = {"id": 100 + len(FakeGitHub.comments), "body": self._body()["body"], "html_url": "https://gh/c"}
        FakeGitHub.comments.append(new)
        self._reply(201, new)

    def do_PATCH(self) -> None:  # noqa: N802
        FakeGitHub.calls.append(("PATCH", self.path, self.headers.get("Authorization")))
        cid = int(self.path.rsplit("/", 1)[1])
        comment = next(c for c in FakeGitHub.comments if c["id"] == cid)
        comment["body"] = self._body()["body"]
        self._reply(200, comment)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def github(tmp_path: Path):
    FakeGitHub.comments, FakeGitHub.calls, FakeGitHub.read_only = [{"id": 7, "body": "someone else's"}], [], False
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeGitHub)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"number": 42}}))
    yield {"GITHUB_API_URL": f"http://127.0.0.1:{server.server_address[1]}", "GITHUB_TOKEN": "ghs_secret_token_1",
           "GITHUB_REPOSITORY": "acme/helpdesk", "GITHUB_EVENT_PATH": str(event), "GITHUB_SERVER_URL": "https://gh",
           "GITHUB_RUN_ID": "555", "GITHUB_STEP_SUMMARY": str(tmp_path / "step-summary.md")}
    server.shutdown()


def test_one_comment_per_pull_request_created_then_updated_in_place(tmp_path: Path, github: dict[str, str]) -> None:
    db = ["--db", str(tmp_path / "s.duckdb")]
    assert run_cli_in_process("run", "suites/support.yaml", *db, cwd=REPO).code == 0
    assert run_cli_in_process("baseline", "set", "main", *db, cwd=REPO).code == 0
    summary = tmp_path / "summary.md"
    r = run_cli_in_process("run", "suites/support.yaml", "--target", "python:assistant.bot_regressed:respond",
                           "--baseline", "main", "--markdown", str(summary), *db, cwd=REPO)
    assert r.code == 1
    first = run_cli_in_process("comment", "--markdown", str(summary), "--json", cwd=tmp_path, env=github)
    assert first.code == 0 and first.json()["action"] == "created", first
    second = run_cli_in_process("comment", "--markdown", str(summary), "--json", cwd=tmp_path, env=github)
    assert second.json() == {**first.json(), "action": "updated"}  # found by its marker, edited in place
    ours = [c for c in FakeGitHub.comments if MARKER in c["body"]]
    assert len(ours) == 1 and len(FakeGitHub.comments) == 2  # the other comment left alone
    body = ours[0]["body"]
    assert "support: FAIL" in body and "New failure: `refund-changes-order-number`" in body
    assert "  - turn 1 context: +kb/internal-fraud-rules" in body  # before → after, as compare says it
    assert "[The run, its HTML report and results](https://gh/acme/helpdesk/actions/runs/555)" in body
    assert {auth for _, _, auth in FakeGitHub.calls} == {"Bearer ghs_secret_token_1"}
    assert [m for m, _, _ in FakeGitHub.calls] == ["GET", "POST", "GET", "PATCH"]
    assert "ghs_secret_token_1" not in first.out + first.err + second.out + second.err


def test_a_read_only_token_writes_the_step_summary_with_a_notice(tmp_path: Path, github: dict[str, str]) -> None:
    FakeGitHub.read_only = True
    summary = tmp_path / "summary.md"
    summary.write_text("### ❌ demo: FAIL\n")
    r = run_cli_in_process("comment", "--markdown", str(summary), cwd=tmp_path, env=github)
    assert r.code == 0, r
    assert r.err.startswith("::notice title=evalgate::cannot comment on pull request #42 (HTTP 403")
    step = Path(github["GITHUB_STEP_SUMMARY"]).read_text()
    assert "the summary is here instead" in step and "### ❌ demo: FAIL" in step
    outside = run_cli_in_process("comment", "--markdown", str(summary), "--json", cwd=tmp_path,
                                 env={**github, "GITHUB_EVENT_PATH": ""})
    assert outside.json()["action"] == "skipped"


def test_a_long_summary_is_cut_to_githubs_limit_saying_how_much_was_left_out() -> None:
    summary = "\n".join(f"| `case-{i}` | turn 1 output: missing 'x' |" for i in range(5000))
    body = comment_body(summary, "https://gh/run", limit=65_536)
    assert len(body) <= 65_536 and body.startswith(MARKER)
    kept = body.count("| `case-")
    assert 0 < kept < 5000 and f"… and {5000 - kept} more line(s)" in body and body.rstrip().endswith("(https://gh/run)")
