"""Recovery variants: conversations derived from written ones (seeded, ids ``<case>~<operator>-<n>``), the recovery
check on their end, resumed sessions in the request, and ``recovery.rate`` in the gate."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, query, run_cli_in_process, write

REFUND_CASE = '''
  - id: refund
    tags: [refunds, critical]
    turns:
      - input: I want a refund for order 5512
        expect:
          state: {order_id: "5512"}
          tool_calls: {must_exclude: [issue_refund]}
      - input: what's the policy?
        expect:
          tool_calls: {must_exclude: [issue_refund]}
      - input: "yes"
        expect:
          state: {order_id: "5512", confirmed: true}
          tool_calls:
            must_include: [issue_refund]
            calls: [{name: issue_refund, arguments: {order_id: "5512"}}]
'''
WRITTEN = ("I want a refund for order 5512", "what's the policy?", "yes")
NO_REFUND = {"tool_calls": {"must_exclude": ["issue_refund"]}}

FAULTY_BOT = '''
"""A refund bot wrong in two named ways: it ignores corrections, and a repeated yes refunds again."""
import re

YES = {"yes", "yep", "yeah", "ok", "okay", "sure", "good", "perfect", "alright", "go", "sounds", "that"}


def respond(req):
    text = req["input"].lower()
    state = dict(req["state"])
    calls = []
    ids = re.findall(r"\\b(\\d{4})\\b", text)
    if ids and "order_id" not in state:  # fault 1: the first order number stays, whatever the user says next
        state["order_id"] = ids[0]
    words = re.findall(r"[a-z']+", text)
    if words and words[0] in YES and "order_id" in state:  # fault 2: no look at whether it already refunded
        calls.append({"name": "issue_refund", "arguments": {"order_id": state["order_id"]}})
        state["confirmed"] = True
    return {"output": f"order {state.get('order_id', 'none')}", "state": state, "tool_calls": calls}
'''

RECORDER = '''
"""Records every request it receives, one JSON line each; the state remembers what it heard."""
import json, pathlib

LOG = pathlib.Path(__file__).parent / "requests.jsonl"


def respond(req):
    with LOG.open("a", encoding="utf-8") as f:
        f.write(json.dumps(req) + "\\n")
    state = dict(req["state"])
    state["heard"] = [*state.get("heard", []), req["input"]]
    return {"output": "noted", "state": state}
'''


def refund_suite(project: Path, variants: str, *, target: str = "faulty:respond", extra: str = "") -> Path:
    write(project / "faulty.py", FAULTY_BOT)
    return write(project / "suites" / "refund.yaml",
                 f"name: refund\ntarget: {{python: {target}}}\nvariants: {variants}\n{extra}cases:{REFUND_CASE}")


def load(path: Path) -> dict[str, Any]:
    from evalgate.suite import load_suite

    return {c.id: c for c in load_suite(path).static_cases}


def inputs(case: Any) -> list[str]:
    return [t.input for t in case.turns]


def of(cases: dict[str, Any], operator: str) -> list[Any]:
    return [c for c in cases.values() if c.variant_of is not None and f"variant:{operator}" in c.tags]


# --- deriving: ids, determinism, each operator's shape ---------------------------------------------------------------


def test_the_same_seed_derives_the_same_variants_and_another_seed_others(project: Path) -> None:
    path = refund_suite(project, "{seed: 3, per_operator: 2}")
    first, again = load(path), load(path)

    def shape(cases: dict[str, Any]) -> list[Any]:
        return [(c.id, inputs(c), [t.resume for t in c.turns], [t.expect for t in c.turns]) for c in cases.values()]

    assert shape(first) == shape(again)
    refund_suite(project, "{seed: 4, per_operator: 2}")
    other = load(path)
    assert shape(other) != shape(first)
    assert any(inputs(other[v]) != inputs(first[v]) for v in set(first) & set(other) if v != "refund")
    variants = [c for c in first.values() if c.id != "refund"]
    assert len(variants) >= 8 and first["refund"].critical
    for c in variants:
        op = re.fullmatch(r"refund~([a-z_]+)-(\d+)", c.id)
        assert op is not None, c.id
        assert c.variant_of == "refund"
        assert "variant" in c.tags and f"variant:{op.group(1)}" in c.tags and "refunds" in c.tags
        assert "critical" not in c.tags and not c.critical


def test_confirmation_and_typo_change_one_turns_words_and_nothing_else(project: Path) -> None:
    cases = load(refund_suite(project, "{operators: [confirmation, typo], per_operator: 3, seed: 5}"))
    confirmations, typos = of(cases, "confirmation"), of(cases, "typo")
    assert len(confirmations) == 3 and len({inputs(c)[2] for c in confirmations}) == 3
    for c in confirmations:
        assert inputs(c)[:2] == list(WRITTEN[:2]) and inputs(c)[2] not in ("yes", "")
        # earlier turns keep only what the written turns forbid; the last carries the end
        assert [t.expect for t in c.turns[:2]] == [NO_REFUND, NO_REFUND]
        end = c.turns[2].expect["recovery"]
        assert end["operator"] == "confirmation" and end["state"] == {"order_id": "5512", "confirmed": True}
        assert end["tools"] == {"issue_refund": 1} and end["exact"] == ["issue_refund"]
    assert typos
    for c in typos:
        changed = [(w, t) for w, t in zip(WRITTEN, inputs(c)) if w != t]
        assert len(changed) == 1, inputs(c)
        was, now = changed[0][0].split(), changed[0][1].split()
        words = [(a, b) for a, b in zip(was, now) if a != b]
        assert len(was) == len(now) and len(words) == 1, (was, now)
        assert re.search(r"[A-Za-z]{4,}", words[0][0]) and not re.search(r"\d", words[0][0])


def test_correction_restates_the_value_and_later_expectations_follow_it(project: Path) -> None:
    cases = load(refund_suite(project, "{operators: [correction], per_operator: 3, seed: 2}"))
    corrections = of(cases, "correction")
    assert len(corrections) == 3
    for c in corrections:
        said = inputs(c)
        assert len(said) == 4 and [said[0], *said[2:]] == list(WRITTEN)
        new = re.findall(r"\b\d{4}\b", said[1].replace("5512", ""))
        assert len(new) == 1 and new[0] != "5512", said[1]  # a new value, of the same shape
        end = c.turns[-1].expect["recovery"]
        assert end["state"] == {"order_id": new[0], "confirmed": True}
        assert end["calls"] == [{"name": "issue_refund", "arguments": {"order_id": new[0]}}]
        assert f"'5512' → '{new[0]}'" in end["step"] and end["step"].startswith("turn 2: ")


def test_side_question_leave_and_return_and_repeat_insert_or_mark_turns(project: Path) -> None:
    cases = load(refund_suite(project, "{operators: [side_question, leave_and_return, repeat], per_operator: 3, "
                                       "questions: ['do you ship to Norway?']}"))
    questions = of(cases, "side_question")
    assert len(questions) == 2  # one question, asked before turn 2 or before turn 3
    assert {inputs(c).index("do you ship to Norway?") for c in questions} == {1, 2}
    for c in questions:
        assert [t for t in inputs(c) if t != "do you ship to Norway?"] == list(WRITTEN)
    returns = of(cases, "leave_and_return")
    assert sorted([t.resume for t in c.turns].index(True) for c in returns) == [1, 2]
    for c in returns:
        assert inputs(c) == list(WRITTEN) and sum(t.resume for t in c.turns) == 1
    repeats = of(cases, "repeat")
    assert len(repeats) == 3
    for c in repeats:
        said = inputs(c)
        twice = next(i for i in range(3) if said[i] == said[i + 1])
        assert said[:twice] + said[twice + 1:] == list(WRITTEN)
        assert c.turns[-1].expect["recovery"]["operator"] == "repeat"


# --- a run: a bot that is wrong in named ways -----------------------------------------------------------------------


def test_a_bot_that_ignores_corrections_fails_the_correction_rate_and_says_why(cli, project: Path) -> None:
    refund_suite(project, "{seed: 3, per_operator: 3}",
                 extra="gate:\n  rules:\n    - {metric: recovery.rate.correction, min: 0.9}\n")
    r = cli("run", "suites/refund.yaml", "--json")
    assert r.code == 1, r
    s = r.json()["suites"][0]
    failing = {c["case_id"] for c in s["failing"]}
    assert "refund" not in failing  # as written, the bot passes: the variants measure recovery alone
    m = s["metrics"]
    assert m["recovery.rate.correction"] == 0.0
    assert 0 < m["recovery.rate.repeat"] < 1
    assert m["recovery.rate.typo"] == 1.0 and m["recovery.rate.confirmation"] == 1.0
    assert m["recovery.rate.leave_and_return"] == 1.0 and m["recovery.rate.side_question"] == 1.0
    rule = s["verdict"]["rules"][0]
    assert rule["rule"].startswith("recovery.rate.correction") and rule["status"] == "fail"
    assert rule["cases"] == ["refund~correction-1", "refund~correction-2", "refund~correction-3"]
    db = project / ".evalgate" / "evalgate.duckdb"
    rows = query(db, "SELECT case_id, passed, explanation FROM scores WHERE run_id = ? AND scorer = 'recovery' "
                     "ORDER BY case_id", [s["run_id"]])
    by_case = {row[0]: row[1:] for row in rows}
    for case in rule["cases"]:
        passed, why = by_case[case]
        assert not passed and why.startswith("after turn 2: '") and "the state still says order_id='5512'" in why
        new = re.search(r"→ '(\d{4})'", why).group(1)
        assert f"issue_refund(order_id='{new}') never called" in why
    repeated_yes = [why for passed, why in by_case.values() if "'yes' sent again" in why]
    assert repeated_yes == [("after turn 4: 'yes' sent again: issue_refund called twice (turns 3, 4); "
                             "the written conversation calls it once")]
    assert by_case["refund~typo-1"][0] and "reached the same end" in by_case["refund~typo-1"][1]


def test_a_per_operator_rate_reads_as_a_percentage_in_the_verdict(cli, project: Path) -> None:
    refund_suite(project, "{operators: [correction], per_operator: 3}",
                 extra="gate:\n  rules:\n    - {metric: recovery.rate.correction, min: 0.9}\n")
    r = cli("run", "suites/refund.yaml", "--json")
    rule = r.json()["suites"][0]["verdict"]["rules"][0]
    assert rule["limit"] == "≥ 90.0%" and rule["detail"].startswith("0.0% is below the minimum 90.0%"), rule


def test_variants_run_as_a_group_are_measured_against_their_original(cli, project: Path) -> None:
    refund_suite(project, "{operators: [typo, confirmation]}",
                 extra="run_as: [customer]\ngate:\n  rules:\n    - {metric: recovery.rate, min: 0.5}\n")
    r = cli("run", "suites/refund.yaml", "--json")
    s = r.json()["suites"][0]
    assert s["metrics"]["pass_rate"] == 1.0  # every case, written and derived, passes
    assert s["metrics"]["recovery.rate"] == 1.0 and r.code == 0, r


# --- resumed sessions: what the target receives ---------------------------------------------------------------------


def recorded(project: Path) -> dict[tuple[str, int], dict[str, Any]]:
    lines = (project / "requests.jsonl").read_text(encoding="utf-8").splitlines()
    return {(r["case_id"], r["turn"]): r for r in map(json.loads, lines)}


WRITTEN_CHAT = ["first", "second", "third"]
RESUME_SUITE = '''
name: resume
target: {python: recorder:respond}
concurrency: 1
variants: {operators: [leave_and_return], per_operator: 2, tags: [chat]%s}
cases:
  - id: chat
    tags: [chat]
    state: {plan: basic}
    turns:
      - input: first
      - input: second
      - input: third
  - id: back
    state: {plan: basic}
    turns:
      - input: I want a refund please
      - input: hello again, where were we?
        resume: true
'''


def test_a_resumed_turn_opens_a_new_session_with_the_state_carried(cli, project: Path) -> None:
    write(project / "recorder.py", RECORDER)
    write(project / "suites" / "resume.yaml", RESUME_SUITE % "")
    r = cli("run", "suites/resume.yaml", "--json")
    assert r.code == 0, r
    at_run = "@" + r.json()["suites"][0]["run_id"]  # session ids are the run's own
    seen = recorded(project)
    assert len(seen) == 3 + 3 + 3 + 2 and not any(case.startswith("back~") for case, _ in seen)  # tags: [chat]
    resumed = {case: turn for (case, turn), req in seen.items() if req.get("resumed") and "~" in case}
    assert sorted(resumed.values()) == [2, 3]  # two variants: the user leaves before turn 2, or before turn 3
    for vid, at in resumed.items():
        req, before = seen[(vid, at)], seen[(vid, at - 1)]
        assert before["session_id"] == f"{vid}#0{at_run}" and "resumed_from" not in before
        assert req["resumed"] is True and req["resumed_from"] == before["session_id"]
        assert req["session_id"] == f"{vid}#0~{at}{at_run}" and req["history"] == []
        assert req["state"] == {"plan": "basic", "heard": WRITTEN_CHAT[:at - 1]}  # what the system last returned
        if at == 2:  # the conversation goes on in the new session
            after = seen[(vid, 3)]
            assert after["session_id"] == f"{vid}#0~2{at_run}" and "resumed" not in after and len(after["history"]) == 2
    assert not any(seen[("chat", t)].get("resumed") for t in (1, 2, 3))
    back = seen[("back", 2)]  # written by hand
    assert back["resumed"] is True and back["resumed_from"] == f"back#0{at_run}" and back["session_id"] == f"back#0~2{at_run}"
    assert back["history"] == [] and back["state"] == {"plan": "basic", "heard": ["I want a refund please"]}


def test_without_carry_state_the_resumed_session_starts_from_the_cases_state(cli, project: Path) -> None:
    write(project / "recorder.py", RECORDER)
    write(project / "suites" / "resume.yaml", RESUME_SUITE % ", carry_state: false")
    r = cli("run", "suites/resume.yaml", "--json")
    assert r.code == 0, r
    seen = recorded(project)
    db, run_id = project / ".evalgate" / "evalgate.duckdb", r.json()["suites"][0]["run_id"]
    for vid in ("chat~leave_and_return-1", "chat~leave_and_return-2"):
        at = next(turn for (case, turn), req in seen.items() if case == vid and req.get("resumed"))
        returned = query(db, "SELECT state FROM turns WHERE run_id = ? AND case_id = ? AND turn = ?", [run_id, vid, at - 1])
        assert json.loads(returned[0][0]) == {"plan": "basic", "heard": WRITTEN_CHAT[:at - 1]}  # what it had built up
        assert seen[(vid, at)]["state"] == {"plan": "basic"} and seen[(vid, at)]["resumed"] is True
    # a hand-written resume is not a variant: it carries the state, whatever the variants say
    assert seen[("back", 2)]["state"] == {"plan": "basic", "heard": ["I want a refund please"]}


def test_variants_of_a_case_that_resumes_resume_too(project: Path) -> None:
    write(project / "suites" / "hand.yaml", '''
        name: hand
        target: {python: bot:respond}
        variants: {operators: [typo, side_question]}
        cases:
          - id: back
            turns:
              - input: I want a refund please
              - input: hello again, where were we?
                resume: true
        ''')
    cases = load(project / "suites" / "hand.yaml")
    assert [t.resume for t in cases["back"].turns] == [False, True]
    for c in of(cases, "typo") + of(cases, "side_question"):
        assert [t.resume for t in c.turns][-1] is True, (c.id, inputs(c))


# --- mistakes in the suite: exit 2 at their line -------------------------------------------------------------------


@pytest.mark.parametrize(("suite", "where", "says"), [
    ("cases:\n  - id: back\n    turns:\n      - input: hello again\n        resume: true\n      - input: 'yes'\n",
     "bad.yaml:4:", ["the first turn cannot resume"]),
    ("variants: {operators: [typo, corection]}\ncases:\n  - {id: hi, input: hello}\n",
     "bad.yaml:3:", ["unknown variant operator 'corection'", "did you mean 'correction'?"]),
    (("variants: {seed: 2}\ncases:\n  - {id: hi, input: hello}\ngate:\n  rules:\n"
      "    - {metric: recovery.rate.typoo, min: 0.9}\n"),
     "bad.yaml:8:", ["unknown recovery operator 'typoo'", "did you mean 'typo'?"]),
], ids=["resume-on-first-turn", "unknown-operator", "unknown-operator-in-rule"])
def test_a_bad_variants_suite_is_a_load_error_at_its_line(cli, project: Path, suite: str, where: str,
                                                          says: list[str]) -> None:
    write(project / "suites" / "bad.yaml", "name: bad\ntarget: {python: bot:respond}\n" + suite)
    r = cli("run", "suites/bad.yaml")
    assert r.code == 2, r
    assert where in r.err and all(s in r.err for s in says), r.err


def test_a_typo_leaves_codes_with_digits_alone(project: Path) -> None:
    write(project / "suites" / "code.yaml", '''
        name: code
        target: {python: bot:respond}
        variants: {operators: [typo]}
        cases:
          - id: voucher
            turns:
              - input: use XK42PLMN
                expect: {state: {voucher: XK42PLMN}}
        ''')
    typos = of(load(project / "suites" / "code.yaml"), "typo")
    assert all("XK42PLMN" in inputs(c)[0] for c in typos), [inputs(c) for c in typos]


# --- the bundled example ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the bundled example with a suite that turns variants on for its support conversations."""
    work = tmp_path_factory.mktemp("example")
    for name in ("pyproject.toml", "suites", "datasets", "assistant", "pipelines"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, work / name)
    write(work / "suites" / "support-variants.yaml", '''
        name: support-variants
        target: {python: assistant.bot:respond}
        documents: ../datasets/docs.jsonl
        variants: {seed: 1}
        cases:
          - file: ../datasets/support_cases.yaml
        ''')
    return work


