"""Markdown: the verdict for a CI step summary or a pull-request comment."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

_ICON = {"pass": "✅", "fail": "❌", "error": "⚠️", "skipped": "➖", "inconclusive": "❔"}


_LINE_BREAKS = re.compile("[\r\n\u2028\u2029\x0b\x0c]+")
_CONTROL = re.compile("[\x00-\x08\x0e-\x1f\x7f]")
_MARKDOWN = re.compile(r"([\\`*_\[\]()!#@&|~<>])")


def _cell(text: Any, limit: int = 300) -> str:
    """Inert table text: one line, Markdown and HTML punctuation escaped (links, images and
    mentions from model output render as plain text), and capped in length."""
    one_line = _CONTROL.sub("\ufffd", _LINE_BREAKS.sub(" ", str(text)))
    if len(one_line) > limit:
        one_line = one_line[: limit - 1] + "…"
    return _MARKDOWN.sub(r"\\\1", one_line)


def _code(text: Any) -> str:
    """A code span: nothing inside renders, so only backticks, line breaks, control characters and table pipes need
    care (a ``|`` ends a table cell even inside a code span: GitHub reads ``\\|`` as the character)."""
    inner = _CONTROL.sub("\ufffd", _LINE_BREAKS.sub(" ", str(text))).replace("`", "'")[:200]
    return "`" + inner.replace("|", "\\|") + "`"


def render_markdown(report: Any, *, max_cases: int = 20) -> str:
    lines: list[str] = []
    for s in report.suites:
        v = s.verdict
        lines.append(f"### {_ICON[v.status]} {_cell(s.suite)}: {v.status.upper()}")
        lines.append("")
        lines.append(f"Run {_code(s.run_id)} · {s.cases} case run(s), {s.turns} turn(s) · target {_code(s.target)}")
        lines.append("")
        for reason in v.reasons:
            lines.append(f"- {_cell(reason)}")
        for note in v.notices:
            lines.append(f"- note: {_cell(note)}")
        lines.append("")
        lines.append("| | rule | result |")
        lines.append("|---|---|---|")
        for r in v.rules:
            lines.append(f"| {_ICON.get(r.status, '')} | {_cell(r.rule)} | {_cell(r.detail)} |")
        lines.append("")
        m = s.metrics
        rate = m.get("pass_rate")
        lines.append(f"pass rate **{rate:.1%}**" if rate is not None else "pass rate —")
        lines.append("")
        if s.baseline:
            b = s.baseline
            st = getattr(s, "statistics", None) or {}
            runs = b.get("baseline_runs", 1)
            against = f"baseline {_code(b['baseline_run'])}" if runs == 1 else \
                f"{runs} baseline runs (newest {_code(b['baseline_run'])})"
            lines.append(f"**Against {against}:** {len(b['new_failures'])} new failure(s), "
                         f"{len(b['fixed'])} fixed, {len(b['flaky'])} flaky, {len(b.get('inconclusive', []))} inconclusive, "
                         f"{len(b['changed'])} changed behaviour")
            if st.get("flipped"):
                lines.append(f"- {_cell(st['words'], 600)}")
            why = {c["case_id"]: c for c in st.get("cases", [])}
            for label, key in (("New failure", "new_failures"), ("Inconclusive", "inconclusive"), ("Fixed", "fixed")):
                for case_id in b.get(key, [])[:max_cases]:
                    v = why.get(case_id)
                    text = f": {_cell(v['why'])}" if v and v.get("why") else ""
                    text += f"; decided by {_cell(v['decide'])}" if v and v.get("decide") else ""
                    lines.append(f"- {label}: {_code(case_id)}{text}")
                    for change in (b.get("changed") or {}).get(case_id, [])[:4]:  # before → after, as compare says it
                        lines.append(f"  - {_cell(change, 400)}")
            rates = st.get("flaky", {})
            if b["flaky"]:
                lines.append("- Flaky: " + ", ".join(_code(c) + (f" ({_cell(rates[c])})" if c in rates else "")
                                                     for c in b["flaky"][:max_cases]))
            lines.append("")
        if s.failing:
            lines.append("| case | why |")
            lines.append("|---|---|")
            for f in s.failing[:max_cases]:
                lines.append(f"| {_code(f['case_id'])} | {'<br>'.join(_cell(r) for r in f['reasons'][:4])} |")
            lines.append("")
    return "\n".join(lines) + "\n"


def write_markdown(report: Any, path: Path | str | None) -> list[str]:
    """Write to ``path`` and append to $GITHUB_STEP_SUMMARY when set; returns where it went."""
    text = render_markdown(report)
    written = []
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text, encoding="utf-8")
        written.append(str(path))
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        try:
            with open(summary, "a", encoding="utf-8") as fh:
                fh.write(text)
            written.append(summary)
        except OSError:
            pass  # a summary file we cannot write must not fail the gate
    return written


def github_annotations(report: Any) -> list[str]:
    """Workflow commands for failed rules (printed when running in GitHub Actions)."""
    out = []
    for s in report.suites:
        for r in s.verdict.rules:
            if r.status == "fail":
                msg = f"{r.detail}" + (f" (cases: {', '.join(r.cases[:10])})" if r.cases else "")
                out.append(f"::error title={_escape_property(f'evalgate {s.suite}: {r.rule}')}::{_escape(msg)}")
    return out


def _escape(text: str) -> str:
    """Workflow-command data: %, CR and LF are escaped."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    """Workflow-command properties also escape ':' and ','."""
    return _escape(text).replace(":", "%3A").replace(",", "%2C")
