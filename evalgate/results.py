"""The records that runner, store, gate and reporters share.

Results are keyed by (run, case, repeat, turn). Turns are 1-based, repeats
0-based, as in the request a target receives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from .scorers import Score
from .traces import Trace


RunStatus = Literal["running", "completed", "interrupted", "stopped", "failed"]
"""running (or its process died), completed, interrupted (Ctrl-C), stopped (a budget or an offline miss), failed (a bug)."""
VerdictStatus = Literal["pass", "fail", "error"]
RuleStatus = Literal["pass", "fail", "inconclusive", "skipped"]
CaseKind = Literal["regression", "flaky", "inconclusive"]
"""What the evidence says of a case that did worse than its history."""


@dataclass(slots=True)
class TurnResult:
    """What happened in one turn, and every score of it."""

    turn: int
    input: str
    state_in: dict[str, Any]
    trace: Trace | None
    elapsed_ms: float | None
    error: str | None
    scores: list[Score]
    recorded: Trace | None = None
    changes: dict[str, Any] | None = None
    tags: tuple[str, ...] = ()
    """The turn's own tags (written, or from a gold file)."""

    @property
    def passed(self) -> bool:
        return self.error is None and all(s.passed and s.error is None for s in self.scores)


@dataclass(slots=True)
class CaseResult:
    """One repeat of one case: its turns, whether it passed, and why not."""

    case_id: str
    seq: int
    repeat: int
    tags: tuple[str, ...]
    user_id: str
    user_groups: list[str]
    session_id: str | None
    source: str
    critical: bool
    turns: list[TurnResult] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    variant_of: str | None = None
    stopped: bool = False
    """The run stopped in the middle of it (--max-cost reached, an offline cache miss): not evaluated, so not stored,
    and ``--resume`` runs it."""

    def digest(self) -> str:
        """A short hash of what the system did on every turn (route, context, tools, output, state, error).

        Timing and usage are left out: two runs with equal digests gave the same answers.
        """
        import hashlib
        import json

        parts: list[Any] = []
        for t in self.turns:
            tr = t.trace
            if tr is None:
                parts.append([t.error])
                continue
            parts.append([tr.route_name, tr.used_context_ids, [[c.name, c.arguments] for c in tr.tool_calls],
                          tr.output, tr.state, tr.error])
        blob = json.dumps(parts, sort_keys=True, default=str, ensure_ascii=False, separators=(",", ":"))
        return hashlib.blake2b(blob.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()

    @property
    def errored(self) -> bool:
        return self.error is not None

    @property
    def passed(self) -> bool:
        return self.error is None and all(t.passed for t in self.turns)

    @property
    def elapsed_ms(self) -> float | None:
        measured = [t.elapsed_ms for t in self.turns if t.elapsed_ms is not None]
        return sum(measured) if measured else None

    def reasons(self) -> list[str]:
        """One line per failed score or error: why the case did not pass."""
        out = [f"error: {self.error}"] if self.error else []
        for t in self.turns:
            for s in t.scores:
                if not s.passed or s.error:
                    out.append(f"turn {t.turn} {s.scorer}: {s.error or s.explanation}")
        return out


@dataclass
class Execution:
    """What executing a suite's cases came to: status, counts, time. The gate judges it into a ``SuiteReport``; the
    ``RunReport`` holds every suite of one command."""

    run_id: str
    suite: str
    status: RunStatus
    cases: int
    turns: int
    errors: int
    passed: int
    bad_lines: int
    duration_s: float
    failure: str | None = None


@dataclass
class RuleData:
    """A rule's metric value on its slice and the cases behind it."""

    value: float | None
    cases: list[str] = field(default_factory=list)
    sample: int = 0
    """How many cases (or turns, or scores) the value is computed over."""
    population: int | None = None
    """For usage metrics: the turns in the slice, reported or not."""
    trials: int | None = None
    """For a share (pass_rate, a scorer's pass rate, pass@k): its denominator, the trials that said pass or fail."""
