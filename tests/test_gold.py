"""Gold files: per-turn expectations, tags and meta joined to recorded turns (native and OTLP) on a key,
unmatched keys reported, and gate rules sliced to tagged turns."""

from __future__ import annotations

import base64
import json
import shutil
import textwrap
from pathlib import Path

import pytest
from conftest import query, write

from evalgate.traces.otlp import parse_mapping

FIXTURES = Path(__file__).parent / "fixtures" / "otlp" / "instrumented"


def _turn(session: str, turn: int, text: str, route: str, **more: object) -> dict:
    return {"v": 1, "trace_id": f"{session}-{turn}", "session_id": session, "turn": turn,
            "user": {"id": "u-1", "groups": ["customer"]}, "input": text, "route": {"name": route},
            "output": f"answer to {text}", "latency_ms": {"total": 100 * turn}, **more}


TRACES = [
    _turn("s1", 1, "I want a refund for 5512", "refunds"),
    _turn("s1", 2, "where is my parcel?", "refunds",
          feedback={"rating": "down", "correction": {"route": "shipping", "output": {"contains": ["tracking"]}}}),
    _turn("s2", 1, "hello", "smalltalk"),
    _turn("s3", 1, "my card was charged twice", "smalltalk"),
    _turn("s3", 2, "thanks", "smalltalk"),
]


def _traces(project: Path, rows: list[dict] = TRACES) -> None:
    path = project / "datasets" / "traces.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _suite(project: Path, gold: str, gate: str = "") -> None:
    """A replay suite of the recorded traces (every turn expected on smalltalk) with a gold file."""
    text = ("name: rec\ntarget: replay\ntraces:\n  - file: ../datasets/traces.jsonl\n"
            f"    expect: {{route: smalltalk}}\n    gold: {gold}\n")
    (project / "suites" / "demo.yaml").write_text(text + textwrap.dedent(gate))


GOLD_YAML = """
- key: s1:1
  expect: {route: refunds}
  tags: [refunds]
  meta: {tier: gold}
- key: s1:2                      # the gold file's route replaces the correction's; its output check stays
  expect: {route: refunds}
  tags: [refunds, followup]
- key: [s3, 1]
  expect: {route: billing}
  tags: billing
  meta: {tier: silver}
- key: s9:1
  expect: {route: refunds}
- key: s8:4
  tags: [lost]
"""


def test_native_traces_joined_on_session_and_turn(cli, project: Path) -> None:
    _traces(project)
    write(project / "datasets" / "gold.yaml", GOLD_YAML)
    _suite(project, "../datasets/gold.yaml")

    v = cli("validate", "--json")
    assert v.code == 0, v
    warnings = v.json()["suites"][0]["warnings"]
    assert warnings == [
        "gold datasets/gold.yaml: 2 of 5 row(s) matched no recorded turn of datasets/traces.jsonl: s9:1, s8:4",
        "gold datasets/gold.yaml: 2 of 5 recorded turn(s) of datasets/traces.jsonl have no gold row (e.g. s2:1, s3:2)"]

    r = cli("run", "--json")
    assert r.code == 1, r
    s = r.json()["suites"][0]
    assert s["warnings"] == warnings  # said once, though the run read the traces again
    failing = {f["case_id"]: f["reasons"] for f in s["failing"]}
    assert failing == {
        "s1": ["turn 2 output: missing 'tracking'"],  # gold's route replaces the correction's; its output check stays
        "s3": ["turn 1 route: routed to smalltalk, expected billing"]}  # gold replaces the source's route
    db = project / ".evalgate" / "evalgate.duckdb"
    assert query(db, "SELECT case_id, turn, tags FROM turns ORDER BY case_id, turn") == [
        ("s1", 1, ["refunds"]), ("s1", 2, ["refunds", "followup"]), ("s2", 1, []), ("s3", 1, ["billing"]),
        ("s3", 2, [])]
    cases = query(db, "SELECT case_id, tags, turn_tags, meta FROM cases ORDER BY case_id")
    assert [(c, t, tt, json.loads(m) if m else None) for c, t, tt, m in cases] == [
        ("s1", ["recorded", "gold", "feedback:down", "corrected"], ["refunds", "followup"], {"tier": "gold"}),
        ("s2", ["recorded"], [], None),
        ("s3", ["recorded", "gold"], ["billing"], {"tier": "silver"})]


