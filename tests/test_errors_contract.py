"""One contract for errors: a turn the system answered with an error is the system failing its user (scored, a failed
turn); only what evalgate could not do (a target that crashed, timed out, answered garbage) is a run error."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import REPO, query, run_cli_in_process, write

DOCS = REPO / "datasets" / "docs.jsonl"


def _recorded(path: Path) -> None:
    turns = [
        {"session_id": "s1", "turn": 1, "user": {"id": "u-1", "groups": ["customer"]}, "input": "refund order 5512",
         "route": {"name": "refunds"}, "output": "Shall I refund order 5512?", "state": {"order_id": "5512"}},
        # the model call failed; the app answered with a fallback, and its context still holds an internal document
        {"session_id": "s1", "turn": 2, "user": {"id": "u-1", "groups": ["customer"]}, "input": "yes",
         "route": {"name": "refunds"}, "error": "model timeout", "output": "Sorry, something went wrong.",
         "context": [{"id": "kb/internal-fraud-rules", "used": True}]},
        {"session_id": "s2", "turn": 1, "user": {"id": "u-2", "groups": ["customer"]}, "input": "hi",
         "route": {"name": "smalltalk"}, "output": "Hello!"},
    ]
    path.write_text("".join(json.dumps(t) + "\n" for t in turns))


def test_an_errored_recorded_turn_is_scored_and_fails_without_making_the_run_untrusted(tmp_path: Path) -> None:
    _recorded(tmp_path / "t.jsonl")
    write(tmp_path / "s.yaml", f"""
        name: prod
        target: replay
        documents: {DOCS}
        traces:
          - file: t.jsonl
            expect: {{output: {{not_contains: ["something went wrong"]}}}}
        gate: {{rules: [{{metric: system_error.failures, max: 0}}]}}
    """)
    db = tmp_path / "s.duckdb"
    r = run_cli_in_process("run", "s.yaml", "--json", "--db", str(db), cwd=tmp_path)
    assert r.code == 1, r  # a quality failure, not exit 3: evalgate replayed every turn fine
    s = r.json()["suites"][0]
    assert s["metrics"]["errors"] == 0 and s["metrics"]["failed"] == 1 and s["metrics"]["passed"] == 1
    scores = {scorer: (passed, why) for scorer, passed, why in query(
        db, "SELECT scorer, passed, explanation FROM scores WHERE case_id = 's1' AND turn = 2")}
    # every scorer ran on the errored turn: the leak is counted and the fallback answer checked
    assert scores["permissions"][0] is False and "kb/internal-fraud-rules" in scores["permissions"][1]
    assert scores["output"][0] is False
    assert scores["system_error"] == (False, "the system answered with an error: model timeout")
    rules = {x["rule"]: x for x in s["verdict"]["rules"]}
    assert rules["system_error.failures ≤ 0"]["status"] == "fail" and rules["system_error.failures ≤ 0"]["cases"] == ["s1"]
    assert rules["permissions.leaks ≤ 0"]["status"] == "fail"
    assert query(db, "SELECT errored, error FROM cases WHERE case_id = 's1'") == [(False, None)]


def test_a_live_target_that_reports_an_error_fails_the_turn_and_the_conversation_goes_on(tmp_path: Path) -> None:
    write(tmp_path / "erring.py", '''
        def respond(req):
            if req["turn"] == 1:
                return {"output": "Our systems are slow, one moment.", "error": "upstream 503"}
            return {"output": "Here you go."}

        def crash(req):
            raise RuntimeError("the process fell over")
    ''')
    write(tmp_path / "s.yaml", """
        name: live
        target: {python: erring:respond}
        cases:
          - {id: two, turns: [{input: a}, {input: b, expect: {output: {contains: ["here you go"]}}}]}
    """)
    db = tmp_path / "s.duckdb"
    r = run_cli_in_process("run", "s.yaml", "--json", "--db", str(db), cwd=tmp_path)
    assert r.code == 1, r
    assert query(db, "SELECT turn, passed, error FROM turns ORDER BY turn") == [(1, False, None), (2, True, None)]
    reasons = r.json()["suites"][0]["failing"][0]["reasons"]
    assert reasons == ["turn 1 system_error: the system answered with an error: upstream 503"]
    # a target that crashes is what evalgate could not do: a run error (exit 3), said as such
    r = run_cli_in_process("run", "s.yaml", "--target", "python:erring:crash", "--json", "--db", str(db), cwd=tmp_path)
    assert r.code == 3, r
    s = r.json()["suites"][0]
    assert s["metrics"]["errors"] == 1 and "RuntimeError: the process fell over" in s["failing"][0]["reasons"][0]


def test_no_answer_can_lose_the_run(tmp_path: Path) -> None:
    """Half an emoji, a state nested 3,000 deep, 3 MB of output: each turn is stored (made storable), the run too."""
    write(tmp_path / "hostile.py", '''
        def respond(req):
            kind = req["input"]
            if kind == "surrogate":
                return {"output": "half an emoji: \\ud83d", "state": {"note": "\\udc00"}}
            if kind == "deep":
                state = {}
                node = state
                for _ in range(3000):
                    node["x"] = {}
                    node = node["x"]
                return {"output": "deep", "state": state}
            if kind == "huge":
                return {"output": "y" * 3_000_000}
            return {"output": "fine"}
    ''')
    write(tmp_path / "s.yaml", """
        name: hostile
        target: {python: hostile:respond}
        cases:
          - {id: surrogate, input: surrogate}
          - {id: deep, input: deep}
          - {id: huge, input: huge}
          - {id: fine, input: fine}
    """)
    db = tmp_path / "s.duckdb"
    r = run_cli_in_process("run", "s.yaml", "--json", "--db", str(db), cwd=tmp_path)
    assert r.code == 0, r
    assert query(db, "SELECT status, cases_done FROM runs") == [("completed", 4)]
    rows = dict(query(db, "SELECT case_id, output FROM turns"))
    assert rows["surrogate"] == "half an emoji: \ufffd" and rows["fine"] == "fine"
    assert len(rows["huge"].encode()) < 1_100_000 and rows["huge"].endswith("[cut: 3,000,000 bytes in all]")
    traces = {c: json.loads(t) for c, t in query(db, "SELECT case_id, trace FROM turns")}
    assert any("nested deeper than 64 levels" in n for n in traces["deep"]["extra"]["evalgate_sanitized"])
    assert "invalid Unicode replaced" in traces["surrogate"]["extra"]["evalgate_sanitized"][0]
    # and every reader of the run works on what was stored
    assert run_cli_in_process("show", "latest", "deep", "--db", str(db), cwd=tmp_path).code == 0
    assert run_cli_in_process("report", "latest", "--html", str(tmp_path / "r.html"), "--db", str(db), cwd=tmp_path).code == 0


def test_what_a_target_says_cannot_drive_the_terminal_or_the_ci_log(tmp_path: Path) -> None:
    """Escape sequences (an OSC 52 clipboard write, colours) are shown escaped; no line starts a workflow command."""
    write(tmp_path / "loud.py", '''
        def respond(req):
            return {"output": "hi \\x1b]52;c;ZXZpbA==\\x07 \\x1b[2J\\n::add-mask::x\\n::set-output name=a::b",
                    "route": {"name": "\\x1b[31mred"}}
    ''')
    write(tmp_path / "s.yaml", """
        name: loud
        target: {python: loud:respond}
        cases: [{id: "c\\x1b[1m", input: hi, expect: {output: {contains: "never"}}}]
    """)
    db = ["--db", str(tmp_path / "s.duckdb")]
    for args in (("run", "s.yaml"), ("show", "latest", "c\x1b[1m")):
        r = run_cli_in_process(*args, *db, cwd=tmp_path)
        text = r.out + r.err
        assert "\x1b" not in text and "\x07" not in text, text
        assert "\\x1b]52;c;ZXZpbA==" in text or args[0] == "run"
        assert not any(line.startswith("::") for line in text.splitlines()), text


def test_timeout_bounds_a_slow_scorer_too(tmp_path: Path) -> None:
    import time

    write(tmp_path / "slowcheck.py", '''
        import asyncio
        from evalgate import Score

        def slow(seconds: float = 30):
            async def check(ctx):
                await asyncio.sleep(seconds)
                return Score(True, 1.0, "finally")
            return check
    ''')
    write(tmp_path / "s.yaml", """
        name: slow
        target: {python: hostile:respond}
        timeout_s: 1
        gate: {max_error_rate: 1}
        cases: [{id: a, input: fine, expect: {"slowcheck:slow": {seconds: 30}}}]
    """)
    write(tmp_path / "hostile.py", "def respond(req):\n    return {'output': 'fine'}\n")
    db = tmp_path / "s.duckdb"
    started = time.monotonic()
    r = run_cli_in_process("run", "s.yaml", "--json", "--db", str(db), cwd=tmp_path)
    assert time.monotonic() - started < 10, r
    assert query(db, "SELECT error FROM scores") == [("timed out after 1s (--timeout bounds each scorer too)",)]
    assert r.json()["suites"][0]["metrics"]["errors"] == 1  # a scorer that could not finish: the case errored
