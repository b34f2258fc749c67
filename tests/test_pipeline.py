"""The reference pipeline: router, retrieval, permissions, budget, slots, and model calls
against a real OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO, run_cli_in_process, write, query
from evalgate.documents import DocumentSet, GroupPermissions
from evalgate.pipeline import Pipeline, PipelineSpec
from evalgate.pipeline.context import Retriever
from evalgate.pipeline.router import Message, Router, parse_classifier_answer
from evalgate.pipeline.state import SlotFiller
from evalgate.pipeline.tokens import ESTIMATE, TokenCounter, estimate, token_counter
from evalgate.traces import User
from test_models import FakeOpenAI, server  # noqa: F401  (the same model server fixture)

ESTIMATOR = TokenCounter(ESTIMATE, estimate)
CUSTOMER = User(id="c-1", groups=["customer"])
STAFF = User(id="s-1", groups=["support"])

DOCS = """
{"id": "kb/refunds", "title": "Refund policy", "groups": ["customer", "support"], "text": "Refunds are paid within 30 days of delivery to the original card."}
{"id": "kb/refund-fraud", "title": "Refund fraud rules", "groups": ["support"], "text": "Refunds over 500 dollars need a second review for fraud."}
{"id": "kb/refund-times", "title": "Refund timing", "groups": ["customer"], "text": "A refund reaches the card in 5 to 7 business days after it is issued, sometimes sooner, depending on the bank and the card network involved."}
{"id": "kb/shipping", "title": "Shipping", "groups": ["*"], "text": "Standard shipping takes 3 to 5 business days."}
"""


@pytest.fixture
def docs(tmp_path: Path) -> DocumentSet:
    return DocumentSet.load(write(tmp_path / "docs.jsonl", DOCS))


def _spec(**over: Any) -> PipelineSpec:
    data: dict[str, Any] = {
        "slots": [{"name": "order_id", "pattern": r"(?<!\d)(\d{4})(?!\d)", "negated": r"\bnot\s+(\d{4})\b"}],
        "router": {"workflows": ["refunds"], "fallback": "clarify", "rules": [
            {"route": "handoff", "regex": r"\b(human|agent)\b"},
            {"route": "refunds", "keywords": ["refund", "money back"]},
            {"stay": True, "slot": "order_id"},
            {"route": "smalltalk", "regex": r"^(hi|hello|thanks)\b", "max_words": 4},
            {"route": "policy", "state": {"workflow": "*"}, "question": True, "name": "side question"},
            {"route": "policy", "min_score": 0.5},
        ]},
        "routes": {
            "refunds": {"context": {"query": "refund {{ input }}", "top_k": 2}, "model": {"params": {
                "lead": "{% if state.get('order_id') %}Order {{ state.order_id }}.{% endif %}"}}},
            "policy": {"context": {"top_k": 1}, "model": {}},
            "smalltalk": {"answer": [{"when": "^thanks", "text": "You're welcome!"}, {"text": "Hello {{ user.id }}!"}]},
            "handoff": {"handoff": True, "answer": "Passing you to a person."},
            "clarify": {"answer": "Sorry?"},
        },
    }
    data.update(over)
    return PipelineSpec.model_validate(data)


def _decide(spec: PipelineSpec, text: str, state: dict[str, Any] | None = None, best: float = 0.0) -> tuple[str, str] | None:
    slots = SlotFiller(spec.slots).extract(text)
    d = Router(spec.router, spec.workflows()).decide(Message.of(text, state or {}, slots), lambda _route: best)
    return (d.route, d.reason) if d else None


def test_router_rules_in_order_with_reasons() -> None:
    spec = _spec()
    assert _decide(spec, "I want a REFUND") == ("refunds", "rule 2: keyword 'refund'")
    assert _decide(spec, "get me an agent about my refund") == ("handoff", "rule 1: pattern matched 'agent'")
    # stay in the workflow when the message gives the slot; a clear topic change (rule 1, 2) wins over staying
    assert _decide(spec, "sorry, it's 5521 not 5512", {"workflow": "refunds"}) == (
        "refunds", "rule 3: stayed in refunds: gives order_id 5521")
    assert _decide(spec, "it's 5521") is None  # no workflow to stay in, nothing else fires
    assert _decide(spec, "hi there") == ("smalltalk", "rule 4: pattern matched 'hi', ≤ 4 words")
    assert _decide(spec, "hi there, how are you doing today?") is None  # too long for smalltalk
    assert _decide(spec, "what is the return window?", {"workflow": "refunds"}) == ("policy", "side question")
    assert _decide(spec, "shipping speed", best=0.7) == ("policy", "rule 6: retrieval score 0.70 ≥ 0.5")
    assert _decide(spec, "shipping speed", best=0.2) is None


def test_classifier_answers_are_validated_against_route_names() -> None:
    routes = ["refunds", "policy"]
    assert parse_classifier_answer(" Refunds.\n", routes) == "refunds"
    assert parse_classifier_answer("'policy'", routes) == "policy"
    assert parse_classifier_answer("I think refunds", routes) is None
    assert parse_classifier_answer("billing", routes) is None


def test_slots_take_the_last_value_not_negated() -> None:
    slots = SlotFiller(_spec().slots)
    assert slots.extract("I want a refund for order 5512") == {"order_id": "5512"}
    assert slots.extract("sorry, it's 5521 not 5512") == {"order_id": "5521"}
    assert slots.extract("not 8812, 8821") == {"order_id": "8821"}
    assert slots.extract("no number here") == {}


def _lucene_bm25(tf: int, length: int, df: int, n: int = 4, avg_len: float = 10.75) -> float:
    """BM25 as Lucene scores it (bm25s's default): k1 1.5, b 0.75, idf ln(1 + (N - df + 0.5) / (df + 0.5))."""
    idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
    return idf * tf / (tf + 1.5 * (1 - 0.75 + 0.75 * length / avg_len))


def test_retrieval_ranks_then_filters_permission_threshold_rank_budget(docs: DocumentSet) -> None:
    retriever = Retriever(docs, GroupPermissions.of(docs), ESTIMATOR)
    # by hand: stemmed title+text tokens without stopwords; "refund" in 3 documents, "card" in 2
    #   kb/refunds 10 tokens (refund 2, card 1), kb/refund-fraud 11 (2, 0), kb/refund-times 16 (2, 2), kb/shipping 6
    expected = {"kb/refund-times": _lucene_bm25(2, 16, 3) + _lucene_bm25(2, 16, 2),
                "kb/refunds": _lucene_bm25(2, 10, 3) + _lucene_bm25(1, 10, 2),
                "kb/refund-fraud": _lucene_bm25(2, 11, 3)}
    ranked = [(d.id, s) for s, d, _ in retriever.scores("refund card")]
    assert [i for i, _ in ranked] == ["kb/refund-times", "kb/refunds", "kb/refund-fraud"]  # kb/shipping: no term
    assert all(math.isclose(s, expected[i], rel_tol=1e-5) for i, s in ranked), (ranked, expected)

    def run(user: User, **kw: Any) -> list[tuple[str, int, str | None]]:
        args = {"top_k": 3, "min_score": 0.0, "max_tokens": None, **kw}
        return [(c.doc.id, c.rank, c.excluded) for c in retriever.assemble("refund card", user, **args)]

    # the customer may not read the fraud rules: dropped first, whatever else applies
    assert run(CUSTOMER) == [("kb/refund-times", 1, None), ("kb/refunds", 2, None), ("kb/refund-fraud", 3, "permission")]
    # support staff may not read the customer-only timing document
    assert run(STAFF) == [("kb/refund-times", 1, "permission"), ("kb/refunds", 2, None), ("kb/refund-fraud", 3, None)]
    # top-k counts readable documents only
    assert run(STAFF, top_k=1) == [("kb/refund-times", 1, "permission"), ("kb/refunds", 2, None),
                                   ("kb/refund-fraud", 3, "rank")]
    # threshold: 0.5185 passes 0.5, 0.4947 does not
    assert run(CUSTOMER, min_score=0.5) == [("kb/refund-times", 1, None), ("kb/refunds", 2, "threshold"),
                                            ("kb/refund-fraud", 3, "permission")]
    # budget, ceil(chars/4): kb/refund-times 35 tokens (140 chars), kb/refunds 17 (65): 40 fits only the first
    tokens = {c.doc.id: c.tokens for c in retriever.assemble("refund card", CUSTOMER, top_k=3, min_score=0, max_tokens=None)}
    assert tokens == {"kb/refund-times": 35, "kb/refunds": 17, "kb/refund-fraud": 14}
    assert run(CUSTOMER, max_tokens=40) == [("kb/refund-times", 1, None), ("kb/refunds", 2, "budget"),
                                            ("kb/refund-fraud", 3, "permission")]
    # the lowest-ranked go first: once one does not fit, nothing ranked below it gets in (kb/refunds would fit 20)
    assert run(CUSTOMER, max_tokens=20) == [("kb/refund-times", 1, "budget"), ("kb/refunds", 2, "budget"),
                                            ("kb/refund-fraud", 3, "permission")]


def test_permission_truth_comes_from_the_suite_source_not_the_document_groups(docs: DocumentSet, tmp_path: Path) -> None:
    truth = GroupPermissions.load(write(tmp_path / "acl.yaml", "kb/refunds: [support]\nkb/refund-times: [customer]\n"))
    retriever = Retriever(docs, truth, ESTIMATOR)
    got = {c.doc.id: c.excluded for c in retriever.assemble("refund card", CUSTOMER, top_k=3, min_score=0, max_tokens=None)}
    # kb/refunds is closed to customers by the truth; kb/refund-fraud is unknown to it, so nobody reads it
    assert got == {"kb/refunds": "permission", "kb/refund-times": None, "kb/refund-fraud": "permission"}


def _turn(pipe: Pipeline, text: str, state: dict[str, Any] | None = None, user: User = CUSTOMER) -> dict[str, Any]:
    request = {"case_id": "c", "session_id": "s", "turn": 1, "repeat": 0, "input": text, "history": [],
               "state": state or {}, "user": user.model_dump()}
    return asyncio.run(pipe.turn(request))


def test_a_turn_records_route_context_model_state_and_the_token_counter(docs: DocumentSet) -> None:
    pipe = Pipeline(_spec(), docs, None, counter=ESTIMATOR)
    first = _turn(pipe, "I want a refund for order 5512 to my card")
    assert first["route"] == {"name": "refunds", "confidence": 0.9, "reason": "rule 2: keyword 'refund'"}
    assert first["state"] == {"order_id": "5512", "workflow": "refunds"}
    assert [(c["id"], c["used"], c["excluded"]) for c in first["context"]] == [
        ("kb/refund-times", True, None), ("kb/refunds", True, None), ("kb/refund-fraud", False, "permission")]
    assert first["output"] == ("Order 5512. Refund timing: A refund reaches the card in 5 to 7 business days after it is "
                               "issued, sometimes sooner, depending on the bank and the card network involved.")
    assert first["model"] == {"name": "builtin", "requested": "builtin", "provider": "evalgate-builtin", "params": {}}
    assert first["usage"]["cost_usd"] == 0.0 and first["usage"]["input_tokens"] > 0
    assert first["extra"]["pipeline"]["token_counter"] == ESTIMATE
    assert set(first["latency_ms"]) == {"total", "route", "context", "model"}
    # the user corrects the number: the slot is overwritten, the answer follows
    second = _turn(pipe, "sorry, it's 5521 not 5512", first["state"])
    assert second["state"]["order_id"] == "5521" and "5521" in second["output"] and "5512" not in second["output"]
    assert second["route"]["reason"] == "rule 3: stayed in refunds: gives order_id 5521"
    # canned answers: no model, no usage
    bye = _turn(pipe, "thanks", second["state"])
    assert (bye["output"], bye["state"]["order_id"], "model" in bye, "usage" in bye) == ("You're welcome!", "5521", False, False)
    hand = _turn(pipe, "a human please", second["state"])
    assert hand["route"]["name"] == "handoff" and hand["state"]["handoff"] is True
    assert _turn(pipe, "zzz")["route"] == {"name": "clarify", "confidence": None, "reason": "no rule matched: fallback"}


def test_token_counter_never_downloads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "empty"))
    counter = token_counter("auto")
    assert counter.name == ESTIMATE and counter.count("abcdefghi") == 3
    assert token_counter("estimate").name == ESTIMATE