def test_csv_and_jsonl_gold_files_join_the_same(cli, project: Path) -> None:
    _traces(project)
    write(project / "datasets" / "gold.csv", """
        key,tags,expect.route,expect.output.contains,meta.tier
        s1:1,refunds,refunds,,gold
        s1:2,"refunds, followup",refunds,"[parcel, where]",
        s3:1,billing,billing,,silver
        s9:1,,refunds,,
        """)
    rows = [{"key": "s1:1", "expect": {"route": "refunds"}, "tags": ["refunds"], "meta": {"tier": "gold"}},
            {"key": ["s1", 2], "expect": {"route": "refunds", "output": {"contains": ["parcel", "where"]}},
             "tags": ["refunds", "followup"]},
            {"key": "s3:1", "expect": {"route": "billing"}, "tags": ["billing"], "meta": {"tier": "silver"}},
            {"key": "s9:1", "expect": {"route": "refunds"}}]
    (project / "datasets" / "gold.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    seen = []
    for name in ("gold.csv", "gold.jsonl"):
        _suite(project, f"../datasets/{name}")
        r = cli("run", "--json")
        assert r.code == 1, r
        s = r.json()["suites"][0]
        assert s["warnings"][0] == (f"gold datasets/{name}: 1 of 4 row(s) matched no recorded turn of "
                                    "datasets/traces.jsonl: s9:1")
        seen.append({f["case_id"]: f["reasons"] for f in s["failing"]})
    # s1 passes: the gold output check (parcel, where) replaces the correction's (tracking)
    assert seen[0] == seen[1] == {"s3": ["turn 1 route: routed to smalltalk, expected billing"]}
    db = project / ".evalgate" / "evalgate.duckdb"
    assert query(db, "SELECT DISTINCT tags FROM turns WHERE case_id = 's1' AND turn = 2") == [(["refunds", "followup"],)]


def _otlp_span(trace: int, span: int, name: str, start_s: float, attrs: dict, parent: int | None = None) -> dict:
    def b64(n: int, size: int) -> str:
        return base64.b64encode(n.to_bytes(size, "big")).decode()

    value = {str: "stringValue", int: "intValue", float: "doubleValue"}
    out = {"traceId": b64(trace, 16), "spanId": b64(span, 8), "name": name,
           "startTimeUnixNano": str(int(start_s * 1e9)), "endTimeUnixNano": str(int((start_s + 0.5) * 1e9)),
           "attributes": [{"key": k, "value": {value[type(v)]: str(v) if isinstance(v, int) else v}}
                          for k, v in attrs.items()], "status": {}}
    if parent is not None:
        out["parentSpanId"] = b64(parent, 8)
    return out


def _otlp_export(path: Path) -> None:
    """Three requests of an app that names each turn in its own attribute, on a child span."""
    spans = []
    for n, (session, text, route, turn_id) in enumerate([("conv-1", "refund my order", "refunds", "T-100"),
                                                         ("conv-1", "and the parcel?", "smalltalk", "T-101"),
                                                         ("conv-2", "hi", "smalltalk", "T-200")], 1):
        spans.append(_otlp_span(n, 1, "support_request", 1_700_000_000 + n,
                                {"openinference.span.kind": "CHAIN", "session.id": session, "input.value": text,
                                 "output.value": f"answer to {text}"}))
        spans.append(_otlp_span(n, 2, "route_decision", 1_700_000_000 + n + 0.1,
                                {"app.route": route, "app.turn_id": turn_id}, parent=1))
    doc = {"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "app"}}]},
                              "scopeSpans": [{"scope": {"name": "app"}, "spans": spans}]}]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))


