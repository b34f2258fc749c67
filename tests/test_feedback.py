"""Feedback: import with provenance, list, promote into permanent cases that gate from then on."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import REPO, query, run_cli_in_process, write

FIXTURES = REPO / "tests" / "fixtures" / "otlp"


def test_a_correction_on_a_bundled_case_becomes_a_case_that_gates(tmp_path: Path) -> None:
    db, out = tmp_path / "s.duckdb", tmp_path / "feedback.jsonl"
    assert run_cli_in_process("run", "suites/support.yaml", "--db", str(db), cwd=REPO).code == 0
    write(tmp_path / "fb.jsonl", json.dumps({
        "case_id": "refund-changes-order-number", "turn": 2, "rating": "down",
        "correction": {"state": {"order_id": "5521"}, "tool_calls": {"must_exclude": ["issue_refund"]}},
        "note": "the refund follows the corrected number; reported by jane.doe@example.com",
        "by": "reviewer-4", "at": "2026-11-20T10:31:02Z"}) + "\n" + json.dumps({"trace_id": "t-x", "rating": "up"}) + "\n")
    r = run_cli_in_process("feedback", "import", str(tmp_path / "fb.jsonl"), "--db", str(db), "--json", cwd=REPO)
    assert r.code == 0, r
    assert r.json() | {"file": None} == {"file": None, "read": 2, "added": 2, "already_stored": 0, "corrections": 1,
                                         "redacted": {"email": 1}}
    again = run_cli_in_process("feedback", "import", str(tmp_path / "fb.jsonl"), "--db", str(db), "--json", cwd=REPO).json()
    assert (again["added"], again["already_stored"]) == (0, 2)
    stored = query(db, "SELECT author, given_at, source, note FROM feedback WHERE case_id IS NOT NULL")
    assert stored[0][:2] == ("reviewer-4", "2026-11-20T10:31:02Z") and stored[0][2].endswith("fb.jsonl:1")
    assert "jane.doe" not in stored[0][3]

    promoted = run_cli_in_process("feedback", "promote", "--out", str(out), "--db", str(db), "--json", cwd=REPO).json()
    assert len(promoted["written"]) == 1 and promoted["skipped"] == []
    case = json.loads(out.read_text())
    assert case["id"] == promoted["written"][0] and case["tags"] == ["from-feedback"]
    assert case["user"] == {"id": "u-17", "groups": ["customer"]}
    assert [t["input"] for t in case["turns"]] == ["I want a refund for order 5512", "sorry, it's 5521 not 5512"]
    assert "expect" not in case["turns"][0]
    assert case["turns"][1]["expect"] == {"state": {"order_id": "5521"}, "tool_calls": {"must_exclude": ["issue_refund"]}}
    assert case["meta"]["from_case"] == "refund-changes-order-number" and case["meta"]["by"] == "reviewer-4"
    # promoting twice adds nothing twice
    twice = run_cli_in_process("feedback", "promote", "--out", str(out), "--db", str(db), "--json", cwd=REPO).json()
    assert twice["written"] == [] and twice["already_promoted"] == [case["id"]]
    assert len(out.read_text().splitlines()) == 1
    listed = run_cli_in_process("feedback", "list", "--db", str(db), "--json", cwd=REPO).json()
    assert {r["promoted_case"] for r in listed} == {case["id"], None}

    # a suite that includes the file gates on the correction from then on
    write(tmp_path / "suite.yaml", "name: from-feedback\ntarget: {python: assistant.bot:respond}\ncases: [{file: feedback.jsonl}]\n")
    current = run_cli_in_process("run", str(tmp_path / "suite.yaml"), "--db", str(db), "--json", cwd=REPO)
    assert current.code == 0, current
    regressed = run_cli_in_process("run", str(tmp_path / "suite.yaml"), "--db", str(db), "--json",
                        "--target", "python:assistant.bot_regressed:respond", cwd=REPO)
    assert regressed.code == 1, regressed
    reasons = regressed.json()["suites"][0]["failing"][0]["reasons"]
    assert any("5521" in reason for reason in reasons), reasons


def test_feedback_by_trace_id_on_imported_production_traces(tmp_path: Path) -> None:
    (tmp_path / "prod.otlp.json").write_bytes((FIXTURES / "openinference.otlp.json").read_bytes())
    write(tmp_path / "suite.yaml", """
        name: prod
        target: replay
        traces: [{file: prod.otlp.json, mapping: {route: {span_name: route_decision, attribute: app.route}}}]
    """)
    db = tmp_path / "s.duckdb"
    assert run_cli_in_process("run", "suite.yaml", "--db", str(db), cwd=tmp_path).code == 0
    write(tmp_path / "fb.csv", """
        trace_id,rating,correction.route,correction.context,note,by,at
        4bf92f3577b34da6a3ce929d0e0e4736,down,order_status,"kb/order-tracking kb/refund-policy",wrong workflow,ana,2026-11-21
        0000000000000000000000000000dead,down,smalltalk,,not recorded anywhere,ana,2026-11-21
    """)
    assert run_cli_in_process("feedback", "import", "fb.csv", "--db", str(db), cwd=tmp_path).code == 0
    r = run_cli_in_process("feedback", "promote", "--db", str(db), cwd=tmp_path)
    assert r.code == 0 and "wrote 1 case(s) to datasets/feedback.jsonl" in r.out, r
    assert "is in no stored run" in r.out
    case = json.loads((tmp_path / "datasets" / "feedback.jsonl").read_text())
    assert [t["input"] for t in case["turns"]] == ["I want a refund for order 5512", "sorry, it's 5521 not 5512"]
    assert case["turns"][1]["expect"] == {"route": "order_status",
                                          "context": {"must_include": ["kb/order-tracking", "kb/refund-policy"]}}
    assert case["meta"]["from_trace"] == "4bf92f3577b34da6a3ce929d0e0e4736" and case["meta"]["at"] == "2026-11-21"
    text = run_cli_in_process("feedback", "list", "--db", str(db), cwd=tmp_path).out
    assert "wrong workflow" in text and case["id"] in text
    # the corrected turn fails until the system is fixed
    write(tmp_path / "bot.py", """
        import os
        def respond(req):
            fixed = os.environ.get("BOT_FIXED") == "1" and "5521" in req["input"]
            route = "order_status" if fixed else "refunds"
            docs = ["kb/order-tracking", "kb/refund-policy"] if fixed else ["kb/refund-policy"]
            return {"route": route, "context": [{"id": d} for d in docs], "output": "ok"}
    """)
    write(tmp_path / "gate.yaml", "name: gate\ntarget: {python: bot:respond}\ncases: [{file: datasets/feedback.jsonl}]\n")
    assert run_cli_in_process("run", "gate.yaml", "--db", str(db), cwd=tmp_path).code == 1
    assert run_cli_in_process("run", "gate.yaml", "--db", str(db), cwd=tmp_path, env={"BOT_FIXED": "1"}).code == 0


def test_bad_feedback_files_exit_2_at_their_line(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    cases = {
        "a.jsonl": ('{"trace_id": "t-1", "rating": "up"}\nnot json\n', ":2:", "not valid JSON"),
        "b.jsonl": ('{"rating": "down", "note": "which turn?"}\n', ":1:", "trace_id, or case_id and turn"),
        "c.jsonl": ('{"trace_id": "t-1", "correction": {"rout": "x"}}\n', ":1:", "unknown field"),
        "d.csv": ("trace_id,rating,correction.routes\nt-1,down,x\n", ":1:", "unknown CSV column 'correction.routes'"),
    }
    for name, (text, where, message) in cases.items():
        write(tmp_path / name, text)
        r = run_cli_in_process("feedback", "import", name, "--db", str(db), cwd=tmp_path)
        assert r.code == 2 and f"{name}{where}" in r.err and message in r.err and "Traceback" not in r.err, (name, r)
    assert not db.exists()  # nothing was stored, not even an empty store


def test_the_new_commands_have_help(tmp_path: Path) -> None:
    for command in (("traces", "import"), ("feedback", "import"), ("feedback", "list"), ("feedback", "promote")):
        r = run_cli_in_process(*command, "--help", cwd=tmp_path)
        assert r.code == 0 and f"Usage: evalgate {' '.join(command)}" in r.out, r