# --- YAML: where a mistake is reported ----------------------------------------------

PIPELINE_FILE = """\
version: 1
router:
  fallback: clarify
  rules:
    - {route: refunds, keywords: [refund]}
routes:
  refunds:
    context: {top_kk: 2}
    model: {name: builtin}
  clarify:
    answer: Sorry?
"""


def test_a_typo_in_a_pipeline_file_is_exit_2_at_its_line(tmp_path: Path) -> None:
    write(tmp_path / "pipe.yaml", PIPELINE_FILE)
    write(tmp_path / "s.yaml", "target: {pipeline: pipe.yaml}\ncases: [{input: hi}]\n")
    r = run_cli_in_process("validate", "s.yaml", cwd=tmp_path)
    assert r.code == 2, r
    assert "pipe.yaml:8:15: unknown key 'top_kk'" in r.err and "did you mean 'top_k'?" in r.err


def test_a_typo_inline_and_unknown_routes_are_exit_2(tmp_path: Path) -> None:
    write(tmp_path / "s.yaml", """
        target:
          pipeline:
            router: {fallback: clarify}
            routes:
              clarify: {answr: Sorry?}
        cases: [{input: hi}]
    """)
    r = run_cli_in_process("validate", "s.yaml", cwd=tmp_path)
    assert r.code == 2 and "s.yaml:5:17: target: unknown key 'answr'" in r.err and "did you mean 'answer'?" in r.err, r
    write(tmp_path / "s.yaml", """
        target:
          pipeline:
            router: {fallback: clarfy}
            routes:
              clarify: {answer: "{{ oops"}
        cases: [{input: hi}]
    """)
    r = run_cli_in_process("validate", "s.yaml", cwd=tmp_path)
    assert r.code == 2 and "s.yaml:5:25" in r.err and "template syntax error" in r.err, r
    write(tmp_path / "s.yaml", """
        target:
          pipeline:
            router: {fallback: clarfy}
            routes:
              clarify: {answer: Sorry?}
        cases: [{input: hi}]
    """)
    r = run_cli_in_process("validate", "s.yaml", cwd=tmp_path)
    assert r.code == 2 and "route 'clarfy'" in r.err and "did you mean 'clarify'?" in r.err, r