def test_an_otlp_attribute_mapped_into_extra_is_the_key(cli, project: Path) -> None:
    _otlp_export(project / "exports" / "prod.otlp.json")
    write(project / "datasets" / "gold.yaml", """
        - {key: T-100, expect: {route: refunds}, tags: [refunds]}
        - {key: T-101, expect: {route: refunds}, tags: [refunds, followup]}
        - {key: T-999, expect: {route: refunds}}
        """)
    write(project / "suites" / "demo.yaml", """
        name: otlp
        target: replay
        traces:
          - file: ../exports/prod.otlp.json
            mapping:
              route: {span_name: route_decision, attribute: app.route}
              extra: {app_turn_id: {attribute: app.turn_id}}     # found on the child span: the whole tree is searched
            gold: {file: ../datasets/gold.yaml, key: extra.app_turn_id}
        gate:
          rules: [{metric: route.accuracy, min: 1, where: {turn_tags: [followup]}}]
        """)
    r = cli("run", "--json")
    assert r.code == 1, r
    s = r.json()["suites"][0]
    assert s["warnings"] == [
        "gold datasets/gold.yaml: 1 of 3 row(s) matched no recorded turn of exports/prod.otlp.json: T-999",
        "gold datasets/gold.yaml: 1 of 3 recorded turn(s) of exports/prod.otlp.json have no gold row (e.g. T-200)"]
    assert not any("not mapped" in w for w in s["warnings"])  # a mapped attribute is not reported as unmapped
    assert s["verdict"]["rules"][0]["cases"] == ["conv-1"]
    db = project / ".evalgate" / "evalgate.duckdb"
    traces = query(db, "SELECT case_id, turn, tags, trace FROM turns ORDER BY case_id, turn")
    assert [(c, t, tags, json.loads(tr)["extra"]["app_turn_id"]) for c, t, tags, tr in traces] == [
        ("conv-1", 1, ["refunds"], "T-100"), ("conv-1", 2, ["refunds", "followup"], "T-101"), ("conv-2", 1, [], "T-200")]

    # the key names a field no turn has: every turn is said to lack it, and the mapping is the place to look
    text = (project / "suites" / "demo.yaml").read_text().replace("extra: {app_turn_id: {attribute: app.turn_id}}", "")
    (project / "suites" / "demo.yaml").write_text(text)
    v = cli("validate", "--json")
    assert v.code == 0, v
    assert ("gold datasets/gold.yaml: 3 recorded turn(s) of exports/prod.otlp.json have no extra.app_turn_id to join "
            "on (e.g. conv-1 turn 1, conv-1 turn 2, conv-2 turn 1); check the key, or the OTLP mapping's extra"
            ) in v.json()["suites"][0]["warnings"]


def test_instrumented_export_joined_on_a_span_attribute(cli, project: Path) -> None:
    """The OpenInference fixture: the question on the app's support_request span, mapped into extra, as the key."""
    shutil.copy(FIXTURES / "openinference.otlp.jsonl", project / "openinference.otlp.jsonl")
    write(project / "datasets" / "gold.yaml", """
        - {key: I want a refund for order 5512, expect: {route: refunds}, tags: [refunds]}
        - {key: where is my order 7001?, expect: {route: refunds}, tags: [orders]}
        """)
    write(project / "suites" / "demo.yaml", """
        name: oi
        target: replay
        traces:
          - file: ../openinference.otlp.jsonl
            mapping:
              route: {span_name: route_decision, attribute: app.route}
              extra: {question: {span_name: support_request, attribute: input.value}}
            gold: {file: ../datasets/gold.yaml, key: extra.question}
        gate:
          rules:
            - {metric: route.accuracy, min: 1, where: {turn_tags: refunds}}
            - {metric: route.accuracy, min: 1, where: {turn_tags: orders}}
        """)
    r = cli("run", "--json")
    assert r.code == 1, r
    rules = r.json()["suites"][0]["verdict"]["rules"]
    assert [(x["status"], x["value"], x["cases"]) for x in rules[:2]] == [("pass", 1.0, []),
                                                                          ("fail", 0.0, ["s-102"])]
    warnings = r.json()["suites"][0]["warnings"]
    assert ("gold datasets/gold.yaml: 4 of 6 recorded turn(s) of openinference.otlp.jsonl have no gold row "
            "(e.g. \"sorry, it's 5521 not 5512\", \"crash please\", \"ok, and when will it arrive?\")") in warnings