def run_example(example: Path, *args: str) -> dict[str, Any]:
    r = run_cli_in_process("run", "suites/support-variants.yaml", "--json", "--db", str(example / "s.duckdb"), *args,
                           cwd=example)
    assert r.code in (0, 1), r
    return {"code": r.code, **r.json()["suites"][0]}


def test_the_example_assistant_recovers_from_every_variant(example: Path) -> None:
    s = run_example(example)
    assert s["code"] == 0 and s["failing"] == []
    m = s["metrics"]
    assert m["recovery.rate"] == 1.0
    assert {k for k in m if k.startswith("recovery.rate.")} == {f"recovery.rate.{op}" for op in (
        "confirmation", "correction", "side_question", "leave_and_return", "repeat", "typo")}
    assert all(m[k] == 1.0 for k in m if k.startswith("recovery.rate."))


def test_the_regressed_assistant_does_not_recover_from_corrections(example: Path) -> None:
    s = run_example(example, "--target", "python:assistant.bot_regressed:respond")
    assert s["code"] == 1
    m = s["metrics"]
    assert m["recovery.rate.correction"] < 1 and m["recovery.rate"] < 1
    reasons = [f for c in s["failing"] if "~correction-" in c["case_id"] for f in c["reasons"]]
    assert any("recovery: after turn" in f and "the state still says" in f for f in reasons), reasons
