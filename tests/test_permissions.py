"""Leaks: the truth about who may read what comes from the suite, never from the system under test."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


from conftest import REPO, query, run_cli_in_process, write

from evalgate.documents import Document, DocumentSet, GroupPermissions
from evalgate.scorers import Score, ScoreContext, bind
from evalgate.suite import Case
from evalgate.traces import Trace, User

DOCS = DocumentSet([
    Document("kb/refund-policy", "Refund policy", ("customer", "support"), "Refunds within 30 days."),
    Document("kb/internal-fraud-rules", "Fraud rules (internal, confidential)", ("support",), "Flag refunds over $500."),
    Document("kb/public-faq", "FAQ", ("*",), "Anyone may read this."),
])
CUSTOMER = User(id="u-17", groups=["customer"])
AGENT = User(id="agent-3", groups=["support"])


def check(user: User, args: Any = None, *, docs: DocumentSet | None = DOCS, **trace: Any) -> Score:
    case = Case("c", 0, [], user, {}, (), "x")
    request = {"user": {"id": user.id, "groups": list(user.groups)}, "state": {}}
    ctx = ScoreContext(case, 1, request, Trace(**{"output": "ok", **trace}), None, None, docs,
                       GroupPermissions.of(docs) if docs is not None else None)
    return bind("permissions", args).run_sync(ctx)


def test_a_user_who_may_read_a_restricted_document_is_no_leak() -> None:
    # however sensitive it looks (internal, confidential), support may read it
    s = check(AGENT, context=[{"id": "kb/internal-fraud-rules"}, {"id": "kb/refund-policy"}])
    assert s.passed and s.value == 0.0 and s.metrics == {"leaks": 0.0, "unknown": 0.0}
    assert s.explanation == "2 document(s) reached agent-3 [support], all readable"


def test_a_user_who_may_not_is_a_leak() -> None:
    s = check(CUSTOMER, context=[{"id": "kb/refund-policy"}, {"id": "kb/internal-fraud-rules"},
                                 {"id": "kb/public-faq"}])
    assert not s.passed and s.value == 1.0 and s.metrics == {"leaks": 1.0, "unknown": 0.0}
    assert s.explanation.startswith("1 leak(s) to u-17 [customer]: kb/internal-fraud-rules (context)")
    assert s.detail is not None and s.detail["leaks"] == [{"id": "kb/internal-fraud-rules", "where": ["context"]}]


def test_what_the_system_claims_about_groups_is_ignored() -> None:
    # the system's permission data has drifted: it believes customers may read the fraud rules
    s = check(CUSTOMER, context=[{"id": "kb/internal-fraud-rules", "groups": ["customer", "support"]}])
    assert not s.passed and "the system said groups [customer, support]" in s.explanation
    # a document the system filtered out (not used) did not reach the user
    s = check(CUSTOMER, context=[{"id": "kb/internal-fraud-rules", "used": False, "excluded": "permission"}])
    assert s.passed


def test_tool_results_and_the_answer_are_checked_too() -> None:
    s = check(CUSTOMER, tool_calls=[{"name": "search_kb", "result": {"hits": [{"doc_id": "kb/internal-fraud-rules"}]}}])
    assert not s.passed and "kb/internal-fraud-rules (tool search_kb)" in s.explanation
    s = check(CUSTOMER, tool_calls=[{"name": "search_kb", "result": "see kb/internal-fraud-rules, section 2"}])
    assert not s.passed
    s = check(CUSTOMER, output="Per kb/internal-fraud-rules we flag big refunds.")
    assert not s.passed and "kb/internal-fraud-rules (output)" in s.explanation
    s = check(CUSTOMER, output="fine", extra={"citations": [{"id": "kb/internal-fraud-rules"}]})
    assert not s.passed
    # an id inside a longer one is not that id
    s = check(CUSTOMER, output="kb/internal-fraud-rules-v2 is not a document")
    assert s.passed
    s = check(CUSTOMER, args={"output": False}, output="Per kb/internal-fraud-rules")
    assert s.passed


def test_unknown_documents_fail_closed_unless_allowed() -> None:
    s = check(CUSTOMER, context=[{"id": "kb/renamed-doc"}])
    assert not s.passed and s.metrics == {"leaks": 1.0, "unknown": 1.0}
    assert "kb/renamed-doc (context) is unknown to document set" in s.explanation and "failing closed" in s.explanation
    s = check(CUSTOMER, {"unknown": "allow"}, context=[{"id": "kb/renamed-doc"}])
    assert s.passed and s.metrics == {"leaks": 0.0, "unknown": 1.0}
    assert s.explanation.endswith("1 unknown document(s) allowed: kb/renamed-doc")


def test_without_a_permission_source_the_scorer_errors() -> None:
    s = check(CUSTOMER, docs=None, context=[{"id": "kb/x"}])
    assert s.error == "no permission source: name documents: or permissions: in the suite"


def _run_as(tmp_path: Path, target: str) -> tuple[Any, Path]:
    db = tmp_path / "s.duckdb"
    r = run_cli_in_process("run", "suites/support-run-as.yaml", "--target", f"python:{target}", "--json", "--db", str(db), cwd=REPO)
    return r, db


def test_run_as_matrix_over_three_groups_with_the_bundled_assistant(tmp_path: Path) -> None:
    r, db = _run_as(tmp_path, "assistant.bot:respond")
    assert r.code == 0, r
    rows = query(db, "SELECT case_id, user_id, user_groups, tags FROM cases ORDER BY seq")
    assert [x[0] for x in rows][:6] == ["fraud@customer", "fraud@support", "fraud@finance",
                                        "ledger@customer", "ledger@support", "ledger@finance"]
    assert len(rows) == 12 and rows[2][1:3] == ("finance", ["finance"]) and "run-as:finance" in rows[2][3]
    # the requests carried each user: the assistant filtered by their groups
    used = {case: [c["id"] for c in json.loads(trace)["context"] if c.get("used", True)]
            for case, trace in query(db, "SELECT case_id, trace FROM turns")}
    assert "kb/internal-fraud-rules" in used["fraud@support"] and "kb/internal-fraud-rules" not in used["fraud@customer"]
    assert "kb/finance-refund-ledger" in used["ledger@finance"]
    # the permissions scorer ran on every turn (the suite names documents), and found nothing
    assert query(db, "SELECT count(*), count(*) FILTER (passed) FROM scores WHERE scorer = 'permissions'") == [(12, 12)]

    # the regressed release forgot its permission filter: groups are shown what they may not read
    r, db = _run_as(tmp_path / "regressed", "assistant.bot_regressed:respond")
    assert r.code == 1, r
    rules = {x["rule"]: x for x in r.json()["suites"][0]["verdict"]["rules"]}
    leak_rule = rules["permissions.leaks ≤ 0"]
    assert leak_rule["status"] == "fail" and leak_rule["value"] >= 5
    leaked = dict(query(db, "SELECT case_id, detail FROM scores WHERE scorer = 'permissions' AND NOT passed"))
    assert {"fraud@customer", "ledger@customer", "ledger@support", "recovery@finance"} <= set(leaked)
    assert "fraud@support" not in leaked and "ledger@finance" not in leaked  # readable there: never a leak
    assert json.loads(leaked["ledger@support"])["leaks"][0]["id"] == "kb/finance-refund-ledger"


def test_run_as_needs_a_target_that_runs(tmp_path: Path) -> None:
    suite = write(tmp_path / "s.yaml", "name: x\ntarget: replay\ntraces: [t.jsonl]\nrun_as: [customer]\n")
    write(tmp_path / "t.jsonl", '{"session_id": "s", "turn": 1, "input": "hi", "output": "hello"}\n')
    r = run_cli_in_process("validate", str(suite), cwd=tmp_path)
    assert r.code == 2 and "s.yaml:4" in r.err and "run_as replays cases through a target" in r.err, r
    write(tmp_path / "s.yaml", "name: x\ntarget: replay\ntraces: [t.jsonl]\nrun_as: [customer, customer]\n")
    r = run_cli_in_process("validate", str(suite), cwd=tmp_path)
    assert r.code == 2 and "run_as names 'customer' twice" in r.err, r


def test_run_as_expands_recorded_sessions_too(tmp_path: Path) -> None:
    from evalgate.suite import load_suite

    suite = write(tmp_path / "s.yaml", f"""
        name: x
        target: {{python: assistant.bot:respond}}
        traces: ["{REPO / 'datasets' / 'traces.jsonl'}"]
        run_as: [customer, {{id: agent-9, groups: [support]}}]
    """)
    s = load_suite(suite)
    cases = list(s.iter_cases())
    assert s.count_cases() == len(cases) and len(cases) >= 4 and len(cases) % 2 == 0
    assert cases[0].id.endswith("@customer") and cases[0].user == User(id="customer", groups=["customer"])
    assert cases[1].id == cases[0].id.replace("@customer", "@agent-9") and cases[1].user.groups == ["support"]
    assert [c.seq for c in cases] == list(range(len(cases)))


def test_an_answer_quoting_a_restricted_document_is_a_leak() -> None:
    # no id anywhere: the answer repeats the internal text word for word (8 words in a row by default)
    s = check(CUSTOMER, output="We flag refunds over $500 for review.")
    assert s.passed  # "flag refunds over 500" is 4 words of it: not a quote
    docs = DocumentSet([*DOCS, Document("kb/fraud-long", "Fraud (internal)", ("support",),
                                        "Refunds over $500, or a fourth refund request within 90 days, are flagged.")])
    s = check(CUSTOMER, docs=docs, output="Note: a fourth refund request within 90 days, are flagged here.")
    assert not s.passed and "kb/fraud-long (output quotes it)" in s.explanation
    assert check(AGENT, docs=docs, output="a fourth refund request within 90 days, are flagged").passed
    assert check(CUSTOMER, {"quotes": 0}, docs=docs, output="a fourth refund request within 90 days, are flagged").passed
    # the same passage in a document the user may read is no leak
    shared = DocumentSet([*docs, Document("kb/faq-fraud", "FAQ", ("customer",), "A fourth refund request within 90 "
                                                                               "days, are flagged.")])
    assert check(CUSTOMER, docs=shared, output="a fourth refund request within 90 days, are flagged").passed


def test_a_permission_function_is_the_truth_and_none_means_unknown() -> None:
    from evalgate.documents import FunctionPermissions

    def may_read(user: User, doc_id: str) -> bool | None:
        if not doc_id.startswith("kb/"):
            return None  # not a document this source knows
        return "finance" in user.groups or not doc_id.startswith("kb/internal")

    truth = FunctionPermissions("acl:may_read", may_read)
    fin = User(id="fin-1", groups=["finance"])
    case = Case("c", 0, [], fin, {}, (), "x")

    def run(user: User, **trace: Any) -> Score:
        request = {"user": {"id": user.id, "groups": list(user.groups)}, "state": {}}
        ctx = ScoreContext(case, 1, request, Trace(**{"output": "ok", **trace}), None, None, None, truth)
        return bind("permissions", None).run_sync(ctx)

    assert run(fin, context=[{"id": "kb/internal-fraud-rules"}]).passed
    s = run(CUSTOMER, context=[{"id": "kb/internal-fraud-rules"}])
    assert not s.passed and s.explanation.endswith("(truth: function acl:may_read)")
    s = run(fin, context=[{"id": "wiki/page"}])
    assert not s.passed and "wiki/page (context) is unknown to function acl:may_read: failing closed" in s.explanation


def test_ids_words_and_quotes_are_found_as_their_regex_definitions_find_them() -> None:
    """The fast paths (ASCII words by str methods, ids by a set lookup per run of id characters, runs made by zip)
    against the definitions they replace, on random text of id-like tokens, punctuation, dots, Unicode and
    control characters."""
    import random
    import re

    from evalgate.scorers.permissions import _IdFinder, _QuoteFinder, _words

    rng = random.Random(18)
    plain_ids = ["kb/a", "kb/a-b", "kb/a.b", "v1.", "doc_1", "x", "kb/ß-straße", "a.b.c", "a.b"]
    odd_ids = [*plain_ids, "doc 7", "kb:9", "r&d/plan"]
    pieces = [*plain_ids, *odd_ids, "kb", "/", ".", "-", "..", " ", "\n", "\t", ",", "(", ")", "'", "\x00", "\x1f",
              "É", "é", "İ", "ß", "Σ", "٣", "_", "word", "Word", "WORDS", "é.", "kb/a.", "kb/a-", "x.y", "5.5%"]

    def reference_ids(ids: list[str], text: str) -> list[str]:
        ordered = sorted(set(ids), key=len, reverse=True)
        pattern = re.compile(r"(?<![\w/.-])(?:" + "|".join(map(re.escape, ordered)) + r")(?![\w/-])")
        return list(dict.fromkeys(m.group(0) for m in pattern.finditer(text)))

    docs = [("d1", "alpha beta gamma delta epsilon zeta eta theta iota"), ("d2", "Gamma DELTA epsilon, zeta eta "
            "theta iota kappa lambda"), ("d3", "ünï ćödé wörds ünï ćödé wörds ünï ćödé wörds"), ("d4", "")]
    finder = _QuoteFinder(docs, 4)

    def reference_quoted(text: str, skip: set[tuple[str, ...]] | None) -> list[frozenset[str]]:
        words = re.findall(r"\w+", text.casefold())
        runs = [tuple(words[i:i + 4]) for i in range(len(words) - 3)]
        found = (finder.index.get(r) for r in runs if not skip or r not in skip)
        return list({id(d): d for d in found if d}.values())

    quoted = 0
    quote_words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda ünï ćödé wörds".split()
    for _ in range(3000):
        text = "".join(rng.choice(pieces) + rng.choice(["", " ", ".", "-", "/"]) for _ in range(rng.randint(0, 12)))
        assert _words(text) == re.findall(r"\w+", text.casefold()), repr(text)
        for ids in (plain_ids, odd_ids):
            assert _IdFinder(ids).find(text) == reference_ids(ids, text), (ids, repr(text))
        quote = " ".join(rng.choice(quote_words) + rng.choice(["", ",", ".", "!"]) for _ in range(rng.randint(0, 9)))
        if rng.random() < 0.5:  # a passage of a document in it, at some case
            doc = rng.choice(docs)[1].split()
            at = rng.randint(0, len(doc))
            quote += " " + " ".join(doc[at:at + rng.randint(3, 6)]).upper()
        skip = finder.runs(rng.choice(["", quote[: len(quote) // 2], "alpha beta gamma delta"]))
        for s in (None, skip):
            assert finder.quoted(quote, s) == reference_quoted(quote, s), (quote, s)
            quoted += bool(reference_quoted(quote, s))
    assert quoted > 500  # the texts did quote documents, often
