"""Paired statistics for regression rules (``max_drop``).

The unit is the case: turns within a case and repeats of a case are not
independent, so each case contributes one paired difference, its pass
fraction in the baseline minus its pass fraction now. A rule fails only when
the mean drop is larger than ``max_drop`` *and* that is significant at the
rule's confidence (a one-sided test of H0: drop ≤ max_drop). When a gate has
several such rules, Holm's step-down procedure keeps the chance of any false
alarm at 1 − confidence across all of them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

_POWER_Z = 0.8416  # z for 80 % power


def _phi(z: float) -> float:
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def _z(p: float) -> float:
    """Inverse of the standard normal CDF (bisection: exact enough, no SciPy)."""
    lo, hi = -10.0, 10.0
    for _ in range(80):
        mid = (lo + hi) / 2
        if _phi(mid) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


@dataclass
class DropTest:
    """A paired test of one max_drop rule, in words a release manager can read."""

    metric: str
    max_drop: float
    confidence: float
    n: int
    base: float
    now: float
    drop: float
    low: float
    high: float
    p_value: float
    detectable: float | None
    fails: bool = False
    cases: list[str] = field(default_factory=list)
    """Cases that did worse than in the baseline."""
    note: str = ""

    def describe(self) -> str:
        if self.n == 0:
            return "no case is in both runs: nothing to compare"
        level = f"{self.confidence:.0%}"
        text = (f"{self.metric} {self.base:.1%} → {self.now:.1%} over {self.n} paired case(s): drop {self.drop:+.1%} "
                f"({level} interval {self.low:+.1%} to {self.high:+.1%}); ")
        if self.fails:
            text += f"a drop beyond {self.max_drop:.1%} is significant (p = {self.p_value:.3g})"
        elif self.drop > self.max_drop:
            text += f"larger than {self.max_drop:.1%} but could be noise (p = {self.p_value:.3g})"
        else:
            text += f"within the allowed {self.max_drop:.1%}"
        if self.detectable is not None:
            text += f"; this suite can reliably detect drops of about {self.detectable:.1%} or more"
        return text + (f"; {self.note}" if self.note else "")


def paired_drop(metric: str, pairs: Sequence[tuple[str, float, float]], max_drop: float, confidence: float) -> DropTest:
    """Test the mean of (before − now) over cases; ``pairs`` is (case id, before, now)."""
    n = len(pairs)
    if n == 0:
        return DropTest(metric, max_drop, confidence, 0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, None)
    diffs = [b - a for _, b, a in pairs]
    base = sum(b for _, b, _ in pairs) / n
    now = sum(a for _, _, a in pairs) / n
    mean = sum(diffs) / n
    var = sum((d - mean) ** 2 for d in diffs) / (n - 1) if n > 1 else 0.0
    se = math.sqrt(var / n)
    z_two = _z(1 - (1 - confidence) / 2)
    if se == 0:
        p = 0.0 if mean > max_drop else 1.0
    else:
        p = 1 - _phi((mean - max_drop) / se)
    # the smallest drop (beyond the margin) this many cases detects with 80 % power; with no
    # spread yet, assume the spread a true drop would cause at the baseline's pass rate
    spread = math.sqrt(var) if var > 0 else math.sqrt(max(base * (1 - base), 0.05 * 0.95) * 2)
    detectable = max_drop + (_z(confidence) + _POWER_Z) * spread / math.sqrt(n)
    worse = [cid for cid, b, a in pairs if a < b]
    return DropTest(metric, max_drop, confidence, n, base, now, mean, mean - z_two * se, mean + z_two * se, p,
                    min(detectable, 1.0), cases=worse)


def holm(tests: Sequence[DropTest]) -> None:
    """Mark which tests fail, controlling the family-wise false-alarm rate (Holm, step-down)."""
    order = sorted(range(len(tests)), key=lambda i: tests[i].p_value)
    m = len(tests)
    for rank, i in enumerate(order):
        t = tests[i]
        alpha = 1 - t.confidence
        if t.drop > t.max_drop and t.p_value <= alpha / (m - rank):
            t.fails = True
        else:
            break  # step-down: once one is kept, every larger p-value is kept too
    if m > 1:
        for t in tests:
            t.note = f"Holm-adjusted across {m} regression rules"
