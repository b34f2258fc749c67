"""The bundled example is real: its default suites pass, its regressed variant fails, and why."""

from __future__ import annotations

from pathlib import Path

from conftest import REPO, query, run_cli_in_process


def test_default_suites_pass(tmp_path: Path) -> None:
    r = run_cli_in_process("run", "--json", "--db", str(tmp_path / "s.duckdb"), cwd=REPO)
    assert r.code == 0, r
    suites = {s["suite"]: s for s in r.json()["suites"]}
    assert set(suites) == {"support", "support-replay", "support-pipeline", "support-sampled"}  # default: false stay out
    support = suites["support"]
    assert support["cases"] >= 150 and support["metrics"]["pass_rate"] == 1.0  # 36 written cases and their variants
    assert support["metrics"]["recovery.rate"] == 1.0 and support["metrics"]["recovery.rate.correction"] == 1.0
    statuses = {x["rule"]: x["status"] for x in support["verdict"]["rules"]}
    assert statuses.pop("no new failures") == "skipped"
    assert set(statuses.values()) == {"pass"}
    pipeline = suites["support-pipeline"]  # the same conversations through the reference pipeline, offline
    assert pipeline["cases"] >= 30 and pipeline["metrics"]["pass_rate"] == 1.0 and pipeline["target"].startswith("pipeline")
    replay = suites["support-replay"]
    assert replay["turns"] >= 45
    db = tmp_path / "s.duckdb"
    # replaying recordings through today's assistant records where it now differs from what was recorded
    changed = query(db, "SELECT count(*) FROM turns WHERE run_id = ? AND changes IS NOT NULL", [replay["run_id"]])[0][0]
    assert changed >= 3


def test_regressed_assistant_fails_its_gate_with_reasons(tmp_path: Path) -> None:
    r = run_cli_in_process("run", "suites/support-regressed.yaml", "--json", "--db", str(tmp_path / "s.duckdb"), cwd=REPO)
    assert r.code == 1, r
    verdict = r.json()["suites"][0]["verdict"]
    failed = {x["rule"]: x for x in verdict["rules"] if x["status"] == "fail"}
    assert "critical cases pass" in failed and "refund-changes-order-number" in failed["critical cases pass"]["cases"]
    reasons = "\n".join(f for c in r.json()["suites"][0]["failing"] for f in c["reasons"])
    assert "issue_refund called but must not be" in reasons  # the tool fired before confirmation
    assert "must not use kb/internal" in reasons  # internal documents reached a customer
    # the permissions scorer runs on every turn of a suite with documents, whatever the cases expect
    assert failed["permissions.leaks ≤ 0"]["value"] >= 5 and "refund-changes-order-number" in failed["permissions.leaks ≤ 0"]["cases"]
    assert "1 leak(s) to u-17 [customer]: kb/internal-fraud-rules (context)" in reasons


def test_regressed_release_fails_no_new_failures_against_one_baseline_run(tmp_path: Path) -> None:
    """The assistant is deterministic: one baseline run is enough, once re-runs show nothing varies."""
    db = ["--db", str(tmp_path / "s.duckdb")]
    assert run_cli_in_process("run", "suites/support.yaml", *db, cwd=REPO).code == 0
    assert run_cli_in_process("baseline", "set", "main", *db, cwd=REPO).code == 0
    r = run_cli_in_process("run", "suites/support.yaml", "--target", "python:assistant.bot_regressed:respond", "--baseline", "main",
                "--json", *db, cwd=REPO)
    assert r.code == 1, r
    s = r.json()["suites"][0]
    rule = next(x for x in s["verdict"]["rules"] if x["rule"] == "no new failures")
    stats = s["statistics"]
    assert rule["status"] == "fail" and "refund-changes-order-number" in rule["cases"]
    assert stats["varies"] is False and stats["cases"]
    assert {c["kind"] for c in stats["cases"]} == {"regression"}
    assert "no case that ran more than once varied" in stats["cases"][0]["why"]
    assert rule["cases"] == s["baseline"]["new_failures"] and len(rule["cases"]) >= 10
    # the same release again: the history now holds two runs of the current release, and nothing flips
    assert run_cli_in_process("run", "suites/support.yaml", "--baseline", "main", *db, cwd=REPO).code == 0


def test_recordings_as_they_are_fail_on_the_corrected_turns(tmp_path: Path) -> None:
    r = run_cli_in_process("run", "suites/recorded-as-is.yaml", "--json", "--db", str(tmp_path / "s.duckdb"), cwd=REPO)
    assert r.code == 1, r
    s = r.json()["suites"][0]
    db = tmp_path / "s.duckdb"
    corrected = {row[0] for row in query(db, "SELECT case_id FROM cases WHERE list_contains(tags, 'corrected')")}
    assert {c["case_id"] for c in s["failing"]} == corrected and corrected


def test_validate_the_bundled_suites() -> None:
    r = run_cli_in_process("validate", "suites", "--json", cwd=REPO)
    assert r.code == 0, r
    assert len(r.json()["suites"]) == 8
    by_name = {s["suite"]: s for s in r.json()["suites"]}
    # suites with a document set always gate on leaks; validate says so beside their own rules
    assert by_name["support"]["leak_rule"] and not by_name["recorded-as-is"]["leak_rule"]
    text = run_cli_in_process("validate", "suites/support.yaml", cwd=REPO).out
    assert "6 gate rule(s) + permissions.leaks ≤ 0 (every gate)" in text


def test_the_sampled_assistant_is_judged_on_its_history(tmp_path: Path) -> None:
    """The nondeterministic example: runs compare with the pooled history; flips are re-run, never waved through."""
    db = ["--db", str(tmp_path / "s.duckdb")]
    first = run_cli_in_process("run", "suites/support-sampled.yaml", "--json", *db, cwd=REPO,
                               env={"ASSISTANT_SAMPLE_SEED": "first"})
    assert first.code == 0, first
    assert "baseline 'latest' has no run of suite support-sampled" in first.json()["suites"][0]["verdict"]["notices"][0]
    for seed in ("second", "third"):  # seeded, so the test sees the same draws every time
        r = run_cli_in_process("run", "suites/support-sampled.yaml", "--json", "--markdown", str(tmp_path / "s.md"), *db,
                               cwd=REPO, env={"ASSISTANT_SAMPLE_SEED": seed})
        assert r.code == 0, r  # nothing changed: the gate passes, whatever the sampling did
    s = r.json()["suites"][0]
    stats = s["statistics"]
    assert stats["history_runs"] == 2 and stats["varies"] is True and stats["judged"]
    assert s["baseline"]["baseline_runs"] == 2
    assert stats["flaky"], stats  # a few conversations sometimes drop the order number: named, with their rates
    assert all("before" in text and "now" in text for text in stats["flaky"].values())
    assert not [c for c in stats["cases"] if c["kind"] == "regression"]
    summary = (tmp_path / "s.md").read_text()
    assert "Against 2 baseline runs" in summary and "Flaky:" in summary
    text = run_cli_in_process("run", "suites/support-sampled.yaml", *db, cwd=REPO, env={"ASSISTANT_SAMPLE_SEED": "fourth"}).out
    assert "against 3 baseline runs" in text and "flaky:" in text