# --- against a real OpenAI-compatible server ----------------------------------------

SECRET = "sk-evalgate-test-secret-7731"


def _project(tmp_path: Path, base_url: str, prices: str = "") -> Path:
    write(tmp_path / "pyproject.toml", '[tool.evalgate]\nsuites = "suites"\n')
    write(tmp_path / "docs.jsonl", DOCS)
    write(tmp_path / "suites" / "llm.yaml", f"""
        name: llm
        documents: ../docs.jsonl
        target:
          pipeline:
            endpoint: {{base_url: "{base_url}", api_key_env: EVALGATE_TEST_KEY, max_retries: 0}}
            {prices}
            router:
              fallback: answer
              classifier: {{model: tiny-model, routes: [answer, refuse]}}
              rules: [{{route: answer, keywords: [refund]}}]
            routes:
              answer:
                context: {{top_k: 1}}
                model:
                  name: tiny-model
                  params: {{temperature: 0}}
                  prompt: "Answer from {{% for d in context %}}{{{{ d.id }}}}{{% endfor %}}"
              refuse: {{answer: "No."}}
        cases:
          - {{id: a, user: {{id: u, groups: [customer]}}, input: refund to my card, expect: {{output: {{contains: ["echo: refund"]}}}}}}
          - {{id: b, user: {{id: u, groups: [customer]}}, input: how long is shipping?, expect: {{route: answer}}}}
          - {{id: c, user: {{id: u, groups: [customer]}}, turns: [{{input: refund please}}, {{input: a refund again}}]}}
    """)
    return tmp_path


