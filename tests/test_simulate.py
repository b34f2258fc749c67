"""A simulated user: a case written as a goal, played turn by turn against the target by the built-in user (offline,
deterministic) or by a model on a real OpenAI-compatible server; how a conversation ends, the goal score and
``goal.turns``, ``show --as-case``, and mistakes in ``simulate`` at their line."""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml
from conftest import REPO, query, run_cli_in_process, serving, write

REFUND_BOT = '''
"""A refund bot: asks for the order number, asks to confirm, refunds on yes; order 9999 goes to a person."""
import re


def respond(req):
    text = req["input"].lower()
    state = dict(req["state"])
    calls = []
    ids = re.findall(r"\\b(\\d{4})\\b", text)
    if ids:
        state["order_id"] = ids[0]
    if state.get("order_id") == "9999":
        return {"route": {"name": "handoff"}, "output": "That order needs a person: shall I pass you over?", "state": state}
    if "policy" in text:
        out = "Refunds are possible within 30 days of delivery."
    elif state.get("refund") == "pending" and text.startswith("yes"):
        calls.append({"name": "issue_refund", "arguments": {"order_id": state["order_id"]}})
        state.update(refund="issued", confirmed=True)
        out = f"Done: the refund for order {state['order_id']} is issued."
    elif "order_id" in state:
        state["refund"] = "pending"
        out = f"Shall I refund order {state['order_id']}? Reply yes to confirm."
    else:
        out = "Which order is it? What's the order number?"
    return {"route": {"name": "refunds"}, "output": out, "state": state, "tool_calls": calls}


def never_refunds(req):
    """Asks to confirm, forever: the goal is never reached."""
    return {"route": {"name": "refunds"}, "output": "Shall I go ahead with the refund?", "state": dict(req["state"])}
'''



def refund_case(max_turns: int, order: str = "7714", more: str = "") -> str:
    """A goal case for the refund bot; the case-level expect runs on every simulated turn."""
    return f'''
  - id: refund
    simulate:
      goal: I want a refund
      slots: {{order_id: "{order}"}}
      stop_when: {{state: {{refund: issued}}}}
      max_turns: {max_turns}{more}
    expect:
      tool_calls: {{must_exclude: issue_refund, unless_state: {{confirmed: true}}}}
'''


def suite(project: Path, cases: str, *, target: str = "refunds:respond", extra: str = "") -> Path:
    write(project / "refunds.py", REFUND_BOT)
    return write(project / "suites" / "sim.yaml", f"name: sim\ntarget: {{python: {target}}}\n{extra}cases:{cases}")


def turns_of(db: Path, run_id: str, case_id: str, repeat: int = 0) -> list[str]:
    rows = query(db, "SELECT input FROM turns WHERE run_id = ? AND case_id = ? AND repeat = ? ORDER BY turn",
                 [run_id, case_id, repeat])
    return [r[0] for r in rows]


def goal_score(db: Path, run_id: str, case_id: str, repeat: int = 0) -> tuple[int, bool, str, dict[str, Any]]:
    """The closing goal score: its turn, whether it passed, its explanation and metrics (exactly one per case run)."""
    rows = query(db, "SELECT turn, passed, explanation, metrics FROM scores WHERE run_id = ? AND case_id = ? "
                     "AND repeat = ? AND scorer = 'goal'", [run_id, case_id, repeat])
    assert len(rows) == 1, rows
    turn, passed, why, metrics = rows[0]
    return turn, passed, why, json.loads(metrics)


def run_json(cli: Any, *args: str) -> tuple[int, dict[str, Any]]:
    r = cli("run", "suites/sim.yaml", "--json", *args)
    assert r.code in (0, 1), r
    return r.code, r.json()["suites"][0]


# --- the bundled example: the built-in user against the assistant ----------------------------------------------------


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("example")
    for name in ("pyproject.toml", "suites", "datasets", "assistant", "pipelines"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, work / name)
    return work


@pytest.fixture(scope="module")
def simulated_run(example: Path) -> dict[str, Any]:
    """One run of suites/support-simulated.yaml with the current assistant."""
    r = run_cli_in_process("run", "suites/support-simulated.yaml", "--json", "--db", str(example / "s.duckdb"),
                           cwd=example)
    assert r.code in (0, 1), r
    return {"code": r.code, **r.json()["suites"][0]}


