"""The prompt as sent: the messages the model received, from OTLP imports, the reference pipeline and targets;
stored, shown, and checked by the prompt and permissions scorers."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    REPO,
    CLIResult,
    _loop_running,
    query,
    run_cli,
    run_cli_in_process,
    write,
)
from test_models import FakeOpenAI, server  # noqa: F401  (the same model server fixture)
from test_pipeline import DOCS as PIPELINE_DOCS
from test_pipeline import ESTIMATOR, _spec
from test_report import Watched, _blobs, browser  # noqa: F401  (the headless Chromium fixture)

from evalgate.documents import Document, DocumentSet, GroupPermissions
from evalgate.pipeline import Pipeline
from evalgate.scorers import Score, ScoreContext, bind
from evalgate.suite import Case
from evalgate.traces import MAX_PROMPT_CHARS, Trace, User
from evalgate.traces.otlp import import_otlp


def _cli(*args: str, cwd: Path) -> CLIResult:
    """In this process, but in a subprocess once the browser fixture's event loop runs in this thread."""
    return run_cli(*args, cwd=cwd) if _loop_running() else run_cli_in_process(*args, cwd=cwd)


INSTRUMENTED = REPO / "tests" / "fixtures" / "otlp" / "instrumented"
SYSTEM = {"role": "system", "content": "You are a support assistant."}


# --- OTLP import ---------------------------------------------------------------------------------


