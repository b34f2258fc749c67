"""The reference pipeline rebuilding a real app: a document collection per route, a keyword-scoring router rule,
endpoint headers and the model that answered, against a real OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from conftest import run_cli_in_process, serving, write
from evalgate.documents import DocumentSet
from evalgate.errors import SuiteError
from evalgate.pipeline import Pipeline, PipelineSpec
from evalgate.pipeline.router import Message, Router
from evalgate.pipeline.tokens import ESTIMATE, TokenCounter, estimate
from evalgate.traces import User

ESTIMATOR = TokenCounter(ESTIMATE, estimate)
CUSTOMER = User(id="c-1", groups=["customer"])
TOKEN = "gw-token-secret-5519-abcdef"
KEY = "sk-real-app-key-2208"
SNAPSHOT = "-2024-07-18"


class Gateway(BaseHTTPRequestHandler):
    """An OpenAI-compatible gateway: answers with the system prompt it got, names a dated snapshot of the model
    asked for, records every request's headers, and echoes them back in a 400 when asked to."""

    requests: list[dict[str, Any]] = []
    headers_seen: list[dict[str, str]] = []
    lock = threading.Lock()

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with Gateway.lock:
            Gateway.requests.append(body)
            Gateway.headers_seen.append({k.lower(): v for k, v in self.headers.items()})
        user = body["messages"][-1]["content"]
        if "echo headers" in user:
            status, payload = 400, {"error": {"message": f"bad gateway token {self.headers.get('X-Gateway-Token')}",
                                              "type": "invalid_request_error"}}
        else:
            status, payload = 200, {
                "id": "c1", "object": "chat.completion", "created": 0, "model": body["model"] + SNAPSHOT,
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": body["messages"][0]["content"]}}],
                "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}}
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def gateway() -> Iterator[str]:
    Gateway.requests, Gateway.headers_seen = [], []
    with serving(Gateway) as url:
        yield url


def _doc(doc_id: str, groups: list[str], text: str, **meta: Any) -> str:
    return json.dumps({"id": doc_id, "title": doc_id.split("/")[-1], "groups": groups, "text": text, **meta})


# the suite's truth: who may read what, whatever a route's collection says
TRUTH = "\n".join([
    _doc("kb/refunds", ["customer"], "Refunds are paid to the original card within 30 days."),
    _doc("kb/refund-fraud", ["support"], "Refund requests over 500 dollars get a fraud review."),
    _doc("kb/account-credit", ["customer"], "A refund of account credit shows up on your account page."),
    _doc("kb/password", ["customer"], "Reset your password from the log in page; a card is not needed."),
]) + "\n"
REFUNDS = "\n".join([
    _doc("kb/refunds", ["customer"], "Refunds are paid to the original card within 30 days."),
    # the collection opens it to everyone; the suite's truth does not: a collection never widens who may read
    _doc("kb/refund-fraud", ["*"], "Refund requests over 500 dollars get a fraud review."),
    # unknown to the suite's truth: nobody reads it
    _doc("kb/refund-stray", ["*"], "Refund stray notes copied from an old wiki."),
]) + "\n"
ACCOUNT = "\n".join([
    _doc("kb/account-credit", ["customer"], "A refund of account credit shows up on your account page."),
    _doc("kb/password", ["customer"], "Reset your password from the log in page; a card is not needed."),
]) + "\n"

PIPELINE = """
version: 1
endpoint:
  base_url: "{base_url}"
  api_key_env: REAL_APP_KEY
  max_retries: 0
  headers: {{X-Tenant: acme, X-Gateway-Token: "Bearer ${{GATEWAY_TOKEN}}"}}
router:
  fallback: clarify
  rules:
    - {{route: handoff, regex: '\\b(human|agent)\\b'}}
    - scored:
        refunds: [refund, money back, reimburse, card]
        account: [password, log in, card]
routes:
  refunds:
    documents: collections/refunds.jsonl
    context: {{top_k: 3}}
    model: {{name: tiny-model, prompt: "refunds from {{% for d in context %}}[{{{{ d.id }}}}]{{% endfor %}}"}}
  account:
    documents: collections/account.jsonl
    context: {{top_k: 3}}
    model: {{name: tiny-model, prompt: "account from {{% for d in context %}}[{{{{ d.id }}}}]{{% endfor %}}"}}
  handoff: {{handoff: true, answer: "Passing you to a person."}}
  clarify: {{answer: "Sorry?"}}
"""

CASES = """
name: app
documents: ../truth.jsonl
target: {pipeline: ../pipeline.yaml}
cases:
  - {id: refund, user: {id: c-1, groups: [customer]}, input: "a refund, money back to my card", expect: {route: refunds}}
  - {id: password, user: {id: c-1, groups: [customer]}, input: "my card password, I cannot log in", expect: {route: account}}
  - {id: tie, user: {id: c-1, groups: [customer]}, input: "which card is it", expect: {route: refunds}}
  - {id: none, user: {id: c-1, groups: [customer]}, input: "hello there", expect: {route: clarify}}
"""


def _app(tmp_path: Path, base_url: str) -> Path:
    write(tmp_path / "pyproject.toml", '[tool.evalgate]\nsuites = "suites"\n')
    write(tmp_path / "truth.jsonl", TRUTH)
    write(tmp_path / "collections" / "refunds.jsonl", REFUNDS)
    write(tmp_path / "collections" / "account.jsonl", ACCOUNT)
    write(tmp_path / "pipeline.yaml", PIPELINE.format(base_url=base_url))
    write(tmp_path / "suites" / "app.yaml", CASES)
    return tmp_path


ENV = {"REAL_APP_KEY": KEY, "GATEWAY_TOKEN": TOKEN}


def _turn(project: Path, case: str) -> dict[str, Any]:
    story = run_cli_in_process("show", "latest", case, "--json", cwd=project).json()
    turn: dict[str, Any] = story["repeats"][0]["turns"][0]
    return turn


def _dump_store(path: Path) -> str:
    """Every row of every table of the store, as text."""
    import duckdb

    con = duckdb.connect(str(path), read_only=True)
    try:
        tables = [r[0] for r in con.execute(
            "select table_name from information_schema.tables where table_schema = 'main'").fetchall()]
        assert tables
        return "\n".join(f"{t}: {con.execute(f'select * from {t}').fetchall()!r}" for t in tables)
    finally:
        con.close()


def test_a_real_app_per_route_collections_scored_router_headers_and_the_answering_model(
        gateway: str, tmp_path: Path) -> None:
    project = _app(tmp_path, gateway)
    r = run_cli_in_process("run", "--json", cwd=project, env=ENV)
    assert r.code == 0, r
    assert r.json()["suites"][0]["metrics"]["pass_rate"] == 1.0

    # the scored router: most hits wins, a tie goes to the route listed first, no hit falls through
    refund, password, tie, none = (_turn(project, c) for c in ("refund", "password", "tie", "none"))
    assert refund["route"]["reason"] == "rule 2: 3 keyword hits for refunds: refund, money back, card (next: account 1)"
    assert password["route"]["reason"] == "rule 2: 3 keyword hits for account: password, log in, card (next: refunds 1)"
    assert tie["route"]["reason"] == ("rule 2: 1 keyword hit for refunds: card "
                                      "(tied with account: refunds is listed first)")
    assert (none["route"]["name"], none["route"]["reason"]) == ("clarify", "no rule matched: fallback")

    # per-route collections: refunds searches its own file only; account-credit (which says "refund") is in the
    # account collection alone, so it is never retrieved for a refund question
    got = {c["id"]: c.get("excluded") for c in refund["context"]}
    assert got == {"kb/refunds": None, "kb/refund-fraud": "permission", "kb/refund-stray": "permission"}
    assert refund["output"] == "refunds from [kb/refunds]"
    assert {c["id"] for c in password["context"]} <= {"kb/password", "kb/account-credit"}
    assert password["output"].startswith("account from [kb/password]")

    # the answering model beside the one asked for
    assert refund["model"]["name"] == "tiny-model" + SNAPSHOT and refund["model"]["requested"] == "tiny-model"

    # headers reached the gateway on every call (with the key), and nowhere else
    assert len(Gateway.headers_seen) == 3
    assert all(h["x-gateway-token"] == f"Bearer {TOKEN}" and h["x-tenant"] == "acme"
               and h["authorization"] == f"Bearer {KEY}" for h in Gateway.headers_seen)
    dump = _dump_store(project / ".evalgate" / "evalgate.duckdb")
    assert "tiny-model" + SNAPSHOT in dump  # the dump does hold the traces
    assert TOKEN not in dump and KEY not in dump
    for path in project.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes() and KEY.encode() not in path.read_bytes(), path
    assert TOKEN not in r.out + r.err

    # a warm re-run answers from the cache and still knows which model answered
    r = run_cli_in_process("run", "--json", cwd=project, env=ENV)
    assert r.code == 0 and len(Gateway.requests) == 3, r
    assert _turn(project, "refund")["model"]["name"] == "tiny-model" + SNAPSHOT

    # offline makes no call, so the header's variable need not be set
    r = run_cli_in_process("run", "--offline", cwd=project, env={"REAL_APP_KEY": KEY})
    assert r.code == 0 and len(Gateway.requests) == 3, r


def test_a_header_variable_that_is_not_set_is_exit_2_naming_the_header(gateway: str, tmp_path: Path) -> None:
    project = _app(tmp_path, gateway)
    r = run_cli_in_process("run", cwd=project, env={"REAL_APP_KEY": KEY})
    assert r.code == 2, r
    assert "GATEWAY_TOKEN is not set (used in the pipeline endpoint's header X-Gateway-Token)" in r.err
    assert Gateway.requests == []


def test_an_endpoint_that_echoes_the_headers_never_gets_them_into_an_error(gateway: str) -> None:
    from evalgate.models import ModelClient, ModelError, ModelRequest

    async def go() -> str:
        client = ModelClient(gateway, headers={"X-Gateway-Token": TOKEN}, max_retries=0)
        try:
            await client.complete(ModelRequest("tiny-model", [{"role": "user", "content": "echo headers"}]))
        except ModelError as exc:
            return str(exc)
        finally:
            await client.close()
        raise AssertionError("the call should have failed")

    message = asyncio.run(go())
    assert Gateway.headers_seen[0]["x-gateway-token"] == TOKEN
    assert TOKEN not in message and "bad gateway token [redacted]" in message


# --- the router rule and the collections, in process ----------------------------------------


def _spec(**over: Any) -> PipelineSpec:
    data: dict[str, Any] = {
        "router": {"workflows": ["refunds"], "fallback": "clarify", "rules": [
            {"scored": {"refunds": ["refund", "money back"], "account": ["password", "log in"]},
             "state": {"handoff": None}},
            {"route": "account", "keywords": ["account"]},
        ]},
        "routes": {"refunds": {"context": {}, "model": {}}, "account": {"context": {}, "model": {}},
                   "clarify": {"answer": "Sorry?"}},
    }
    data.update(over)
    return PipelineSpec.model_validate(data)


def _decide(spec: PipelineSpec, text: str, state: dict[str, Any] | None = None) -> tuple[str, str] | None:
    d = Router(spec.router, spec.workflows()).decide(Message.of(text, state or {}, {}), lambda _route: 0.0)
    return (d.route, d.reason) if d else None


def test_the_scored_rule_counts_hits_breaks_ties_by_order_and_falls_through() -> None:
    spec = _spec()
    assert _decide(spec, "Refund, money back, or my password") == (
        "refunds", "rule 1: 2 keyword hits for refunds: refund, money back (next: account 1), state.handoff=None")
    assert _decide(spec, "password, I can't log in, about a refund") == (
        "account", "rule 1: 2 keyword hits for account: password, log in (next: refunds 1), state.handoff=None")
    assert _decide(spec, "refund or password") == (
        "refunds", "rule 1: 1 keyword hit for refunds: refund (tied with account: refunds is listed first), "
                   "state.handoff=None")
    # no hit: the next rule decides; the scored rule's other conditions must hold too
    assert _decide(spec, "my account") == ("account", "rule 2: keyword 'account'")
    assert _decide(spec, "refund", {"handoff": True}) is None


def test_scored_rules_are_checked_when_the_pipeline_loads() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="names route 'refundz'"):
        _spec(router={"fallback": "clarify", "rules": [{"scored": {"refundz": ["refund"]}}]})
    with pytest.raises(ValidationError, match="exactly one of them"):
        _spec(router={"fallback": "clarify", "rules": [{"route": "refunds", "scored": {"refunds": ["refund"]}}]})
    with pytest.raises(ValidationError, match="go under scored"):
        _spec(router={"fallback": "clarify", "rules": [{"scored": {"refunds": ["refund"]}, "keywords": ["x"]}]})