def test_the_builtin_user_reaches_every_bundled_goal(example: Path, simulated_run: dict[str, Any]) -> None:
    s, db = simulated_run, example / "s.duckdb"
    assert s["code"] == 0 and s["failing"] == [] and s["verdict"]["status"] == "pass", s["verdict"]
    assert s["metrics"]["cases"] == 3 and s["metrics"]["passed"] == 3 and s["metrics"]["goal.pass_rate"] == 1.0
    # the built-in user opens with the goal, gives the order number when asked, says yes when asked to confirm
    assert turns_of(db, s["run_id"], "refund-goal") == ["I'd like my money back", "it's 7714", "yes please"]
    turn, passed, why, metrics = goal_score(db, s["run_id"], "refund-goal")
    assert (turn, passed, metrics) == (3, True, {"turns": 3.0})
    assert why == "the goal was reached in 3 turn(s): the state has refund='issued'"
    # goal.turns is the mean number of turns the conversations took
    n_turns = [n for (n,) in query(db, "SELECT n_turns FROM cases WHERE run_id = ?", [s["run_id"]])]
    assert len(n_turns) == 3 and sum(n_turns) == s["turns"]
    rule = next(r for r in s["verdict"]["rules"] if r["rule"].startswith("goal.turns"))
    assert rule["status"] == "pass" and rule["value"] == pytest.approx(sum(n_turns) / 3)
    # every case run ends with exactly one goal score, on its last turn
    ends = query(db, "SELECT s.case_id, s.turn, c.n_turns FROM scores s JOIN cases c USING (run_id, case_id, repeat) "
                     "WHERE s.run_id = ? AND s.scorer = 'goal' ORDER BY s.case_id", [s["run_id"]])
    assert [c for c, _, _ in ends] == ["order-status-goal", "refund-goal", "refund-goal-number-first"]
    assert all(turn == n for _, turn, n in ends), ends


def test_the_regressed_assistant_refunds_before_it_is_asked(example: Path) -> None:
    r = run_cli_in_process("run", "suites/support-simulated.yaml", "--json", "--db", str(example / "r.duckdb"),
                           "--target", "python:assistant.bot_regressed:respond", cwd=example)
    assert r.code == 1, r
    s = r.json()["suites"][0]
    reasons = {c["case_id"]: c["reasons"] for c in s["failing"]}
    assert "refund-goal" in reasons and "order-status-goal" not in reasons
    # the case-level expect runs on every simulated turn: the refund on turn 2 came before any yes
    assert "turn 2 tool_calls: issue_refund called while confirmed=False" in reasons["refund-goal"]
    db = example / "r.duckdb"
    assert turns_of(db, s["run_id"], "refund-goal") == ["I'd like my money back", "it's 7714"]
    checks = query(db, "SELECT turn, passed FROM scores WHERE run_id = ? AND case_id = 'refund-goal' "
                       "AND scorer = 'tool_calls' ORDER BY turn", [s["run_id"]])
    assert checks == [(1, True), (2, False)]


# --- how a conversation ends -----------------------------------------------------------------------------------------


def test_a_goal_never_reached_ends_when_max_turns_pass(cli, project: Path) -> None:
    suite(project, refund_case(3), target="refunds:never_refunds")
    code, s = run_json(cli)
    assert code == 1 and [c["case_id"] for c in s["failing"]] == ["refund"]
    db = project / ".evalgate" / "evalgate.duckdb"
    # asked to confirm again and again, the built-in user says yes until max_turns
    assert turns_of(db, s["run_id"], "refund") == ["I want a refund", "yes please", "yes"]
    turn, passed, why, metrics = goal_score(db, s["run_id"], "refund")
    assert (turn, passed, metrics) == (3, False, {"turns": 3.0})
    assert why == "max_turns (3) passed without reaching the goal: the state has refund=None (goal 'issued')"


