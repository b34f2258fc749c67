"""Writing cases in Python, for teams whose tests live in pytest.

    from evalgate.testing import case, check

    def test_refunds_follow_the_correction():
        report = check("python:assistant.bot:respond", [
            case("refund-corrected", [("I want a refund for order 5512", {"route": "refunds"}),
                                      ("sorry, it's 5521 not 5512", {"state": {"order_id": "5521"}})]),
        ], documents="datasets/docs.jsonl")
        assert report.passed, report.explain()

The cases run through evalgate itself (the target, the scorers, the store, the gate) as a suite would.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


def case(id: str, turns: list[tuple[str, dict[str, Any]] | str], *, user: dict[str, Any] | None = None,
         tags: list[str] | None = None, state: dict[str, Any] | None = None) -> dict[str, Any]:
    """One conversation: its turns as (input, expectations) pairs, or bare inputs with no expectations."""
    spec: dict[str, Any] = {"id": id, "turns": [{"input": t} if isinstance(t, str) else {"input": t[0], "expect": t[1]}
                                                for t in turns]}
    if user is not None:
        spec["user"] = user
    if tags:
        spec["tags"] = tags
    if state:
        spec["state"] = state
    return spec


@dataclass
class Checked:
    """What ``check`` found: the suite's report, and words for an assertion message."""

    report: Any

    @property
    def passed(self) -> bool:
        return bool(self.report.exit_code == 0)

    @property
    def suite(self) -> Any:
        return self.report.suites[0]

    def explain(self) -> str:
        s = self.suite
        lines = [f"{s.suite}: {s.verdict.status.upper()} (exit {s.verdict.exit_code})", *s.verdict.reasons]
        for f in s.failing:
            lines.append(f"  {f['case_id']}: " + "; ".join(f["reasons"][:4]))
        return "\n".join(lines)


def check(target: str, cases: list[dict[str, Any]], *, gate: dict[str, Any] | None = None,
          documents: str | Path | None = None, store: str | Path | None = None, name: str = "python-cases",
          **suite: Any) -> Checked:
    """Run ``cases`` against ``target`` (``python:pkg.mod:fn``, ``http:URL``, ``command:…``) as one suite.

    ``gate`` is a suite's ``gate:`` (default: every case must pass); ``documents`` a document set (permissions are
    then checked on every turn); other keywords are suite keys (``repeat``, ``expect``, ``variants``, ...). The run is
    stored in ``store`` (default: a temporary one).
    """
    from .api import run

    spec: dict[str, Any] = {"name": name, "cases": cases, **suite}
    if gate is not None:
        spec["gate"] = gate
    if documents is not None:
        spec["documents"] = str(Path(documents).resolve())
    with tempfile.TemporaryDirectory(prefix="evalgate-") as tmp:
        path = Path(tmp) / f"{name}.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True), encoding="utf-8")
        db = Path(store) if store is not None else Path(tmp) / "evalgate.duckdb"
        return Checked(run([str(path)], store_path=db, target=target))