def test_model_calls_cache_offline_and_no_key_anywhere(server: str, tmp_path: Path) -> None:
    project = _project(tmp_path, server)
    env = {"EVALGATE_TEST_KEY": SECRET}
    r = run_cli_in_process("run", "--json", "--markdown", "out.md", "--junit", "out.xml", cwd=project, env=env)
    assert r.code == 0, r
    # case b: no rule fired, the classifier answered "echo: ..." (not a route), so the fallback decided
    calls = len(FakeOpenAI.requests)
    assert calls == 5 and set(FakeOpenAI.auth) == {f"Bearer {SECRET}"}
    asked = {r["messages"][-1]["content"]: r["messages"][0]["content"] for r in FakeOpenAI.requests}
    assert asked["refund to my card"] == "Answer from kb/refund-times"  # the top readable passage reached the prompt
    suite = r.json()["suites"][0]
    assert suite["metrics"]["pass_rate"] == 1.0
    story = run_cli_in_process("show", "latest", "b", "--json", cwd=project).json()["repeats"][0]["turns"][0]
    assert story["route"]["reason"].startswith("classifier answered 'echo: how long is shipping?', not a route")
    assert story["usage"] == {"input_tokens": 22, "output_tokens": 6}  # tiny-model has no price: no cost
    # a warm re-run makes no call at all
    r = run_cli_in_process("run", "--json", cwd=project, env=env)
    assert r.code == 0 and len(FakeOpenAI.requests) == calls, r
    # refresh calls again; off neither reads nor writes the cache
    assert run_cli_in_process("run", "--cache-mode", "refresh", cwd=project, env=env).code == 0
    assert len(FakeOpenAI.requests) == 2 * calls
    assert run_cli_in_process("run", "--cache-mode", "off", cwd=project, env=env).code == 0
    assert len(FakeOpenAI.requests) == 3 * calls
    # export → import into an empty cache → offline run passes with zero calls
    assert run_cli_in_process("cache", "export", "recorded.jsonl", cwd=project).code == 0
    r = run_cli_in_process("cache", "import", "recorded.jsonl", "--cache", "fresh.sqlite", cwd=project)
    assert r.code == 0 and f"imported {calls} response(s)" in r.out, r
    r = run_cli_in_process("run", "--offline", "--cache", "fresh.sqlite", cwd=project, env=env)
    assert r.code == 0 and len(FakeOpenAI.requests) == 3 * calls, r
    # the key reached the server and nowhere else
    for path in project.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    assert SECRET not in r.out + r.err


