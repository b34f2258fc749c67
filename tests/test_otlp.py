"""OTLP import: hand-written exports in each convention, checked field by field."""

from __future__ import annotations

import html
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO, query, run_cli_in_process, write

FIXTURES = REPO / "tests" / "fixtures" / "otlp"


def imported(tmp_path: Path, name: str, *extra: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    out = tmp_path / f"{name}.jsonl"
    r = run_cli_in_process("traces", "import", str(FIXTURES / name), "--out", str(out), "--json", *extra, cwd=tmp_path)
    assert r.code == 0, r
    return r.json(), [json.loads(line) for line in out.read_text().splitlines()]


def test_openinference_export_becomes_sessions_of_turns(tmp_path: Path) -> None:
    stats, turns = imported(tmp_path, "openinference.otlp.json")
    assert (stats["spans"], stats["traces"], stats["turns"], stats["sessions"]) == (13, 3, 3, 2)
    assert (stats["documents"], stats["tool_calls"], stats["tokens"]) == (4, 1, {"input": 440, "output": 30})
    # sessions in order of their first turn; turns by start time, not by file order
    assert [(t["session_id"], t["turn"], t["input"]) for t in turns] == [
        ("s-A", 1, "I want a refund for order 5512"),
        ("s-A", 2, "sorry, it's 5521 not 5512"),
        ("s-B", 1, "where is my order 7001?")]
    first, second, other = turns
    assert first["trace_id"] == "0af7651916cd43dd8448eb211c80319c" and first["user"]["id"] == "u-17"
    assert [c["id"] for c in first["context"]] == ["kb/refund-policy", "kb/shipping"]
    assert first["context"][1] == {"id": "kb/shipping", "rank": 2, "score": 0.4, "groups": ["customer", "support"]}
    assert first["output"] == "Refund started for order 5512."
    assert first["model"] == {"name": "gpt-4o-mini-2024-07-18", "provider": "openai", "params": {"temperature": 0}}
    assert second["tool_calls"] == [{"name": "update_refund", "arguments": {"order_id": "5521"}, "result": "ok"}]
    assert second["usage"] == {"input_tokens": 200, "output_tokens": 12}
    assert second["latency_ms"] == {"total": 900.0, "model": 780.0, "context": 40.0, "tools": 10.0}
    assert "route" not in first  # no mapping: the team's own attributes are reported, not guessed
    assert stats["unmapped"] == {"app.user.groups": 3, "app.route": 3}


def test_a_mapping_reads_route_and_groups_from_the_teams_attributes(tmp_path: Path) -> None:
    mapping = write(tmp_path / "mapping.yaml", """
        route: {span_name: route_decision, attribute: app.route}
        groups: {attribute: app.user.groups}
    """)
    stats, turns = imported(tmp_path, "openinference.otlp.json", "--mapping", str(mapping))
    assert [t["route"]["name"] for t in turns] == ["refunds", "refunds", "order_status"]
    assert turns[0]["user"] == {"id": "u-17", "groups": ["customer"]}
    assert stats["unmapped"] == {}


def test_genai_conventions_with_messages_on_events_and_base64_ids(tmp_path: Path) -> None:
    stats, turns = imported(tmp_path, "genai-events.otlp.json")
    assert (stats["spans"], stats["traces"], stats["turns"], stats["sessions"]) == (5, 2, 2, 1)
    assert [t["trace_id"] for t in turns] == ["1" * 32, "2" * 32]
    assert [(t["session_id"], t["turn"]) for t in turns] == [("conv-9", 1), ("conv-9", 2)]
    assert [t["input"] for t in turns] == ["hi, is order 5512 shipped?", "thanks!"]
    assert [t["output"] for t in turns] == ["Yes, it shipped today.", "You're welcome."]
    assert turns[0]["user"]["id"] == "u-5"
    assert turns[0]["tool_calls"] == [{"name": "lookup_order", "arguments": {"order_id": "5512"}}]
    assert turns[0]["model"] == {"name": "gpt-4o-mini-2024-07-18", "requested": "gpt-4o-mini", "provider": "openai",
                                 "params": {"temperature": 0.0}}
    assert stats["tokens"] == {"input": 120, "output": 13} and stats["unmapped"] == {}


def test_collector_json_lines_with_split_traces_older_names_and_log_events(tmp_path: Path) -> None:
    stats, turns = imported(tmp_path, "collector.jsonl")
    assert (stats["spans"], stats["log_records"], stats["log_records_unattached"]) == (5, 2, 0)
    assert (stats["traces"], stats["turns"], stats["sessions"]) == (3, 3, 2)
    by_trace = {t["trace_id"][-1]: t for t in turns}
    # the chat span came a line before its root: still one turn
    assert by_trace["1"]["input"] == "reset my password" and by_trace["1"]["output"] == "Use the reset link."
    assert by_trace["1"]["extra"]["otlp"]["span"] == "POST /chat"
    # older gen_ai.prompt.N / gen_ai.completion.N and prompt_tokens/completion_tokens
    assert by_trace["2"]["input"] == "and my username?" and by_trace["2"]["usage"] == {"input_tokens": 20, "output_tokens": 7}
    assert [(t["session_id"], t["turn"]) for t in turns] == [("s-lines", 1), ("s-lines", 2), ("s-other", 1)]
    # GenAI events sent as log records join their span
    assert by_trace["3"]["input"] == "what is the refund window?" and by_trace["3"]["output"] == "30 days."
    assert stats["models"] == {"gpt-4.1": 1, "gpt-3.5-turbo": 1, "gpt-4o-mini": 1}
    assert stats["unmapped"] == {"http.request.method": 1, "llm.request.type": 1}


def test_error_spans_and_exception_events_become_error_turns(tmp_path: Path) -> None:
    stats, turns = imported(tmp_path, "errors.otlp.json")
    assert stats["error_turns"] == 2 and stats["turns"] == 2
    assert turns[0]["error"] == "upstream timeout" and "output" not in turns[0]
    assert turns[1]["error"] == "lookup_order: KeyError: '5512'"
    assert turns[1]["tool_calls"][0]["error"] == "KeyError: '5512'"
    assert stats["unmapped"] == {"acme.tenant": 3}
    text = run_cli_in_process("traces", "import", str(FIXTURES / "errors.otlp.json"), "--out", str(tmp_path / "e.jsonl"), cwd=tmp_path)
    assert "2 turns (2 with errors)" in text.out and "not mapped (name: spans): acme.tenant 3" in text.out


def test_bad_input_exits_2_with_file_line_and_hint(tmp_path: Path) -> None:
    cases = {
        "notjson.otlp.json": ("this is not json\n", ":1:", "not JSON"),
        "shape.jsonl": ('{"resourceSpans": []}\n{"spans": []}\n', ":2:", "not an OTLP export request"),
        "broken.otlp.json": ('{\n  "resourceSpans": [\n    {"resource": {}\n    "scopeSpans": []}\n  ]\n}\n', ":4:", "not valid JSON"),
        "array.otlp.json": ('[\n  {"resourceSpans": []}\n]\n', ":1:", "not JSON"),
        "line.jsonl": ('{"resourceSpans": []}\n{"resourceSpans": [\n', ":2:", "not valid JSON"),
        "notrace.jsonl": ('{"resourceSpans": [{"scopeSpans": [{"spans": [{"name": "x"}]}]}]}\n', ":1:", "without a traceId"),
    }
    for name, (text, where, message) in cases.items():
        path = write(tmp_path / name, text)
        r = run_cli_in_process("traces", "import", str(path), "--out", str(tmp_path / "out.jsonl"), cwd=tmp_path)
        assert r.code == 2, (name, r)
        assert f"{name}{where}" in r.err and message in r.err and "hint:" in r.err, (name, r.err)
        assert "Traceback" not in r.err
        assert not (tmp_path / "out.jsonl").exists()


def test_a_suite_names_an_otlp_file_directly(tmp_path: Path) -> None:
    (tmp_path / "prod.otlp.json").write_bytes((FIXTURES / "openinference.otlp.json").read_bytes())
    write(tmp_path / "suite.yaml", """
        name: prod
        target: replay
        traces:
          - file: prod.otlp.json
            mapping: {route: {span_name: route_decision, attribute: app.route}}
        expect: {context: {must_include: [kb/refund-policy]}}
    """)
    db = tmp_path / "s.duckdb"
    r = run_cli_in_process("run", "suite.yaml", "--json", "--db", str(db), cwd=tmp_path)
    assert r.code == 1, r  # s-B retrieved kb/order-tracking only
    rows = query(db, "SELECT case_id, turn, route, passed FROM turns ORDER BY case_id, turn")
    assert rows == [("s-A", 1, "refunds", True), ("s-A", 2, "refunds", True), ("s-B", 1, "order_status", False)]
    warned = [w for w in r.json()["suites"][0]["warnings"] if "prod.otlp.json" in w]
    assert warned and "not mapped" in warned[0]
    # a run that reuses the converted copy says the same, and so does its report
    again = run_cli_in_process("run", "suite.yaml", "--json", "--db", str(db), "--html", "r.html", cwd=tmp_path)
    assert [w for w in again.json()["suites"][0]["warnings"] if "prod.otlp.json" in w] == warned
    page = (tmp_path / "r.html").read_text()
    assert all(f"Warning: {html.escape(w)}" in page for w in warned)
    bad = write(tmp_path / "bad.yaml", """
        target: replay
        traces: [{file: prod.otlp.json, mapping: {rout: {attribute: app.route}}}]
    """)
    r = run_cli_in_process("validate", str(bad), cwd=tmp_path)
    assert r.code == 2 and "bad.yaml:2" in r.err and "did you mean 'route'" in r.err, r


def test_traces_help_imports_nothing_heavy() -> None:
    code = ("import sys\nfrom evalgate.cli import main\ntry:\n    main(['traces', 'import', '--help'])\n"
            "except SystemExit as e:\n    assert e.code == 0, e.code\nprint(','.join(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = set(out.strip().splitlines()[-1].split(","))
    # (typer itself brings pydantic in for any command's help; the bare --help test covers it)
    heavy = [m for m in ("openai", "pandas", "duckdb", "jinja2", "numpy", "httpx", "yaml", "ijson") if m in loaded]
    assert "Usage: evalgate traces import" in out and not heavy, heavy


def test_traces_finish_after_a_window_so_memory_stays_flat(tmp_path: Path) -> None:
    from evalgate.traces.otlp import import_otlp

    def span(tid: str, sid: str, parent: str = "", session: str = "s") -> dict[str, Any]:
        return {"traceId": tid * 32, "spanId": sid * 16, "parentSpanId": parent * 16 if parent else "", "name": "req",
                "startTimeUnixNano": "1", "endTimeUnixNano": "2",
                "attributes": [{"key": "session.id", "value": {"stringValue": session}},
                               {"key": "input.value", "value": {"stringValue": f"q{tid}{sid}"}}]}

    order = [span("a", "1"), span("b", "2", "9"), span("c", "3"), span("d", "4"), span("e", "5"),
             span("f", "6"), span("a", "7", "1")]  # a's child arrives long after its root; b never gets a root
    src = write(tmp_path / "w.jsonl", "".join(json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [s]}]}]}) + "\n"
                                              for s in order))
    stats = import_otlp([src], tmp_path / "out.jsonl", window=2)
    assert (stats.spans, stats.late_spans, stats.turns, stats.traces) == (7, 1, 6, 6)


