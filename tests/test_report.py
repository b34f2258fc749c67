"""The HTML report: the facts in the rendered file, hostile content kept inert,
and the page itself in headless Chromium (no errors, no network, filters, stories)."""

from __future__ import annotations

import base64
import gzip
import hashlib
import html
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO, write
from evalgate.reporters.story_codec import _chunk, _records, unchunk

HOSTILE_BOT = """
import os

PAYLOADS = {
    "script": "<script>window.__pwned = 'script'</script>",
    "img": "<img src=x onerror=\\"window.__pwned='img'\\">",
    "breakout": "</script><script>window.__pwned = 'breakout'</script>",
    "link": "<a href=\\"javascript:window.__pwned='link'\\">click</a>",
    "svg": "<svg onload=\\"window.__pwned='svg'\\"></svg>",
    "comment": "<!-- <script>window.__pwned='comment'</script> -->",
    "meta": "<meta http-equiv=\\"refresh\\" content=\\"0;url=https://evil.example/\\">",
    "base": "<base href=\\"https://evil.example/\\">",
    "style": "<style>body{background:url(https://evil.example/x.png)}</style>",
    "iframe": "<iframe srcdoc=\\"<script>parent.__pwned='iframe'</script>\\"></iframe>",
    "form": "<form action=\\"https://evil.example/\\"><button>go</button></form>",
    "away": "<a href=\\"https://evil.example/\\">a link out</a>",
}

def respond(req):
    kind = req["input"].split()[0]
    p = PAYLOADS.get(kind, "plain answer")
    if kind == "crash":
        raise RuntimeError(PAYLOADS["img"])
    if os.environ.get("HOSTILE_CHANGED"):  # the candidate run behaves differently: the baseline tables fill
        p = p + " "
    return {"route": {"name": p, "reason": p, "confidence": 0.5},
            "context": [{"id": "kb/" + p, "title": p, "score": 0.9},
                        {"id": "kb/x" + p, "title": p, "used": False, "excluded": p}],
            "tool_calls": [{"name": p, "arguments": {"q": p}, "result": {"text": p}, "error": p}],
            "model": {"name": p, "provider": p, "params": {p: p}},
            "prompt": [{"role": "system", "content": p}, {"role": p, "content": p, "tool_calls": [{"name": p}]}],
            "output": p, "state": {p: p},
            "trace_id": "javascript:window.__pwned='trace'",
            "latency_ms": {"total": 5, p: 1}}
"""

_KINDS = ("script", "img", "breakout", "link", "svg", "comment", "meta", "base", "style", "iframe", "form", "away")
HOSTILE_SUITE = """
name: hostile
target: {python: hostile:respond}
cases:
""" + "".join(f"""  - id: "{kind}-<b>case</b>"
    tags: ["<i>{kind}</i>"]
    user: {{id: "<u>{kind}</u>", groups: ["<script>window.__pwned='group'</script>"]}}
    meta: {{note: "<img src=x onerror=alert(1)>"}}
    input: "{kind} <script>window.__pwned = 'input'</script>"
    expect: {{output: {{equals: '<img src=x onerror="window.__pwned=1">'}}}}
""" for kind in _KINDS) + """  - id: list
    input: plain hello
    expect: {output: {contains: plain}}
  - id: 'x" onmouseover="window.__pwned=1'
    input: crash now
  - id: ".."
    input: plain again
gate:
  rules: [{metric: pass_rate, min: 1}]
  max_error_rate: 0.5
"""


def _blobs(page: str) -> tuple[dict[str, Any], list[dict[str, Any]], list[list[dict[str, Any]]]]:
    """The embedded meta, case index and story chunks, decoded as the page decodes them."""
    meta = json.loads(re.search(r'<script type="application/json" id="meta">(.*?)</script>', page, re.S).group(1))
    packed = json.loads(gzip.decompress(base64.b64decode(
        re.search(r'<script type="application/gzip\+base64" id="index">(.*?)</script>', page, re.S).group(1))))
    index = _records(packed["c"], packed["n"])
    chunks = [unchunk(json.loads(gzip.decompress(base64.b64decode(c)))) for c in
              re.findall(r'<script type="application/gzip\+base64" class="chunk">(.*?)</script>', page, re.S)]
    return meta, index, chunks


def _script_blocks(page: str) -> list[str]:
    return re.findall(r"<script\b[^>]*>", page)