def test_offline_miss_stops_the_run_naming_the_case(server: str, tmp_path: Path) -> None:
    project = _project(tmp_path, server)
    r = run_cli_in_process("run", "--offline", "--json", "-j", "1", cwd=project, env={"EVALGATE_TEST_KEY": SECRET})
    assert r.code == 3, r
    reasons = " ".join(r.json()["suites"][0]["verdict"]["reasons"])
    assert "the run was stopped: case a turn 1: offline and no cached answer for model tiny-model" in reasons
    assert "evalgate cache export FILE" in reasons and len(FakeOpenAI.requests) == 0


def test_max_cost_stops_new_calls_and_exits_3(server: str, tmp_path: Path) -> None:
    # $1 per input token: the first call (11 tokens in, 3 out) spends $11.000003
    project = _project(tmp_path, server, "prices: {tiny-model: {input: 1000000, output: 1}}")
    r = run_cli_in_process("run", "--max-cost", "5", "-j", "1", "--json", cwd=project, env={"EVALGATE_TEST_KEY": SECRET})
    assert r.code == 3, r
    assert len(FakeOpenAI.requests) == 1
    reasons = " ".join(r.json()["suites"][0]["verdict"]["reasons"])
    assert "--max-cost $5 reached (spent $11.000003 on 1 model call(s)); no new model calls were started" in reasons
    story = run_cli_in_process("show", "latest", "a", "--json", cwd=project).json()["repeats"][0]["turns"][0]
    assert story["usage"]["cost_usd"] == 11.000003