INSTRUMENTED = FIXTURES / "instrumented"


@pytest.mark.parametrize("name", ["openinference", "genai-events", "genai-latest"])
def test_exports_made_by_the_real_instrumentation_packages(tmp_path: Path, name: str) -> None:
    """Made by make_fixtures.py (versions.txt); checked against what the app knows it sent."""
    expected = json.loads((INSTRUMENTED / "expected.json").read_text())[name]
    sent = expected["turns"]
    mapping = write(tmp_path / "mapping.yaml", "route: {span_name: route_decision, attribute: app.route}\n")
    out = tmp_path / "out.jsonl"
    r = run_cli_in_process("traces", "import", str(INSTRUMENTED / f"{name}.otlp.jsonl"), "--out", str(out), "--mapping",
                str(mapping), "--json", cwd=tmp_path)
    assert r.code == 0, r
    stats = r.json()
    turns = [json.loads(line) for line in out.read_text().splitlines()]
    assert (stats["spans"], stats["log_records"], stats["log_records_unattached"]) == (expected["spans"], expected["log_records"], 0)
    assert stats["traces"] == stats["turns"] == len(sent) and stats["sessions"] == len({s["session"] for s in sent})
    assert [(t["session_id"], t["user"]["id"], t["input"], t["route"]["name"]) for t in turns] == [
        (s["session"], s["user"], s["input"], s["route"]) for s in sent]
    assert [t.get("output") for t in turns] == [s["output"] for s in sent]
    assert [[c["id"] for c in t.get("context", [])] for t in turns] == [s["documents"] for s in sent]
    assert [bool(t.get("error")) for t in turns] == [s["error"] is not None for s in sent]
    assert [t.get("usage", {}).get("input_tokens") for t in turns] == [s["input_tokens"] for s in sent]
    assert [t.get("usage", {}).get("output_tokens") for t in turns] == [s["output_tokens"] for s in sent]
    assert stats["tokens"] == {"input": sum(s["input_tokens"] or 0 for s in sent),
                               "output": sum(s["output_tokens"] or 0 for s in sent)}
    assert {t["model"]["name"] for t, s in zip(turns, sent) if not s["error"]} == {"gpt-4o-mini-2024-07-18"}


