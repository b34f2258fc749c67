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
MIN_PAIRS = 5
"""Below this many paired cases no drop is called significant."""


def _phi(z: float) -> float:
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction for the regularized incomplete beta function (Lentz's method)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1, a - 1
    c, d = 1.0, 1 - qab * x / qap
    d = 1 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1 + aa * d
        d = 1 / (d if abs(d) > tiny else tiny)
        c = 1 + aa / c if abs(1 + aa / c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1 + aa * d
        d = 1 / (d if abs(d) > tiny else tiny)
        c = 1 + aa / c if abs(1 + aa / c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1) < 1e-12:
            break
    return h


def _t_sf(t: float, df: int) -> float:
    """P(T > t) for Student's t with ``df`` degrees of freedom."""
    x = df / (df + t * t)
    if x >= 1.0:  # |t| is tiny
        return 0.5
    if x <= 0.0:  # |t| is huge
        return 0.0 if t > 0 else 1.0
    a, b = df / 2, 0.5
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    ibeta = front * _betacf(a, b, x) / a if x < (a + 1) / (a + b + 2) else 1 - front * _betacf(b, a, 1 - x) / b
    return ibeta / 2 if t > 0 else 1 - ibeta / 2


def _t_quantile(p: float, df: int) -> float:
    lo, hi = -50.0, 50.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if 1 - _t_sf(mid, df) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


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
    """One-sided lower confidence bound on the drop: significant when it exceeds max_drop."""
    p_value: float
    detectable: float | None
    fails: bool = False
    p_adjusted: float | None = None
    """Holm-adjusted p-value when several regression rules are tested together."""
    cases: list[str] = field(default_factory=list)
    """Cases that did worse than in the baseline."""
    note: str = ""

    def describe(self) -> str:
        if self.n == 0:
            return "not measured: no case without errors is in both runs (in this slice)"
        level = f"{self.confidence:.0%}"
        p = self.p_adjusted if self.p_adjusted is not None else self.p_value
        p_text = f"p = {p:.3g}" + (", Holm-adjusted" if self.p_adjusted is not None else "")
        text = (f"{self.metric} {self.base:.1%} → {self.now:.1%} over {self.n} paired case(s): drop {self.drop:+.1%} "
                f"(at {level} confidence, at least {self.low:+.1%}); ")
        if self.fails:
            text += f"a drop beyond {self.max_drop:.1%} is significant ({p_text})"
        elif self.n < MIN_PAIRS:
            text += f"too few cases to test (fewer than {MIN_PAIRS})"
        elif self.drop > self.max_drop:
            text += f"larger than {self.max_drop:.1%} but could be noise ({p_text})"
        else:
            text += f"within the allowed {self.max_drop:.1%}"
        if self.detectable is not None:
            text += f"; this suite can reliably detect drops of about {self.detectable:.1%} or more"
        return text + (f"; {self.note}" if self.note else "")


def paired_drop(metric: str, pairs: Sequence[tuple[str, float, float]], max_drop: float, confidence: float) -> DropTest:
    """Test the mean of (before − now) over cases; ``pairs`` is (case id, before, now)."""
    n = len(pairs)
    if n == 0:
        return DropTest(metric, max_drop, confidence, 0, 0.0, 0.0, 0.0, 0.0, 1.0, None)
    diffs = [b - a for _, b, a in pairs]
    base = sum(b for _, b, _ in pairs) / n
    now = sum(a for _, _, a in pairs) / n
    mean = sum(diffs) / n
    var = sum((d - mean) ** 2 for d in diffs) / (n - 1) if n > 1 else 0.0
    # with no spread observed (every case moved the same way), assume the spread a real
    # change would show at the baseline's pass rate, rather than claim certainty
    floor = max(base * (1 - base), 0.05 * 0.95)
    if var == 0:
        var = floor
    se = math.sqrt(var / n)
    df = max(n - 1, 1)
    if n < MIN_PAIRS:
        p = 1.0
    else:
        p = _t_sf((mean - max_drop) / se, df)
    low = mean - _t_quantile(confidence, df) * se
    spread = math.sqrt(var)
    detectable = max_drop + (_z(confidence) + _POWER_Z) * spread / math.sqrt(n)
    worse = [cid for cid, b, a in pairs if a < b]
    return DropTest(metric, max_drop, confidence, n, base, now, mean, low, p, min(detectable, 1.0), cases=worse)


def holm(tests: Sequence[DropTest]) -> None:
    """Mark which tests fail, controlling the family-wise false-alarm rate (Holm, step-down)."""
    order = sorted(range(len(tests)), key=lambda i: tests[i].p_value)
    m = len(tests)
    running = 0.0
    stopped = False
    for rank, i in enumerate(order):
        t = tests[i]
        running = max(running, min(1.0, (m - rank) * t.p_value))  # Holm-adjusted p, monotone
        if m > 1:
            t.p_adjusted = running
        alpha = 1 - t.confidence
        if not stopped and t.n >= MIN_PAIRS and t.drop > t.max_drop and t.p_value <= alpha / (m - rank):
            t.fails = True
        else:
            stopped = True  # step-down: once one is kept, every larger p-value is kept too