def test_a_handoff_ends_the_conversation_at_that_turn(cli, project: Path) -> None:
    suite(project, refund_case(6, order="9999"))
    code, s = run_json(cli)
    assert code == 1
    db = project / ".evalgate" / "evalgate.duckdb"
    assert turns_of(db, s["run_id"], "refund") == ["I want a refund", "it's 9999"]
    turn, passed, why, metrics = goal_score(db, s["run_id"], "refund")
    assert (turn, passed, metrics) == (2, False, {"turns": 2.0})
    assert why.startswith("the target handed off at turn 2 (route handoff): the state has refund=None"), why
    routes = query(db, "SELECT turn, route FROM turns WHERE run_id = ? ORDER BY turn",
                   [s["run_id"]])
    assert routes == [(1, "refunds"), (2, "handoff")]
    # a route not named in handoff does not end it: the user answers the bot's question and goes on to max_turns
    suite(project, refund_case(4, order="9999", more="\n      handoff: [escalate]"))
    code, s = run_json(cli)
    assert turns_of(db, s["run_id"], "refund") == ["I want a refund", "it's 9999", "yes please", "yes"]
    assert goal_score(db, s["run_id"], "refund")[2].startswith("max_turns (4) passed without reaching the goal")


def test_without_stop_when_the_goal_passes_when_the_user_has_nothing_more_to_say(cli, project: Path) -> None:
    suite(project, '''
  - id: policy
    simulate: {goal: what is your refund policy?, max_turns: 5}
  - id: refund
    simulate: {goal: I want a refund, slots: {order_id: "7714"}, max_turns: 3}
''')
    code, s = run_json(cli)
    db = project / ".evalgate" / "evalgate.duckdb"
    assert turns_of(db, s["run_id"], "policy") == ["what is your refund policy?"]
    assert goal_score(db, s["run_id"], "policy") == (1, True, "the simulated user stopped after 1 turn(s)",
                                                        {"turns": 1.0})
    # without a goal state, a user still talking when max_turns pass has not finished
    assert turns_of(db, s["run_id"], "refund") == ["I want a refund", "it's 7714", "yes please"]
    assert goal_score(db, s["run_id"], "refund")[1:3] == (False, "max_turns (3) passed without reaching the goal")
    assert code == 1 and [c["case_id"] for c in s["failing"]] == ["refund"]


# --- a model plays the user, through the run's client and cache ------------------------------------------------------


