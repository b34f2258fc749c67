"""Document sets and permission sources: the truth about who may read what."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from conftest import write
from evalgate.documents import DocumentSet, FunctionPermissions, GroupPermissions
from evalgate.errors import SuiteError
from evalgate.traces import User

CUSTOMER = User(id="c-1", groups=["customer"])
FINANCE = User(id="f-1", groups=["finance", "support"])
NOBODY = User(id="x")


def test_jsonl_set_keeps_order_groups_and_metadata(tmp_path: Path) -> None:
    write(tmp_path / "docs.jsonl", """
        {"id": "kb/a", "title": "A", "groups": ["customer", "support"], "text": "alpha", "lang": "en"}

        {"id": "kb/b", "groups": "finance", "text": "beta"}
        {"id": "kb/open", "groups": ["*"], "text": "for everyone"}
    """)
    docs = DocumentSet.load(tmp_path / "docs.jsonl")
    assert docs.ids == ["kb/a", "kb/b", "kb/open"]
    assert docs["kb/a"].metadata == {"lang": "en"}
    assert docs["kb/b"].title == "kb/b" and docs["kb/b"].groups == ("finance",)
    assert docs["kb/b"].source.endswith("docs.jsonl:3")
    perms = GroupPermissions.of(docs)
    assert perms.may_read(CUSTOMER, "kb/a") is True
    assert perms.may_read(CUSTOMER, "kb/b") is False
    assert perms.may_read(FINANCE, "kb/b") is True
    assert perms.may_read(NOBODY, "kb/open") is True
    assert perms.may_read(CUSTOMER, "kb/unknown") is None


def test_markdown_folder_with_front_matter(tmp_path: Path) -> None:
    write(tmp_path / "kb" / "refunds.md", """
        ---
        title: Refund policy
        groups: [customer]
        ---
        Refunds within 30 days.
    """)
    write(tmp_path / "kb" / "internal" / "ledger.md", """
        ---
        id: fin/ledger
        groups: [finance]
        ---
        # Ledger
        Only finance reads this.
    """)
    write(tmp_path / "kb" / "plain.md", "No front matter at all.\n")
    docs = DocumentSet.load(tmp_path / "kb")
    assert sorted(docs.ids) == ["fin/ledger", "plain", "refunds"]
    assert docs["refunds"].title == "Refund policy"
    assert docs["refunds"].text.strip() == "Refunds within 30 days."
    assert docs["fin/ledger"].text.startswith("# Ledger")
    assert docs["plain"].groups == ()  # no groups: nobody may read it
    assert GroupPermissions.of(docs).may_read(FINANCE, "plain") is False


@pytest.mark.parametrize("name,content", [
    ("perms.yaml", "kb/a: [customer]\nkb/b: finance\n"),
    ("perms.csv", "id,groups\nkb/a,customer\nkb/b,finance|audit\n"),
    ("perms.jsonl", '{"id": "kb/a", "groups": ["customer"]}\n{"id": "kb/b", "groups": ["finance"]}\n'),
])
def test_permission_files(tmp_path: Path, name: str, content: str) -> None:
    (tmp_path / name).write_text(content)
    perms = GroupPermissions.load(tmp_path / name)
    assert perms.may_read(CUSTOMER, "kb/a") is True
    assert perms.may_read(CUSTOMER, "kb/b") is False
    assert perms.may_read(FINANCE, "kb/b") is True
    assert name in perms.describe()


def test_function_permissions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "acl.py", """
        def may_read(user, doc_id):
            if doc_id.startswith("unknown/"):
                return None
            return doc_id.startswith("kb/") or "finance" in user.groups
    """)
    monkeypatch.syspath_prepend(str(tmp_path))
    perms = FunctionPermissions.load("acl:may_read")
    assert perms.may_read(CUSTOMER, "kb/a") is True
    assert perms.may_read(CUSTOMER, "fin/x") is False
    assert perms.may_read(FINANCE, "fin/x") is True
    assert perms.may_read(FINANCE, "unknown/y") is None
    sys.modules.pop("acl", None)


@pytest.mark.parametrize("content,fragment", [
    ('{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n', "duplicate document id 'a'"),
    ('{"id": "a", "text": "x"}\n{not json\n', "docs.jsonl:2:2: not JSON"),
    ('{"title": "no id"}\n', "docs.jsonl:1: a document needs a non-empty string 'id'"),
    ('{"id": "a", "groups": {"x": 1}}\n', "'groups' must be a list of group names"),
])
def test_bad_document_sets_say_where(tmp_path: Path, content: str, fragment: str) -> None:
    (tmp_path / "docs.jsonl").write_text(content)
    with pytest.raises(SuiteError) as info:
        DocumentSet.load(tmp_path / "docs.jsonl")
    assert fragment in str(info.value)


def test_suite_names_documents_and_permissions(cli, project: Path) -> None:
    write(project / "datasets" / "docs.jsonl", '{"id": "kb/a", "groups": ["customer"], "text": "x"}\n')
    write(project / "suites" / "demo.yaml", """
        name: demo
        target: {python: bot:respond}
        documents: ../datasets/docs.jsonl
        permissions: {file: ../datasets/missing.yaml}
        cases:
          - {id: a, input: hi}
    """)
    r = cli("validate")
    assert r.code == 2 and "demo.yaml:4" in r.err and "permission file not found" in r.err, r
    write(project / "suites" / "demo.yaml", """
        name: demo
        target: {python: bot:respond}
        documents: ../datasets/nope.jsonl
        cases:
          - {id: a, input: hi}
    """)
    r = cli("validate")
    assert r.code == 2 and "demo.yaml:3" in r.err and "document set not found" in r.err, r
