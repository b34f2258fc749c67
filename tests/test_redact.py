"""Redaction: every detector, values that must stay, consistency, counts, and no original byte stored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import REPO, run_cli_in_process, write
from evalgate.redact import build_redactor, luhn_ok

FIXTURES = REPO / "tests" / "fixtures" / "otlp"


@pytest.mark.parametrize("text, expected", [
    ("write to jane.doe+work@example.co.uk today", "write to <EMAIL_1> today"),
    ("call +1 (415) 555-0123 now", "call <PHONE_1> now"),
    ("or 020 7946 0958", "or <PHONE_1>"),
    ("card 4111 1111 1111 1111 please", "card <CARD_1> please"),
    ("card 5555-5555-5555-4444", "card <CARD_1>"),
    ("key sk-proj-abcdefghijklmnop1234", "key <API_KEY_1>"),
    ("aws AKIAABCDEFGHIJKLMNOP", "aws <API_KEY_1>"),
    ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.abc", "Authorization: Bearer <TOKEN_1>"),
])
def test_each_builtin_detector(text: str, expected: str) -> None:
    assert build_redactor().text(text) == expected


@pytest.mark.parametrize("text", [
    "order 5512 not 5521",                      # order numbers are not phone numbers
    "card 4111 1111 1111 1112",                 # fails the Luhn checksum
    "on 2025-07-08T09:37:00Z at 09:37",         # dates and times
    "trace 4bf92f3577b34da6a3ce929d0e0e4736",   # hex ids
    "a task-manager and sk-short",              # words that only look like keys
    "bearer of bad news",                       # 'bearer' in prose
    "<EMAIL_1> was already redacted",
])
def test_values_that_must_stay(text: str) -> None:
    r = build_redactor()
    assert r.text(text) == text and r.summary() == {}


def test_consistent_placeholders_and_counts_by_kind() -> None:
    r = build_redactor(patterns={"order_ref": r"ORD-\d{6}"})
    a = r.value({"input": "I'm ann@example.com, ref ORD-123456", "state": {"email": "ann@example.com"},
                 "out": ["bob@example.org", "ann@example.com"]})
    assert a == {"input": "I'm <EMAIL_1>, ref <ORDER_REF_1>", "state": {"email": "<EMAIL_1>"},
                 "out": ["<EMAIL_2>", "<EMAIL_1>"]}
    assert r.summary() == {"email": 4, "order_ref": 1}
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")


def test_a_python_hook_finds_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "hooks.py", """
        import re
        def names(text):
            return [("name", m) for m in re.findall(r"\\b(?:Alice|Bob) [A-Z][a-z]+", text)]
    """)
    monkeypatch.syspath_prepend(str(tmp_path))
    r = build_redactor([], None, "hooks:names")
    assert r.text("Alice Smith met Bob Jones and Alice Smith") == "<NAME_1> met <NAME_2> and <NAME_1>"
    with pytest.raises(ValueError, match="cannot import"):
        build_redactor(None, None, "hooks:nope")
    with pytest.raises(ValueError, match="unknown redaction detector"):
        build_redactor(["emails"])


SECRETS = [b"jane.doe@example.com", b"4111 1111 1111 1111", b"7946 0958", b"sk-proj-abcdefghijklmnop1234"]


def test_import_writes_and_prints_no_original_value(tmp_path: Path) -> None:
    out = tmp_path / "prod.jsonl"
    for args in ((), ("--json",)):
        r = run_cli_in_process("traces", "import", str(FIXTURES / "errors.otlp.json"), "--out", str(out), *args, cwd=tmp_path)
        assert r.code == 0, r
        for secret in SECRETS:
            assert secret not in out.read_bytes() and secret.decode() not in r.out + r.err
    assert r.json()["redacted"] == {"api_key": 1, "card": 1, "email": 3, "phone": 2}
    turns = [json.loads(line) for line in out.read_text().splitlines()]
    # the same value became the same placeholder everywhere (the user id and the input)
    assert turns[0]["user"]["id"] == "<EMAIL_1>" and "<EMAIL_1>" in turns[0]["input"]
    assert "<PHONE_1>" in turns[1]["input"] and "<PHONE_1>" in turns[1]["output"]
    text = run_cli_in_process("traces", "import", str(FIXTURES / "errors.otlp.json"), "--out", str(out), cwd=tmp_path).out
    assert "redacted: api_key 1, card 1, email 3, phone 2" in text
    kept = run_cli_in_process("traces", "import", str(FIXTURES / "errors.otlp.json"), "--out", str(out), "--no-redact", cwd=tmp_path)
    assert kept.code == 0 and b"jane.doe@example.com" in out.read_bytes()


def test_replaying_recorded_traces_stores_no_original_value(tmp_path: Path) -> None:
    turns = [
        {"v": 1, "trace_id": "t-1", "session_id": "s-1", "turn": 1, "user": {"id": "u-1"},
         "input": "I'm jane.doe@example.com, card 4111 1111 1111 1111", "output": "Thanks, jane.doe@example.com.",
         "state": {"email": "jane.doe@example.com"}},
        {"v": 1, "trace_id": "t-2", "session_id": "s-1", "turn": 2, "user": {"id": "u-1"},
         "input": "my key is sk-proj-abcdefghijklmnop1234, phone +44 20 7946 0958", "output": "ok",
         "feedback": {"correction": {"state": {"email": "jane.doe@example.com"}}}},
    ]
    write(tmp_path / "prod.jsonl", "".join(json.dumps(t) + "\n" for t in turns))
    write(tmp_path / "echo.py", """
        def respond(req):
            return {"output": "you said " + req["input"], "state": {"email": req["input"].split()[1].rstrip(",")}
                    if req["turn"] == 1 else req["state"]}
    """)
    write(tmp_path / "suite.yaml", """
        name: prod
        target: {python: echo:respond}
        traces: [prod.jsonl]
        redact: {patterns: {ticket: 'TCK-\\d+'}}
    """)
    db = tmp_path / "s.duckdb"
    r = run_cli_in_process("run", "suite.yaml", "--json", "--db", str(db), cwd=tmp_path)
    assert r.code == 0, r  # the correction's state matches: the same email became the same placeholder
    notices = r.json()["suites"][0]["verdict"]["notices"]
    assert any("redacted from recorded traces: api_key 1, card 1, email" in n for n in notices), notices
    db_bytes = stored_bytes(db)
    for secret in SECRETS:
        assert secret not in db_bytes and secret.decode() not in r.out + r.err, secret
    show = run_cli_in_process("show", "latest", "s-1", "--db", str(db), "--json", cwd=tmp_path)
    assert "<EMAIL_1>" in show.out and "jane.doe" not in show.out
    # turned off, the values are kept
    write(tmp_path / "open.yaml", "name: open\ntarget: replay\ntraces: [prod.jsonl]\nredact: false\n")
    db2 = tmp_path / "s2.duckdb"
    assert run_cli_in_process("run", "open.yaml", "--db", str(db2), cwd=tmp_path).code == 0
    assert b"jane.doe@example.com" in stored_bytes(db2)


def stored_bytes(db: Path) -> bytes:
    """Every byte of the store: the file and its write-ahead log."""
    wal = db.with_name(db.name + ".wal")
    return db.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def test_a_bad_redaction_setting_is_reported_at_its_line(tmp_path: Path) -> None:
    write(tmp_path / "t.jsonl", '{"v": 1, "session_id": "s", "input": "hi"}\n')
    write(tmp_path / "suite.yaml", "target: replay\ntraces: [t.jsonl]\nredact:\n  detectors: [emails]\n")
    r = run_cli_in_process("validate", "suite.yaml", cwd=tmp_path)
    assert r.code == 2 and "suite.yaml:4" in r.err and "unknown redaction detector 'emails'" in r.err, r