def _sent(expected: list[dict[str, Any]]) -> dict[tuple[str, int], list[dict[str, Any]]]:
    """What the fixture app sent per (session, turn): its system prompt, the history so far, the user's message.

    The OpenInference run records every turn's shown answer (its fallback too); the app is the same in every mode.
    """
    sent: dict[tuple[str, int], list[dict[str, Any]]] = {}
    history: dict[str, list[dict[str, Any]]] = {}
    for t in expected:
        earlier = history.setdefault(t["session"], [])
        sent[(t["session"], len(earlier) // 2 + 1)] = [SYSTEM, *earlier, {"role": "user", "content": t["input"]}]
        earlier += [{"role": "user", "content": t["input"]}, {"role": "assistant", "content": t["output"]}]
    return sent


@pytest.mark.parametrize("flavour", ["openinference", "genai-events", "genai-latest"])
def test_import_keeps_the_messages_the_model_received(flavour: str, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    stats = import_otlp([INSTRUMENTED / f"{flavour}.otlp.jsonl"], out)
    turns = [json.loads(line) for line in out.read_text().splitlines()]
    counts: dict[str, list[int]] = {}
    for t in turns:
        counts.setdefault(t["session_id"], []).append(len(t["prompt"]))
    # history is carried: two more messages a turn (the user's last message and what they were shown)
    assert counts == {"s-101": [2, 4], "s-102": [2, 4, 6], "s-103": [2]}
    assert stats.prompts == 6 and stats.to_dict()["prompts"] == 6
    expected = json.loads((INSTRUMENTED / "expected.json").read_text())["openinference"]["turns"]
    sent = _sent(expected)
    for t in turns:
        assert t["prompt"][0] == SYSTEM  # the system prompt first
        assert t["prompt"] == sent[(t["session_id"], t["turn"])], (flavour, t["session_id"], t["turn"])
    # the failed call's prompt is kept, and the next turn's carries the fallback the user was shown
    crashed = next(t for t in turns if t["input"] == "crash please")
    assert crashed["error"] and crashed["prompt"][-1] == {"role": "user", "content": "crash please"}
    after = next(t for t in turns if t["input"] == "ok, and when will it arrive?")
    assert after["prompt"][-2]["content"].startswith("Sorry, I can't look that up right now.")
    Trace.model_validate(after)  # a native trace


def _attr(key: str, value: Any) -> dict[str, Any]:
    return {"key": key, "value": {"intValue": str(value)} if isinstance(value, int) else {"stringValue": value}}


def _export(*spans: tuple[str, str, str, dict[str, Any]]) -> str:
    """One OTLP export line of spans (span id, parent id, name, attributes), 1 ms apart."""
    rows = [{"traceId": "ab" * 16, "spanId": sid, "parentSpanId": parent, "name": name,
             "startTimeUnixNano": str(1_763_200_000_000_000_000 + i * 1_000_000),
             "endTimeUnixNano": str(1_763_200_000_000_000_000 + i * 1_000_000 + 500_000),
             "attributes": [_attr(k, v) for k, v in attrs.items()]}
            for i, (sid, parent, name, attrs) in enumerate(spans)]
    return json.dumps({"resourceSpans": [{"resource": {"attributes": [_attr("service.name", "app")]},
                                          "scopeSpans": [{"spans": rows}]}]}) + "\n"


def test_system_instructions_tool_results_and_a_later_embedding_call(tmp_path: Path) -> None:
    long = "x" * (MAX_PROMPT_CHARS + 10)
    line = _export(
        ("0000000000000001", "", "invoke_agent support", {"gen_ai.operation.name": "invoke_agent"}),
        ("0000000000000002", "0000000000000001", "chat gpt-4o-mini", {
            "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.system_instructions": json.dumps([{"type": "text", "content": "Be brief."}]),
            "gen_ai.input.messages": json.dumps([
                {"role": "user", "parts": [{"type": "text", "content": "where is 5521?"}]},
                {"role": "assistant", "parts": [{"type": "tool_call", "id": "c1", "name": "find_order",
                                                 "arguments": {"id": "5521"}}]},
                {"role": "tool", "parts": [{"type": "tool_call_response", "id": "c1", "response": {"status": "shipped"}}]},
                {"role": "user", "parts": [{"type": "text", "content": long}]}])}),
        # an embeddings call after the answer records no messages: the prompt stays the chat call's
        ("0000000000000003", "0000000000000001", "embeddings text-embedding-3-small", {
            "gen_ai.operation.name": "embeddings", "gen_ai.request.model": "text-embedding-3-small"}),
    )
    src = write(tmp_path / "agent.otlp.jsonl", line)
    out = tmp_path / "out.jsonl"
    import_otlp([src], out)
    turn = json.loads(out.read_text())
    prompt = turn["prompt"]
    assert [m["role"] for m in prompt] == ["system", "user", "assistant", "tool", "user"]
    assert prompt[0]["content"] == "Be brief."  # kept apart from the input messages, placed first
    assert prompt[2] == {"role": "assistant", "content": "", "tool_calls": [{"name": "find_order", "arguments": {"id": "5521"}}]}
    assert prompt[3]["content"] == '{"status": "shipped"}'
    assert prompt[4]["content"] == "x" * MAX_PROMPT_CHARS + f" … [cut: {MAX_PROMPT_CHARS + 10:,} characters in all]"
    assert turn["extra"]["otlp"]["prompt_cut"] == {"messages": 5, "kept": 5, "texts_cut": 1}


def test_an_imported_prompt_is_redacted_like_the_rest_of_the_turn(tmp_path: Path) -> None:
    from evalgate.redact import build_redactor

    line = _export(("0000000000000001", "", "chat gpt-4o-mini", {
        "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.input.messages": json.dumps([
            {"role": "system", "parts": [{"type": "text", "content": "The customer is ann@example.com."}]},
            {"role": "user", "parts": [{"type": "text", "content": "hi"}]}])}))
    out = tmp_path / "out.jsonl"
    stats = import_otlp([write(tmp_path / "chat.otlp.jsonl", line)], out, redactor=build_redactor())
    assert json.loads(out.read_text())["prompt"][0]["content"] == "The customer is <EMAIL_1>."
    assert stats.redacted == {"email": 1}


def test_a_trace_without_a_prompt_still_reads_and_content_parts_are_read_as_text() -> None:
    assert Trace.model_validate({"v": 1, "input": "hi", "output": "hello"}).prompt is None
    t = Trace.model_validate({"output": "ok", "prompt": [
        {"role": "system", "content": "S"},
        {"role": "user", "content": [{"type": "text", "text": "look at"}, {"type": "image_url", "image_url": {"url": "x"}},
                                     {"type": "text", "text": "this"}]},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "42"}]})
    assert [(m.role, m.content) for m in t.prompt or []] == [("system", "S"), ("user", "look at\nthis"),
                                                             ("assistant", ""), ("tool", "42")]
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="prompt.0.contnet"):
        Trace.model_validate({"output": "ok", "prompt": [{"role": "user", "contnet": "typo"}]})


# --- the reference pipeline ------------------------------------------------------------------------


def test_the_builtin_model_records_the_prompt_it_was_given(tmp_path: Path) -> None:
    docs = DocumentSet.load(write(tmp_path / "docs.jsonl", PIPELINE_DOCS))
    spec = _spec(routes={"refunds": {"context": {"query": "refund {{ input }}", "top_k": 1}, "model": {
        "prompt": "Answer from {% for d in context %}[{{ d.id }}] {{ d.text }}{% endfor %}"}},
        "policy": {"answer": "See the policy."}, "smalltalk": {"answer": "Hi."}, "handoff": {"answer": "Bye."},
        "clarify": {"answer": "Sorry?"}})
    pipe = Pipeline(spec, docs, None, counter=ESTIMATOR)
    request = {"case_id": "c", "session_id": "s", "turn": 2, "repeat": 0, "input": "refund for 5512 please",
               "history": [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "Hi."}],
               "state": {}, "user": {"id": "c-1", "groups": ["customer"]}}
    trace = asyncio.run(pipe.turn(request))
    top = trace["context"][0]["id"]
    assert trace["prompt"] == [
        {"role": "system", "content": f"Answer from [{top}] " + next(d.text for d in docs if d.id == top)},
        {"role": "user", "content": "hello"}, {"role": "assistant", "content": "Hi."},
        {"role": "user", "content": "refund for 5512 please"}]
    # an answer written in the pipeline had no model call: no prompt
    assert "prompt" not in asyncio.run(pipe.turn({**request, "input": "thanks"}))


