"""The LLM judge against a real OpenAI-compatible server on 127.0.0.1, through the real model client."""

from __future__ import annotations

import asyncio
import json
import re
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from conftest import query, serving, write
from test_scorer_catalogue import _ctx

from evalgate.scorers import ScorerArgError, bind
from evalgate.scorers.judge import read_verdict


class Judge(BaseHTTPRequestHandler):
    """Answers judge prompts: scripted answers first, else pass when the graded answer names order 5521."""

    script: list[str] = []
    prompts: list[dict[str, Any]] = []
    lock = threading.Lock()

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with Judge.lock:
            Judge.prompts.append(body)
            scripted = Judge.script.pop(0) if Judge.script else None
        user = body["messages"][-1]["content"]
        answer = user.split("## Answer to grade\n")[-1]
        text = scripted or json.dumps({"verdict": "pass" if "5521" in answer else "fail",
                                       "reason": "names the corrected order" if "5521" in answer else "wrong order"})
        payload = json.dumps({
            "id": "j", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server(tmp_path: Path, monkeypatch):
    Judge.script, Judge.prompts = [], []
    monkeypatch.setenv("EVALGATE_CACHE", str(tmp_path / "cache.sqlite"))
    with serving(Judge) as url:
        yield url


def judge(server: str, **args: Any):
    return bind("judge", {"rubric": "The answer names the order the user corrected to.", "model": "judge-1",
                          "base_url": server, **args})


def grade(bound, repeat: int = 0, **trace: Any):
    ctx = _ctx(**trace)
    ctx.request.update(repeat=repeat, input="sorry, it's 5521 not 5512",
                       history=[{"role": "user", "content": "refund 5512"}])
    return asyncio.run(bound.run(ctx))


def test_verdict_reasons_and_the_judges_own_usage(server: str) -> None:
    s = grade(judge(server, price_in=1.0, price_out=2.0), output="Refund moved to 5521.")
    assert s.passed and s.value == 1.0 and s.explanation == "judge: pass: names the corrected order"
    # 100 prompt tokens at $1/M and 10 completion tokens at $2/M: the judge's cost, kept apart from the system's
    assert s.metrics == {"input_tokens": 100.0, "output_tokens": 10.0, "calls": 1.0, "cost_usd": 0.00012,
                         "score": 1.0, "agreement": 1.0}
    assert s.detail == {"model": "judge-1", "votes": [{"verdict": "pass", "reason": "names the corrected order",
                                                       "cached": False}]}
    prompt = Judge.prompts[0]["messages"][-1]["content"]
    # by default the judge sees the input and the answer, not the history
    assert "## User message\nsorry, it's 5521 not 5512" in prompt and "refund 5512" not in prompt
    assert Judge.prompts[0]["temperature"] == 0
    s = grade(judge(server), output="Refund moved to 5512.")
    assert not s.passed and s.explanation == "judge: fail: wrong order"


def test_what_the_judge_sees_is_what_the_suite_allows(server: str) -> None:
    grade(judge(server, sees=["history", "input", "context", "output", "expected"], expected="Refund for 5521."),
          output="ok", context=[{"id": "kb/refund-policy", "content": "Refunds within 30 days."},
                                {"id": "kb/secret", "used": False, "content": "never shown"}])
    prompt = Judge.prompts[0]["messages"][-1]["content"]
    assert "## Conversation so far\nuser: refund 5512" in prompt
    assert "[kb/refund-policy] Refunds within 30 days." in prompt and "never shown" not in prompt
    assert "## Expected answer\nRefund for 5521." in prompt
    with pytest.raises(ScorerArgError, match="environment variable NO_SUCH_JUDGE_KEY"):
        judge(server, api_key_env="NO_SUCH_JUDGE_KEY")
    with pytest.raises(ScorerArgError, match="no expected answer"):
        judge(server, sees=["expected"])
    with pytest.raises(ScorerArgError, match=r"argument 'sees\[0\]': Input should be 'input'"):
        judge(server, sees=["everything"])


def test_votes_take_the_majority_and_keep_the_disagreement(server: str) -> None:
    Judge.script = ['{"verdict": "pass", "reason": "ok"}', '{"verdict": "fail", "reason": "vague"}',
                    '{"verdict": "pass", "reason": "fine"}']
    s = grade(judge(server, votes=3), output="x")
    assert s.passed and s.value == pytest.approx(2 / 3)
    # votes are asked at once, so they arrive in any order
    assert s.explanation in ("judge: pass (votes: 2 pass, 1 fail; 67% agree): ok",
                             "judge: pass (votes: 2 pass, 1 fail; 67% agree): fine")
    assert s.metrics is not None and s.metrics["agreement"] == pytest.approx(2 / 3) and s.metrics["calls"] == 3
    assert sorted(v["verdict"] for v in (s.detail or {})["votes"]) == ["fail", "pass", "pass"]
    Judge.script = ['{"verdict": "pass"}', '{"verdict": "fail"}']
    assert not grade(judge(server, votes=2), repeat=5, output="x").passed  # a tie fails


def test_repeats_get_fresh_verdicts_and_a_warm_cache_makes_no_call(server: str) -> None:
    bound = judge(server)
    grade(bound, repeat=0, output="5521")
    grade(bound, repeat=1, output="5521")
    assert len(Judge.prompts) == 2  # the repeat index is part of the cache key
    s = grade(bound, repeat=0, output="5521")
    assert len(Judge.prompts) == 2 and s.passed
    assert s.metrics is not None and s.metrics["calls"] == 0 and s.metrics["input_tokens"] == 0
    assert (s.detail or {})["votes"][0]["cached"] is True


def test_scale_and_unreadable_answers(server: str) -> None:
    Judge.script = ['{"score": 3, "reason": "partly"}']
    s = grade(judge(server, scale="1-5", pass_at=4), output="x")
    assert not s.passed and s.value == 3.0 and s.explanation == "judge: 3/5: partly"
    Judge.script = ["I cannot decide."]
    s = grade(judge(server), repeat=1, output="x")
    assert s.error == "the judge's answer could not be read: 'I cannot decide.'"


@pytest.mark.parametrize("text, scale, expected", [
    ('```json\n{"verdict": "PASS", "reason": "r"}\n```', "pass_fail", (1.0, "r")),
    ('{"passed": false}', "pass_fail", (0.0, "")),
    ("Verdict: fail. The order is wrong.", "pass_fail", (0.0, "Verdict: fail. The order is wrong.")),
    ("pass or fail?", "pass_fail", None),  # ambiguous
    ('{"score": 6}', "1-5", None),
    ("Score: 4", "1-5", (4.0, "Score: 4")),
])
def test_reading_verdicts(text: str, scale: str, expected) -> None:
    assert read_verdict(text, scale) == expected


def test_judge_in_a_run_stores_votes_and_its_own_cost(cli, project: Path, server: str) -> None:
    write(project / "suites" / "demo.yaml", f"""
        name: judged
        target: {{python: bot:respond}}
        repeat: 2
        scorers:
          judge_order: {{use: judge, args: {{rubric: "names order 5521", model: judge-1, base_url: "{server}",
                                             price_in: 1, price_out: 2}}}}
        cases:
          - id: r
            turns:
              - input: refund 5512
              - input: sorry, it's 5521 not 5512
                expect: {{judge_order: {{votes: 3}}}}
        gate:
          rules: [{{metric: judge_order.cost_usd, max: 0.01}}]
    """)
    r = cli("run", "--json", env={"EVALGATE_CACHE": str(project / "judge-cache.sqlite")})
    assert r.code == 0, r
    db = project / ".evalgate" / "evalgate.duckdb"
    rows = query(db, "SELECT repeat, passed, json_extract(metrics, '$.calls')::INT, "
                     "json_array_length(json_extract(detail, '$.votes')) FROM scores WHERE scorer = 'judge_order' "
                     "ORDER BY repeat")
    assert rows == [(0, True, 3, 3), (1, True, 3, 3)]  # 2 repeats × 3 votes = 6 calls, none shared
    assert len(Judge.prompts) == 6
    # the system's usage is untouched by the judge's
    assert query(db, "SELECT count(*) FROM turns WHERE input_tokens IS NOT NULL") == [(0,)]
    # the report shows the judge's calls and cost apart: 6 calls × (100 in at $1/M + 10 out at $2/M) = $0.00072
    assert cli("report", "latest", "--html", "r.html").code == 0
    page = (project / "r.html").read_text()
    assert "Own model calls" in page and "apart from the system" in page
    assert re.search(r"<th scope=\"row\">judge_order</th>.*?<td class=\"num\">6</td><td class=\"num\">\$0\.00072</td>", page, re.S)


def test_known_models_are_priced_from_the_shared_table(server: str) -> None:
    Judge.script = ['{"verdict": "pass", "reason": "ok"}', '{"verdict": "pass", "reason": "ok"}']
    # gpt-4o-mini: $0.15 in, $0.60 out per million tokens → 100 × 0.15e-6 + 10 × 0.60e-6
    s = grade(judge(server, model="gpt-4o-mini"), output="x")
    assert s.metrics is not None and s.metrics["cost_usd"] == pytest.approx(0.000021)
    s = grade(judge(server), repeat=1, output="x")  # judge-1 has no price: no cost, not a guessed one
    assert s.metrics is not None and "cost_usd" not in s.metrics


def test_judge_calls_follow_the_runs_cache_and_offline(cli, project: Path, server: str) -> None:
    """--offline, --cache and --cache-mode reach the judge through the run, as they reach the target's model calls."""
    write(project / "suites" / "demo.yaml", f"""
        name: judged
        target: {{python: bot:respond}}
        cases:
          - id: r
            turns:
              - input: refund 5512
              - input: sorry, it's 5521 not 5512
                expect: {{judge: {{rubric: "names order 5521", model: judge-1, base_url: "{server}"}}}}
    """)
    elsewhere = {"EVALGATE_CACHE": str(project / "not-this-one.sqlite")}
    r = cli("run", "--offline", "--json", env=elsewhere)
    assert r.code == 3, r  # nothing cached: the judge must not reach the endpoint
    assert Judge.prompts == []
    db = project / ".evalgate" / "evalgate.duckdb"
    assert "offline" in query(db, "SELECT error FROM scores WHERE scorer = 'judge'")[0][0]
    cache = project / "ci-cache.sqlite"
    assert cli("run", "--cache", str(cache), env=elsewhere).code == 0
    assert len(Judge.prompts) == 1 and cache.is_file()
    assert cli("run", "--cache", str(cache), "--offline", env=elsewhere).code == 0
    assert len(Judge.prompts) == 1  # answered from the run's cache
    assert cli("run", "--offline", env=elsewhere).code == 3  # the configured cache never got the answer
    assert cli("run", "--cache", str(cache), "--cache-mode", "off", env=elsewhere).code == 0
    assert len(Judge.prompts) == 2  # the cache is off for the judge too


@pytest.mark.parametrize("entry", ["api.run", "run_suite"])
def test_a_judged_run_leaves_no_model_io_thread_behind(project: Path, server: str, entry: str) -> None:
    """The judge's client is shared by the run's scorers and closed when the run ends, by either entry point: three
    runs in one process leave no I/O thread running (each used to leave its own)."""
    from evalgate.api import run
    from evalgate.config import find_config
    from evalgate.runner import RunOptions, run_suite
    from evalgate.store import Store
    from evalgate.suite import load_suite

    def io_threads() -> int:
        return sum(t.name == "evalgate-model-io" and t.is_alive() for t in threading.enumerate())

    suite = write(project / "suites" / "demo.yaml", f"""
        name: judged
        target: {{python: bot:respond}}
        scorers:
          judge_order: {{use: judge, args: {{rubric: "names order 5521", model: judge-1, base_url: "{server}"}}}}
        cases:
          - {{id: r, input: "refund 5521", expect: {{judge_order: {{}}}}}}
    """)
    before = io_threads()
    for _ in range(3):
        if entry == "api.run":
            run([str(suite)], config=find_config(project), store_path=project / "s.duckdb",
                options=RunOptions(cache_mode="off"))
        else:
            run_suite(load_suite(suite), Store(project / "s.duckdb"), RunOptions(cache_mode="off", root=project))
    assert len(Judge.prompts) == 3
    assert io_threads() == before
