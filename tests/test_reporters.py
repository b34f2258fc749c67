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
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("5", "3", "0")
    cases = root.findall("./testsuite/testcase")
    assert [c.get("name") for c in cases] == ["gate: every case passes (no gate in the suite)", "ok [repeat 0]",
                                              "ok [repeat 1]", "bad [repeat 0]", "bad [repeat 1]"]
    cases = cases[1:]
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
    assert "| ❌ | every case passes \\(no gate in the suite\\) | 1 case\\(s\\) failed over 2 case run\\(s\\) |" in text
    assert "| `bad` | turn 1 output: missing '5521'<br>turn 1 route: routed to smalltalk, expected refunds |" in text
    assert "<script>" not in text
    assert "::error title=evalgate demo%3A every case passes (no gate in the suite)::1 case(s) failed over 2 case run(s) (cases: bad)" in r.err


def test_control_characters_and_injection_stay_inert(cli, project: Path) -> None:
    write(project / "evil.py", """
        def respond(req):
            return {"output": "ok", "route": {"name": "x", "reason": "kw \\x1b[31m\\x08 red\\r## Heading ![b](https://attacker.example/p.png)"}}
    """)
    write(project / "suites" / "demo.yaml", "name: demo\ntarget: {python: evil:respond}\n"
                                            "cases: [{id: a, input: hi, expect: {route: y}}]\n")
    r = cli("run", "--junit", "j.xml", "--markdown", "m.md")
    assert r.code == 1, r
    root = ET.parse(project / "j.xml").getroot()  # well-formed despite the control characters
    assert root.get("failures") == "2"  # the case and the gate rule
    assert [c.get("name") for c in root.iter("testcase")] == ["gate: every case passes (no gate in the suite)", "a"]
    md = (project / "m.md").read_text()
    assert "## Heading" not in md and "![b](" not in md and "\x1b" not in md and "\\#\\# Heading" in md


def test_sparkline_scales_and_leaves_gaps() -> None:
    from evalgate.reporters.console import sparkline

    assert sparkline([0.0, 0.5, 1.0]) == "▁▅█"  # 0.5 * 7 = 3.5 rounds to 4 → ▅
    assert sparkline([1.0, None, 0.0]) == "█ ▁"
    assert sparkline([200.0, 400.0], lo=200, hi=400) == "▁█"


def test_history_shows_a_sparkline_per_suite(cli, project) -> None:
    from conftest import write

    assert cli("run").code == 0
    write(project / "suites" / "demo.yaml", (project / "suites" / "demo.yaml").read_text().replace(
        "expect: {route: smalltalk}", "expect: {route: refunds}"))
    assert cli("run").code == 1
    r = cli("history")
    assert r.code == 0
    line = next(x for x in r.out.splitlines() if x.startswith("demo") and "pass rate" in x)
    assert "█▅" in line and "100.0% → 50.0%" in line, r.out


def test_compare_shows_changes_in_each_metrics_unit() -> None:
    from evalgate.reporters.console import _delta

    assert _delta("pass_rate", 1.0, 0.556) == "-44.4 pts"
    assert _delta("route.accuracy", 0.9, 0.95) == "+5.0 pts"
    assert _delta("passed", 36, 20) == "-16"  # a count, not a rate
    assert _delta("latency.p95", 685, 655) == "-30 ms" and _delta("elapsed.p50", 0.5, 0.75) == "+0.2 ms"
    assert _delta("cost.total", 0.0019, 0.0017) == "-$0.00020"
    from evalgate.gate import money

    # fixed decimals and a unit, never $0.0000 or $4.665e-05
    assert (money(0), money(4.665e-05), money(0.035), money(1234.5)) == ("$0.00", "$0.000047", "$0.035", "$1,234.50")


def test_case_ids_with_pipes_and_backslashes_keep_the_markdown_table_whole(cli, project: Path) -> None:
    write(project / "suites" / "demo.yaml", "name: demo\ntarget: {python: bot:respond}\n"
                                            "cases: [{id: 'a|b\\c`d', input: hi, expect: {route: refunds}}]\n")
    r = cli("run", "--markdown", "m.md")
    assert r.code == 1, r
    row = next(line for line in (project / "m.md").read_text().splitlines() if line.startswith("| `a"))
    assert row.startswith("| `a\\|b\\c'd` |")  # the pipe escaped, the backtick made harmless: still two cells
    assert row.replace("\\|", "").count("|") == 3