def _project(tmp_path: Path, base_url: str) -> Path:
    write(tmp_path / "pyproject.toml", '[tool.evalgate]\nsuites = "suites"\n')
    write(tmp_path / "docs.jsonl", PIPELINE_DOCS)
    write(tmp_path / "suites" / "chat.yaml", f"""
        name: chat
        documents: ../docs.jsonl
        target:
          pipeline:
            endpoint: {{base_url: "{base_url}", max_retries: 0}}
            router: {{fallback: answer, rules: [{{route: answer, keywords: [refund]}}]}}
            routes:
              answer:
                context: {{top_k: 1}}
                model:
                  name: tiny-model
                  params: {{temperature: 0}}
                  prompt: "Answer from {{% for d in context %}}[{{{{ d.id }}}}] {{{{ d.text }}}}{{% endfor %}}"
        cases:
          - id: conv
            user: {{id: u, groups: [customer]}}
            turns:
              - input: refund to my card
                expect: {{prompt: {{grows: true, first_role: system, max_messages: 2}}}}
              - input: how long does a refund take?
                expect: {{prompt: {{grows: true, contains: ["echo: refund to my card"]}}}}
              - input: and shipping?
                expect: {{prompt: {{grows: true, min_messages: 6, roles: [system, user, assistant]}}}}
    """)
    return tmp_path


