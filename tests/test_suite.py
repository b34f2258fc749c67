"""Suites: dataset formats, stable ids, configuration files."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import write

from evalgate.config import find_config
from evalgate.suite import load_suite


def _suite_with_dataset(project: Path, expect_route: str) -> Path:
    rows = [{"input": "refund for 1234", "user": {"id": "u-1", "groups": ["customer"]}, "expect": {"route": expect_route}},
            {"id": "named", "turns": [{"input": "hi"}, {"input": "refund 4321", "expect": {"state": {"order_id": "4321"}}}]}]
    (project / "datasets").mkdir(exist_ok=True)
    (project / "datasets" / "cases.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    write(project / "datasets" / "more.csv", """
        id,input,tags,user,groups,expect.route,expect.output.contains
        conv,I want a refund for 1111,refunds,u-2,customer,refunds,1111
        conv,sorry it is 2222,refunds,u-2,customer,refunds,2222
        ,hello,smalltalk,,,smalltalk,
    """)
    return write(project / "suites" / "demo.yaml", """
        name: ds
        target: {python: bot:respond}
        gate: {rules: [{metric: pass_rate, min: 0.5}]}
        cases:
          - {file: ../datasets/cases.jsonl, tags: [jsonl]}
          - file: ../datasets/more.csv
    """)


def test_jsonl_and_csv_datasets_load_into_cases(project: Path) -> None:
    suite = load_suite(_suite_with_dataset(project, "refunds"), find_config(project))
    cases = list(suite.iter_cases())
    by_id = {c.id: c for c in cases}
    assert [len(c.turns) for c in cases] == [1, 2, 2, 1]
    assert by_id["named"].tags == ("jsonl",) and by_id["named"].source.endswith("datasets/cases.jsonl:2")
    conv = by_id["conv"]
    assert conv.user.id == "u-2" and conv.user.groups == ["customer"] and conv.tags == ("refunds",)
    assert [t.expect for t in conv.turns] == [{"route": "refunds", "output": {"contains": "1111"}},
                                              {"route": "refunds", "output": {"contains": "2222"}}]
    assert suite.count_cases(["smalltalk"]) == 1


def test_derived_ids_ignore_expectations_and_are_warned_about(project: Path) -> None:
    first = load_suite(_suite_with_dataset(project, "refunds"), find_config(project))
    second = load_suite(_suite_with_dataset(project, "smalltalk"), find_config(project))
    derived = [c.id for c in first.static_cases if c.derived_id]
    assert derived and derived == [c.id for c in second.static_cases if c.derived_id]
    assert all(d.startswith("c-") and len(d) == 12 for d in derived)
    assert any("derived ids" in w for w in first.notes.warnings)


def test_evalgate_toml_configures_a_project(tmp_path: Path, cli) -> None:
    (tmp_path / "pyproject.toml").unlink(missing_ok=True)
    write(tmp_path / "evalgate.toml", 'suites = "checks"\nstore = "out/store.duckdb"\n')
    config = find_config(tmp_path / "checks")
    assert config.suites == tmp_path / "checks" and config.store == tmp_path / "out" / "store.duckdb"
