"""Reporters: what a run's report becomes for people and for CI, from the stored run.

``write_reports`` writes every file a command asked for, the same way for
``evalgate run`` and ``evalgate report``: JUnit XML, the Markdown summary
(and ``$GITHUB_STEP_SUMMARY``), and the HTML report (one file per suite).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Written", "write_reports"]


@dataclass
class Written:
    """Where the reports went."""

    junit: str | None = None
    markdown: list[str] = field(default_factory=list)
    html: list[dict[str, Any]] = field(default_factory=list)
    annotations: list[str] = field(default_factory=list)
    """GitHub workflow commands for failed rules (to print on stderr when running in GitHub Actions)."""


def write_reports(report: Any, *, junit: str | None = None, markdown: str | None = None, html: str | None = None,
                  trace_url: str | None = None) -> Written:
    """Write the JUnit, Markdown and HTML reports a command asked for."""
    from ..store import Store

    out = Written()
    if not report.suites:
        return out
    store = Store(report.store)
    if junit:
        from .junit import write_junit

        write_junit(report, store, junit)
        out.junit = junit
    if markdown or os.environ.get("GITHUB_STEP_SUMMARY"):
        from .markdown import write_markdown

        out.markdown = write_markdown(report, markdown)
    if html:
        from .html import build

        target = Path(html)
        several = len(report.suites) > 1
        for s in report.suites:
            path = target.with_name(f"{target.stem}-{s.suite}{target.suffix or '.html'}") if several else target
            out.html.append(build(store, s.run_id, path, trace_url=trace_url))
    if os.environ.get("GITHUB_ACTIONS") == "true":
        from .markdown import github_annotations

        out.annotations = github_annotations(report)
    return out