@pytest.fixture(scope="module")
def regressed_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled example: a baseline run of the current release, then the regressed one, reported."""
    from conftest import run_cli

    work = tmp_path_factory.mktemp("example")
    for name in ("pyproject.toml", "suites", "datasets", "assistant", "pipelines"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, work / name)
    suite = work / "suites" / "support.yaml"  # the written cases only: 36, on one page of the report
    text = suite.read_text()
    suite.write_text(re.sub(r"variants:.*?\ngate:", "gate:", text, flags=re.S).replace(
        "    - {metric: recovery.rate, min: 0.9}      # of the variants whose written conversation passes\n", ""))
    assert run_cli("run", "suites/support.yaml", cwd=work).code == 0
    assert run_cli("baseline", "set", "main", cwd=work).code == 0
    r = run_cli("run", "suites/support.yaml", "--target", "python:assistant.bot_regressed:respond",
                "--baseline", "main", "--html", "out/report.html", "--json", cwd=work)
    assert r.code == 1, r
    (work / "out" / "run.json").write_text(r.out)
    return work / "out" / "report.html"


def _failed(report: Path) -> int:
    """How many cases the run behind a report failed, from its own --json."""
    metrics = json.loads((report.parent / "run.json").read_text())["suites"][0]["metrics"]
    return int(metrics["failed"])


def test_report_states_the_verdict_rules_slices_and_regressions(regressed_report: Path) -> None:
    page = regressed_report.read_text(encoding="utf-8")
    assert "✗ FAIL" in page and "support: the gate failed" in page
    # the failed rule names its cases, each linked by URL fragment
    assert "critical cases pass" in page and 'href="#case=refund-changes-order-number"' in page
    assert "By route (turns)" in page and "By tag (case runs)" in page
    assert "Against the baseline" in page and "New failures" in page
    # the flipped cases are judged in the open: re-run, nothing else varied, so each is a regression
    assert "Cases that did worse than their history, judged" in page and "✗ regression" in page
    assert "no case that ran more than once varied" in page
    assert "Routes: expected × chosen" in page and 'class="num off"' in page  # the regressed router misroutes
    # leaks by the reader's group: the regressed release shows customers documents they may not read
    group = re.search(r'<tr class="st-fail"><th scope="row">customer</th>(.*?)</tr>', page, re.S)
    assert group is not None, "the customer group should be marked for its leaks"
    leaks = int(re.findall(r'<td class="num">([^<]*)</td>', group.group(1))[-1])
    ran = json.loads((regressed_report.parent / "run.json").read_text())["suites"][0]["metrics"]
    assert 0 < leaks <= ran["permissions.leaks"]
    meta, index, chunks = _blobs(page)
    assert meta["cases"] == len(index) == 36 and meta["chunks"] == len(chunks) == 1
    by_id = {c["id"]: c for c in index}
    changed = by_id["refund-changes-order-number"]
    assert changed["st"] == "fail" and changed.get("crit") == 1 and "state" in changed["fsc"]
    assert sum(1 for c in index if c["st"] == "fail") == _failed(regressed_report) >= 6
    story = next(s for s in chunks[0] if s["id"] == "refund-changes-order-number")
    turn = story["reps"][0]["turns"][0]
    assert turn["route"]["name"] == "refunds" and turn["route"]["reason"]
    assert any(c.get("used") is not False for c in turn["ctx"]), turn["ctx"]
    assert {s["s"] for s in turn["sc"]} >= {"route", "state"}
    # nothing loads from anywhere: no external src/href, a strict policy
    assert not re.search(r'(src|href)="(https?:)?//', page)
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page).group(1)
    csp = html.unescape(csp)
    assert "default-src 'none'" in csp and "script-src 'sha256-" in csp and "unsafe-inline" not in csp


def test_report_command_from_the_store(cli, project: Path) -> None:
    assert cli("run").code == 0
    r = cli("report", "latest", "--html", "r.html", "--json")
    assert r.code == 0, r
    info = r.json()["html"]
    assert info["cases"] == 2 and info["counts"] == {"pass": 2, "fail": 0, "flaky": 0, "error": 0}
    page = (project / "r.html").read_text()
    assert "✓ PASS" in page and "Every case passed." in page
    assert "first stored run of demo" in page
    assert cli("run").code == 0
    assert cli("report", "latest", "--html", "r2.html").code == 0
    assert '<svg class="trend"' in (project / "r2.html").read_text()  # two runs make a trend


def test_report_usage_errors(cli, project: Path) -> None:
    assert cli("run").code == 0
    r = cli("report", "nope", "--html", "x.html")
    assert r.code == 2 and "Traceback" not in r.err, r
    r = cli("report", "nope")
    assert r.code == 2 and "nope" in r.err and "Traceback" not in r.err, r
    write(project / "pyproject.toml", '[tool.evalgate]\ntrace_url = "javascript:alert(1)/{trace_id}"\n')
    r = cli("report", "latest", "--html", "x.html")
    assert r.code == 2 and "trace_url must be an http(s) URL" in r.err, r


def test_hostile_content_is_escaped_in_the_file(cli, project: Path) -> None:
    write(project / "hostile.py", HOSTILE_BOT)
    write(project / "suites" / "demo.yaml", HOSTILE_SUITE)
    r = cli("run", "--html", "h.html")
    assert r.code == 1, r
    page = (project / "h.html").read_text()
    # every <script> element is one of ours: data blocks and the one inline script
    kinds = [re.search(r'type="([^"]+)"', tag).group(1) if "type=" in tag else "inline" for tag in _script_blocks(page)]
    assert kinds.count("inline") == 1 and set(kinds) <= {"inline", "application/json", "application/gzip+base64"}
    markup = re.sub(r"<script\b[^>]*>.*?</script>", "", page, flags=re.S)  # the HTML outside the data blocks
    for tag in ("<img", "<svg onload", "<a href=\"javascript", "<meta http-equiv=\"refresh", "<base", "<iframe",
                "<style>body", "<form action", "<a href=\"https://evil"):
        assert tag not in markup, tag
    assert "&lt;script&gt;window.__pwned" in markup  # the failing-case list shows the payloads as text
    # server-side text is escaped: the case ids and reasons appear only as entities
    assert "<b>case</b>" not in page and "&lt;b&gt;case&lt;/b&gt;" in page
    meta, index, chunks = _blobs(page)
    assert {c["id"] for c in index} >= {"breakout-<b>case</b>", "list"}  # the data itself is intact
    # the policy, exactly: nothing but the page's own script and style, by hash
    inline_script = re.search(r"<script>(.*?)</script>", page, re.S).group(1)
    inline_style = re.search(r"<style>(.*?)</style>", page, re.S).group(1)

    def sha(text: str) -> str:
        return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"

    csp = html.unescape(re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page).group(1))
    assert csp == (f"default-src 'none'; script-src {sha(inline_script)}; style-src {sha(inline_style)}; "
                   "base-uri 'none'; form-action 'none'; require-trusted-types-for 'script'")
    assert page.index("Content-Security-Policy") < page.index("<title>")  # before any data


@pytest.fixture(scope="module")
def browser():
    chromium = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    reason = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = "the playwright package is not installed"
    if reason is None and chromium is None:
        reason = "no chromium on PATH (Debian package 'chromium'; chromium-browser and google-chrome also do)"
    if reason:
        if os.environ.get("EVALGATE_REQUIRE_BROWSER") == "1":
            pytest.fail(f"EVALGATE_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(f"browser tests skipped: {reason}")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield b
        b.close()


class Watched:
    """A page with every console message, page error, dialog and request recorded."""

    def __init__(self, browser: Any):
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.console: list[str] = []
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.on("request", lambda r: self.requests.append(r.url))

    def open(self, path: Path, fragment: str = "") -> Any:
        self.page.goto(path.as_uri() + fragment)
        self.page.wait_for_selector("body[data-ready='1']", timeout=15_000)
        return self.page

    def assert_clean(self) -> None:
        assert self.errors == [], self.errors
        assert [c for c in self.console if c.startswith(("error", "warning"))] == [], self.console
        assert self.dialogs == [], self.dialogs
        assert [u for u in self.requests if not u.startswith("file://")] == [], self.requests


def _artifact(name: str) -> Path:
    out = Path(os.environ.get("EVALGATE_ARTIFACTS", REPO / ".pytest-artifacts"))
    out.mkdir(parents=True, exist_ok=True)
    return out / name


def test_report_in_the_browser(browser: Any, regressed_report: Path) -> None:
    w = Watched(browser)
    page = w.open(regressed_report)
    assert page.locator("h1#verdict").inner_text().startswith("✗ FAIL")
    count = page.locator("#count")
    # a run that failed opens on the cases that did not pass
    failed = _failed(regressed_report)
    assert page.locator("#cases-list > li").count() == failed and f"{failed} of 36" in count.inner_text()
    page.select_option("#f-st", "")
    assert page.locator("#cases-list > li").count() == 36
    page.select_option("#f-route", "handoff")
    assert 0 < page.locator("#cases-list > li").count() < 36
    page.select_option("#f-route", "")
    _, index, _ = _blobs(regressed_report.read_text(encoding="utf-8"))
    fraud = [c["id"] for c in index if "fraud" in (c["id"] + " " + " ".join(c["tags"]) + " " + c["q"]).lower()]
    assert 0 < len(fraud) < 36
    page.fill("#f-q", "FRAUD")
    assert sorted(page.locator("#cases-list .id").all_inner_texts()) == sorted(fraud), count.inner_text()
    page.fill("#f-q", "")
    page.select_option("#f-st", "reg")
    regressed = page.locator("#cases-list > li").count()
    assert regressed >= 6  # the regressed release breaks at least the critical cases
    # a case story: its route, why, and its context
    page.select_option("#f-st", "")
    item = page.locator("#cases-list > li", has_text="refund-changes-order-number")
    item.locator("summary").click()
    story = item.locator(".story")
    story.locator(".turn").first.wait_for()
    text = story.inner_text()
    assert "route" in text and "because" in text and "context" in text and "kb/refund-policy" in text
    assert "✗ state" in text or "state" in text
    page.screenshot(path=str(_artifact("report-regressed.png")), full_page=True)
    # keyboard: the next case's summary is reachable and opens with Enter
    page.locator("#cases-list > li summary").nth(1).focus()
    page.keyboard.press("Enter")
    page.locator("#cases-list > li").nth(1).locator(".turn").first.wait_for()
    w.assert_clean()


def test_case_link_opens_the_case(browser: Any, regressed_report: Path) -> None:
    w = Watched(browser)
    page = w.open(regressed_report, "#case=account-locked")
    target = page.locator("#cases-list > li.target")
    assert target.count() == 1 and "account-locked" in target.inner_text()
    target.locator(".turn").first.wait_for()
    assert target.locator("details").get_attribute("open") is not None
    w.assert_clean()


_OWN_TAGS = {"a", "button", "caption", "code", "dd", "details", "div", "dl", "dt", "figcaption", "figure", "form",
             "h2", "h4", "input", "label", "li", "nav", "noscript", "ol", "option", "p", "pre", "section", "select",
             "span", "strong", "summary", "table", "tbody", "td", "th", "thead", "tr", "ul", "svg", "polyline",
             "circle", "title"}


def test_hostile_content_runs_nothing_and_adds_nothing(browser: Any, cli, project: Path) -> None:
    write(project / "hostile.py", HOSTILE_BOT)
    write(project / "suites" / "demo.yaml", HOSTILE_SUITE)
    write(project / "pyproject.toml", '[tool.evalgate]\ntrace_url = "https://traces.example.com/t/{trace_id}"\n')
    assert cli("run").code == 1  # one case raises (allowed by max_error_rate), the rest fail
    assert cli("baseline", "set", "main").code == 0
    assert cli("run", "--baseline", "main", "--html", "h.html", env={"HOSTILE_CHANGED": "1"}).code == 1
    w = Watched(browser)
    page = w.open(project / "h.html")
    page.select_option("#f-st", "")
    items = page.locator("#cases-list > li")
    assert items.count() == len(_KINDS) + 3
    for i in range(items.count()):  # open every story, so every payload is on the page
        items.nth(i).locator("summary").click()
        items.nth(i).locator(".turn, .notice").first.wait_for()
    page.eval_on_selector_all(".story details", "els => els.forEach(e => { e.open = true; })")  # the prompts too
    body = page.locator("main").inner_text()
    assert "</script><script>window.__pwned = 'breakout'</script>" in body  # shown as text
    assert "changed:" in body and "Behaviour changed" in body  # the comparison tables carry the payloads too
    assert page.evaluate("window.__pwned") is None
    # every element on the page is one the report makes, with no handler or inline style of the data's
    tags = set(page.eval_on_selector_all("main *", "els => els.map(e => e.localName)"))
    assert tags <= _OWN_TAGS, tags - _OWN_TAGS
    assert page.locator("main form").count() == 1 and page.locator("main svg[onload], main [srcdoc]").count() == 0
    bad_attrs = page.eval_on_selector_all(
        "*", "els => els.flatMap(e => [...e.attributes].map(a => a.name)"
             ".filter(n => n.startsWith('on') || (n === 'style' && !e.classList.contains('bar'))))")
    assert bad_attrs == []
    hrefs = page.eval_on_selector_all("a[href]", "els => els.map(e => e.getAttribute('href'))")
    assert hrefs and all(h == "#cases" or h.startswith(("#case=", "https://traces.example.com/t/")) for h in hrefs), hrefs
    trace_links = [h for h in hrefs if h.startswith("https://traces.example.com/t/")]
    assert trace_links and all(h.endswith("/t/javascript%3Awindow%2E__pwned%3D'trace'") for h in trace_links)
    assert page.evaluate("document.baseURI") == (project / "h.html").as_uri()  # no <base> took effect
    page.screenshot(path=str(_artifact("report-hostile.png")), full_page=True)
    # a case id that matches the page's own element ids still opens the right case
    page = w.open(project / "h.html", "#case=list")
    target = page.locator("#cases-list > li.target")
    assert target.count() == 1 and target.locator(".id").inner_text() == "list"
    w.assert_clean()


def test_stories_stream_in_write_order_and_match_the_sorted_read(cli, project: Path) -> None:
    """Cases, turns and scores are merged without sorting; the sorted fallback reads the same stories."""
    from evalgate.reporters.html import iter_cases
    from evalgate.store import Store

    assert cli("run", "--repeat", "3", "--concurrency", "4").code == 0
    store = Store(project / ".evalgate" / "evalgate.duckdb")
    run_id = store.resolve_run(None)
    with store.connect(read_only=True) as con:
        fast = {c.id: c for c in iter_cases(con, run_id, repeats=3)}
        slow = {c.id: c for c in iter_cases(con, run_id, repeats=3, ordered=True)}
    assert sorted(fast) == ["hello", "refund-change"]
    assert [r["r"] for r in fast["refund-change"].reps] == [0, 1, 2]
    assert all(len(r["turns"]) == 2 for r in fast["refund-change"].reps)
    assert fast == slow
    assert cli("report", "latest", "--html", "r.html").code == 0
    _, index, _ = _blobs((project / "r.html").read_text())
    assert [(c["id"], c["n"]) for c in index] == [("refund-change", 3), ("hello", 3)]  # suite order


def test_columns_round_trip() -> None:
    """Stories survive the column encoding exactly, including missing fields and nested values
    (turn records leave empty lists out, and so does the decoder)."""
    stories = [
        {"id": "a", "session": "a", "reps": [{"r": 0, "st": "pass", "turns": [
            {"n": 1, "in": "hi", "route": {"name": "x", "confidence": 0.5}, "sc": [{"s": "route", "ok": True}]},
            {"n": 2, "in": "again", "ctx": [{"id": "d1", "used": False, "excluded": "permission"}, {"id": "d2"}],
             "lat": {"total": 3}, "state": {"k": [1, {"deep": None}]}}]}]},
        {"id": "b", "session": None, "reps": [{"r": 0, "st": "error", "err": "boom", "turns": []},
                             {"r": 1, "st": "fail", "turns": [{"n": 1, "tools": [{"name": "t", "arguments": {}}]}, {"n": 3, "in": "a gap keeps its number"}]}]},
    ]
    data = json.loads(json.dumps(_chunk(stories)))
    assert unchunk(data) == stories


def test_report_prints_the_summary_and_the_failures(browser: Any, regressed_report: Path) -> None:
    w = Watched(browser)
    page = w.open(regressed_report)
    page.emulate_media(media="print")
    assert page.locator(".filters").is_hidden() and page.locator(".pager").is_hidden()
    static = page.locator(".static-list")
    assert static.is_visible() and "refund-changes-order-number" in static.inner_text()
    pdf = page.pdf(path=str(_artifact("report-regressed.pdf")), format="A4")
    pages = len(re.findall(rb"/Type\s*/Page(?!s)", pdf))
    assert pdf.startswith(b"%PDF") and pages >= 2, pages  # the summary and the failing cases span pages
    page.emulate_media(media="screen")
    assert static.is_hidden() and page.locator(".filters").is_visible()
    w.assert_clean()


def test_report_writes_markdown_junit_and_json_from_the_store(cli, project: Path) -> None:
    """After the run, from the store alone: the same verdict in every form a CI step reads."""
    import xml.etree.ElementTree as ET

    suite = (project / "suites" / "demo.yaml").read_text().replace("expect: {route: smalltalk}", "expect: {route: refunds}")
    write(project / "suites" / "demo.yaml", suite)
    ran = cli("run", "--json")
    assert ran.code == 1
    r = cli("report", "latest", "--markdown", "s.md", "--junit", "j.xml", "--json")
    assert r.code == 0, r
    data = r.json()
    assert data["exit_code"] == 1 and data["suites"][0]["verdict"] == ran.json()["suites"][0]["verdict"]
    assert data["suites"][0]["failing"][0]["case_id"] == "hello"
    assert "### ❌ demo: FAIL" in (project / "s.md").read_text()
    root = ET.parse(project / "j.xml").getroot()
    failed = [tc.get("name") for tc in root.iter("testcase") if tc.find("failure") is not None]
    assert any("hello" in name for name in failed), failed
    r = cli("report", "latest")
    assert r.code == 0 and r.out.startswith("FAIL demo"), r
