"""Permissions from the sources teams have: a users source for ids without groups, any ACL field name, an explicit
meaning for a document without one, and permission functions beside the suite."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import query, write

from evalgate.documents import (
    DocumentSet,
    FunctionUsers,
    GroupPermissions,
    UserFile,
    UserPermissions,
    resolve_user,
)
from evalgate.errors import SuiteError
from evalgate.traces import User

DOCS = """
    {"id": "kb/refund-policy", "title": "Refund policy", "groups": ["customer", "support"], "text": "Refunds within 30 days."}
    {"id": "kb/internal-fraud-rules", "title": "Fraud rules", "groups": ["support"], "text": "Flag refunds over $500."}
    {"id": "kb/public-faq", "title": "FAQ", "groups": ["*"], "text": "Anyone may read this."}
"""


def _trace(session: str, user: str, *docs: str, claimed: list[str] | None = None) -> str:
    """One recorded turn: the user carries only an id (as a span does); the context used these documents."""
    context = [{"id": d, "used": True, **({"groups": claimed} if claimed else {})} for d in docs]
    return json.dumps({"session_id": session, "turn": 1, "input": "refund rules?", "output": "Here is what I found.",
                       "user": {"id": user}, "context": context})


TRACES = "\n".join([
    # the system believes customers may read the fraud rules: what it reports is never the truth
    _trace("s-customer", "u-17", "kb/refund-policy", "kb/internal-fraud-rules", claimed=["customer"]),
    _trace("s-agent", "agent-3", "kb/refund-policy", "kb/internal-fraud-rules"),
    _trace("s-ghost", "u-ghost", "kb/public-faq", "kb/refund-policy"),
]) + "\n"


def _replay_suite(project: Path, users: str, *, documents: str = "docs.jsonl", extra: str = "") -> Path:
    """A replay suite in suites/team/ scoring the recorded traces with the given users: source."""
    folder = project / "suites" / "team"
    write(folder / "docs.jsonl", DOCS)
    write(folder / "traces.jsonl", TRACES)
    (project / "suites" / "demo.yaml").unlink(missing_ok=True)
    return write(folder / "recorded.yaml", f"""
        name: recorded
        target: replay
        documents: {documents}
        users: {users}
        traces: [traces.jsonl]
    """ + extra)


def _permission_scores(db: Path) -> dict[str, tuple[bool, str, dict[str, Any]]]:
    rows = query(db, "SELECT case_id, passed, explanation, detail FROM scores WHERE scorer = 'permissions'")
    return {case: (passed, explanation, json.loads(detail)) for case, passed, explanation, detail in rows}


def _run(cli: Any, project: Path, suite: Path) -> tuple[Any, dict[str, tuple[bool, str, dict[str, Any]]]]:
    db = project / "run.duckdb"
    r = cli("run", str(suite.relative_to(project)), "--db", str(db), "--json")
    return r, _permission_scores(db)


def _check_verdicts(scores: dict[str, tuple[bool, str, dict[str, Any]]], origin: str) -> None:
    passed, explanation, detail = scores["s-customer"]
    assert not passed and explanation.startswith(f"1 leak(s) to u-17 [customer] (groups from {origin}): "
                                                 "kb/internal-fraud-rules (context); the system said groups [customer]")
    assert detail["groups"] == ["customer"] and detail["groups_from"].startswith(origin.split()[0])
    passed, explanation, detail = scores["s-agent"]
    assert passed, explanation
    assert explanation == f"2 document(s) reached agent-3 [support, finance] (groups from {origin}), all readable"
    # an id the users source does not know has no groups: the open FAQ is fine, the refund policy is a leak
    passed, explanation, detail = scores["s-ghost"]
    assert not passed and f"user u-ghost is not in the users source, {origin}" in explanation
    assert "u-ghost [no groups]" in explanation and "kb/refund-policy (context)" in explanation
    assert "kb/public-faq" not in explanation.split(": ", 1)[1] and detail["user_unknown"] is True


def test_a_yaml_users_source_gives_recorded_users_their_groups(cli, project: Path) -> None:
    write(project / "suites" / "team" / "users.yaml", "u-17: [customer]\nagent-3: [support, finance]\n")
    suite = _replay_suite(project, "{file: users.yaml}")
    r = cli("validate", str(suite))
    assert r.code == 0, r
    r, scores = _run(cli, project, suite)
    assert r.code == 1, r  # the leaks fail the gate every suite has
    rules = {x["rule"]: x for x in r.json()["suites"][0]["verdict"]["rules"]}
    assert rules["permissions.leaks ≤ 0"]["status"] == "fail"
    _check_verdicts(scores, "users file suites/team/users.yaml")


@pytest.mark.parametrize("name,content", [
    ("users.csv", "id,groups\nu-17,customer\nagent-3,support;finance\n"),
    ("users.csv", "id,groups\nu-17,customer\nagent-3,support|finance\n"),
    ("users.jsonl", '{"id": "u-17", "groups": ["customer"]}\n{"id": "agent-3", "groups": ["support", "finance"]}\n'),
    ("users.json", '{"u-17": ["customer"], "agent-3": ["support", "finance"]}\n'),
])
def test_csv_jsonl_and_json_users_sources(cli, project: Path, name: str, content: str) -> None:
    write(project / "suites" / "team" / name, content)
    suite = _replay_suite(project, f"{{file: {name}}}")
    r, scores = _run(cli, project, suite)
    assert r.code == 1, r
    _check_verdicts(scores, f"users file suites/team/{name}")


TARGET = '''
def respond(req):
    # the fraud rules reach everyone: a system whose permission filter is gone
    return {"output": "ok", "route": "refunds",
            "context": [{"id": "kb/refund-policy"}, {"id": "kb/internal-fraud-rules"}]}
'''

DIRECTORY = '''
CALLS = []

def groups(user_id):
    CALLS.append(user_id)
    return {"u-17": ["customer"], "agent-3": ["support"]}.get(user_id)
'''


def test_a_python_users_source_beside_the_suite_for_written_cases(cli, project: Path) -> None:
    # the modules live beside the suite: not on sys.path, not in the working folder
    folder = project / "suites" / "team"
    write(folder / "docs.jsonl", DOCS)
    write(folder / "team_bot.py", TARGET)
    write(folder / "team_directory.py", DIRECTORY)
    (project / "suites" / "demo.yaml").unlink()
    write(folder / "written.yaml", """
        name: written
        target: {python: team_bot:respond}
        documents: docs.jsonl
        users: {python: team_directory:groups}
        cases:
          - {id: customer, user: {id: u-17}, turns: [{input: a}, {input: b}]}
          - {id: agent, user: {id: agent-3}, input: a}
          - {id: stranger, user: {id: u-404}, input: a}
          - {id: given, user: {id: u-404, groups: [support]}, input: a}   # written groups are kept
    """)
    db = project / "run.duckdb"
    r = cli("run", "suites/team/written.yaml", "--db", str(db))
    assert r.code == 1, r
    rows = query(db, "SELECT case_id, turn, passed, explanation FROM scores WHERE scorer = 'permissions' "
                     "ORDER BY case_id, turn")
    by_case = {(case, turn): (passed, explanation) for case, turn, passed, explanation in rows}
    origin = "users function team_directory:groups"
    assert by_case[("customer", 1)] == (False, f"1 leak(s) to u-17 [customer] (groups from {origin}): "
                                               f"kb/internal-fraud-rules (context) (truth: document set "
                                               f"suites/team/docs.jsonl)")
    assert by_case[("customer", 2)][0] is False
    assert by_case[("agent", 1)] == (True, f"2 document(s) reached agent-3 [support] (groups from {origin}), "
                                           "all readable")
    passed, explanation = by_case[("stranger", 1)]
    assert not passed and explanation.startswith(f"2 leak(s) to u-404 [no groups] (user u-404 is not in the users "
                                                 f"source, {origin})")
    assert by_case[("given", 1)] == (True, "2 document(s) reached u-404 [support], all readable")


def test_a_users_function_is_asked_once_per_user_and_must_return_groups() -> None:
    calls: list[str] = []

    def lookup(user_id: str) -> Any:
        calls.append(user_id)
        return {"u-1": "customer", "u-2": ["support"], "bad": 5}.get(user_id)

    truth = UserPermissions(GroupPermissions({"kb/a": ("customer",)}, "acl"), FunctionUsers("dir:lookup", lookup))
    for _ in range(3):
        assert truth.may_read(User(id="u-1"), "kb/a") is True
        assert truth.may_read(User(id="u-2"), "kb/a") is False
        assert truth.may_read(User(id="nobody"), "kb/a") is False
    assert calls == ["u-1", "u-2", "nobody"]
    assert resolve_user(truth, User(id="u-2")).describe() == "u-2 [support] (groups from users function dir:lookup)"
    # groups the case gives are the truth for that case; the source is not asked
    assert resolve_user(truth, User(id="u-9", groups=["finance"])).user.groups == ["finance"]
    assert "u-9" not in calls
    with pytest.raises(TypeError, match="returned 5 for user 'bad'; expected a list of group names"):
        truth.may_read(User(id="bad"), "kb/a")
    # without a users source, a user is who the case says
    plain = GroupPermissions({"kb/a": ("customer",)}, "acl")
    assert resolve_user(plain, User(id="u-1")).describe() == "u-1 [no groups]"


@pytest.mark.parametrize("name,content,where,fragment", [
    ("users.yaml", "u-17: [customer]\nagent-3: {support: true}\n", "users.yaml:2", "'groups' must be a list"),
    ("users.yaml", "- u-17\n", "users.yaml:1", "a users file maps user ids to lists of groups"),
    ("users.csv", "user,roles\nu-17,customer\n", "users.csv:1", "needs the columns id and groups (it has: user, roles)"),
    ("users.csv", "id,groups\nu-17,customer\n,support\n", "users.csv:3", "needs a user 'id'"),
    ("users.csv", "id,groups\nu-17,customer\nu-17,support\n", "users.csv:3", "user id 'u-17' appears twice (first at line 2)"),
    ("users.jsonl", '{"id": "u-17", "groups": ["customer"]}\n{"id": "u-18"}\n', "users.jsonl:2", "with 'id' and 'groups'"),
    ("users.jsonl", '{"id": "u-17", "groups": ["customer"]}\n{oops\n', "users.jsonl:2:2", "not JSON"),
])
def test_bad_users_files_are_errors_at_their_line(cli, project: Path, name: str, content: str, where: str,
                                                  fragment: str) -> None:
    write(project / "suites" / "team" / name, content)
    suite = _replay_suite(project, f"{{file: {name}}}")
    r = cli("validate", str(suite))
    assert r.code == 2 and f"suites/team/{where}" in r.err and fragment in r.err, r
    assert "hint:" in r.err, r


@pytest.mark.parametrize("users,fragment", [
    ("{file: missing.yaml}", "users file not found: suites/team/missing.yaml"),
    ("{python: team_nowhere:groups}", "cannot load users function team_nowhere:groups: ModuleNotFoundError"),
    ("{file: a.yaml, python: b:c}", "users take exactly one of"),
])
def test_a_users_source_that_cannot_load_is_an_error_at_its_key(cli, project: Path, users: str, fragment: str) -> None:
    suite = _replay_suite(project, users)
    r = cli("validate", str(suite))
    assert r.code == 2 and "recorded.yaml:4" in r.err and fragment in r.err, r


def test_users_without_a_permission_source_is_an_error(cli, project: Path) -> None:
    write(project / "suites" / "team" / "users.yaml", "u-17: [customer]\n")
    write(project / "suites" / "team" / "traces.jsonl", TRACES)
    suite = write(project / "suites" / "team" / "s.yaml", "name: s\ntarget: replay\nusers: {file: users.yaml}\n"
                                                          "traces: [traces.jsonl]\n")
    r = cli("validate", str(suite))
    assert r.code == 2 and "s.yaml:3" in r.err and "says nothing about who may read what" in r.err, r


ALLOWED = """
    {"id": "kb/refund-policy", "allowed_groups": ["customer", "support"], "text": "Refunds within 30 days."}
    {"id": "kb/internal-fraud-rules", "allowed_groups": ["support"], "groups": "legacy", "text": "Flag refunds."}
