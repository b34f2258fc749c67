"""evalgate: evaluation and release gate for production AI systems.

The public Python API. Heavy modules load on first use, so importing
evalgate (and ``evalgate --help``) stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "BoundScorer",
    "Case",
    "EvalgateError",
    "RunError",
    "RunOptions",
    "RunReport",
    "Score",
    "ScoreContext",
    "Store",
    "Suite",
    "SuiteError",
    "Trace",
    "Turn",
    "UsageError",
    "Verdict",
    "__version__",
    "case_story",
    "compare_runs",
    "export",
    "export_baseline",
    "history",
    "html_report",
    "import_feedback",
    "import_traces",
    "join_spans",
    "list_feedback",
    "load_suite",
    "merge_shards",
    "promote_feedback",
    "tables",
    "route_confusion",
    "run",
    "scorer",
    "set_baseline",
    "show_baselines",
    "stored_report",
    "target",
    "validate",
]

_LAZY = {
    "BoundScorer": "evalgate.scorers",
    "Score": "evalgate.scorers",
    "ScoreContext": "evalgate.scorers",
    "scorer": "evalgate.scorers",
    "Case": "evalgate.cases",
    "Suite": "evalgate.suite",
    "Turn": "evalgate.cases",
    "load_suite": "evalgate.suite",
    "EvalgateError": "evalgate.errors",
    "RunError": "evalgate.errors",
    "SuiteError": "evalgate.errors",
    "UsageError": "evalgate.errors",
    "RunOptions": "evalgate.runner",
    "RunReport": "evalgate.api",
    "run": "evalgate.api",
    "validate": "evalgate.api",
    "case_story": "evalgate.api",
    "history": "evalgate.api",
    "html_report": "evalgate.api",
    "stored_report": "evalgate.api",
    "import_traces": "evalgate.intake",
    "join_spans": "evalgate.intake",
    "import_feedback": "evalgate.intake",
    "list_feedback": "evalgate.intake",
    "promote_feedback": "evalgate.intake",
    "compare_runs": "evalgate.api",
    "merge_shards": "evalgate.api",
    "tables": "evalgate.frames",
    "export": "evalgate.frames",
    "route_confusion": "evalgate.api",
    "set_baseline": "evalgate.api",
    "show_baselines": "evalgate.api",
    "export_baseline": "evalgate.api",
    "target": "evalgate.targets",
    "Store": "evalgate.store",
    "Trace": "evalgate.traces",
    "Verdict": "evalgate.gate",
}

if TYPE_CHECKING:
    from .api import (
        RunReport,
        case_story,
        compare_runs,
        export_baseline,
        history,
        html_report,
        merge_shards,
        route_confusion,
        run,
        set_baseline,
        show_baselines,
        stored_report,
        validate,
    )
    from .cases import Case, Turn
    from .errors import EvalgateError, RunError, SuiteError, UsageError
    from .frames import export, tables
    from .gate import Verdict
    from .intake import import_feedback, import_traces, join_spans, list_feedback, promote_feedback
    from .runner import RunOptions
    from .scorers import BoundScorer, Score, ScoreContext, scorer
    from .store import Store
    from .suite import Suite, load_suite
    from .targets import target
    from .traces import Trace


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'evalgate' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