@pytest.mark.parametrize("services", [("support-bot", "support-bot"), ("support-bot", "gateway")])
def test_one_document_with_spans_and_log_records_one_or_several_resources(tmp_path: Path, services: tuple[str, str]) -> None:
    requests = [json.loads(line) for line in (FIXTURES / "collector.jsonl").read_text().splitlines()]
    doc: dict[str, Any] = {"resourceSpans": [rs for r in requests for rs in r.get("resourceSpans", [])],
                           "resourceLogs": [rl for r in requests for rl in r.get("resourceLogs", [])]}
    doc["resourceSpans"][1]["resource"]["attributes"][0]["value"]["stringValue"] = services[1]  # the POST /chat roots
    path = write(tmp_path / "doc.otlp.json", json.dumps(doc, indent=2))
    line_stats, line_turns = imported(tmp_path, "collector.jsonl")
    out = tmp_path / "doc.jsonl"
    r = run_cli_in_process("traces", "import", str(path), "--out", str(out), "--json", cwd=tmp_path)
    assert r.code == 0, r
    turns = [json.loads(line) for line in out.read_text().splitlines()]
    assert [t["extra"]["otlp"]["service"] for t in turns] == [services[1], services[1], "support-bot"]
    for t in turns + line_turns:
        t["extra"] = {}
    assert turns == line_turns
    assert {k: v for k, v in r.json().items() if k not in ("files", "out")} == {
        k: v for k, v in line_stats.items() if k not in ("files", "out")}


