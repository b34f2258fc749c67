"""Shards and merge: two CI jobs each run half the cases; the merged run is the run one job would have made."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import REPO, query, run_cli_in_process


def _cases(db: Path, run_id: str) -> set[tuple[str, int, bool]]:
    return {(c, r, p) for c, r, p in query(db, "SELECT case_id, repeat, passed FROM cases WHERE run_id = ?", [run_id])}


def test_two_shards_merged_give_the_one_run_and_its_verdict(tmp_path: Path) -> None:
    suite = ["suites/support.yaml", "--target", "python:assistant.bot_regressed:respond"]
    whole = run_cli_in_process("run", *suite, "--json", "--db", str(tmp_path / "whole.duckdb"), cwd=REPO)
    assert whole.code == 1, whole
    parts = []
    for i in (1, 2):
        r = run_cli_in_process("run", *suite, "--shard", f"{i}/2", "--json", "--db", str(tmp_path / f"s{i}.duckdb"),
                               cwd=REPO)
        assert r.code in (0, 1), r
        parts.append(r.json()["suites"][0])
    one, two = (_cases(tmp_path / f"s{i}.duckdb", p["run_id"]) for i, p in zip((1, 2), parts))
    assert one and two and not {c for c, _, _ in one} & {c for c, _, _ in two}  # disjoint halves
    # a case and its variants stay in one shard
    assert all(c.split("~")[0] in {x for x, _, _ in one} for c, _, _ in one if "~" in c)
    merged = run_cli_in_process("merge", str(tmp_path / "s1.duckdb"), str(tmp_path / "s2.duckdb"), "--json",
                                "--db", str(tmp_path / "m.duckdb"), cwd=REPO)
    assert merged.code == whole.code, merged
    w, m = whole.json()["suites"][0], merged.json()["suites"][0]
    assert _cases(tmp_path / "m.duckdb", m["run_id"]) == _cases(tmp_path / "whole.duckdb", w["run_id"]) == one | two
    measured = {k for k in w["metrics"] if k.startswith("elapsed.")}  # evalgate's own timing differs run to run
    assert set(m["metrics"]) == set(w["metrics"])
    assert all(m["metrics"][k] == pytest.approx(v) for k, v in w["metrics"].items() if k not in measured)
    assert [(r["rule"], r["status"], r["value"]) for r in m["verdict"]["rules"]] == \
        [(r["rule"], r["status"], r["value"]) for r in w["verdict"]["rules"]]
    # a shard missing, or a store with no shard run, is a usage error that names what it found
    lone = run_cli_in_process("merge", str(tmp_path / "s1.duckdb"), "--db", str(tmp_path / "m2.duckdb"), cwd=REPO)
    assert lone.code == 2 and "the shards found are 1/2" in lone.err, lone
    none = run_cli_in_process("merge", str(tmp_path / "whole.duckdb"), "--db", str(tmp_path / "m3.duckdb"), cwd=REPO)
    assert none.code == 2 and "sharded runs of 0 suites" in none.err, none
    bad = run_cli_in_process("run", *suite, "--shard", "3/2", "--db", str(tmp_path / "x.duckdb"), cwd=REPO)
    assert bad.code == 2 and "expected I/N" in bad.err
