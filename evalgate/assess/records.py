"""The records of the gate's statistical decisions: a judged case, and the whole assessment in words."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..results import CaseKind
from ..stats import (
    DropTest,
    ShareTest,
)

NNF = "no_new_failures"


@dataclass
class CaseVerdict:
    """What the evidence says about one case that did worse than its history."""

    case_id: str
    kind: CaseKind
    before: tuple[int, int]
    """Passes and runs without error in the baseline's history."""
    now: tuple[int, int]
    """Passes and runs without error in this run."""
    confirm: tuple[int, int] | None = None
    """Passes and runs without error when re-run to confirm."""
    p_value: float | None = None
    level: float | None = None
    why: str = ""
    decide: str | None = None
    """For an inconclusive case: what would decide it."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Assessment:
    """Every statistical decision of one gate, and the evidence behind each."""

    confidence: float
    history_runs: int = 0
    varies: bool | None = None
    """Does anything in these versions vary from run to run? None: nothing ran twice, so not measured."""
    flipped: list[str] = field(default_factory=list)
    expected_flips: float | None = None
    """How many cases would do worse than their history by chance alone (empirical Bayes over the history)."""
    cases: list[CaseVerdict] = field(default_factory=list)
    flaky: dict[str, str] = field(default_factory=dict)
    """Case id → its outcomes ("passed 7 of 10 before, 1 of 3 now"): mixed in the history or in this run."""
    confirm_runs: int = 0
    """Extra case runs the confirmation made."""
    confirm_run: str | None = None
    confirm_rounds: list[str] = field(default_factory=list)
    """Every confirmation run (one per round: a case is re-run until it passes or has failed enough)."""
    drops: dict[int, DropTest] = field(default_factory=dict)
    """Rule index → its paired test."""
    shares: dict[int, ShareTest] = field(default_factory=dict)
    """Rule index → its threshold test on a share."""
    judged: bool = False
    """Were the flipped cases judged (the gate has a no_new_failures rule)?"""
    not_rerun: list[str] = field(default_factory=list)
    """Flipped cases no number of re-runs could show significantly worse than their history: tested, not re-run."""

    @property
    def regressions(self) -> list[CaseVerdict]:
        return [c for c in self.cases if c.kind == "regression"]

    @property
    def inconclusive(self) -> list[CaseVerdict]:
        return [c for c in self.cases if c.kind == "inconclusive"]

    def words(self) -> str:
        """'11 case(s) did worse than their history; about 9 expected by chance from 5 baseline runs; ...'"""
        if not self.flipped:
            return "no case did worse than its history" + self._behind()
        parts = [f"{len(self.flipped)} case(s) did worse than their history" + self._behind()]
        if not self.judged:
            return parts[0] + " (not confirmed: the gate has no no_new_failures rule)"
        if self.expected_flips is not None:
            parts.append(f"about {self.expected_flips:.0f} expected by chance")
        if self.not_rerun:
            parts.append(f"{len(self.not_rerun)} too uncertain before to be decided by re-runs")
        if self.confirm_runs:
            parts.append(f"{len(self.flipped) - len(self.not_rerun)} re-run ({self.confirm_runs} case run(s)) to confirm")
        reg = self.regressions
        parts.append(f"{len(reg)} confirmed regression(s)" + (": " + ", ".join(c.case_id for c in reg[:5])
                                                              + (" …" if len(reg) > 5 else "") if reg else ""))
        again = [c for c in self.cases if c.kind == "flaky"]
        if again:
            parts.append(f"{len(again)} passed again (flaky)")
        inc = self.inconclusive
        if inc:
            parts.append(f"{len(inc)} inconclusive: " + ", ".join(c.case_id for c in inc[:5]) + (" …" if len(inc) > 5 else ""))
        return "; ".join(parts)

    def _behind(self) -> str:
        return f" ({self.history_runs} baseline run{'s' if self.history_runs != 1 else ''})" if self.history_runs else ""

    def to_dict(self) -> dict[str, Any]:
        return {"confidence": self.confidence, "history_runs": self.history_runs, "varies": self.varies,
                "judged": self.judged,
                "flipped": self.flipped, "not_rerun": self.not_rerun, "expected_flips": self.expected_flips,
                "cases": [c.to_dict() for c in self.cases], "flaky": self.flaky,
                "confirm_runs": self.confirm_runs, "confirm_run": self.confirm_run,
                "confirm_rounds": self.confirm_rounds,
                "drops": {str(k): asdict(v) for k, v in self.drops.items()},
                "shares": {str(k): asdict(v) for k, v in self.shares.items()}, "words": self.words()}
