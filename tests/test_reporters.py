"""CI outputs: JUnit XML parsed back, the Markdown summary, GitHub annotations."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from conftest import write


def _hostile_failing_suite(project: Path) -> None:
    write(project / "evil.py", '''
        def respond(req):
            return {"output": "<script>alert(1)</script> | pipe", "route": "smalltalk"}
    ''')
    write(project / "suites" / "demo.yaml", """
        name: demo
        target: {python: evil:respond}
        cases:
          - {id: ok, input: hi, expect: {route: smalltalk}}
          - {id: bad, input: hi, expect: {route: refunds, output: {contains: "5521"}}}
    """)


def test_junit_has_one_test_per_case_with_failure_messages(cli, project: Path) -> None:
    _hostile_failing_suite(project)
    r = cli("run", "--junit", "out/junit.xml", "--repeat", "2")
    assert r.code == 1, r
    root = ET.parse(project / "out" / "junit.xml").getroot()
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("4", "2", "0")
    cases = root.findall("./testsuite/testcase")
    assert [c.get("name") for c in cases] == ["ok [repeat 0]", "ok [repeat 1]", "bad [repeat 0]", "bad [repeat 1]"]
    failure = cases[2].find("failure")
    assert failure is not None and failure.get("message") == "turn 1 output: missing '5521'"
    assert "turn 1 route: routed to smalltalk, expected refunds" in (failure.text or "")


def test_markdown_summary_goes_to_the_step_summary_and_is_inert(cli, project: Path, tmp_path: Path) -> None:
    _hostile_failing_suite(project)
    summary = tmp_path / "summary.md"
    r = cli("run", "--markdown", "out/summary.md", env={"GITHUB_STEP_SUMMARY": str(summary), "GITHUB_ACTIONS": "true"})
    assert r.code == 1, r
    text = (project / "out" / "summary.md").read_text()
    assert summary.read_text() == text
    assert text.startswith("### ❌ demo: FAIL")
    assert "| ❌ | every case passes (no gate in the suite) | 1 of 2 case(s) failed |" in text
    assert "| `bad` | turn 1 output: missing '5521'<br>turn 1 route: routed to smalltalk, expected refunds |" in text
    assert "<script>" not in text
    assert "::error title=evalgate demo%3A every case passes (no gate in the suite)::1 of 2 case(s) failed (cases: bad)" in r.err
