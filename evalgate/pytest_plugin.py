"""pytest integration: ``pytest --evalgate suites/`` runs evalgate suites as tests.

Every suite file named (or found in a folder named) becomes a collector; every case run (case × repeat) an item
named by its case id, its tags as markers. The suite runs once, through evalgate itself (stored like any
``evalgate run``, compared with its baseline, gated), when its first item runs; each item then reports its stored
result, a failure showing the case's story as ``evalgate show`` prints it. A ``gate`` item per suite carries the
verdict, and the verdict decides: a case that failed within a gate that passed is reported as an expected failure,
so the session's exit status is the gate's.

Inert unless ``--evalgate`` is given.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

_RUNS: dict[Path, Any] = {}


def pytest_addoption(parser: Any) -> None:
    group = parser.getgroup("evalgate")
    group.addoption("--evalgate", action="store_true", help="collect evalgate suite files (YAML) as tests")
    group.addoption("--evalgate-db", default=None, help="the evalgate store (default: the project's configuration)")
    group.addoption("--evalgate-baseline", default=None, help="compare with this baseline (a name, branch:NAME, run id)")


def pytest_collect_file(file_path: Path, parent: Any) -> Any:
    if not parent.config.getoption("evalgate") or file_path.suffix not in (".yaml", ".yml"):
        return None
    import yaml

    from .errors import SuiteError
    from .suite import load_suite

    try:
        head = yaml.safe_load(file_path.read_text(encoding="utf-8", errors="replace"))
    except yaml.YAMLError:
        head = None
    if not isinstance(head, dict) or not {"cases", "traces", "target", "gate"} & set(head):
        return None  # not a suite (a dataset, a pipeline file): not ours to collect
    try:
        suite = load_suite(file_path)
    except SuiteError as exc:  # a suite with a mistake: say so where pytest says collection errors
        return SuiteFile.from_parent(parent, path=file_path, suite=None, problem=str(exc))
    return SuiteFile.from_parent(parent, path=file_path, suite=suite)


class SuiteFile(pytest.File):
    """One evalgate suite: its case runs, then its gate."""

    def __init__(self, *, suite: Any, problem: str | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.suite = suite
        self.problem = problem

    def collect(self) -> Any:
        if self.problem is not None:
            raise pytest.UsageError(f"evalgate: {self.problem}")
        repeat = self.suite.repeat
        for case in self.suite.iter_cases():
            for r in range(repeat):
                item = CaseItem.from_parent(self, name=case.id if repeat == 1 else f"{case.id}[{r}]",
                                            case_id=case.id, repeat=r)
                for tag in case.tags:
                    marker = "".join(c if c.isalnum() else "_" for c in tag)
                    self.config.addinivalue_line("markers", f"{marker}: evalgate tag {tag}")
                    item.add_marker(marker)
                yield item
        yield GateItem.from_parent(self, name="gate")

    def report(self) -> Any:
        """The suite's run, made once (when the first item asks)."""
        if self.path not in _RUNS:
            from .api import run
            from .runner import RunOptions

            options = RunOptions(baseline=self.config.getoption("evalgate_baseline"))
            _RUNS[self.path] = run([str(self.path)], store_path=self.config.getoption("evalgate_db"), options=options)
        return _RUNS[self.path]


class EvalgateFailure(Exception):
    """A case or a gate that failed, with the text a person reads."""


class CaseItem(pytest.Item):
    def __init__(self, *, case_id: str, repeat: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.case_id = case_id
        self.repeat = repeat

    def runtest(self) -> None:
        assert isinstance(self.parent, SuiteFile)
        report = self.parent.report()
        suite = report.suites[0]
        from .api import case_story
        from .store import Store

        store = Store(report.store)
        story = case_story(store, suite.run_id, self.case_id, self.repeat)
        rep = story["repeats"][0] if story["repeats"] else None
        if rep is None:
            pytest.skip("the run stopped before this case ran")
        if rep["passed"]:
            return
        text = _story_text(story)
        if suite.verdict.status == "pass":
            pytest.xfail(f"failed, within the gate that passed:\n{text}")
        raise EvalgateFailure(text)

    def repr_failure(self, excinfo: Any, style: Any = None) -> str:
        if isinstance(excinfo.value, EvalgateFailure):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"evalgate case {self.case_id}"


class GateItem(pytest.Item):
    def runtest(self) -> None:
        assert isinstance(self.parent, SuiteFile)
        suite = self.parent.report().suites[0]
        v = suite.verdict
        if v.status == "pass":
            return
        lines = [f"{suite.suite}: {v.status.upper()} (exit {v.exit_code}), run {suite.run_id}", *v.reasons]
        lines += [f"  {r.status}: {r.rule}: {r.detail}" for r in v.rules if r.status == "fail"]
        raise EvalgateFailure("\n".join(lines))

    def repr_failure(self, excinfo: Any, style: Any = None) -> str:
        if isinstance(excinfo.value, EvalgateFailure):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, "evalgate gate"


def _story_text(story: dict[str, Any]) -> str:
    from rich.console import Console

    from .reporters.console import render_story

    buffer = io.StringIO()
    render_story(Console(file=buffer, width=120, no_color=True, highlight=False), story)
    return buffer.getvalue()