def test_a_case_the_budget_stopped_is_not_stored_and_resume_runs_it(server: str, tmp_path: Path) -> None:
    """b's call is refused (the budget is spent by a's), and c never starts: neither is stored as an errored case
    (--resume skips every stored case, so a stored "--max-cost reached" would never be run again); resuming with a
    larger budget runs both."""
    project = _project(tmp_path, server, "prices: {tiny-model: {input: 1000000, output: 1}}")
    env = {"EVALGATE_TEST_KEY": SECRET}
    r = run_cli_in_process("run", "--max-cost", "5", "-j", "1", "--json", cwd=project, env=env)
    assert r.code == 3, r
    assert "'evalgate run --resume latest' runs the rest" in " ".join(r.json()["suites"][0]["verdict"]["reasons"])
    db = project / ".evalgate" / "evalgate.duckdb"
    assert query(db, "SELECT case_id, errored FROM cases") == [("a", False)]
    assert query(db, "SELECT status, cases_done FROM runs") == [("stopped", 1)]
    r = run_cli_in_process("run", "--resume", "latest", "--max-cost", "1000", "-j", "1", "--json", cwd=project, env=env)
    assert r.code == 0, r
    assert query(db, "SELECT case_id, errored FROM cases ORDER BY case_id") == [("a", False), ("b", False),
                                                                                  ("c", False)]


def test_max_cost_is_the_whole_runs_budget_not_each_suites(server: str, tmp_path: Path) -> None:
    # $11.000003 per call. Suite "a-one" (1 case) spends $11; "b-two" makes one more call ($22 > $15) and stops.
    # With a budget per suite, b-two would have made both of its calls and the run would have passed.
    project = _project(tmp_path, server, "prices: {tiny-model: {input: 1000000, output: 1}}")
    text = (project / "suites" / "llm.yaml").read_text()
    head, cases = text.split("\ncases:\n")
    lines = [line for line in cases.splitlines() if line.strip()]
    (project / "suites" / "llm.yaml").unlink()
    (project / "suites" / "a-one.yaml").write_text(head.replace("name: llm", "name: a-one") + "\ncases:\n" + lines[0] + "\n")
    (project / "suites" / "b-two.yaml").write_text(head.replace("name: llm", "name: b-two") + "\ncases:\n"
                                                   + lines[0] + "\n" + lines[0].replace("id: a,", "id: a2,") + "\n")
    r = run_cli_in_process("run", "--max-cost", "15", "-j", "1", "--cache-mode", "off", "--json", cwd=project,
                env={"EVALGATE_TEST_KEY": SECRET})
    assert r.code == 3, r
    suites = {s["suite"]: s for s in r.json()["suites"]}
    assert suites["a-one"]["verdict"]["status"] == "pass"
    assert "--max-cost $15 reached (spent $22.000006 on 2 model call(s))" in " ".join(suites["b-two"]["verdict"]["reasons"])
    assert len(FakeOpenAI.requests) == 2


def test_the_bundled_pipeline_suite_passes_offline(tmp_path: Path) -> None:
    r = run_cli_in_process("run", "suites/support-pipeline.yaml", "--offline", "--json", "--db", str(tmp_path / "s.duckdb"), cwd=REPO)
    assert r.code == 0, r
    s = r.json()["suites"][0]
    assert s["metrics"]["pass_rate"] == 1.0 and s["cases"] >= 30


def test_recorded_elapsed_is_the_model_latency_not_queueing(server: str, docs: DocumentSet) -> None:
    from evalgate.models.client import ModelOptions
    from evalgate.targets.pipeline import PipelineTarget

    FakeOpenAI.delay = 0.3
    spec = _spec(endpoint={"base_url": server, "max_retries": 0})
    spec.routes["refunds"].model.name = "tiny-model"  # type: ignore[union-attr]
    target = PipelineTarget(spec.model_dump(), documents=docs, models=ModelOptions(cache_mode="off", concurrency=2),
                            concurrency=2)

    async def go() -> list[float]:
        await target.start()
        try:
            async def one(i: int) -> float:
                request = {"case_id": f"c{i}", "session_id": f"s{i}", "turn": 1, "repeat": 0, "history": [],
                           "input": f"refund {i}", "state": {}, "user": CUSTOMER.model_dump()}
                reply = await target.call(request, None, 10)
                assert reply.raw["route"]["name"] == "refunds" and reply.raw["output"] == f"echo: refund {i}"
                return float(reply.elapsed_ms or 0)
            return sorted(await asyncio.gather(*(one(i) for i in range(6))))
        finally:
            await target.close()

    elapsed = asyncio.run(go())
    # six calls, two at a time: four wait for a slot in the client (up to 600 ms), which is evalgate's queue,
    # not the system's latency, so every recorded time is about the server's 300 ms
    assert elapsed[0] >= 300 and elapsed[-1] < 550, elapsed
    assert FakeOpenAI.max_in_flight == 2