"""


def test_the_acl_field_is_configurable(cli, project: Path) -> None:
    write(project / "suites" / "team" / "users.yaml", "u-17: [customer]\nagent-3: [support, finance]\n")
    suite = _replay_suite(project, "{file: users.yaml}", documents="{file: allowed.jsonl, acl_field: allowed_groups}")
    write(project / "suites" / "team" / "allowed.jsonl", ALLOWED)
    r, scores = _run(cli, project, suite)
    assert r.code == 1, r
    assert not scores["s-customer"][0] and "kb/internal-fraud-rules (context)" in scores["s-customer"][1]
    assert scores["s-agent"][0], scores["s-agent"]
    # the plain string form reads 'groups': the first document has none, and the error says which field it has
    suite = _replay_suite(project, "{file: users.yaml}", documents="allowed.jsonl")
    write(project / "suites" / "team" / "allowed.jsonl", ALLOWED)
    r = cli("validate", str(suite))
    assert r.code == 2 and "suites/team/allowed.jsonl:1" in r.err, r
    assert "document 'kb/refund-policy' has no 'groups' field" in r.err and "acl_field: allowed_groups" in r.err, r
    # another field the set keeps is metadata, not who may read it
    docs = DocumentSet.load(project / "suites" / "team" / "allowed.jsonl", acl_field="allowed_groups")
    assert docs["kb/internal-fraud-rules"].groups == ("support",)
    assert docs["kb/internal-fraud-rules"].metadata == {"groups": "legacy"}


UNLISTED = """
    {"id": "kb/refund-policy", "groups": ["customer", "support"], "text": "Refunds within 30 days."}
    {"id": "kb/new-page", "text": "Nobody said who may read this."}