def test_turn_tags_slice_gate_rules(cli, project: Path) -> None:
    _traces(project)
    write(project / "datasets" / "gold.yaml", GOLD_YAML)
    gate = """
        gate:
          rules:
            - {metric: route.accuracy, min: 1, where: {turn_tags: [refunds]}}
            - {metric: pass_rate, min: 1, where: {turn_tags: [followup]}}
            - {metric: latency.max, max: 150, where: {turn_tags: [billing]}}
            - {metric: route.precision.smalltalk, min: 0.5, where: {turn_tags: [billing]}}
        """
    _suite(project, "../datasets/gold.yaml", gate)
    r = cli("run", "--json")
    assert r.code == 1, r
    rules = r.json()["suites"][0]["verdict"]["rules"]
    got = [(x["rule"], x["status"], x["value"], x["cases"]) for x in rules]
    assert got[:4] == [
        ("route.accuracy ≥ 1 where turn_tags=refunds", "pass", 1.0, []),  # s3's misroute is not a refunds turn
        ("pass_rate ≥ 1 where turn_tags=followup", "fail", 0.0, ["s1"]),  # the case with a followup turn failed
        ("latency.max ≤ 150 where turn_tags=billing", "pass", 100.0, []),  # only s3's turn 1, not its 200 ms turn 2
        # of the billing turns routed to smalltalk, none should have been (on every turn: 2 of 3)
        ("route.precision.smalltalk ≥ 0.5 where turn_tags=billing", "fail", 0.0, ["s3"]),
    ]

    # the same rule on every turn fails: the slice, not the rule, decided it
    gate_all = gate.replace("where: {turn_tags: [refunds]}", "where: {tags: [recorded]}")
    _suite(project, "../datasets/gold.yaml", gate_all)
    rules = cli("run", "--json").json()["suites"][0]["verdict"]["rules"]
    assert (rules[0]["status"], rules[0]["cases"]) == ("fail", ["s3"])


def test_written_turns_take_tags_too(cli, project: Path) -> None:
    write(project / "suites" / "demo.yaml", """
        name: demo
        target: {python: bot:respond}
        cases:
          - id: refund
            turns:
              - {input: I want a refund for order 5512, expect: {route: refunds}, tags: [opening]}
              - {input: thanks, expect: {route: smalltalk}, tags: [closing]}
        gate:
          rules: [{metric: route.accuracy, min: 1, where: {turn_tags: opening}}]
        """)
    r = cli("run", "--json")
    assert r.code == 0, r  # the closing turn stays in the refund workflow, but the rule looks at the opening only
    assert r.json()["suites"][0]["metrics"]["route.pass_rate"] == 0.5
    db = project / ".evalgate" / "evalgate.duckdb"
    assert query(db, "SELECT turn, tags FROM turns ORDER BY turn") == [(1, ["opening"]), (2, ["closing"])]


