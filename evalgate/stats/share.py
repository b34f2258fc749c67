"""A share against a threshold: a Wilson interval and an exact binomial test on its effective trials."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .distributions import binom_pmf, z_quantile


@dataclass
class ShareTest:
    """A share (pass rate, accuracy) against a min or max, with its run-to-run uncertainty."""

    value: float
    n: int
    limit: float
    side: str
    """min: the share must be at least the limit; max: at most."""
    low: float
    high: float
    p_value: float
    design: float
    """Variance relative to independent pass-or-fail trials: 0 when nothing varies from run to run."""
    level: float = 0.05
    status: str = "pass"
    """pass (the interval clears the limit), fail (significantly on the wrong side), inconclusive."""

    def needed(self) -> int | None:
        """Roughly how many case runs would decide it, at this distance from the limit."""
        gap = abs(self.value - self.limit)
        if gap < 1e-9 or self.design == 0:
            return None
        z = z_quantile(1 - self.level)
        return math.ceil(self.design * z * z * self.value * (1 - self.value) / (gap * gap)) or None


def binom_cdf(x: int, n: int, p: float) -> float:
    """P(X ≤ x) for X ~ Binomial(n, p).

    The tail on ``x``'s side of the mode is summed from ``x`` outwards, each term from the one before, until the
    terms no longer count: a share over a million turns reads a few thousand terms, not ``x`` of them.
    """
    if x < 0:
        return 0.0
    if x >= n:
        return 1.0
    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    if x < math.floor((n + 1) * p):  # below the mode: the terms fall from x down to 0
        return min(1.0, _tail(x, n, p, -1))
    return min(1.0, max(0.0, 1.0 - _tail(x + 1, n, p, 1)))  # above it: they fall from x + 1 up to n


def _tail(start: int, n: int, p: float, step: int) -> float:
    """The sum of the binomial terms from ``start`` outwards (``step`` -1: down to 0, 1: up to n), where they fall."""
    odds = p / (1 - p)
    term = binom_pmf(start, n, p)
    total = 0.0
    k = start
    while term > 0.0:
        total += term
        if term <= total * 1e-17:  # the rest falls faster still: below the sum's last digit
            break
        if step < 0:
            if k == 0:
                break
            term *= k / ((n - k + 1) * odds)
            k -= 1
            if k % 256 == 0:  # the recurrence's rounding, reset now and then
                term = binom_pmf(k, n, p)
        else:
            if k == n:
                break
            term *= (n - k) * odds / (k + 1)
            k += 1
            if k % 256 == 0:
                term = binom_pmf(k, n, p)
    return total


def share_test(passed: float, n: int, limit: float, side: str, design: float, level: float = 0.05) -> ShareTest:
    """A share against a limit on ``n / design`` effective trials: a Wilson interval and an exact binomial test.

    ``design`` is 1 for independent pass-or-fail trials, smaller when the
    history shows cases that rarely change outcome, larger when trials move
    together (the turns of one conversation), 0 when nothing varies (a
    deterministic system: the share is what it is). The test is exact on the
    effective trials (rounded down, the cautious way), so small samples and
    limits near 0 or 1 keep their level.
    """
    value = passed / n if n else 0.0
    if n == 0:
        return ShareTest(value, 0, limit, side, 0.0, 1.0, 1.0, design, level, "inconclusive")
    if design <= 0:
        ok = value >= limit if side == "min" else value <= limit
        return ShareTest(value, n, limit, side, value, value, 0.0 if not ok else 1.0, 0.0, level)
    n_eff = n / design
    z = z_quantile(1 - level)
    centre = (value + z * z / (2 * n_eff)) / (1 + z * z / n_eff)
    half = z / (1 + z * z / n_eff) * math.sqrt(value * (1 - value) / n_eff + z * z / (4 * n_eff * n_eff))
    low, high = max(0.0, centre - half), min(1.0, centre + half)
    trials = max(1, int(n_eff))
    hits = int(round(value * trials))
    # H0: the share meets the limit; small p when what was seen is unlikely under the limit itself
    p = binom_cdf(hits, trials, limit) if side == "min" else 1.0 - binom_cdf(hits - 1, trials, limit)
    return ShareTest(value, n, limit, side, low, high, min(1.0, p), design, level)


def finish_share(test: ShareTest, level: float, *, rejected: bool, upper: float | None = None) -> None:
    """Pass, fail or inconclusive at the level the family gave the rule (the interval is recomputed at it).

    ``upper``: the rule's max too, when it has both limits: a pass then needs the interval inside both.
    """
    again = share_test(test.value * test.n, test.n, test.limit, test.side, test.design, level)
    test.low, test.high, test.level = again.low, again.high, level
    inside = (test.low >= test.limit) if test.side == "min" else (test.high <= test.limit)
    if upper is not None:
        inside = inside and test.high <= upper
    test.status = "fail" if rejected else "pass" if inside else "inconclusive"
