"""Every loader, fuzzed (Hypothesis): a malformed suite, dataset, trace, OTLP, feedback, baseline or configuration file
is exit 2 with a message, or is read; never an internal error, a traceback or a hang.

    EVALGATE_FUZZ_EXAMPLES=1000 .venv/bin/pytest tests/test_fuzz_loaders.py    # a deeper search than CI's 60 a test

Inputs are mutations of valid files (bytes inserted, dropped, replaced; invalid UTF-8) and structured JSON/YAML values
put where a file expects something else. Odd inputs found once are kept in ``CORPUS`` and always tried.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import run_cli_in_process

SUITE = b"""name: demo
target: {python: bot:respond}
documents: docs.jsonl
variants: {operators: [typo, correction], seed: 1}
cases:
  - id: a
    user: {id: u-1, groups: [customer]}
    turns:
      - {input: refund order 5512, expect: {route: refunds, state: {order_id: "5512"}}}
      - {input: yes, expect: {tool_calls: {must_include: issue_refund}}}
  - file: cases.csv
traces: [t.jsonl]
gate: {rules: [{metric: pass_rate, min: 0.9}, {metric: recovery.rate, min: 0.5}]}
"""
CSV = b"id,input,expect.route\nc1,hi,smalltalk\nc2,refund 5512,refunds\n"
TRACES = (b'{"session_id": "s1", "turn": 1, "input": "hi", "output": "hello", "route": {"name": "smalltalk"}}\n'
          b'{"session_id": "s1", "turn": 2, "input": "bye", "output": "bye", "error": "x"}\n')
DOCS = b'{"id": "kb/a", "title": "A", "groups": ["customer"], "text": "refunds within 30 days"}\n'
OTLP = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [
    {"traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "b7ad6b7169203331", "name": "turn",
     "startTimeUnixNano": "1", "endTimeUnixNano": "2",
     "attributes": [{"key": "session.id", "value": {"stringValue": "s1"}},
                    {"key": "input.value", "value": {"stringValue": "hi"}},
                    {"key": "output.value", "value": {"stringValue": "hello"}}]}]}]}]}).encode()
FEEDBACK = b'{"trace_id": "s1:1", "rating": "down", "correction": {"route": "refunds"}}\n'
PYPROJECT = b'[tool.evalgate]\nsuites = "suites"\nstore = ".evalgate/evalgate.duckdb"\nconcurrency = 4\n'
CORPUS = [
    b"name: demo\ncases: [{id: a, input: hi, turns: []}]\n",
    b"name: [1, 2]\n",
    b"\xff\xfe\x00n\x00a\x00m\x00e",
    b"cases: !!python/object:os.system ls\n",
    b"name: demo\ngate: {rules: [{metric: pass_rate, min: 1e400}]}\n",
    b"name: demo\nrepeat: 99999999999999999999999\n",
    b"name: demo\nvariants: {per_operator: -1}\n",
    b"name: demo\ncases: [{id: a, simulate: {goal: ''}}]\n",
    b"- - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - -\n",
    b"{" * 5000,
]
BOT = """
def respond(req):
    return {"output": "ok", "route": {"name": "smalltalk"}, "state": dict(req["state"])}