@pytest.mark.parametrize("name, text, line, message", [
    ("gold.yaml", "- {key: s1:1, expect: {route: refunds}}\n- key: s1:2\n  expect:\n    output: {contanis: [x]}\n", 4,
     "contanis"),
    ("gold.yaml", "- {key: s1:1}\n- {key: s1:1, tags: [again]}\n", 2, "gold key 's1:1' is given twice (first at "),
    ("gold.yaml", "- {key: s1, expect: {route: refunds}}\n", 1, "key 's1' gives 1 value(s) for the 2 key fields"),
    ("gold.yaml", "- {key: s1:1, expcet: {route: refunds}}\n", 1, "unknown key 'expcet'"),
    ("gold.jsonl", '{"key": "s1:1", "expect": {"route": "refunds"}}\n{"key": "s1:2", "expect": {"nope": 1}}\n', 2,
     "nope"),
    ("gold.jsonl", '{"key": "s1:1"}\n\n{"key": "s1:2", "tags": [1, {}]}\n', 3, "tags"),
    ("gold.csv", "key,expect.route,expect.output.contains\ns1:1,refunds,\ns1:2,refunds,\"[a]\"\ns3:1,,{a: 1}\n", 4,
     "scorer 'output' argument 'contains'"),
])
def test_a_bad_gold_row_is_an_error_at_its_line(cli, project: Path, name: str, text: str, line: int,
                                                message: str) -> None:
    _traces(project)
    (project / "datasets" / name).write_text(text)
    _suite(project, f"../datasets/{name}")
    r = cli("validate")
    assert r.code == 2, r
    assert f"datasets/{name}:{line}" in r.err and message in r.err, r.err
    assert cli("run").code == 2


def test_a_gold_file_with_a_version_and_a_key_as_a_list(cli, project: Path) -> None:
    _traces(project)
    write(project / "datasets" / "gold.yaml", """
        version: 1
        rows:
          - {key: [s3, 1], expect: {route: billing}}
          - {key: "s2:1", tags: [hello]}
        """)
    _suite(project, "{file: ../datasets/gold.yaml, key: [session_id, turn]}")
    r = cli("run", "--json")
    assert r.code == 1, r
    failing = {f["case_id"]: f["reasons"] for f in r.json()["suites"][0]["failing"]}
    assert failing["s3"] == ["turn 1 route: routed to smalltalk, expected billing"]
    write(project / "datasets" / "gold.yaml", "version: 2\nrows: []\n")
    r = cli("validate")
    assert r.code == 2 and "gold.yaml:1" in r.err and "gold file version 2" in r.err, r


def test_a_bad_key_or_gold_spec_is_an_error_in_the_suite(cli, project: Path) -> None:
    _traces(project)
    write(project / "datasets" / "gold.yaml", "- {key: x}\n")
    for gold, message in [("{file: ../datasets/gold.yaml, key: extra}", "'extra' is a mapping: name a key in it"),
                          ("{file: ../datasets/gold.yaml, key: sesion_id}", "did you mean 'session_id'"),
                          ("{file: ../datasets/gold.yaml, key: context}", "'context' is a list"),
                          ("{file: ../datasets/gold.yaml, key: user}", "name one of its fields (user.id, user.groups)"),
                          ("{file: ../datasets/gold.yaml, key: turn.n}", "'turn' is a single value"),
                          ("../datasets/missing.yaml", "gold file not found"),
                          ("{file: ../datasets/gold.yaml, keys: turn}", "unknown key 'keys'")]:
        _suite(project, gold)
        r = cli("validate")
        assert r.code == 2 and message in r.err, (gold, r)
        assert "demo.yaml:6" in r.err, r.err  # the gold: line


def test_the_mapping_keeps_any_attribute_in_extra() -> None:
    mapping = parse_mapping({"extra": {"app_turn_id": "app.turn_id", "tier": {"span_name": "s", "attribute": ["a", "b"]}}})
    assert [(n, r.attributes, r.span_name) for n, r in mapping.extra] == [("app_turn_id", ("app.turn_id",), None),
                                                                          ("tier", ("a", "b"), "s")]
    assert {"app.turn_id", "a", "b"} <= mapping.attribute_names()
    with pytest.raises(ValueError, match="extra.otlp is the import's own"):
        parse_mapping({"extra": {"otlp": "x"}})
    with pytest.raises(ValueError, match="mapping.extra is a mapping of name"):
        parse_mapping({"extra": ["app.turn_id"]})
    with pytest.raises(ValueError, match=r"mapping.extra.t takes \{attribute"):
        parse_mapping({"extra": {"t": {"attr": "x"}}})