@pytest.mark.parametrize("name", ["collector.jsonl", "openinference.otlp.json"])
def test_gzip_files_import_the_same(tmp_path: Path, name: str) -> None:
    """Collectors often compress what they write: a .gz file gives the same traces, streamed."""
    import gzip

    plain_stats, plain = imported(tmp_path, name)
    packed = tmp_path / (name + ".gz")
    packed.write_bytes(gzip.compress((FIXTURES / name).read_bytes()))
    out = tmp_path / "from-gz.jsonl"
    r = run_cli_in_process("traces", "import", str(packed), "--out", str(out), "--json", cwd=tmp_path)
    assert r.code == 0, r
    assert [json.loads(line) for line in out.read_text().splitlines()] == plain
    assert {k: v for k, v in r.json().items() if k not in ("files", "out")} == \
        {k: v for k, v in plain_stats.items() if k not in ("files", "out")}


# Issue 13: retrieval spans, request and response model, the fallback answer of a failed model call.
# These call import_otlp directly (a plain function), on the exports the real packages made.

FALLBACK = "Sorry, I can't look that up right now. A support agent will follow up by e-mail."


def import_instrumented(tmp_path: Path, name: str) -> tuple[Any, list[dict[str, Any]], list[dict[str, Any]]]:
    """(stats, native turns, what the app sent) for one of the instrumented exports, routes mapped."""
    from evalgate.traces.otlp import import_otlp, parse_mapping

    mapping = parse_mapping({"route": {"span_name": "route_decision", "attribute": "app.route"}})
    out = tmp_path / f"{name}.jsonl"
    stats = import_otlp([INSTRUMENTED / f"{name}.otlp.jsonl"], out, mapping=mapping)
    sent = json.loads((INSTRUMENTED / "expected.json").read_text())[name]["turns"]
    return stats, [json.loads(line) for line in out.read_text().splitlines()], sent