"""


def _project(root: Path, **files: bytes) -> Path:
    base = {"suites/demo.yaml": SUITE, "suites/cases.csv": CSV, "suites/t.jsonl": TRACES, "suites/docs.jsonl": DOCS,
            "pyproject.toml": PYPROJECT, "bot.py": BOT.encode()}
    base.update(files)
    for name, data in base.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def _mutated(data: bytes) -> st.SearchStrategy[bytes]:
    edit = st.tuples(st.integers(0, max(0, len(data) - 1)), st.integers(0, 8),
                     st.binary(max_size=8) | st.sampled_from([b"\xff", b"\x00", b"{", b"[", b":", b"- ", b"\n  ",
                                                             b"&a", b"*a", b'"', b"\\u", b"\xed\xa0\x80"]))

    def apply(edits: list[tuple[int, int, bytes]]) -> bytes:
        out = data
        for at, drop, new in edits:
            out = out[:at] + new + out[at + drop:]
        return out

    return st.lists(edit, min_size=1, max_size=4).map(apply)


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                                         max_size=4), max_leaves=20)


def _clear(r, *codes: int) -> None:
    assert r.code in codes, r
    assert "internal error" not in r.err and "Traceback" not in r.err, r
    if r.code == 2:
        assert r.err.startswith("error: ") and len(r.err.strip()) > 10, r


_FAST = settings(max_examples=int(os.environ.get("EVALGATE_FUZZ_EXAMPLES", "60")), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                          HealthCheck.too_slow])


@_FAST
@given(data=_mutated(SUITE))
def test_mutated_suites_are_read_or_refused_clearly(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    root = _project(tmp_path_factory.mktemp("suite"), **{"suites/demo.yaml": data})
    _clear(run_cli_in_process("validate", cwd=root), 0, 2)


@pytest.mark.parametrize("text", CORPUS)
def test_the_corpus_of_odd_suites(tmp_path: Path, text: bytes) -> None:
    _clear(run_cli_in_process("validate", cwd=_project(tmp_path, **{"suites/demo.yaml": text})), 0, 2)


@_FAST
@given(value=JSON_VALUES, where=st.sampled_from(["cases", "gate", "variants", "target", "traces", "expect", "repeat",
                                                  "documents", "scorers", "run_as", "redact", "permissions"]))
def test_any_value_under_any_suite_key(tmp_path_factory: pytest.TempPathFactory, value: object, where: str) -> None:
    suite = yaml.safe_load(SUITE)
    suite[where] = value
    text = yaml.safe_dump(suite).encode()
    _clear(run_cli_in_process("validate", cwd=_project(tmp_path_factory.mktemp("key"), **{"suites/demo.yaml": text})), 0, 2)


@_FAST
@given(name=st.sampled_from(["suites/cases.csv", "suites/t.jsonl", "suites/docs.jsonl", "pyproject.toml"]),
       data=st.data())
def test_mutated_datasets_traces_documents_and_config(tmp_path_factory: pytest.TempPathFactory, name: str,
                                                       data: st.DataObject) -> None:
    original = {"suites/cases.csv": CSV, "suites/t.jsonl": TRACES, "suites/docs.jsonl": DOCS,
                "pyproject.toml": PYPROJECT}[name]
    root = _project(tmp_path_factory.mktemp("file"), **{name: data.draw(_mutated(original))})
    _clear(run_cli_in_process("validate", cwd=root), 0, 2)


@_FAST
@given(lines=st.lists(JSON_VALUES.map(lambda v: json.dumps(v).encode()) | _mutated(TRACES.splitlines()[0]),
                      min_size=1, max_size=4))
def test_recorded_lines_of_any_shape_replay_or_are_refused(tmp_path_factory: pytest.TempPathFactory,
                                                           lines: list[bytes]) -> None:
    suite = b"name: demo\ntarget: replay\ntraces: [t.jsonl]\n"
    root = _project(tmp_path_factory.mktemp("replay"), **{"suites/demo.yaml": suite, "suites/t.jsonl": b"\n".join(lines)})
    _clear(run_cli_in_process("run", "--strict", "--db", str(root / "s.duckdb"), cwd=root), 0, 1, 2)


@_FAST
@given(data=_mutated(OTLP) | JSON_VALUES.map(lambda v: json.dumps({"resourceSpans": v}).encode()))
def test_otlp_exports_of_any_shape_import_or_are_refused(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    root = _project(tmp_path_factory.mktemp("otlp"), **{"export.otlp.json": data})
    _clear(run_cli_in_process("traces", "import", "export.otlp.json", "--out", "out.jsonl", cwd=root), 0, 2)


@_FAST
@given(data=_mutated(FEEDBACK) | JSON_VALUES.map(lambda v: json.dumps(v).encode()))
def test_feedback_files_of_any_shape(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    root = _project(tmp_path_factory.mktemp("fb"), **{"fb.jsonl": data})
    _clear(run_cli_in_process("feedback", "import", "fb.jsonl", "--db", str(root / "s.duckdb"), cwd=root), 0, 2)


@_FAST
@given(data=JSON_VALUES.map(lambda v: json.dumps(v).encode()) | st.binary(max_size=40))
def test_baseline_files_of_any_shape(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    suite = b"name: demo\ntarget: {python: bot:respond}\ncases: [{id: a, input: hi}]\n"
    root = _project(tmp_path_factory.mktemp("bl"), **{"base.json": data, "suites/demo.yaml": suite})
    _clear(run_cli_in_process("run", "--baseline", "base.json", "--db", str(root / "s.duckdb"), cwd=root), 0, 1, 2)


RECORDING = (b'{"body":{"choices":[{"message":{"content":"hi","role":"assistant"}}]},"case":"a","content_type":'
             b'"application/json","order":0,"request":{"method":"POST","path":"/v1/chat/completions"},'
             b'"request_hash":"0123456789abcdef","status":200,"turn":1,"upstream":"model","v":1}\n')


@_FAST
@given(data=_mutated(RECORDING) | JSON_VALUES.map(lambda v: json.dumps(v).encode()))
def test_recordings_files_of_any_shape(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    suite = (b"name: demo\ntarget: {python: bot:respond}\ncases: [{id: a, input: hi}]\n"
             b"upstreams: {model: {url: 'http://127.0.0.1:9/v1', openai: true}}\nrecording: {file: rec.jsonl}\n")
    root = _project(tmp_path_factory.mktemp("rec"), **{"rec.jsonl": data, "suites/demo.yaml": suite})
    _clear(run_cli_in_process("validate", cwd=root), 0, 2)


def _span(sid: str, parent: str, t: int) -> dict[str, object]:
    return {"traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": sid, "parentSpanId": parent, "name": f"s{t}",
            "startTimeUnixNano": str(t), "endTimeUnixNano": str(t + 1),
            "attributes": [{"key": "session.id", "value": {"stringValue": "s1"}},
                           {"key": "input.value", "value": {"stringValue": "hi"}}]}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("spans", [
    [("a1", "a1", 1)],                                          # its own parent
    [("a1", "", 1), ("b1", "c1", 2), ("c1", "b1", 3)],          # parents in a ring
    [("a1", "", 1), ("b1", "a1", 2), ("b1", "b1", 3)],          # a span id used twice
])
def test_span_graphs_with_cycles_and_duplicate_ids_import_and_end(tmp_path: Path, spans: list[tuple[str, str, int]]) -> None:
    doc = {"resourceSpans": [{"scopeSpans": [{"spans": [_span(s.ljust(16, "0"), p.ljust(16, "0") if p else "", t)
                                                         for s, p, t in spans]}]}]}
    root = _project(tmp_path, **{"export.otlp.json": json.dumps(doc).encode()})
    _clear(run_cli_in_process("traces", "import", "export.otlp.json", "--out", "out.jsonl", cwd=root), 0, 2)