def test_the_readme_pipeline_example_is_valid() -> None:
    import re

    import yaml

    section = (REPO / "docs" / "targets.md").read_text(encoding="utf-8").split("## The reference pipeline", 1)[1]
    block = re.search(r"```yaml\n(.*?)\n```", section, re.S)
    assert block is not None
    spec = PipelineSpec.model_validate(yaml.safe_load(block.group(1)))
    assert spec.router.rules[2].stay and spec.routes["clarify"].answers()[0].when == r"^(hi|hello)\b"
    assert spec.router.rules[4].scored is not None and list(spec.router.rules[4].scored) == ["order_status", "refunds"]
    assert spec.endpoint is not None and spec.endpoint.headers["X-Tenant"] == "acme"
    assert spec.routes["refunds"].documents is not None


def test_structured_model_output_updates_state_and_template_errors_fail_the_turn(docs: DocumentSet) -> None:
    from evalgate.pipeline import TurnFailed
    from evalgate.pipeline.state import split_structured

    assert split_structured('{"answer": "Done.", "state": {"order_id": "5521"}}') == ("Done.", {"order_id": "5521"})
    assert split_structured('```json\n{"answer": "x", "state": {"a": 1}}\n```') == ("x", {"a": 1})
    assert split_structured("plain text") == ("plain text", None)
    spec = _spec()
    spec.routes["clarify"].answer = "Sorry {{ state.name }}"  # strict: an undefined variable is an error
    with pytest.raises(TurnFailed, match=r"template routes.clarify.answer\[0\] failed: UndefinedError"):
        _turn(Pipeline(spec, docs, None, counter=ESTIMATOR), "zzz")


def test_a_missing_api_key_variable_is_exit_2_before_any_turn(server: str, tmp_path: Path) -> None:
    project = _project(tmp_path, server)
    r = run_cli_in_process("run", cwd=project)
    assert r.code == 2 and "EVALGATE_TEST_KEY (the model API key) is not set" in r.err, r
    assert len(FakeOpenAI.requests) == 0


def test_cache_import_rejects_a_file_that_is_not_an_export(tmp_path: Path) -> None:
    write(tmp_path / "bad.jsonl", '{"model": "m"}\n')
    r = run_cli_in_process("cache", "import", "bad.jsonl", "--cache", "c.sqlite", cwd=tmp_path)
    assert r.code == 2 and "bad.jsonl is not a cache export" in r.err, r
    r = run_cli_in_process("cache", "import", "missing.jsonl", "--cache", "c.sqlite", cwd=tmp_path)
    assert r.code == 2 and "no such cache export" in r.err, r


def test_target_override_runs_the_hand_written_suite_through_the_pipeline(tmp_path: Path) -> None:
    r = run_cli_in_process("run", "suites/support.yaml", "--tags", "permissions", "--target", "pipeline:pipelines/support.yaml",
                "--json", "--db", str(tmp_path / "s.duckdb"), cwd=REPO)
    assert r.code == 0, r  # 24 case runs cannot show the variants' misses beyond chance: inconclusive, named
    s = r.json()["suites"][0]
    # the 9 written permission cases pass; their recovery variants run too (the pipeline reads no typos)
    assert s["target"] == "pipeline: pipelines/support.yaml" and s["cases"] > 9
    assert s["failing"] and all("~" in c["case_id"] for c in s["failing"])


def test_validate_warns_when_the_model_key_is_not_set(server: str, tmp_path: Path) -> None:
    project = _project(tmp_path, server)
    r = run_cli_in_process("validate", "--json", cwd=project)
    assert r.code == 0, r
    assert any("EVALGATE_TEST_KEY is not set" in w for w in r.json()["suites"][0]["warnings"])
    r = run_cli_in_process("validate", "--json", cwd=project, env={"EVALGATE_TEST_KEY": SECRET})
    assert not any("EVALGATE_TEST_KEY" in w for w in r.json()["suites"][0]["warnings"])