@pytest.mark.parametrize("name", ["openinference", "genai-events", "genai-latest"])
def test_instrumented_exports_turn_by_turn_as_the_app_sent_them(tmp_path: Path, name: str) -> None:
    stats, turns, sent = import_instrumented(tmp_path, name)
    # three sessions of 2, 3 and 1 turns, numbered in order; one failed model call
    assert (stats.spans, stats.traces, stats.turns, stats.sessions, stats.error_turns) == (24, 6, 6, 3, 1)
    assert stats.log_records == (6 if name == "genai-events" else 0) and stats.log_records_unattached == 0
    assert [(t["session_id"], t["turn"]) for t in turns] == [
        ("s-101", 1), ("s-101", 2), ("s-102", 1), ("s-102", 2), ("s-102", 3), ("s-103", 1)]
    assert [(t["input"], t["route"]["name"], t["user"]["id"]) for t in turns] == [
        (s["input"], s["route"], s["user"]) for s in sent]
    # documents: ids and scores in the retriever's order, ranked from 1
    assert [[(c["id"], c.get("score"), c["rank"]) for c in t.get("context", [])] for t in turns] == [
        [(d, sc, r) for r, (d, sc) in enumerate(zip(s["documents"], s["scores"]), 1)] for s in sent]
    assert stats.documents == sum(len(s["documents"]) for s in sent)
    # request and response model kept apart; the failed call has only the requested one
    assert [t["model"].get("name") for t in turns] == [s["response_model"] for s in sent]
    assert [t["model"]["requested"] for t in turns] == [s["request_model"] for s in sent]
    assert dict(stats.models) == {"gpt-4o-mini-2024-07-18": 5} and dict(stats.requested_models) == {"gpt-4o-mini": 6}
    # what the user saw, the fallback included where the export records it
    assert [t.get("output") for t in turns] == [s["output"] for s in sent]
    assert [bool(t.get("error")) for t in turns] == [s["error"] is not None for s in sent]
    assert [t.get("usage") for t in turns] == [
        {"input_tokens": s["input_tokens"], "output_tokens": s["output_tokens"]} if s["input_tokens"] is not None
        else None for s in sent]
    assert (stats.input_tokens, stats.output_tokens) == (98, 37)
    retrievals = [t["extra"]["otlp"].get("retrievals") for t in turns]
    if name == "openinference":
        assert retrievals == [None] * 6
    else:  # one retrieval span a turn: its data source, and the query where content is on spans
        assert retrievals == [[{k: v for k, v in (("data_source", s["data_source"]), ("query", s["query"]), ("top_k", 3),
                                                  ("documents", s["documents"])) if v is not None}] for s in sent]


def test_genai_retrieval_through_telemetry_handler_becomes_context(tmp_path: Path) -> None:
    """genai-latest: the `retrieval kb` spans that opentelemetry-util-genai's TelemetryHandler made."""
    stats, turns, _ = import_instrumented(tmp_path, "genai-latest")
    assert stats.documents == 9 and stats.unmapped.get("gen_ai.retrieval.documents") is None
    first = turns[0]
    assert first["context"] == [{"id": "kb/refund-policy", "rank": 1, "score": 0.82},
                                {"id": "kb/shipping", "rank": 2, "score": 0.41}]
    assert first["extra"]["otlp"] == {
        "span": "invoke_workflow support_request", "service": "support-app",
        "retrievals": [{"data_source": "kb", "query": "I want a refund for order 5512", "top_k": 3,
                        "documents": ["kb/refund-policy", "kb/shipping"]}]}
    assert "context" in first["latency_ms"]  # time in retrieval spans, as for RETRIEVER spans
    assert [len(t["context"]) for t in turns] == [2, 2, 1, 1, 1, 2]


@pytest.mark.parametrize("name", ["openinference", "genai-latest"])
def test_a_failed_model_call_keeps_the_fallback_answer_and_no_response_model(tmp_path: Path, name: str) -> None:
    _, turns, _ = import_instrumented(tmp_path, name)
    failed = turns[3]
    assert failed["input"] == "crash please" and failed["output"] == FALLBACK
    assert "the model server fell over" in failed["error"] and "usage" not in failed
    assert "name" not in failed["model"] and failed["model"]["requested"] == "gpt-4o-mini"
    # the next turn of the session follows the fallback
    assert (turns[4]["session_id"], turns[4]["turn"], turns[4]["output"]) == (
        "s-102", 3, "Answer to: ok, and when will it arrive?")
    assert turns[4]["model"]["name"] == "gpt-4o-mini-2024-07-18"