def test_a_pipeline_run_stores_the_prompt_the_server_received(server: str, tmp_path: Path) -> None:  # noqa: F811
    project = _project(tmp_path, server)
    r = _cli("run", "--json", "--html", "report.html", cwd=project)
    assert r.code == 0, r
    received = [body["messages"] for body in FakeOpenAI.requests]
    assert [len(m) for m in received] == [2, 4, 6]
    story = _cli("show", "latest", "conv", "--json", cwd=project).json()["repeats"][0]["turns"]
    assert [t["prompt"] for t in story] == received  # stored exactly as sent
    assert received[2][0]["content"].startswith("Answer from [kb/shipping] Standard shipping")
    scores = [next(s for s in t["scores"] if s["scorer"] == "prompt") for t in story]
    assert [(s["passed"], s["explanation"]) for s in scores] == [
        (True, "2 message(s) (system, user); nothing earlier to grow from"),
        (True, "4 message(s) (system, user, assistant, user); 2 more than turn 1's 2"),
        (True, "6 message(s) (system, user, assistant, user, assistant, user); 2 more than turn 2's 4")]
    rows = query(project / ".evalgate" / "evalgate.duckdb", "SELECT trace FROM turns ORDER BY turn")
    assert [len(json.loads(row[0])["prompt"]) for row in rows] == [2, 4, 6]
    # show prints it compactly: the count by role, then each message's role and first line
    text = _cli("show", "latest", "conv", cwd=project).out
    assert "prompt: 6 message(s) (1 system, 3 user, 2 assistant)" in text
    assert "1. system: Answer from [kb/shipping] Standard shipping takes 3 to 5 business days." in text
    assert "5. assistant: echo: how long does a refund take?" in text and "6. user: and shipping?" in text
    # the HTML story carries it too
    _, _, chunks = _blobs((project / "report.html").read_text(encoding="utf-8"))
    assert [t["prompt"] for t in chunks[0][0]["reps"][0]["turns"]] == received


def test_the_html_story_shows_the_prompt_collapsed(browser: Any, server: str, tmp_path: Path) -> None:  # noqa: F811
    project = _project(tmp_path, server)
    assert _cli("run", "--html", "report.html", cwd=project).code == 0
    w = Watched(browser)
    page = w.open(project / "report.html")
    item = page.locator("#cases-list > li", has_text="conv")
    item.locator("summary").first.click()
    last = item.locator(".turn").nth(2)
    last.wait_for()
    prompt = last.locator("details")
    assert prompt.get_attribute("open") is None  # collapsed
    assert prompt.locator("summary").inner_text() == "6 message(s): 1 system, 3 user, 2 assistant"
    prompt.locator("summary").click()
    messages = prompt.locator("ol.prompt > li")
    assert messages.count() == 6
    assert messages.nth(0).inner_text().startswith("system\nAnswer from [kb/shipping]")
    assert messages.nth(5).inner_text() == "user\nand shipping?"
    w.assert_clean()


def test_show_cuts_a_long_prompt_to_its_first_and_latest_messages() -> None:
    from rich.console import Console
    from rich.tree import Tree

    from evalgate.reporters.console import _add_prompt

    tree = Tree("turn")
    _add_prompt(tree, [{"role": "system", "content": "\n  Rules:\n" + "a" * 300}]
                + [{"role": "user" if i % 2 else "assistant", "content": f"m{i}"} for i in range(1, 12)])
    console = Console(record=True, width=200, color_system=None)
    console.print(tree)
    lines = [line.strip("│├└─ ") for line in console.export_text().splitlines()]
    assert lines[1:] == ["prompt: 12 message(s) (1 system, 6 user, 5 assistant)", "1. system: Rules: …",
                         "2. user: m1", "… 5 more", "8. user: m7", "9. assistant: m8", "10. user: m9",
                         "11. assistant: m10", "12. user: m11"]


FORGETFUL = """
def respond(req):
    # sends the model only the latest message: the conversation's history is dropped
    prompt = [{"role": "system", "content": "You help."}, {"role": "user", "content": req["input"]}]
    return {"output": "ok", "prompt": prompt}
"""