SUBSET = "\n".join([
    _doc("kb/refunds", ["customer"], "Refunds are paid to the original card.", collection="refunds"),
    _doc("kb/refund-credit", ["customer"], "A refund of account credit.", collection="account", tags=["billing"]),
    _doc("kb/password", ["customer"], "Reset your password.", collection="account"),
]) + "\n"


def _turn_in_process(pipe: Pipeline, text: str) -> dict[str, Any]:
    request = {"case_id": "c", "session_id": "s", "turn": 1, "repeat": 0, "input": text, "history": [],
               "state": {}, "user": CUSTOMER.model_dump()}
    return asyncio.run(pipe.turn(request))


def test_a_route_collection_as_a_subset_of_the_pipelines_set(tmp_path: Path) -> None:
    docs = DocumentSet.load(write(tmp_path / "docs.jsonl", SUBSET))
    spec = _spec(routes={
        "refunds": {"documents": {"where": {"collection": "refunds"}}, "context": {}, "model": {}},
        "account": {"documents": {"where": {"tags": ["billing", "other"]}}, "context": {}, "model": {}},
        "clarify": {"answer": "Sorry?"}})
    pipe = Pipeline(spec, docs, None, counter=ESTIMATOR)
    refund = _turn_in_process(pipe, "a refund please")
    assert [c["id"] for c in refund["context"]] == ["kb/refunds"]  # kb/refund-credit is the account route's
    # a list-valued field (tags) matches when it holds one of the values
    account = _turn_in_process(pipe, "refund password account")
    assert account["route"]["name"] == "refunds"  # 1 hit each: refunds listed first
    assert [c["id"] for c in _turn_in_process(pipe, "password and my account credit refund, log in")["context"]] == [
        "kb/refund-credit"]
    # min_score looks in the rule's route's collection: "credit" scores in account's (tagged billing), not in refunds'
    scoring = _spec(router={"fallback": "clarify", "rules": [{"route": "refunds", "min_score": 0.01},
                                                             {"route": "account", "min_score": 0.01}]},
                    routes=spec.model_dump()["routes"])
    decided = _turn_in_process(Pipeline(scoring, docs, None, counter=ESTIMATOR), "credit")["route"]
    assert decided["name"] == "account" and decided["reason"].startswith("rule 2: retrieval score")
    # a subset that picks nothing is a mistake, named
    bad = _spec(routes={"refunds": {"documents": {"where": {"collection": "refundz"}}, "context": {}, "model": {}},
                        "account": {"context": {}, "model": {}}, "clarify": {"answer": "Sorry?"}})
    with pytest.raises(SuiteError, match=r"routes.refunds.documents: no document of .* has \{'collection': 'refundz'\}"):
        Pipeline(bad, docs, None, counter=ESTIMATOR)


def test_a_route_collection_file_that_does_not_exist_is_exit_2(tmp_path: Path) -> None:
    write(tmp_path / "s.yaml", """
        target:
          pipeline:
            router: {fallback: clarify}
            routes:
              clarify: {documents: nowhere.jsonl, context: {}, model: {}}
        cases: [{input: hi}]
    """)
    r = run_cli_in_process("validate", "s.yaml", cwd=tmp_path)
    assert r.code == 2 and "routes.clarify: document collection not found" in r.err, r