"""


def _unlisted_suite(project: Path, documents: str) -> Path:
    folder = project / "suites" / "team"
    write(folder / "docs.jsonl", UNLISTED)
    write(folder / "traces.jsonl", _trace("s-customer", "u-17", "kb/refund-policy", "kb/new-page") + "\n")
    write(folder / "users.yaml", "u-17: [customer]\n")
    (project / "suites" / "demo.yaml").unlink(missing_ok=True)
    return write(folder / "s.yaml", f"name: s\ntarget: replay\ndocuments: {documents}\nusers: {{file: users.yaml}}\n"
                                    "traces: [traces.jsonl]\n")


def test_a_document_without_an_acl_is_an_error_at_its_line(cli, project: Path) -> None:
    suite = _unlisted_suite(project, "docs.jsonl")
    r = cli("validate", str(suite))
    assert r.code == 2 and "suites/team/docs.jsonl:2: document 'kb/new-page' has no 'groups' field" in r.err, r
    assert "acl_field" in r.err and "unlisted: private" in r.err and "unlisted: public" in r.err, r
    r = cli("run", str(suite), "--db", str(project / "x.duckdb"))
    assert r.code == 2, r


@pytest.mark.parametrize("unlisted,leaks", [("private", True), ("public", False)])
def test_unlisted_says_what_a_document_without_an_acl_means(cli, project: Path, unlisted: str, leaks: bool) -> None:
    suite = _unlisted_suite(project, f"{{file: docs.jsonl, unlisted: {unlisted}}}")
    assert cli("validate", str(suite)).code == 0
    db = project / "run.duckdb"
    r = cli("run", str(suite), "--db", str(db))
    assert r.code == (1 if leaks else 0), r
    passed, explanation, _ = _permission_scores(db)["s-customer"]
    assert passed is not leaks, explanation
    if leaks:
        assert explanation.startswith("1 leak(s) to u-17 [customer]") and "kb/new-page (context)" in explanation


def test_unlisted_markdown_and_a_separate_permission_source(tmp_path: Path) -> None:
    write(tmp_path / "kb" / "plain.md", "No front matter.\n")
    write(tmp_path / "kb" / "open.md", "---\nacl: ['*']\n---\nFor all.\n")
    with pytest.raises(SuiteError) as info:
        DocumentSet.load(tmp_path / "kb", acl_field="acl", unlisted="error")
    assert str(info.value.location).endswith("kb/plain.md:1") and "'plain' has no 'acl' field" in info.value.message
    docs = DocumentSet.load(tmp_path / "kb", acl_field="acl", unlisted="public")
    assert docs["plain"].groups == ("*",) and docs["open"].groups == ("*",)
    assert DocumentSet.load(tmp_path / "kb", acl_field="acl")["plain"].groups == ()  # the library default: private


def test_with_a_permission_source_the_documents_need_no_acl(cli, project: Path) -> None:
    folder = project / "suites" / "team"
    write(folder / "acl.yaml", "kb/refund-policy: [customer]\nkb/new-page: [support]\n")
    suite = _unlisted_suite(project, "docs.jsonl")
    suite.write_text(suite.read_text().replace("users:", "permissions: {file: acl.yaml}\nusers:"))
    db = project / "run.duckdb"
    r = cli("run", str(suite), "--db", str(db))
    assert r.code == 1, r
    passed, explanation, _ = _permission_scores(db)["s-customer"]
    assert not passed and "kb/new-page (context)" in explanation and "permission file suites/team/acl.yaml" in explanation


ACL_MODULE = '''
def may_read(user, doc_id):
    if not doc_id.startswith("kb/"):
        return None
    return "support" in user.groups or not doc_id.startswith("kb/internal")
'''


def test_a_permission_function_beside_the_suite_resolves(cli, project: Path) -> None:
    # suites/team/team_acl.py: not on sys.path, not in the working folder (the project root)
    folder = project / "suites" / "team"
    write(folder / "team_acl.py", ACL_MODULE)
    write(folder / "users.yaml", "u-17: [customer]\nagent-3: [support, finance]\n")
    write(folder / "traces.jsonl", TRACES)
    (project / "suites" / "demo.yaml").unlink()
    suite = write(folder / "s.yaml", """
        name: s
        target: replay
        permissions: {python: team_acl:may_read}
        users: {file: users.yaml}
        traces: [traces.jsonl]
    """)
    assert not (project / "team_acl.py").exists()
    r = cli("validate", "suites/team/s.yaml")
    assert r.code == 0, r
    db = project / "run.duckdb"
    r = cli("run", "suites/team/s.yaml", "--db", str(db))
    assert r.code == 1, r
    scores = _permission_scores(db)
    assert not scores["s-customer"][0] and scores["s-customer"][1].endswith("(truth: function team_acl:may_read)")
    assert scores["s-agent"][0] and scores["s-ghost"][0]  # a stranger may read what is not internal
    # a module that is not there says where it was looked for
    suite.write_text(suite.read_text().replace("team_acl:may_read", "team_missing:may_read"))
    r = cli("validate", "suites/team/s.yaml")
    assert r.code == 2 and "s.yaml:3" in r.err and "cannot load permission function team_missing:may_read" in r.err, r
    assert "the suite's folder" in r.err, r


def test_user_files_unit(tmp_path: Path) -> None:
    write(tmp_path / "u.csv", "id, groups\nu-1, customer ; vip\nu-2,\n")
    users = UserFile.load(tmp_path / "u.csv")
    assert users.groups_of("u-1") == ("customer", "vip") and users.groups_of("u-2") == ()
    assert users.groups_of("u-3") is None and users.describe().endswith("u.csv")
    write(tmp_path / "u.yaml", "1001: [finance]\nu-2:\n")
    users = UserFile.load(tmp_path / "u.yaml")
    assert users.groups_of("1001") == ("finance",) and users.groups_of("u-2") == ()


def test_the_readme_suite_example_names_these_keys() -> None:
    import yaml
    from conftest import REPO

    from evalgate.suite.spec import SuiteSpec

    page = (REPO / "docs" / "suites.md").read_text(encoding="utf-8")
    block = page.split("## Suites", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    spec = SuiteSpec.model_validate(yaml.safe_load(block))
    assert spec.users is not None and spec.users.file == "../datasets/users.yaml"
    assert spec.documents is not None and spec.documents.acl_field == "groups" and spec.documents.unlisted is None
    long_form = next(line for line in block.splitlines() if line.startswith("# documents: {"))
    spec = SuiteSpec.model_validate(yaml.safe_load(long_form.removeprefix("# ").split("   #", 1)[0]))
    assert spec.documents is not None and (spec.documents.acl_field, spec.documents.unlisted) == ("allowed_groups",
                                                                                                    "private")