def test_genai_event_mode_records_no_documents_nor_workflow_output(tmp_path: Path) -> None:
    """event_only: the packages put no retrieval documents, query or workflow messages anywhere; the import says
    which retrievals ran and that they had no documents, rather than inventing any."""
    stats, turns, _ = import_instrumented(tmp_path, "genai-events")
    assert stats.documents == 0 and all("context" not in t for t in turns)
    assert turns[3]["extra"]["otlp"]["retrievals"] == [{"data_source": "kb", "top_k": 3, "documents": []}]
    assert "output" not in turns[3] and turns[3]["model"] == {"requested": "gpt-4o-mini", "provider": "openai",
                                                                "params": {"temperature": 0}}
    assert turns[4]["output"] == "Answer to: ok, and when will it arrive?"  # the model's answer, from its log event


def test_openinference_instrumented_import_is_unchanged_but_for_the_requested_model(tmp_path: Path) -> None:
    """Every field as before this change; the model gains `requested`, a failed call no longer names the
    requested model as the one that answered, and the turn keeps the prompt its model call received."""
    _, turns, _ = import_instrumented(tmp_path, "openinference")
    ok, failed = turns[0], turns[3]
    for t in (ok, failed):
        assert len(t["trace_id"]) == 32 and t["timestamp"].endswith("Z") and set(t["latency_ms"]) == {
            "total", "model", "context"}
    assert {k: v for k, v in ok.items() if k not in ("trace_id", "timestamp", "latency_ms")} == {
        "v": 1, "session_id": "s-101", "turn": 1, "user": {"id": "u-17", "groups": []},
        "input": "I want a refund for order 5512", "route": {"name": "refunds"},
        "context": [{"id": "kb/refund-policy", "rank": 1, "score": 0.82}, {"id": "kb/shipping", "rank": 2, "score": 0.41}],
        "model": {"name": "gpt-4o-mini-2024-07-18", "requested": "gpt-4o-mini", "provider": "openai",
                  "params": {"model": "gpt-4o-mini", "temperature": 0}},
        "prompt": [{"role": "system", "content": "You are a support assistant."},
                   {"role": "user", "content": "I want a refund for order 5512"}],
        "usage": {"input_tokens": 12, "output_tokens": 9}, "output": "Answer to: I want a refund for order 5512",
        "extra": {"otlp": {"span": "support_request", "service": "support-app"}}}
    assert {k: v for k, v in failed.items() if k not in ("trace_id", "timestamp", "latency_ms")} == {
        "v": 1, "session_id": "s-102", "turn": 2, "user": {"id": "u-40", "groups": []}, "input": "crash please",
        "route": {"name": "order_status"}, "context": [{"id": "kb/order-tracking", "rank": 1, "score": 0.77}],
        "model": {"requested": "gpt-4o-mini", "provider": "openai", "params": {"model": "gpt-4o-mini", "temperature": 0}},
        "prompt": [{"role": "system", "content": "You are a support assistant."},
                   {"role": "user", "content": "where is my order 7001?"},
                   {"role": "assistant", "content": "Answer to: where is my order 7001?"},
                   {"role": "user", "content": "crash please"}],
        "output": FALLBACK,
        "error": "ChatCompletion: openai.InternalServerError: Error code: 500 - {'error': {'message': "
                 "'the model server fell over', 'type': 'server_error'}}",
        "extra": {"otlp": {"span": "support_request", "service": "support-app"}}}


def _v(x: Any) -> dict[str, Any]:
    if isinstance(x, bool):
        return {"boolValue": x}
    if isinstance(x, int):
        return {"intValue": str(x)}
    if isinstance(x, float):
        return {"doubleValue": x}
    if isinstance(x, list):
        return {"arrayValue": {"values": [_v(i) for i in x]}}
    if isinstance(x, dict):
        return {"kvlistValue": {"values": [{"key": k, "value": _v(v)} for k, v in x.items()]}}
    return {"stringValue": x}


def _export(*spans: tuple[str, str, str, dict[str, Any], bool]) -> str:
    """One export request of spans (span id, parent id, name, attributes, failed), one trace."""
    return json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [
        {"traceId": "ab" * 16, "spanId": sid * 16, "parentSpanId": parent * 16 if parent else "", "name": name,
         "startTimeUnixNano": str(1_763_200_000_000_000_000 + i), "endTimeUnixNano": str(1_763_200_001_000_000_000),
         "attributes": [{"key": k, "value": _v(v)} for k, v in attrs.items()],
         "status": {"code": 2, "message": "boom"} if failed else {}}
        for i, (sid, parent, name, attrs, failed) in enumerate(spans)]}]}]}) + "\n"