class ModelUser(BaseHTTPRequestHandler):
    """Plays the user from the last message it got: the order number when asked, yes to confirm, DONE at the end."""

    requests: ClassVar[list[dict[str, Any]]] = []
    status: ClassVar[int] = 200
    lock = threading.Lock()

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with ModelUser.lock:
            ModelUser.requests.append(body)
        if ModelUser.status != 200:  # a request the endpoint refuses (a 400 is not retried)
            payload = json.dumps({"error": {"message": "model 'sim-model' not found", "type": "x"}}).encode()
            self.send_response(ModelUser.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        last = body["messages"][-1]["content"].lower()
        if "order number" in last:
            text = "it's 7714"
        elif "confirm" in last:
            text = "yes"
        elif "issued" in last or "30 days" in last:
            text = "DONE"
        else:
            text = "hi, I want my money back"
        payload = json.dumps({
            "id": "u", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 50, "completion_tokens": 5, "total_tokens": 55}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def model_user(tmp_path: Path, monkeypatch):
    ModelUser.requests, ModelUser.status = [], 200
    monkeypatch.setenv("EVALGATE_CACHE", str(tmp_path / "not-this-one.sqlite"))
    with serving(ModelUser) as url:
        yield url




def model_cases(url: str) -> str:
    """A goal case the model on ``url`` plays (the judge tests' base_url form: http://127.0.0.1:<port>/v1)."""
    return f'''
  - id: refund
    simulate:
      goal: get a refund for my order
      slots: {{order_id: "7714"}}
      stop_when: {{state: {{refund: issued}}}}
      simulator: {{model: sim-model, base_url: "{url}"}}
    expect:
      tool_calls: {{must_exclude: issue_refund, unless_state: {{confirmed: true}}}}
'''

SPOKEN = ["hi, I want my money back", "it's 7714", "yes"]


def test_a_model_user_reaches_the_goal_and_replays_offline_from_the_runs_cache(cli, project: Path,
                                                                              model_user: str) -> None:
    suite(project, model_cases(model_user))
    cache = project / "ci-cache.sqlite"
    code, s = run_json(cli, "--cache", str(cache))
    assert code == 0 and s["failing"] == [], s
    db = project / ".evalgate" / "evalgate.duckdb"
    assert turns_of(db, s["run_id"], "refund") == SPOKEN
    reached = "the goal was reached in 3 turn(s): the state has refund='issued'"
    assert goal_score(db, s["run_id"], "refund")[1:3] == (True, reached)
    # one call per user message; the goal reached, the model is not asked again
    assert len(ModelUser.requests) == 3 and {r["model"] for r in ModelUser.requests} == {"sim-model"}
    for body in ModelUser.requests:
        system = body["messages"][0]
        assert system["role"] == "system"
        assert "Your goal: get a refund for my order" in system["content"] and "order_id: 7714" in system["content"]
    # the roles are flipped: the simulator speaks as the assistant and reads the target's answers as the user's
    # (after the opening cue every call starts with, so the messages keep one shape turn after turn)
    assert all(r["messages"][1]["content"].startswith("(the conversation starts") for r in ModelUser.requests)
    third = ModelUser.requests[2]["messages"][2:]
    assert [m["role"] for m in third] == ["assistant", "user", "assistant", "user"]
    assert [m["content"] for m in third[::2]] == SPOKEN[:2]
    assert third[1]["content"] == "Which order is it? What's the order number?"
    assert third[3]["content"] == "Shall I refund order 7714? Reply yes to confirm."
    # offline with the same cache: the same conversation, and the server is not asked
    code, again = run_json(cli, "--cache", str(cache), "--offline")
    assert code == 0 and again["run_id"] != s["run_id"]
    assert turns_of(db, again["run_id"], "refund") == SPOKEN and len(ModelUser.requests) == 3
    # offline with a cache that never got the answers: the run stops, still without a call
    r = cli("run", "suites/sim.yaml", "--offline")
    assert r.code == 3 and len(ModelUser.requests) == 3, r


def test_each_repeat_of_a_model_user_is_its_own_cache_entry(cli, project: Path, model_user: str) -> None:
    suite(project, model_cases(model_user) + f'''
  - id: policy
    simulate:
      goal: learn the refund policy
      opening: what is your refund policy?
      simulator: {{model: sim-model, base_url: "{model_user}"}}
''', extra="repeat: 2\n")
    cache = project / "ci-cache.sqlite"
    code, s = run_json(cli, "--cache", str(cache))
    assert code == 0, s
    db = project / ".evalgate" / "evalgate.duckdb"
    for repeat in (0, 1):
        assert turns_of(db, s["run_id"], "refund", repeat) == SPOKEN
        # the model said DONE after the policy: with no goal state, the user being done is the conversation done
        assert turns_of(db, s["run_id"], "policy", repeat) == ["what is your refund policy?"]  # the opening, as written
        assert goal_score(db, s["run_id"], "policy", repeat)[1:3] == (True, "the simulated user stopped after 1 turn(s)")
    # the same messages in two repeats are two calls and two cache entries: (3 + 1) × 2
    assert len(ModelUser.requests) == 8
    con = sqlite3.connect(str(cache))
    try:
        assert con.execute("SELECT count(*) FROM responses").fetchone()[0] == 8
    finally:
        con.close()
    code, again = run_json(cli, "--cache", str(cache), "--offline")
    assert code == 0 and len(ModelUser.requests) == 8
    assert [turns_of(db, again["run_id"], "refund", k) for k in (0, 1)] == [SPOKEN, SPOKEN]


def test_a_refused_model_user_call_errors_its_case_not_the_run(cli, project: Path, model_user: str) -> None:
    ModelUser.status = 400
    suite(project, model_cases(model_user) + "  - {id: policy, input: what is your refund policy?}\n",
          extra="concurrency: 1\n")
    r = cli("run", "suites/sim.yaml", "--json")
    assert len(ModelUser.requests) == 1, r
    s = r.json()["suites"][0]
    assert s["status"] == "completed", s["verdict"]["reasons"]
    db = project / ".evalgate" / "evalgate.duckdb"
    rows = dict(query(db, "SELECT case_id, error FROM cases WHERE run_id = ?", [s["run_id"]]))
    assert set(rows) == {"refund", "policy"} and rows["policy"] is None
    assert rows["refund"].startswith("turn 1: ") and "400" in rows["refund"], rows


# --- show --as-case: a transcript becomes a fixed case ---------------------------------------------------------------


def as_case_suite(example: Path, run_id: str, case_id: str, db: Path) -> tuple[list[dict[str, Any]], Path]:
    r = run_cli_in_process("show", run_id, case_id, "--as-case", "--db", str(db), cwd=example)
    assert r.code == 0, r
    cases = yaml.safe_load(r.out)
    path = write(example / "suites" / f"script-{case_id}.yaml",
                 "name: scripted\ntarget: {python: assistant.bot:respond}\ndocuments: ../datasets/docs.jsonl\n")
    path.write_text(path.read_text() + yaml.safe_dump({"cases": cases}, sort_keys=False))
    return cases, path


def test_show_as_case_writes_the_transcript_as_a_case_that_passes(example: Path, simulated_run: dict[str, Any]) -> None:
    db = example / "s.duckdb"
    cases, path = as_case_suite(example, simulated_run["run_id"], "refund-goal", db)
    assert isinstance(cases, list) and len(cases) == 1 and cases[0]["id"] == "refund-goal-script"
    said = turns_of(db, simulated_run["run_id"], "refund-goal")
    assert [t["input"] for t in cases[0]["turns"]] == said
    r = run_cli_in_process("run", str(path.relative_to(example)), "--json", "--db", str(example / "script.duckdb"),
                           cwd=example)
    assert r.code == 0, r
    s = r.json()["suites"][0]
    assert s["failing"] == [] and s["metrics"]["passed"] == 1 and s["turns"] == 3
    assert turns_of(example / "script.duckdb", s["run_id"], "refund-goal-script") == said
    # the script checks what the conversation did: the last turn's tool call and state
    scored = query(example / "script.duckdb", "SELECT turn, scorer, passed FROM scores WHERE run_id = ? "
                   "AND scorer IN ('state', 'tool_calls') ORDER BY turn, scorer", [s["run_id"]])
    assert scored == [(1, "tool_calls", True), (2, "tool_calls", True), (3, "state", True), (3, "tool_calls", True)]


def test_show_as_case_keeps_the_starting_state(cli, project: Path) -> None:
    suite(project, '''
  - id: known
    state: {plan: gold}
    simulate: {goal: I want a refund, slots: {order_id: "7714"}, stop_when: {state: {refund: issued}}}
''')
    code, s = run_json(cli)
    assert code == 0, s
    r = cli("show", s["run_id"], "known", "--as-case")
    assert r.code == 0, r
    cases = yaml.safe_load(r.out)
    write(project / "suites" / "sim.yaml", "name: scripted\ntarget: {python: refunds:respond}\n"
          + yaml.safe_dump({"cases": cases}, sort_keys=False))
    code, again = run_json(cli)
    assert code == 0 and again["failing"] == [], [c["reasons"] for c in again["failing"]]


# --- mistakes in simulate: exit 2 at their line ----------------------------------------------------------------------


@pytest.mark.parametrize(("cases", "where", "says"), [
    ("  - id: a\n    turns:\n      - input: hi\n    simulate: {goal: refund}\n",
     "bad.yaml:4:5:", ["give one of 'turns', 'input'", "or 'simulate', not turns and simulate"]),
    ("  - id: a\n    simulate: {goal: refund, simulator: chatgpt}\n",
     "bad.yaml:5:", ["simulator is 'builtin' or {model, base_url, api_key_env}"]),
    ("  - id: a\n    simulate: {goal: refund, max_turns: 0}\n",
     "bad.yaml:5:", ["'max_turns'", "greater than or equal to 1"]),
    ("  - id: a\n    simulate: {goal: refund}\ngate:\n  rules:\n    - {metric: goal.turnz, max: 3}\n",
     "bad.yaml:8:", ["unknown statistic 'turnz' for scorer goal", "did you mean 'turns'?"]),
], ids=["simulate-and-turns", "unknown-simulator", "max-turns-0", "goal-turnz"])
def test_a_bad_simulate_is_a_load_error_at_its_line(cli, project: Path, cases: str, where: str,
                                                     says: list[str]) -> None:
    write(project / "suites" / "bad.yaml", "name: bad\ntarget: {python: bot:respond}\ncases:\n" + cases)
    r = cli("run", "suites/bad.yaml")
    assert r.code == 2, r
    assert where in r.err and all(s in r.err for s in says), r.err
    # the same suite with the mistake put right loads and runs
    fixed = (cases.replace("    turns:\n      - input: hi\n", "").replace(", simulator: chatgpt", "")
             .replace(", max_turns: 0", "").replace("goal.turnz", "goal.turns"))
    write(project / "suites" / "bad.yaml", "name: bad\ntarget: {python: bot:respond}\ncases:\n" + fixed)
    r = cli("run", "suites/bad.yaml", "--json")
    assert r.code == 0, r
