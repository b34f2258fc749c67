"""Recorded traces: streaming sessions, bad lines, corrections as expectations, replay."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import query, write

from evalgate.traces import iter_sessions, scan


def _turn(session: str, turn: int, text: str, route: str, **extra) -> dict:
    return {"v": 1, "trace_id": f"{session}-{turn}", "session_id": session, "turn": turn,
            "user": {"id": "u-1", "groups": ["customer"]}, "input": text, "route": {"name": route},
            "output": f"answer to {text}", "state": {"order_id": "5512"}, **extra}


def _write_jsonl(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_sessions_are_grouped_and_ordered_contiguous_and_interleaved(tmp_path: Path) -> None:
    rows = [_turn("s1", 2, "b", "refunds"), _turn("s1", 1, "a", "refunds"), _turn("s2", 1, "c", "smalltalk")]
    info = scan(_write_jsonl(tmp_path / "c.jsonl", rows))
    assert (info.turns, info.sessions, info.contiguous) == (3, 2, True)
    sessions = list(iter_sessions(info))
    assert [(s.session_id, [t.input for t in s.turns]) for s in sessions] == [("s1", ["a", "b"]), ("s2", ["c"])]

    interleaved = [rows[1], rows[2], rows[0]]
    info = scan(_write_jsonl(tmp_path / "i.jsonl", interleaved))
    assert (info.turns, info.sessions, info.contiguous) == (3, 2, False)
    sessions = list(iter_sessions(info))
    assert [(s.session_id, [t.input for t in s.turns]) for s in sessions] == [("s1", ["a", "b"]), ("s2", ["c"])]


def _trace_suite(project: Path, rows: list, target: str = "replay", extra: str = "") -> None:
    _write_jsonl(project / "datasets" / "traces.jsonl", rows)
    write(project / "suites" / "demo.yaml", f"name: rec\ntarget: {target}\ntraces: [../datasets/traces.jsonl]\n{extra}")


def test_bad_lines_are_skipped_and_counted_or_fatal_with_strict(cli, project: Path) -> None:
    rows = [_turn("s1", 1, "a", "refunds"), "{not json", _turn("s2", 1, "b", "refunds"),
            json.dumps({"session_id": "s3", "turn": 1}), json.dumps({**_turn("s4", 1, "c", "x"), "route": 5})]
    _trace_suite(project, rows)
    r = cli("run", "--json")
    assert r.code == 0, r
    s = r.json()["suites"][0]
    assert s["cases"] == 2
    assert [(b["line"], b["message"]) for b in s["bad_lines"]] == [
        (2, "not valid JSON (Expecting property name enclosed in double quotes)"),
        (4, "missing input (a recorded turn needs the user's message as a string)")]
    assert "3 bad trace line(s) were skipped" in s["verdict"]["notices"][0]
    db = project / ".evalgate" / "evalgate.duckdb"
    assert query(db, "SELECT bad_lines FROM runs") == [(3,)]
    r = cli("run", "--strict")
    assert r.code == 2 and "traces.jsonl:2: bad trace line: not valid JSON" in r.err
    assert query(db, "SELECT count(*) FROM runs") == [(1,)]  # the strict failure ran nothing


def test_feedback_correction_becomes_the_expectation(cli, project: Path) -> None:
    rows = [_turn("s1", 1, "refund please", "refunds"),
            _turn("s1", 2, "it's 5521", "smalltalk",
                  feedback={"rating": "down", "correction": {"route": "refunds", "state": {"order_id": "5521"}},
                            "note": "stayed in the refund flow"}),
            _turn("s2", 1, "hi", "smalltalk")]
    _trace_suite(project, rows)
    r = cli("run", "--json")
    assert r.code == 1, r  # the recording got it wrong, as the feedback says
    s = r.json()["suites"][0]
    assert [f["case_id"] for f in s["failing"]] == ["s1"]
    assert s["failing"][0]["reasons"] == ["turn 2 route: routed to smalltalk, expected refunds",
                                          "turn 2 state: order_id='5512', expected '5521'"]
    tags = query(project / ".evalgate" / "evalgate.duckdb", "SELECT tags FROM cases WHERE case_id = 's1'")[0][0]
    assert tags == ["recorded", "feedback:down", "corrected"]


def test_replaying_recordings_through_a_target_records_what_changed(cli, project: Path) -> None:
    rows = [_turn("s1", 1, "I want a refund for 5512", "refunds",
                  context=[{"id": "kb/old-doc"}], tool_calls=[{"name": "lookup", "arguments": {}}]),
            _turn("s1", 2, "and thanks", "smalltalk",
                  feedback={"rating": "down", "correction": {"route": "refunds"}, "note": "still the refund"})]
    _trace_suite(project, rows, target="{python: bot:respond}")
    r = cli("run", "--json")
    assert r.code == 0, r  # the current bot fixes what the feedback corrected
    db = project / ".evalgate" / "evalgate.duckdb"
    changes = {t: json.loads(c) for t, c in query(db, "SELECT turn, changes FROM turns ORDER BY turn")}
    assert changes[1]["context"] == {"added": ["kb/refund-policy"], "removed": ["kb/old-doc"]}
    assert changes[1]["tool_calls"] == {"recorded": ["lookup"], "now": []}
    assert changes[2]["route"] == {"recorded": "smalltalk", "now": "refunds"}
    recorded = query(db, "SELECT recorded FROM turns WHERE turn = 1")[0][0]
    assert json.loads(recorded)["route"]["name"] == "refunds"
    story = cli("show", "latest", "s1").out
    assert "changed vs recording" in story


def test_tool_calls_and_extra_reach_custom_scorers(cli, project: Path) -> None:
    write(project / "my_scorers.py", '''
        from evalgate import Score

        def refund_guard(max_amount: float):
            def check(ctx):
                calls = [c for c in ctx.trace.tool_calls if c.name == "issue_refund"]
                over = [c for c in calls if c.arguments["amount"] > max_amount]
                tier = ctx.trace.extra.get("tier")
                return Score(not over, float(len(over)), f"{len(over)} refund(s) over {max_amount} (tier {tier})")
            return check
    ''')
    rows = [_turn("s1", 1, "refund", "refunds", tool_calls=[{"name": "issue_refund", "arguments": {"amount": 80}}],
                  extra={"tier": "gold"})]
    _trace_suite(project, rows, extra="expect:\n  my_scorers:refund_guard: {max_amount: 50}\n")
    r = cli("run", "--json")
    assert r.code == 1
    assert r.json()["suites"][0]["failing"][0]["reasons"] == ["turn 1 my_scorers:refund_guard: 1 refund(s) over 50.0 (tier gold)"]