def test_retrieval_spans_by_the_semantic_convention_text(tmp_path: Path) -> None:
    """Shapes the packages above do not make: an embedding model on the retrieval span, documents as an
    OTLP array of maps, a score sent as text, a document without an id, the newer `gen_ai.retrieval.top_k`,
    two retrievals in one turn (ranks run on), a call that answered without a response model."""
    from evalgate.traces.otlp import import_otlp

    src = write(tmp_path / "semconv.jsonl", _export(
        ("1", "", "invoke_agent support", {"gen_ai.operation.name": "invoke_agent", "gen_ai.conversation.id": "c-1",
                                           "gen_ai.input.messages": '[{"role":"user","parts":[{"type":"text","content":"hi"}]}]'},
         False),
        ("2", "1", "retrieval vectors", {"gen_ai.operation.name": "retrieval", "gen_ai.data_source.id": "vectors",
                                         "gen_ai.request.model": "text-embedding-3-small", "gen_ai.retrieval.top_k": 2,
                                         "gen_ai.retrieval.query.text": "hi",
                                         "gen_ai.retrieval.documents": [{"id": "d1", "score": "0.5"}, {"score": 0.25}]},
         False),
        ("3", "1", "retrieval faq", {"gen_ai.operation.name": "retrieval", "gen_ai.data_source.id": "faq",
                                     "gen_ai.retrieval.documents": '[{"id": 7, "score": 0.9}]'}, False),
        ("4", "1", "chat gpt-4.1", {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4.1",
                                    "gen_ai.output.messages": '[{"role":"assistant","parts":[{"type":"text","content":"hello"}]}]'},
         False)))
    stats = import_otlp([src], tmp_path / "out.jsonl")
    (turn,) = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert turn["context"] == [{"id": "d1", "rank": 1, "score": 0.5}, {"id": "retrieval vectors#1", "rank": 2, "score": 0.25},
                               {"id": "7", "rank": 3, "score": 0.9}]
    assert turn["extra"]["otlp"]["retrievals"] == [
        {"data_source": "vectors", "query": "hi", "top_k": 2, "documents": ["d1", "retrieval vectors#1"]},
        {"data_source": "faq", "documents": ["7"]}]
    assert turn["model"] == {"name": "gpt-4.1", "requested": "gpt-4.1"}  # the embedding model is not the turn's model
    assert (turn["input"], turn["output"]) == ("hi", "hello")
    assert (stats.documents, dict(stats.models), stats.unmapped) == (3, {"gpt-4.1": 1}, {})


def test_a_failed_call_that_names_only_its_model_reports_it_as_requested(tmp_path: Path) -> None:
    from evalgate.traces.otlp import import_otlp

    src = write(tmp_path / "oi.jsonl", _export(
        ("1", "", "agent", {"openinference.span.kind": "CHAIN", "input.value": "q", "output.value": "sorry"}, False),
        ("2", "1", "llm", {"openinference.span.kind": "LLM", "llm.model_name": "claude-x"}, True)))
    stats = import_otlp([src], tmp_path / "out.jsonl")
    (turn,) = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert turn["model"] == {"requested": "claude-x"} and turn["output"] == "sorry" and turn["error"] == "llm: boom"
    assert (dict(stats.models), dict(stats.requested_models)) == ({}, {"claude-x": 1})


def test_native_traces_read_with_and_without_the_requested_model() -> None:
    from evalgate.traces import Trace

    old = Trace.model_validate_json('{"v": 1, "model": {"name": "gpt-4o-mini", "params": {"temperature": 0}}}')
    assert old.model is not None and (old.model.name, old.model.requested) == ("gpt-4o-mini", None)
    new = Trace.model_validate_json('{"v": 1, "model": {"requested": "gpt-4o-mini", "provider": "openai"}}')
    assert new.model is not None and (new.model.name, new.model.requested) == (None, "gpt-4o-mini")
    assert new.to_json() == '{"model":{"requested":"gpt-4o-mini","provider":"openai"}}'