def test_a_target_that_drops_the_history_fails_grows(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", '[tool.evalgate]\nsuites = "suites"\n')
    write(tmp_path / "forgetful.py", FORGETFUL)
    write(tmp_path / "suites" / "s.yaml", """
        name: s
        target: {python: forgetful:respond}
        cases:
          - id: two
            turns:
              - {input: hi, expect: {prompt: {grows: true}}}
              - {input: my order is 5521, expect: {prompt: {grows: true}}}
    """)
    r = _cli("run", cwd=tmp_path)
    assert r.code == 1, r
    assert "prompt: 2 message(s), not more than turn 1's 2: the history was not carried" in r.out
    story = _cli("show", "latest", "two", "--json", cwd=tmp_path).json()["repeats"][0]["turns"]
    assert story[1]["prompt"] == [{"role": "system", "content": "You help."},
                                  {"role": "user", "content": "my order is 5521"}]


# --- the prompt scorer --------------------------------------------------------------------------


def _msgs(*pairs: str) -> list[dict[str, str]]:
    return [{"role": role, "content": content} for role, content in zip(pairs[::2], pairs[1::2])]


def prompt_score(args: Any, prompt: list[dict[str, str]] | None, *earlier: list[dict[str, str]] | None,
                 resumed: bool = False) -> Score:
    case = Case("c", 0, [], User(), {}, (), "x")
    before = tuple(Trace(output="ok", turn=i, prompt=p) for i, p in enumerate(earlier, 1))
    request: dict[str, Any] = {"state": {}, "input": "x", **({"resumed": True} if resumed else {})}
    ctx = ScoreContext(case, len(earlier) + 1, request, Trace(output="ok", prompt=prompt),
                       previous=before[-1] if before else None, earlier=before)
    return bind("prompt", args).run_sync(ctx)


TWO = _msgs("system", "You help.", "user", "hi")
FOUR = _msgs("system", "You help.", "user", "hi", "assistant", "Hello!", "user", "my order 5521")


@pytest.mark.parametrize("args, prompt, earlier, passed, explanation", [
    ({"grows": True}, FOUR, [TWO], True, "4 message(s) (system, user, assistant, user); 2 more than turn 1's 2"),
    ({"grows": True}, TWO, [TWO], False,
     "2 message(s), not more than turn 1's 2: the history was not carried; the prompt has 2 message(s) (system, user)"),
    # an earlier turn without a model call (no prompt) is skipped: turn 1 is the one to grow from
    ({"grows": True}, TWO, [TWO, None], False,
     "2 message(s), not more than turn 1's 2: the history was not carried; the prompt has 2 message(s) (system, user)"),
    ({"grows": True}, TWO, [], True, "2 message(s) (system, user); nothing earlier to grow from"),
    ({"min_messages": 3, "first_role": "user"}, TWO, [], False,
     "2 message(s), fewer than 3; the first message is system, expected user; the prompt has 2 message(s) (system, user)"),
    ({"roles": ["system", "tool"]}, FOUR, [], False,
     "no tool message; the prompt has 4 message(s) (system, user, assistant, user)"),
    ({"contains": ["ORDER 5521", "You help"], "not_contains": "hello"}, FOUR, [], False,
     "forbidden 'hello' in message 3 (assistant); the prompt has 4 message(s) (system, user, assistant, user)"),
    ({"contains": "ORDER 5521", "case_sensitive": True}, FOUR, [], False,
     "missing 'ORDER 5521'; the prompt has 4 message(s) (system, user, assistant, user)"),
    ({"max_messages": 4, "contains": "5521"}, FOUR, [], True, "4 message(s) (system, user, assistant, user)"),
    ({"min_messages": 1}, None, [], False,
     "the trace has no prompt: the target did not report the messages the model received"),
    ({"min_messages": 1, "missing": "pass"}, None, [], True,
     "the trace has no prompt: the target did not report the messages the model received (missing: pass)"),
])
def test_prompt_scorer(args: Any, prompt: Any, earlier: list[Any], passed: bool, explanation: str) -> None:
    s = prompt_score(args, prompt, *earlier)
    assert (s.passed, s.explanation) == (passed, explanation)
    if prompt is not None:
        assert s.metrics == {"messages": float(len(prompt))}


def test_prompt_scorer_values_and_a_resumed_session() -> None:
    assert prompt_score({"min_messages": 3, "roles": "system"}, TWO).value == 0.5
    # a resumed session starts a new history: it has nothing to grow from
    s = prompt_score({"grows": True}, TWO, FOUR, resumed=True)
    assert s.passed and s.explanation.endswith("nothing earlier to grow from")


def test_prompt_scorer_arguments_are_checked_when_bound() -> None:
    from evalgate.scorers import ScorerArgError

    with pytest.raises(ScorerArgError, match="name a check"):
        bind("prompt", {})
    with pytest.raises(ScorerArgError, match="min_messages 5 is more than max_messages 2"):
        bind("prompt", {"min_messages": 5, "max_messages": 2})
    with pytest.raises(ScorerArgError, match="has no argument 'grow'"):
        bind("prompt", {"grow": True})


# --- permissions: the prompt is checked too -----------------------------------------------------

DOCS = DocumentSet([
    Document("kb/refund-policy", "Refund policy", ("customer", "support"), "Refunds within 30 days."),
    Document("kb/internal-fraud-rules", "Fraud rules (internal)", ("support",),
             "Refunds over 500 dollars from a new account are held for a manual fraud review by the risk team."),
])
CUSTOMER = User(id="u-17", groups=["customer"])


def permissions(prompt: list[dict[str, str]], args: Any = None, user_input: str = "x") -> Score:
    case = Case("c", 0, [], CUSTOMER, {}, (), "x")
    request = {"user": {"id": CUSTOMER.id, "groups": list(CUSTOMER.groups)}, "state": {}, "input": user_input,
               "history": []}
    trace = Trace(output="Refunds are paid within 30 days.", context=[{"id": "kb/refund-policy"}], prompt=prompt)
    ctx = ScoreContext(case, 1, request, trace, None, None, DOCS, GroupPermissions.of(DOCS))
    return bind("permissions", args).run_sync(ctx)


def test_a_document_placed_only_in_the_prompt_is_a_leak() -> None:
    # the system reports only the readable document as context, and the answer is clean; the prompt is not
    fraud = next(d.text for d in DOCS if d.id == "kb/internal-fraud-rules")
    quoted = _msgs("system", f"Answer from: Refunds within 30 days. {fraud}", "user", "x")
    s = permissions(quoted)
    assert not s.passed and s.metrics == {"leaks": 1.0, "unknown": 0.0}
    assert s.explanation.startswith("1 leak(s) to u-17 [customer]: kb/internal-fraud-rules (prompt quotes it)")
    named = _msgs("system", "Sources: [kb/refund-policy] [kb/internal-fraud-rules]", "user", "x")
    s = permissions(named)
    assert not s.passed and s.detail is not None and s.detail["leaks"] == [{"id": "kb/internal-fraud-rules",
                                                                           "where": ["prompt"]}]
    assert permissions(named, {"prompt": False}).passed  # where to look, as for context, tools and output
    # readable documents in the prompt are no leak
    assert permissions(_msgs("system", "Sources: [kb/refund-policy] Refunds within 30 days.", "user", "x")).passed


def test_what_the_user_wrote_in_the_prompt_is_no_leak() -> None:
    asked = "what does kb/internal-fraud-rules say?"
    s = permissions(_msgs("system", "Answer from [kb/refund-policy]", "user", asked), user_input=asked)
    assert s.passed, s.explanation
    # the user naming it does not hide its text placed in the prompt
    fraud = next(d.text for d in DOCS if d.id == "kb/internal-fraud-rules")
    s = permissions(_msgs("system", f"Answer from: {fraud}", "user", asked), user_input=asked)
    assert not s.passed and "kb/internal-fraud-rules (prompt quotes it)" in s.explanation
